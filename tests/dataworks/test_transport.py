"""The aiohttp transport against a loopback server: answers, and the two failure kinds."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey

from runner.dataworks.download import DownloadError
from runner.dataworks.transport import (
    AiohttpTransport,
    ConnectError,
    ExchangeError,
    ExchangeTimeout,
    HttpRequest,
    transfer_failure,
)
from runner.dataworks.upload import UploadError
from tests.loopback import serving


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(
        status=201,
        body=body[::-1],
        headers={"X-Acs-Request-Id": "RID", "X-Seen-Content-Type": request.content_type},
    )


async def hang(request: web.Request) -> web.Response:
    await anyio.Event().wait()
    raise AssertionError("unreachable")  # pragma: no cover


async def drop(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    return web.Response()


async def cut_short(request: web.Request) -> web.StreamResponse:
    """Announces 100 bytes, sends 10, closes."""
    response = web.StreamResponse(headers={"Content-Length": "100"})
    await response.prepare(request)
    await response.write(b"0123456789")
    assert request.transport is not None
    request.transport.close()
    return response


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/hang", hang)
    app.router.add_post("/drop", drop)
    app.router.add_post("/cut", cut_short)
    async with serving(app) as url:
        yield url


def request(url: str, body: bytes = b"abc") -> HttpRequest:
    return HttpRequest("POST", url, {"content-type": "application/x-www-form-urlencoded"}, body)


@pytest.mark.anyio
async def test_answer_is_returned_with_headers_found_by_lower_case_names(base_url: str) -> None:
    """Status, body and headers come back; a header sent as X-Acs-Request-Id is found by its
    lower-case name (as the answer parser looks it up); ours are sent as is."""
    async with AiohttpTransport() as transport:
        response = await transport.send(request(base_url + "/echo"), timeout=5)
    assert response.status == 201
    assert response.body == b"cba"
    assert response.headers["x-acs-request-id"] == "RID"
    assert response.headers["x-seen-content-type"] == "application/x-www-form-urlencoded"
    assert response.headers.get("x-acs-request-id") == "RID"


@pytest.mark.anyio
async def test_refused_connection_is_a_connect_error() -> None:
    """Nothing listening: ConnectError, which is safe to retry."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AiohttpTransport() as transport:
        with pytest.raises(ConnectError):
            await transport.send(request(f"http://127.0.0.1:{port}/"), timeout=5)


@pytest.mark.anyio
async def test_no_answer_in_time_is_an_exchange_error(base_url: str) -> None:
    """A request sent but not answered in time has an unknown outcome (a timeout, told apart
    from a reset)."""
    async with AiohttpTransport() as transport:
        with pytest.raises(ExchangeTimeout, match=r"no answer from 127\.0\.0\.1:\d+ within"):
            await transport.send(request(base_url + "/hang"), timeout=0.05)


@pytest.mark.anyio
async def test_dropped_connection_is_an_exchange_error(base_url: str) -> None:
    """A connection closed after the request left has an unknown outcome."""
    async with AiohttpTransport() as transport:
        with pytest.raises(ExchangeError):
            await transport.send(request(base_url + "/drop"), timeout=5)


@pytest.mark.anyio
async def test_an_answer_shorter_than_its_length_is_an_exchange_error(base_url: str) -> None:
    """A body cut short of its Content-Length (read whole, not in chunks) is never taken for
    the answer: the outcome is unknown."""
    async with AiohttpTransport() as transport:
        with pytest.raises(ExchangeError, match=r"from 127\.0\.0\.1:\d+"):
            await transport.send(request(base_url + "/cut"), timeout=5)


@pytest.mark.anyio
async def test_send_outside_the_block_is_refused() -> None:
    """Using the transport before entering it is a programming error."""
    with pytest.raises(RuntimeError, match="async with"):
        await AiohttpTransport().send(request("http://127.0.0.1:1/"), timeout=1)


_KEY = ConnectionKey("h", 1, True, True, None, None, None)


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (aiohttp.ClientSSLError(_KEY, OSError()), "TLS error from h:1"),
        (aiohttp.ClientConnectorError(_KEY, OSError()), "cannot connect to h:1"),
        (aiohttp.ConnectionTimeoutError(), "cannot connect to h:1"),
        (TimeoutError(), "{silent} from h:1 in time"),
        (
            aiohttp.ServerDisconnectedError("https://h:1/?Signature=s3cr3t"),
            "ServerDisconnectedError from h:1",
        ),
    ],
)
def test_a_failed_transfer_is_retryable_and_names_the_place_only(
    exc: BaseException, text: str
) -> None:
    """A download's or an upload's aiohttp failure becomes its own retryable error, saying what
    failed with which place, never aiohttp's message (it may quote a signed URL)."""
    for error, silent in ((DownloadError, "no data"), (UploadError, "no answer")):
        failure = transfer_failure(error, exc, "h:1", silent=silent)
        assert type(failure) is error
        assert str(failure) == text.format(silent=silent)
        assert failure.retryable
        assert "s3cr3t" not in str(failure)


@pytest.mark.anyio
async def test_a_signed_get_dropped_on_a_kept_alive_connection_is_never_resent_as_it_was() -> None:
    """A GET (AuthorizeFileUpload) whose kept-alive connection the server drops is an
    ExchangeError to the attempt loop, which signs it anew: aiohttp does not send it again as
    it was (the service would refuse the repeated nonce as a replay, hiding the drop)."""
    seen: list[str] = []

    async def second_dropped(request: web.Request) -> web.StreamResponse:
        seen.append(request.query_string)
        if len(seen) == 2:
            assert request.transport is not None
            request.transport.close()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/get", second_dropped)
    async with serving(app) as url, AiohttpTransport() as transport:
        get = HttpRequest("GET", url + "/get?SignatureNonce=n1", {}, b"")
        assert (await transport.send(get, timeout=5)).status == 200
        again = HttpRequest("GET", url + "/get?SignatureNonce=n2", {}, b"")
        with pytest.raises(ExchangeError):
            await transport.send(again, timeout=5)
    assert seen == ["SignatureNonce=n1", "SignatureNonce=n2"]  # n2 went once
