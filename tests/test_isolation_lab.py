"""Faults present together are found together, and one bad host fails only the checks that need it.

One run of the firewall and OS suites on a lab where, at the same time: worker-2 has no sudo and cannot send
ICMP as an ordinary user, worker-3's shell prints a banner on stdout and stderr, master-3's sshd is down,
worker-1's sshd allows one session per connection and two unauthenticated connections, and the firewalls
reject or drop a few rules elsewhere (a TCP reset, an ICMP port unreachable, a drop in one direction only).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from _pytest_nova.inventory import load_inventory
from nova_lab import Lab, LabSpec
from tests.lab_fixtures import booted, lab_name, run_suite, ssh_argv
from tests.test_firewall_lab import FILTERED, planned

pytestmark = pytest.mark.lab

Key = tuple[str, "str | None", "int | None", "str | None"]
BANNER = "*** authorized use only ***"
NO_SUDO = "sudo -n refused (a password is required)"
RESET = "refused: connection reset although a temporary listener was bound (a firewall rejects it)"
PORT_UNREACHABLE = "refused: ICMP port unreachable although a temporary listener was bound (a firewall rejects it)"
FAULTS: list[dict[str, Any]] = [
    {"name": "sudoers-missing", "host": "worker-2"},
    {"name": "no-icmp", "host": "worker-2"},
    {"name": "noisy-shell", "host": "worker-3", "text": BANNER},
    {"name": "sshd-down", "host": "master-3"},
    {"name": "sshd-limits", "host": "worker-1", "max_sessions": 1, "max_startups": 2},
    {"name": "fw-reject", "port": 2379, "protocol": "tcp", "source": "workers", "destination": "master-2"},
    {"name": "fw-reject", "port": 8472, "protocol": "udp", "source": "infra", "destination": "worker-1"},
    # etcd peers talk both ways; only master-1 -> master-2 is dropped.
    {"name": "fw-drop", "port": 2380, "protocol": "tcp", "source": "master-1", "destination": "master-2"},
    # From the node whose shell prints a banner.
    {"name": "fw-drop", "port": 4789, "protocol": "udp", "source": "worker-3", "destination": "infra-1"},
]


@pytest.fixture(scope="module")
def faulty_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """A default-size lab of this module's own, with every fault of FAULTS applied."""
    boot = booted(LabSpec(name=lab_name("i", pytestconfig)))
    lab = next(boot)
    try:
        for f in FAULTS:
            lab.apply(f["name"], **{k: v for k, v in f.items() if k != "name"})
        yield lab
    finally:
        boot.close()  # type: ignore[attr-defined]  # a generator: closing it tears the lab down


def key(r: dict[str, Any]) -> Key:
    """A firewall record's (source, target, port, protocol), or an OS record's (host, requirement, None, None)."""
    if r["check"] == "firewall":
        return (r["source"], r["target"], r["port"], r["protocol"])
    return (r["source"], r["requirement"], None, None)


def test_the_lab_faults_are_real(faulty_lab: Lab) -> None:
    noisy = subprocess.run(ssh_argv(faulty_lab, "worker-3", "echo answer"), capture_output=True, text=True,
                           timeout=30, check=False)
    assert noisy.stdout.splitlines() == [BANNER, "answer"] and BANNER in noisy.stderr
    down = subprocess.run(ssh_argv(faulty_lab, "master-3", "true"), capture_output=True, text=True, timeout=30,
                          check=False)
    assert down.returncode == 255 and "refused" in down.stderr


def logins(lab: Lab, host: str) -> int:
    """Successful SSH logins on ``host`` so far, from its sshd log."""
    return (lab.state_dir / "logs" / f"{host}.sshd.log").read_text().count("Accepted publickey")


def test_every_planted_fault_is_reported_exactly_and_nothing_else(faulty_lab: Lab) -> None:
    before = {h: logins(faulty_lab, h) for h in ("worker-2", "worker-3", "infra-1")}
    rc, data, out = run_suite(
        faulty_lab, "pytest_nova/suites/test_firewall.py", "pytest_nova/suites/test_os.py", "-n", "2"
    )
    assert rc == 1, out[-3000:]
    # Facts, listener, probes and both xdist workers shared one login per host, noisy or sudo-less alike.
    assert {h: logins(faulty_lab, h) - n for h, n in before.items()} == {"worker-2": 1, "worker-3": 1, "infra-1": 1}
    inv = load_inventory(faulty_lab.inventory_path)
    roles = {h.name: set(h.roles) for h in inv.nodes}
    probes = planned(inv)
    records = data["results"]
    by_outcome: dict[str, dict[Key, str]] = {}
    for r in records:
        by_outcome.setdefault(r["outcome"], {})[key(r)] = r["message"]

    workers = {h for h, rs in roles.items() if "worker" in rs}
    infra = {h for h, rs in roles.items() if "infra" in rs}
    failed = by_outcome.get("failed", {})
    expected: dict[Key, str] = {
        **{(w, "master-2", 2379, "tcp"): RESET for w in workers},
        **{(i, "worker-1", 8472, "udp"): PORT_UNREACHABLE for i in infra},
        ("master-1", "master-2", 2380, "tcp"): FILTERED,
        ("worker-3", "infra-1", 4789, "udp"): FILTERED,
        ("worker-2", "os-sudo-nopasswd", None, None): "sudo -n -l failed: a password is required: no rule lets "
                                                       "nova-installer run commands without a password",
    }
    assert failed == expected
    # The other direction of the bidirectional etcd peer rule is open.
    assert ("master-2", "master-1", 2380, "tcp") in {key(r) for r in records if r["outcome"] == "passed"}

    # master-3 (sshd down): each of its checks, and each probe that needs it, errors once, naming it and why.
    down = "master-3: ssh: connection refused by"
    os_master3 = {key(r) for r in records if r["check"] != "firewall" and r["source"] == "master-3"
                  and r["outcome"] != "warning"}
    # An advisory check that could not be made (os-sudoers-file) is a warning naming the same cause.
    assert by_outcome.get("warning", {}).get(("master-3", "os-sudoers-file", None, None), "").startswith(
        "could not be checked: master-3: ssh: connection refused by")
    needs_master3 = {p for p in probes if p[0] == "master-3" or (p[1] == "master-3" and p[3] != "icmp")}
    errors = by_outcome.get("error", {})
    assert set(errors) == needs_master3 | os_master3
    assert all(down in m and "ssh: ssh:" not in m for m in errors.values()), set(errors.values())
    assert f"master-3: ssh: connection refused by {inv.host('master-3').address}:22 (is sshd running?); " \
           f"{len(errors)} checks not run" in out

    # worker-2 (no sudo, no ICMP for ordinary users): what needs root there is unprovable, and says why.
    skipped = by_outcome.get("skipped", {})
    receiver = f"skipped: cannot be proven: worker-2: {NO_SUDO}: the IPIP receiver and listeners on ports below " \
               "1024 need it"
    # Port 22 is sshd's there: open, no listener needed. ICMP to master-3 needs no login on master-3.
    expect_skipped = {p: receiver for p in probes
                      if p[1] == "worker-2" and (p[3] == "ipip" or (p[2] is not None and p[2] < 1024 and p[2] != 22))
                      and p[0] != "master-3"}
    for p in probes:
        if p[0] == "worker-2" and (p[3] == "icmp" or (p[3] == "ipip" and p[1] != "master-3")):
            expect_skipped[p] = ""
    assert set(skipped) == set(expect_skipped)
    assert all(skipped[p] == m for p, m in expect_skipped.items() if m)
    sends = {skipped[p] for p in expect_skipped if p[0] == "worker-2"}
    gid = faulty_lab.exec("worker-2", "id -g nova-installer").stdout.strip()
    assert sends == {
        "skipped: cannot be proven: worker-2: no ICMP socket and no usable ping binary: an unprivileged ICMP socket "
        f"needs the group {gid} in net.ipv4.ping_group_range (1 0), a raw one needs root; " + NO_SUDO,
        f"skipped: cannot be proven: worker-2: {NO_SUDO}: sending IPIP needs it (no raw socket for IP protocol 4: "
        "Operation not permitted)",
    }
    assert set(by_outcome) <= {"passed", "failed", "error", "skipped", "warning"}
    # The only warnings: the advisory drop-in check where sudo is refused (worker-2) or the host is down (master-3).
    assert set(by_outcome.get("warning", {})) == {("worker-2", "os-sudoers-file", None, None),
                                                  ("master-3", "os-sudoers-file", None, None)}

    # No raw traceback, no doubled prefix, one summary line per unreachable host.
    for word in ("Traceback", "BrokenPipeError", "_fileobj2output", "ssh: ssh:", "INTERNALERROR", "host access above"):
        assert word not in out, word
    assert out.count("checks not run") == 1
    # Tests that failed only because master-3 is down are counted as unreachable, not listed one by one; they
    # still fail the run (rc 1 above) and keep their error records.
    assert not [line for line in out.splitlines() if line.startswith("FAILED") and "[master-3:" in line]
    assert re.search(r"^=+ \d+ failed, .*\d+ unreachable in ", out, re.M), out[-1500:]


def test_the_host_faults_revert(faulty_lab: Lab) -> None:
    for f in FAULTS:
        if f["name"] in ("noisy-shell", "no-icmp", "sshd-limits"):
            faulty_lab.revert(f["name"], **{k: v for k, v in f.items() if k != "name"})
    quiet = subprocess.run(ssh_argv(faulty_lab, "worker-3", "echo answer"), capture_output=True, text=True,
                           timeout=30, check=False)
    assert (quiet.stdout, quiet.stderr) == ("answer\n", "")
    assert faulty_lab.exec("worker-2", "cat /proc/sys/net/ipv4/ping_group_range").stdout.split() == ["0",
                                                                                                     "2147483647"]
    icmp = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)"
    unprivileged = faulty_lab.exec("worker-2", ["runuser", "-u", "nova-installer", "--", "python3", "-c", icmp],
                                   check=False)
    assert unprivileged.returncode == 0, unprivileged.stderr
    back = subprocess.run(ssh_argv(faulty_lab, "worker-1", "echo up"), capture_output=True, text=True, timeout=30,
                          check=False)
    assert back.stdout == "up\n"
