"""The shared bounded pool of remote work and the thread-free line reader of streamed commands."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from _pytest_nova import executor
from _pytest_nova.hosts import Access, HostError, RemoteHost
from _pytest_nova.inventory import Inventory, load_inventory

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_pool() -> object:
    executor.shutdown()
    yield None
    executor.shutdown()


@pytest.fixture
def local(tmp_path: Path) -> RemoteHost:
    inv: Inventory = load_inventory(REPO / "inventories" / "example-prod.yaml")
    return RemoteHost(inv.host("nova-ctl"), inv, Access(2.0, 10.0, tmp_path))


def test_results_come_in_item_order_and_the_limit_holds() -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01 * (i % 3))
        with lock:
            running[0] -= 1
        return i * i

    assert executor.run_all(work, range(40), 4) == [i * i for i in range(40)]
    assert peak[0] == 4


def test_many_instant_items_run_without_growing_the_stack() -> None:
    assert executor.run_all(lambda i: i, range(20_000), 2) == list(range(20_000))


def test_the_first_error_in_item_order_is_raised_after_every_item_ended() -> None:
    ended: list[int] = []

    def work(i: int) -> int:
        time.sleep(0.05 if i == 1 else 0)
        ended.append(i)
        if i in (1, 3):
            raise ValueError(f"item {i}")
        return i

    with pytest.raises(ValueError, match="item 1"):
        executor.run_all(work, range(6), 6)
    assert sorted(ended) == list(range(6))


def test_a_task_that_fans_out_runs_its_items_itself_and_never_deadlocks() -> None:
    # Every slot of the pool holds a task that itself asks for a batch: with waiting tasks this would hang.
    def inner(i: int) -> int:
        return i + 1

    def outer(i: int) -> int:
        assert executor.in_pool()
        return sum(executor.run_all(inner, range(i), 8))

    n = executor.MAX_THREADS + 5
    assert executor.run_all(outer, range(n), n) == [sum(range(1, i + 1)) for i in range(n)]


def test_all_work_of_a_process_shares_one_bounded_pool() -> None:
    gate = threading.Event()
    background = executor.start_all(lambda _: gate.wait(5), range(10), 3)
    assert executor.run_all(lambda i: i, range(50), 50) == list(range(50))
    assert 0 < executor.threads() <= executor.MAX_THREADS
    gate.set()
    assert background.wait(5)


def test_shutdown_joins_running_work_and_cancels_the_rest() -> None:
    started, finished = threading.Event(), threading.Event()

    def slow(_: int) -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    batch = executor.start_all(slow, range(5), 1)
    assert started.wait(5)
    executor.shutdown()
    assert finished.is_set()  # joined, not abandoned
    assert executor.threads() == 0
    assert batch.wait(0)  # the four queued items were cancelled, so nobody waits for them
    with pytest.raises(CancelledError):
        batch.results()


def test_a_run_ends_with_no_pool_thread_left(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("")
    pytester.makepyfile(
        """
        from _pytest_nova import executor

        def test_uses_the_pool():
            assert executor.run_all(lambda i: i, range(20), 8) == list(range(20))
            assert executor.threads() > 0
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert executor.threads() == 0


def test_readline_returns_lines_without_a_thread_per_call(local: RemoteHost) -> None:
    stream = local.start("printf 'one\\ntwo\\nthree'; cat >/dev/null", b"")
    try:
        before = threading.active_count()
        assert stream.readline(5) == "one\n"
        assert stream.readline(5) == "two\n"
        assert threading.active_count() == before
    finally:
        assert stream.close(timeout=5) == "three"  # what was read ahead is not lost


def test_readline_times_out_on_silence_and_leaves_no_thread(local: RemoteHost) -> None:
    before = threading.active_count()
    stream = local.start("cat >/dev/null", b"")
    started = time.monotonic()
    with pytest.raises(HostError, match=r"no answer within 0.3 s"):
        stream.readline(0.3)
    assert 0.3 <= time.monotonic() - started < 3
    assert stream.proc.poll() is not None  # the silent command was stopped
    assert threading.active_count() == before


def test_readline_at_the_end_returns_the_last_partial_line_then_says_why(local: RemoteHost) -> None:
    stream = local.start("cat >/dev/null; printf 'tail'; echo 'it broke' >&2; exit 2", b"")
    stream.close_input()
    assert stream.readline(5) == "tail"
    with pytest.raises(HostError) as caught:
        stream.readline(5)
    assert caught.value.cause == "it broke"


def test_no_engine_starts_threads_or_pools_of_its_own() -> None:
    package = REPO / "_pytest_nova"
    # Probes run on the checked hosts; the testinfra fallback keeps a watchdog thread, so a hung library call
    # never holds a slot of the shared pool.
    # The Ansible converter is a command of its own: the system resolver has no timeout, so its lookups are
    # daemon threads abandoned at their deadline, which the pool (joined at the end) must never hold.
    allowed = {package / "executor.py", package / "transports.py", package / "ansible" / "convert.py"}
    starts = re.compile(r"ThreadPoolExecutor\(|threading\.Thread\(|\bThread\(")
    offenders = [str(p.relative_to(REPO)) for p in package.rglob("*.py")
                 if p not in allowed and "probes" not in p.parts and starts.search(p.read_text())]
    assert offenders == []
