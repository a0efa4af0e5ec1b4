r"""Measure the full pre-install run with the README's invocation on clean labs of 3/2/1/N; print a markdown table.

For each N it boots a lab (3 masters, 2 infra, 1 ingress, N workers), then runs from inside nova-ctl's namespace

    pytest --nova-inventory=INV -n auto --html=report.html --self-contained-html \
           --nova-json=results.json --junitxml=junit.xml

and reports the wall time (pytest's start, collection, xdist workers and the reports: what a user waits for),
the CPU time of the run and of the runner's own Python processes (``bench/cpu_plugin.py``),
the exit code, the number of records, the sizes of the results JSON, the JUnit XML and the HTML report, the peak
RSS of the largest process of the run (``getrusage(RUSAGE_CHILDREN)``: the controller or one worker), and the
load average before and after, and the whole machine's busy and idle CPU seconds (the lab shares the cores).
The lab is always torn down.

``--baseline DIR`` also runs the same command with the code of another checkout (e.g. ``git worktree`` or
``git archive`` of an older commit) on the same lab, right after, for before/after figures. Run as root:

    python bench/run.py --sizes 10 30 60 200
    python bench/run.py --sizes 200 --baseline /tmp/nova-old
    python bench/run.py --sizes 30 200 --workers auto 0 2 4 off   # is -n auto the fastest way?
    python bench/run.py --sizes 200 --workers auto auto auto       # three runs in a row on one lab
    python bench/run.py --sizes 200 --profile                      # where the runner's CPU goes (py-spy)
    python bench/run.py --sizes 200 --cprofile                     # the controller's and workers' (cProfile)
    python bench/run.py --sizes 200 --cgroups                      # the runner, the hosts, the lab's servers

Every run also prints its timeline (``bench/cpu_plugin.py``): when each process collected, ran the first and
last item of each suite, and ended.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # matrix.py: the machine-wide CPU reading

from matrix import machine_cpu  # noqa: E402

from nova_lab import Lab, LabSpec, teardown  # noqa: E402
from nova_lab.state import state_dir  # noqa: E402

_CHILD = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT).returncode
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": time.perf_counter() - start, "rc": rc, "cpu_s": round(use.ru_utime + use.ru_stime, 1),
                  "peak_rss_mb": use.ru_maxrss // 1024}))
"""


def _suites(code: Path) -> Path:
    """The suites folder of a checkout: packaged in ``pytest_nova/suites`` now, ``suites/`` in older ones."""
    packaged = code / "pytest_nova" / "suites"
    return packaged if packaged.is_dir() else code / "suites"


def _env(code: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    # bench/ too: the run loads bench/cpu_plugin.py (each process's own CPU time)
    return env | {"PYTHONPATH": f"{code}{os.pathsep}{REPO / 'bench'}"}


def _processes() -> Iterator[tuple[int, str, int]]:
    """(pid, command line, RSS in kB) of every process."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            rss = next((int(line.split()[1]) for line in (proc / "status").read_text().splitlines()
                        if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError):
            continue
        yield int(proc.name), args, rss


class Sampler(threading.Thread):
    """Every second: the run's ssh processes (clients naming the lab, and their control masters) and their RSS."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(daemon=True)
        self.marker = f"/nova-lab/{lab.name}/"
        self.stop = threading.Event()
        self.peak = {"ssh_processes": 0, "ssh_rss_mb": 0, "ssh_masters": 0}

    def run(self) -> None:
        """Sample until stopped."""
        while not self.stop.wait(1.0):
            procs = list(_processes())
            clients = [(pid, args, rss) for pid, args, rss in procs if args.startswith("ssh ") and self.marker in args]
            dirs = {m.group(1) for _, args, _ in clients if (m := re.search(r"ControlPath=(\S+)/%C", args))}
            masters = [(pid, args, rss) for pid, args, rss in procs
                       if args.startswith("ssh: ") and "[mux]" in args and any(d in args for d in dirs)]
            ssh = clients + masters
            self.peak["ssh_processes"] = max(self.peak["ssh_processes"], len(ssh))
            self.peak["ssh_masters"] = max(self.peak["ssh_masters"], len(masters))
            self.peak["ssh_rss_mb"] = max(self.peak["ssh_rss_mb"], sum(rss for *_, rss in ssh) // 1024)


CGROUPS = Path("/sys/fs/cgroup/cpuacct")


class CpuGroups:
    """Exact CPU time per kind of process, from cgroup-v1 ``cpuacct`` groups made for one run (``--cgroups``).

    ``runner``: this script from the run's start (pytest, its xdist workers, their ssh clients and control
    masters); ``hosts``: everything in the namespaces of the lab's nodes and workstation (sshd and its sessions,
    sudo, the scripts); ``servers``: the lab's DNS, TLS, proxy and balancer stand-ins. The kernel's packet work is
    charged to whichever process the CPU was running. Processes go back to the root group afterwards.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dirs = {name: CGROUPS / f"nova-bench-{name}" for name in ("runner", "hosts", "servers")}
        for d in self.dirs.values():
            d.mkdir(exist_ok=True)
        inodes = {os.stat(f"/run/netns/{lab.netns(h.name)}").st_ino: h.kind for h in lab.hosts.values()
                  if os.path.exists(f"/run/netns/{lab.netns(h.name)}")}
        for proc in Path("/proc").iterdir():
            try:
                ns = os.stat(proc / "ns" / "net").st_ino
            except (OSError, ValueError):
                continue
            kind = inodes.get(ns)
            if kind in ("node", "workstation"):
                self._move(proc.name, "hosts")
            elif kind is not None and kind != "runner":
                self._move(proc.name, "servers")
        self._move(str(os.getpid()), "runner")
        self.start = self.usage()
        self.series: list[dict[str, float]] = []  # every WINDOW seconds: each group's CPU seconds in the window
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    WINDOW = 5.0

    def _sample(self) -> None:
        last = self.start
        while not self.stop.wait(self.WINDOW):
            now = self.usage()
            self.series.append({name: round(now[name] - last[name], 1) for name in now})
            last = now

    def _move(self, pid: str, group: str) -> None:
        try:
            (self.dirs[group] / "cgroup.procs").write_text(pid)
        except OSError:
            pass  # gone meanwhile, or a kernel thread

    def usage(self) -> dict[str, float]:
        """CPU seconds of each group so far."""
        return {name: int((d / "cpuacct.usage").read_text()) / 1e9 for name, d in self.dirs.items()}

    def close(self) -> dict[str, float]:
        """CPU seconds of each group since the start; every process back to the root group."""
        self.stop.set()
        self.sampler.join()
        end = self.usage()
        for d in self.dirs.values():
            for pid in (d / "cgroup.procs").read_text().split():
                try:
                    (CGROUPS / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
        for d in self.dirs.values():
            try:
                d.rmdir()
            except OSError:
                pass  # a process still in it; removed with the next run's groups
        return {name: round(end[name] - self.start[name], 1) for name in end}


def xdist_args(workers: str) -> list[str]:
    """The pytest arguments of one ``--workers`` value: ``auto``, a number (``0``: xdist in-process), ``off``."""
    return ["-p", "no:xdist"] if workers == "off" else ["-n", workers]


def measure(lab: Lab, code: Path, label: str, workers: str = "auto", profile: bool | str = False,
            cgroups: bool = False) -> dict[str, Any]:
    """One run of the README's command (``-n workers``) with the code at ``code``; sizes of what it wrote.

    With ``profile`` the run is sampled by py-spy (controller and xdist workers, on-CPU samples only) into
    ``profile.txt`` in the run's folder (collapsed stacks; summarize with ``bench/cpu_profile.py``); with
    ``profile="cprofile"`` the controller and the xdist workers run under cProfile (``controller.prof``,
    ``gw0.prof``…).
    """
    out = lab.state_dir / f"bench-run-{label}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cpu_file = out / "cpu.jsonl"
    # Like bench/plan.py: without the plugins of this development environment that a user's install does not
    # have (hypothesis's terminal summary and its per-test hooks cost the controller and the workers seconds).
    python = [sys.executable, *(["-m", "cProfile", "-o", str(out / "controller.prof")] if profile == "cprofile"
                                else [])]
    argv = [*python, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p",
            "no:benchmark", "-p", "cpu_plugin", f"--rootdir={code}",
            f"--nova-inventory={lab.inventory_path}", *xdist_args(workers), f"--html={out / 'report.html'}",
            "--self-contained-html", f"--nova-json={out / 'results.json'}", f"--junitxml={out / 'junit.xml'}",
            str(_suites(code))]
    if profile is True:
        spy = shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
        argv = [spy, "record", "--subprocesses", "--rate", "100", "--format", "raw", "-o", str(out / "profile.txt"),
                "--", *argv]
    load = os.getloadavg()[0]
    busy_before, idle_before = machine_cpu()
    t0 = time.time()
    sampler = Sampler(lab)
    sampler.start()
    groups = CpuGroups(lab) if cgroups else None
    try:
        proc = subprocess.run(lab.runner_cmd([sys.executable, "-c", _CHILD, str(out / "output.txt"), *argv]),
                              cwd=code, env=_env(code) | {"NOVA_BENCH_CPU": str(cpu_file)} | (
                                  {"NOVA_BENCH_WORKER_PROFILE": str(out)} if profile == "cprofile" else {}),
                              capture_output=True,
                              text=True, timeout=7200, check=False)
    finally:
        sampler.stop.set()
        sampler.join()
        by_group = groups.close() if groups else {}
    busy_after, idle_after = machine_cpu()
    if proc.returncode != 0:
        raise SystemExit(f"{label}: the measuring process failed:\n{proc.stderr[-3000:]}")
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    results = out / "results.json"
    if run["rc"] not in (0, 1) or not results.exists():
        raise SystemExit(f"{label}: pytest exited {run['rc']}:\n{(out / 'output.txt').read_text()[-3000:]}")
    data = json.loads(results.read_text())
    lines = [json.loads(line) for line in cpu_file.read_text().splitlines()] if cpu_file.exists() else []
    processes = [p for p in lines if "exiting" not in p]
    exiting = [p["exiting"] - t0 for p in lines if "exiting" in p]
    # Time in the cyclic garbage collector per process (the controller's until its interpreter began to shut down).
    gc_s = {p["process"]: p["gc"] for p in lines if "gc" in p}
    row = {
        "label": label, "workers": workers, "seconds": round(run["seconds"], 1), "rc": run["rc"],
        "records": len(data["results"]),
        # pytest, its workers and the ssh clients they waited for; not the control masters (daemons) or the hosts.
        "cpu_s": run["cpu_s"],
        # The runner's own CPU: the controller's and each xdist worker's Python process (not their ssh clients).
        "runner_cpu_s": round(sum(p["cpu_s"] for p in processes), 1),
        "processes": processes,
        "gc_s": gc_s,
        # Everything the machine did meanwhile: the run, the lab's hosts it talked to (sshd, their scripts, the
        # kernel's network stack) and anything else; idle is what the cores had left.
        "machine_busy_s": round(busy_after - busy_before, 1), "machine_idle_s": round(idle_after - idle_before, 1),
        "cpu_by_group_s": by_group,
        "cpu_by_group_every_5_s": groups.series if groups else [],
        "summary": data["summary"], "verdict": data.get("verdict"),
        "json_mb": round(results.stat().st_size / 1e6, 1),
        "junit_mb": round((out / "junit.xml").stat().st_size / 1e6, 1),
        "html_mb": round((out / "report.html").stat().st_size / 1e6, 1),
        "peak_rss_mb": run["peak_rss_mb"], **sampler.peak,
        "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1),
        "tail": (out / "output.txt").read_text().strip().splitlines()[-1],
        "matrix": [line for line in (out / "output.txt").read_text().splitlines()
                   if line.startswith(("nova firewall matrix:", "nova firewall proof:"))],
        "suites_total_longest_s": phases(out / "junit.xml"),
        "timeline_s": timeline(processes, t0) | {"exit": {"interpreter_shutdown": round(exiting[0], 1) if exiting
                                                          else None, "process_gone": round(run["seconds"], 1)}},
        "folder": str(out),
    }
    return row


def timeline(processes: list[dict[str, Any]], t0: float) -> dict[str, dict[str, Any]]:
    """Per process, seconds since the run started: when it configured, collected, ran each suite, ended.

    A suite reads ``first start-last end (items)``; ``items_done`` is the end of the last item, ``end`` the process's
    last act (the controller's: after its reports).
    """
    out: dict[str, dict[str, Any]] = {}
    for p in processes:
        line: dict[str, Any] = {k: round(v - t0, 1) for k, v in p.get("marks", {}).items()}
        for suite, (first, last, items) in sorted(p.get("suites", {}).items(), key=lambda kv: kv[1][0]):
            line[suite] = f"{first - t0:.1f}-{last - t0:.1f} ({items})"
        out[p["process"]] = line
    return out


def phases(junit: Path) -> dict[str, list[float]]:
    """Per suite file: the items' summed time and the longest item (it waits for the engine's shared work)."""
    out: dict[str, list[float]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        suite = str(case.get("classname", "")).rpartition(".")[2] or "?"
        t = float(case.get("time") or 0)
        total, longest = out.get(suite, [0.0, 0.0])
        out[suite] = [round(total + t, 1), round(max(longest, t), 1)]
    return out


def bench(n: int, baseline: Path | None, keep: bool, workers: list[str], profile: bool | str = False,
          cgroups: bool = False) -> list[dict[str, Any]]:
    """Boot the 3/2/1/n lab, run the command (and the baseline's), tear the lab down."""
    spec = LabSpec(name=f"run{n}x{os.getpid()}", workers=n)
    if state_dir(spec.name).exists():
        teardown(spec.name)
    start = time.monotonic()
    lab = Lab.up(spec)
    boot = time.monotonic() - start
    rows = []
    try:
        hosts = len([h for h in lab.hosts.values() if h.kind in ("runner", "node", "workstation")])
        runs = [(code, label, w) for w in workers
                for code, label in [(REPO, "now"), *([(baseline, "baseline")] if baseline else [])]]
        for code, label, w in runs:
            row = measure(lab, code, label, w, profile, cgroups) | {"n": n, "hosts": hosts, "boot_s": round(boot, 1)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if keep:
                dest = Path("/var/tmp") / f"nova-bench-run-{n}-{label}-{w}"
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(row["folder"], dest)
                row["folder"] = str(dest)
    finally:
        lab.down()
    return rows


def main() -> None:
    """Parse the arguments, run every size, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 60, 200])
    parser.add_argument("--baseline", type=Path, help="also run the code of this checkout on the same lab")
    parser.add_argument("--keep", action="store_true", help="copy each run's files to /var/tmp/nova-bench-run-*")
    parser.add_argument("--workers", nargs="+", default=["auto"],
                        help="xdist settings to compare on the same lab: auto, a number (-n N; 0 runs in-process), "
                             "off (-p no:xdist)")
    parser.add_argument("--profile", action="store_true",
                        help="sample each run with py-spy into profile.txt (implies --keep; see bench/cpu_profile.py)")
    parser.add_argument("--cprofile", action="store_true",
                        help="run the controller and each xdist worker under cProfile into controller.prof, gwN.prof "
                             "(implies --keep)")
    parser.add_argument("--cgroups", action="store_true",
                        help="also measure the CPU of the runner, the lab's hosts and its servers apart (cpuacct)")
    a = parser.parse_args()
    profile: bool | str = "cprofile" if a.cprofile else a.profile
    rows = [row for n in a.sizes for row in bench(n, a.baseline, a.keep or bool(profile), a.workers, profile,
                                                  a.cgroups)]
    print("| workers (hosts) | code | -n | wall (CPU; the runner's own; the machine busy / idle) | exit | records | "
          "results JSON | JUnit | "
          "HTML | peak RSS | ssh processes (masters), their RSS | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['n']} ({r['hosts']}) | {r['label']} | {r['workers']} | {r['seconds']} s ({r['cpu_s']} s; "
              f"{r['runner_cpu_s']} s; {r['machine_busy_s']} / {r['machine_idle_s']} s) | "
              f"{r['rc']} | "
              f"{r['records']} | "
              f"{r['json_mb']} MB | {r['junit_mb']} MB | {r['html_mb']} MB | {r['peak_rss_mb']} MB | "
              f"{r['ssh_processes']} ({r['ssh_masters']}), {r['ssh_rss_mb']} MB | "
              f"{r['load_before']}→{r['load_after']} |")


if __name__ == "__main__":
    main()
