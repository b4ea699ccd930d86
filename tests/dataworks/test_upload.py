"""The OSS PostObject uploader against a loopback server: the form as the SDK sends it, the file
streamed byte for byte, the Host header kept with --endpoint, and errors mapped for the loop."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from aiohttp import BodyPartReader, web

from runner.dataworks.oss import AiohttpUploader
from runner.dataworks.upload import UploadError, UploadGrant
from tests.loopback import serving

GRANT = UploadGrant(
    bucket="dw-import",
    endpoint="oss-cn-hangzhou.aliyuncs.com",
    object_key="pkg/1/package.zip",
    access_key_id="LTAI-OSS",
    encoded_policy="UE9MSUNZ",
    signature="U0lHTkFUVVJF",
)
ERROR_XML = "<?xml version='1.0'?><Error><Code>{}</Code><Message>m</Message></Error>"


class Recorder:
    """A PostObject endpoint that records what it was sent and answers as told."""

    def __init__(self) -> None:
        self.fields: list[tuple[str, str]] = []
        self.file_digest = ""
        self.file_size = 0
        self.host = ""
        self.length: int | None = None
        self.chunked = False
        self.answer: tuple[int, str] = (201, "<PostResponse/>")

    async def post(self, request: web.Request) -> web.Response:
        self.host = request.headers.get("Host", "")
        self.length = request.content_length
        self.chunked = "chunked" in request.headers.get("Transfer-Encoding", "")
        self.fields = []
        reader = await request.multipart()
        digest = hashlib.sha256()
        async for part in reader:
            assert isinstance(part, BodyPartReader)
            if part.name == "file":
                while chunk := await part.read_chunk(65536):
                    digest.update(chunk)
                    self.file_size += len(chunk)
                self.fields.append(("file", part.filename or ""))
            else:
                self.fields.append((part.name or "", await part.text()))
        self.file_digest = digest.hexdigest()
        status, body = self.answer
        return web.Response(status=status, text=body, content_type="application/xml")


@pytest.fixture
async def oss() -> AsyncIterator[tuple[str, Recorder]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/", recorder.post)
    async with serving(app) as url:
        yield url, recorder


@pytest.fixture
def package(tmp_path: Path) -> Path:
    path = tmp_path / "a-7001.zip"
    path.write_bytes(bytes(range(256)) * 8192)  # 2 MiB: many chunks
    return path


@pytest.mark.anyio
async def test_the_form_is_the_sdks_and_the_file_arrives_whole(
    oss: tuple[str, Recorder], package: Path
) -> None:
    """The fields go in the SDK's order with the file last, the file arrives byte for byte with
    the form's length announced, and with --endpoint the post connects there but carries Host
    {Bucket}.{Endpoint}."""
    url, recorder = oss
    async with AiohttpUploader(connect_to=url) as uploader:
        sent = await uploader.upload(GRANT, package, timeout=5)
    content = await anyio.Path(package).read_bytes()
    assert sent == len(content) == recorder.file_size
    assert recorder.file_digest == hashlib.sha256(content).hexdigest()
    assert recorder.fields == [*GRANT.form(), ("file", "a-7001.zip")]
    assert recorder.host == "dw-import.oss-cn-hangzhou.aliyuncs.com"
    # OSS wants the form's length up front: announced, not chunked
    assert recorder.length is not None
    assert recorder.length > sent
    assert not recorder.chunked


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "code", "retryable", "refused"),
    [
        (403, "AccessDenied", False, True),  # the policy expired: a new grant is needed
        (403, "SignatureDoesNotMatch", False, True),
        (400, "EntityTooLarge", False, False),
        (503, "ServiceUnavailable", True, False),
    ],
)
async def test_oss_refusals_carry_their_code_and_what_may_help(
    oss: tuple[str, Recorder],
    package: Path,
    status: int,
    code: str,
    retryable: bool,
    refused: bool,
) -> None:
    """An OSS error answer becomes an UploadError with the OSS code; a 403 asks for a new grant,
    a 5xx may be posted again, a size refusal is final."""
    url, recorder = oss
    recorder.answer = (status, ERROR_XML.format(code))
    async with AiohttpUploader(connect_to=url) as uploader:
        with pytest.raises(UploadError) as caught:
            await uploader.upload(GRANT, package, timeout=5)
    error = caught.value
    assert (error.code, error.retryable, error.refused) == (f"OSS.{code}", retryable, refused)
    assert GRANT.signature not in str(error)
    assert GRANT.encoded_policy not in str(error)


@pytest.mark.anyio
async def test_a_missing_package_is_a_final_error(tmp_path: Path) -> None:
    """A package file that is not there fails at once, final, before anything is sent."""
    async with AiohttpUploader(connect_to="http://127.0.0.1:9") as uploader:
        with pytest.raises(UploadError) as caught:
            await uploader.upload(GRANT, tmp_path / "gone.zip", timeout=5)
    assert not caught.value.retryable


@pytest.mark.anyio
async def test_an_unreachable_oss_is_retryable(package: Path) -> None:
    """Nothing listening: retryable (nothing was stored)."""
    async with AiohttpUploader(connect_to="http://127.0.0.1:9") as uploader:
        with pytest.raises(UploadError) as caught:
            await uploader.upload(GRANT, package, timeout=2)
    assert caught.value.retryable


@pytest.mark.anyio
async def test_without_endpoint_a_local_upload_host_is_refused(package: Path) -> None:
    """Without --endpoint, a grant naming this machine is refused: packages go to OSS only."""
    local = UploadGrant("b", "localhost:8080", "k", "id", "p", "s")
    async with AiohttpUploader() as uploader:
        with pytest.raises(UploadError) as caught:
            await uploader.upload(local, package, timeout=2)
    assert not caught.value.retryable
