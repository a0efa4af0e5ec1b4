"""Benchmark the firewall matrix on labs of 3 masters / 2 infra / 1 ingress / N workers; print a markdown table.

For each N it boots a lab, then measures, from inside nova-ctl's namespace, with ``-n auto`` (pytest-nova: the
README's invocation, with ``--nova-json``, ``--html`` and ``--junitxml``):

1. the full pre-install matrix (``pytest_nova/suites/test_firewall.py``: temporary listeners, TCP/UDP/ICMP/IPIP);
2. on the installed lab, the same suite limited to the TCP rules (``-k tcp``, post-install: real services);
3. on the installed lab, a plain testinfra implementation of those TCP rules: one test per source, destination
   and port asserting ``host.addr(addr).port(port).is_reachable`` — once as testinfra runs by default (a new
   SSH login per command) and once given a shared SSH ControlPath (its best case).

Wall time includes pytest's start, collection and xdist workers: what a user waits for. SSH logins are counted
from the lab hosts' sshd logs. ``--plain-limit K`` runs an evenly spread sample of K plain tests and extrapolates
the plain time from their rate (marked ``~`` in the table; ``--mux-limit`` likewise for the ControlPath run).
Run as root on a quiet machine:

    python bench/firewall.py --sizes 10 30 60 --plain-limit 300
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _pytest_nova.catalog import load_catalog  # noqa: E402
from _pytest_nova.inventory import Inventory, load_inventory  # noqa: E402
from _pytest_nova.kinds import build  # noqa: E402
from _pytest_nova.plan import PortRuleCheck  # noqa: E402
from nova_lab import Lab, LabSpec, teardown  # noqa: E402
from nova_lab.state import state_dir  # noqa: E402

PLAIN_TEST = '''
import json, os, pytest, testinfra
CASES = json.load(open(os.environ["PLAIN_CASES"]))
OPTS = os.environ["PLAIN_SSH_OPTS"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}:{c[2]}:{c[4]}" for c in CASES])
def test_reachable(case):
    src, url, dst, addr, port = case
    kw = {} if url.startswith("local") else {"ssh_identity_file": os.environ["PLAIN_KEY"], "ssh_extra_args": OPTS}
    host = testinfra.get_host(url, **kw)
    assert host.addr(addr).port(port).is_reachable, f"{src} -> {dst} {port}/tcp"
'''


@dataclass
class Run:
    """One measured pytest run."""

    seconds: float
    probes: int
    logins: int
    rc: int


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    return env | (extra or {})


def _logins(lab: Lab) -> int:
    return sum(lab.sshd_logins(h.name) for h in lab.hosts.values() if h.kind in ("node", "workstation"))


def _pytest(lab: Lab, args: list[str], env: dict[str, str] | None = None, timeout: float = 7200) -> tuple[int, str]:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "auto", *args]
    proc = subprocess.run(lab.runner_cmd(argv), cwd=REPO, env=_env(env), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def run_matrix(lab: Lab, *extra: str) -> Run:
    """The nova firewall suite; probes counted from the results JSON (one record per probe)."""
    results = lab.state_dir / "bench-results.json"
    logins = _logins(lab)
    start = time.monotonic()
    # The README's invocation: the HTML report and JUnit XML are part of what a user waits for.
    rc, out = _pytest(lab, [f"--nova-inventory={lab.inventory_path}", f"--nova-json={results}",
                            f"--html={lab.state_dir / 'bench-report.html'}", "--self-contained-html",
                            f"--junitxml={lab.state_dir / 'bench-junit.xml'}",
                            "pytest_nova/suites/test_firewall.py", *extra])
    seconds = time.monotonic() - start
    data: dict[str, Any] = json.loads(results.read_text()) if results.exists() else {"results": []}
    results.unlink(missing_ok=True)
    if rc not in (0, 1) or not data["results"]:
        raise SystemExit(f"matrix run failed (rc {rc}):\n{out[-3000:]}")
    return Run(seconds, len(data["results"]), _logins(lab) - logins, rc)


def plain_cases(inv: Inventory) -> list[list[Any]]:
    """The TCP probes of the plan, as plain testinfra cases (source, url, destination, address, port)."""
    checks = build(load_catalog(), inv).of_type(PortRuleCheck, "postinstall")
    cases = []
    for c in checks:
        if c.protocol != "tcp" or c.source is None:
            continue
        h = inv.host(c.source)
        url = "local://" if h.connection == "local" else f"ssh://{inv.ssh.user}@{h.address}:{inv.ssh.port}"
        cases += [[c.source, url, t.name, t.address, c.port] for t in c.targets]
    return cases


def run_plain(lab: Lab, limit: int, mux: bool) -> tuple[Run, int]:
    """The plain testinfra run over (a sample of) the TCP cases; returns the run and the number of all cases.

    ``mux``: share one SSH connection per host through a ControlPath; without it, testinfra's default.
    """
    inv = load_inventory(lab.inventory_path)
    cases = plain_cases(inv)
    chosen = cases if not limit or limit >= len(cases) else cases[:: max(1, len(cases) // limit)][:limit]
    work = Path(tempfile.mkdtemp(prefix="plain-", dir="/var/tmp"))
    control = Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp"))  # short: ssh control socket paths are limited
    try:
        (work / "test_plain.py").write_text(PLAIN_TEST)
        (work / "cases.json").write_text(json.dumps(chosen))
        sd = lab.state_dir
        # ControlPath here, not as testinfra's controlpath=: testinfra %-formats that one, which breaks on %C.
        opts = f"-o UserKnownHostsFile={sd / 'known_hosts'} -o StrictHostKeyChecking=yes -o BatchMode=yes"
        if mux:
            opts += f" -o ControlPath={control}/%C"
        env = {"PLAIN_CASES": str(work / "cases.json"), "PLAIN_SSH_OPTS": opts, "PLAIN_KEY": str(sd / "id_nova")}
        logins = _logins(lab)
        start = time.monotonic()
        rc, out = _pytest(lab, ["-p", "no:nova", "--rootdir", str(work), str(work / "test_plain.py")], env)
        seconds = time.monotonic() - start
        if rc not in (0, 1):
            raise SystemExit(f"plain testinfra run failed (rc {rc}):\n{out[-3000:]}")
        return Run(seconds, len(chosen), _logins(lab) - logins, rc), len(cases)
    finally:
        for sock in control.iterdir():
            subprocess.run(lab.runner_cmd(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"]),
                           capture_output=True, timeout=10, check=False)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(control, ignore_errors=True)


def bench(n: int, limit: int, mux_limit: int) -> dict[str, Any]:
    """Boot the 3/2/1/n lab, measure, tear it down."""
    spec = LabSpec(name=f"fwb{n}", workers=n)
    if state_dir(spec.name).exists():
        teardown(spec.name)
    lab = Lab.up(spec)
    try:
        full = run_matrix(lab)
        lab.set_installed(True)
        tcp = run_matrix(lab, "--nova-phase=postinstall", "-k", "tcp")
        plain, total = run_plain(lab, limit, mux=False)
        mux, _ = run_plain(lab, mux_limit, mux=True)
    finally:
        lab.down()
    return {"n": n, "hosts": len([h for h in lab.hosts.values() if h.kind in ("runner", "node", "workstation")]),
            "full": full, "tcp": tcp, "plain": plain, "mux": mux, "plain_total": total,
            "plain_full": plain.seconds * total / plain.probes, "mux_full": mux.seconds * total / mux.probes,
            "sampled": plain.probes < total, "mux_sampled": mux.probes < total}


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the results."""
    lines = [
        "| workers (hosts) | matrix wall | probes | probes/s | SSH logins | TCP rules, installed: nova | "
        "plain testinfra (default) | its logins | ratio | plain testinfra + ControlPath | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        f, t, p = r["full"], r["tcp"], r["plain"]
        est = "~" if r["sampled"] else ""
        mest = "~" if r["mux_sampled"] else ""
        sample = f" ({p.probes} of {r['plain_total']} run)" if r["sampled"] else ""
        lines.append(
            f"| {r['n']} ({r['hosts']}) | {f.seconds:.1f} s | {f.probes} | {f.probes / f.seconds:.0f} | {f.logins} | "
            f"{t.seconds:.1f} s for {t.probes} | {est}{r['plain_full']:.0f} s for {r['plain_total']}{sample} | "
            f"{p.logins} | {est}{r['plain_full'] / t.seconds:.0f}× | {mest}{r['mux_full']:.0f} s | "
            f"{mest}{r['mux_full'] / t.seconds:.1f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, run every size, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 60])
    parser.add_argument("--plain-limit", type=int, default=0,
                        help="run at most K plain tests (testinfra's default connection) per size (0: all)")
    parser.add_argument("--mux-limit", type=int, default=0,
                        help="run at most K plain tests with a shared ControlPath per size (0: all)")
    a = parser.parse_args()
    rows = []
    for n in a.sizes:
        row = bench(n, a.plain_limit, a.mux_limit)
        rows.append(row)
        print(f"N={n}: {row['full']} tcp={row['tcp']} plain={row['plain']} mux={row['mux']} of {row['plain_total']}",
              file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
