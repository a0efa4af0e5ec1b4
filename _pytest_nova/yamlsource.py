"""The one YAML reader of every input file (inventory, waivers, catalog, kubeconfig), hardened against hostile input.

It remembers the line of every value, for error messages that name file and line. It reads at most
:data:`MAX_BYTES` of a regular file, or of a pipe within a deadline (never a device), refuses nesting deeper than
:data:`MAX_DEPTH` (also through aliases), aliases that contain themselves, documents of more than
:data:`MAX_VALUES` values (counted after expanding aliases), any tag but YAML's plain scalar, mapping and
sequence tags, tagged values that do not fit their tag, and YAML 1.1's octal, hexadecimal and base-60 numbers.
Every failure, whatever PyYAML raises, is a :class:`SourceError`: one line with file, line and key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from _pytest_nova.errors import SourceError, quote, shorten
from _pytest_nova.inputs import read_input

KeyPath = tuple[str | int, ...]
# What a document holds: the values of YAML's plain tags (a timestamp is a date or a datetime).
Scalar: TypeAlias = str | int | float | bool | date | datetime | None
YAMLValue: TypeAlias = Scalar | list["YAMLValue"] | dict[str, "YAMLValue"]

MAX_BYTES = 4 << 20  # the largest supported inventory (inventory.MAX_HOSTS) in block style is about 1 MiB
MAX_DEPTH = 64
MAX_VALUES = 100_000  # values after expanding aliases (stops "billion laughs"); 4,000 hosts need about 50,000
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9_]*)")

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_STD}{t}": t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_MAP, _SEQ, _MERGE = f"{_STD}map", f"{_STD}seq", f"{_STD}merge"


def format_path(path: KeyPath) -> str:
    """Render ``("nodes", 3, "roles")`` as ``nodes[3].roles``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass
class Document:
    """A parsed YAML document: plain Python data plus the line of each key path."""

    path: Path
    data: Any  # a YAMLValue; each loader checks its shape
    lines: dict[KeyPath, int] = field(default_factory=dict)
    sha256: str = ""

    def line(self, path: KeyPath) -> int:
        """Line of the value at ``path``, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def error(self, path: KeyPath, message: str) -> SourceError:
        """An error located at the value of ``path``."""
        return SourceError(str(self.path), self.line(path), format_path(path), message)


def tag_message(tag: str) -> str:
    """What is wrong with an unsupported tag, and what to write instead."""
    if tag == "!vault":
        return (
            "unknown tag '!vault': the file must not be Ansible-vault encrypted; write the value in clear, or for "
            "a proxy password write httpProxy: http://user:${NOVA_PROXY_PASSWORD}@host:port and export "
            "NOVA_PROXY_PASSWORD"
        )
    shown = shorten(tag.replace(_STD, "!!"))
    return f"unknown tag '{shown}' (only plain YAML values are read); remove the tag"


class _Converter:
    """Turns a composed node tree into plain data, with a budget on the values that aliases expand to."""

    def __init__(self, doc: Path) -> None:
        self.doc = doc
        self.lines: dict[KeyPath, int] = {}
        self.budget = MAX_VALUES
        self.done: set[int] = set()  # nodes converted once: meeting one again is an alias
        self.open: set[int] = set()  # collections being converted: meeting one of them again is a cycle
        self.aliased = False
        # One constructor for the document: it also remembers each scalar node, which aliases repeat.
        self.loader = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, path: KeyPath, message: str) -> SourceError:
        return SourceError(str(self.doc), node.start_mark.line + 1, format_path(path), message)

    def convert(self, node: yaml.Node, path: KeyPath) -> YAMLValue:
        self.budget -= 1
        key = id(node)
        if key in self.done:
            self.aliased = True
        self.done.add(key)
        if self.budget < 0:
            # Named at the top-level key being expanded: an alias's own mark is where its anchor was defined.
            top = path[:1]
            what = (f"the document expands to more than {MAX_VALUES} values through aliases; write the values out "
                    "instead of nesting aliases" if self.aliased else
                    f"holds more than {MAX_VALUES} values, the reader's limit of values in a file; is this the right "
                    "file?")
            raise SourceError(str(self.doc), self.lines.get(top, 1), format_path(top), what)
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if key in self.open:
            raise self.fail(node, path, "an alias refers to a collection it is part of (a cycle); write the values out")
        if len(path) >= MAX_DEPTH:  # the text's nesting is checked before composing; this is through aliases
            raise self.fail(node, path, f"nested deeper than {MAX_DEPTH} levels through aliases; write the values out")
        self.open.add(key)
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            if node.tag != _SEQ:
                raise self.fail(node, path, tag_message(node.tag))
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(key)

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, YAMLValue]:
        if node.tag != _MAP:
            raise self.fail(node, path, tag_message(node.tag))
        result: dict[str, YAMLValue] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                raise self.fail(key_node, path, "merge keys (<<) are not supported; write the keys out")
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, path, "keys must be plain strings; write key: value")
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                raise self.fail(key_node, child, "duplicate key; keep only one of them")
            result[key] = self.convert(value_node, child)
            self.lines[child] = key_node.start_mark.line + 1
        return result

    def scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Scalar:
        kind = _SCALAR_TAGS.get(node.tag)
        if kind is None:
            raise self.fail(node, path, tag_message(node.tag))
        text = str(node.value)
        try:
            value: Scalar = self.loader.construct_object(node, deep=True)
        except Exception as exc:  # PyYAML's constructors raise anything on a bad value
            if kind == "timestamp":
                why = f" ({shorten(str(exc))})" if isinstance(exc, ValueError) and "match" not in str(exc) else ""
                what = f"{quote(text)} is not a valid date{why}; write a real date as YYYY-MM-DD"
            else:
                what = f"{quote(text)} is not a valid {kind}; write a plain {kind} or drop the tag"
            raise self.fail(node, path, what) from None
        if (kind == "int" and not _DECIMAL.fullmatch(text.strip())) or (kind == "float" and ":" in text):
            raise self.fail(node, path, _not_decimal(text, value))
        return value


def _not_decimal(text: str, value: Scalar) -> str:
    """YAML 1.1 reads ``022`` as 18 and ``1:10`` as 70: refused rather than taken for what nobody meant."""
    plain = text.strip().lstrip("+-").replace("_", "")
    how = ("base-60" if ":" in plain else "hexadecimal" if plain[:2].lower() == "0x" else
           "binary" if plain[:2].lower() == "0b" else "octal")
    return (f"{quote(text)} is a YAML 1.1 {how} number (read as {value!r}); write it in decimal digits without "
            f"leading zeros, or quote it ('{shorten(text)}') if it is text")


def _read(path: Path, limit: int) -> bytes:
    data = read_input(path, limit)
    if len(data) > limit:
        raise SourceError(str(path), 0, "", f"larger than {limit // 1024} KiB, the reader's limit of a file's size; "
                          "is this the right file?")
    return data


def _mark_line(exc: yaml.YAMLError, text: str) -> int:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return mark.line + 1 if mark else 0
    position = getattr(exc, "position", None)
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 0


def _check_shape(path: Path, text: str) -> None:
    """Walk the event stream (the parser is not recursive) to refuse deep nesting and too many values early."""
    depth = values = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.NodeEvent) and not isinstance(event, yaml.AliasEvent):
            values += 1
            if values > MAX_VALUES:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise SourceError(str(path), line, "", f"holds more than {MAX_VALUES} values, the reader's limit of "
                                  "values in a file; is this the right file?")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise SourceError(str(path), line, "", f"nested deeper than {MAX_DEPTH} levels; flatten the file")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(path: Path, root: yaml.Node) -> None:
    """Refuse a document whose aliases expand beyond :data:`MAX_VALUES`, in time linear in the file.

    Each node's expanded size is computed once (aliases share nodes), so an alias bomb is refused before it
    is expanded; a cycle counts nothing here and is named by the converter.
    """
    size: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size or (not children_done and key in visiting):
            continue
        if isinstance(node, yaml.ScalarNode):
            size[key] = 1
            continue
        values = [v for _, v in node.value] if isinstance(node, yaml.MappingNode) else list(node.value)
        if children_done:
            size[key] = min(MAX_VALUES + 1, 1 + sum(size.get(id(v), 0) for v in values))
            visiting.discard(key)
        else:
            visiting.add(key)
            stack.append((node, True))
            stack.extend((v, False) for v in values)
    if size[id(root)] <= MAX_VALUES:
        return
    # Named at the top-level key whose value crosses the limit, as the converter would.
    total, where, key_path = 1, root, ""
    for key_node, value in root.value if isinstance(root, yaml.MappingNode) else []:
        total += size.get(id(value), 0)
        if total > MAX_VALUES:
            where, key_path = value, str(key_node.value)
            break
    raise SourceError(str(path), where.start_mark.line + 1, key_path,
                      f"the document expands to more than {MAX_VALUES} values through aliases; write the values out "
                      "instead of nesting aliases")


def parse_text(path: Path, raw: bytes) -> Document:
    """Parse the bytes of ``path``; every problem becomes a :class:`SourceError` naming its line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SourceError(str(path), line, "", "not UTF-8 text; save the file as UTF-8") from None
    try:
        _check_shape(path, text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
        message = f"invalid YAML: {shorten(str(problem))}; fix the syntax here"
        raise SourceError(str(path), _mark_line(exc, text), "", message) from None
    except RecursionError:  # guarded by _check_shape; kept so no input can end in a traceback
        raise SourceError(str(path), 0, "", f"nested deeper than {MAX_DEPTH} levels; flatten the file") from None
    except SourceError:
        raise
    except Exception as exc:  # whatever else PyYAML raises is still one line
        raise SourceError(str(path), 0, "", f"unreadable YAML ({type(exc).__name__}); fix the file") from None
    digest = hashlib.sha256(raw).hexdigest()
    if root is None:
        return Document(path, None, {(): 1}, digest)
    _check_expansion(path, root)
    conv = _Converter(path)
    try:
        data = conv.convert(root, ())
    except RecursionError:  # bounded by MAX_DEPTH; kept so no input can end in a traceback
        raise SourceError(str(path), 0, "", f"nested deeper than {MAX_DEPTH} levels; flatten the file") from None
    finally:
        conv.loader.dispose()
    return Document(path, data, conv.lines, digest)


def load(path: Path, max_bytes: int = MAX_BYTES) -> Document:
    """Read and parse ``path``; a problem becomes a :class:`SourceError` naming its line."""
    return parse_text(path, _read(path, max_bytes))
