"""The OSS PostObject upload of an import package over aiohttp (the `Uploader` seam's
implementation; the grant and the form are in `runner.dataworks.upload`).

The package is streamed from its file a chunk at a time with its length announced, so no package
is ever whole in memory. With `connect_to` (the run's --endpoint) the post goes to that address
while still carrying the Host `{Bucket}.{Endpoint}` the real request would, as `curl
--connect-to` does; without it, to `https://{Bucket}.{Endpoint}/`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import aiohttp
from yarl import URL

from runner.dataworks.download import DownloadError, check_url
from runner.dataworks.transport import TOTAL_FACTOR, TOTAL_FLOOR, OneSession, transfer_failure
from runner.dataworks.upload import UploadError, UploadGrant
from runner.text import printable

MAX_ERROR_BODY = 64 * 1024  # bytes of an OSS error answer read for its code
_CODE = re.compile(rb"<Code>([A-Za-z0-9._-]{1,64})</Code>")


class AiohttpUploader(OneSession):
    """Posts packages with one aiohttp session; errors mapped to UploadError."""

    def __init__(
        self, *, limit: int = 4, connect_to: str | None = None, allow_loopback: bool = False
    ) -> None:
        super().__init__(limit=limit)
        self._connect_to = connect_to
        self._allow_loopback = allow_loopback

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
        return aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))

    def _url(self, grant: UploadGrant) -> str:
        if self._connect_to is not None:
            return self._connect_to + "/"
        url = f"https://{grant.host}/"
        try:
            check_url(url, allow_loopback=self._allow_loopback)
        except DownloadError as exc:
            raise UploadError(f"refusing the upload host: {exc}", retryable=False) from None
        return url

    async def upload(self, grant: UploadGrant, path: Path, timeout: float) -> int:
        """Post `path` under `grant`; `timeout` bounds the connect and each read, the whole
        transfer gets a bound of its own (a package may be large)."""
        session = self._open_session()
        url = self._url(grant)
        place = f"{grant.host}/{grant.object_key}"
        client_timeout = aiohttp.ClientTimeout(
            total=max(TOTAL_FLOOR, timeout * TOTAL_FACTOR),
            sock_connect=min(timeout, 10.0),
            sock_read=timeout,
        )
        try:
            package = open(path, "rb")  # noqa: ASYNC230, SIM115 (closed below; reads in a thread)
            size = os.fstat(package.fileno()).st_size
        except OSError as exc:
            raise UploadError(
                f"cannot read the package {path}: {exc.strerror}", retryable=False
            ) from exc
        with package:
            form = aiohttp.FormData(quote_fields=False)
            for name, value in grant.form():
                form.add_field(name, value)
            # a file object is streamed in chunks, its length known from the file
            form.add_field(
                "file", package, filename=path.name, content_type="application/octet-stream"
            )
            try:
                async with session.post(
                    URL(url, encoded=True),
                    data=form,
                    headers={"Host": grant.host},
                    timeout=client_timeout,
                    allow_redirects=False,
                ) as resp:
                    if resp.status in (200, 201, 204):
                        await resp.read()
                        return size
                    body = await resp.content.read(MAX_ERROR_BODY)
                    raise _refusal(resp.status, body, place)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # a cut connection: OSS stores nothing of a form that did not arrive whole
                raise transfer_failure(UploadError, exc, grant.host, silent="no answer") from exc


def _refusal(status: int, body: bytes, place: str) -> UploadError:
    """An OSS error answer as an UploadError: its code, and whether posting again may work."""
    found = _CODE.search(body)
    code = found.group(1).decode() if found else None
    retryable = status >= 500 or status == 429 or code == "RequestTimeout"
    return UploadError(
        f"HTTP {status}{' ' + printable(code) if code else ''} from {place}",
        status=status,
        code=code,
        retryable=retryable,
    )
