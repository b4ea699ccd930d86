"""The one-method transport seam, its aiohttp implementation, and exception mapping.

The client talks to a `Transport`; tests swap in a plain async function wrapped by
`FunctionTransport`, so nothing opens a socket.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self, TypeVar

import aiohttp
import anyio.to_thread
from yarl import URL

from runner.dataworks.checksums import PackageChecksums
from runner.dataworks.download import (
    CHUNK,
    DEFAULT_MAX_PACKAGE,
    FREE_SPACE_RESERVE,
    DownloadError,
    TransferError,
    check_url,
    url_host,
    url_place,
)
from runner.files import make_private_dirs

MAX_ANSWER = 8 * 1024 * 1024  # bytes of an API answer, after decompression
TOTAL_FACTOR = 30  # a package must arrive within this many per-read timeouts ...
TOTAL_FLOOR = 600.0  # ... and never less than ten minutes
STALE_PART_FLOOR = 120.0  # s a partial package file is left untouched before it is stale
_KEPT = 64  # parsed URLs and timeouts a transport keeps


# made for every request: not frozen, for speed; never changed once made (README, Design)
@dataclass(slots=True)
class HttpRequest:
    method: str
    # already encoded: sent exactly as given; with V1 its query holds the key id and signature
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)  # carries the signature and any STS token
    body: bytes = b""


# made for every request: not frozen, for speed; never changed once made (README, Design)
@dataclass(slots=True)
class HttpResponse:
    status: int
    # looked up by lower-case names (a transport may hand over a mapping that ignores case)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class TransportError(Exception):
    """The exchange failed below HTTP."""


class ConnectError(TransportError):
    """Nothing was sent: the connection could not be made. Safe to retry."""


class ExchangeError(TransportError):
    """The request may have reached the server (timeout, reset): the outcome is unknown."""


class ExchangeTimeout(ExchangeError):
    """No answer within the timeout: the request may have reached the server."""


class ResponseTooLarge(ExchangeError):
    """The answer was bigger than the client accepts (after decompression): it was not read."""


class Transport(Protocol):
    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse: ...


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class FunctionTransport:
    """A transport that hands every request to a function: the test seam."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[HttpRequest] = []

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        self.requests.append(request)
        return await self._handler(request)


class OneSession:
    """Owns one aiohttp session for the length of an `async with` block (the transport, the
    downloader and the uploader each have one)."""

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
        return aiohttp.ClientSession(connector=connector)

    async def __aenter__(self) -> Self:
        self._session = self._new_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} used outside 'async with'")
        return self._session


class AiohttpTransport(OneSession):
    """One shared aiohttp session for the whole run; errors mapped to the two transport kinds."""

    def __init__(
        self, *, limit: int = 100, connect_timeout: float = 5.0, max_answer: int = MAX_ANSWER
    ) -> None:
        super().__init__(limit=limit)
        self._connect_timeout = connect_timeout
        self._max_answer = max_answer
        # the few URLs a run posts to (V3 signs the path, not the query) and timeouts it uses,
        # parsed once; bounded, for URLs that carry a query that changes (V1, GET)
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
        # skip_auto_headers keeps aiohttp from adding unsigned headers we did not ask for
        session = aiohttp.ClientSession(
            connector=connector,
            skip_auto_headers=("User-Agent", "Content-Type"),
            auto_decompress=True,
        )
        # aiohttp sends a GET again, as it was, when a kept-alive connection drops: a signed
        # request (AuthorizeFileUpload is a GET) would go twice with one nonce, and the service
        # refuses the second as a replay (SignatureNonceUsed), hiding the drop. No silent
        # resend: the attempt loop sends again, signed anew. (aiohttp offers no public switch.)
        session._retry_connection = False
        return session

    def _url(self, url: str) -> URL:
        found = self._urls.get(url)
        if found is None:
            if len(self._urls) >= _KEPT:
                self._urls.clear()
            found = self._urls[url] = URL(url, encoded=True)
        return found

    def _timeout(self, timeout: float) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(timeout)
        if found is None:
            if len(self._timeouts) >= _KEPT:
                self._timeouts.clear()
            connect = min(timeout, self._connect_timeout)
            found = self._timeouts[timeout] = aiohttp.ClientTimeout(
                total=timeout, sock_connect=connect
            )
        return found

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        session = self._open_session()
        # Errors name their type and the host only (url_host): aiohttp's messages may quote the
        # whole URL, and a V1 URL carries the AccessKeyId and the signature.
        try:
            async with session.request(
                request.method,
                self._url(request.url),
                headers=request.headers,
                data=request.body or None,
                timeout=self._timeout(timeout),
                allow_redirects=False,
            ) as resp:
                body = await self._read_bounded(resp, request.url)
                # aiohttp's own headers: looked up without regard to case, as they are
                return HttpResponse(resp.status, resp.headers, body)
        except aiohttp.ClientSSLError as exc:
            # the handshake may have failed after bytes were sent: treat as unknown
            host = url_host(request.url)
            raise ExchangeError(f"TLS error ({type(exc).__name__}) with {host}") from exc
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # refused, unreachable, DNS failure or no connection in time: nothing was sent
            host = url_host(request.url)
            raise ConnectError(f"{type(exc).__name__}: cannot connect to {host}") from exc
        except TimeoutError as exc:
            host = url_host(request.url)
            raise ExchangeTimeout(f"no answer from {host} within {timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise ExchangeError(f"{type(exc).__name__} from {url_host(request.url)}") from exc

    async def _read_bounded(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        """The body, decompressed a chunk at a time (aiohttp bounds each inflation), refused as
        soon as it would pass the limit: a gzip bomb is never inflated, a huge answer never held.
        An answer that is not compressed and says its length within the limit is read whole."""
        limit = self._max_answer
        length = resp.content_length  # what travels (compressed or not): known too big at once
        if length is not None and length > limit:
            host = url_host(url)
            raise ResponseTooLarge(f"{host} announced an answer of {length} bytes (limit {limit})")
        if length is not None and "Content-Encoding" not in resp.headers:
            return await resp.read()  # what travels is what is read: at most `length` bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(f"the answer from {url_host(url)} passed {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


E = TypeVar("E", bound=TransferError)


def transfer_failure(error: type[E], exc: BaseException, place: str, *, silent: str) -> E:
    """aiohttp's failure of a package transfer with `place` (or its timeout, `silent` in time),
    as `error`, retryable. Named by type only: aiohttp's messages may quote the URL, whose query
    holds a signature."""
    if isinstance(exc, aiohttp.ClientSSLError):
        text = f"TLS error from {place}"
    elif isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        text = f"cannot connect to {place}"
    elif isinstance(exc, TimeoutError):
        text = f"{silent} from {place} in time"
    else:
        text = f"{type(exc).__name__} from {place}"
    return error(text, retryable=True)


def remove_stale_parts(dest: Path, *, idle: float) -> None:
    """Remove the partial files of `dest` that a killed process left (SIGKILL, a power cut: no
    `finally` ran), so that they do not fill the disk: those untouched for `idle` seconds. A
    download in progress writes at least once per read timeout, or it stops; another run's
    partial file of the same package, still being written, is left alone."""
    cutoff = time.time() - idle
    for part in dest.parent.glob(glob.escape(dest.name) + ".*.part"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            info = part.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                part.unlink()


class AiohttpDownloader(OneSession):
    """Streams packages with one aiohttp session; errors mapped to DownloadError.

    A package is bounded (`max_size`, checked against Content-Length before anything is written
    and enforced while streaming), needs room on the disk before it starts, is verified against
    the checksums the storage sends, and comes only from a host that is not this machine unless
    `allow_loopback` (the API endpoint is loopback itself)."""

    def __init__(
        self,
        *,
        limit: int = 16,
        max_size: int = DEFAULT_MAX_PACKAGE,
        allow_loopback: bool = False,
        free_space: Callable[[Path], int] = lambda folder: shutil.disk_usage(folder).free,
    ) -> None:
        super().__init__(limit=limit)
        self._max_size = max_size
        self._allow_loopback = allow_loopback
        self._free_space = free_space

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
        # the bytes as stored: what the checksums are of, and never inflated on the way
        return aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def fetch(self, url: str, dest: Path, timeout: float) -> int:
        """Stream `url` into `dest`; `timeout` bounds the connect and each read, not the whole
        transfer (a package may be large). Nothing is left under `dest` unless it is complete."""
        session = self._open_session()
        check_url(url, allow_loopback=self._allow_loopback)
        client_timeout = aiohttp.ClientTimeout(
            # a trickling server must not hold a task forever: the whole package gets a bound too
            total=max(TOTAL_FLOOR, timeout * TOTAL_FACTOR),
            sock_connect=min(timeout, 10.0),
            sock_read=timeout,
        )
        try:
            make_private_dirs(dest.parent)  # 0700: the packages hold a workspace's code
            remove_stale_parts(dest, idle=max(STALE_PART_FLOOR, 3 * timeout))
            self._check_room(dest.parent, 0)
            # a name of its own, so two runs saving into one folder never share a partial file
            handle, name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
        except OSError as exc:
            raise DownloadError(
                f"cannot write in {dest.parent}: {exc.strerror}", retryable=False
            ) from exc
        part = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                written = await self._stream(session, url, out, client_timeout, dest.parent)
            if not await anyio.to_thread.run_sync(zipfile.is_zipfile, name):
                # an error page answered with 200, or a body cut short: never saved as a package
                raise DownloadError(f"{url_place(url)} did not send a zip package", retryable=True)
            os.replace(part, dest)  # atomic: the final name only ever holds a whole package
            return written
        except OSError as exc:
            raise DownloadError(f"cannot write {dest}: {exc.strerror}", retryable=False) from exc
        finally:  # whatever stopped it (an error, a limit, a cancellation): no partial file
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)  # a no-op after the rename; microseconds otherwise

    def _check_room(self, folder: Path, size: int) -> None:
        """Refuse to start a download the disk has no room for (its size, when announced, plus
        a reserve)."""
        free = self._free_space(folder)
        if free < size + FREE_SPACE_RESERVE:
            raise DownloadError(
                f"not enough free disk space in {folder}: {free} bytes free, the package needs"
                f" {size} and {FREE_SPACE_RESERVE} are kept free",
                retryable=False,
            )

    def _too_large(self, place: str, size: int) -> DownloadError:
        return DownloadError(
            f"the package from {place} is over {self._max_size} bytes ({size}); raise"
            " --max-package-size to accept it",
            retryable=False,
        )

    async def _stream(
        self,
        session: aiohttp.ClientSession,
        url: str,
        out: BinaryIO,
        timeout: aiohttp.ClientTimeout,
        folder: Path,
    ) -> int:
        place = url_place(url)
        try:
            async with session.get(
                URL(url, encoded=True), timeout=timeout, allow_redirects=False
            ) as resp:
                if resp.status != 200:
                    retryable = resp.status >= 500 or resp.status == 429
                    raise DownloadError(
                        f"HTTP {resp.status} from {place}", status=resp.status, retryable=retryable
                    )
                length = resp.content_length
                if length is not None and length > self._max_size:
                    raise self._too_large(place, length)
                self._check_room(folder, length or 0)
                checksums = PackageChecksums(resp.headers)
                written = 0
                async for chunk in resp.content.iter_chunked(CHUNK):
                    written += len(chunk)
                    if written > self._max_size:
                        raise self._too_large(place, written)
                    # disk work and checksums off the loop
                    await anyio.to_thread.run_sync(_write, out, checksums, chunk)
                if (problem := checksums.mismatch()) is not None:
                    raise DownloadError(f"corrupt package from {place}: {problem}", retryable=True)
                await anyio.to_thread.run_sync(_flush_and_sync, out)
                return written
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transfer_failure(DownloadError, exc, place, silent="no data") from exc
        except ValueError as exc:  # a URL aiohttp will not send (checked, but be sure)
            raise DownloadError(f"malformed package URL for {place}", retryable=False) from exc
        except OSError as exc:
            raise DownloadError(
                f"cannot write the package: {exc.strerror}", retryable=False
            ) from exc


def _write(out: BinaryIO, checksums: PackageChecksums, chunk: bytes) -> None:
    out.write(chunk)
    checksums.feed(chunk)


def _flush_and_sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())
