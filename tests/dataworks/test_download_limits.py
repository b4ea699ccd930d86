"""Package downloads within limits: a size cap, room on the disk, checksums verified, private
folders, no partial file after an abort, and only URLs a download may go to."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from runner.dataworks.checksums import (
    CRC64_HEADER,
    PackageChecksums,
    crc64_update,
    parse_crc64,
    parse_md5,
)
from runner.dataworks.download import (
    FREE_SPACE_RESERVE,
    DownloadError,
    check_url,
    is_local_host,
    url_expires,
    url_place,
)
from runner.dataworks.transport import AiohttpDownloader
from tests.dataworks.test_download import BODY
from tests.loopback import serving

CRC = str(crc64_update(0, BODY))
MD5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()
sent: dict[str, int] = {}


async def with_crc(request: web.Request) -> web.Response:
    return web.Response(body=BODY, headers={CRC64_HEADER: CRC})


async def bad_crc(request: web.Request) -> web.Response:
    return web.Response(body=BODY, headers={CRC64_HEADER: str(int(CRC) ^ 1)})


async def bad_md5(request: web.Request) -> web.Response:
    return web.Response(body=BODY, headers={"Content-MD5": base64.b64encode(bytes(16)).decode()})


async def good_md5(request: web.Request) -> web.Response:
    return web.Response(body=BODY, headers={"Content-MD5": MD5, CRC64_HEADER: "garbage"})


async def unannounced(request: web.Request) -> web.StreamResponse:
    """A body without Content-Length: only the streaming count can stop it."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent["unannounced"] = 0
    for _ in range(64):
        await response.write(b"z" * 65536)
        sent["unannounced"] += 65536
    await response.write_eof()
    return response


async def slow(request: web.Request) -> web.StreamResponse:
    """Half a package, then nothing: the transfer is still going when it is cancelled."""
    response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
    await response.prepare(request)
    await response.write(BODY[: len(BODY) // 2])
    await anyio.sleep_forever()
    return response  # pragma: no cover


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in {
        "/crc.zip": with_crc,
        "/bad-crc.zip": bad_crc,
        "/bad-md5.zip": bad_md5,
        "/md5.zip": good_md5,
        "/unannounced.zip": unannounced,
        "/slow.zip": slow,
    }.items():
        app.router.add_get(path, handler)
    async with serving(app) as url:
        yield url


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_crc64_is_the_ecma_182_xz_form() -> None:
    """The CRC-64 OSS sends: check value 0x995DC9BBDF1939FA, the same fed in pieces."""
    assert crc64_update(0, b"123456789") == 0x995DC9BBDF1939FA
    assert crc64_update(crc64_update(0, b"1234"), b"56789") == 0x995DC9BBDF1939FA
    assert parse_crc64(" 11051210869376104954 ") == 0x995DC9BBDF1939FA
    assert parse_crc64("18446744073709551616") is None  # 2^64
    assert parse_crc64("-1") is None
    assert parse_md5("not base64!") is None
    assert not PackageChecksums({}).checked


@pytest.mark.anyio
async def test_a_package_with_its_checksum_is_saved(base_url: str, tmp_path: Path) -> None:
    """A package whose x-oss-hash-crc64ecma (or Content-MD5) matches is saved whole."""
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        for name in ("crc", "md5"):
            dest = tmp_path / f"{name}.zip"
            assert await downloader.fetch(f"{base_url}/{name}.zip", dest, 5.0) == len(BODY)
            assert dest.read_bytes() == BODY


@pytest.mark.parametrize("path", ["/bad-crc.zip", "/bad-md5.zip"])
@pytest.mark.anyio
async def test_a_package_whose_checksum_differs_is_refused(
    base_url: str, tmp_path: Path, path: str
) -> None:
    """A checksum mismatch fails the download (retryable: a new transfer may be whole), and no
    file is left, final or partial."""
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError, match="corrupt package") as caught:
            await downloader.fetch(base_url + path, tmp_path / "p.zip", 5.0)
    assert caught.value.retryable
    assert files_under(tmp_path) == []


@pytest.mark.anyio
async def test_a_package_announced_over_the_limit_is_refused_before_writing(
    base_url: str, tmp_path: Path
) -> None:
    """Content-Length above --max-package-size fails at once: nothing is written."""
    async with AiohttpDownloader(allow_loopback=True, max_size=len(BODY) - 1) as downloader:
        with pytest.raises(DownloadError, match="max-package-size") as caught:
            await downloader.fetch(base_url + "/crc.zip", tmp_path / "p.zip", 5.0)
    assert not caught.value.retryable
    assert files_under(tmp_path) == []


@pytest.mark.anyio
async def test_a_package_streaming_past_the_limit_is_cut_off(base_url: str, tmp_path: Path) -> None:
    """Without Content-Length the limit is enforced while streaming; nothing is left behind."""
    limit = 256 * 1024
    async with AiohttpDownloader(allow_loopback=True, max_size=limit) as downloader:
        with pytest.raises(DownloadError, match="max-package-size"):
            await downloader.fetch(base_url + "/unannounced.zip", tmp_path / "p.zip", 5.0)
    assert files_under(tmp_path) == []


@pytest.mark.anyio
async def test_no_download_starts_without_room_on_the_disk(base_url: str, tmp_path: Path) -> None:
    """Free space is checked before anything is fetched, and against the announced size."""
    tight = AiohttpDownloader(allow_loopback=True, free_space=lambda folder: 1024)
    async with tight as downloader:
        with pytest.raises(DownloadError, match="not enough free disk space") as caught:
            await downloader.fetch(base_url + "/crc.zip", tmp_path / "p.zip", 5.0)
    assert not caught.value.retryable
    just_short = FREE_SPACE_RESERVE + len(BODY) - 1
    short = AiohttpDownloader(allow_loopback=True, free_space=lambda folder: just_short)
    async with short as downloader:
        with pytest.raises(DownloadError, match="not enough free disk space"):
            await downloader.fetch(base_url + "/crc.zip", tmp_path / "p.zip", 5.0)
    assert files_under(tmp_path) == []


@pytest.mark.anyio
async def test_a_cancelled_download_leaves_no_partial_file(base_url: str, tmp_path: Path) -> None:
    """A download stopped half-way (Ctrl-C, SIGTERM, a wait timeout) leaves no file at all."""
    dest = tmp_path / "r" / "1" / "p.zip"
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        with anyio.move_on_after(0.5) as scope:
            await downloader.fetch(base_url + "/slow.zip", dest, 5.0)
    assert scope.cancelled_caught
    assert files_under(tmp_path) == []


@pytest.mark.anyio
async def test_a_partial_file_a_killed_run_left_is_removed_by_the_next_download(
    base_url: str, tmp_path: Path
) -> None:
    """A SIGKILLed download leaves its .part file (no `finally` runs); the next download of the
    same package removes it once stale, and leaves alone one still being written, and other
    packages' files."""
    dest = tmp_path / "r" / "1" / "p.zip"
    dest.parent.mkdir(parents=True)
    stale = dest.parent / "p.zip.abc123.part"
    fresh = dest.parent / "p.zip.def456.part"
    other = dest.parent / "q.zip.abc123.part"
    for part in (stale, fresh, other):
        part.write_bytes(b"PK half a package")
    long_ago = time.time() - 3600
    for part in (stale, other):
        os.utime(part, (long_ago, long_ago))
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        await downloader.fetch(base_url + "/crc.zip", dest, 5.0)
    assert sorted(p.name for p in dest.parent.iterdir()) == [
        "p.zip",
        "p.zip.def456.part",
        "q.zip.abc123.part",
    ]


@pytest.mark.anyio
async def test_package_folders_are_made_private(base_url: str, tmp_path: Path) -> None:
    """DIR/<region>/<project_id>/ are created 0700: the packages hold a workspace's code."""
    dest = tmp_path / "pk" / "cn-shanghai" / "12345" / "a-1.zip"
    async with AiohttpDownloader(allow_loopback=True) as downloader:
        await downloader.fetch(base_url + "/crc.zip", dest, 5.0)
    for folder in (tmp_path / "pk", dest.parent.parent, dest.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "2130706433",
        "localhost",
        "LOCALHOST.",
        "pkg.localhost",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "0.0.0.0",
        "[::]",
    ],
)
def test_loopback_package_urls_are_refused_unless_the_endpoint_is_loopback(host: str) -> None:
    """A DownloadUrl pointing at this machine, in any spelling, is refused when the API is
    not on this machine too (a hostile answer must not make the runner fetch local services)."""
    assert is_local_host(host.strip("[]"))
    with pytest.raises(DownloadError, match="on this machine") as caught:
        check_url(f"https://{host}/x.zip?Signature=s")
    assert not caught.value.retryable


@pytest.mark.parametrize(
    "url",
    ["https://oss.example.com:99999/x.zip", "https://[::1/x.zip", "https://u:p@oss.example.com/x"],
    ids=["port out of range", "unclosed bracket", "user info"],
)
def test_a_malformed_package_url_is_a_failed_download_not_a_crash(url: str) -> None:
    """A URL that cannot be fetched is a DownloadError of that task (not retryable)."""
    with pytest.raises(DownloadError) as caught:
        check_url(url)
    assert not caught.value.retryable
    assert url_expires(url) is None or url_expires(url) is not None  # never raises
    assert isinstance(url_place(url), str)


def test_plain_http_is_refused_even_from_loopback_to_a_remote_host() -> None:
    """With a loopback endpoint, http is still only for loopback hosts; https goes anywhere."""
    with pytest.raises(DownloadError, match="plain http"):
        check_url("http://oss.example.com/x.zip", allow_loopback=True)
    check_url("https://oss.example.com/x.zip", allow_loopback=False)


@pytest.mark.anyio
async def test_a_task_with_a_malformed_url_fails_its_download_only(tmp_path: Path) -> None:
    """In the download phase, a DownloadUrl that is not even a URL fails that task's download;
    the other task's package is saved and the run goes on."""
    from runner.clock import FakeClock
    from runner.journal import Journal, MarkExported
    from tests.fakes import FakeDownloader, FakeService
    from tests.test_lifecycle import created, full, run_lifecycle

    clock = FakeClock()
    with Journal.open(tmp_path / "j.db") as journal:
        service = FakeService(clock=clock, export_duration=0.0)
        bad, good = created(journal, service, ["bad", "good"])
        migration = service.existing[(12345, "good")]
        journal.apply(
            [
                MarkExported(bad, "https://[::1/x.zip?Expires=4102444800&Signature=s"),
                MarkExported(good, service.url(migration, 4102444800)),
            ]
        )
        stats = await run_lifecycle(
            journal, service, clock, full(tmp_path), downloader=FakeDownloader()
        )
    assert (stats.downloaded, stats.download_failed) == (1, 1)
