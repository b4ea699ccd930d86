"""Secrets and signatures stay out of errors, reprs, the stop message and core files."""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from runner import logs
from runner.dataworks import signing
from runner.dataworks.client import DataWorksClient
from runner.dataworks.credentials import Credentials
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.transport import AiohttpTransport, ConnectError, HttpRequest
from runner.models import ApiError, ErrorKind, ExportSpec, TaskKey
from runner.redact import clean_message

KEY_ID = "LTAI5tKeyIdShownNowhere"
SECRET = "secret-Qz7vX2pL9w"
TOKEN = "sts-token-Zm9vYmFy"
V1_URL = f"http://127.0.0.1:9/?Action=A&AccessKeyId={KEY_ID}&Signature=c2lnbmF0dXJl"


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connect to it hangs, then times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # the connect completes in the background
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in (*fillers, server):
            sock.close()


@pytest.mark.anyio
async def test_a_connect_timeout_names_the_host_not_the_signed_url(full_backlog_port: int) -> None:
    """aiohttp's connect-timeout message quotes the whole URL; the transport's error names the
    error type and the host only, so a V1 key id and signature never reach the journal."""
    url = V1_URL.replace(":9/", f":{full_backlog_port}/")
    async with AiohttpTransport(connect_timeout=0.1) as transport:
        with pytest.raises(ConnectError) as raised:
            await transport.send(HttpRequest("POST", url, {}), timeout=5)
    message = str(raised.value)
    assert message == f"ConnectionTimeoutError: cannot connect to 127.0.0.1:{full_backlog_port}"


@pytest.mark.anyio
async def test_a_v1_create_that_cannot_connect_leaks_neither_key_id_nor_signature(
    full_backlog_port: int,
) -> None:
    """Through the client, with V1 signing: the classified error holds no part of the URL."""
    creds = Credentials(KEY_ID, SECRET, TOKEN)
    endpoint = f"http://127.0.0.1:{full_backlog_port}"
    async with AiohttpTransport(connect_timeout=0.1) as transport:
        client = DataWorksClient(
            transport, creds, Endpoints(endpoint), signature_version="v1", timeout=5
        )
        with pytest.raises(ApiError) as raised:
            await client.create_export_migration(ExportSpec(TaskKey("cn-shanghai", 2, "t")))
    error = raised.value
    assert error.kind is ErrorKind.RETRYABLE
    for text in (str(error), error.message):
        for secret in (KEY_ID, "Signature", SECRET, TOKEN):
            assert secret not in text


def test_clean_message_scrubs_url_signatures() -> None:
    """A server message quoting a presigned or V1-signed URL keeps the URL readable, not usable."""
    raw = (
        "denied for https://b.oss.example.com/p.zip?Expires=9&OSSAccessKeyId=AK1&Signature=S%2B"
        f" and {V1_URL}"
    )
    cleaned = clean_message(raw)
    for secret in ("AK1", "S%2B", KEY_ID, "c2lnbmF0dXJl"):
        assert secret not in cleaned
    assert "https://b.oss.example.com/p.zip?Expires=9" in cleaned


def test_signed_requests_and_http_requests_show_no_signature_in_repr() -> None:
    """repr() of a signed request (V3 or V1) and of the transport's request shows no signature,
    key id in a URL, or token."""
    creds = Credentials(KEY_ID, SECRET, TOKEN)
    for version in ("v3", "v1"):
        signed = signing.build_request(
            signature_version=version,
            method="POST",
            host="dataworks.cn-shanghai.aliyuncs.com",
            action="ListMigrations",
            api_version="2020-05-18",
            body_params={"ProjectId": "2"},
            credentials=creds,
            timestamp=signing.timestamp_of(datetime(2024, 1, 1, tzinfo=UTC)),
            nonce="n",
        )
        http = HttpRequest("POST", "https://h" + signed.path_and_query, signed.headers)
        for text in (repr(signed), repr(http), repr(creds)):
            assert "Signature" not in text
            assert TOKEN not in text
            assert SECRET not in text
        assert KEY_ID not in repr(http)


def test_the_stop_message_is_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one line printed for an unexpected error masks known secrets and URL signatures and
    carries no escape sequence."""
    from runner import cli as cli_module
    from runner.commands import status

    logs.REDACTOR.add(SECRET)

    def explode(*args: object, **kwargs: object) -> int:
        raise RuntimeError(f"failed with {SECRET} at {V1_URL} \x1b[2J")

    monkeypatch.setattr(status, "execute", explode)
    monkeypatch.setattr("sys.argv", ["runner", "status"])
    with pytest.raises(SystemExit) as exited:
        cli_module.main()
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert "RuntimeError: failed with [redacted]" in err
    for leaked in (SECRET, KEY_ID, "c2lnbmF0dXJl", "\x1b"):
        assert leaked not in err


def test_core_dumps_are_disabled_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() sets RLIMIT_CORE to 0 before anything else: no core file could hold a secret."""
    from runner import cli as cli_module

    calls: list[tuple[int, tuple[int, int]]] = []
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: calls.append((which, limits)))
    monkeypatch.setattr("sys.argv", ["runner", "--version"])
    cli_module.main()
    assert calls == [(resource.RLIMIT_CORE, (0, 0))]


def test_a_runner_process_has_no_core_limit() -> None:
    """In a real process, the core size limit is 0 once main() has started."""
    code = (
        "import resource, sys\n"
        "from runner import cli\n"
        "sys.argv = ['runner', '--version']\n"
        "cli.main()\n"
        "print(resource.getrlimit(resource.RLIMIT_CORE))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert out.strip().endswith("(0, 0)")
