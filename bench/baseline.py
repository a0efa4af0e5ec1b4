"""Measure reading a large ``--nova-baseline``: time and peak memory for a results JSON of a given size.

Writes a results JSON shaped like the plugin's (indent 1, firewall records, one in ``--failing`` failed) of about
``--mb`` megabytes, then reads it with :func:`_pytest_nova.baseline.load_baseline` in a fresh process and prints
the file size, the read time, the identities kept and the process's peak RSS (and the same process's RSS before
reading, for comparison). A 1,000-node pre-install run's JSON is about 500 MB.

Usage: ``python bench/baseline.py [--mb 500] [--failing 1000] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ = """
import resource, sys, time
from pathlib import Path
from _pytest_nova.baseline import load_baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
b = load_baseline(Path(sys.argv[1]), "bench")
print(f"{time.perf_counter() - t:.2f} {len(b.failing)} {before} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
"""


def write(path: Path, mb: int, failing: int) -> int:
    """A results JSON of about ``mb`` MB; returns the number of records."""
    head = {"schema": "pytest-nova/results/v1", "cluster": "bench", "inventory": {"path": "x", "sha256": "0"},
            "catalog": "nova", "started": "2026-12-01T10:02:00Z", "finished": "2026-12-01T10:09:00Z",
            "summary": {}, "results": []}
    n = 0
    with path.open("w") as out:
        out.write(json.dumps(head, indent=1).removesuffix("]\n}") + "\n")
        while out.tell() < mb << 20:
            rec = {"nodeid": f"pytest_nova/suites/test_firewall.py::test_port[worker-{n % 1000}:nodes:10250/tcp]",
                   "check": "firewall", "requirement": "fw-nodes-kubelet", "section": "3.1.1",
                   "source": f"worker-{n % 1000}", "target": f"worker-{n // 1000}", "port": 10250, "protocol": "tcp",
                   "outcome": "failed" if n % failing == 0 else "passed",
                   "message": "open: connected in 0.4 ms", "severity": "required"}
            text = json.dumps([rec], indent=1)[2:-2]
            out.write(("" if n == 0 else ",\n") + "\n".join(" " + line for line in text.splitlines()))
            n += 1
        out.write("\n ]\n}\n")
    return n


def main() -> None:
    """Write the file, read it in a fresh process, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--failing", type=int, default=1000, help="one record in this many failed")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.out) as tmp:
        path = Path(tmp) / "baseline.json"
        t = time.perf_counter()
        n = write(path, a.mb, a.failing)
        print(f"wrote {path.stat().st_size / 1e6:.0f} MB, {n:,} records in {time.perf_counter() - t:.1f} s")
        out = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True, check=True)
        secs, kept, before, peak = out.stdout.split()
        print(f"read in {secs} s, {int(kept):,} failing identities kept, peak RSS {int(peak) / 1024:.0f} MB "
              f"(before reading: {int(before) / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
