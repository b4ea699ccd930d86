"""OSS PostObject, pure of HTTP: the form's fields and its file as a stream of chunks in, an
answer out. The aiohttp app (`runner.sim.app`) and the in-process uploader
(`runner.sim.inprocess`) both post through it.

The fields are checked as soon as they are in (key id, policy signature, expiry, bucket, key);
the file is then spooled to an anonymous temporary file, hashed as it comes, and its size
checked against the policy's content-length-range. Only what the simulator needs is kept (size,
sha256, MD5 for the ETag, and the manifest when the file is a package the simulator made); the
spool is gone as soon as the post is answered. A post cut short, or dropped by the
`upload_reset_rate` fault once part of its file is in, stores nothing.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections.abc import AsyncIterable, Callable, Mapping
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from runner.sim.faults import Faults, draw_upload_reset
from runner.sim.objects import ObjectStore, Policy, StoredObject
from runner.sim.packages import read_manifest
from runner.sim.params import SimError
from runner.sim.service import SimStats

CHUNK = 256 * 1024
MAX_FIELD = 64 * 1024  # bytes of a form field other than the file
RESET = "upload_reset"  # the fault's name in SimStats.faults
INTERRUPTED = "Interrupted"  # SimStats.upload_failures: a post whose body was cut short


class UploadDropped(Exception):
    """The post's connection is to be dropped without an answer (the upload_reset fault)."""


@dataclass(frozen=True, slots=True)
class OssAnswer:
    status: int
    body: str  # XML, or empty
    headers: Mapping[str, str] = field(default_factory=dict)


def error_answer(rid: str, exc: SimError) -> OssAnswer:
    """OSS's XML error body."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        f"<Code>{escape(exc.code)}</Code><Message>{escape(exc.message)}</Message>"
        f"<RequestId>{rid}</RequestId></Error>"
    )
    return OssAnswer(exc.status, xml, {"x-oss-request-id": rid})


def malformed(message: str = "The body of your POST request is not well-formed.") -> SimError:
    return SimError(400, "MalformedPOSTRequest", message)


class OssService:
    """PostObject on the simulator's object store, counted in its stats."""

    def __init__(
        self,
        store: ObjectStore,
        stats: SimStats,
        faults: Faults,
        rng: random.Random,
        clock: Callable[[], float],
        *,
        spool_dir: str | None = None,  # where files are spooled; None: the system's temp dir
    ) -> None:
        self.store = store
        self._stats = stats
        self._faults = faults
        self._rng = rng
        self._clock = clock
        self._spool_dir = spool_dir

    def owns(self, host: str) -> bool:
        """Whether a request with this Host header is for OSS (`<granted bucket>.<endpoint>`)."""
        return self.store.bucket_of(host) is not None

    def refuse(self, rid: str, exc: SimError) -> OssAnswer:
        self._stats.upload_failures[exc.code] += 1
        return error_answer(rid, exc)

    async def post_object(
        self,
        host: str,
        fields: Mapping[str, str],
        file: AsyncIterable[bytes] | None,
        rid: str,
    ) -> OssAnswer:
        """Answer a PostObject to `host` with the form's `fields` (those before the file) and the
        file's content as chunks (None: the form had no file). Raises UploadDropped when the
        connection is to be dropped; an exception from `file` propagates, nothing stored."""
        self._stats.requests["PostObject"] += 1
        bucket = self.store.bucket_of(host)
        if bucket is None:
            return self.refuse(rid, SimError(404, "NoSuchBucket", "The bucket does not exist."))
        try:
            if file is None:
                raise malformed("The form has no file field.")
            policy = self.store.check(bucket, fields, self._clock())
        except SimError as exc:
            if file is not None:
                async for _ in file:  # read to its end: the client is answered, not cut off
                    pass
            return self.refuse(rid, exc)
        endpoint = host.partition(".")[2]
        try:
            stored = await self._receive(bucket, endpoint, fields["key"], policy, file)
        except SimError as exc:
            return self.refuse(rid, exc)
        except UploadDropped:
            raise
        except BaseException:  # the body was cut short (client gone, handler cancelled)
            self._stats.upload_failures[INTERRUPTED] += 1
            raise
        self.store.put(stored)
        self._stats.uploads_stored += 1
        self._stats.upload_bytes += stored.size
        return self._stored_answer(stored, fields.get("success_action_status", ""), rid)

    async def _receive(
        self,
        bucket: str,
        endpoint: str,
        key: str,
        policy: Policy,
        file: AsyncIterable[bytes],
    ) -> StoredObject:
        drop = draw_upload_reset(self._faults, self._rng)
        size = 0
        sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        with tempfile.TemporaryFile(dir=self._spool_dir) as spool:
            async for chunk in file:
                size += len(chunk)
                if drop:
                    self._stats.faults[RESET] += 1
                    raise UploadDropped(f"{bucket}/{key}")
                if size <= policy.max_size:  # past the limit, only counted
                    sha256.update(chunk)
                    md5.update(chunk)
                    spool.write(chunk)
            if size > policy.max_size:
                raise SimError(
                    400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."
                )
            if size < policy.min_size:
                raise SimError(
                    400,
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed size.",
                )
            spool.flush()
            spool.seek(0)
            manifest = read_manifest(spool)
        return StoredObject(
            bucket=bucket,
            endpoint=endpoint,
            key=key,
            size=size,
            sha256=sha256.hexdigest(),
            md5=md5.hexdigest(),
            manifest=manifest,
            stored_at=self._clock(),
        )

    def _stored_answer(self, stored: StoredObject, status: str, rid: str) -> OssAnswer:
        etag = f'"{stored.md5.upper()}"'
        headers = {"x-oss-request-id": rid, "ETag": etag}
        if status == "201":
            location = f"http://{stored.bucket}.{stored.endpoint}/{stored.key}"
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>'
                f"<Bucket>{escape(stored.bucket)}</Bucket>"
                f"<Location>{escape(location)}</Location>"
                f"<Key>{escape(stored.key)}</Key>"
                f"<ETag>{escape(etag)}</ETag></PostResponse>"
            )
            return OssAnswer(201, xml, headers)
        return OssAnswer(200 if status == "200" else 204, "", headers)
