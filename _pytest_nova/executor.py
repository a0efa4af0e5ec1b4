"""One bounded thread pool for all remote work of a process, joined at the end of the run.

Every engine's concurrent work (fact gathering, firewall listeners and probes, DNS queries, balancer probes,
kubectl calls) runs on one :class:`~concurrent.futures.ThreadPoolExecutor` of at most :data:`MAX_THREADS`
threads. Each call also bounds its own tasks in flight (``limit``): a batch keeps at most that many in the
pool's queue and submits the next item when one ends, so a large background batch (facts of 1,000 hosts)
never holds the queue ahead of another engine's work.

The rule that keeps a bounded pool free of deadlock: tasks never wait on other tasks of the pool. Only the
calling thread waits (:func:`run_all`); a call made from inside a pool task runs its items in that task,
one after another. :func:`shutdown` (the plugin calls it when pytest unconfigures, also after Ctrl-C) cancels
what has not started and joins the rest; every remote operation has its own timeout, so the join ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Threads of one process at most. The widest user is the firewall engine, which keeps one listener per
# destination host starting at once; each thread mostly waits on an ssh client, so the bound is about open
# files and processes (limits.fds_needed), not CPU.
MAX_THREADS = 128

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_local = threading.local()


def _mark_worker() -> None:
    _local.worker = True


def in_pool() -> bool:
    """Whether the calling thread is one of the pool's."""
    return bool(getattr(_local, "worker", False))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="nova",
                                       initializer=_mark_worker)
        return _pool


class Batch(Generic[T, R]):
    """``work`` applied to every item on the shared pool, at most ``limit`` items at a time."""

    def __init__(self, work: Callable[[T], R], items: Iterable[T], limit: int) -> None:
        self._work = work
        self._items = list(items)
        self._results: list[R | None] = [None] * len(self._items)
        self._errors: list[BaseException | None] = [None] * len(self._items)
        self._futures: list[Future[None]] = []
        self._next = 0
        self._left = len(self._items)
        self._stopped = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        # Bound to this pool: after shutdown, submissions fail (and the rest is cancelled) instead of
        # starting a fresh pool for a run that is ending.
        self._pool = _executor()
        if not self._items:
            self._done.set()
        for _ in range(max(1, min(limit, len(self._items)))):
            self._submit_next()

    def _submit_next(self) -> None:
        with self._lock:
            if self._stopped or self._next >= len(self._items):
                return
            index = self._next
            self._next += 1
        try:
            future = self._pool.submit(self._run, index)
        except RuntimeError:  # the pool is shut down: the run is ending
            with self._lock:
                self._errors[index] = CancelledError()
                self._stopped = True
                self._cancel_unstarted()
            self._end_one()
            return
        with self._lock:
            self._futures.append(future)
        future.add_done_callback(lambda f: self._if_cancelled(index, f))

    def _run(self, index: int) -> None:
        # The bookkeeping and the next submission happen here, in the worker: a submission only queues,
        # so no task waits on the pool, and fast items never recurse through done-callbacks.
        try:
            self._results[index] = self._work(self._items[index])
        except BaseException as exc:  # handed to whoever reads the results
            self._errors[index] = exc
        self._end_one()
        self._submit_next()

    def _if_cancelled(self, index: int, future: Future[None]) -> None:
        if future.cancelled():  # it never ran, so _run did not count it
            self._errors[index] = CancelledError()
            self._end_one()

    def _end_one(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self._done.set()

    def _cancel_unstarted(self) -> None:
        # Called with the lock held, once stopped: the items never submitted end as cancelled.
        for i in range(self._next, len(self._items)):
            self._errors[i] = CancelledError()
        self._left -= len(self._items) - self._next
        self._next = len(self._items)
        if self._left == 0:
            self._done.set()

    def cancel(self) -> None:
        """Start no further item and cancel those queued; running ones finish on their own timeouts."""
        with self._lock:
            self._stopped = True
            self._cancel_unstarted()
            futures = list(self._futures)
        for f in futures:
            f.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every item has ended or was cancelled; False after ``timeout``."""
        return self._done.wait(timeout)

    def results(self) -> list[R]:
        """The results in item order (after :meth:`wait`); raises the first item's error, in item order."""
        for error in self._errors:
            if error is not None:
                raise error
        return self._results  # type: ignore[return-value]  # every slot is filled when no error is recorded


def run_all(work: Callable[[T], R], items: Iterable[T], limit: int) -> list[R]:
    """``work`` on every item, at most ``limit`` at a time; the results in item order.

    The calling thread waits; on Ctrl-C it cancels what has not started and re-raises (the caller's own
    cleanup ends what is running). Raises the first error in item order once every item has ended.
    """
    items = list(items)
    if in_pool():
        # Waiting here would hold a slot while waiting on others: run the items in this task instead.
        return [work(item) for item in items]
    batch = Batch(work, items, limit)
    try:
        batch.wait()
    except BaseException:
        batch.cancel()
        raise
    return batch.results()


def start_all(work: Callable[[T], R], items: Iterable[T], limit: int) -> Batch[T, R]:
    """``work`` on every item in the background, at most ``limit`` at a time; nobody has to wait for it."""
    return Batch(work, items, limit)


def threads() -> int:
    """Live threads of the pool (for tests and benchmarks)."""
    return sum(1 for t in threading.enumerate() if t.name.startswith("nova_"))


def shutdown() -> None:
    """Cancel queued work, join the running tasks; a later call starts a fresh pool (in-process test runs)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
