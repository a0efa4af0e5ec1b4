"""Site tests without a lab: testinfra's host over the inventory's nodes, ids, markers, and records on the runner.

The inventory's nova-ctl node has ``connection: local``: its site tests run for real here, through the same
RemoteHost path as any node (the lab test proves the ssh nodes, logins and xdist).
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from _pytest.mark.structures import Mark

from _pytest_nova.builtin_kinds import builtin_registry
from _pytest_nova.inventory import Inventory, load_inventory
from _pytest_nova.session import NovaSession
from _pytest_nova.site_tests import SiteTestError, nodes_of, requirement_of
from tests.test_inventory import GOOD


def load_inventory_text(text: str) -> Inventory:
    """An inventory read from ``text`` (written to a temporary file next to nothing else)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "inv.yaml"
        path.write_text(text)
        return load_inventory(path)

SITE = """\
import pytest

def test_all(host):
    assert host.file("/etc/hostname").exists

@pytest.mark.nova_roles("master", "worker")
def test_some(host):
    pass

@pytest.mark.nova_roles("ingress")   # no ingress node: the workers take its rules (docs 3.1.4)
def test_ingress(host):
    pass
"""


def test_without_an_inventory_testinfra_is_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_a(host):\n    assert host.backend.get_connection_type() == 'local'\n")
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_plain.py::test_a[[]local[]] PASSED*"])


def test_host_tests_run_on_the_inventory_nodes_by_name(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", inv=GOOD)
    pytester.makepyfile(test_site=SITE)
    result = pytester.runpytest("--nova-inventory=inv.yaml", "test_site.py", "--collect-only", "-q")
    # pytest orders them by node (testinfra's host is module-scoped); every xdist worker orders them alike.
    ids = [line for line in result.stdout.lines if "::" in line]
    assert sorted(ids) == sorted([
        *(f"test_site.py::test_all[{n}]" for n in ("infra-1", "master-1", "nova-ctl", "worker-1")),
        "test_site.py::test_some[master-1]", "test_site.py::test_some[worker-1]",
        "test_site.py::test_ingress[worker-1]",
    ])
    # The area marker selects them like the plan's areas.
    marked = pytester.runpytest("--nova-inventory=inv.yaml", "test_site.py", "--collect-only", "-q", "-m", "site")
    assert len([line for line in marked.stdout.lines if "::" in line]) == 7


RUNNER = """\
import pytest

@pytest.mark.nova_requirement("site-passwd", section="site 1", summary="/etc/passwd is a file")
def test_passes(host):
    assert host.file("/etc/passwd").is_file
    assert host.check_output("echo %s", "a b") == "a b"

@pytest.mark.nova_requirement("site-marker", section="site 2", summary="the marker file exists",
                              fix="touch /nonexistent/marker")
def test_fails(host):
    assert host.file("/nonexistent/marker").exists, "/nonexistent/marker is missing"

@pytest.mark.nova_requirement("site-advice", severity="advisory", area="k8s")
def test_advisory(host):
    assert host.run("exit 3").rc == 0

def test_slow(host):
    host.run("sleep 5")
"""


def test_site_tests_on_the_runner_give_one_record_each(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", inv=GOOD)
    pytester.makepyfile(test_runner=RUNNER)
    result = pytester.runpytest("--nova-inventory=inv.yaml", "test_runner.py", "-k", "nova-ctl",
                                "--nova-command-timeout=1", "--nova-json=out.json")
    assert result.ret == 1
    records = {r["nodeid"].split("::")[1]: r for r in json.loads((pytester.path / "out.json").read_text())["results"]}
    got = {k: (r["check"], r["requirement"], r["outcome"], r["target"], r["severity"]) for k, r in records.items()}
    assert got == {
        "test_passes[nova-ctl]": ("site", "site-passwd", "passed", "nova-ctl", "required"),
        "test_fails[nova-ctl]": ("site", "site-marker", "failed", "nova-ctl", "required"),
        "test_advisory[nova-ctl]": ("k8s", "site-advice", "warning", "nova-ctl", "advisory"),
        "test_slow[nova-ctl]": ("site", "test_slow", "error", "nova-ctl", "required"),
    }
    assert records["test_fails[nova-ctl]"]["message"] == "/nonexistent/marker is missing"
    assert records["test_slow[nova-ctl]"]["message"] == "nova-ctl: command did not finish within 1 s"
    assert records["test_advisory[nova-ctl]"]["message"].startswith("assert 3 == 0")
    result.stdout.fnmatch_lines([
        "Checked:  site test test_fails on nova-ctl",
        "Expected: the marker file exists (docs site 2)",
        "Observed: /nonexistent/marker is missing",
        "Fix:      touch /nonexistent/marker",
    ])
    assert "Traceback" not in result.stdout.str()


class _Definition:
    """The one marker a test function carries (what nodes_of and requirement_of read)."""

    def __init__(self, mark: pytest.MarkDecorator) -> None:
        self.mark = mark.mark

    def get_closest_marker(self, name: str) -> Mark | None:
        return self.mark if self.mark.name == name else None


@pytest.mark.parametrize("mark,message", [
    (pytest.mark.nova_roles("mastr"), "nova_roles: unknown role 'mastr' (expected one of: nova-ctl, master, infra, "
                                      "ingress, worker)"),
    (pytest.mark.nova_roles(), "nova_roles takes role names, e.g. *"),
    (pytest.mark.nova_requirement("x", severity="must"),
     "nova_requirement: severity 'must' (expected required or advisory)"),
    (pytest.mark.nova_requirement("x", title="y"),
     "nova_requirement: unknown key 'title' (expected one of: section, summary, severity, area, fix)"),
    (pytest.mark.nova_requirement("x", area="ntp"), "nova_requirement: unknown area 'ntp' (expected site or one of: *"),
    (pytest.mark.nova_requirement("x", section=2), "nova_requirement: section must be text, not int"),
    (pytest.mark.nova_requirement(), "nova_requirement takes one requirement id, *"),
])
def test_unusable_markers_are_named(mark: pytest.MarkDecorator, message: str) -> None:
    definition = cast(pytest.Item, _Definition(mark))
    state = cast(NovaSession, SimpleNamespace(registry=builtin_registry()))
    with pytest.raises(SiteTestError) as caught:
        nodes_of(definition, load_inventory_text(GOOD))
        requirement_of(definition, "test_x", state)
    assert fnmatch.fnmatchcase(str(caught.value), message), str(caught.value)


def test_an_unusable_marker_ends_the_run_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", inv=GOOD)
    pytester.makepyfile(test_bad='import pytest\n\n@pytest.mark.nova_requirement("x", severity="must")\n'
                                 'def test_x(host):\n    pass\n')
    result = pytester.runpytest("--nova-inventory=inv.yaml", "test_bad.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: test_bad.py::test_x: nova_requirement: severity 'must' (expected required "
                                 "or advisory)"])
    assert "nova verdict" not in result.stdout.str()


WAIVER = """\
waivers:
  - requirement: {requirement}
    justification: accepted
    approver: J. Smith
    expires: 2099-12-31
"""


@pytest.mark.parametrize("requirement,ok", [("site-marker", True), ("site-markr", False)])
def test_a_waiver_may_name_a_site_tests_requirement(pytester: pytest.Pytester, requirement: str, ok: bool) -> None:
    pytester.makefile(".yaml", inv=GOOD, waivers=WAIVER.format(requirement=requirement))
    pytester.makepyfile(test_runner=RUNNER)
    result = pytester.runpytest("--nova-inventory=inv.yaml", "test_runner.py", "--nova-waivers=waivers.yaml",
                                "--collect-only", "-q")
    if ok:
        assert result.ret == pytest.ExitCode.OK
    else:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["ERROR: --nova-waivers: waivers.yaml:2: waivers[0].requirement: unknown "
                                     "requirement 'site-markr'"])


def test_an_unusable_marker_ends_an_xdist_run_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", inv=GOOD)
    pytester.makepyfile(test_bad='import pytest\n\n@pytest.mark.nova_roles("mastr")\ndef test_x(host):\n    pass\n')
    result = pytester.runpytest_subprocess("--nova-inventory=inv.yaml", "test_bad.py", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: test_bad.py::test_x: nova_roles: unknown role 'mastr' (expected one of: *"])


def test_a_test_builds_a_nova_host_through_testinfra(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", inv=GOOD)
    pytester.makepyfile(test_cross="""
import testinfra

def test_cross(nova_hosts):
    runner = testinfra.get_host("nova://nova-ctl", nova_hosts=nova_hosts)
    assert runner.backend.get_connection_type() == "nova"
    assert runner.check_output("echo %s", "hello") == "hello"
""")
    pytester.runpytest("--nova-inventory=inv.yaml", "test_cross.py").assert_outcomes(passed=1)


MODULES = """\
import os

def test_modules(host):
    assert host.backend.get_connection_type() == "nova"
    assert host.file("/etc/passwd").user == "root"
    assert host.user("nobody").exists and host.group("root").exists
    assert host.package("python3").is_installed
    assert host.sysctl("kernel.ostype") == "Linux"
    assert host.process.filter(pid=os.getpid())
    assert host.socket.get_listening_sockets() is not None
    assert host.exists("sh") and host.system_info.type == "linux"
    with host.sudo("nobody"):
        assert host.check_output("id -un") == "nobody"
    assert host.check_output("id -un") == "root"
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="sudo to another user without a password needs root")
def test_testinfra_modules_work_through_the_nova_backend(pytester: pytest.Pytester) -> None:
    # On the runner (connection: local, through RemoteHost like any node): every module is commands run by it.
    pytester.makefile(".yaml", inv=GOOD)
    pytester.makepyfile(test_modules=MODULES)
    result = pytester.runpytest("--nova-inventory=inv.yaml", "test_modules.py", "-k", "nova-ctl")
    result.assert_outcomes(passed=1)


UNREACHABLE = """\
import pytest

@pytest.fixture
def release(host):
    return host.file("/etc/os-release").content_string

def test_plain(host):
    assert host.file("/etc/passwd").exists

def test_with_a_fixture(host, release):
    assert release
"""


def test_an_unreachable_node_errors_each_site_test_once_with_its_cause(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", inv=GOOD.replace("10.10.1.11", "192.0.2.11"))  # TEST-NET-1: nothing answers
    pytester.makepyfile(test_unreachable=UNREACHABLE)
    result = pytester.runpytest("--nova-inventory=inv.yaml", "test_unreachable.py", "-k", "master-1",
                                "--nova-json=out.json", "--nova-connect-timeout=2")
    assert result.ret == 1
    records = json.loads((pytester.path / "out.json").read_text())["results"]
    assert [(r["nodeid"].split("::")[1], r["outcome"]) for r in records] == [
        ("test_plain[master-1]", "error"), ("test_with_a_fixture[master-1]", "error")]
    messages = {r["message"] for r in records}
    assert len(messages) == 1 and next(iter(messages)).startswith("master-1: ssh: "), messages
    out = result.stdout.str()
    assert f"{next(iter(messages))}; 2 checks not run" in out and "Traceback" not in out


def test_under_xdist_the_controller_refuses_a_waiver_of_an_unknown_requirement(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", inv=GOOD, waivers=WAIVER.format(requirement="site-markr"))
    pytester.makepyfile(test_runner="def test_ok(host):\n    pass\n")
    result = pytester.runpytest_subprocess("--nova-inventory=inv.yaml", "test_runner.py", "-k", "nova-ctl",
                                           "--nova-waivers=waivers.yaml", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --nova-waivers: waivers.yaml:2: waivers[0].requirement: unknown "
                                 "requirement 'site-markr'"])
