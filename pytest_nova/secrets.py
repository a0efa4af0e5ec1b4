"""Secrets of a run, and masking them in everything the run writes or prints.

Secrets are registered when they are read: the password of ``network.httpProxy`` (or any ``${VAR}`` it uses),
the tokens, passwords and keys of the kubeconfig, the lines of the SSH private keys, and the values of the
environment variables named in ``NOVA_SECRETS`` (comma-separated), which is how a user marks more. Patterns
catch what was never registered: the password of any ``scheme://user:password@`` URL and PEM private keys.
:func:`mask` is applied to test reports (terminal, JUnit, HTML), log records and the results JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from html import escape
from pathlib import Path

import yaml

MASK = "***"
ENV = "NOVA_SECRETS"
MIN_LENGTH = 4  # shorter values would mask ordinary words and numbers

_secrets: set[str] = set()
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?!\$\{)(?P<password>[^/\s@]+)(?=@)")
_PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S)
_KUBE_SECRET_KEYS = ("token", "password", "client-key-data", "client-key")


def register(value: str | None) -> None:
    """Mask ``value`` (and its JSON- and HTML-escaped forms) from now on."""
    if not value or len(value) < MIN_LENGTH:
        return
    _secrets.add(value)
    for form in (json.dumps(value, ensure_ascii=False)[1:-1], escape(value)):
        if form != value:
            _secrets.add(form)


def registered() -> frozenset[str]:
    """The values being masked."""
    return frozenset(_secrets)


def clear() -> None:
    """Forget every registered value (between sessions in one process, as tests run them)."""
    _secrets.clear()


def mask_url(url: str) -> str:
    """``url`` with the password of its user info replaced by :data:`MASK`."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url)


def mask(text: str) -> str:
    """``text`` with every secret replaced by :data:`MASK`."""
    if not text:
        return text
    text = _PEM_KEY.sub(MASK, mask_url(text))
    # Longest first, so a secret that contains another is masked whole.
    for value in sorted(_secrets, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def mask_data(data: object) -> object:
    """A copy of plain data (dicts, lists, tuples, strings) with every string masked; other values as they are."""
    if isinstance(data, str):
        return mask(data)
    if isinstance(data, dict):
        return {mask_data(k): mask_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(mask_data(v) for v in data)
    return data


def register_environment(environ: dict[str, str] | None = None) -> None:
    """Register the values of the variables that ``NOVA_SECRETS`` names."""
    env = os.environ if environ is None else environ
    for name in env.get(ENV, "").split(","):
        register(env.get(name.strip()) if name.strip() else None)


def _read_small(path: Path, limit: int) -> bytes | None:
    """The first ``limit`` bytes of a regular file; None for anything else (a FIFO would block the run)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def register_key_file(path: Path) -> None:
    """Register each body line of a private key file, so a key printed anywhere is masked line by line."""
    raw = _read_small(path, 1 << 16)
    if raw is None:
        return
    for line in raw.decode("ascii", "replace").splitlines():
        line = line.strip()
        if len(line) >= 16 and not line.startswith("-----"):
            register(line)


def register_kubeconfig(path: Path) -> None:
    """Register the tokens, passwords and client keys of every user of a kubeconfig."""
    raw = _read_small(path, 1 << 20)
    try:
        data = yaml.safe_load(raw) if raw else None
    except (yaml.YAMLError, ValueError, RecursionError):
        return
    users = data.get("users") if isinstance(data, dict) else None
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        for key in _KUBE_SECRET_KEYS:
            value = user.get(key)
            if isinstance(value, str):
                register(value)


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
