"""The firewall matrix against a real lab: all open when clean, exactly the dropped rules filtered, nothing left."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from _pytest_nova.catalog import load_catalog
from _pytest_nova.inventory import Inventory, load_inventory
from nova_lab import Lab, LabSpec
from tests.lab_fixtures import REPO, booted, lab_name, run_suite

pytestmark = pytest.mark.lab

Probe = tuple[str, str, "int | None", str]
SUITE = "pytest_nova/suites/test_firewall.py"
FILTERED = "filtered: no answer within 2.0 s, nor when probed again (3 s, 6 s)"
# Lists, from inside one lab host, our scripts still running there and the ports its network namespace holds.
_INSPECT = textwrap.dedent("""
    import json, os
    me = os.readlink("/proc/self/ns/net")
    scripts = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(pid) == os.getpid() or os.readlink(f"/proc/{pid}/ns/net") != me:
                continue
            argv = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\\0")
        except OSError:
            continue
        # The scripts run as `python3 -c BOOT <size> nova-<name>` (and ssh clients carry that command line).
        if any(a.endswith(("nova-listener", "nova-portprobe")) for a in argv):
            scripts.append(" ".join(argv)[-100:])
    ports = []
    for name in ("tcp", "udp", "raw"):
        for line in open(f"/proc/net/{name}").read().splitlines()[1:]:
            c = line.split()
            if name != "tcp" or c[3] == "0A":
                ports.append(f"{int(c[1].split(':')[1], 16)}/{name}")
    print(json.dumps({"scripts": scripts, "ports": sorted(ports)}))
""")


@pytest.fixture(scope="module")
def fw_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """A default-size lab (3 masters, 2 infra, 1 ingress, 3 workers, ops-1) of this module's own."""
    yield from booted(LabSpec(name=lab_name("fw", pytestconfig)))


def _hosts(lab: Lab) -> list[str]:
    return sorted(h.name for h in lab.hosts.values() if h.kind in ("runner", "node", "workstation"))


def inspect(lab: Lab) -> dict[str, dict[str, Any]]:
    """Per lab host: our scripts still running and the bound ports."""
    return {h: json.loads(lab.exec(h, [sys.executable, "-c", _INSPECT]).stdout) for h in _hosts(lab)}


def assert_nothing_left(lab: Lab, before: dict[str, dict[str, Any]]) -> None:
    """No listener or probe script on any host, and every host holds exactly the ports it held before."""
    deadline = time.monotonic() + 10  # a closed ssh session takes a moment to reach the remote script
    while True:
        after = inspect(lab)
        if all(not a["scripts"] and a["ports"] == before[h]["ports"] for h, a in after.items()):
            return
        if time.monotonic() > deadline:
            left = {h: a["scripts"] for h, a in after.items() if a["scripts"]}
            bound = {h: sorted(set(a["ports"]) - set(before[h]["ports"])) for h, a in after.items()}
            pytest.fail(f"left behind: scripts {left}, ports { ({h: p for h, p in bound.items() if p}) }")
        time.sleep(0.5)


def planned(inv: Inventory) -> set[Probe]:
    """Every (source, target, port, protocol) the plan probes."""
    from _pytest_nova.kinds import build
    from _pytest_nova.plan import PortRuleCheck

    checks = build(load_catalog(), inv).of_type(PortRuleCheck, "preinstall")
    return {(str(c.source), t.name, c.port, str(c.protocol)) for c in checks for t in c.targets}


def records(data: dict[str, Any]) -> dict[Probe, dict[str, Any]]:
    """Results-JSON firewall records by (source, target, port, protocol); asserts each appears once."""
    fw = [r for r in data["results"] if r["check"] == "firewall"]
    out = {(r["source"], r["target"], r["port"], r["protocol"]): r for r in fw}
    assert len(out) == len(fw), "one record per (source, target, port, protocol)"
    return out


def test_clean_lab_is_all_open_with_one_record_per_probe_and_nothing_left(fw_lab: Lab) -> None:
    before = inspect(fw_lab)
    rc, data, out = run_suite(fw_lab, SUITE, "-n", "2")
    assert rc == 0, out[-3000:]
    got = records(data)
    assert set(got) == planned(load_inventory(fw_lab.inventory_path))
    assert {r["outcome"] for r in got.values()} == {"passed"}
    assert all(
        r["message"] == "open" or r["message"].startswith("open: port already in use by sshd") for r in got.values()
    )
    assert {p[3] for p in got} == {"tcp", "udp", "icmp", "ipip"}
    assert "test_port[worker-1:masters:2379/tcp]" in str([r["nodeid"] for r in got.values()])
    # The summary line says where the matrix's time went (on the controller, although a worker computed it).
    summary = (rf"nova firewall matrix: {len(got)} probes .*; 0 probed a second time, 0 a third time before 0 were "
               r"called dropped \(listeners [\d.]+ s, probes [\d.]+ s, ipip retries [\d.]+ s, closing [\d.]+ s\)")
    assert re.search(summary, out), out[-3000:]
    assert_nothing_left(fw_lab, before)


def test_dropped_tcp_udp_and_icmp_are_exactly_the_filtered_ones(fw_lab: Lab) -> None:
    inv = load_inventory(fw_lab.inventory_path)
    roles = {h.name: set(h.roles) for h in inv.nodes}
    nodes = {h.name for h in inv.cluster_nodes}
    expected = {
        p
        for p in planned(inv)
        if (p[2:] == (2379, "tcp") and "worker" in roles.get(p[0], ()) and "master" in roles[p[1]])
        or (p[2:] == (4789, "udp") and p[0] in nodes and p[1] == "worker-1")
        or (p[2:] == (None, "icmp") and p[0] in nodes and p[1] == "worker-1")
    }
    before = inspect(fw_lab)
    with fw_lab.fault("fw-drop-etcd"), fw_lab.fault("fw-drop-vxlan"), fw_lab.fault("fw-drop-icmp"):
        rc, data, out = run_suite(fw_lab, SUITE, "-n", "2")
    assert rc == 1, out[-3000:]
    bad = {p: r for p, r in records(data).items() if r["outcome"] != "passed"}
    assert set(bad) == expected
    assert {r["message"] for r in bad.values()} == {FILTERED}
    assert {p[2:] for p in expected} == {(2379, "tcp"), (4789, "udp"), (None, "icmp")}
    assert "[worker-1 -> master-1 2379/tcp]" in out and f"Observed: {FILTERED}" in out
    assert_nothing_left(fw_lab, before)


def test_on_a_lossy_network_only_the_planted_drop_is_filtered_and_each_pass_is_counted(fw_lab: Lab) -> None:
    """10 % of the packets between the nodes are lost at random (nftables numgen, as a congested network loses
    them): the retries with growing patience clear what the loss hid, and the real drop is still found."""
    inv = load_inventory(fw_lab.inventory_path)
    roles = {h.name: set(h.roles) for h in inv.nodes}
    expected = {p for p in planned(inv)
                if p[2:] == (2379, "tcp") and "worker" in roles.get(p[0], ()) and "master" in roles[p[1]]}
    with fw_lab.fault("fw-lossy", percent=10), fw_lab.fault("fw-drop-etcd"):
        rc, data, out = run_suite(fw_lab, SUITE, "-n", "2")
    assert rc == 1, out[-3000:]
    bad = {p: r for p, r in records(data).items() if r["outcome"] != "passed"}
    assert set(bad) == expected, sorted(set(bad) ^ expected)[:10]
    assert {r["message"] for r in bad.values()} == {FILTERED}
    passes = re.search(r"; (\d+) probed a second time, (\d+) a third time before (\d+) were called dropped", out)
    assert passes, out[-3000:]
    second, third, dropped = map(int, passes.groups())
    # Every planted drop needs all three passes; the loss adds suspects that a later pass clears.
    assert dropped == len(expected) and third >= len(expected) and second > third, passes.group(0)


def test_a_kernel_vxlan_port_cannot_be_proven_and_says_so(fw_lab: Lab) -> None:
    add = "ip link add nova-vx0 type vxlan id 42 dstport 4789 dev eth0 && ip link set nova-vx0 up"
    fw_lab.exec("worker-1", add)
    try:
        rc, data, out = run_suite(fw_lab, SUITE, "-k", "4789")
        rc_proof, data_proof, out_proof = run_suite(fw_lab, SUITE, "-k", "4789", "--nova-require-proof")
    finally:
        fw_lab.exec("worker-1", "ip link del nova-vx0")
    got = records(data)
    to_w1 = {p: r for p, r in got.items() if p[1] == "worker-1"}
    assert to_w1 and {r["outcome"] for r in to_w1.values()} == {"skipped"}
    message = next(iter(to_w1.values()))["message"]
    assert message.startswith("skipped: cannot be proven: no UDP answer and no ICMP error from worker-1 4789/udp")
    assert "the kernel" in message
    proven = {p for p, r in got.items() if p[1] != "worker-1"}
    assert {got[p]["outcome"] for p in proven} == {"passed"}
    assert rc == 0, out[-2000:]
    # The verdict line counts what was proven and what could not be; --nova-require-proof makes the latter gate.
    assert f"{len(proven)} proven, {len(to_w1)} could not be proven" in out
    failed = {p for p, r in records(data_proof).items() if r["outcome"] == "failed"}
    assert failed == set(to_w1) and rc_proof == 1, out_proof[-2000:]
    assert all(records(data_proof)[p]["message"].startswith("not proven (--nova-require-proof): skipped: cannot be")
               for p in failed)


def test_postinstall_proves_free_documented_ports_with_listeners(fw_lab: Lab) -> None:
    """Installed: held ports are probed as they are, ports no service uses here get a temporary listener."""
    fw_lab.set_installed(True)
    try:
        rc, data, out = run_suite(fw_lab, SUITE, "--nova-phase=postinstall", "-n", "2")
        clean = records(data)
        with fw_lab.fault("fw-drop", port=4245, protocol="tcp", source="nodes", destination="worker-1"):
            rc_drop, data_drop, out_drop = run_suite(fw_lab, SUITE, "--nova-phase=postinstall", "-n", "2")
    finally:
        fw_lab.set_installed(False)
    assert rc == 0, out[-3000:]
    assert {r["outcome"] for r in clean.values()} == {"passed"}
    # 4245 (Hubble relay) has a service on master-1 only; elsewhere a temporary listener proved the path.
    relay = {p[1]: r["message"] for p, r in clean.items() if p[2:] == (4245, "tcp")}
    assert relay["master-1"].startswith("open: port already in use by")
    assert relay["worker-1"] == "open"
    assert clean[("worker-1", "master-2", 2379, "tcp")]["message"].startswith("open: port already in use by")
    # 4789 is held by each installed node's kernel VXLAN device, which answers nothing: the destination's
    # conntrack proves each datagram passed.
    assert {p[1] for p in clean if p[2:] == (4789, "udp")} and all(
        r["message"].startswith("open: the datagram passed") and "evidence: conntrack" in r["message"]
        for p, r in clean.items() if p[2:] == (4789, "udp"))
    dropped = records(data_drop)
    failed = {p for p, r in dropped.items() if r["outcome"] != "passed"}
    assert failed == {p for p in dropped if p[1:] == ("worker-1", 4245, "tcp")} and failed, out_drop[-3000:]
    assert all(dropped[p]["message"].startswith(FILTERED) for p in failed)
    assert rc_drop == 1


def _listening_and_probing(lab: Lab) -> bool:
    """Every node's listener is up: the probes start then (each node's batch inside its listener)."""
    scripts = {h: a["scripts"] for h, a in inspect(lab).items()}
    nodes = [h.name for h in lab.hosts.values() if h.kind == "node"]
    return all(any("nova-listener" in s for s in scripts[h]) for h in nodes)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_an_interrupted_run_leaves_nothing_behind(fw_lab: Lab, sig: signal.Signals) -> None:
    before = inspect(fw_lab)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        f"--nova-inventory={fw_lab.inventory_path}",
        "-p",
        "no:cacheprovider",
        "--nova-timeout=30",
        "-n",
        "2",
        SUITE,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    # Every ICMP probe to worker-1 waits 30 s: the interrupt lands while listeners and probes are running.
    with fw_lab.fault("fw-drop-icmp"):
        proc = subprocess.Popen(
            fw_lab.runner_cmd(argv),
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # A terminal's Ctrl-C reaches a run whose SIGINT is in its default state. A run started in the
            # background by a non-interactive shell inherits SIGINT ignored, and Python then keeps it ignored.
            preexec_fn=_default_sigint,
        )
        try:
            deadline = time.monotonic() + 60
            # Interrupt once the listeners are up and probes are running (they wait 30 s on ICMP to worker-1).
            while not _listening_and_probing(fw_lab):
                assert proc.poll() is None and time.monotonic() < deadline, "the matrix never started"
                time.sleep(0.3)
            time.sleep(1)
            assert proc.poll() is None, "the run ended before it could be interrupted"
            os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C does: the whole process group
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                # What was still running says why.
                ps = subprocess.run(["ps", "-o", "pid,ppid,etime,stat,args", "-g", str(proc.pid)],
                                    capture_output=True, text=True, check=False).stdout
                pytest.fail(f"the run did not end within 30 s of {sig.name}; still running:\n{ps}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    assert_nothing_left(fw_lab, before)


@pytest.fixture(scope="module")
def proxy_fw_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """A 1/1/0/1 lab in proxy mode (the HTTP proxy on 3128 is not an inventory host)."""
    yield from booted(
        LabSpec(name=lab_name("fp", pytestconfig), masters=1, infra=1, ingress=0, workers=1, proxy=True)
    )


def test_every_node_reaches_the_http_proxy_and_a_drop_fails_exactly_that_node(proxy_fw_lab: Lab) -> None:
    lab = proxy_fw_lab
    sources = {"nova-ctl", "master-1", "infra-1", "worker-1"}
    proxy_addr = lab.hosts["proxy"].address
    before = lab.exec("proxy", ["ss", "-Htln"]).stdout
    rc, data, out = run_suite(lab, SUITE, "-n", "2")
    assert rc == 0, out[-3000:]
    got = records(data)
    assert set(got) == planned(load_inventory(lab.inventory_path))
    to_proxy = {p: r for p, r in got.items() if p[1] == "proxy"}
    assert set(to_proxy) == {(s, "proxy", 3128, "tcp") for s in sources}
    # Probed as it is: the proxy answered, no temporary listener was started there.
    assert {r["message"] for r in to_proxy.values()} == {"open"}
    assert {r["requirement"] for r in to_proxy.values()} == {"fw-http-proxy"}
    assert "test_port[worker-1:proxy:3128/tcp]" in str([r["nodeid"] for r in to_proxy.values()])
    assert lab.exec("proxy", ["ss", "-Htln"]).stdout == before

    with lab.fault("fw-drop", source="worker-1", destination="proxy", port=3128, protocol="tcp"):
        rc, data, out = run_suite(lab, SUITE, "-n", "2")
    assert rc == 1, out[-3000:]
    bad = {p: r for p, r in records(data).items() if r["outcome"] != "passed"}
    assert set(bad) == {("worker-1", "proxy", 3128, "tcp")}
    assert bad[("worker-1", "proxy", 3128, "tcp")]["message"] == FILTERED
    assert f"Checked:  worker-1 -> proxy ({proxy_addr}) 3128/tcp" in out

    # network.httpProxy as a host name: resolved on each source through its own resolver.
    inv = lab.state_dir / "inventory-proxy-name.yaml"
    text = lab.inventory_path.read_text()
    assert f"http://{proxy_addr}:3128" in text
    inv.write_text(text.replace(f"http://{proxy_addr}:3128", "http://proxy.nova.lab.local:3128"))
    rc, data, out = run_suite(lab, SUITE, f"--nova-inventory={inv}", "-k", "proxy")
    got = records(data)
    assert rc == 0, out[-3000:]
    assert data["inventory"]["path"] == str(inv)
    assert set(got) == {(s, "proxy", 3128, "tcp") for s in sources}
    assert {r["message"] for r in got.values()} == {"open"}
    # A proxy name the nodes cannot resolve fails every proxy rule, saying so.
    inv.write_text(text.replace(f"http://{proxy_addr}:3128", "http://no-proxy-here.nova.lab.local:3128"))
    rc, data, out = run_suite(lab, SUITE, f"--nova-inventory={inv}", "-k", "proxy")
    got = records(data)
    assert rc == 1 and set(got) == {(s, "proxy", 3128, "tcp") for s in sources}, out[-3000:]
    assert all(
        r["outcome"] == "failed"
        and r["message"].startswith(f"name not resolved: no-proxy-here.nova.lab.local on {p[0]}: ")
        for p, r in got.items()
    ), got
