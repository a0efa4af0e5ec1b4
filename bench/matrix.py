r"""Where the firewall matrix's time goes: boot a clean 3/2/1/N lab, compute the matrix, print a phase table.

The matrix (``MatrixRun.compute``) is computed from inside nova-ctl's namespace by a plain Python process (no
pytest around it), after one login per host (what the facts items do before it in a full run; timed apart).
While it runs, this process samples every second half-second the CPU time of every process of the lab and
sorts it: the runner's Python (the matrix), its ssh clients, its ssh control masters, and on the lab hosts
sshd, sudo, python3 (the listeners and probe scripts) and the rest; plus the rest of the machine (the load).
It prints per phase (logins, listeners, first pass, second pass, the end check of the listeners, closing) the
wall time and the CPU seconds of each group, then the per-source probe batches: how many ran at once and the
distribution of their durations, and whether every probe passed (a clean lab must show 0 not passed).

``--baseline DIR`` computes the matrix again with the code of another checkout on the same lab, right after
(before/after figures on the same machine in one run); ``--repeat K`` computes each K times. Run as root:

    python bench/matrix.py --size 200
    python bench/matrix.py --size 200 --baseline /tmp/nova-old --repeat 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nova_lab import Lab, LabSpec, teardown  # noqa: E402
from nova_lab.state import state_dir  # noqa: E402

# Runs in nova-ctl's namespace with PYTHONPATH set to the code under test; prints one JSON line.
_INSIDE = r'''
import functools, importlib, json, os, resource, shutil, sys, threading, time
from pathlib import Path
try:  # this layout, or an older checkout's (--baseline): the implementation was in pytest_nova itself
    importlib.import_module("_pytest_nova.hosts")
    PKG = "_pytest_nova"
except ImportError:
    PKG = "pytest_nova"
mod = lambda name: importlib.import_module(f"{PKG}.{name}")
load_catalog, Settings = mod("catalog").load_catalog, mod("options").Settings
Access, Hosts, close_control_sockets = mod("hosts").Access, mod("hosts").Hosts, mod("hosts").close_control_sockets

inv = mod("inventory").load_inventory(Path(sys.argv[1]))
try:
    matrix, run_dir = mod("checks.firewall"), mod("rundir").run_dir
    checks = mod("kinds").build(load_catalog(), inv).of_type(mod("plan").PortRuleCheck, "preinstall")
except ImportError:
    matrix, run_dir = mod("matrix"), mod("hosts").run_dir
    checks = mod("plan").build(load_catalog(), inv).of_kind("port_rule", "preinstall")
settings = Settings(inventory=None, phase="preinstall", json_path=None, probe_timeout=2.0, connect_timeout=5.0,
                    command_timeout=120.0, concurrency=64, waivers=None)
marks = []  # (name, monotonic time): phase boundaries
calls = []  # (kind, host, start, end)
lock = threading.Lock()
real_parallel = matrix._parallel


AT_ONCE = int(os.environ.get("NOVA_BENCH_PARALLEL") or 0)


def parallel(items, work, limit=matrix.MAX_PARALLEL_HOSTS):
    if AT_ONCE and limit == matrix.MAX_PARALLEL_HOSTS:
        limit = AT_ONCE
    real_parallel(items, work, limit)
    name = work.__name__
    if name == "_probe":
        name = "first pass"
    elif name == "_resend_ipip":
        name = "ipip retries"
    elif name == "_listen":
        name = "listeners"
    marks.append((name, time.monotonic()))


def timed(kind, fn):
    @functools.wraps(fn)
    def wrapper(self, job):
        start = time.monotonic()
        try:
            return fn(self, job)
        finally:
            host = job.host if kind == "listen" else job[1]
            kind2 = kind
            with lock:
                calls.append((kind2, host, start, time.monotonic()))
    return wrapper


matrix._parallel = parallel
matrix.MatrixRun._listen = timed("listen", matrix.MatrixRun._listen)
matrix.MatrixRun._probe = timed("probe", matrix.MatrixRun._probe)
hosts = Hosts(inv, Access(5.0, 120.0, run_dir()))
names = sorted(n for n, _ in matrix.inventory_hosts(inv))
start = time.monotonic()
marks.append(("start", start))
errors = []
def login(n):
    try:
        hosts[n].login()
    except Exception as exc:
        errors.append(f"{n}: {exc}")
matrix._parallel = real_parallel
real_parallel(names, login)
matrix._parallel = parallel
marks.append(("logins", time.monotonic()))
run = matrix.MatrixRun(hosts, checks, settings, run_dir())
marks.append(("probes planned (MatrixRun())", time.monotonic()))
value = run.compute()
marks.append(("closing", time.monotonic()))
close_control_sockets(run_dir())
outcomes = {}
for counts in value["counts"].values():
    for outcome, n in counts.items():
        outcomes[outcome] = outcomes.get(outcome, 0) + n
bad = sorted({m for line in (run_dir() / value["exceptions"]).read_text().splitlines()
              for o, m, *_ in json.loads(line.split("\t", 1)[1]).values() if o != "passed"})[:5]
shutil.rmtree(run_dir(), ignore_errors=True)
self_ru = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"marks": marks, "calls": calls, "outcomes": outcomes, "examples": bad, "login_errors": errors,
                  "probes": value["probes"], "sources": value["sources"], "destinations": value["destinations"],
                  "seconds": value["seconds"], "second_pass": value["second_pass"], "passes": value["passes"],
                  "phases": value.get("phases"), "max_parallel": matrix.MAX_PARALLEL_HOSTS,
                  "cpu_self": self_ru.ru_utime + self_ru.ru_stime, "cpu_children": kids.ru_utime + kids.ru_stime}))
'''

GROUPS = ("runner python", "runner ssh clients", "runner ssh masters", "hosts sshd", "hosts sudo",
          "hosts python3", "hosts other", "rest of machine")
TICK = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent busy and idle so far, summed over its cores (``/proc/stat``).

    Busy is user, nice, system, irq and softirq; time the hypervisor gave to other machines (steal) is neither.
    """
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / TICK, idle / TICK


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class CpuSampler(threading.Thread):
    """Every half second: the cumulative CPU seconds of each group (processes that ended keep their last value)."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        runner = _netns_inode(f"/run/netns/{lab.netns('nova-ctl')}")
        self.runner = runner
        self.lab_ns = {i for h in lab.hosts for i in [_netns_inode(f"/run/netns/{lab.netns(h)}")] if i}
        self.own: dict[int, tuple[str, float, float]] = {}  # pid -> (group, first seen, last seen)
        self.comm: dict[int, str] = {}
        self.series: list[tuple[float, dict[str, float], float]] = []  # (time, per group, machine busy s)
        self.first = True

    def _group(self, pid: int, comm: str) -> str:
        ns = _netns_inode(f"/proc/{pid}/ns/net")
        if ns is None or (ns != self.runner and ns not in self.lab_ns):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes()[:50]
                self.comm[pid] = args.replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
            return "rest of machine"
        if ns == self.runner:
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                args = b""
            if b"[mux]" in args:
                return "runner ssh masters"
            if comm in ("ssh", "sh"):
                return "runner ssh clients"
            return "runner python" if b"python" in args else "hosts other"
        if comm.startswith("sshd"):
            return "hosts sshd"
        if comm == "sudo":
            return "hosts sudo"
        return "hosts python3" if comm.startswith("python") else "hosts other"

    def sample(self) -> None:
        """One pass over /proc."""
        now = time.monotonic()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            known = self.own.get(pid)
            if known is None:
                self.comm[pid] = comm
                # Born before the first sample: only what it uses from now on counts.
                self.comm[pid] = comm
                self.own[pid] = (self._group(pid, comm), cpu if self.first else 0.0, cpu)
            else:
                self.own[pid] = (known[0], known[1], max(known[2], cpu))
        totals = dict.fromkeys(GROUPS, 0.0)
        for group, first, last in self.own.values():
            totals[group] += last - first
        self.series.append((now, totals, machine_cpu()[0]))
        self.first = False

    def run(self) -> None:
        """Sample until stopped, then once more."""
        while not self.stop.wait(0.5):
            self.sample()
        self.sample()

    def at(self, t: float) -> tuple[dict[str, float], float]:
        """The cumulative figures of the last sample at or before ``t`` (the first one if none)."""
        best = self.series[0]
        for s in self.series:
            if s[0] <= t + 0.25:
                best = s
        return best[1], best[2]


def run_once(lab: Lab, code: Path, label: str, at_once: int | None = None) -> dict[str, Any]:
    """Compute the matrix once with the code at ``code``; the inner report and the CPU series.

    ``at_once`` replaces ``MAX_PARALLEL_HOSTS`` (the hosts the matrix works on at once) for this computation.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST",
                                                                    "PYTEST_NOVA_RUN_DIR"))}
    env["PYTHONPATH"] = f"{code}:{code / 'lab'}"
    env["NOVA_BENCH_PARALLEL"] = str(at_once or "")
    sampler = CpuSampler(lab)
    sampler.sample()
    sampler.start()
    load = os.getloadavg()[0]
    try:
        proc = subprocess.run(lab.runner_cmd([sys.executable, "-c", _INSIDE, str(lab.inventory_path)]), cwd=code,
                              env=env, capture_output=True, text=True, timeout=3600, check=False)
    finally:
        sampler.stop.set()
        sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{label}: the matrix process failed:\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    data["label"], data["load_before"], data["load_after"] = label, round(load, 1), round(os.getloadavg()[0], 1)
    data["cpu"] = phase_cpu(sampler, data["marks"])
    rest: dict[str, float] = {}
    for pid, (group, first, last) in sampler.own.items():
        if group == "rest of machine" and last > first:
            rest[sampler.comm[pid]] = rest.get(sampler.comm[pid], 0.0) + last - first
    data["rest_top"] = {k: round(v, 1) for k, v in sorted(rest.items(), key=lambda kv: -kv[1])[:6]}
    return data


def phase_cpu(sampler: CpuSampler, marks: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Per phase: wall seconds, CPU seconds per group, and the machine's busy CPU seconds (2 cores: 2 per s)."""
    rows = []
    for (_, t0), (name, t1) in itertools.pairwise(marks):
        a, busy_a = sampler.at(t0)
        b, busy_b = sampler.at(t1)
        rows.append({"phase": name, "wall": round(t1 - t0, 2), "busy": round(busy_b - busy_a, 1),
                     **{g: round(b[g] - a[g], 1) for g in GROUPS}})
    return rows


def batches(calls: list[list[Any]], kind: str) -> dict[str, Any]:
    """Count, most at once and duration percentiles of one kind of per-host call."""
    mine = sorted((c for c in calls if c[0] == kind), key=lambda c: c[2])
    if not mine:
        return {"count": 0}
    events = sorted([(c[2], 1) for c in mine] + [(c[3], -1) for c in mine])
    live = most = 0
    for _, step in events:
        live += step
        most = max(most, live)
    d: list[float] = sorted(float(c[3] - c[2]) for c in mine)

    def pct(q: float) -> float:
        return round(d[min(len(d) - 1, int(q * len(d)))], 2)

    return {"count": len(mine), "at_once": most, "min": round(d[0], 2), "p50": pct(0.5), "p90": pct(0.9),
            "max": round(d[-1], 2), "span": round(max(c[3] for c in mine) - mine[0][2], 2)}


def report(r: dict[str, Any]) -> None:
    """Print one computation as markdown."""
    print(f"\n### {r['label']}: {r['probes']} probes, {r['sources']} sources, {r['destinations']} destinations; "
          f"matrix {r['seconds']} s; second pass {r['second_pass']}; outcomes {r['outcomes']}; "
          f"load {r['load_before']}→{r['load_after']}")
    if r["examples"] or r["login_errors"]:
        print(f"not passed (first 5): {r['examples']}; login errors: {r['login_errors'][:3]}")
    print(f"runner Python CPU {r['cpu_self']:.1f} s, its reaped children (ssh clients) {r['cpu_children']:.1f} s; "
          f"product phases: {r.get('phases')}; rest of machine, top: {r['rest_top']}")
    print("\n| phase | wall s | machine busy CPU s | " + " | ".join(GROUPS) + " |")
    print("| --- " * (len(GROUPS) + 3) + "|")
    for row in r["cpu"]:
        print(f"| {row['phase']} | {row['wall']} | {row['busy']} | " + " | ".join(str(row[g]) for g in GROUPS) + " |")
    print("\n| per-host calls | count | at once (max) | min s | p50 s | p90 s | max s | first start to last end s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in ("listen", "probe", "probe-again"):
        b = batches(r["calls"], kind)
        if b["count"]:
            print(f"| {kind} | {b['count']} | {b['at_once']} | {b['min']} | {b['p50']} | {b['p90']} | {b['max']} | "
                  f"{b['span']} |")


def main() -> None:
    """Boot the lab, compute the matrix (and the baseline's), tear the lab down, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=200, help="workers of the 3/2/1/N lab")
    parser.add_argument("--baseline", type=Path, help="also compute with the code of this checkout, same lab")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--parallel", type=int, nargs="+", default=[0],
                        help="hosts worked on at once, each value one computation (0: the code's MAX_PARALLEL_HOSTS)")
    parser.add_argument("--json", type=Path, help="also write every computation's raw figures here")
    a = parser.parse_args()
    spec = LabSpec(name=f"mx{a.size}x{os.getpid()}", workers=a.size)
    if state_dir(spec.name).exists():
        teardown(spec.name)
    start = time.monotonic()
    lab = Lab.up(spec)
    print(f"lab 3/2/1/{a.size} up in {time.monotonic() - start:.1f} s", flush=True)
    results = []
    try:
        for i in range(a.repeat):
            runs = [(code, label, k) for code, label in [(REPO, "now"), *([(a.baseline, "baseline")] if a.baseline
                                                                         else [])] for k in a.parallel]
            for code, label, at_once in runs:
                name = f"{label} #{i + 1}" + (f", {at_once} hosts at once" if at_once else "")
                r = run_once(lab, code, name, at_once)
                results.append(r)
                report(r)
                sys.stdout.flush()
    finally:
        lab.down()
    if a.json:
        a.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
