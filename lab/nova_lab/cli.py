"""``nova-lab``: boot, inspect, break and tear down a lab from the command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nova_lab.addresses import LabSpec
from nova_lab.faults import KINDS, REGISTRY, resolve
from nova_lab.lab import Lab, teardown
from nova_lab.netns import LabError
from nova_lab.state import ROOT, state_dir

_LONG = 24 * 3600.0  # interactive commands and the demo's pytest run: a bound, but a generous one


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nova-lab", description="A Nova-like cluster of namespaces on this machine.")
    sub = p.add_subparsers(dest="command", required=True)

    def named(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--name", default="nova", help="lab name (default: nova)")
        return sp

    def sizes(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--masters", type=int, default=3)
        sp.add_argument("--infra", type=int, default=2)
        sp.add_argument("--ingress", type=int, default=1)
        sp.add_argument("--workers", type=int, default=3)
        sp.add_argument("--mode", choices=("internet", "closed"), default="internet")
        sp.add_argument("--proxy", action="store_true", help="nodes reach the vendor only through a proxy")
        sp.add_argument("--installed", action="store_true", help="start in post-install state")
        sp.add_argument("--index", type=int, help="which /20 of 198.18.0.0/15 (default: first free)")

    sizes(named(sub.add_parser("up", help="boot a lab")))
    named(sub.add_parser("down", help="tear a lab down (from its records; also after a crash)"))
    sub.add_parser("status", help="show the labs that are up").add_argument("--name")
    inst = named(sub.add_parser("installed", help="switch post-install services on or off"))
    inst.add_argument("state", choices=("on", "off"))
    fault = named(sub.add_parser("fault", help="switch a fault on or off, or list them"))
    fault.add_argument("action", choices=("on", "off", "list"))
    fault.add_argument("fault", nargs="?", help="fault name (see: nova-lab fault list)")
    fault.add_argument("params", nargs="*", metavar="KEY=VALUE")
    ex = named(sub.add_parser("exec", help="run a command as root in a host: exec HOST -- CMD..."))
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    sh = named(sub.add_parser("shell", help="run a command (default: a shell) in the runner namespace"))
    sh.add_argument("cmd", nargs=argparse.REMAINDER)
    demo = sub.add_parser("demo", help="boot the default lab, run the suites against it, tear it down")
    demo.add_argument("--name", default="nova")
    sizes(demo)
    demo.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments after --")
    return p


def _rest(cmd: Sequence[str]) -> list[str]:
    return list(cmd[1:] if cmd and cmd[0] == "--" else cmd)


def _spec(a: argparse.Namespace) -> LabSpec:
    return LabSpec(name=a.name, masters=a.masters, infra=a.infra, ingress=a.ingress, workers=a.workers,
                   mode=a.mode, proxy=a.proxy, installed=a.installed, index=a.index)


def _up(a: argparse.Namespace) -> Lab:
    t0 = time.monotonic()
    lab = Lab.up(_spec(a))
    took = time.monotonic() - t0
    print(f"lab {lab.name!r} up in {took:.1f}s: {len(lab.hosts)} hosts, inventory {lab.inventory_path}")
    return lab


def suites_dir() -> Path:
    """The plan's suites, shipped in the pytest_nova package."""
    from _pytest_nova.collect import SUITES

    return SUITES


def _demo(a: argparse.Namespace) -> int:
    suites = suites_dir()
    if not suites.is_dir():
        raise LabError(f"no suites folder at {suites}")
    lab = _up(a)
    try:
        argv = [sys.executable, "-m", "pytest", str(suites), f"--nova-inventory={lab.inventory_path}", "-n", "auto",
                "--html=report.html", "--self-contained-html", *_rest(a.pytest_args)]
        print("running:", " ".join(argv), flush=True)
        try:
            return subprocess.run(lab.runner_cmd(argv), timeout=_LONG, check=False).returncode
        except KeyboardInterrupt:
            return 130
    finally:
        t0 = time.monotonic()
        lab.down()
        print(f"lab {lab.name!r} torn down in {time.monotonic() - t0:.1f}s")


def _status(name: str | None) -> int:
    names = [name] if name else sorted(p.name for p in ROOT.glob("*") if (p / "lab.json").exists())
    if not names:
        print("no lab is up")
    for n in names:
        print(json.dumps(Lab.attach(n).status(), indent=1))
    return 0


def _fault(a: argparse.Namespace) -> int:
    if a.action == "list":
        for name, f in sorted(REGISTRY.items()):
            shown = " ".join(f"{k}={v}" for k, v in f.params)
            print(f"{name:24} {shown}\n{'':24} {KINDS[f.kind].help}")
        return 0
    if not a.fault:
        raise LabError("name a fault (see: nova-lab fault list)")
    params: dict[str, str] = {}
    for item in a.params:
        key, sep, value = item.partition("=")
        if not sep:
            raise LabError(f"fault parameter {item!r}: expected KEY=VALUE")
        params[key] = value
    lab = Lab.attach(a.name)
    if a.action == "on":
        print("on:", lab.apply(a.fault, **params).key)
        return 0
    active = lab.active_faults()
    if a.fault == "all":
        chosen = active
    else:
        exact = REGISTRY[a.fault].kind if a.fault in REGISTRY else a.fault
        key = resolve(a.fault, **params).key
        # Without parameters, "off NAME" means every active fault of that kind.
        chosen = [f for f in active if f.key == key or (not params and f.kind == exact)]
    for f in chosen:
        lab.revert(f)
        print("off:", f.key)
    if not chosen:
        print("no fault is on" if a.fault == "all" else f"{a.fault} is not on")
    return 0


def _main(a: argparse.Namespace) -> int:
    if a.command == "up":
        _up(a)
        return 0
    if a.command == "down":
        if not state_dir(a.name).exists():
            raise LabError(f"no lab named {a.name!r} is up")
        t0 = time.monotonic()
        counts = teardown(a.name)
        print(f"lab {a.name!r} down in {time.monotonic() - t0:.1f}s: "
              + ", ".join(f"{v} {k}" for k, v in counts.items()))
        return 0
    if a.command == "status":
        return _status(a.name)
    if a.command == "installed":
        Lab.attach(a.name).set_installed(a.state == "on")
        return 0
    if a.command == "fault":
        return _fault(a)
    if a.command == "exec":
        cmd = _rest(a.cmd)
        if not cmd:
            raise LabError("usage: nova-lab exec HOST -- CMD...")
        argv = Lab.attach(a.name).host_cmd(a.host, cmd)
        return subprocess.run(argv, timeout=_LONG, check=False).returncode
    if a.command == "shell":
        cmd = _rest(a.cmd) or [os.environ.get("SHELL", "/bin/bash")]
        return subprocess.run(Lab.attach(a.name).runner_cmd(cmd), timeout=_LONG, check=False).returncode
    if a.command == "demo":
        return _demo(a)
    raise LabError(f"unknown command {a.command}")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nova-lab``: errors print one line, never a traceback."""
    args = _parser().parse_args(argv)
    # A kill (or a closed terminal) tears down like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print("nova-lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nova-lab status | head`
        return 0
    except (LabError, ValueError, OSError, subprocess.SubprocessError) as exc:
        print(f"nova-lab: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
