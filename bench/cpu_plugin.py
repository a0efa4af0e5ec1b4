"""Each process's own CPU time, for ``bench/run.py``.

Loaded into the run it measures (``-p cpu_plugin``): the controller and every xdist worker append their own CPU
time, and that of the processes they started (ssh clients), to ``$NOVA_BENCH_CPU``.

The sum of the processes' own CPU is the runner's own cost (Python: collection, items, reports, the engines'
bookkeeping); the rest of the run's CPU is its ssh clients.
"""

from __future__ import annotations

import json
import os
import resource

import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker's line: the end of its session is the last it surely runs (it may exit before unconfigure)."""
    if hasattr(session.config, "workerinput"):
        _write(session.config)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller's line, after its reports (results JSON, JUnit, HTML) are written."""
    if not hasattr(config, "workerinput"):
        _write(config)


def _write(config: pytest.Config) -> None:
    path = os.environ.get("NOVA_BENCH_CPU")
    if not path:
        return
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    worker = getattr(config, "workerinput", {}).get("workerid")
    line = {"process": worker or "controller", "cpu_s": round(me.ru_utime + me.ru_stime, 2),
            "children_cpu_s": round(kids.ru_utime + kids.ru_stime, 2), "peak_rss_mb": me.ru_maxrss // 1024}
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")
