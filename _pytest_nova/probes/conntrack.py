"""Which of the given UDP flows the kernel's connection tracking holds on this host: proof a datagram passed.

Run by pytest-nova with ``sudo -n`` on the destination of UDP probes that got no answer (python3 3.6+, stdlib
only). A flow's entry is confirmed in the conntrack table only once its first datagram has passed every input
hook, the firewall's included; a datagram dropped on the way leaves none. Parameters (one JSON line on stdin):
``flows`` ([source address, source port, destination address, destination port] each), ``ssh_port`` and
``address`` (this host's). Answer: one framed JSON line with ``found`` (indexes of the flows present),
``tracking`` (whether the table holds this run's own SSH connection, so tracking is on in this network
namespace), ``udp_timeout`` (seconds an unanswered UDP entry lives) or ``error``. It only reads.
"""
# ruff: noqa: UP006, UP022, UP035
# (typing.Dict, List, and no capture_output: this file runs on the hosts' python3, which may be as old as 3.6)

import errno
import json
import subprocess
import sys
from typing import Any, Dict, List

TABLE = "/proc/net/nf_conntrack"
UDP_TIMEOUT = "/proc/sys/net/netfilter/nf_conntrack_udp_timeout"


def original(fields: List[str]) -> Dict[str, str]:
    """The original direction of one entry: the first src, dst, sport and dport."""
    out: Dict[str, str] = {}
    for f in fields:
        key, sep, value = f.partition("=")
        if sep and key in ("src", "dst", "sport", "dport") and key not in out:
            out[key] = value
    return out


def scan(text: str, flows: List[List[Any]], address: str, ssh_port: int) -> Dict[str, Any]:
    """The answer for ``flows`` from the text of the conntrack table."""
    wanted = {(str(s), str(sp), str(d), str(dp)): i for i, (s, sp, d, dp) in enumerate(flows)}
    found: List[int] = []
    tracking = False
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        proto = fields[2]
        o = original(fields)
        if proto == "tcp" and o.get("dst") == address and o.get("dport") == str(ssh_port):
            tracking = True
        elif proto == "udp":
            i = wanted.get((o.get("src", ""), o.get("sport", ""), o.get("dst", ""), o.get("dport", "")))
            if i is not None:
                found.append(i)
    return {"found": sorted(set(found)), "tracking": tracking}


def read_table() -> str:
    """The conntrack table: /proc/net/nf_conntrack, or ``conntrack -L`` where the kernel has no such file."""
    try:
        with open(TABLE) as fh:
            return fh.read()
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise OSError(f"cannot read {TABLE}: {exc.strerror or exc}") from None
    try:
        # conntrack-tools prints the same fields (the "extended" output adds the family, as the file has).
        proc = subprocess.run(["conntrack", "-L", "-o", "extended"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OSError(f"no {TABLE} and conntrack -L could not run: {exc}") from None
    if proc.returncode != 0:
        raise OSError(f"no {TABLE} and conntrack -L failed: {proc.stderr.decode('utf-8', 'replace').strip()[-200:]}")
    return proc.stdout.decode("utf-8", "replace")


def main() -> None:
    """Read the parameters and the table; print the framed answer."""
    params = json.loads(sys.stdin.readline() or "{}")
    answer: Dict[str, Any] = {}
    try:
        text = read_table()
        answer = scan(text, params.get("flows", []), str(params.get("address", "")), int(params.get("ssh_port", 22)))
    except OSError as exc:
        answer = {"error": str(exc)}
    try:
        with open(UDP_TIMEOUT) as fh:
            answer["udp_timeout"] = int(fh.read().strip())
    except (OSError, ValueError):
        answer["udp_timeout"] = 30
    sys.stdout.write(str(params.get("frame", "")) + " " + json.dumps(answer) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
