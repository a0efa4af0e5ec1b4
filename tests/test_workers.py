"""``-n auto`` picks one process for a small inventory and leaves larger ones to xdist (docs/scaling.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from _pytest_nova.plugin import ONE_PROCESS_HOSTS

BENCH_PLAN = Path(__file__).resolve().parents[1] / "bench" / "plan.py"
WHO = "def test_who(worker_id):\n    open('who.txt', 'w').write(f'RAN-IN {worker_id}')\n"


def _inventory(folder: Path, nodes: int) -> Path:
    spec = importlib.util.spec_from_file_location("bench_plan", BENCH_PLAN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path: Path = module.write_inventory(folder, nodes)
    return path


@pytest.mark.parametrize(("nodes", "where"), [(20, "RAN-IN master"), (ONE_PROCESS_HOSTS + 40, "RAN-IN gw")])
def test_n_auto_runs_in_one_process_up_to_the_measured_size(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                            nodes: int, where: str) -> None:
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    inv = _inventory(pytester.path, nodes)
    pytester.makepyfile(test_who=WHO)
    result = pytester.runpytest_subprocess(f"--nova-inventory={inv}", "-n", "auto", "-s", "-p", "no:cacheprovider",
                                           "test_who.py")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert (pytester.path / "who.txt").read_text().startswith(where)  # master: no workers; gw0 or gw1 else


def test_an_explicit_auto_worker_count_is_kept(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "2")
    inv = _inventory(pytester.path, 20)
    pytester.makepyfile(test_who=WHO)
    result = pytester.runpytest_subprocess(f"--nova-inventory={inv}", "-n", "auto", "-s", "test_who.py")
    assert result.ret == pytest.ExitCode.OK
    assert (pytester.path / "who.txt").read_text().startswith("RAN-IN gw")
