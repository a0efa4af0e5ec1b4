"""The files a run reads and writes, and the start-up check that no output is an input or another output.

Inputs: the inventory, the waivers, the SSH keys (and their ``.pub``), the known-hosts file, the kubeconfig, the
Universe CA, the site catalog files, the ini file and a baseline file when one is given. Outputs: the results
JSON, the JUnit XML, the HTML report and its ``assets`` folder, and pytest's log file. Paths are compared after
``~`` expansion and symlink resolution, and by inode where the file exists (hard links, ``/dev/stdout``), the
way each writer will open them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from _pytest_nova import outputs
from _pytest_nova.inventory import Inventory
from _pytest_nova.kubeconfig import kubeconfig_path
from _pytest_nova.options import Settings, user_path

_WRITTEN_BY_THE_RUN = ("--nova-json", "--junitxml", "--html")  # pytest opens its own log file at start-up
_FULL = os.makedev(1, 7)  # /dev/full: accepts no data, so a write there fails only at the end of the run


@dataclass(frozen=True)
class Named:
    """A file of the run and how it was named: an option (``--junitxml``) or a role (``the inventory``)."""

    label: str
    given: str  # as the user wrote it
    path: Path  # absolute, ``~`` and variables expanded as its reader or writer will


def _identity(path: Path) -> tuple[object, ...]:
    """What two names of one file share: device and inode when it exists, else the resolved path."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return ("path", real)
    return ("inode", st.st_dev, st.st_ino)


def outputs_of(config: pytest.Config, settings: Settings) -> list[Named]:
    """The files this run writes, as their writers resolve them."""
    out: list[Named] = []
    if settings.json_path is not None:
        out.append(Named("--nova-json", str(config.getoption("nova_json")), Path.cwd() / settings.json_path))
    xml = getattr(config.option, "xmlpath", None)
    if xml:  # as pytest's junitxml opens it
        out.append(Named("--junitxml", xml, Path(os.path.abspath(os.path.expanduser(os.path.expandvars(xml))))))
    html = getattr(config.option, "htmlpath", None)
    if html:  # as pytest-html opens it
        out.append(Named("--html", html, Path.cwd() / Path(os.path.expandvars(html)).expanduser()))
    log_file = config.getoption("log_file", None) or config.getini("log_file")
    if log_file and log_file != os.devnull:
        out.append(Named("--log-file", str(log_file), Path(os.path.abspath(str(log_file)))))
    return out


def inputs_of(config: pytest.Config, settings: Settings, inv: Inventory | None) -> list[Named]:
    """The files this run reads that the user owns."""
    found: list[Named] = []
    if settings.inventory is not None:
        found.append(Named("the inventory", str(settings.inventory), settings.inventory.absolute()))
    if settings.waivers is not None:
        found.append(Named("the waivers file", str(settings.waivers), settings.waivers.absolute()))
    if settings.baseline is not None:
        found.append(Named("the baseline file", str(settings.baseline), settings.baseline.absolute()))
    if config.inipath is not None:
        found.append(Named("the ini file", str(config.inipath), config.inipath))
    for dirs in config.hook.pytest_nova_catalog_dirs(config=config):
        for folder in dirs or ():
            for file in sorted(Path(folder).glob("*.yaml")):
                found.append(Named("a site catalog file", str(file), file.absolute()))
    if inv is None:
        return found
    for key in dict.fromkeys([inv.ssh.identity_file, *(n.identity_file for n in inv.nodes if n.identity_file)]):
        path = inv.resolve_file(key)
        found.append(Named("an SSH key (identityFile)", key, path.absolute()))
        found.append(Named("the public key of an identityFile", f"{key}.pub", Path(f"{path.absolute()}.pub")))
    if inv.ssh.known_hosts_file:
        path = inv.resolve_file(inv.ssh.known_hosts_file)
        found.append(Named("the known-hosts file", inv.ssh.known_hosts_file, path.absolute()))
    if inv.universe is not None and inv.universe.ca_file:
        found.append(Named("the Universe CA file", inv.universe.ca_file, inv.resolve_file(inv.universe.ca_file)))
    kube = kubeconfig_path(inv)
    found.append(Named("the kubeconfig", str(kube), kube.absolute()))
    return found


def _html_assets(config: pytest.Config, report: Named) -> Path | None:
    """The folder pytest-html writes its assets to, unless the report is self-contained."""
    if getattr(config.option, "self_contained_html", False):
        return None
    return Path(os.path.realpath(report.path.parent)) / "assets"


def clash(config: pytest.Config, outputs: list[Named], inputs: list[Named]) -> str | None:
    """The one line refusing the first output that is an input, another output or this run's own terminal log."""
    ins = {_identity(i.path): i for i in inputs}
    terminal = _terminal_files()
    seen: dict[tuple[object, ...], Named] = {}
    for o in outputs:
        ident = _identity(o.path)
        if ident in ins:
            i = ins[ident]
            also = "" if i.given == o.given else f" ({i.given})"
            return (f"{o.label}: {o.given} is {i.label}{also}; the run would replace it: name another file for "
                    "the output")
        if ident in terminal:
            return (f"{o.label}: {o.given} is the file this run's {terminal[ident]} goes to; writing there would "
                    "replace the terminal log: name another file")
        if ident in seen and not _is_char_device(o.path):
            return f"{o.label}: {o.given} is also the file of {seen[ident].label}; give each output a file of its own"
        seen[ident] = o
        if o.label == "--html":
            assets = _html_assets(config, o)
            inside = [i for i in inputs if assets is not None and Path(os.path.realpath(i.path)).is_relative_to(assets)]
            if inside:
                return (f"--html: {o.given} writes its assets to {assets}, which holds {inside[0].label} "
                        f"({inside[0].given}): name a report in another folder, or add --self-contained-html")
    return None


def _is_char_device(path: Path) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _terminal_files() -> dict[tuple[object, ...], str]:
    """The regular files and pipes stdout and stderr go to (a terminal may take a copy; a log file may not)."""
    found: dict[tuple[object, ...], str] = {}
    for fd, name in ((2, "stderr"), (1, "output")):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            found[("inode", st.st_dev, st.st_ino)] = name
    return found


def special_output(config: pytest.Config, o: Named) -> str | None:
    """Refuse outputs that only fail or hang at the end of the run: /dev/full, a FIFO pytest itself writes."""
    try:
        st = os.stat(o.path)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == _FULL:
        return f"{o.label}: {o.given} is the device /dev/full, which takes no data: name a file"
    if o.label == "--nova-json":
        return None  # written without blocking (outputs.py)
    if stat.S_ISFIFO(st.st_mode):
        return (f"{o.label}: {o.given} is a FIFO; pytest writes this report at the end of the run and would wait "
                "there for a reader forever: name a regular file")
    if o.label == "--html" and not stat.S_ISREG(st.st_mode) and _html_assets(config, o) is not None:
        return (f"--html: {o.given} is not a regular file, and pytest-html would create {o.path.parent / 'assets'} "
                "beside it: name a file, or add --self-contained-html")
    return None


def check_run_files(config: pytest.Config, settings: Settings, inv: Inventory | None) -> None:
    """Raise a one-line :class:`pytest.UsageError` unless every output is safe to write at the end of the run."""
    outs = outputs_of(config, settings)
    for o in outs:
        if o.label in _WRITTEN_BY_THE_RUN:  # proven now, rather than failing after the run
            try:
                outputs.check_writable(o.path, shown=user_path(o.given))
            except outputs.OutputError as exc:
                raise pytest.UsageError(f"{o.label}: {exc}") from None
    for o in outs:
        refusal = special_output(config, o)
        if refusal:
            raise pytest.UsageError(refusal)
    problem = clash(config, outs, inputs_of(config, settings, inv))
    if problem:
        raise pytest.UsageError(problem)
