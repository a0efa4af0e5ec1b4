"""Measure the acceptance report at scale: 20,000 results by default.

Generates a synthetic suite (no lab: each item judges hand-made verdicts), runs pytest with and without
``--html``, and reports:

- the run's wall time with and without the HTML report (the difference is what the report costs),
- the time spent at session end writing the results JSON and the HTML (the report's generation),
- the size of the self-contained report,
- Chromium's load time (navigation start to the end of the load event, pytest-html's table rendered) and the
  time one click on a row takes to expand it (pytest-html redraws its whole table on every click).

It also gives the sizes of the results JSON and the JUnit XML of the run with the report, and the peak RSS of
each pytest process. The 3/2/1/200 lab's pre-install run has about 9,000 items and 344,000 results:
``python bench/report.py --items 9000 --per-item 38``. ``--code DIR`` runs another checkout's plugin (before/after).

``--baseline`` runs once more with the first run's results JSON as ``--nova-baseline`` (the comparison's cost).

Usage: ``python bench/report.py [--items 20000] [--per-item 1] [--out DIR] [--no-browser] [--code DIR] [--baseline]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

INVENTORY_HEAD = """\
cluster:
  name: bench
  dnsBaseDomain: nova.bench.local
network:
  mode: internet
  dnsServers: [198.18.0.53]
ssh:
  user: nova-installer
  identityFile: ~/.ssh/id_nova
nodes:
  - {name: nova-ctl, address: 198.18.0.5, roles: [nova-ctl], connection: local}
"""

SUITE = '''
import os

import pytest

from _pytest_nova.verdicts import Verdict, judge

ITEMS = int(os.environ["NOVA_BENCH_ITEMS"])
PER_ITEM = int(os.environ["NOVA_BENCH_PER_ITEM"])
FAIL_EVERY = int(os.environ["NOVA_BENCH_FAIL_EVERY"])
PORTS = (2379, 2380, 6443, 10250, 4789)


def _source(i: int) -> str:
    return f"master-{i % 3 + 1}" if i % 20 == 0 else f"worker-{i % 60 + 1}"


@pytest.mark.parametrize("i", range(ITEMS), ids=lambda i: f"{_source(i)}:rule-{i}:{PORTS[i % 5]}/tcp")
def test_port(i: int, request: pytest.FixtureRequest) -> None:
    src, port = _source(i), PORTS[i % 5]
    meta = {"check": "firewall", "requirement": f"fw-bench-{port}", "section": "3.1.2", "source": src,
            "target": "masters", "port": port, "protocol": "tcp", "fix": f"open {port}/tcp", "summary": "",
            "kind": "port_rule"}
    request.node.user_properties.append(("nova_check", meta))
    verdicts = []
    for j in range(PER_ITEM):
        n = i * PER_ITEM + j
        bad = n % FAIL_EVERY == 0
        verdicts.append(Verdict(
            "firewall", f"fw-bench-{port}", "3.1.2", "failed" if bad else "passed",
            "filtered: no answer within 2.0 s" if bad else "open", source=src, target=f"master-{j % 3 + 1}",
            port=port, protocol="tcp", checked=f"{src} reaches master-{j % 3 + 1} on {port}/tcp",
            expected=f"{port}/tcp open from workers to masters", fix=f"nft add rule inet filter input tcp dport {port}"
            " accept"))
    judge(request.node.user_properties, request.node.nodeid, verdicts)
'''

TIMER = '''
import time

import pytest


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    start = time.perf_counter()
    yield
    with open("sessionfinish.txt", "w") as f:
        f.write(str(time.perf_counter() - start))
'''


def write_suite(folder: Path) -> None:
    """The inventory (3 masters, 60 workers), the synthetic module and a timer of the session-end hooks."""
    nodes = [f"  - {{name: master-{i}, address: 198.18.1.{10 + i}, roles: [master]}}" for i in (1, 2, 3)]
    nodes += [f"  - {{name: worker-{i}, address: 198.18.2.{i}, roles: [worker]}}" for i in range(1, 61)]
    (folder / "inv.yaml").write_text(INVENTORY_HEAD + "\n".join(nodes) + "\n")
    (folder / "test_bench.py").write_text(SUITE)
    (folder / "conftest.py").write_text(TIMER)


_CHILD = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
sys.exit(proc.returncode)
"""


def run(folder: Path, env: dict[str, str], *extra: str) -> tuple[float, float, int, int]:
    """Run pytest once; wall time, session-end time, exit code and the peak RSS (MB) of the pytest process."""
    # Without the plugins of this project's development environment (hypothesis, benchmark): users lack them.
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
           "-p", "no:benchmark", "--nova-inventory=inv.yaml",
           "--nova-json=results.json", "test_bench.py", *extra]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *cmd], cwd=folder, env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"pytest failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    peak = int(proc.stdout.strip().splitlines()[-1])
    return wall, float((folder / "sessionfinish.txt").read_text()), proc.returncode, peak


def browser(report: Path) -> dict[str, float]:
    """Load the report in headless Chromium: load time, and the time one click on a row takes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_page_load_timeout(300)
        start = time.perf_counter()
        driver.get(report.as_uri())
        wall = time.perf_counter() - start
        nav = driver.execute_script(
            "const t = performance.getEntriesByType('navigation')[0]; return [t.domInteractive, t.loadEventEnd];"
        )
        rows = driver.execute_script("return document.querySelectorAll('#results-table tbody.results-table-row')"
                                     ".length")
        click = driver.execute_script(
            "const cell = document.querySelector('#results-table tbody.failed td.col-result');"
            "const t0 = performance.now(); cell.click(); return performance.now() - t0;"
        )
        verdict = driver.execute_script("return document.getElementById('nova-verdict').textContent")
    finally:
        driver.quit()
    return {"get_s": round(wall, 2), "dom_interactive_s": round(nav[0] / 1000, 2),
            "load_event_end_s": round(nav[1] / 1000, 2), "rows": rows, "expand_click_s": round(click / 1000, 2),
            "verdict": verdict}


def main() -> None:
    """Run the measurement and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=20000, help="pytest items")
    parser.add_argument("--per-item", type=int, default=1, help="results (verdicts) per item")
    parser.add_argument("--fail-every", type=int, default=500, help="one failed result in N")
    parser.add_argument("--out", type=Path, help="keep the generated files here (default: a temporary folder)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurement")
    parser.add_argument("--baseline", action="store_true",
                        help="also run once more with the first run's results JSON as --nova-baseline")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose plugin runs (default: this one)")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="nova-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    write_suite(folder)
    env = os.environ | {"NOVA_BENCH_ITEMS": str(args.items), "NOVA_BENCH_PER_ITEM": str(args.per_item),
                        "NOVA_BENCH_FAIL_EVERY": str(args.fail_every), "PYTHONPATH": str(args.code.resolve())}
    plain_wall, plain_end, _, plain_peak = run(folder, env)
    baseline: dict[str, Any] = {}
    if args.baseline:
        (folder / "baseline.json").write_bytes((folder / "results.json").read_bytes())
        base_wall, base_end, _, base_peak = run(folder, env, "--nova-baseline=baseline.json")
        baseline = {"run_with_baseline_s": round(base_wall, 2), "session_end_with_baseline_s": round(base_end, 2),
                    "peak_rss_with_baseline_mb": base_peak,
                    "baseline_mb": round((folder / "baseline.json").stat().st_size / 1e6, 2)}
    html_wall, html_end, code, html_peak = run(folder, env, "--html=report.html", "--self-contained-html",
                                               "--junitxml=junit.xml")
    report = folder / "report.html"
    data = json.loads((folder / "results.json").read_text())
    figures: dict[str, Any] = {
        "items": args.items,
        "results": len(data["results"]),
        "failed": data["summary"]["failed"],
        "verdict": data["verdict"],
        "exit_code": code,
        "run_without_html_s": round(plain_wall, 2),
        "run_with_html_s": round(html_wall, 2),
        "html_cost_s": round(html_wall - plain_wall, 2),
        "session_end_without_html_s": round(plain_end, 2),
        "session_end_with_html_s": round(html_end, 2),
        "report_mb": round(report.stat().st_size / 1e6, 2),
        "results_json_mb": round((folder / "results.json").stat().st_size / 1e6, 2),
        "junit_mb": round((folder / "junit.xml").stat().st_size / 1e6, 2),
        "peak_rss_without_html_mb": plain_peak,
        "peak_rss_with_html_junit_mb": html_peak,
        "folder": str(folder),
        **baseline,
    }
    if not args.no_browser:
        figures["chromium"] = browser(report)
    print(json.dumps(figures, indent=1))
    print(textwrap.dedent(f"""
        {figures['results']} results in {args.items} items: report written in {figures['session_end_with_html_s']} s
        at session end; the HTML adds {figures['html_cost_s']} s to the run; {figures['report_mb']} MB"""))


if __name__ == "__main__":
    main()
