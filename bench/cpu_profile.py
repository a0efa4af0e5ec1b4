"""Where a profiled run's CPU went: summarize py-spy's collapsed stacks (``bench/run.py --profile``).

py-spy samples only threads that are on the CPU, so a sample is CPU time: ``samples / rate`` seconds. The
samples are split by process (the controller, each xdist worker) and summed per function, both as self time
(the function itself was running) and inclusive time (it was on the stack), and per package (the file of the
innermost frame: pytest-nova, pytest, xdist/execnet, pytest-html, json, …):

    python bench/cpu_profile.py /var/tmp/nova-bench-run-200-now-auto/profile.txt --top 30
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

PROCESS = re.compile(r'process (\d+):"((?:[^"\\]|\\.)*)";?')
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
PACKAGES = (("pytest_nova/", "pytest-nova"), ("_pytest/", "pytest"), ("pluggy/", "pluggy"), ("xdist/", "xdist"),
            ("execnet/", "execnet"), ("pytest_html/", "pytest-html"), ("json/", "json"), ("testinfra/", "testinfra"),
            ("yaml/", "yaml"), ("jinja2/", "jinja2"), ("importlib", "imports"), ("<frozen", "imports"),
            ("threading.py", "threads"), ("subprocess.py", "subprocess"), ("selectors.py", "selectors"))


def role(command: str) -> str:
    """``controller`` (pytest), ``worker`` (an execnet gateway), or the command itself."""
    if "pytest" in command and "-c" not in command.split()[:3]:
        return "controller"
    if "execnet" in command or "sys.stdin.readline" in command or " -c " in command:
        return "xdist worker"
    return command[:60]


def package(frame: str) -> str:
    """The package a frame's file belongs to."""
    m = FRAME.match(frame)
    path = m.group("file") if m else frame
    return next((name for part, name in PACKAGES if part in path), path.split("/")[0] or "other")


def short(frame: str) -> str:
    """``function (file.py)`` without the line number."""
    m = FRAME.match(frame)
    return f"{m.group('func')} ({m.group('file')})" if m else frame


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--rate", type=float, default=100.0, help="py-spy's samples per second (bench/run.py: 100)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="pytest_nova/", help="inclusive time of the functions of these files")
    a = parser.parse_args()
    by_role: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_package: Counter[tuple[str, str]] = Counter()
    for line in a.profile.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        commands = []
        while m := PROCESS.match(stack):
            commands.append(m.group(2))
            stack = stack[m.end():]
        frames = [f for f in stack.split(";") if f]
        who = role(commands[-1]) if commands else "?"
        by_role[who] += n
        if not frames:
            continue
        self_time[short(frames[-1])] += n
        by_package[(who, package(frames[-1]))] += n
        for f in {short(f) for f in frames if a.match in f}:
            inclusive[f] += n

    def s(n: int) -> str:
        return f"{n / a.rate:.1f} s"

    total = sum(by_role.values())
    print(f"{total} samples = {s(total)} of CPU\n\n| process | CPU |\n| --- | --- |")
    for who, n in by_role.most_common():
        print(f"| {who} | {s(n)} |")
    print("\n| process | package of the running frame | CPU |\n| --- | --- | --- |")
    for (who, pkg), n in by_package.most_common(a.top):
        print(f"| {who} | {pkg} | {s(n)} |")
    print("\n| self time: function | CPU |\n| --- | --- |")
    for f, n in self_time.most_common(a.top):
        print(f"| `{f}` | {s(n)} |")
    print(f"\n| inclusive time: functions of {a.match} | CPU |\n| --- | --- |")
    for f, n in inclusive.most_common(a.top):
        print(f"| `{f}` | {s(n)} |")


if __name__ == "__main__":
    main()
