"""Benchmark the node and name checks on a lab of 3 masters / 2 infra / 1 ingress / N workers (default 30).

From inside nova-ctl's namespace, with ``-n auto``, it measures:

1. pytest-nova: ``pytest_nova/suites/``: ``test_dns.py test_external.py test_os.py test_k8s_nodes.py`` (one facts
   probe per host);
2. in the same benchmark run, a plain testinfra file making the same node checks one property per round trip
   (``host.user``, ``host.file(...).mode``, ``host.sysctl``, ``host.addr(name)``, one ``host.run`` per TLS
   endpoint...), with testinfra's default ssh connection (no shared ControlPath).

Wall time includes pytest's start, collection and the xdist workers: what a user waits for. SSH logins are
counted in the lab hosts' sshd logs (``Accepted publickey``), per host, for each run. Run as root:

    python bench/node_checks.py --workers 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nova_lab import Lab, LabSpec, teardown  # noqa: E402
from nova_lab.addresses import DOMAIN, VENDOR_NAMES  # noqa: E402
from nova_lab.state import state_dir  # noqa: E402

SUITES = [f"pytest_nova/suites/test_{s}.py" for s in ("dns", "external", "os", "k8s_nodes")]
RECORDS = ["nova-cilium-hubble", "nova-release-git-main", "nova-console", "nova-oauth", "nova-alertmanager-main",
           "nova-grafana-main", "nova-prometheus-main", "nova-neuvector-ui", "nova-neuvector-api-docs",
           "nova-logs-main"]
ENDPOINTS = [(n, 8140 if n.startswith("sun.") else 443) for n in VENDOR_NAMES]

# The same node checks, written the usual testinfra way: one property, one command, one login.
PLAIN_TEST = '''
import json, os, pytest
USER = "nova-installer"
KEY = open(os.environ["PLAIN_PUB"]).read().split()[1]
NAMES = json.loads(os.environ["PLAIN_NAMES"])
ENDPOINTS = json.loads(os.environ["PLAIN_ENDPOINTS"])
TLS = ("python3 -c 'import socket,ssl,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),2);"
       "ssl.create_default_context().wrap_socket(s,server_hostname=sys.argv[1])' {} {}")


def test_user(host):
    u = host.user(USER)
    assert u.exists and u.shell == "/bin/bash" and host.file(u.home).is_directory


def test_sudoers(host):
    with host.sudo():
        f = host.file(f"/etc/sudoers.d/99-{USER}-user")
        assert f.exists and f.mode == 0o440 and f.user == "root"


def test_sudo_nopasswd(host):
    assert host.run("sudo -n true").rc == 0


def test_ssh_dir(host):
    f = host.file(f"/home/{USER}/.ssh")
    assert f.mode == 0o700 and f.user == USER


def test_authorized_keys(host):
    f = host.file(f"/home/{USER}/.ssh/authorized_keys")
    assert f.mode == 0o600 and f.user == USER and KEY in f.content_string


def test_swap_off(host):
    assert len(host.file("/proc/swaps").content_string.strip().splitlines()) == 1


def test_ip_forward(host):
    assert host.sysctl("net.ipv4.ip_forward") == 1


def test_br_netfilter(host):
    assert host.sysctl("net.bridge.bridge-nf-call-iptables") == 1


def test_hostname(host):
    assert host.check_output("hostname")


def test_product_uuid(host):
    with host.sudo():
        assert host.file("/sys/class/dmi/id/product_uuid").content_string.strip()


@pytest.mark.parametrize("name", NAMES)
def test_name_resolves(host, name):
    assert host.addr(name).is_resolvable


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{n}:{p}" for n, p in ENDPOINTS])
def test_endpoint_tls(host, endpoint):
    assert host.run(TLS.format(*endpoint)).rc == 0
'''


def logins(lab: Lab, hosts: list[str]) -> dict[str, int]:
    """Accepted SSH logins so far, per host."""
    return {h: lab.sshd_logins(h) for h in hosts}


def timed(lab: Lab, argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run ``argv`` in nova-ctl's namespace; wall seconds, exit code and the output's tail."""
    t0 = time.monotonic()
    proc = subprocess.run(lab.runner_cmd(argv), capture_output=True, text=True, cwd=REPO, env=env, check=False,
                          timeout=3600)
    return time.monotonic() - t0, proc.returncode, (proc.stdout + proc.stderr)[-1500:]


def main() -> int:
    """Boot the lab, run both variants, print a markdown table, always tear the lab down."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=30)
    ap.add_argument("--name", default="ndbench", help="lab name (default: ndbench)")
    ap.add_argument("--skip-plain", action="store_true", help="measure pytest-nova only")
    args = ap.parse_args()
    if state_dir(args.name).exists():
        teardown(args.name)
    lab = Lab.up(LabSpec(name=args.name, masters=3, infra=2, ingress=1, workers=args.workers))
    try:
        nodes = [h.name for h in lab.plan if h.kind == "node"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
        rows: list[tuple[str, float, int, dict[str, int], str]] = []

        before = logins(lab, nodes)
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "auto",
                f"--nova-inventory={lab.inventory_path}", *SUITES]
        secs, rc, tail = timed(lab, argv, env)
        after = logins(lab, nodes)
        rows.append(("pytest-nova (one probe per host)", secs, rc, {h: after[h] - before[h] for h in nodes}, tail))

        if not args.skip_plain:
            with tempfile.TemporaryDirectory(prefix="nova-bench-", dir="/var/tmp") as tmp:
                test = Path(tmp) / "test_plain_nodes.py"
                test.write_text(PLAIN_TEST)
                sd = lab.state_dir
                cfg = Path(tmp) / "ssh_config"
                cfg.write_text(f"Host *\n  User nova-installer\n  IdentityFile {sd / 'id_nova'}\n"
                               f"  UserKnownHostsFile {sd / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
                               "  BatchMode yes\n  ConnectTimeout 5\n  LogLevel ERROR\n")
                hosts = ",".join(f"ssh://{lab.hosts[h].address}" for h in nodes)
                penv = {**env, "PLAIN_PUB": str(sd / "id_nova.pub"),
                        "PLAIN_NAMES": json.dumps([f"{r}.{DOMAIN}" for r in RECORDS]),
                        "PLAIN_ENDPOINTS": json.dumps(ENDPOINTS)}
                argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:nova", "-q", "-n",
                        "auto", f"--hosts={hosts}", f"--ssh-config={cfg}", "--rootdir", tmp, str(test)]
                before = logins(lab, nodes)
                secs, rc, tail = timed(lab, argv, penv)
                after = logins(lab, nodes)
                rows.append(("plain testinfra (one property per round trip)", secs, rc,
                             {h: after[h] - before[h] for h in nodes}, tail))

        print(f"\nLab: 3 masters / 2 infra / 1 ingress / {args.workers} workers ({len(nodes)} nodes + nova-ctl), "
              f"{os.cpu_count()} CPUs, -n auto\n")
        print("| run | wall time | exit | SSH logins per node (min / mean / max) | SSH logins in all |")
        print("| --- | ---: | ---: | --- | ---: |")
        for label, secs, rc, per, _ in rows:
            counts = list(per.values())
            print(f"| {label} | {secs:.1f} s | {rc} | {min(counts)} / {mean(counts):.1f} / {max(counts)} | "
                  f"{sum(counts)} |")
        for label, _, rc, _, tail in rows:
            if rc != 0:
                print(f"\n{label} exited {rc}:\n{tail}", file=sys.stderr)
        return 0
    finally:
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
