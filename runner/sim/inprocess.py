"""The simulator's service as a transport and an uploader: answered in this process, no socket,
no signature check. Testing helpers shipped with the code: the real client over the one model of
the service.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import re
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import anyio.lowlevel

from runner.dataworks.actions import ACTIONS, AUTHORIZE_UPLOAD, OPENPLATFORM_VERSION
from runner.dataworks.transport import HttpRequest, HttpResponse
from runner.dataworks.upload import UploadError, UploadGrant
from runner.sim.faults import Faults
from runner.sim.openplatform import OpenPlatformService
from runner.sim.oss import CHUNK, OssService, UploadDropped
from runner.sim.service import Answer, Call, Service, access_key_of, error, params_of

NOT_FOUND = "Specified api is not found, please check your url and method."
_CODE = re.compile(r"<Code>([^<]*)</Code>")


class InProcessTransport:
    """A `Transport` whose every request is answered by `service` at `now()` (epoch seconds):
    DataWorks's actions, and OpenPlatform's AuthorizeFileUpload on the service's object store
    (the grant's Endpoint is the host the request was sent to)."""

    def __init__(
        self,
        service: Service,
        *,
        now: Callable[[], float],
        base_url: str = "https://dataworks-sim.invalid",
    ) -> None:
        self._service = service
        self._now = now
        self._base_url = base_url
        self._ids = itertools.count(1)
        self._openplatform = OpenPlatformService(service.state.objects, service.stats)

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        parts = urlsplit(request.url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {name.lower(): value for name, value in request.headers.items()}
        params = params_of(query, headers, request.body)
        name = headers.get("x-acs-action") or query.get("Action") or ""
        version = headers.get("x-acs-version") or query.get("Version") or ""
        rid = f"INPROC-{next(self._ids):08d}"
        self._service.stats.requests[name or "(none)"] += 1
        action = ACTIONS.get(name)
        host = parts.netloc
        answer: Answer
        if version == OPENPLATFORM_VERSION and name == AUTHORIZE_UPLOAD.name:
            answer = self._openplatform.handle(name, params, self._now(), rid, host)
        elif action is None:
            answer = error(rid, host, 404, "InvalidApi.NotFound", NOT_FOUND)
        else:
            call = Call(params, access_key_of(headers, params), self._now(), self._base_url)
            answer = self._service.operate(action, call, rid, host)
        body = json.dumps(answer.body, separators=(",", ":")).encode()
        return HttpResponse(answer.status, {"x-acs-request-id": rid}, body)


class InProcessUploader:
    """An `Uploader` posting to `service`'s object store through the simulator's own OSS logic
    (runner.sim.oss): the file is read in chunks of `chunk_size`, never whole. `faults` (default:
    the service's) give the upload_reset_rate, drawn from a generator seeded with `seed`; a drop
    raises a retryable UploadError, as a reset connection would."""

    def __init__(
        self,
        service: Service,
        *,
        now: Callable[[], float],
        faults: Faults | None = None,
        seed: int = 0,
        chunk_size: int = CHUNK,
        spool_dir: str | None = None,
    ) -> None:
        self.oss = OssService(
            service.state.objects,
            service.stats,
            faults if faults is not None else service.faults,
            random.Random(f"oss-faults-{seed}"),
            now,
            spool_dir=spool_dir,
        )
        self._chunk_size = chunk_size
        self._ids = itertools.count(1)
        self.posts: list[str] = []  # the keys posted, in order

    async def upload(self, grant: UploadGrant, path: Path, timeout: float) -> int:
        rid = f"INPROC-OSS-{next(self._ids):08d}"
        self.posts.append(grant.object_key)
        sent = [0]
        try:
            async with contextlib.aclosing(self._read(path, sent)) as chunks:
                answer = await self.oss.post_object(grant.host, dict(grant.form()), chunks, rid)
        except UploadDropped:
            raise UploadError(f"connection reset posting to {grant.host}", retryable=True) from None
        except OSError as exc:
            raise UploadError(f"cannot read {path}: {exc}", retryable=False) from exc
        if answer.status >= 300:
            match = _CODE.search(answer.body)
            code = match.group(1) if match else None
            raise UploadError(
                f"HTTP {answer.status} {code or ''} from {grant.host}".replace("  ", " "),
                status=answer.status,
                code=code,
                retryable=answer.status >= 500 or answer.status == 429,
            )
        return sent[0]

    async def _read(self, path: Path, sent: list[int]) -> AsyncGenerator[bytes, None]:
        with path.open("rb") as file:
            while chunk := file.read(self._chunk_size):
                sent[0] += len(chunk)
                yield chunk
                await anyio.lowlevel.checkpoint()
