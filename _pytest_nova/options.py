"""Command-line and ini options, and the typed settings read from them."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

PHASES = ("preinstall", "postinstall", "all")
NO_INVENTORY = (
    "pytest-nova: no inventory given; pass --nova-inventory=PATH, set NOVA_INVENTORY=PATH, "
    "or add 'nova_inventory = PATH' to the [pytest] ini section"
)


@dataclass(frozen=True)
class Settings:
    """Everything the checks need to know from the command line."""

    inventory: Path | None
    phase: str
    json_path: Path | None
    probe_timeout: float
    connect_timeout: float
    command_timeout: float
    concurrency: int
    waivers: Path | None
    strict: bool = False  # advisory requirements gate too
    require_proof: bool = False  # a rule that could not be proven (no listener possible, no answer to wait for) fails
    baseline: Path | None = None  # the results JSON of an earlier run of the same cluster, to compare with


def number(flag: str, text: object, kind: type[float] | type[int], limit: float) -> float:
    """The value of a numeric option: finite, greater than 0 and at most ``limit``; else a one-line UsageError."""
    unit = "seconds" if kind is float else "a whole number"
    example = {"--nova-concurrency": 64, "--nova-connect-timeout": 5, "--nova-command-timeout": 120}.get(flag, 2)
    wanted = (
        f"{flag}: expected {unit} greater than 0 and at most {limit:g}, got {str(text)[:40]!r}; "
        f"write e.g. {flag}={example}"
    )
    try:
        value = kind(str(text).strip())
    except (ValueError, OverflowError):
        raise pytest.UsageError(wanted) from None
    if not math.isfinite(value) or not 0 < value <= limit:
        raise pytest.UsageError(wanted)
    return value


DAY = 86400.0
# flag, metavar, type, default, upper limit, help
_NUMBERS: tuple[tuple[str, str, type[float] | type[int], float, float, str], ...] = (
    ("--nova-timeout", "SECONDS", float, 2.0, DAY, "timeout of one network probe (connect, DNS query, handshake)"),
    ("--nova-connect-timeout", "SECONDS", float, 5.0, DAY, "timeout of an SSH login to a host"),
    ("--nova-command-timeout", "SECONDS", float, 120.0, DAY, "longest a remote fact-gathering or probe run may take"),
    ("--nova-concurrency", "N", int, 64, 4096, "probes a host runs at once"),
)


def add_options(parser: pytest.Parser) -> None:
    """Register pytest-nova's options."""
    group = parser.getgroup("nova", "pytest-nova: Nova Container Platform infrastructure checks")
    group.addoption(
        "--nova-inventory",
        metavar="PATH",
        help="inventory file (format v1); also NOVA_INVENTORY or the nova_inventory ini option",
    )
    group.addoption(
        "--nova-phase",
        choices=PHASES,
        default=None,
        help="which checks to run: preinstall (default), postinstall or all",
    )
    group.addoption("--nova-json", metavar="PATH", help="write the results JSON (format v1) to PATH")
    group.addoption("--nova-waivers", metavar="PATH", help="waivers file: accepted deviations with expiry")
    group.addoption("--nova-baseline", metavar="PREVIOUS.json",
                    help="the results JSON of an earlier run of the same cluster: say what was fixed, what is new "
                         "and what still fails; also NOVA_BASELINE or the nova_baseline ini option")
    group.addoption("--nova-strict", action="store_true", default=None,
                    help="advisory requirements gate too (a warning fails); also NOVA_STRICT=1 or nova_strict = true")
    for flag, metavar, _, default, _, text in _NUMBERS:
        # Checked in read_settings rather than by argparse, whose error adds a usage line.
        group.addoption(flag, metavar=metavar, default=str(default), help=f"{text}; default {default:g}")
    parser.addini("nova_inventory", "inventory file used when --nova-inventory is not given")
    parser.addini("nova_phase", "default for --nova-phase", default="preinstall")
    parser.addini("nova_baseline", "results JSON of an earlier run used when --nova-baseline is not given")
    group.addoption("--nova-require-proof", action="store_true", default=None,
                    help="a rule that could not be proven fails instead of being skipped; also NOVA_REQUIRE_PROOF=1 "
                         "or nova_require_proof = true")
    parser.addini("nova_strict", "default for --nova-strict", type="bool", default=False)
    parser.addini("nova_require_proof", "default for --nova-require-proof", type="bool", default=False)


def read_settings(config: pytest.Config) -> Settings:
    """Settings from options, the environment and the ini file, in that order."""
    inventory = _inventory_path(config)
    phase = config.getoption("nova_phase") or os.environ.get("NOVA_PHASE") or config.getini("nova_phase")
    if phase not in PHASES:
        raise pytest.UsageError(f"--nova-phase: {phase!r} is not one of {', '.join(PHASES)}")
    numbers = {
        flag: number(flag, config.getoption(flag[2:].replace("-", "_")), kind, limit)
        for flag, _, kind, _, limit, _ in _NUMBERS
    }
    json_path = config.getoption("nova_json")
    waivers = config.getoption("nova_waivers")
    return Settings(
        inventory=inventory,
        phase=str(phase),
        json_path=user_path(json_path) if json_path else None,
        probe_timeout=numbers["--nova-timeout"],
        connect_timeout=numbers["--nova-connect-timeout"],
        command_timeout=numbers["--nova-command-timeout"],
        concurrency=int(numbers["--nova-concurrency"]),
        waivers=user_path(waivers) if waivers else None,
        strict=_flag(config, "nova_strict"),
        require_proof=_flag(config, "nova_require_proof"),
        baseline=_given_path(config, "nova_baseline", "the results JSON of an earlier run"),
    )


def user_path(value: object) -> Path:
    """A path the user gave, ``~`` expanded: the start-up checks and the reads and writes use the same one."""
    return Path(os.path.expanduser(str(value)))


def _inventory_path(config: pytest.Config) -> Path | None:
    """--nova-inventory, else NOVA_INVENTORY, else the ini option, relative to the ini file's folder."""
    return _given_path(config, "nova_inventory", "the inventory's path")


def _given_path(config: pytest.Config, name: str, what: str) -> Path | None:
    """The option ``--nova-NAME``, else the variable ``NOVA_NAME``, else the ini option relative to the ini's folder."""
    given = config.getoption(name)
    if given:
        return user_path(given)
    var = name.upper()
    env = os.environ.get(var)
    if env is not None:
        if not env.strip():
            raise pytest.UsageError(f"{var}: set but empty; set it to {what}, or unset it")
        return user_path(env)
    ini = config.getini(name)
    if not ini:
        return None
    path = user_path(ini)
    # As pytest resolves its own path options from the ini file: against the ini file's folder.
    return path if path.is_absolute() or config.inipath is None else config.inipath.parent / path


def _flag(config: pytest.Config, name: str) -> bool:
    """--nova-NAME, else the NOVA_NAME variable (1/true/yes/on or 0/false/no/off), else the ini option NAME."""
    if config.getoption(name):
        return True
    var = name.upper()
    env = os.environ.get(var, "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    if env:
        raise pytest.UsageError(f"{var}: {env!r} is not one of 1, true, yes, on, 0, false, no, off")
    return bool(config.getini(name))
