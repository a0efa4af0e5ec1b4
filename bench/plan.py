"""Measure the plan: ``pytest --collect-only -q`` on generated inventories of 100, 1,000 and 3,000 nodes.

For each size it writes an inventory (nova-ctl, 3 masters, 3 infra, 2 ingress, the rest workers; 2 workstations,
an HTTP proxy and the three balancers, so every kind of check is planned), then runs, in a fresh process each:

- ``pytest --nova-inventory=INV --collect-only -q`` over ``suites/`` (the whole pre-install plan, no network):
  wall time and the peak RSS of the pytest process (``getrusage(RUSAGE_CHILDREN).ru_maxrss``);
- the plan alone (``plan.build``) in this process: its time, and the number of checks and of probes.

``--profile N`` also writes a cProfile of the collection at N nodes and prints its top entries.

    python bench/plan.py                      # 100 1000 3000
    python bench/plan.py --sizes 1000 --profile 1000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Plugins of this project's development environment that a user's install does not have (hypothesis imports
# itself at the terminal summary: about a second here).
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")


def inventory_text(nodes: int) -> str:
    """An inventory of ``nodes`` nodes (nova-ctl included), in format v1."""
    lines = [
        "cluster: {name: bench, dnsBaseDomain: nova.bench.local, modules: [opensearch, neuvector]}",
        "network:",
        "  mode: internet",
        "  dnsServers: [198.18.0.53, 198.18.0.54]",
        "  httpProxy: http://198.18.0.60:3128",
        "ssh: {user: nova-installer, identityFile: ~/.ssh/id_nova}",
        "loadBalancers:",
        "  api: {address: 198.18.0.100}",
        "  infra: {address: 198.18.0.101}",
        "  ingress: {address: 198.18.0.102}",
        "nodes:",
        "  - {name: nova-ctl, address: 198.18.0.5, roles: [nova-ctl], connection: local}",
    ]
    roles = [("master", 3), ("infra", 3), ("ingress", 2), ("worker", max(0, nodes - 9))]
    i = 0
    for role, count in roles:
        for k in range(1, count + 1):
            i += 1
            lines.append(f"  - {{name: {role}-{k}, address: 198.18.{4 + i // 250}.{i % 250 + 1}, roles: [{role}]}}")
    lines += ["workstations:", "  - {name: ops-1, address: 198.19.0.7}", "  - {name: ops-2, address: 198.19.0.8}"]
    return "\n".join(lines) + "\n"


def write_inventory(folder: Path, nodes: int) -> Path:
    """Write the generated inventory of ``nodes`` nodes; return its path."""
    path = folder / f"inv-{nodes}.yaml"
    path.write_text(inventory_text(nodes))
    return path


_CHILD = """
import resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - start
use = resource.getrusage(resource.RUSAGE_CHILDREN)
tail = proc.stdout.strip().splitlines()[-1:] or [proc.stderr[-500:]]
print(wall, use.ru_utime + use.ru_stime, use.ru_maxrss, proc.returncode, tail[0], sep="\\t")
"""


def collect(inv: Path, code: Path = REPO) -> dict[str, Any]:
    """``pytest --collect-only -q`` in a fresh process: wall and CPU time, peak RSS (MB), pytest's count line.

    CPU time (user + system) is the figure to compare on a shared machine, where wall time follows the load.

    A small parent process runs pytest, so ``RUSAGE_CHILDREN`` holds the pytest process alone.
    """
    argv = [sys.executable, "-m", "pytest", *QUIET, "--collect-only", "-q",
            f"--nova-inventory={inv}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | {"PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", _CHILD, *argv], cwd=code, env=env, capture_output=True, text=True,
                         check=True).stdout
    wall, cpu, peak, rc, tail = out.rstrip("\n").split("\t", 4)
    if rc != "0":
        raise SystemExit(f"collection failed (rc {rc}): {tail}")
    return {"collect_s": round(float(wall), 2), "collect_cpu_s": round(float(cpu), 2),
            "peak_rss_mb": round(int(peak) / 1024), "pytest": tail, "load": round(os.getloadavg()[0], 1)}


def plan_alone(inv: Path) -> dict[str, Any]:
    """Build the plan in this process: time, checks and probes (source × destination of port rules)."""
    sys.path.insert(0, str(REPO))
    from _pytest_nova.catalog import load_catalog
    from _pytest_nova.inventory import load_inventory
    from _pytest_nova.kinds import build
    from _pytest_nova.plan import PortRuleCheck

    start = time.perf_counter()
    inventory = load_inventory(inv)
    loaded = time.perf_counter()
    plan = build(load_catalog(), inventory)
    built = time.perf_counter()
    probes = sum(len(c.targets) for c in plan.of_type(PortRuleCheck))
    return {"load_s": round(loaded - start, 2), "build_s": round(built - loaded, 2), "checks": len(plan.checks),
            "probes": probes}


def profile(inv: Path, out: Path) -> str:
    """Profile the collection with cProfile; the top 25 entries by cumulative and by own time."""
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "pytest", *QUIET,
                    "--collect-only", "-q", f"--nova-inventory={inv}"], cwd=REPO, capture_output=True, check=True,
                   env=os.environ | {"PYTHONPATH": str(REPO)})
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(out), stream=buf)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(25)
    return buf.getvalue()


def main() -> None:
    """Measure every size and print one JSON line per size, then a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--profile", type=int, help="also profile the collection at this size")
    parser.add_argument("--out", type=Path, help="keep inventories (and the profile) here")
    parser.add_argument("--code", type=Path, default=REPO, help="collect with this checkout (before/after)")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="nova-plan-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        inv = write_inventory(folder, n)
        row = {"nodes": n, **(plan_alone(inv) if args.code == REPO else {}), **collect(inv, args.code.resolve())}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    if args.profile:
        print(profile(write_inventory(folder, args.profile), folder / f"collect-{args.profile}.prof"))
    print("| nodes | checks (items) | probes | plan.build | `--collect-only -q` wall / CPU | peak RSS | load |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['nodes']} | {r.get('checks', '')} | {r.get('probes', '')} | {r.get('build_s', '-')} s | "
              f"{r['collect_s']} s / {r['collect_cpu_s']} s | {r['peak_rss_mb']} MB | {r['load']} |")
    print(f"(load average {os.getloadavg()[0]:.2f}; plan.build's process peaked at "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB)")


if __name__ == "__main__":
    main()
