"""A site plugin's node fact and rule in the lab: they ride each node's one facts run (sessions counted).

One small lab (1 master, 1 infra, 1 ingress, 1 worker) for the module, always torn down. Every cluster node is
given the site's time source in /etc/chrony/chrony.conf; worker-1 is given another one (the planted fault).
The same node checks run without and with the example plugin, through a transport plugin that counts the SSH
sessions it opens per host; sshd's own log counts the logins.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nova_lab import Lab, LabSpec
from tests.lab_fixtures import booted, lab_name, run_suite

pytestmark = pytest.mark.lab
DATA = Path(__file__).resolve().parent / "data"
NODES = ("master-1", "infra-1", "ingress-1", "worker-1")
OS_SUITE, GENERIC = "pytest_nova/suites/test_os.py", "pytest_nova/suites/test_extensions.py"
SITE_SERVER = "10.10.0.123"  # catalog/site_node.yaml's params.server


@pytest.fixture(scope="module")
def site_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    for lab in booted(LabSpec(name=lab_name("sp", pytestconfig), masters=1, infra=1, ingress=1, workers=1)):
        for node in NODES:
            server = "ntp.example.org" if node == "worker-1" else SITE_SERVER
            lab.exec(node, f"mkdir -p /etc/chrony && printf '# site\\npool {server} iburst\\nmakestep 1 3\\n' "
                           "> /etc/chrony/chrony.conf")
        yield lab


@pytest.fixture
def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session log of the counting transport, and the plugins on the inner run's path."""
    log = tmp_path / "sessions.log"
    monkeypatch.setenv("NOVA_SESSION_LOG", str(log))
    paths = [str(DATA / "site_plugin"), str(DATA / "session_counter"), *sys.path]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return log


def _run(lab: Lab, log: Path, *args: str) -> tuple[int, dict[str, Any], str, Counter[str], dict[str, int]]:
    log.write_text("")
    before = {n: lab.sshd_logins(n) for n in NODES}
    rc, results, output = run_suite(lab, "-p", "session_counter", *args)
    logins = {n: lab.sshd_logins(n) - before[n] for n in NODES}
    return rc, results, output, Counter(log.read_text().split()), logins


def test_a_plugins_node_rule_rides_the_facts_run_and_fails_only_the_planted_node(site_lab: Lab,
                                                                                  counted: Path) -> None:
    rc, plain, out, sessions_plain, logins_plain = _run(site_lab, counted, OS_SUITE, "-n", "2")
    assert rc == 0, out[-3000:]
    assert {r["check"] for r in plain["results"]} == {"os"}
    rc, both, out, sessions_site, logins_site = _run(site_lab, counted, "-p", "site_plugin", OS_SUITE, GENERIC,
                                                     "-m", "os or site_node", "-n", "2")
    assert rc == 1, out[-3000:]
    # The same SSH sessions per host with the plugin's fact and rule as without them; one login per host each.
    assert set(sessions_plain) == set(NODES)  # nova-ctl is the runner (connection: local): no ssh
    assert sessions_site == sessions_plain, (sessions_plain, sessions_site)
    assert logins_plain == logins_site == dict.fromkeys(NODES, 1)
    site = {r["target"] or r["source"]: r for r in both["results"] if r["check"] == "site_node"}
    assert set(site) == set(NODES)
    assert {n: r["outcome"] for n, r in site.items()} == {**dict.fromkeys(NODES, "passed"), "worker-1": "failed"}
    assert site["worker-1"]["message"] == f"the configured time sources are ntp.example.org, not the site's " \
                                          f"{SITE_SERVER}"
    assert site["master-1"]["message"] == f"{SITE_SERVER} is among the configured time sources ({SITE_SERVER})"
    assert site["worker-1"]["requirement"] == "site-time-source-configured"
    assert "Fix:      echo 'server 10.10.0.123 iburst' >> /etc/chrony/chrony.conf && systemctl restart chronyd" in out
    # The built-in node checks are unchanged by the plugin: only the planted node's site check fails.
    assert [r["nodeid"] for r in both["results"] if r["outcome"] != "passed"] == \
        [f"{GENERIC}::test_check[worker-1:site-time-source-configured]"]
    assert "nova verdict: NOT ACCEPTED" in out and "Traceback" not in out
