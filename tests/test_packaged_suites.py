"""The plan's suites ship in the package: collected from any directory when, and only when, an inventory is given."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _pytest_nova.collect import SUITES

pytestmark = pytest.mark.nova_suites
PROD = Path(__file__).resolve().parents[1] / "inventories" / "example-prod.yaml"
AREAS = ("test_dns.py::", "test_external.py::", "test_firewall.py::", "test_os.py::", "test_k8s_nodes.py::")
USER_TEST = """
from _pytest_nova.plan import Check

def test_my_node_rule(node_requirement: Check, nova) -> None:
    assert node_requirement.host
"""


def _ids(result: pytest.RunResult) -> list[str]:
    return [ln for ln in result.stdout.lines if "::" in ln]


def test_from_an_empty_directory_the_whole_plan_is_collected(pytester: pytest.Pytester) -> None:
    shutil.copy(PROD, pytester.path / "prod.yaml")
    result = pytester.runpytest("--nova-inventory=prod.yaml", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    ids = _ids(result)
    assert len(ids) > 300
    for area in AREAS:
        assert any(i.startswith(area) for i in ids), area
    assert "test_port[worker-1:masters:2379/tcp]" in "\n".join(ids)
    assert "verdict" not in result.stdout.str()


def test_environment_and_ini_give_the_inventory_too(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(PROD, pytester.path / "prod.yaml")
    monkeypatch.setenv("NOVA_INVENTORY", "prod.yaml")
    by_env = _ids(pytester.runpytest("--collect-only", "-q"))
    monkeypatch.delenv("NOVA_INVENTORY")
    pytester.makeini("[pytest]\nnova_inventory = prod.yaml\n")
    by_ini = _ids(pytester.runpytest("--collect-only", "-q"))
    assert by_env == by_ini and len(by_env) > 300


def test_without_an_inventory_a_users_own_tests_see_no_change(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unrelated="def test_one() -> None:\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert "nova" not in result.stdout.str().lower()


def test_next_to_a_users_ini_and_own_modules_both_run(pytester: pytest.Pytester) -> None:
    shutil.copy(PROD, pytester.path / "prod.yaml")
    pytester.makeini("[pytest]\ntestpaths = checks\nnova_inventory = prod.yaml\n")
    (pytester.path / "checks").mkdir()
    (pytester.path / "checks" / "test_mine.py").write_text(USER_TEST)
    ids = _ids(pytester.runpytest("--collect-only", "-q"))
    mine = [i for i in ids if i.startswith("checks/test_mine.py::test_my_node_rule[")]
    assert "checks/test_mine.py::test_my_node_rule[worker-2:os-sudo-nopasswd]" in mine
    assert any(i.startswith("test_os.py::test_os[") for i in ids)
    # The user's test takes every node check; the packaged suites take the same checks, split by area.
    node_suites = ("test_os.py::", "test_k8s_nodes.py::", "test_external.py::test_vendor_addresses[")
    assert len(mine) == sum(1 for i in ids if i.startswith(node_suites))


def test_paths_on_the_command_line_choose_what_runs(pytester: pytest.Pytester) -> None:
    shutil.copy(PROD, pytester.path / "prod.yaml")
    pytester.makepyfile(test_mine=USER_TEST)
    only = _ids(pytester.runpytest("--nova-inventory=prod.yaml", "test_mine.py", "--collect-only", "-q"))
    assert only and all(i.startswith("test_mine.py::") for i in only)
    both = _ids(pytester.runpytest("--nova-inventory=prod.yaml", "test_mine.py", "--pyargs", "pytest_nova.suites",
                                   "--collect-only", "-q"))
    assert set(only) < set(both) and any("test_firewall.py::test_port[" in i for i in both)
    off = _ids(pytester.runpytest("--nova-inventory=prod.yaml", "-p", "no:nova-suites", "--collect-only", "-q"))
    assert off == only


def test_under_xdist_every_worker_collects_the_packaged_suites(pytester: pytest.Pytester) -> None:
    shutil.copy(PROD, pytester.path / "prod.yaml")
    # A handful of DNS checks against servers that do not answer: they run (and fail) on the workers.
    result = pytester.runpytest_subprocess(
        "--nova-inventory=prod.yaml", "-n", "2", "-k", "test_dns_record and nova-console", "--nova-timeout=0.2",
        "-p", "no:cacheprovider",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 2 and "passed" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines(["*nova verdict: NOT ACCEPTED*"])


def test_the_suites_folder_is_inside_the_package() -> None:
    assert SUITES.parent.name == "pytest_nova" and (SUITES / "__init__.py").is_file()
    assert {p.name for p in SUITES.glob("test_*.py")} >= {"test_dns.py", "test_firewall.py", "test_os.py"}
