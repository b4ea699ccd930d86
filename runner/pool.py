"""The worker pool every phase uses, and what a phase tells the progress display."""

from __future__ import annotations

import enum
import gc
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from types import TracebackType
from typing import Protocol, Self, TypeVar

import anyio

from runner.models import TaskKey

Item = TypeVar("Item")

# Allocations between two collections of the youngest generation while phases run (Python's
# default is 700): a phase makes a steady stream of short-lived objects per request.
STEADY_GC_THRESHOLD = 10_000


class TaskOutcome(enum.StrEnum):
    """What a phase did with one task (progress counts and the tests)."""

    CREATED = "created"
    ADOPTED = "adopted"
    FAILED = "failed"
    UNRESOLVED = "unresolved"
    STOPPED = "stopped"
    SKIPPED = "skipped"
    STARTED = "started"
    NOT_STARTED = "not started"
    EXPORTED = "exported"
    DOWNLOADED = "downloaded"
    PRESENT = "present"
    NOT_DOWNLOADED = "not downloaded"
    EXISTS = "exists"


class Progress(Protocol):
    """Told of each task a phase finishes (the CLI's bar or log lines)."""

    def task_finished(self, key: TaskKey, outcome: TaskOutcome) -> None: ...


class PhaseProgress(Progress, Protocol):
    """A progress display entered for the length of one phase."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


ProgressFactory = Callable[[str, int], PhaseProgress]  # (phase, total) -> progress


class Silent:
    """Progress that shows nothing."""

    def __enter__(self) -> Silent:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def task_finished(self, key: TaskKey, outcome: TaskOutcome) -> None:
        return None


def silent(phase: str, total: int) -> PhaseProgress:
    return Silent()


async def run_pool(
    items: Iterable[Item],
    concurrency: int,
    handle: Callable[[Item], Awaitable[None]],
) -> None:
    """Hand every item to one of `concurrency` workers inside one task group; returns when all
    are handled. The workers draw from one shared iterator, so items are taken lazily, one per
    free worker, and an iterator is never held whole."""
    if isinstance(items, Sized):  # no more workers than items: a worker costs memory
        concurrency = min(concurrency, len(items))
    source = iter(items)

    async def worker() -> None:
        for item in source:
            await handle(item)

    async with anyio.create_task_group() as tg:
        for _ in range(max(1, concurrency)):
            tg.start_soon(worker)


@contextmanager
def steady_gc() -> Iterator[None]:
    """For the length of the block (the phases), the cyclic garbage collector leaves alone what
    exists when it starts (the manifest, the plan: held for the whole run) and collects the
    young generation every STEADY_GC_THRESHOLD allocations; both restored after. Otherwise each
    collection walks every object of the requests in flight, and now and then the whole heap."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], STEADY_GC_THRESHOLD), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
