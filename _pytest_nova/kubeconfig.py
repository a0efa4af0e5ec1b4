"""The kubeconfig nova-ctl uses: where it is, its API server and its CA (read, never copied or printed)."""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from _pytest_nova.errors import SourceError
from _pytest_nova.inputs import KUBECONFIG_BYTES, read_small
from _pytest_nova.inventory import Inventory
from _pytest_nova.yamlsource import load

DEFAULT_KUBECONFIG = "~/.kube/config"


def kubeconfig_path(inv: Inventory, environ: dict[str, str] | None = None) -> Path:
    """The kubeconfig to use: the inventory's ``kubeconfig:``, else the first of $KUBECONFIG, else ~/.kube/config."""
    env = os.environ if environ is None else environ
    if inv.kubeconfig:
        return inv.resolve_file(inv.kubeconfig)
    paths = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    existing = [p for p in paths if Path(p).expanduser().is_file()]
    return Path((existing or paths or [DEFAULT_KUBECONFIG])[0]).expanduser()


def _entries(cfg: dict[str, object], key: str, inner: str) -> dict[object, object]:
    listed = cfg.get(key)
    return {c.get("name"): c.get(inner) for c in listed if isinstance(c, dict)} if isinstance(listed, list) else {}


def _current_cluster(cfg: object) -> dict[str, object]:
    """The ``cluster`` mapping of the current context (else of the first cluster); any YAML is accepted."""
    if not isinstance(cfg, dict):
        return {}
    clusters = _entries(cfg, "clusters", "cluster")
    context = _entries(cfg, "contexts", "context").get(cfg.get("current-context"))
    name = context.get("cluster") if isinstance(context, dict) else None
    found = clusters.get(name) if isinstance(name, str) else None
    found = found or next(iter(clusters.values()), {})
    return found if isinstance(found, dict) else {}


def _load(path: Path) -> object:
    """The kubeconfig's data; a regular file only (kubectl's own reading of a FIFO would block)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise SourceError(str(path), 0, "", f"cannot read file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise SourceError(str(path), 0, "", "is not a regular file; name the kubeconfig file itself")
    return load(path, KUBECONFIG_BYTES).data


def kubeconfig_problem(path: Path) -> str | None:
    """Why the kubeconfig at ``path`` cannot be read (one line naming file, line and key), or None."""
    try:
        _load(path)
    except SourceError as exc:
        return str(exc)
    return None


def _read(path: Path) -> dict[str, object]:
    try:
        return _current_cluster(_load(path))
    except SourceError:
        return {}


def kubeconfig_server(path: Path) -> str | None:
    """The API server URL of the kubeconfig's current context, if readable."""
    server = _read(path).get("server")
    return str(server) if server else None


def kubeconfig_ca(path: Path) -> str | None:
    """The PEM CA bundle of the kubeconfig's current cluster (inline data or a file), if any."""
    cluster = _read(path)
    if cluster.get("certificate-authority-data"):
        try:
            return base64.b64decode(str(cluster["certificate-authority-data"])).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    ca = cluster.get("certificate-authority")
    if ca:
        ca_path = Path(str(ca)).expanduser()
        ca_path = ca_path if ca_path.is_absolute() else path.parent / ca_path
        raw = read_small(ca_path, 1 << 20)
        return raw.decode("utf-8", "replace") if raw is not None else None
    return None
