"""Every code block of README.md and docs/*.md does what it shows, or is listed here with the reason it cannot.

Python blocks are executed (a site test file or a site plugin is written out and loaded by a pytester run);
YAML blocks load through the reader they document (waivers, catalog, inventory); JSON blocks are results records
of format v1; shell blocks' ``pytest`` commands parse with pytest's own option parser (the plugins' options
included), ``nova-lab`` and ``nova-inventory-from-ansible`` commands with their own parsers; the test ids the
docs show are ids the plan of the example inventory has. A block this test does not know fails it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from _pytest.config import _prepareconfig
from _pytest.mark import ParameterSet

from _pytest_nova.ansible import cli as ansible_cli
from _pytest_nova.builtin_kinds import builtin_registry
from _pytest_nova.catalog import load_catalog
from _pytest_nova.waivers import load_waivers
from nova_lab import cli
from tests.test_inventory import GOOD

REPO = Path(__file__).resolve().parent.parent
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
EXAMPLE_INVENTORY = REPO / "inventories" / "example-prod.yaml"
SITE_PLUGIN = REPO / "tests" / "data" / "site_plugin"
RECORD_KEYS = ["nodeid", "check", "requirement", "section", "source", "target", "port", "protocol", "outcome",
               "message", "severity"]

# Blocks that are not commands or files: (file, first line's start) -> why nothing runs them.
NOT_RUN = {
    ("docs/architecture.md", "inventory.yaml ─►"): "a diagram",
    ("README.md", "ERROR: prod.yaml:14:"): "the output of a broken inventory (tests/test_inventory.py proves it)",
    ("docs/extending.md", "nova: lab (prod.yaml)"): "terminal output of the site tests on the lab "
                                                    "(tests/test_site_tests_lab.py proves its lines)",
    ("docs/extending.md", "ERROR: /srv/site/catalog"): "plugin errors (tests/test_extending.py proves them)",
    ("docs/firewall.md", "2 of 3 failed"): "a failure's text (tests/test_firewall_lab.py)",
    ("docs/node-checks.md", "Checked:  worker-1"): "a failure's text (tests/test_node_checks_lab.py)",
    ("docs/postinstall.md", "Observed: api balancer"): "a failure's text (tests/test_postinstall_lab.py)",
    ("docs/postinstall.md", "Observed: master-1"): "a failure's text (tests/test_postinstall_lab.py)",
    ("docs/postinstall.md", "kubectl --kubeconfig=<path>"): "a template of the command pytest-nova runs, with "
                                                             "placeholders",
    ("docs/report.md", "========================= nova verdict"): "terminal output (tests/test_report.py)",
}
# Commands of shell blocks that cannot run here: the first word -> why.
NOT_RUN_COMMANDS = {
    ".ci/install-deps": "installs Debian packages as root",
    "pip": "installs packages",
    "ansible-inventory": "needs an Ansible inventory; its output is piped to nova-inventory-from-ansible (parsed)",
    "ruff": "the project's style check (CI runs it)",
    "mypy": "the project's type check (CI runs it)",
    "python3": "the project's own test suite",
    ".ci/install-check": "builds wheels in a fresh virtualenv (CI runs it)",
    "nova-ctl": "the Nova installer",
}
# Files of CI systems: their pytest command is parsed, the rest needs GitLab or Jenkins.
CI_REASON = "a CI system's pipeline: only its pytest command can be checked here"


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    path: str
    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def first(self) -> str:
        return self.text.splitlines()[0] if self.text else ""


def blocks() -> list[Block]:
    """Every fenced block of README.md and docs/*.md."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            out.append(Block(str(doc.relative_to(REPO)), text[:m.start()].count("\n") + 1, m.group(1), m.group(2)))
    return out


BLOCKS = blocks()


def skipped(block: Block) -> str | None:
    """Why ``block`` is not run, if NOT_RUN lists it."""
    return next((why for (path, start), why in NOT_RUN.items()
                 if block.path == path and block.first.startswith(start)), None)


def kind(block: Block) -> str:
    """How a block is proven: python, yaml, json, groovy, shell, ids, or not-run."""
    if skipped(block):
        return "not-run"
    if block.lang in ("python", "yaml", "json", "groovy"):
        return block.lang
    if re.fullmatch(r"(test_\w+\[[^\]]+\]\s*(#.*)?\n)(\s*(test_\w+\[[^\]]+\]\s*)?(#.*)?\n)*", block.text):
        return "ids"
    if block.lang in ("", "sh"):
        return "shell"
    return "unknown"


def of_kind(name: str) -> list[Block]:
    return [b for b in BLOCKS if kind(b) == name]


def ids(blocks: list[Block]) -> list[ParameterSet]:
    return [pytest.param(b, id=b.id) for b in blocks]


def test_every_block_is_known_and_every_listed_one_exists() -> None:
    assert len(BLOCKS) > 30
    assert [b.id for b in BLOCKS if kind(b) == "unknown"] == []
    listed = {(b.path, start) for b in BLOCKS for (path, start) in NOT_RUN if b.path == path and
              b.first.startswith(start)}
    assert set(NOT_RUN) - listed == set(), "NOT_RUN lists blocks the docs no longer have"


# ---- shell: pytest, nova-lab and nova-inventory-from-ansible commands parse with their own parsers


def commands(text: str) -> Iterator[list[str]]:
    """The commands of a shell block: continuations joined, comments dropped, ``a && b`` and pipes split."""
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for w in [*words, "&&"]:
            if w in ("&&", "|", ";"):
                if command:
                    yield command
                command = []
            elif w != "...":  # the docs' placeholder for "and so on"
                command.append(w)


def parse_pytest(args: list[str]) -> pytest.Config:
    """``args`` parsed by pytest's own option parser, with every installed plugin's options."""
    config = _prepareconfig(args)
    return config


@pytest.mark.parametrize("block", ids(of_kind("shell")))
def test_shell_commands_parse(block: Block, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(SITE_PLUGIN))  # -p site_plugin
    monkeypatch.chdir(tmp_path)
    seen = 0
    for argv in commands(block.text):
        if argv[0] == "nova-lab" and argv[1:2] == ["shell"]:
            argv = argv[argv.index("--") + 1:]  # nova-lab shell -- <command in the lab>
            if argv[:3] == ["python", "-m", "pytest"]:
                argv = ["pytest", *argv[3:]]
        name = argv[0]
        if name == "pytest":
            config = parse_pytest(argv[1:])
            assert config.option is not None
            seen += 1
        elif name == "nova-lab":
            cli._parser().parse_args(argv[1:])
            seen += 1
        elif name == "nova-inventory-from-ansible":
            ansible_cli.parser().parse_args(argv[1:])
            seen += 1
        else:
            assert name in NOT_RUN_COMMANDS, f"{block.id}: no way to check {name!r}"
    assert seen or all(c[0] in NOT_RUN_COMMANDS for c in commands(block.text))


def test_a_misspelt_option_fails_to_parse() -> None:
    # What makes the test above able to fail.
    with pytest.raises((pytest.UsageError, SystemExit)):
        parse_pytest(["--nova-inventry=prod.yaml"])


@pytest.mark.parametrize("block", ids(of_kind("groovy")))
def test_ci_pipelines_run_a_pytest_command_that_parses(block: Block) -> None:
    found = re.findall(r"sh '''(pytest .*?)'''", block.text, re.S)
    assert found, f"{block.id}: {CI_REASON}, but no pytest command was found"
    for text in found:
        for argv in commands(text):
            parse_pytest(argv[1:])


# ---- test ids the docs show are ids of the example inventory's plan


@pytest.fixture(scope="module")
def plan_ids(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every test id of the example inventory's plan, both phases (collected from an empty folder)."""
    where = tmp_path_factory.mktemp("plan")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env = {k: v for k, v in env.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    proc = subprocess.run([sys.executable, "-m", "pytest", f"--nova-inventory={EXAMPLE_INVENTORY}",
                           "--nova-phase=all", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=where, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {line.split("::")[-1] for line in proc.stdout.splitlines() if "::" in line}


# Ids that need an inventory other than the example's: the reason.
OTHER_INVENTORY = {
    "test_port[worker-1:proxy:3128/tcp]": "needs network.httpProxy, which the example inventory does not set",
}


@pytest.mark.parametrize("block", ids(of_kind("ids")))
def test_shown_ids_are_ids_of_the_plan(block: Block, plan_ids: set[str]) -> None:
    shown = [line.split("#")[0].strip() for line in block.text.splitlines()]
    assert shown
    missing = [i for i in shown if i and i not in plan_ids and i not in OTHER_INVENTORY]
    assert missing == []


# ---- YAML: through the reader it documents


@pytest.mark.parametrize("block", ids(of_kind("yaml")))
def test_yaml_blocks_load_through_their_reader(block: Block, tmp_path: Path) -> None:
    data = yaml.safe_load(block.text)
    path = tmp_path / "block.yaml"
    path.write_text(block.text)
    if "waivers" in data:
        catalog = load_catalog()
        waivers = load_waivers(path, requirements={r.id for r in catalog.requirements})
        assert waivers.items
    elif "requirements" in data:
        # A site catalog: loaded with the areas the example site plugin registers.
        sys.path.insert(0, str(SITE_PLUGIN))
        try:
            site_plugin = importlib.import_module("site_plugin")
        finally:
            sys.path.remove(str(SITE_PLUGIN))
        registry = builtin_registry()
        site_plugin.pytest_nova_add_kinds(registry, None)
        folder = tmp_path / "catalog"
        folder.mkdir()
        shutil.move(path, folder / "site.yaml")
        catalog = load_catalog(extra=[folder], areas=registry.areas)
        assert {r.id for r in catalog.requirements} >= {r["id"] for r in data["requirements"]}
    elif "nodes" in data:
        from _pytest_nova.inventory import load_inventory

        assert load_inventory(path).nodes
    else:
        # A CI pipeline (GitLab): its pytest command parses; the rest needs GitLab.
        scripts = [line for job in data.values() if isinstance(job, dict) for line in job.get("script", [])]
        pytest_lines = [s for s in scripts if s.startswith("pytest ")]
        assert pytest_lines, f"{block.id}: {CI_REASON}, but no pytest command was found"
        for text in pytest_lines:
            parse_pytest(shlex.split(text)[1:])


# ---- JSON: records of format v1


@pytest.mark.parametrize("block", ids(of_kind("json")))
def test_json_blocks_are_results_of_format_v1(block: Block) -> None:
    data = json.loads(block.text)
    records = data["results"] if "results" in data else [data]
    if "results" in data:
        assert data["schema"] == "pytest-nova/results/v1"
        assert set(data["summary"]) >= {"passed", "failed", "skipped", "error", "waived", "warning"}
    for r in records:
        assert list(r)[:len(RECORD_KEYS)] == RECORD_KEYS


# ---- Python: executed, or written out and loaded by pytester


@pytest.mark.parametrize("block", ids(of_kind("python")))
def test_python_blocks_run(block: Block, pytester: pytest.Pytester) -> None:
    if "def test_" in block.text:
        # A site's testinfra tests: collected on the inventory's nodes.
        pytester.makefile(".yaml", inv=GOOD)
        pytester.makepyfile(test_block=block.text)
        result = pytester.runpytest("--nova-inventory=inv.yaml", "test_block.py", "--collect-only", "-q")
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
        collected = [line for line in result.stdout.lines if "::" in line]
        names = set(re.findall(r"^def (test_\w+)\(host", block.text, re.M))
        assert {c.split("::")[1].split("[")[0] for c in collected} == names
        assert all(re.search(r"\[[\w.-]+\]$", c) for c in collected)
    elif "def pytest_nova_" in block.text:
        # A site plugin: loaded by a pytester run, with the example's catalog folder next to it.
        shutil.copytree(SITE_PLUGIN / "catalog", pytester.path / "catalog")
        pytester.makepyfile(block_plugin=block.text)
        pytester.makefile(".yaml", inv=GOOD)
        pytester.syspathinsert()
        result = pytester.runpytest("-p", "block_plugin", "--nova-inventory=inv.yaml", "--collect-only", "-q",
                                    "--pyargs", "pytest_nova.suites")
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
        assert "test_extensions.py::test_check[" in result.stdout.str()  # the plugin's kinds have checks
    else:
        exec(compile(block.text, block.id, "exec"), {})


def test_the_walk_through_shows_the_example_file_as_it_is() -> None:
    example = REPO / "examples" / "site_tests" / "test_site.py"
    shown = [b for b in of_kind("python") if b.path == "docs/extending.md" and "def test_" in b.text]
    assert [b.text for b in shown] == [example.read_text()]


# README and docs/extending.md show the same two: each distinct command once.
SITE_COMMANDS = [list(a) for a in dict.fromkeys(tuple(argv) for b in of_kind("shell") for argv in commands(b.text)
                                                if "site_tests/" in argv)]


@pytest.mark.parametrize("argv", SITE_COMMANDS, ids=[" ".join(a[1:]) for a in SITE_COMMANDS])
def test_site_test_commands_collect_from_any_folder(argv: list[str], pytester: pytest.Pytester) -> None:
    # The documented command as it is, from a folder holding prod.yaml and site_tests/ (no network: collect only).
    shutil.copy(EXAMPLE_INVENTORY, pytester.path / "prod.yaml")
    shutil.copytree(REPO / "examples" / "site_tests", pytester.path / "site_tests",
                    ignore=shutil.ignore_patterns("__pycache__"))
    result = pytester.runpytest(*argv[1:], "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    collected = [line for line in result.stdout.lines if "::" in line]
    assert "site_tests/test_site.py::test_ip_forward[worker-2]" in collected
    plan = [c for c in collected if not c.startswith("site_tests/")]
    assert bool(plan) == ("--pyargs" in argv)
