"""YAML loading that remembers the line of every value, for error messages that name file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_nova.errors import SourceError

KeyPath = tuple[str | int, ...]


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
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

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


def _convert(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], doc: Path) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SourceError(
                    str(doc), key_node.start_mark.line + 1, format_path(path), "keys must be plain strings"
                )
            key = str(key_node.value)
            if key in result:
                raise SourceError(str(doc), key_node.start_mark.line + 1, format_path((*path, key)), "duplicate key")
            child = (*path, key)
            result[key] = _convert(value_node, child, lines, doc)
            lines[child] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, doc) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load(path: Path) -> Document:
    """Parse ``path``; a syntax error becomes a :class:`SourceError` naming its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(str(path), 0, "", f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SourceError(str(path), 0, "", "not UTF-8 text") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise SourceError(str(path), line, "", f"invalid YAML: {exc.problem or exc.context}") from None
    lines: dict[KeyPath, int] = {}
    if root is None:
        return Document(path, None, {(): 1})
    return Document(path, _convert(root, (), lines, path), lines)
