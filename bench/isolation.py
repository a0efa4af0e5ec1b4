"""Measure what unreachable hosts cost, and whether a large clean lab stays clean; print markdown tables.

``--unreachable``: on a 3/2/1/3 lab, the whole pre-install suite (``pytest -n 2``) with 0, 1 and 2 unreachable
nodes (master-3's port 22 black-holed by nftables; then also worker-2's sshd stopped): wall time, terminal
lines, FAILED lines, records not passed.

``--workers N``: on a 3/2/1/N lab, ``suites/test_firewall.py -n 2`` on the clean lab (wall time, probes, how many
needed the second pass, records not passed), then with drops planted (2379/tcp workers -> masters dropped,
8472/udp nodes -> worker-1 rejected, 2380/tcp master-1 -> master-2 dropped in that direction only): whether
exactly those were reported.

``--repo PATH`` runs the suites from another checkout (to measure a baseline); the lab always comes from this
one. Run as root:

    python bench/isolation.py --unreachable
    python bench/isolation.py --workers 200
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _pytest_nova.catalog import load_catalog  # noqa: E402
from _pytest_nova.inventory import load_inventory  # noqa: E402
from _pytest_nova.kinds import build  # noqa: E402
from _pytest_nova.plan import PortRuleCheck  # noqa: E402
from nova_lab import Lab, LabSpec  # noqa: E402

Probe = tuple[str, str, "int | None", str]


def run(lab: Lab, repo: Path, *args: str, timeout: float = 3600) -> dict[str, Any]:
    """Run pytest from nova-ctl's namespace; wall time, output lines and the results JSON."""
    results = Path(tempfile.mkdtemp(prefix="nova-bench-")) / "results.json"
    argv = [sys.executable, "-m", "pytest", f"--nova-inventory={lab.inventory_path}", f"--nova-json={results}",
            "-p", "no:cacheprovider", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    env["PYTHONPATH"] = str(repo)
    started = time.monotonic()
    proc = subprocess.run(lab.runner_cmd(argv), capture_output=True, text=True, timeout=timeout, cwd=repo, env=env,
                          check=False)
    wall = time.monotonic() - started
    data = json.loads(results.read_text()) if results.exists() else {"results": []}
    out = proc.stdout + proc.stderr
    second = re.search(r"; (\d+) probed a second time", out)
    matrix = next((line for line in out.splitlines() if line.startswith("nova firewall matrix:")), "")
    return {"rc": proc.returncode, "wall": wall, "lines": len(out.splitlines()), "out": out,
            "failed_lines": sum(1 for line in out.splitlines() if line.startswith("FAILED ")),
            "records": data["results"], "second_pass": int(second.group(1)) if second else None, "matrix": matrix}


def bad(records: list[dict[str, Any]]) -> dict[Probe, str]:
    """Firewall records not passed, by (source, target, port, protocol)."""
    return {(r["source"], r["target"], r["port"], r["protocol"]): r["message"] for r in records
            if r["outcome"] != "passed"}


def unreachable(repo: Path) -> None:
    """The table of runs with 0, 1 and 2 unreachable nodes."""
    lab = Lab.up(LabSpec(name=f"bu{os.getpid()}"))
    try:
        print("| unreachable nodes | wall | terminal lines | FAILED lines | records not passed | rc |")
        print("| --- | --- | --- | --- | --- | --- |")
        steps: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
            ("0", []),
            ("1 (master-3: port 22 black-holed)", [("fw-drop-ssh", {"destination": "master-3"})]),
            ("2 (+ worker-2: sshd down)", [("sshd-down", {"host": "worker-2"})]),
        ]
        for label, faults in steps:
            for name, params in faults:
                lab.apply(name, **params)
            r = run(lab, repo, "-n", "2")
            not_passed = sum(1 for x in r["records"] if x["outcome"] != "passed")
            print(f"| {label} | {r['wall']:.1f} s | {r['lines']} | {r['failed_lines']} | {not_passed} | {r['rc']} |")
            summary = [line for line in r["out"].splitlines() if "checks not run" in line]
            for line in summary:
                print(f"|  | `{line}` | | | | |")
    finally:
        lab.down()


def large(workers: int, repo: Path) -> None:
    """A clean run and a run with planted drops on a lab of ``workers`` workers."""
    lab = Lab.up(LabSpec(name=f"bw{os.getpid()}", workers=workers))
    try:
        inv = load_inventory(lab.inventory_path)
        checks = build(load_catalog(), inv).of_type(PortRuleCheck, "preinstall")
        planned = {(str(c.source), t.name, c.port, str(c.protocol)) for c in checks for t in c.targets}
        roles = {h.name: set(h.roles) for h in inv.nodes}
        nodes = {h.name for h in inv.cluster_nodes}
        clean = run(lab, repo, "pytest_nova/suites/test_firewall.py", "-n", "2")
        print(f"clean 3/2/1/{workers}: {len(inv.nodes)} hosts, {len(clean['records'])} records, wall "
              f"{clean['wall']:.1f} s, second pass {clean['second_pass']}, not passed {len(bad(clean['records']))}, "
              f"rc {clean['rc']}\n  {clean['matrix']}")
        for k, m in list(bad(clean["records"]).items())[:20]:
            print("  ", k, m)
        planted = [lab.apply("fw-drop", port=2379, protocol="tcp", source="workers", destination="masters"),
                   lab.apply("fw-reject", port=8472, protocol="udp", source="nodes", destination="worker-1"),
                   lab.apply("fw-drop", port=2380, protocol="tcp", source="master-1", destination="master-2")]
        expected = {p for p in planned
                    if (p[2:] == (2379, "tcp") and "worker" in roles.get(p[0], ()) and "master" in roles[p[1]])
                    or (p[2:] == (8472, "udp") and p[0] in nodes and p[1] == "worker-1")
                    or p == ("master-1", "master-2", 2380, "tcp")}
        dropped = run(lab, repo, "pytest_nova/suites/test_firewall.py", "-n", "2")
        got = bad(dropped["records"])
        print(f"planted drops: expected {len(expected)}, reported {len(got)}, exactly: {set(got) == expected}, "
              f"wall {dropped['wall']:.1f} s, second pass {dropped['second_pass']}\n  {dropped['matrix']}")
        for k in sorted(set(got) ^ expected, key=str)[:20]:
            print("   differs:", k, got.get(k, "(not reported)"))
        for f in planted:
            lab.revert(f)
    finally:
        lab.down()


def main() -> None:
    """Parse the options, run the chosen measurements."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unreachable", action="store_true")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    if args.unreachable:
        unreachable(args.repo.resolve())
    if args.workers:
        large(args.workers, args.repo.resolve())


if __name__ == "__main__":
    main()
