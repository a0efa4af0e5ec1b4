"""Secrets of a run, and masking them in everything the run writes or prints.

Secrets are registered when they are read: the password of ``network.httpProxy`` (or any ``${VAR}`` it uses),
the tokens, passwords and keys of the kubeconfig, the lines of the SSH private keys, and the values of the
environment variables named in ``NOVA_SECRETS`` (comma-separated), which is how a user marks more. Patterns
catch what was never registered: the password of any ``scheme://user:password@`` URL and PEM private keys.
:func:`mask` is applied to test reports (terminal, JUnit, HTML), log records and the results JSON.

A secret is masked in every form output gives it: as it is, JSON-, HTML-, URL- and Python-escaped (``repr``).
A secret of fewer than :data:`MIN_LENGTH` characters is masked only where it stands alone (no letter or digit
on either side): masking it inside words would garble every line, and so hide nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from html import escape
from pathlib import Path
from urllib.parse import quote

from _pytest_nova.errors import SourceError
from _pytest_nova.inputs import KUBECONFIG_BYTES, read_small
from _pytest_nova.yamlsource import load

MASK = "***"
ENV = "NOVA_SECRETS"
MIN_LENGTH = 4  # shorter values are masked only where they stand alone

_secrets: set[str] = set()
_short: set[str] = set()
_short_pattern: list[re.Pattern[str] | None] = [None]  # compiled on first use after a change
_sorted: list[list[str] | None] = [None]  # _secrets longest first, made on first use after a change
# The password runs to the last "@" before the end of the host part: an unencoded "@" in it is masked too.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?!\$\{)(?P<password>[^/\s]+)(?=@[^@/\s]*(?:[/\s]|$))"
)
_KUBE_LINE = re.compile(rb"^[\s-]*(token|password|client-key-data)\s*:\s*(.+?)\s*$")
_PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S)
_KUBE_SECRET_KEYS = ("token", "password", "client-key-data", "client-key")


def forms(value: str) -> set[str]:
    """``value`` as output may show it: as is, JSON-, HTML-, URL- and Python-escaped, and JSON inside HTML."""
    as_json, as_ascii_json = json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]
    return {value, as_json, as_ascii_json, escape(value), escape(value, quote=False), escape(as_json),
            escape(as_ascii_json), repr(value)[1:-1], ascii(value)[1:-1], quote(value, safe="")}


def register(value: str | None) -> None:
    """Mask ``value`` in all its :func:`forms` from now on; a short one only where it stands alone."""
    if not value:
        return
    for form in forms(value):
        if len(form) >= MIN_LENGTH:
            _secrets.add(form)
            _sorted[0] = None
        else:
            _short.add(form)
            _short_pattern[0] = None


def restore(values: frozenset[str]) -> None:
    """Mask what another process registered (its :func:`registered` values, every form already there)."""
    for value in values:
        (_secrets if len(value) >= MIN_LENGTH else _short).add(value)
    _sorted[0] = None
    _short_pattern[0] = None


def registered() -> frozenset[str]:
    """The values being masked."""
    return frozenset(_secrets | _short)


def clear() -> None:
    """Forget every registered value (between sessions in one process, as tests run them)."""
    _secrets.clear()
    _sorted[0] = None
    _short.clear()
    _short_pattern[0] = None


def _short_re() -> re.Pattern[str] | None:
    if _short and _short_pattern[0] is None:
        alternatives = "|".join(re.escape(v) for v in sorted(_short, key=len, reverse=True))
        _short_pattern[0] = re.compile(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")
    return _short_pattern[0]


def mask_url(url: str) -> str:
    """``url`` with the password of its user info replaced by :data:`MASK`."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url)


def mask(text: str) -> str:
    """``text`` with every secret replaced by :data:`MASK`."""
    if type(text) is not str:
        text = str(text)  # a str subclass (an enum) comes back a plain str, as it did from the substitutions
    if not text:
        return text
    # The patterns need these words: a substring test skips their regular expressions for almost every text
    # (a run masks millions of strings: every record's fields, every piece of the results JSON).
    if "://" in text:
        text = mask_url(text)
    if "PRIVATE KEY-----" in text:
        text = _PEM_KEY.sub(MASK, text)
    # Longest first, so a secret that contains another is masked whole.
    for value in _by_length():
        if value in text:
            text = text.replace(value, MASK)
    short = _short_re()
    return short.sub(MASK, text) if short is not None else text


def _by_length() -> list[str]:
    """The registered values, longest first (sorted again only after a change)."""
    found = _sorted[0]
    if found is None:
        found = _sorted[0] = sorted(_secrets, key=len, reverse=True)
    return found


def mask_data(data: object) -> object:
    """Plain data (dicts, lists, tuples, strings) with every string masked; other values as they are.

    A copy where something was masked; ``data`` itself when nothing needed it, which one look at all its strings
    at once tells (a record's dozen fields are checked against every secret once, not once per field).
    """
    if isinstance(data, str):
        return mask(data)
    strings: list[str] = []
    _strings(data, strings)
    joined = "\0".join(strings)  # no secret holds a NUL, so none is found across two strings
    # Only plain strings may stay: a str subclass (an Outcome) becomes a str, as pickling-free transports need.
    if all(type(s) is str for s in strings) and mask(joined) == joined:
        return data
    return _mask_each(data)


def _strings(data: object, out: list[str]) -> None:
    if isinstance(data, str):
        out.append(data)
    elif isinstance(data, dict):
        for k, v in data.items():
            _strings(k, out)
            _strings(v, out)
    elif isinstance(data, list | tuple):
        for v in data:
            _strings(v, out)


def _mask_each(data: object) -> object:
    if isinstance(data, str):
        return mask(data)
    if isinstance(data, dict):
        return {_mask_each(k): _mask_each(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(_mask_each(v) for v in data)
    return data


def register_environment(environ: dict[str, str] | None = None) -> None:
    """Register the values of the variables that ``NOVA_SECRETS`` names."""
    env = os.environ if environ is None else environ
    for name in env.get(ENV, "").split(","):
        register(env.get(name.strip()) if name.strip() else None)


def register_key_file(path: Path) -> None:
    """Register each body line of a private key file, so a key printed anywhere is masked line by line."""
    raw = read_small(path, 1 << 16)
    if raw is None:
        return
    for line in raw.decode("ascii", "replace").splitlines():
        line = line.strip()
        if len(line) >= 16 and not line.startswith("-----"):
            register(line)


def register_kubeconfig(path: Path) -> None:
    """Register the tokens, passwords and client keys of every user of a kubeconfig, whatever its size.

    The document is read by the one YAML reader; every ``token:``, ``password:`` and ``client-key-data:`` line
    is registered too, so a kubeconfig the reader refuses (too large, a tag, broken) still has its secrets
    masked. Nothing here raises: a kubeconfig that cannot be read matters only to the post-install checks.
    """
    try:
        # A regular file only: a FIFO would cost the reader's deadline for a file that matters only later.
        data = load(path, KUBECONFIG_BYTES).data if stat.S_ISREG(os.stat(path).st_mode) else None
    except (OSError, SourceError):
        data = None
    users = data.get("users") if isinstance(data, dict) else None
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        for key in _KUBE_SECRET_KEYS:
            value = user.get(key)
            if isinstance(value, str):
                register(value)
    _register_kube_lines(path)


def _register_kube_lines(path: Path) -> None:
    """Register the value of every secret-looking line of a regular file, read line by line (any size)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return
        with open(path, "rb") as f:
            for line in f:
                m = _KUBE_LINE.match(line)
                if m:  # the value, without a tag (!!str x) or quotes
                    register(re.sub(r"^!\S*\s+", "", m.group(2).decode("utf-8", "replace")).strip("'\""))
    except OSError:
        return


class _MaskingFilter(logging.Filter):
    """Masks a record's message before any handler (pytest's log capture, live logging, files) formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets or "://" in str(record.msg):
            record.msg, record.args = mask(record.getMessage()), None
        return True


_FILTER = _MaskingFilter()


def install_log_filter() -> None:
    """Mask every log record as it is created (a record factory), so every handler sees it masked."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_nova_masking", False):
        return

    def masked(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _FILTER.filter(record)
        return record

    masked._nova_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked)
