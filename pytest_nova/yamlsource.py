"""The one YAML reader of every input file (inventory, waivers, catalog), hardened against hostile input.

It remembers the line of every value, for error messages that name file and line. It reads at most
:data:`MAX_BYTES` of a regular file or pipe (never a device), refuses nesting deeper than :data:`MAX_DEPTH`,
documents whose aliases expand beyond :data:`MAX_VALUES` values, and any tag but YAML's plain scalar,
mapping and sequence tags. Every failure is a :class:`SourceError`: one line with file, line and key.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from pytest_nova.errors import SourceError

KeyPath = tuple[str | int, ...]
# What a document holds: the values of YAML's plain tags (a timestamp is a date or a datetime).
Scalar: TypeAlias = str | int | float | bool | date | datetime | None
YAMLValue: TypeAlias = Scalar | list["YAMLValue"] | dict[str, "YAMLValue"]

MAX_BYTES = 1 << 20  # an inventory of 1000 nodes is about 100 KiB
MAX_DEPTH = 64
MAX_VALUES = 100_000  # values after expanding aliases: stops "billion laughs" documents

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
    shown = tag.replace(_STD, "!!")
    return f"unknown tag '{shown}' (only plain YAML values are read); remove the tag"


class _Converter:
    """Turns a composed node tree into plain data, with a budget on the values that aliases expand to."""

    def __init__(self, doc: Path) -> None:
        self.doc = doc
        self.lines: dict[KeyPath, int] = {}
        self.budget = MAX_VALUES

    def fail(self, node: yaml.Node, path: KeyPath, message: str) -> SourceError:
        return SourceError(str(self.doc), node.start_mark.line + 1, format_path(path), message)

    def convert(self, node: yaml.Node, path: KeyPath) -> YAMLValue:
        self.budget -= 1
        if self.budget < 0:
            # Named at the top-level key being expanded: an alias's own mark is where its anchor was defined.
            top = path[:1]
            raise SourceError(
                str(self.doc), self.lines.get(top, 1), format_path(top),
                f"the document expands to more than {MAX_VALUES} values through aliases; "
                "write the values out instead of nesting aliases",
            )
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise self.fail(node, path, tag_message(node.tag))
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node, path)

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
        loader = yaml.SafeLoader("")
        try:
            value: Scalar = loader.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError, yaml.YAMLError) as exc:
            if kind == "timestamp":
                what = f"'{node.value}' is not a valid date ({exc}); write a real date as YYYY-MM-DD"
            else:
                what = f"'{node.value[:40]}' is not a valid {kind}; write a plain {kind} or drop the tag"
            raise self.fail(node, path, what) from None
        finally:
            loader.dispose()
        return value


def _read(path: Path) -> bytes:
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise SourceError(str(path), 0, "", "is a directory; name a YAML file")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise SourceError(str(path), 0, "", "is a device, not a file; name a YAML file")
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SourceError(str(path), 0, "", f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise SourceError(str(path), 0, "", f"larger than {MAX_BYTES // 1024} KiB; is this the right file?")
    return data


def _mark_line(exc: yaml.YAMLError, text: str) -> int:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return mark.line + 1 if mark else 0
    position = getattr(exc, "position", None)
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 0


def _check_shape(path: Path, text: str) -> None:
    """Walk the event stream (the parser is not recursive) to refuse deep nesting before composing."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise SourceError(str(path), line, "", f"nested deeper than {MAX_DEPTH} levels; flatten the file")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


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
        message = f"invalid YAML: {problem}; fix the syntax here"
        raise SourceError(str(path), _mark_line(exc, text), "", message) from None
    except RecursionError:  # guarded by _check_shape; kept so no input can end in a traceback
        raise SourceError(str(path), 0, "", f"nested deeper than {MAX_DEPTH} levels; flatten the file") from None
    digest = hashlib.sha256(raw).hexdigest()
    if root is None:
        return Document(path, None, {(): 1}, digest)
    conv = _Converter(path)
    return Document(path, conv.convert(root, ()), conv.lines, digest)


def load(path: Path) -> Document:
    """Read and parse ``path``; a problem becomes a :class:`SourceError` naming its line."""
    return parse_text(path, _read(path))
