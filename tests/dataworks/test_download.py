"""The package downloader against a loopback server; safe file names; URL secrets kept out."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from runner.dataworks.download import (
    DownloadError,
    check_url,
    is_expired,
    package_path,
    safe_name,
    url_expires,
    url_place,
)
from runner.dataworks.transport import AiohttpDownloader
from runner.journal import TaskRow
from runner.logs import configure, get_logger
from runner.models import TaskKey, TaskState
from runner.redact import scrub_url_secrets
from runner.reports import status_record
from tests.loopback import serving


def _zip(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("package.bin", bytes(range(256)) * (size // 256))
    return buffer.getvalue()


BODY = _zip(1 << 20)  # a real zip of 1 MiB and a bit: several chunks
SECRET_QUERY = "Expires=4102444800&OSSAccessKeyId=AKOSS123&Signature=c2lnbmF0dXJl"


async def package(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/zip")


async def forbidden(request: web.Request) -> web.Response:
    return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")


async def error_page(request: web.Request) -> web.Response:
    return web.Response(text="<html>maintenance</html>", content_type="text/html")


async def broken(request: web.Request) -> web.StreamResponse:
    """Promise a megabyte, send a little, then drop the connection."""
    response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
    await response.prepare(request)
    await response.write(BODY[:1000])
    assert request.transport is not None
    request.transport.abort()
    return response


async def unavailable(request: web.Request) -> web.Response:
    return web.Response(status=503)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/ok.zip", package)
    app.router.add_get("/page.zip", error_page)
    app.router.add_get("/forbidden.zip", forbidden)
    app.router.add_get("/broken.zip", broken)
    app.router.add_get("/busy.zip", unavailable)
    async with serving(app) as url:
        yield url


@pytest.mark.anyio
async def test_package_is_streamed_into_place(base_url: str, tmp_path: Path) -> None:
    """The whole body lands under the final name; no .part file is left behind."""
    dest = tmp_path / "r" / "1" / "t.zip"
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        written = await downloader.fetch(f"{base_url}/ok.zip?{SECRET_QUERY}", dest, 5.0)
    assert written == len(BODY)
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in dest.parent.iterdir()) == ["t.zip"]


@pytest.mark.anyio
async def test_broken_transfer_leaves_no_file(base_url: str, tmp_path: Path) -> None:
    """A connection lost mid-body leaves neither the final file nor a .part; it is retryable."""
    dest = tmp_path / "t.zip"
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(f"{base_url}/broken.zip?{SECRET_QUERY}", dest, 5.0)
    assert caught.value.retryable
    assert not dest.exists()
    assert not dest.with_name("t.zip.part").exists()


@pytest.mark.anyio
async def test_existing_file_survives_a_failed_fetch(base_url: str, tmp_path: Path) -> None:
    """A failed fetch never touches a file already saved under the final name."""
    dest = tmp_path / "t.zip"
    dest.write_bytes(b"whole")
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError):
            await downloader.fetch(f"{base_url}/broken.zip", dest, 5.0)
    assert dest.read_bytes() == b"whole"


@pytest.mark.anyio
async def test_forbidden_is_refused_and_says_no_secret(base_url: str, tmp_path: Path) -> None:
    """A 403 is `refused` (a fresh URL is needed); the error names host and path, not the query."""
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(f"{base_url}/forbidden.zip?{SECRET_QUERY}", tmp_path / "t", 5.0)
    error = caught.value
    assert error.refused
    assert not error.retryable
    assert error.status == 403
    assert "forbidden.zip" in str(error)
    assert "Signature" not in str(error)
    assert "AKOSS123" not in str(error)


@pytest.mark.anyio
async def test_server_error_is_retryable(base_url: str, tmp_path: Path) -> None:
    """A 5xx from the storage may pass on a later try."""
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(f"{base_url}/busy.zip", tmp_path / "t.zip", 5.0)
    assert caught.value.retryable
    assert caught.value.status == 503


@pytest.mark.anyio
async def test_unreachable_host_is_retryable_and_keeps_the_query_out(tmp_path: Path) -> None:
    """A refused connection is retryable; its message carries no signature."""
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(f"http://127.0.0.1:1/x.zip?{SECRET_QUERY}", tmp_path / "t", 2.0)
    assert caught.value.retryable
    assert "c2lnbmF0dXJl" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["http://oss.example.com/x.zip?Signature=s", "ftp://127.0.0.1/x.zip", "file:///etc/passwd"],
)
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    """Packages come over https, or plain http from a loopback host only."""
    with pytest.raises(DownloadError) as caught:
        check_url(url)
    assert not caught.value.retryable
    assert "Signature=s" not in str(caught.value)


def test_https_and_loopback_http_are_accepted() -> None:
    """https anywhere; http to 127.0.0.1/localhost/::1 when the API endpoint is loopback too."""
    check_url("https://b.oss.aliyuncs.com/x.zip")
    for url in ("http://127.0.0.1:8/x", "http://localhost:8/x", "http://[::1]:8/x"):
        check_url(url, allow_loopback=True)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("backup-101", "backup-101"),
        ("sales_full.v2", "sales_full.v2"),
    ],
)
def test_safe_names_are_kept(name: str, expected: str) -> None:
    """A name made of portable characters is its own file name."""
    assert safe_name(name) == expected


@pytest.mark.parametrize(
    "name", ["a/b", "../../etc/passwd", "..", ".hidden", "销售 备份", "a\\b:c*?", "", "x" * 300]
)
def test_unsafe_names_become_safe_and_distinct(name: str, tmp_path: Path) -> None:
    """Separators, dots, spaces, non-ASCII and long names give one safe file inside the root."""
    safe = safe_name(name)
    assert safe
    assert len(safe) <= 140
    assert "/" not in safe
    assert "\\" not in safe
    assert not safe.startswith(".")
    assert safe != name
    path = package_path(tmp_path, "cn-shanghai", 12345, name, 100001)
    assert path.resolve().is_relative_to(tmp_path.resolve())
    assert path.parent == tmp_path / "cn-shanghai" / "12345"


def test_package_file_carries_the_migration_id(tmp_path: Path) -> None:
    """A package is tied to its task: same name, other task, other file; case alone differs too."""
    first = package_path(tmp_path, "cn-shanghai", 12345, "sales", 100001)
    again = package_path(tmp_path, "cn-shanghai", 12345, "sales", 100777)
    upper = package_path(tmp_path, "cn-shanghai", 12345, "Sales", 100002)
    assert first.name == "sales-100001.zip"
    assert first != again
    assert first.name.lower() != upper.name.lower()


def test_names_differing_in_unsafe_characters_do_not_collide() -> None:
    """'a/b' and 'a_b' and 'a:b' are three files, not one."""
    assert len({safe_name("a/b"), safe_name("a_b"), safe_name("a:b")}) == 3


def test_expiry_is_read_from_the_url() -> None:
    """Expires (epoch s) tells when a URL stops working, with a margin; none means unknown."""
    url = f"https://h/x.zip?{SECRET_QUERY}"
    assert url_expires(url) == 4102444800
    assert not is_expired(url, now=4102444800 - 3600)
    assert is_expired(url, now=4102444800 - 30)
    assert not is_expired("https://h/x.zip", now=0)
    assert url_place(url) == "h/x.zip"


def test_logs_and_status_never_show_the_signature(tmp_path: Path) -> None:
    """A presigned URL in a log line or in `status` keeps Expires but loses its secrets."""
    url = f"https://b.oss.aliyuncs.com/x.zip?{SECRET_QUERY}&security-token=TOK"
    scrubbed = scrub_url_secrets(url)
    assert "c2lnbmF0dXJl" not in scrubbed
    assert "AKOSS123" not in scrubbed
    assert "TOK" not in scrubbed
    assert "Expires=4102444800" in scrubbed
    buffer = io.StringIO()
    configure(stream=buffer, json=True)
    get_logger("t").info("note", where=url)
    assert "c2lnbmF0dXJl" not in buffer.getvalue()
    row = TaskRow(
        TaskKey("cn-shanghai", 1, "t"),
        TaskState.EXPORTED,
        2,
        1,
        None,
        None,
        None,
        url,
        None,
        True,
        0.0,
        "/p/t.zip",
    )
    shown = json.dumps(status_record(row))
    assert "c2lnbmF0dXJl" not in shown
    assert "AKOSS123" not in shown
    assert status_record(row)["package_path"] == "/p/t.zip"


@pytest.mark.anyio
async def test_a_folder_that_cannot_be_made_is_a_download_error(
    base_url: str, tmp_path: Path
) -> None:
    """A file standing where the package folder should be fails the download, not the run."""
    (tmp_path / "cn-shanghai").write_text("in the way")
    dest = tmp_path / "cn-shanghai" / "12345" / "a-100001.zip"
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError, match="cannot write"):
            await downloader.fetch(base_url + "/ok.zip", dest, timeout=5)


@pytest.mark.anyio
async def test_a_body_that_is_not_a_zip_is_never_saved(base_url: str, tmp_path: Path) -> None:
    """An error page answered with 200 fails the download and leaves no file behind."""
    dest = tmp_path / "a-1.zip"
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError, match="did not send a zip"):
            await downloader.fetch(base_url + "/page.zip", dest, timeout=5)
    assert os.listdir(tmp_path) == []
