"""Writing output files without clobbering what the user owns.

A regular file (or a missing one) is replaced atomically: written to a temporary file beside it, then renamed
over it, and the temporary file never outlives a failure. A symlink is followed and its target handled the
same way, so the link stays a link. A character device (``/dev/null``, a terminal) or a FIFO with a reader is
written through. A directory, a block device, a socket or a FIFO nobody reads is refused. Nothing is ever
replaced by a regular file unless it was one. :func:`check_writable` proves at start-up what :func:`write_text`
will need at the end of the run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _pytest_nova import secrets


class OutputError(Exception):
    """An output path that cannot be written; the message is one line."""


def _target(path: Path, shown: Path | None = None) -> tuple[Path, os.stat_result | None]:
    """The file a write to ``path`` lands on (symlinks followed) and its stat, or None when it does not exist."""
    real = Path(os.path.realpath(path))
    try:
        return real, os.stat(real)
    except FileNotFoundError:
        return real, None
    except OSError as exc:
        raise OutputError(f"cannot write {path if shown is None else shown}: {exc.strerror}") from None


def _refusal(path: Path, st: os.stat_result) -> str | None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return f"{path} is a directory; name a file in it"
    if stat.S_ISBLK(mode):
        return f"{path} is a block device; refusing to write over it, name a file"
    if stat.S_ISSOCK(mode):
        return f"{path} is a socket; name a file"
    return None


def _existing_dir(folder: Path) -> Path:
    """The nearest folder that exists, going up from ``folder``."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _probe_dir(folder: Path, name: str, shown: Path) -> None:
    """Create and remove a temporary file in ``folder``: root passes os.access() even on a read-only mount."""
    base = _existing_dir(folder)
    if not base.is_dir():
        raise OutputError(f"cannot write {shown}: {base} is not a directory")
    probe = base / f".{name}.{os.getpid()}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {base}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def _open_through(real: Path, shown: Path) -> int:
    """Open a device or FIFO for writing without blocking (a FIFO without a reader would wait forever)."""
    try:
        fd = os.open(real, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OutputError(f"cannot write {shown}: it is a FIFO nobody reads; start its reader first") from None
        raise OutputError(f"cannot write {shown}: {exc.strerror}") from None
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    return fd


def check_writable(path: Path, shown: Path | None = None) -> None:
    """Raise :class:`OutputError` unless :func:`write_text` can write ``path``; writes nothing there.

    ``shown`` is the path as the user named it, for the messages (default ``path``).
    """
    shown = path if shown is None else shown
    real, st = _target(path, shown)
    if st is None:
        _probe_dir(real.parent, real.name, shown)
        return
    refusal = _refusal(shown, st)
    if refusal:
        raise OutputError(refusal)
    if stat.S_ISREG(st.st_mode):
        _probe_dir(real.parent, real.name, shown)
    elif stat.S_ISFIFO(st.st_mode):
        # Opening the FIFO now would hand its reader an early end of file; a reader may also come later.
        if not os.access(real, os.W_OK):
            raise OutputError(f"cannot write {shown}: permission denied")
    else:
        os.close(_open_through(real, shown))


def write_text(path: Path, text: str) -> None:
    """Write ``text``, secrets masked, to ``path`` as the module docstring says; raises :class:`OutputError`."""
    with open_output(path) as out:
        out.write(text)


class Writer:
    """Where :func:`open_output` writes; every piece of text is masked before it leaves the process."""

    def __init__(self, fd: int, shown: Path) -> None:
        self._fd, self._shown = fd, shown

    def write(self, text: str) -> None:
        """Write one piece; a secret must lie within one piece (the callers write whole records)."""
        _write_all(self._fd, secrets.mask(text).encode("utf-8"), self._shown)

    def write_masked(self, data: bytes) -> None:
        """Write a piece made only of text that was masked already.

        The results JSON's records were masked as their reports arrived; masking 100 MB of them again against
        every secret cost seconds for nothing. ``data`` is UTF-8, as the spool holds it.
        """
        _write_all(self._fd, data, self._shown)


@contextmanager
def open_output(path: Path) -> Iterator[Writer]:
    """A :class:`Writer` for ``path``; raises :class:`OutputError`.

    A regular file appears whole at the end, or not at all; a device or a FIFO is written through.
    """
    real, st = _target(path)
    if st is not None:
        refusal = _refusal(path, st)
        if refusal:
            raise OutputError(refusal)
        if not stat.S_ISREG(st.st_mode):
            fd = _open_through(real, path)
            try:
                yield Writer(fd, path)
            finally:
                os.close(fd)
            return
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    tmp = real.with_name(f".{real.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if st is None else st.st_mode & 0o7777)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        try:
            if st is not None:
                os.fchmod(fd, st.st_mode & 0o7777)
            yield Writer(fd, path)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, real)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror}") from None
        raise


def _write_all(fd: int, data: bytes, shown: Path) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror}") from None
