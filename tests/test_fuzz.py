"""Property tests: any bytes or any YAML document fed to the inventory and waiver loaders, and any text fed to
the option parser, gives a valid object or a one-line usage error, never another exception, within a time bound.

The profile is fixed-seed (derandomized) and bounded so it runs in CI on every commit in well under a minute.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _pytest_nova import inputs, outputs
from _pytest_nova.errors import SourceError
from _pytest_nova.inventory import Inventory, load_inventory
from _pytest_nova.options import DAY, number
from _pytest_nova.waivers import Waivers, load_waivers
from tests.test_inventory import GOOD
from tests.test_waivers import GOOD as GOOD_WAIVERS
from tests.test_waivers import HOSTS, REQS

CI = settings(
    derandomize=True,
    max_examples=200,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
LIMIT = 2.0  # seconds one input may take, also where the deadline does not apply (the first example)

# Values that reach the validators' edges; drawn more often than arbitrary ones.
edges = st.sampled_from([
    "10.10.1.41", "fd00::1", "0.0.0.0", "127.0.0.1", "255.255.255.255", "http://u:p@h:99999", "http://h:0",
    "nova-ctl", "master", "worker", "", " ", "2026-02-30", "!vault", "*", "${X}", "two\nlines", "a\x1b[2Jb",
])
scalars = st.one_of(
    edges, edges, edges, st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), st.dates(),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: str) -> bytes:
    """A valid document with one value replaced by anything (or deleted): reaches the validation code."""
    data = yaml.safe_load(base)
    path = draw(st.sampled_from(_paths(data)[1:]))
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    elif draw(st.integers(0, 4)):  # mostly a scalar: the document keeps its shape and reaches deeper checks
        parent[path[-1]] = draw(scalars)
    else:
        parent[path[-1]] = draw(values)
    return yaml.safe_dump(data, allow_unicode=True).encode()


def _documents(base: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=500).map(str.encode),
        values.map(lambda v: yaml.safe_dump(v, allow_unicode=True).encode()),
        # Most examples are near-valid documents: bytes and random shapes stop at the first checks.
        mutated(base), mutated(base), mutated(base), mutated(base), mutated(base),
        tagged(base), tagged(base), aliased(base), aliased(base),
    )


TAGS = ["!!int", "!!float", "!!bool", "!!timestamp", "!!str", "!!null", "!!binary", "!!set", "!!omap", "!!map",
        "!!seq", "!!python/tuple", "!!python/object/apply:os.system", "!vault", "!Ref", "!<tag:example.com,1:x>"]
TAG_VALUES = ["''", "'_'", "maybe", "soon", "prod", "022", "1:10", "0x16", "0b1", ".nan", "-.inf", "[]", "{}", "~",
              "2026-02-30", "'x'", "9" * 30]


@st.composite
def tagged(draw: st.DrawFn, base: str) -> bytes:
    """A valid document with one value given an explicit tag (and maybe a value that does not fit it)."""
    lines = base.splitlines()
    i = draw(st.sampled_from([n for n, line in enumerate(lines) if ": " in line]))
    key, _, value = lines[i].partition(": ")
    value = draw(st.one_of(st.just(value), st.sampled_from(TAG_VALUES)))
    lines[i] = f"{key}: {draw(st.sampled_from(TAGS))} {value}"
    return ("\n".join(lines) + "\n").encode()


ALIASES = [
    "x: &a [*a]\n", "x: &a {k: *a}\n", "x: &a [1, 2]\ny: [*a, *a]\n", "x: *nowhere\n", "x: &a [&b [*b]]\n",
    "".join(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" if i else "a0: &a0 [x, x]\n" for i in range(20)),
    "".join(f"a{i}: &a{i} [*a{i - 1}]\n" if i else "a0: &a0 [x]\n" for i in range(80)),
    "x: &a\n  <<: *a\n",
]


@st.composite
def aliased(draw: st.DrawFn, base: str) -> bytes:
    """A valid document with anchors and aliases: a node repeated, an alias to itself, deep or wide expansion."""
    lines = base.splitlines()
    nodes = [n for n, line in enumerate(lines) if line.startswith("  - {")]
    repeat: bool = draw(st.booleans())
    if nodes and repeat:
        n = draw(st.sampled_from(nodes))
        lines[n] = lines[n].replace("  - {", "  - &n {", 1)
        lines.insert(draw(st.integers(n + 1, len(lines))), draw(st.sampled_from(["  - *n", "  - [*n]", "  - {x: *n}"])))
    text = "\n".join(lines) + "\n"
    snippet = draw(st.sampled_from(ALIASES))
    return (snippet + text if draw(st.booleans()) else text + snippet).encode()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example (module scope: Hypothesis reruns a test body, not its fixtures)."""
    return tmp_path_factory.mktemp("fuzz")


def _holds(folder: Path, loader: Callable[[Path], object], kind: type, raw: bytes) -> None:
    path = folder / "input.yaml"
    path.write_bytes(raw)
    started = time.monotonic()
    try:
        result = loader(path)
    except SourceError as exc:
        text = str(exc)
        assert "\n" not in text and "\r" not in text and text.startswith(str(path)), text
    else:
        assert isinstance(result, kind)
    assert time.monotonic() - started < LIMIT


@CI
@given(_documents(GOOD))
def test_inventory_loader_gives_an_inventory_or_one_line(folder: Path, raw: bytes) -> None:
    _holds(folder, load_inventory, Inventory, raw)


@CI
@given(_documents(GOOD_WAIVERS))
def test_waiver_loader_gives_waivers_or_one_line(folder: Path, raw: bytes) -> None:
    _holds(folder, lambda p: load_waivers(p, requirements=REQS, hosts=HOSTS, on=date(2026, 1, 1)), Waivers, raw)


@CI
@given(st.one_of(st.text(max_size=40), st.floats().map(repr), st.integers().map(str)),
       st.sampled_from([("--nova-timeout", float, DAY), ("--nova-concurrency", int, 4096.0)]))
def test_option_parser_gives_a_number_or_one_line(text: str, option: tuple[str, type, float]) -> None:
    flag, kind, limit = option
    try:
        value = number(flag, text, kind, limit)
    except pytest.UsageError as exc:
        message = str(exc)
        assert message.startswith(f"{flag}: expected ") and "\n" not in message
    else:
        assert isinstance(value, kind) and math.isfinite(value) and 0 < value <= limit


@CI
@given(st.text(alphabet=st.characters(blacklist_characters="\x00/"), min_size=1, max_size=60))
def test_output_path_check_gives_ok_or_one_line(folder: Path, name: str) -> None:
    """Any --nova-json value is accepted or refused in one line; the check itself leaves nothing behind."""
    before = set(folder.iterdir())
    try:
        outputs.check_writable(folder / name)
    except outputs.OutputError as exc:
        assert "\n" not in str(exc).replace(name, "")
    assert set(folder.iterdir()) == before


SPECIAL = ["fifo-no-writer", "fifo-written", "fifo-empty-writer", "directory", "socket", "dev-null", "dev-zero",
           "symlink-to-fifo", "symlink-loop", "missing", "no-permission"]


@settings(derandomize=True, max_examples=40, deadline=None, database=None)
@given(st.sampled_from(SPECIAL), st.sampled_from([GOOD.encode(), b"", b"x: [1\n", b"\xff\xfe"]))
def test_special_files_give_an_inventory_or_one_line_without_blocking(
        folder: Path, monkeypatch_module: pytest.MonkeyPatch, kind: str, raw: bytes) -> None:
    """FIFOs with or without a writer, devices, sockets, loops: an inventory or one line, within the deadline."""
    for old in folder.iterdir():
        old.unlink() if not old.is_dir() or old.is_symlink() else old.rmdir()
    path = folder / "input.yaml"
    writer: threading.Thread | None = None
    sock: socket.socket | None = None
    if kind.startswith("fifo") or kind == "symlink-to-fifo":
        fifo = folder / "in.fifo"
        os.mkfifo(fifo)
        if kind == "symlink-to-fifo":
            path.symlink_to(fifo)
        else:
            fifo.rename(path)
            fifo = path
        if kind in ("fifo-written", "fifo-empty-writer"):
            data = raw if kind == "fifo-written" else b""

            def write() -> None:
                with open(fifo, "wb") as f:
                    f.write(data)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    elif kind.startswith("dev-"):
        path.symlink_to("/dev/" + kind[4:])
    elif kind == "symlink-loop":
        path.symlink_to(path)
    elif kind == "no-permission":
        path.write_bytes(raw)
        path.chmod(0)
    started = time.monotonic()
    try:
        _load_or_line(path)
    finally:
        if sock is not None:
            sock.close()
        if writer is not None and writer.is_alive():
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    assert time.monotonic() - started < inputs.FIFO_SECONDS + LIMIT


def _load_or_line(path: Path) -> None:
    try:
        result = load_inventory(path)
    except SourceError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path)), str(exc)
    else:
        assert isinstance(result, Inventory)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    """A short FIFO deadline for the module (Hypothesis reruns a test body, not its function fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inputs, "FIFO_SECONDS", 0.3)
        yield patch
