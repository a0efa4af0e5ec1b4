"""The comparison with an earlier run (``--nova-baseline=PREVIOUS.json``): what was fixed, what is new.

The earlier run's results JSON may be hundreds of megabytes (a 1,000-node cluster): it is read in chunks, one
record at a time, under a deadline, and only the identities of the records that failed or could not be checked
are kept. A file of another cluster or schema, or one that cannot be read as a results JSON, is refused at
start-up in one line.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from _pytest_nova.model import JSONObject, Record
from _pytest_nova.verdicts import ERROR, FAILED

SCHEMA = "pytest-nova/results/v1"
FAILING = frozenset({FAILED, ERROR})
# A record's identity across runs (docs/results-v1.md).
Identity = tuple[str, str | None, str | None, int | None, str | None]
CHUNK = 1 << 20
RECORD_LIMIT = 1 << 20  # one record, or one top-level value other than the results
VALUE_LIMIT = 64 << 20  # the waivers or coverage lists of a large run
BASE_DEADLINE = 60.0  # seconds to read a baseline, plus one second per MIN_RATE bytes
MIN_RATE = 5 << 20
_WS = re.compile(r"[ \t\n\r]*")


class BaselineError(Exception):
    """A baseline that cannot be used, said in one line."""


def identity(record: Mapping[str, object]) -> Identity:
    """(requirement, source, target, port, protocol) of a record."""
    port = record.get("port")
    return (str(record.get("requirement")), _opt(record.get("source")), _opt(record.get("target")),
            port if isinstance(port, int) and not isinstance(port, bool) else None, _opt(record.get("protocol")))


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Baseline:
    """An earlier run of the same cluster: where it was read, when it ran, and what did not hold then."""

    path: Path
    sha256: str
    started: str
    failing: frozenset[Identity]


@dataclass
class Comparison:
    """The run against a baseline: identities fixed, new and still failing (and those not checked again)."""

    baseline: Baseline
    fixed: list[Identity] = field(default_factory=list)
    new: list[Identity] = field(default_factory=list)
    still_failing: list[Identity] = field(default_factory=list)
    not_checked: list[Identity] = field(default_factory=list)

    def as_json(self) -> JSONObject:
        """The ``baseline`` key of the results JSON."""
        b = self.baseline
        return {"path": str(b.path), "sha256": b.sha256, "started": b.started, "fixed": len(self.fixed),
                "new": len(self.new), "still_failing": len(self.still_failing), "not_checked": len(self.not_checked)}

    def line(self) -> str:
        """The terminal's line: ``since the run of 2026-12-01 10:02: 38 fixed, 0 new, 0 still failing``."""
        text = (f"since the run of {when(self.baseline.started)}: {len(self.fixed)} fixed, {len(self.new)} new, "
                f"{len(self.still_failing)} still failing")
        if self.not_checked:
            text += f" ({len(self.not_checked)} failing then were not checked this time)"
        return text


def when(started: str) -> str:
    """``2026-12-01T10:02:00Z`` as ``2026-12-01 10:02``."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(:\d\d(\.\d+)?)?Z?", started)
    return f"{m.group(1)} {m.group(2)}" if m else started


def compare(baseline: Baseline, records: Iterable[Record]) -> Comparison:
    """Compare this run's records (every one: passed ones say what was checked again) with ``baseline``."""
    now_failing: set[Identity] = set()
    checked: set[Identity] = set()  # baseline failures this run checked again
    for r in records:
        key = identity(r)
        if r["outcome"] in FAILING:
            now_failing.add(key)
        if key in baseline.failing:
            checked.add(key)
    out = Comparison(baseline)
    out.new = sorted(now_failing - baseline.failing, key=_order)
    out.still_failing = sorted(now_failing & baseline.failing, key=_order)
    out.fixed = sorted(checked - now_failing, key=_order)
    out.not_checked = sorted(baseline.failing - checked, key=_order)
    return out


def _order(key: Identity) -> tuple[str, str, str, int, str]:
    req, src, dst, port, proto = key
    return req, src or "", dst or "", port if port is not None else -1, proto or ""


def load_baseline(path: Path, cluster: str, *, clock: Callable[[], float] = time.monotonic) -> Baseline:
    """Read the results JSON at ``path`` of an earlier run of ``cluster``; :class:`BaselineError` if unusable."""
    shown = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise BaselineError(f"{shown}: cannot be read: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise BaselineError(f"{shown}: not a regular file; name the results JSON (--nova-json) of an earlier run")
    with os.fdopen(fd, "rb") as f:
        deadline = clock() + BASE_DEADLINE + info.st_size / MIN_RATE
        reader = _Reader(f, shown, deadline, clock)
        return reader.baseline(path, cluster)


class _Reader:
    """A results JSON read in chunks: its top-level keys whole, its ``results`` one record at a time."""

    def __init__(self, f: BinaryIO, shown: str, deadline: float, clock: Callable[[], float]) -> None:
        self.f, self.shown, self.deadline, self.clock = f, shown, deadline, clock
        self.decoder = json.JSONDecoder()
        self.text = codecs.getincrementaldecoder("utf-8")()
        self.sha = hashlib.sha256()
        self.buf, self.pos, self.eof = "", 0, False
        self.line = 1  # of self.buf's start

    def fail(self, message: str, at: int | None = None) -> BaselineError:
        line = self.line + self.buf.count("\n", 0, self.pos if at is None else at)
        return BaselineError(f"{self.shown}:{line}: {message}")

    def fill(self) -> None:
        if self.clock() > self.deadline:
            raise BaselineError(f"{self.shown}: not read within {BASE_DEADLINE:g} s plus 1 s per "
                                f"{MIN_RATE >> 20} MB; is it on a slow or hung file system?")
        try:
            raw = self.f.read(CHUNK)
            text = self.text.decode(raw or b"", final=not raw)
        except UnicodeDecodeError:
            raise self.fail("not UTF-8 text: not a results JSON") from None
        except OSError as exc:
            raise BaselineError(f"{self.shown}: cannot be read: {exc.strerror or exc}") from None
        self.sha.update(raw or b"")
        self.eof = not raw
        self.line += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos:] + text
        self.pos = 0

    def skip(self) -> str:
        """Skip white space; the next character ('' at the end of the file)."""
        while True:
            m = _WS.match(self.buf, self.pos)
            self.pos = m.end() if m else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self.fill()

    def expect(self, chars: str, what: str) -> str:
        c = self.skip()
        if not c or c not in chars:
            raise self.fail(f"expected {what}, found {c[:1]!r}: not a results JSON" if c else
                            f"ends early (expected {what}): truncated?")
        self.pos += 1
        return c

    def value(self, limit: int) -> object:
        self.skip()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof and (exc.msg.startswith("Unterminated") or not self.buf[exc.pos:].strip()):
                    raise self.fail(f"ends early ({exc.msg}): truncated?", exc.pos) from None
                if self.eof:
                    raise self.fail(f"not valid JSON: {exc.msg}", exc.pos) from None
                if len(self.buf) - self.pos > limit:
                    raise self.fail(f"a value larger than {limit >> 20} MB: not a results JSON") from None
                self.fill()
                continue
            if end == len(self.buf) and not self.eof:
                self.fill()  # a number may go on in the next chunk
                continue
            self.pos = end
            return obj

    def baseline(self, path: Path, cluster: str) -> Baseline:
        self.fill()
        if self.buf.startswith("\ufeff"):
            self.pos = 1
        self.expect("{", "'{'")
        head: dict[str, object] = {}
        failing: set[Identity] = set()
        if self.skip() == "}":
            self.pos += 1
        else:
            while True:
                key = self.value(RECORD_LIMIT)
                if not isinstance(key, str):
                    raise self.fail("expected a key: not a results JSON")
                self.expect(":", "':'")
                if key == "results":
                    self.records(failing)
                else:
                    head[key] = self.value(VALUE_LIMIT)
                    self.check(key, head[key], cluster)
                if self.expect(",}", "',' or '}'") == "}":
                    break
        if self.skip():
            raise self.fail("text after the results JSON: not a results JSON")
        if "schema" not in head:
            raise BaselineError(f"{self.shown}: no 'schema': not a results JSON of pytest-nova ({SCHEMA})")
        if "cluster" not in head:
            raise BaselineError(f"{self.shown}: no 'cluster': not a results JSON of pytest-nova ({SCHEMA})")
        started = head.get("started")
        return Baseline(path, self.sha.hexdigest(), started if isinstance(started, str) else "", frozenset(failing))

    def check(self, key: str, value: object, cluster: str) -> None:
        """Refuse as soon as the head says the file is of another schema or cluster."""
        if key == "schema" and value != SCHEMA:
            raise BaselineError(f"{self.shown}: schema {str(value)[:80]!r}, not {SCHEMA!r}: name the results JSON "
                                "(--nova-json) of an earlier pytest-nova run")
        if key == "cluster" and value != cluster:
            raise BaselineError(f"{self.shown}: results of cluster {str(value)[:80]!r}, not {cluster!r} (this "
                                "inventory); name an earlier run of the same cluster")

    def records(self, failing: set[Identity]) -> None:
        self.expect("[", "'[' (the results)")
        if self.skip() == "]":
            self.pos += 1
            return
        while True:
            record = self.value(RECORD_LIMIT)
            if not isinstance(record, dict) or "outcome" not in record or "requirement" not in record:
                raise self.fail("a result without 'outcome' and 'requirement': not a results JSON")
            if record["outcome"] in FAILING:
                failing.add(identity(record))
            if self.expect(",]", "',' or ']'") == "]":
                return
