"""Errors in user-supplied files and options, reported in one line without a traceback."""

from __future__ import annotations

QUOTE_LIMIT = 80  # characters of a value an error line quotes: enough to recognise it, never a whole file
LINE_LIMIT = 1000  # a last bound on one error line, whatever it quotes


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, marked with "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quote(value: object) -> str:
    """A value for an error line: a string in single quotes, anything else as Python shows it, both shortened."""
    return f"'{shorten(value)}'" if isinstance(value, str) else shorten(repr(value))


class SourceError(Exception):
    """A problem in a user file, located by file, line and key path."""

    def __init__(self, file: str, line: int, key: str, message: str) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        key = shorten(key)
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        # Values quoted from the file may hold line breaks or control characters; the error stays one line.
        super().__init__(shorten("".join(c if c.isprintable() else repr(c)[1:-1] for c in text), LINE_LIMIT))
