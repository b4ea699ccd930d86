"""The journal's single writer for async code: group commit, off the event loop.

Workers `await writer.write(op, ...)`; the writer task commits every op waiting at that moment in
one transaction (in a thread of its own, so the loop never waits on fsync) and wakes each caller
only once its ops are on disk.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from runner.journal import Journal, JournalDataError, JournalError, JournalWriteError, Op
from runner.logs import get_logger

log = get_logger("runner.journal")

T = TypeVar("T")


class SupportsApply(Protocol):
    def apply(self, ops: Sequence[Op]) -> None: ...


def _apply_isolated(journal: SupportsApply, batch: Sequence[_Waiter]) -> dict[int, BaseException]:
    """Apply a batch in one transaction; when one waiter's ops hold a value that cannot be
    stored, apply each waiter's ops on their own instead, so a bad value fails only its own
    waiter, never the other tasks' records in the batch. Returns the errors by waiter index."""
    try:
        journal.apply([op for waiter in batch for op in waiter.ops])
        return {}
    except JournalDataError:
        if len(batch) == 1:
            raise
    errors: dict[int, BaseException] = {}
    for index, waiter in enumerate(batch):
        try:
            journal.apply(waiter.ops)
        except JournalDataError as exc:
            errors[index] = exc
    return errors


class _QuickSwitches:
    """While any commit thread lives, the interpreter's switch interval is at most INTERVAL.

    A thread that wants the GIL waits a whole interval (5 ms by default) before it makes the
    holder let go. The commit thread wants it back the moment its fsync returns, while the loop
    is busy in pure Python (signing the next requests): at 5 ms that finish waited until the
    loop fell idle, and the loop then idled for it. Counted, so that overlapping writers restore
    the interval they found only when the last one ends."""

    INTERVAL = 0.0001

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0.0

    def enter(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, self.INTERVAL))
            self._users += 1

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                sys.setswitchinterval(self._saved)


QUICK_SWITCHES = _QuickSwitches()


class _CommitThread:
    """The thread a writer's commits run in, one at a time, for the length of its `run`.

    Cheap to reach from a busy event loop: a job is handed over through a C queue, at once (no
    task switch first), and its end told back through a socket the writer task waits on. A
    pooled thread (anyio.to_thread) takes the GIL several more times per job, and yields to
    every ready task before the job even starts.

    The loop never waits for the thread to take the job: woken, the thread has the GIL within
    one switch interval (QUICK_SWITCHES), while the loop goes on. (It used to wait until the
    thread had taken it: the same on an idle machine, but where the other cores are busy
    that wait is an OS scheduling delay, ~1 ms a commit with the simulator in its own process.)
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._done, self._signal = socket.socketpair()
        self._done.setblocking(False)
        self._thread = threading.Thread(target=self._serve, name="journal commits", daemon=True)
        self._thread.start()
        QUICK_SWITCHES.enter()  # left in stop()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def run(self, func: Callable[[], T]) -> T:
        """`func()` in the thread; returns (or raises) what it did once it is done. Not
        cancellable: whoever waits for it learns the true outcome."""
        outcome: list[T] = []
        failure: list[BaseException] = []

        def job() -> None:
            try:
                outcome.append(func())
            except BaseException as exc:  # handed to the awaiting task, never lost in the thread
                failure.append(exc)
            finally:
                self._signal.send(b"\0")

        self._jobs.put(job)
        with anyio.CancelScope(shield=True):
            await anyio.wait_readable(self._done)
        self._done.recv(1)
        if failure:
            raise failure[0]
        return outcome[0]

    def stop(self) -> None:
        """No more jobs (none is running: each was awaited); the thread ends."""
        self._jobs.put(None)
        self._thread.join()
        self._done.close()
        self._signal.close()
        QUICK_SWITCHES.leave()


@dataclass(slots=True, eq=False)
class _Waiter:
    ops: tuple[Op, ...]
    posted: bool = False  # nobody waits for it
    error: BaseException | None = None


class _Batch:
    """Waiters queued together, committed together, woken together."""

    __slots__ = ("finished", "futures", "waiters")

    def __init__(self) -> None:
        self.waiters: list[_Waiter] = []
        # one asyncio future per task that waits (the run is on asyncio, aiohttp needs it), as
        # asyncio.Event keeps, without its coroutine per wait: a cancelled wait cancels its own
        # future only, never its neighbours'
        self.futures: list[asyncio.Future[None]] = []
        self.finished = False

    def wait(self, waiter: _Waiter) -> Generator[Any, None, BaseException | None]:
        """Wait until the batch is committed; `waiter`'s error, if any. A generator to `yield
        from` in an `__await__`: no coroutine of its own per waiter."""
        if not self.finished:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.futures.append(future)
            yield from future
        return waiter.error

    def finish(self, errors: Callable[[int], BaseException | None]) -> None:
        for index, waiter in enumerate(self.waiters):
            waiter.error = errors(index)
        self.finished = True
        for future in self.futures:
            if not future.done():  # done: its waiter was cancelled
                future.set_result(None)


class Committed:
    """The commit of ops queued with `JournalWriter.queue`: awaiting it returns once they are
    committed, else raises JournalWriteError. Left unawaited, the ops are committed all the
    same (and nothing warns)."""

    __slots__ = ("_batch", "_waiter")

    def __init__(self, batch: _Batch, waiter: _Waiter) -> None:
        self._batch = batch
        self._waiter = waiter

    def __await__(self) -> Generator[Any, None, None]:
        error = yield from self._batch.wait(self._waiter)
        if error is not None:
            raise JournalWriteError(f"journal write failed: {error}") from error


class JournalWriter:
    """The one task that writes the journal during a run, committing in groups.

    Its lifetime is a block; leaving it commits what is queued, then stops the writer task::

        async with JournalWriter(journal) as writer, anyio.create_task_group() as workers:
            workers.start_soon(worker, writer)  # in worker: await writer.write(MarkInFlight(...))

    Or in a task group of one's own: `tg.start_soon(writer.run)`, and `writer.close()` when no
    more writes will come; `run` returns once the queue is drained.
    """

    def __init__(self, journal: SupportsApply, *, max_batch: int = 1000) -> None:
        self._journal = journal
        self._max_batch = max_batch
        # A batch leaves the queue only to be applied, so no waiter is lost to a cancellation;
        # only the last one takes new waiters, up to max_batch. Unbounded, yet bounded in
        # practice: each caller awaits its own commit.
        self._queue: deque[_Batch] = deque()
        self._wakeup: anyio.Event | None = None
        self._closed = False
        self._task_group: TaskGroup | None = None
        self._failed: BaseException | None = None  # a posted batch that could not be committed
        self._thread: _CommitThread | None = None  # while `run` runs
        # a real journal applies a batch here, on the loop (a few executemany runs), and only its
        # commit, the fsync, goes to the thread: the thread no longer holds the GIL per statement
        self._stage = journal.stage if isinstance(journal, Journal) else None

    async def write(self, *ops: Op) -> None:
        """Return once `ops` are committed, all in one transaction; else raise JournalWriteError.

        A caller cancelled while waiting cannot tell whether its ops were committed.
        """
        if not ops:
            return
        if self._closed:
            raise JournalWriteError("the journal writer is closed: nothing was written")
        if self._failed is not None:
            raise JournalWriteError(f"journal write failed: {self._failed}") from self._failed
        waiter = _Waiter(ops)
        await Committed(self._enqueue(waiter), waiter)

    def queue(self, *ops: Op) -> Committed:
        """Queue `ops` (at least one) to be committed in one transaction, as `write` does, and
        return at once what to await for their commit: the caller may work meanwhile (build the
        request whose intent they are) and await it before anything leaves. The writer takes
        the batch at its next turn: a caller that yields once lets the commit start."""
        if not ops:
            raise ValueError("nothing to queue")
        if self._closed:
            raise JournalWriteError("the journal writer is closed: nothing was written")
        if self._failed is not None:
            raise JournalWriteError(f"journal write failed: {self._failed}") from self._failed
        waiter = _Waiter(ops)
        return Committed(self._enqueue(waiter), waiter)

    async def flush(self) -> None:
        """Return once everything queued before this call (posted ops too) is committed."""
        if self._closed:
            return
        waiter = _Waiter(())  # behind whatever is queued or being committed now
        await Committed(self._enqueue(waiter), waiter)
        error = self._failed
        if error is not None:
            raise JournalWriteError(f"journal write failed: {error}") from error

    def post(self, *ops: Op) -> None:
        """Queue `ops` to be committed, all in one transaction, without waiting for the commit.

        For outcomes a crash may lose without harm (the row stays in flight, and the next run
        looks it up): the caller goes on at once. A failed commit of posted ops fails every later
        `write` and `post`, so it is never silent.
        """
        if not ops:
            return
        if self._closed:
            raise JournalWriteError("the journal writer is closed: nothing was written")
        if self._failed is not None:
            raise JournalWriteError(f"journal write failed: {self._failed}") from self._failed
        self._enqueue(_Waiter(ops, posted=True))

    def _enqueue(self, waiter: _Waiter) -> _Batch:
        batch = self._queue[-1] if self._queue else None
        if batch is None or len(batch.waiters) >= self._max_batch:
            batch = _Batch()
            self._queue.append(batch)
        batch.waiters.append(waiter)
        self._wake()
        return batch

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def close(self) -> None:
        """No more writes: `run` returns once what is queued is committed."""
        self._closed = True
        self._wake()

    async def run(self) -> None:
        """Commit batches of whatever is waiting until closed and drained (one run at a time)."""
        self._thread = _CommitThread()
        try:
            while self._queue or not self._closed:
                if not self._queue:
                    self._wakeup = anyio.Event()
                    await self._wakeup.wait()
                    continue
                await anyio.lowlevel.checkpoint_if_cancelled()
                await self._commit(self._queue.popleft())
        finally:  # stopped early (cancelled): whoever still waits is told, not left hanging
            self._thread.stop()
            self._thread = None
            self._closed = True
            self._wakeup = None
            stopped = JournalError("the journal writer stopped before this write was committed")
            while self._queue:
                self._queue.popleft().finish(lambda _: stopped)

    async def _commit(self, batch: _Batch) -> None:
        error: BaseException | None = None
        rejected: dict[int, BaseException] = {}
        waiters = batch.waiters
        try:
            # The commit in the writer's thread, so the event loop never waits on fsync. Not
            # cancellable: a batch taken off the queue is always applied, so its waiters learn
            # the true outcome.
            assert self._thread is not None
            if self._stage is not None:
                staged = self._stage([waiter.ops for waiter in waiters])
                rejected = dict(staged.rejected)
                await self._thread.run(staged.commit)
            else:
                journal = self._journal
                rejected = await self._thread.run(lambda: _apply_isolated(journal, waiters))
        except JournalDataError as exc:  # the batch's one waiter held a value that cannot be stored
            rejected = {0: exc}
        except Exception as exc:
            error = exc
            if any(waiter.posted for waiter in waiters):
                self._failed = exc
        finally:
            for index, own in rejected.items():
                if waiters[index].posted:
                    # an outcome a crash could have lost as well: the row stays as its intent
                    # left it (in flight: the next run looks it up); the run goes on
                    log.error("journal record dropped", reason=str(own))
            batch.finish(lambda index: rejected.get(index) or error)

    async def __aenter__(self) -> Self:
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        task_group.start_soon(self.run)
        self._task_group = task_group
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self.close()
        task_group, self._task_group = self._task_group, None
        assert task_group is not None, "JournalWriter exited without being entered"
        if et is not None and issubclass(et, anyio.get_cancelled_exc_class()):
            return await task_group.__aexit__(et, e, tb)
        # The block's own exception is not the writer's: let the writer drain, then let the
        # exception go on unwrapped instead of inside the task group's ExceptionGroup.
        await task_group.__aexit__(None, None, None)
        return None
