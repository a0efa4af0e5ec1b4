"""Errors in user-supplied files and options, reported in one line without a traceback."""

from __future__ import annotations


class SourceError(Exception):
    """A problem in a user file, located by file, line and key path."""

    def __init__(self, file: str, line: int, key: str, message: str) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        # Values quoted from the file may hold line breaks or control characters; the error stays one line.
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))
