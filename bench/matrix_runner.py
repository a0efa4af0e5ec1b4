"""The runner's own cost of the firewall matrix per number of nodes, without a network: CPU seconds and memory.

On a real cluster every source and destination is its own machine; what stays on the runner is the matrix's
bookkeeping, which grows with the probes (nodes²). This runs the engine's own code (``MatrixRun.compute``) on a
generated inventory (``bench/plan.py``'s) with the network replaced: every listener binds what it is asked,
every probe answers "open", every IPIP packet is seen. Each source's batch and its answer still go through JSON
both ways, as they would through ssh. Prints CPU seconds per step, the peak RSS of the process, and the size of
what the run stores:

    python bench/matrix_runner.py --sizes 200 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def one(nodes: int) -> dict[str, float]:
    """Measure one size in this process."""
    import plan as bench_plan

    from _pytest_nova.catalog import load_catalog
    from _pytest_nova.checks import firewall as matrix
    from _pytest_nova.hosts import Access, Hosts, RemoteHost
    from _pytest_nova.inventory import load_inventory
    from _pytest_nova.kinds import build
    from _pytest_nova.options import Settings
    from _pytest_nova.plan import PortRuleCheck
    from _pytest_nova.remote_scripts import Script

    folder = Path(tempfile.mkdtemp(prefix="nova-matrix-runner-"))
    inv = load_inventory(bench_plan.write_inventory(folder, nodes))
    checks = build(load_catalog(), inv).of_type(PortRuleCheck, "preinstall")
    settings = Settings(inventory=None, phase="preinstall", json_path=None, probe_timeout=2.0, connect_timeout=5.0,
                        command_timeout=120.0, concurrency=64, waivers=None)
    json_cpu, host_cpu = [0.0], [0.0]
    lock = threading.Lock()

    class Replay(matrix.MatrixRun):
        """The engine with every answer "open" (IPIP: seen), through JSON as over ssh."""

        def _listen(self, req: matrix.ListenRequest) -> None:
            self.listening[req.host] = matrix.Listening(
                bound=frozenset(f"{port}/{proto}" for port, proto in req.ports), ipip="ready" if req.ipip else None)
            self.receivers[req.host] = Script.__new__(Script)

        def _run_probe(self, host: RemoteHost, params: dict[str, object], sudo: bool) -> matrix.ProbeAnswer:
            # The runner's side: the batch to JSON (as start_script sends it) and the answer from JSON. Making the
            # answer is the source's work (untimed).
            start = time.thread_time()
            text = json.dumps(params)
            spent = time.thread_time() - start
            start = time.thread_time()
            groups = json.loads(text)["groups"]
            answer_text = json.dumps({"results": [("sent" if proto == "ipip" else "open") for _port, proto, _, addrs
                                                  in groups for _ in addrs], "passes": [0, 0, 0]})
            with lock:
                host_cpu[0] += time.thread_time() - start
            start = time.thread_time()
            answer: matrix.ProbeAnswer = json.loads(answer_text)
            spent += time.thread_time() - start
            with lock:
                json_cpu[0] += spent
            return answer

        def _seen_at(self, host: str) -> list[list[str]]:
            return [["0.0.0.0", s] for s, targets in self.ipip_sent.items() if host in targets]

        def _still_listening(self) -> None:
            pass

    out: dict[str, Any] = {"nodes": nodes}
    t = time.process_time()

    def step(name: str) -> None:
        nonlocal t
        now = time.process_time()
        out[name] = round(now - t, 2)
        t = now

    run = Replay(Hosts(inv, Access(5, 120, folder)), checks, settings, folder)
    step("plan (MatrixRun())")
    value = run.compute()
    out["probes"] = value["probes"]
    compute_cpu = time.process_time() - t
    out["batches' JSON both ways"] = round(json_cpu[0], 2)
    out["batches, judging, counts"] = round(compute_cpu - json_cpu[0] - host_cpu[0], 2)
    step("compute (all)")
    out["compute (all)"] = round(out["compute (all)"] - host_cpu[0], 2)
    out["sources' side (untimed)"] = round(host_cpu[0], 2)
    stored = json.dumps({"value": value})
    out["stored MB"] = round((len(stored) + (folder / matrix.EXCEPTIONS_FILE).stat().st_size) / 1e6, 2)
    step("stored JSON")
    out["CPU s (runner)"] = round(time.process_time() - host_cpu[0], 2)
    out["peak RSS MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    assert value["counts"] and all(set(c) == {"passed"} for c in value["counts"].values()), value["counts"]
    shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    """Each size in a fresh process (peak RSS per size); print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.one:
        print(json.dumps(one(a.one)))
        return
    rows = []
    for n in a.sizes:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["wall s"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    keys = [k for k in rows[0] if k != "nodes"]
    print("| nodes | " + " | ".join(keys) + " |")
    print("| --- " * (len(keys) + 1) + "|")
    for r in rows:
        print(f"| {r['nodes']} | " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
