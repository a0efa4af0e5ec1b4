"""The runner's own cost of the firewall matrix per number of nodes, without a network: CPU seconds and memory.

On a real cluster every source and destination is its own machine; what stays on the runner is the matrix's
bookkeeping, which grows with the probes (nodes²). This replays it on a generated inventory (``bench/plan.py``'s)
with every answer "open": plan the probes (``MatrixRun()``), build each source's batch and its JSON, parse the
answers, the second-pass scan, judge every probe, and write the stored result as ``shared.once`` does. Prints
CPU seconds per step and the peak RSS of the process:

    python bench/matrix_runner.py --sizes 200 500
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def one(nodes: int) -> dict[str, float]:
    """Measure one size in this process."""
    import plan as bench_plan

    from pytest_nova.catalog import load_catalog
    from pytest_nova.checks import firewall as matrix
    from pytest_nova.hosts import Access, Hosts
    from pytest_nova.inventory import load_inventory
    from pytest_nova.kinds import build
    from pytest_nova.options import Settings
    from pytest_nova.plan import PortRuleCheck

    folder = Path(tempfile.mkdtemp(prefix="nova-matrix-runner-"))
    inv = load_inventory(bench_plan.write_inventory(folder, nodes))
    checks = build(load_catalog(), inv).of_type(PortRuleCheck, "preinstall")
    settings = Settings(inventory=None, phase="preinstall", json_path=None, probe_timeout=2.0, connect_timeout=5.0,
                        command_timeout=120.0, concurrency=64, waivers=None)
    out: dict[str, float] = {"nodes": nodes}
    t = time.process_time()

    def step(name: str) -> None:
        nonlocal t
        now = time.process_time()
        out[name] = round(now - t, 2)
        t = now

    run = matrix.MatrixRun(Hosts(inv, Access(5, 120, folder)), checks, settings)
    out["probes"] = sum(len(v) for v in run.by_source.values())
    step("plan the probes")
    for name, req in run.requests.items():
        bound = frozenset(f"{port}/{proto}" for port, proto in req.ports)
        run.listening[name] = matrix.Listening(bound=bound, ipip="ready")
    answers = []
    for i, (source, probes) in enumerate(sorted(run.by_source.items())):
        rows = []
        for j, p in enumerate(matrix.staggered(probes, i)):
            token = f"{source}/{j}"
            run.tokens[token] = p.key
            rows.append([p.key, p.address, p.port, p.protocol, token])
        json.dumps({"probes": rows})
        answers.append(json.dumps({"results": {r[0]: ["sent" if r[3] == "ipip" else "open", ""] for r in rows}}))
    step("batches and their JSON")
    for answer in answers:
        for key, (status, detail) in json.loads(answer)["results"].items():
            run.raw[key] = (str(status), str(detail))
    run.raw.update({k: ("seen", "") for k, v in run.raw.items() if v[0] == "sent"})
    step("parse the answers")
    run._second_pass()
    step("second-pass scan")
    verdicts = {}
    for probes in run.by_source.values():
        for p in probes:
            status, detail = run.raw[p.key]
            verdicts[p.key] = list(matrix.judge_probe(p, status, detail, listening=run.listening.get(p.target),
                                                      listeners=True, timeout=2.0))
    step("judge")
    stored = json.dumps({"value": {"verdicts": verdicts}})
    out["stored MB"] = round(len(stored) / 1e6, 1)
    step("stored JSON")
    out["peak RSS MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    """Each size in a fresh process (peak RSS per size); print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.one:
        print(json.dumps(one(a.one)))
        return
    rows = []
    for n in a.sizes:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    keys = [k for k in rows[0] if k != "nodes"]
    print("| nodes | " + " | ".join(keys) + " |")
    print("| --- " * (len(keys) + 1) + "|")
    for r in rows:
        print(f"| {r['nodes']} | " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
