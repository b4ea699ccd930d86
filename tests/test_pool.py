"""The worker pool: items taken lazily by at most `concurrency` workers, never more workers
than items."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

from runner.pool import run_pool


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Draws:
    """An iterator that counts every draw, each worker's last (empty) one too."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.count = 0

    def __iter__(self) -> Draws:
        return self

    def __next__(self) -> int:
        self.count += 1
        if not self.items:
            raise StopIteration
        return self.items.pop(0)


class Counted(list[int]):
    """A list (it has a length) drawn through one counting iterator."""

    def __init__(self, items: list[int]) -> None:
        super().__init__(items)
        self.draws = Draws(list(items))

    def __iter__(self) -> Iterator[int]:
        return self.draws


@pytest.mark.anyio
async def test_no_more_workers_start_than_there_are_items() -> None:
    """A list of three items with a thousand workers asked for is drawn by three workers: each
    draws once more than it handles: six draws in all, not a thousand and three."""
    handled: list[int] = []

    async def handle(item: int) -> None:
        await anyio.lowlevel.checkpoint()
        handled.append(item)

    items = Counted([1, 2, 3])
    await run_pool(items, 1000, handle)
    assert sorted(handled) == [1, 2, 3]
    assert items.draws.count == 6


@pytest.mark.anyio
async def test_items_are_drawn_lazily_by_at_most_concurrency_workers() -> None:
    """An iterator (no length) is drawn one item per free worker, never more in hand at once
    than the workers."""
    in_hand = 0
    most = 0

    def items() -> Iterator[int]:
        yield from range(50)

    async def handle(item: int) -> None:
        nonlocal in_hand, most
        in_hand += 1
        most = max(most, in_hand)
        await anyio.lowlevel.checkpoint()
        in_hand -= 1

    await run_pool(items(), 4, handle)
    assert most == 4
