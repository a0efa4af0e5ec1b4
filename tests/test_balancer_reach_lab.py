"""Docs 3.2 "Внутренний доступ / Внешний доступ" in the lab: each balancer port is reached from every cluster node
(internal) and from the workstation (external); a firewall that drops one source fails exactly that check.

An installed lab (1 master, 1 infra, 1 ingress, 1 worker, workstation ops-1) of its own, always torn down.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nova_lab import Lab, LabSpec
from tests.lab_fixtures import booted, lab_name, run_suite

pytestmark = pytest.mark.lab
PORT = "pytest_nova/suites/test_firewall.py::test_port"
SOURCES = ("master-1", "infra-1", "ingress-1", "worker-1", "ops-1")
ARGS = ("pytest_nova/suites/test_firewall.py", "-m", "lb", "--nova-phase=postinstall")


@pytest.fixture(scope="module")
def reach_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    yield from booted(LabSpec(name=lab_name("b", pytestconfig), masters=1, infra=1, ingress=1, workers=1,
                              installed=True))


def _by(results: dict[str, Any], outcome: str) -> dict[str, dict[str, Any]]:
    return {r["nodeid"]: r for r in results.get("results", []) if r["outcome"] == outcome}


def test_every_balancer_port_is_reached_from_nodes_and_workstations(reach_lab: Lab) -> None:
    rc, results, output = run_suite(reach_lab, *ARGS, "-n", "2")
    assert rc == 0, output[-3000:]
    ids = {r["nodeid"] for r in results["results"]}
    for src in SOURCES:
        for lb, port in (("api", 6443), ("infra", 80), ("infra", 443), ("ingress", 80), ("ingress", 443)):
            assert f"{PORT}[{src}:{lb}-lb:{port}/tcp]" in ids, (src, lb, port)
    assert {r["check"] for r in results["results"]} == {"lb"}
    assert not _by(results, "failed") and not _by(results, "error")


def test_a_dropped_workstation_fails_exactly_its_check_with_the_balancer_address(reach_lab: Lab) -> None:
    lab = reach_lab
    with lab.fault("fw-drop", port=6443, protocol="tcp", source="ops-1", destination="lb-api"):
        rc, results, output = run_suite(lab, *ARGS, "-n", "2")
    assert rc == 1, output[-3000:]
    failed = _by(results, "failed")
    assert set(failed) == {f"{PORT}[ops-1:api-lb:6443/tcp]"}, sorted(failed)
    record = failed[f"{PORT}[ops-1:api-lb:6443/tcp]"]
    assert record["requirement"] == "lb-api-6443" and record["message"].startswith("filtered")
    src, api = lab.hosts["ops-1"].address, lab.hosts["lb-api"].address
    assert f"Fix:      allow 6443/tcp from ops-1 ({src}) to the api balancer {api}" in output
