"""Each process's own CPU time and its timeline, for ``bench/run.py``.

Loaded into the run it measures (``-p cpu_plugin``): the controller and every xdist worker append one line to
``$NOVA_BENCH_CPU``: their own CPU time, that of the processes they started (ssh clients), and when (wall clock,
``time.time()``) they configured, finished collecting, and ran the first and last item of each suite file, and
when the controller's reports were done. With ``$NOVA_BENCH_WORKER_PROFILE`` (a folder) every xdist worker runs
under cProfile and writes ``gwN.prof`` there.

The sum of the processes' own CPU is the runner's own cost (Python: collection, items, reports, the engines'
bookkeeping); the rest of the run's CPU is its ssh clients.
"""

from __future__ import annotations

import atexit
import cProfile
import gc
import json
import os
import resource
import time
from collections.abc import Generator, Iterator

import pytest

_MARKS: dict[str, float] = {}  # event -> wall-clock time
_SUITES: dict[str, list[float]] = {}  # suite file -> [first item's start, last item's end, items]


_PROFILE: list[cProfile.Profile] = []
_GC: dict[str, float] = {"seconds": 0.0, "collections": 0, "gen2_seconds": 0.0}
_GC_STARTED = [0.0]


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    """The time this process spends in the cyclic garbage collector (``gc.callbacks``)."""
    if phase == "start":
        _GC_STARTED[0] = time.perf_counter()
        return
    took = time.perf_counter() - _GC_STARTED[0]
    _GC["seconds"] += took
    _GC["collections"] += 1
    if info.get("generation") == 2:
        _GC["gen2_seconds"] += took


gc.callbacks.append(_gc_timer)


def _gc_spent() -> dict[str, float]:
    return {k: round(v, 2) for k, v in _GC.items()}


def pytest_configure(config: pytest.Config) -> None:
    """The process has parsed its options and loaded its plugins; an xdist worker may start its cProfile."""
    _MARKS["configured"] = time.time()
    # An experiment's garbage-collector thresholds for every process of the run, e.g. "50000,20,100".
    thresholds = os.environ.get("NOVA_BENCH_GC_THRESHOLDS")
    if thresholds:
        gc.set_threshold(*(int(t) for t in thresholds.split(",")))
    folder = os.environ.get("NOVA_BENCH_WORKER_PROFILE")
    if folder and hasattr(config, "workerinput"):
        _PROFILE.append(cProfile.Profile())
        _PROFILE[0].enable()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Collection is done (in each xdist worker; the controller does not collect)."""
    _MARKS["collected"] = time.time()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """The first start and last end of each suite file's items in this process."""
    start = time.time()
    try:
        return (yield)
    finally:
        suite = item.nodeid.split("::", 1)[0].rpartition("/")[2].removesuffix(".py")
        span = _SUITES.setdefault(suite, [start, start, 0])
        span[1], span[2] = time.time(), span[2] + 1


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """Every item has run (in the controller: every worker's; it writes its reports after this)."""
    try:
        return (yield)
    finally:
        _MARKS["items_done"] = time.time()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker's line: the end of its session is the last it surely runs (it may exit before unconfigure)."""
    if hasattr(session.config, "workerinput"):
        _write(session.config)
        if _PROFILE:
            _PROFILE[0].disable()
            worker = session.config.workerinput["workerid"]
            _PROFILE[0].dump_stats(os.path.join(os.environ["NOVA_BENCH_WORKER_PROFILE"], f"{worker}.prof"))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller's line, after its reports (results JSON, JUnit, HTML) are written."""
    if not hasattr(config, "workerinput"):
        _write(config)
        # Registered last, run first: when the interpreter's own shutdown begins.
        atexit.register(_exiting)


def _exiting() -> None:
    path = os.environ.get("NOVA_BENCH_CPU")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"process": "controller", "exiting": time.time(),
                                  "gc": _gc_spent()}) + "\n")


def _write(config: pytest.Config) -> None:
    path = os.environ.get("NOVA_BENCH_CPU")
    if not path:
        return
    _MARKS["end"] = time.time()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    worker = getattr(config, "workerinput", {}).get("workerid")
    line = {"process": worker or "controller", "cpu_s": round(me.ru_utime + me.ru_stime, 2),
            "children_cpu_s": round(kids.ru_utime + kids.ru_stime, 2), "peak_rss_mb": me.ru_maxrss // 1024,
            "marks": _MARKS, "suites": _SUITES, "gc": _gc_spent()}
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")
