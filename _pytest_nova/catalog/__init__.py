"""The requirements catalog: every machine-checkable row of the installation docs, as data.

Each ``*.yaml`` file beside this module holds the requirements of one area. The schema is checked on load,
so a broken catalog fails loudly with file, line and key, like a broken inventory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from _pytest_nova.areas import AREAS as AREAS
from _pytest_nova.areas import BUILTIN_AREAS, AreaSpec
from _pytest_nova.errors import quote
from _pytest_nova.model import Phase
from _pytest_nova.yamlsource import Document, KeyPath, load

_BUILTIN = {a.name: a for a in BUILTIN_AREAS}
PHASES = tuple(Phase)
PROTOCOLS = ("tcp", "udp", "icmp", "ipip")
# required: the Nova docs demand it (a failure blocks acceptance); advisory: good practice (the Kubernetes guide,
# kubeadm preflight, a docs recommendation) that the Nova docs do not demand (a failure is a warning unless strict).
SEVERITIES = ("required", "advisory")
# Who a firewall rule applies to, in the words of the docs' tables; ``proxy`` is the host of network.httpProxy
# (not an inventory host; a rule to it takes the proxy's port and applies only when the inventory sets one).
SELECTORS = ("nova-ctl", "masters", "infra", "ingress", "workers", "nodes", "workstations", "proxy")
MODES = ("internet", "closed")

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Row:
    """One row (or list item) of the source document, kept verbatim for traceability."""

    section: str
    text: str


@dataclass(frozen=True)
class Requirement:
    """One checkable requirement of the docs.

    Common fields say where it comes from and how to fix it; the optional fields hold what the area needs
    (``record`` for dns, ``host``/``port`` for external, ``sources``/``targets``/``port``/``protocol`` for
    firewall, ``balancer``/``backends``/``path`` for lb, ``check``/``params`` for os and k8s).
    """

    id: str
    area: str
    section: str
    phase: str  # the first of ``phases``
    summary: str
    fix: str
    rows: tuple[Row, ...]
    severity: str = "required"
    basis: str = ""  # why this severity: the docs' wording it rests on
    note: str | None = None
    # dns
    record: str | None = None
    module: str | None = None
    # external
    mode: str | None = None
    host: str | None = None
    ips: tuple[str, ...] = ()
    # firewall
    sources: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    bidirectional: bool = False  # the docs' "Двунаправленный": also probed from each target to each source
    port: int | None = None
    protocol: str | None = None
    description: str | None = None
    # lb
    balancer: str | None = None
    backends: str | None = None
    scheme: str | None = None
    path: str | None = None
    condition: str | None = None
    internal: bool = False  # 3.2 "Внутренний доступ": reached from the cluster nodes
    external: bool = False  # 3.2 "Внешний доступ": reached from the workstations
    # os, k8s, inventory (and external entries judged per host)
    check: str | None = None
    scope: str | None = None
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # Every phase it is checked in (the catalog's ``phase``: one phase or a list); by default (phase,).
    phases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.phases:
            object.__setattr__(self, "phases", (self.phase,))

    @property
    def text(self) -> str:
        """The original wording, all rows joined."""
        return "\n".join(r.text for r in self.rows)


@dataclass(frozen=True)
class Catalog:
    """All requirements, in file order, with the docs version they were derived from."""

    version: str
    requirements: tuple[Requirement, ...]

    def by_area(self, area: str) -> tuple[Requirement, ...]:
        """Requirements of one area, in catalog order."""
        return tuple(r for r in self.requirements if r.area == area)

    @cached_property
    def advisory(self) -> frozenset[str]:
        """Ids of the advisory requirements: a failure of theirs is a warning unless the run is strict."""
        return frozenset(r.id for r in self.requirements if r.severity == "advisory")

    def get(self, req_id: str) -> Requirement:
        """The requirement with id ``req_id``."""
        for r in self.requirements:
            if r.id == req_id:
                return r
        raise KeyError(req_id)


_COMMON = {"id": True, "section": True, "phase": True, "severity": True, "basis": True, "summary": True, "fix": True,
           "rows": True, "note": False}
# Keys whose values a Requirement takes as they are written (every area may declare them).
PLAIN_KEYS = ("record", "module", "host", "port", "balancer", "backends", "scheme", "path", "condition", "check",
              "description")
# Keys an area may declare: a Requirement field, not one of the common keys every entry has.
AREA_KEYS = frozenset(f.name for f in fields(Requirement)) - set(_COMMON) - {"area", "rows", "phases"}
# hosts: nova-ctl and every cluster node; runner: judged on the machine that runs pytest (inventory values).
_SCOPES = ("nodes", "nova-ctl", "hosts", "cluster", "runner")


def _fail(doc: Document, path: KeyPath, msg: str) -> Exception:
    return doc.error(path, msg)


def _entry(doc: Document, area: AreaSpec, i: int, raw: Any) -> Requirement:
    path: KeyPath = ("requirements", i)
    allowed = [*_COMMON, *area.keys]
    required = {k for k, need in _COMMON.items() if need} | area.required
    if not isinstance(raw, dict):
        raise _fail(doc, path, "expected a mapping")
    for key in raw:
        if key not in allowed:
            raise _fail(doc, (*path, key), f"unknown key (expected one of: {', '.join(allowed)})")
    for key in allowed:
        if key in required and raw.get(key) is None:
            raise _fail(doc, path, f"missing required key '{key}'")

    def choice(key: str, options: tuple[str, ...]) -> str:
        value = raw[key]
        if value not in options:
            raise _fail(doc, (*path, key), f"{quote(value)} is not one of {', '.join(options)}")
        return str(value)

    def flag(key: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise _fail(doc, (*path, key), f"{quote(value)} is not true or false")
        return value

    def many(key: str, options: tuple[str, ...]) -> tuple[str, ...]:
        value = raw.get(key) or []
        if not isinstance(value, list):
            raise _fail(doc, (*path, key), f"expected a list of: {', '.join(options)}")
        for j, v in enumerate(value):
            if v not in options:
                raise _fail(doc, (*path, key, j), f"{quote(v)} is not one of {', '.join(options)}")
        return tuple(value)

    if not isinstance(raw["rows"], list) or not raw["rows"]:
        raise _fail(doc, (*path, "rows"), "list at least one row of the source document")
    rows = []
    for j, row in enumerate(raw["rows"]):
        if not isinstance(row, dict) or set(row) != {"section", "text"}:
            raise _fail(doc, (*path, "rows", j), "a row is {section: ..., text: ...}")
        rows.append(Row(str(row["section"]), str(row["text"])))
    # Every key an area declares is read into its Requirement field with that field's type, for any area: a
    # site area's ``sources`` or ``protocol`` reaches its kind's expansion like the firewall's.
    kwargs: dict[str, Any] = {}
    for key in ("sources", "targets"):
        if key in raw:
            kwargs[key] = many(key, SELECTORS)
    for key in ("bidirectional", "internal", "external"):
        if key in raw:
            kwargs[key] = flag(key)
    if "protocol" in raw:
        kwargs["protocol"] = choice("protocol", PROTOCOLS)
    if "mode" in raw:
        kwargs["mode"] = choice("mode", MODES)
    if "ips" in raw:
        ips = raw["ips"]
        if not isinstance(ips, list) or not all(isinstance(v, str) for v in ips):
            raise _fail(doc, (*path, "ips"), "expected a list of addresses or networks")
        kwargs["ips"] = tuple(ips)
    if "port" in raw and (not isinstance(raw["port"], int) or isinstance(raw["port"], bool)):
        raise _fail(doc, (*path, "port"), f"{quote(raw['port'])} is not a port number")
    if "scope" in raw:
        kwargs["scope"] = choice("scope", _SCOPES)
    if "check" in raw or "params" in raw:
        if not isinstance(raw.get("params") or {}, dict):
            raise _fail(doc, (*path, "params"), "expected a mapping")
        # An entry without a scope key (inventory values, most site requirements) is judged on the runner.
        kwargs.setdefault("scope", "runner")
        kwargs["params"] = dict(raw.get("params") or {})
    if area.name == "firewall":
        to_proxy = kwargs["targets"] == ("proxy",)
        if "proxy" in kwargs["sources"] or ("proxy" in kwargs["targets"] and not to_proxy):
            raise _fail(doc, (*path, "targets"), "proxy is only a rule's sole target")
        if to_proxy and (kwargs["protocol"] != "tcp" or kwargs.get("bidirectional") or "port" in raw):
            raise _fail(doc, path, "a rule to the proxy is one-way tcp without a port (it takes network.httpProxy's)")
        if kwargs["protocol"] in ("tcp", "udp") and not to_proxy and not isinstance(raw.get("port"), int):
            raise _fail(doc, path, "tcp and udp rules need a port")
    if area.name == "external":
        if "check" in raw and "scope" not in raw:
            raise _fail(doc, path, "an external entry with a check needs a scope")
        if "check" not in raw and ("host" not in raw or "port" not in raw):
            raise _fail(doc, path, "an endpoint needs a host and a port")
    for key in PLAIN_KEYS:
        if key in raw and key not in kwargs:
            if isinstance(raw[key], dict | list):
                raise _fail(doc, (*path, key), "expected a single value, not a list or mapping")
            kwargs[key] = raw[key] if key == "port" or raw[key] is None else str(raw[key])
    phases = _phases(doc, (*path, "phase"), raw["phase"])
    return Requirement(
        id=str(raw["id"]), area=area.name, section=str(raw["section"]), phase=phases[0], phases=phases,
        summary=str(raw["summary"]).strip(), fix=str(raw["fix"]).strip(), rows=tuple(rows),
        severity=choice("severity", SEVERITIES), basis=str(raw["basis"]).strip(), note=raw.get("note"), **kwargs,
    )


def _phases(doc: Document, path: KeyPath, value: object) -> tuple[str, ...]:
    """An entry's ``phase``: one phase, or a list of them (checked before and after installation)."""
    values = value if isinstance(value, list) else [value]
    if not values or len(set(map(str, values))) != len(values) or any(v not in PHASES for v in values):
        raise _fail(doc, path, f"{quote(value)} is not one of {', '.join(PHASES)} or a list of them (each once)")
    return tuple(str(v) for v in values)


def parse_file(path: Path, areas: Mapping[str, AreaSpec] = _BUILTIN) -> tuple[str, list[Requirement]]:
    """Parse one catalog file into its version string and requirements."""
    doc = load(path)
    data = doc.data
    if not isinstance(data, dict) or set(data) - {"area", "version", "requirements"}:
        raise _fail(doc, (), "a catalog file has the keys area, version and requirements")
    area = data.get("area")
    if area not in areas:
        raise _fail(doc, ("area",), f"unknown area {quote(area)} (expected one of: {', '.join(areas)})")
    reqs = [_entry(doc, areas[str(area)], i, raw) for i, raw in enumerate(data.get("requirements") or [])]
    return str(data.get("version")), reqs


def load_catalog(folder: Path = _HERE, *, extra: Sequence[Path] = (),
                 areas: Mapping[str, AreaSpec] | None = None) -> Catalog:
    """Load every catalog file of ``folder`` (by default the packaged catalog), then of each ``extra`` folder.

    ``extra`` folders hold site requirements (:func:`pytest_nova.hookspecs.pytest_nova_catalog_dirs`), validated
    the same way against ``areas`` (by default the built-in ones); their ids must not repeat any other's, and
    the catalog's version stays that of ``folder``.
    """
    areas = _BUILTIN if areas is None else areas
    if not extra and areas.keys() == _BUILTIN.keys():  # the packaged catalog alone: read once per process
        return _load_cached(folder.resolve())
    return _load((folder.resolve(), *(f.resolve() for f in extra)), areas)


@cache
def _load_cached(folder: Path) -> Catalog:
    return _load((folder,), _BUILTIN)


def _load(folders: Sequence[Path], areas: Mapping[str, AreaSpec]) -> Catalog:
    versions: set[str] = set()
    reqs: list[Requirement] = []
    seen: dict[str, str] = {}
    for n, folder in enumerate(folders):
        if n and not folder.is_dir():
            raise ValueError(f"catalog folder {folder} does not exist")
        for file in sorted(folder.glob("*.yaml")):
            version, entries = parse_file(file, areas)
            if n == 0:
                versions.add(version)
            for r in entries:
                if r.id in seen:
                    raise load(file).error((), f"duplicate requirement id {r.id!r} (also in {seen[r.id]})")
                seen[r.id] = str(file) if n else file.name
                reqs.append(r)
    if len(versions) > 1:
        raise ValueError(f"catalog files disagree on the docs version: {sorted(versions)}")
    return Catalog(versions.pop() if versions else "unknown", tuple(reqs))
