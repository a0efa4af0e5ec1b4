"""Pytest plugin with lab fixtures: one lab per session (per xdist worker), faults undone after each test.

Load it with ``pytest_plugins = ["tests.lab_fixtures"]``. Tests marked ``lab`` are skipped (with the reason)
where a lab cannot run: not root, or no ``ip`` command.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pytest_nova
from nova_lab import Fault, Lab, LabSpec, teardown
from nova_lab.state import ROOT as STATE_ROOT

REPO = Path(pytest_nova.__file__).resolve().parent.parent
FaultFactory = Callable[..., Fault]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: boots a nova-lab (needs root and iproute2)")


def lab_skip_reason() -> str | None:
    """Why lab tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, mounts, sshd)"
    if shutil.which("ip") is None:
        return "lab tests need the ip command (Debian package iproute2)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = lab_skip_reason()
    if reason:
        for item in items:
            if item.get_closest_marker("lab"):
                item.add_marker(pytest.mark.skip(reason=reason))


def worker_id(config: pytest.Config) -> str:
    """The xdist worker id (``gw0``…) or ``main``: lab names must differ between workers."""
    winput: dict[str, Any] = getattr(config, "workerinput", {})
    return str(winput.get("workerid", "main"))


def lab_name(prefix: str, config: pytest.Config) -> str:
    """A lab name unique to this session and worker: ``<prefix><worker>x<pid>``.

    Two sessions (or two people) running these tests at once must not share, and so tear down, a lab.
    """
    return f"{prefix}{worker_id(config)}x{os.getpid()}"


_OURS = re.compile(r"^[a-z](main|gw\d+)x(\d+)$")


def _remove_stale() -> None:
    """Tear down labs of test sessions that died without teardown (their pid is gone)."""
    for d in STATE_ROOT.glob("*"):
        m = _OURS.match(d.name)
        if m and not Path(f"/proc/{m.group(2)}").exists():
            teardown(d.name)


def boot(spec: LabSpec) -> Lab:
    """Boot ``spec``, first removing labs left behind by crashed test sessions."""
    _remove_stale()
    return Lab.up(spec)


def unique(spec: LabSpec) -> LabSpec:
    """``spec`` with this process's pid in its name, so concurrent test sessions never share a lab."""
    suffix = f"x{os.getpid()}"
    return spec if spec.name.endswith(suffix) else dataclasses.replace(spec, name=spec.name + suffix)


def booted(spec: LabSpec) -> Iterator[Lab]:
    """The body of a lab fixture: skip where labs cannot run, boot ``spec``, always tear it down."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    lab = boot(unique(spec))
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="session")
def lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """The default lab (3 masters, 2 infra, 1 ingress, 3 workers, internet mode), pre-install state."""
    yield from booted(LabSpec(name=lab_name("t", pytestconfig)))


@pytest.fixture(scope="session")
def closed_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """A small closed-mode lab (1/1/1/1) whose nodes install from the Nova Universe host."""
    yield from booted(LabSpec(name=lab_name("c", pytestconfig), masters=1, infra=1, ingress=1, workers=1,
                           mode="closed"))


@pytest.fixture
def installed_lab(lab: Lab) -> Iterator[Lab]:
    """The default lab switched to installed (post-install) mode for one test, and back."""
    lab.set_installed(True)
    try:
        yield lab
    finally:
        lab.set_installed(False)


@pytest.fixture
def fault(lab: Lab) -> Iterator[FaultFactory]:
    """Apply faults for one test: ``fault("fw-drop", port=2379)``; ``lab=`` picks another lab."""
    applied: list[tuple[Lab, Fault]] = []

    def make(name_or_fault: Fault | str, *, lab: Lab = lab, **params: object) -> Fault:
        f = lab.apply(name_or_fault, **params)
        applied.append((lab, f))
        return f

    try:
        yield make
    finally:
        for target, f in reversed(applied):
            target.revert(f)


def ssh_argv(lab: Lab, host: str, command: str, timeout: int = 5) -> list[str]:
    """An ssh command, run from the runner namespace, as nova-installer with the lab's key and known_hosts."""
    sd = lab.state_dir
    return lab.runner_cmd([
        "ssh", "-i", str(sd / "id_nova"), "-o", f"UserKnownHostsFile={sd / 'known_hosts'}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}",
        f"nova-installer@{lab.hosts[host].address}", command,
    ])


def run_suite(lab: Lab, *pytest_args: str, timeout: float = 900, cwd: Path = REPO) -> tuple[int, dict[str, Any], str]:
    """Run pytest inside nova-ctl's namespace against ``lab``; returns (exit code, results JSON, output).

    Runs from the repository root unless told otherwise, so without paths pytest collects the plan's
    ``pytest_nova/suites/``.
    """
    results = lab.state_dir / f"results-{uuid.uuid4().hex}.json"
    argv = [sys.executable, "-m", "pytest", f"--nova-inventory={lab.inventory_path}", f"--nova-json={results}",
            "-p", "no:cacheprovider", *pytest_args]
    # The outer session's xdist variables would make the inner pytest think it is a worker.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    proc = subprocess.run(lab.runner_cmd(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env, check=False)
    data: dict[str, Any] = {}
    if results.exists():
        data = json.loads(results.read_text())
        results.unlink()
    return proc.returncode, data, proc.stdout + proc.stderr
