"""OSS PostObject over HTTP: the aiohttp side of `runner.sim.oss`.

The form is read as a stream (`request.multipart()`): the fields before `file` are collected
(each at most 64 KiB), the file part is handed on as chunks, and whatever follows it is ignored,
as OSS does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web

from runner.sim.oss import CHUNK, MAX_FIELD, OssAnswer, OssService, malformed
from runner.sim.params import SimError

FILE_FIELD = "file"
# what aiohttp's multipart reader raises on a malformed body
_MALFORMED = (ValueError, AssertionError, KeyError, RuntimeError)


async def handle_post(oss: OssService, request: web.Request, rid: str) -> web.StreamResponse:
    """Answer a request whose Host names a granted bucket. Raises UploadDropped when the
    connection is to be dropped without an answer."""
    if request.method != "POST" or request.path != "/":
        refusal = SimError(405, "MethodNotAllowed", "The specified method is not allowed.")
        return _response(oss.refuse(rid, refusal))
    if not request.content_type.startswith("multipart/form-data"):
        return _response(oss.refuse(rid, malformed("The body is not multipart/form-data.")))
    try:
        reader = await request.multipart()
        fields: dict[str, str] = {}
        file: BodyPartReader | None = None
        while file is None:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise ValueError("a nested multipart part")
            if part.name == FILE_FIELD:
                file = part
            elif part.name is not None:
                fields[part.name] = await _field(part)
        chunks = None if file is None else _chunks(file)
        answer = await oss.post_object(request.host, fields, chunks, rid)
    except SimError as exc:
        answer = oss.refuse(rid, exc)
    except _MALFORMED:
        answer = oss.refuse(rid, malformed())
    return _response(answer)


async def _field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(MAX_FIELD):
        data += chunk
        if len(data) > MAX_FIELD:
            raise malformed(f"The form field {part.name} is too long.")
    return data.decode("utf-8", errors="replace")


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


def _response(answer: OssAnswer) -> web.Response:
    if not answer.body:
        return web.Response(status=answer.status, headers=answer.headers)
    return web.Response(
        status=answer.status,
        text=answer.body,
        content_type="application/xml",
        headers=answer.headers,
    )
