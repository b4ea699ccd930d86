"""The one-method transport seam, its aiohttp implementation, and exception mapping.

The client talks to a `Transport`; tests swap in a plain async function wrapped by
`FunctionTransport`, so nothing opens a socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import aiohttp
from yarl import URL


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str  # already encoded: sent exactly as given
    headers: Mapping[str, str] = field(repr=False)  # carries the signature and any STS token
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


class TransportError(Exception):
    """The exchange failed below HTTP."""


class ConnectError(TransportError):
    """Nothing was sent: the connection could not be made. Safe to retry."""


class ExchangeError(TransportError):
    """The request may have reached the server (timeout, reset): the outcome is unknown."""


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


class AiohttpTransport:
    """One shared aiohttp session for the whole run; errors mapped to the two transport kinds."""

    def __init__(self, *, limit: int = 100) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AiohttpTransport:
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
        # skip_auto_headers keeps aiohttp from adding unsigned headers we did not ask for
        self._session = aiohttp.ClientSession(
            connector=connector,
            skip_auto_headers=("User-Agent", "Content-Type"),
            auto_decompress=True,
        )
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

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        if self._session is None:
            raise RuntimeError("AiohttpTransport used outside 'async with'")
        client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5.0))
        try:
            async with self._session.request(
                request.method,
                URL(request.url, encoded=True),
                headers=dict(request.headers),
                data=request.body or None,
                timeout=client_timeout,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                headers = {k.lower(): v for k, v in resp.headers.items()}
                return HttpResponse(resp.status, headers, body)
        except aiohttp.ClientSSLError as exc:
            # the handshake may have failed after bytes were sent: treat as unknown
            raise ExchangeError(f"TLS error: {exc}") from exc
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # refused, unreachable, DNS failure or no connection in time: nothing was sent
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        except TimeoutError as exc:
            raise ExchangeError(f"no answer within {timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            # the name only: some aiohttp messages quote the URL, whose query may carry a token
            raise ExchangeError(type(exc).__name__) from exc
