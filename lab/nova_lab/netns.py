"""Commands that build and enter network namespaces, with a timeout on every one."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

DEFAULT_TIMEOUT = 30.0


class LabError(RuntimeError):
    """A lab operation failed; the message is one line meant for the user."""


def run(
    cmd: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` and capture its output; raise LabError with its stderr when ``check`` and it fails."""
    try:
        proc = subprocess.run(
            list(cmd), input=input, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:g}s: {' '.join(cmd)}") from exc
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {cmd[0]} (is its Debian package installed?)") from exc
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{' '.join(cmd)}: exit {proc.returncode}: {msg[-1] if msg else ''}")
    return proc


def in_netns(ns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run in network namespace ``ns`` (with its /etc/netns/<ns> files)."""
    return ["ip", "netns", "exec", ns, *argv]


def in_host(pid: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run in the mount, UTS and network namespaces of process ``pid`` (a host's holder)."""
    return ["nsenter", "-t", str(pid), "-m", "-u", "-n", "--", *argv]


def ip_batch(lines: Sequence[str], ns: str | None = None, check: bool = True) -> None:
    """Run many ``ip`` commands in one process (hundreds of links and neighbours in milliseconds)."""
    if not lines:
        return
    cmd = ["ip", "-force", "-batch", "-"]
    if ns:
        cmd[1:1] = ["-n", ns]
    run(cmd, input="\n".join(lines) + "\n", timeout=60, check=check)


def existing_netns() -> set[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    out = run(["ip", "netns", "list"]).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def existing_links() -> set[str]:
    """Names of the links of the root network namespace."""
    out = run(["ip", "-o", "link", "show"]).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) > 2:
            names.add(parts[1].strip().split("@")[0])
    return names


def nft_sync(ns: str, table: str, body: str) -> None:
    """Replace table ``inet <table>`` of namespace ``ns`` by ``body`` (chains and rules), atomically."""
    script = f"table inet {table}\ndelete table inet {table}\n"
    if body.strip():
        script += f"table inet {table} {{\n{body}\n}}\n"
    run(in_netns(ns, ["nft", "-f", "-"]), input=script)
