"""Options: wrong values are usage errors in one line; the inventory comes from option, environment or ini."""

from __future__ import annotations

import pytest

from tests.test_inventory import GOOD

SUITE = "def test_x(node_requirement, nova):\n    pass\n"


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--nova-timeout=-1"], "ERROR: --nova-timeout: expected seconds greater than 0 and at most 86400, got "
                                 "'-1'; write e.g. --nova-timeout=2"),
        (["--nova-concurrency=many"], "ERROR: --nova-concurrency: expected a whole number greater than 0 and at "
                                       "most 4096, got 'many'; write e.g. --nova-concurrency=64"),
        (["--nova-phase=later"], "*argument --nova-phase: invalid choice: 'later'*"),
    ],
)
def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], expected: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_suite_without_inventory_says_how_to_give_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-nova: no inventory given; pass --nova-inventory=PATH, set "
                                 "NOVA_INVENTORY=PATH, or add 'nova_inventory = PATH' to the [[]pytest] ini section"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_project_tests_without_inventory_still_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize("how", ["env", "ini"])
def test_inventory_from_environment_or_ini(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                           how: str) -> None:
    pytester.makefile(".yaml", inv=GOOD)
    pytester.makepyfile(test_suite=SUITE)
    if how == "env":
        monkeypatch.setenv("NOVA_INVENTORY", "inv.yaml")
    else:
        pytester.makeini("[pytest]\nnova_inventory = inv.yaml\n")
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["test_suite.py::test_x[[]worker-1:os-sudo-nopasswd]"])


def test_phase_selects_postinstall_checks(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", inv=GOOD)
    pytester.makepyfile(test_suite=SUITE)
    pre = pytester.runpytest("--nova-inventory=inv.yaml", "--collect-only", "-q").stdout.str()
    post = pytester.runpytest("--nova-inventory=inv.yaml", "--nova-phase=postinstall", "--collect-only",
                              "-q").stdout.str()
    assert "worker-1:os-sudo-nopasswd" in pre and "worker-1:os-sudo-nopasswd" not in post
    assert "worker-1:k8s-kubelet-active" in post and "worker-1:k8s-kubelet-active" not in pre
