"""The aiohttp transport against a loopback server: answers, and the two failure kinds."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

from runner.dataworks.transport import (
    AiohttpTransport,
    ConnectError,
    ExchangeError,
    HttpRequest,
)
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


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/hang", hang)
    app.router.add_post("/drop", drop)
    async with serving(app) as url:
        yield url


def request(url: str, body: bytes = b"abc") -> HttpRequest:
    return HttpRequest("POST", url, {"content-type": "application/x-www-form-urlencoded"}, body)


@pytest.mark.anyio
async def test_answer_is_returned_with_lower_case_headers(base_url: str) -> None:
    """Status, body and headers come back; header names are lower-cased; ours are sent as is."""
    async with AiohttpTransport() as transport:
        response = await transport.send(request(base_url + "/echo"), timeout=5)
    assert response.status == 201
    assert response.body == b"cba"
    assert response.headers["x-acs-request-id"] == "RID"
    assert response.headers["x-seen-content-type"] == "application/x-www-form-urlencoded"


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
    """A request sent but not answered in time has an unknown outcome."""
    async with AiohttpTransport() as transport:
        with pytest.raises(ExchangeError, match=r"no answer from 127\.0\.0\.1:\d+ within"):
            await transport.send(request(base_url + "/hang"), timeout=0.05)


@pytest.mark.anyio
async def test_dropped_connection_is_an_exchange_error(base_url: str) -> None:
    """A connection closed after the request left has an unknown outcome."""
    async with AiohttpTransport() as transport:
        with pytest.raises(ExchangeError):
            await transport.send(request(base_url + "/drop"), timeout=5)


@pytest.mark.anyio
async def test_send_outside_the_block_is_refused() -> None:
    """Using the transport before entering it is a programming error."""
    with pytest.raises(RuntimeError, match="async with"):
        await AiohttpTransport().send(request("http://127.0.0.1:1/"), timeout=1)
