"""Waivers: accepted deviations, each approved by someone until a date.

A waivers file (``--nova-waivers=PATH``) lists failures the customer accepts::

    waivers:
      - requirement: os-sudo-nopasswd      # a requirement id: the catalog's, or a site test's
        node: worker-2                     # optional; a node name or a glob (worker-*); omitted: every node
        justification: sudo asks for a password on this node by policy; the installer enters it
        approver: J. Smith, head of operations
        expires: 2026-12-31                # last day the waiver applies

A waiver applies to failed records of its requirement whose source or target is the node. It never applies
to errors (a check that could not run has observed nothing to accept), nor after its expiry date.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from _pytest_nova.errors import SourceError, quote
from _pytest_nova.model import Record
from _pytest_nova.verdicts import FAILED, WAIVED
from _pytest_nova.yamlsource import Document, load

WAIVER_KEY = "_waiver"  # private record key: index of the waiver that waived it
_KEYS = {"requirement": True, "node": False, "justification": True, "approver": True, "expires": True}
_GLOB = frozenset("*?[")


def today() -> date:
    """The date expiry is judged against (UTC, so the controller and its workers agree)."""
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Waiver:
    """One accepted deviation."""

    index: int
    line: int
    requirement: str
    node: str | None
    justification: str
    approver: str
    expires: date

    @property
    def label(self) -> str:
        """``requirement on node``, or the requirement alone when it covers every node."""
        return f"{self.requirement} on {self.node}" if self.node else self.requirement

    @property
    def reason(self) -> str:
        """The text a waived result carries."""
        return f"waived: {self.justification} (approved by {self.approver} until {self.expires.isoformat()})"

    def matches(self, record: Mapping[str, object]) -> bool:
        """Whether this waiver covers ``record`` (any outcome; callers decide which outcomes to waive)."""
        if record.get("requirement") != self.requirement:
            return False
        node = self.node
        return node is None or any(isinstance(name, str) and fnmatch.fnmatchcase(name, node)
                                   for name in (record.get("source"), record.get("target")))


@dataclass(frozen=True)
class Waivers:
    """The waivers of one file, split by whether they have expired."""

    path: Path
    items: tuple[Waiver, ...]
    on: date
    # Requirements outside the catalog, each with the error to give unless a site test declares it.
    pending: tuple[tuple[str, SourceError], ...] = ()

    def check_pending(self, known: Collection[str]) -> None:
        """Raise the :class:`SourceError` of the first waiver whose requirement is not in ``known`` either."""
        for requirement, error in self.pending:
            if requirement not in known:
                raise error

    @property
    def active(self) -> tuple[Waiver, ...]:
        """Waivers that still apply."""
        return tuple(w for w in self.items if w.expires >= self.on)

    @property
    def expired(self) -> tuple[Waiver, ...]:
        """Waivers past their expiry date; they apply to nothing."""
        return tuple(w for w in self.items if w.expires < self.on)

    def where(self, w: Waiver) -> str:
        """``file:line`` of a waiver."""
        return f"{self.path}:{w.line}"

    def find(self, record: Mapping[str, object]) -> Waiver | None:
        """The first unexpired waiver covering a failed record."""
        if record.get("outcome") != FAILED:
            return None
        return next((w for w in self.active if w.matches(record)), None)


def waive(record: Record, w: Waiver) -> Record:
    """A copy of a failed record marked as waived by ``w`` (what was observed is kept apart from the reason)."""
    out = record.copy()
    out["outcome"] = WAIVED
    out["message"] = f"{record['message']} — {w.reason}"
    out["_waiver"] = w.index
    out["_observed"] = record["message"]
    return out


@dataclass(frozen=True)
class Usage:
    """How one waiver fared in a run."""

    waiver: Waiver
    status: str  # applied | unused | expired
    count: int  # records waived; for an expired waiver, the failures it would have covered


def usage(waivers: Waivers, records: Iterable[Mapping[str, object]]) -> list[Usage]:
    """Per waiver: applied (with how many records it waived), unused, or expired."""
    records = list(records)
    waived: dict[int, int] = {}
    for r in records:
        index = r.get("_waiver")
        if r.get("outcome") == WAIVED and isinstance(index, int):
            waived[index] = waived.get(index, 0) + 1
    out = []
    for w in waivers.items:
        if w.expires < waivers.on:
            would = sum(1 for r in records if r.get("outcome") == FAILED and w.matches(r))
            out.append(Usage(w, "expired", would))
        else:
            n = waived.get(w.index, 0)
            out.append(Usage(w, "applied" if n else "unused", n))
    return out


def load_waivers(
    path: Path, *, requirements: Collection[str], hosts: Collection[str] | None = None, on: date | None = None,
    pending: bool = False,
) -> Waivers:
    """Read and validate a waivers file; errors name file, line and key (:class:`SourceError`).

    With ``pending``, a requirement outside ``requirements`` is kept for :meth:`Waivers.check_pending`: a site
    test's requirement is known only once the tests are collected.
    """
    doc = load(path)
    data = doc.data
    if not isinstance(data, dict) or "waivers" not in data:
        raise doc.error((), "a waivers file is a mapping with a 'waivers' list")
    extra = sorted(set(data) - {"waivers"})
    if extra:
        raise doc.error((extra[0],), "unknown key (expected: waivers)")
    raw = data["waivers"]
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise doc.error(("waivers",), "expected a list of waivers")
    items: list[Waiver] = []
    seen: dict[tuple[str, str | None], int] = {}
    later: list[tuple[str, SourceError]] = []
    for i, entry in enumerate(raw):
        w = _waiver(doc, i, entry, requirements, hosts, later if pending else None)
        key = (w.requirement, w.node)
        if key in seen:
            raise doc.error(("waivers", i), f"duplicate waiver for {w.label} (also at line {seen[key]})")
        seen[key] = w.line
        items.append(w)
    return Waivers(path, tuple(items), on or today(), tuple(later))


def _waiver(
    doc: Document, i: int, entry: object, requirements: Collection[str], hosts: Collection[str] | None,
    later: list[tuple[str, SourceError]] | None = None,
) -> Waiver:
    at = ("waivers", i)
    if not isinstance(entry, dict):
        raise doc.error(at, "a waiver is a mapping with requirement, justification, approver and expires")
    for key in entry:
        if key not in _KEYS:
            raise doc.error((*at, key), f"unknown key (expected one of: {', '.join(_KEYS)})")
    for key, required in _KEYS.items():
        if required and key not in entry:
            raise doc.error(at, f"missing required key '{key}'")

    def text(key: str) -> str:
        value = entry[key]
        if not isinstance(value, str) or not value.strip():
            raise doc.error((*at, key), "expected non-empty text")
        return value.strip()

    requirement = text("requirement")
    if requirement not in requirements:
        error = doc.error((*at, "requirement"), f"unknown requirement {quote(requirement)}")
        if later is None:
            raise error
        later.append((requirement, error))
    node = text("node") if "node" in entry else None
    if node is not None and hosts is not None and not _GLOB & set(node) and node not in hosts:
        raise doc.error((*at, "node"), f"{quote(node)} is not a node, workstation or load balancer of the inventory")
    expires = entry["expires"]
    if isinstance(expires, str):
        try:
            expires = date.fromisoformat(expires.strip())
        except ValueError:
            pass
    if not isinstance(expires, date) or isinstance(expires, datetime):
        raise doc.error((*at, "expires"), f"expected a date YYYY-MM-DD, got {quote(entry['expires'])}")
    return Waiver(
        index=i,
        line=doc.line(at),
        requirement=requirement,
        node=node,
        justification=text("justification"),
        approver=text("approver"),
        expires=expires,
    )
