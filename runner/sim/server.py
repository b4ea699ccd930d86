"""Running the simulator as a server on 127.0.0.1: in-process for tests, or for `runner sim`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from runner.sim.app import SimConfig, build_app

HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def serve(
    config: SimConfig,
    host: str = HOST,
    port: int = 0,
    *,
    app: web.Application | None = None,
    shutdown_timeout: float = 1.0,
) -> AsyncIterator[str]:
    """Serve the simulator until the block ends; yields its base URL. Port 0 picks a free port.

    `app` may be passed to keep a handle on it (its stats and state); it must have been built from
    the same config. A handler whose client went away is cancelled (so a timeout fault's hang
    ends with its connection), and shutdown waits at most `shutdown_timeout` for the others."""
    if host != HOST:
        raise ValueError(f"the simulator only binds {HOST}")
    runner = web.AppRunner(
        app if app is not None else build_app(config),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = int(runner.addresses[0][1])
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()


def run_forever(
    config: SimConfig,
    port: int = 0,
    *,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve until Ctrl-C, announcing the base URL first (on stdout by default)."""

    def say(url: str) -> None:
        print(url, flush=True)

    async def main() -> None:
        async with serve(config, port=port) as url:
            (announce or say)(url)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
