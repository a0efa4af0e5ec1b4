"""The results JSON (format v1): one record per individual assertion, written by the controller."""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from json.encoder import encode_basestring as _encode_str
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple, cast

import pytest

from _pytest_nova import outputs
from _pytest_nova.model import CheckMeta, JSONObject, Outcome, Record
from _pytest_nova.outputs import OutputError
from _pytest_nova.roles import Cell, cells_of, roles_of
from _pytest_nova.verdicts import (
    CELLS_PROPERTY,
    COUNTS_PROPERTY,
    ERROR,
    PASSED,
    RENDERED_PROPERTY,
    SKIPPED,
    USER_PROPERTY,
    compact,
    records_of,
)

if TYPE_CHECKING:
    from _pytest_nova.session import NovaSession

SCHEMA = "pytest-nova/results/v1"
# Top-level keys of format v1 itself, which a plugin's results fields cannot replace.
V1_KEYS = frozenset({"schema", "cluster", "inventory", "catalog", "started", "finished", "summary", "results"})
CHECK_PROPERTY = "nova_check"
OUTCOMES = tuple(Outcome)


def now() -> str:
    """The current time as the JSON writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



def lists_only(config: pytest.Config) -> bool:
    """Whether pytest only lists (``--collect-only``, ``--fixtures``, ``--fixtures-per-test``): no verdict then."""
    option = config.option
    return bool(getattr(option, "collectonly", False) or getattr(option, "showfixtures", False)
                or getattr(option, "show_fixtures_per_test", False))

class Collector:
    """Gathers verdict records from test reports (also those pytest-xdist sends from workers), on disk.

    Each report's records go to a spool file as they arrive, already rendered as the results JSON writes them;
    memory holds one small index entry per test item, not the records. Records that did not pass are kept a
    second time with their private keys (the failure text and fix), which the report reads.
    """

    def __init__(self) -> None:
        self.started = now()
        self._spool: IO[bytes] | None = None  # opened on the first record
        self._end = 0  # the spool's size: writes append here without a seek (and buffer flush) per report
        self._moved = False  # a read moved the spool's position away from its end
        self._index: dict[str, _Chunk] = {}
        self.roles: Mapping[str, str] = {}  # the report's role columns (roles.roles_of), for :meth:`cells`

    def add(self, report: pytest.TestReport) -> None:
        """Take the records of one report: the call phase's, or a setup that failed or skipped."""
        props = dict(report.user_properties)
        raw = props.get(CHECK_PROPERTY)
        if not isinstance(raw, dict):
            return
        meta = cast(CheckMeta, raw)
        if report.when == "setup" and report.passed:
            return
        if report.when == "teardown":
            if report.failed and report.nodeid not in self._index:
                self._put(report.nodeid, [_synth(meta, report, ERROR)])
            return
        records = records_of(report.user_properties)
        rendered = props.get(RENDERED_PROPERTY)
        if isinstance(rendered, str):
            counts = cast(dict[str, int], props.get(COUNTS_PROPERTY) or {})
            cells = [(str(a), str(r), str(o), int(n)) for a, r, o, n in cast(list[list[str | int]],
                                                                             props.get(CELLS_PROPERTY) or [])]
            self._put_rendered(report.nodeid, rendered, records, counts, cells)
            return
        if not records:
            # Without verdicts, a failure means the check itself broke (or its setup did): an error.
            outcome = SKIPPED if report.skipped else (PASSED if report.passed else ERROR)
            records = [_synth(meta, report, outcome)]
        self._put(report.nodeid, records)

    def _put(self, nodeid: str, records: list[Record]) -> None:
        """Append one item's records to the spool; a later report of the same item replaces them."""
        counts = Counter(str(r["outcome"]) for r in records)
        cells = [(*cell, n) for cell, n in cells_of(records, self.roles).items()]
        self._put_rendered(nodeid, rendered_records(records), [r for r in records if r["outcome"] != PASSED], counts,
                           cells)

    def _put_rendered(self, nodeid: str, rendered: str, failing: list[Record], counts: Mapping[str, int],
                      cells: list[tuple[str, str, str, int]]) -> None:
        """Append one item's records, already rendered (see :func:`pack`), and those that did not pass in full."""
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="nova-results-")  # unlinked at once: nothing left behind
        public_text = rendered.encode()
        private = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in failing if r["outcome"] != PASSED)
        private_text = private.encode()
        if self._moved:
            self._spool.seek(self._end)
            self._moved = False
        at = self._end
        self._spool.write(public_text)
        self._spool.write(private_text)
        self._end += len(public_text) + len(private_text)
        self._index[nodeid] = _Chunk(at, len(public_text), len(private_text),
                                     tuple((str(k), int(v)) for k, v in counts.items()), tuple(cells))

    def summary(self) -> dict[str, int]:
        """Counts of records per outcome, without reading them back."""
        total: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for chunk in self._index.values():
            for outcome, n in chunk.counts:
                total[outcome] = total.get(outcome, 0) + n
        return total

    def __len__(self) -> int:
        return sum(n for chunk in self._index.values() for _, n in chunk.counts)

    def cells(self) -> Counter[Cell]:
        """Records per (area, role, outcome), without reading them back (the report's area × role table)."""
        out: Counter[Cell] = Counter()
        for chunk in self._index.values():
            for area, role, outcome, n in chunk.cells:
                out[(area, role, outcome)] += n
        return out

    def records(self, *, passed: bool = True) -> Records:
        """All records (with their private keys), ordered by test id; ``passed=False``: only those that did not pass.

        Each iteration reads them back from the spool, one item at a time: iterate, do not keep them.
        """
        return Records(self, passed)

    def _iter(self, passed: bool) -> Iterator[Record]:
        for nodeid in sorted(self._index):
            chunk = self._index[nodeid]
            if not passed and not chunk.private:
                continue
            failing = iter(_record(line) for line in self._read(chunk.at + chunk.public, chunk.private).splitlines())
            if not passed:
                yield from failing
                continue
            for r in cast(list[Record], json.loads(b"[" + self._read(chunk.at, chunk.public) + b"]")):
                yield next(failing) if r["outcome"] != PASSED else r

    def _read(self, at: int, size: int) -> bytes:
        if self._spool is None or not size:
            return b""
        self._moved = True
        self._spool.seek(at)
        return self._spool.read(size)

    def write(self, path: Path, head: Mapping[str, object], extra: Mapping[str, object] | None = None) -> None:
        """Write the results JSON: ``head``'s keys, the summary, ``extra``'s keys, then every record from the spool.

        Exactly the bytes ``json.dumps(data, indent=1)`` gives for the same data, records ordered by test id.
        """
        data = {**head, "summary": self.summary(),
                **{k: v for k, v in (extra or {}).items() if k not in (*head, "summary", "results")}, "results": []}
        text = json.dumps(data, indent=1, ensure_ascii=False)
        with outputs.open_output(path) as out:
            if not self._index:
                out.write(text + "\n")
                return
            out.write(text.removesuffix("]\n}") + "\n")
            first = True
            for nodeid in sorted(self._index):
                chunk = self._index[nodeid]
                if chunk.public:
                    # Records of reports masked on arrival (plugin.mask_report runs before the collector).
                    out.write_masked((b"" if first else b",\n") + self._read(chunk.at, chunk.public))
                    first = False
            out.write("\n ]\n}\n")

    def close(self) -> None:
        """Remove the spool."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None


class Records:
    """The records of a :class:`Collector`, read from its spool on every iteration (not held in memory)."""

    def __init__(self, collector: Collector, passed: bool) -> None:
        self._collector, self._passed = collector, passed

    def __iter__(self) -> Iterator[Record]:
        return self._collector._iter(self._passed)

    def __len__(self) -> int:
        return sum(self.summary().values())

    def summary(self) -> dict[str, int]:
        """Counts per outcome, from the index."""
        counts = self._collector.summary()
        return counts if self._passed else counts | {PASSED: 0}


class _Chunk(NamedTuple):
    """Where one item's records are in the spool, and how many of each outcome it holds."""

    at: int
    public: int  # bytes of the rendered public records
    private: int  # bytes of the JSON lines of the records that did not pass
    counts: tuple[tuple[str, int], ...]
    cells: tuple[tuple[str, str, str, int], ...] = ()  # records per area, role and outcome


_KEYS: dict[str, str] = {}


def render(record: Mapping[str, object], *, public_only: bool = False) -> str:
    """One record exactly as ``json.dumps(results, indent=1)`` writes it inside the results array.

    Flat records of strings, integers and nulls are rendered directly, several times faster than the pure-Python
    indenting encoder; anything else goes through it. ``public_only``: as :func:`public` of the record.
    """
    parts = []
    for key, value in record.items():
        if public_only and key[:1] == "_":
            continue
        k = _KEYS.get(key)
        if k is None:
            k = _KEYS.setdefault(key, "   " + json.dumps(key, ensure_ascii=False) + ": ")
        if isinstance(value, str):
            parts.append(k + _encode_str(value))
        elif value is None:
            parts.append(k + "null")
        elif type(value) is int:
            parts.append(k + str(value))
        else:
            text = json.dumps(public(record) if public_only else record, indent=1, ensure_ascii=False)
            return "\n".join("  " + line for line in text.splitlines())
    return "  {\n" + ",\n".join(parts) + "\n  }" if parts else "  {}"


def rendered_records(records: Iterable[Mapping[str, object]]) -> str:
    """An item's records as the results JSON writes them, without their private keys."""
    return ",\n".join(render(r, public_only=True) for r in records)


def pack(props: list[tuple[str, object]], roles: Mapping[str, str]) -> list[tuple[str, object]]:
    """On an xdist worker: the item's records rendered once, as the results JSON writes them, and counted.

    Counted per outcome, and per area, role (``roles``) and outcome for the report's table. Only the records
    that did not pass stay as data (the report shows them); the passed ones travel to the controller inside one
    string. Sending each record as a dict cost both processes more than anything else per
    result (execnet serializes every key and value on its own), and the controller rendered them again.
    """
    records = records_of(props)
    if not records:
        return props
    counts = Counter(str(r["outcome"]) for r in records)
    kept = [(k, v) for k, v in props if k != USER_PROPERTY or not isinstance(v, dict) or v.get("outcome") != PASSED]
    cells = [[*cell, n] for cell, n in cells_of(records, roles).items()]
    return [*kept, (RENDERED_PROPERTY, rendered_records(records)), (COUNTS_PROPERTY, dict(counts)),
            (CELLS_PROPERTY, cells)]


def _record(line: bytes | str) -> Record:
    """A record read back from the spool (written by :meth:`Collector._put`)."""
    return cast(Record, json.loads(line))


def _synth(meta: CheckMeta, report: pytest.TestReport, outcome: Outcome) -> Record:
    """A record for an item that ended before judging its verdicts (an unreachable host, a skip)."""
    if report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2]).removeprefix("Skipped: ")
    else:
        message = _first_line(report)
    # Public keys in the order of format v1; no Checked/Expected: the check ended before saying what it checked.
    return Record(nodeid=report.nodeid, check=meta.get("check", ""), requirement=meta.get("requirement", ""),
                  section=meta.get("section", ""), source=meta.get("source"), target=meta.get("target"),
                  port=meta.get("port"), protocol=meta.get("protocol"), outcome=outcome, message=message,
                  severity=meta.get("severity", "required"), _fix=meta.get("fix", ""))


def _first_line(report: pytest.TestReport) -> str:
    text = report.longreprtext.strip()
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("E "):
            return line[1:].strip()
    return text.splitlines()[-1].strip() if text else ""


def summarize(records: Iterable[Mapping[str, object]]) -> dict[str, int]:
    """Counts of records per outcome (a :meth:`Collector.records` iteration: its counts, without reading)."""
    if isinstance(records, Records):
        return records.summary()
    summary: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
    for r in records:
        outcome = str(r["outcome"])
        summary[outcome] = summary.get(outcome, 0) + 1
    return summary


def public(record: Mapping[str, object]) -> dict[str, object]:
    """A record without the private keys the report uses."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


class ResultsWriter:
    """On the controller: collect verdict records from reports (workers' too) and write the results JSON."""

    def __init__(self, state: NovaSession) -> None:
        self.state = state
        state.collector.roles = roles_of(state.inventory)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Take the verdict records of one report; the report then keeps only those that did not pass."""
        self.state.collector.add(report)
        report.user_properties = compact(report.user_properties)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the results JSON, whatever the outcome (not for --collect-only: nothing was checked)."""
        state, inv = self.state, self.state.inventory
        if inv is None or state.settings.json_path is None or lists_only(session.config):
            return
        head = {
            "schema": SCHEMA,
            "cluster": inv.name,
            "inventory": {"path": str(inv.path), "sha256": inv.sha256},
            "catalog": state.catalog.version,
            "started": state.collector.started,
            "finished": now(),
        }
        extra: JSONObject = {}
        for fields in session.config.hook.pytest_nova_results_fields(session=state):
            extra.update({k: v for k, v in (fields or {}).items() if k not in V1_KEYS})
        try:
            state.collector.write(state.settings.json_path, head, extra)
        except OutputError as exc:
            # After the run: the verdict still prints; the gate must not pass without its JSON.
            sys.stderr.write(f"ERROR: --nova-json: {exc}\n")
            if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
                session.exitstatus = pytest.ExitCode.USAGE_ERROR
