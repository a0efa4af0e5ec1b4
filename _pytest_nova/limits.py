"""The open-files limit a run over many hosts needs, raised before xdist starts its workers."""

from __future__ import annotations

import resource


def fds_needed(hosts: int) -> int:
    """Open files one process may hold for a run over ``hosts`` hosts.

    The firewall engine keeps one listener session per destination (three pipes each, and the ssh client's
    control socket) while every source probes; plus pytest's own files and the probe and fact sessions.
    """
    return 4 * hosts + 512


def raise_fd_limit(needed: int) -> str:
    """Raise this process's soft limit of open files towards ``needed`` (up to the hard limit).

    Many systems start processes with a soft limit of 1,024, which a few hundred hosts exceed; the hard limit
    is usually far higher and a process may raise its own soft limit up to it. Returns a note when even the
    hard limit is too low, else "".
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return ""
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target >= needed:
        return ""
    return (f"open files limited to {target} (ulimit -n), below the {needed} this inventory may need: "
            f"raise the hard limit (ulimit -Hn, limits.conf nofile) or run fewer hosts per run")
