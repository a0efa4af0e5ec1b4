"""Sudo as the docs demand it (account 1): the rights sudo really grants, and the drop-in as sudo reads it.

Pure: reads what ``sudo -n -l`` printed on the node and the drop-in's stat and text, no I/O. The rights decide
(``os-sudo-nopasswd``, required): whatever file grants them, the user must run any command as any user without
a password, ``(ALL) NOPASSWD: ALL`` in any spelling. The drop-in at the docs' path with the docs' line is the
docs' way to get there (``os-sudoers-file``, advisory), judged by sudo's own rule for a sudoers file: owned by
root, not writable by others, writable by its group only when the group is root (sudoers_gid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from _pytest_nova.checks.facts import Run, Stat
from _pytest_nova.checks.node_registry import NodeFact

# sudo's tags before a command list (sudoers(5), Tag_Spec); sudo -l prints each followed by ": ".
TAGS = frozenset({"NOPASSWD", "PASSWD", "SETENV", "NOSETENV", "EXEC", "NOEXEC", "LOG_INPUT", "NOLOG_INPUT",
                  "LOG_OUTPUT", "NOLOG_OUTPUT", "MAIL", "NOMAIL", "FOLLOW", "NOFOLLOW", "INTERCEPT", "NOINTERCEPT"})
_ENTRY = re.compile(r"^\((?P<runas>[^)]*)\)\s*(?P<rest>.*)$")
_TAG = re.compile(r"^(?P<tag>[A-Z_]+):\s*")
# A sudoers line granting USER every command as anyone without a password: ALL=(ALL) NOPASSWD:ALL, with
# ALL=(ALL:ALL) or ALL=(ALL : ALL) and any spacing.
_FULL_LINE = r"^\s*{user}\s+ALL\s*=\s*\(\s*ALL\s*(?::\s*ALL\s*)?\)\s*NOPASSWD\s*:\s*ALL\s*$"
DOCS_LINE = "{user} ALL=(ALL) NOPASSWD:ALL"
# The user's effective rights, whatever file grants them, in sudo's own words (C locale: stable messages). A
# registered fact of the node's one facts run, as a plugin's would be.
SUDO_RIGHTS = NodeFact("sudo_rights", command=("env", "LC_ALL=C", "sudo", "-n", "-l"), timeout=10.0)
NODE_FACTS = (SUDO_RIGHTS,)


@dataclass(frozen=True)
class Entry:
    """One privilege ``sudo -l`` lists: run-as users (and groups), tags, commands."""

    runas: tuple[str, ...]
    tags: frozenset[str]
    commands: tuple[str, ...]
    text: str

    @property
    def full(self) -> bool:
        """Any command, as any user, without a password: what the docs' line grants."""
        return "ALL" in self.runas and "NOPASSWD" in self.tags and self.commands == ("ALL",)


def parse_entry(line: str) -> Entry | None:
    """One line of sudo -l's privilege list, e.g. ``(ALL : ALL) NOPASSWD: ALL``; None when it is not one."""
    m = _ENTRY.match(line.strip())
    if not m:
        return None
    users = m.group("runas").split(":", 1)[0]
    runas = tuple(u.strip() for u in users.split(",") if u.strip())
    rest, tags = m.group("rest"), set()
    while (t := _TAG.match(rest)) and t.group("tag") in TAGS:
        tags.add(t.group("tag"))
        rest = rest[t.end():]
    # A later PASSWD wins over an earlier NOPASSWD on the same entry.
    if "PASSWD" in tags:
        tags.discard("NOPASSWD")
    commands = tuple(c.strip() for c in rest.split(",") if c.strip())
    return Entry(runas, frozenset(tags), commands, " ".join(line.split()))


@dataclass(frozen=True)
class Rights:
    """What ``sudo -n -l`` says the user may do."""

    entries: tuple[Entry, ...]
    no_authenticate: bool  # Defaults !authenticate: no entry asks for a password

    @property
    def full(self) -> bool:
        """Whether some entry grants every command as anyone without a password."""
        return any(e.full or (self.no_authenticate and "ALL" in e.runas and e.commands == ("ALL",))
                   for e in self.entries)

    def granted(self) -> str:
        """The entries as sudo prints them, joined."""
        return "; ".join(e.text for e in self.entries) or "nothing"


def parse_rights(out: str) -> Rights:
    """The privileges and the relevant Defaults of ``sudo -l``'s output (the lines after "may run")."""
    entries: list[Entry] = []
    listing = False
    defaults: list[str] = []
    for line in out.splitlines():
        if " may run the following commands" in line:
            listing = True
            continue
        if listing:
            entry = parse_entry(line)
            if entry is not None:
                entries.append(entry)
        elif line.startswith((" ", "\t")):
            defaults.extend(d.strip() for d in line.split(","))
    return Rights(tuple(entries), "!authenticate" in defaults)


def refused_files(err: str) -> list[str]:
    """Sudo's own complaints about sudoers files it ignored (``sudo: /etc/sudoers.d/x is world writable``)."""
    return [ln.removeprefix("sudo: ").strip() for ln in err.splitlines()
            if ln.startswith("sudo: /") and any(w in ln for w in (" writable", " owned by", "not a regular file"))]


def judge_rights(listed: Run | None, user: str, whoami: str) -> tuple[bool, str]:
    """(passes, what was observed) for the user's effective rights from ``sudo -n -l``."""
    if whoami == "root" and user == "root":
        return True, "the user is root: sudo asks root for no password"
    if listed is None:
        return False, "sudo -n -l was not run"
    ignored = refused_files(listed.get("err", ""))
    note = f" (sudo ignores {'; '.join(ignored)})" if ignored else ""
    if listed.get("rc") != 0:
        lines = [ln for ln in (listed.get("err") or "").strip().splitlines() if ln not in ignored]
        last = (lines or [f"exit status {listed.get('rc')}"])[-1].removeprefix("sudo: ")
        return False, f"sudo -n -l failed: {last}: no rule lets {user} run commands without a password{note}"
    rights = parse_rights(listed.get("out", ""))
    if rights.full:
        full = next(e.text for e in rights.entries if e.full or rights.no_authenticate)
        how = " (Defaults !authenticate)" if rights.no_authenticate and not any(e.full for e in rights.entries) \
            else ""
        return True, f"sudo -n -l: {user} may run {full}{how}{note}"
    return False, (f"sudo grants {user} only: {rights.granted()}; the docs ask for (ALL) NOPASSWD: ALL (any command "
                   f"as any user without a password){note}")


def sudo_mode_problems(st: Stat) -> list[str]:
    """Why sudo would ignore a sudoers file with this stat, in sudo's words; empty when sudo reads it."""
    problems = []
    if st.get("uid", 0) != 0:
        problems.append(f"owned by uid {st.get('uid')} ({st.get('owner')}), should be 0")
    try:
        mode = int(str(st.get("mode")), 8)
    except ValueError:
        mode = 0o777
    if mode & 0o002:
        problems.append("world writable")
    elif mode & 0o020 and st.get("gid", 0) != 0:
        problems.append(f"group writable by gid {st.get('gid')} ({st.get('group')}), not root's group")
    return problems


def holds_docs_line(text: str, user: str) -> bool:
    """Whether a sudoers text grants ``user`` ALL=(ALL) NOPASSWD:ALL in one of its spellings."""
    line = re.compile(_FULL_LINE.format(user=re.escape(user)), re.MULTILINE)
    return bool(line.search(text))
