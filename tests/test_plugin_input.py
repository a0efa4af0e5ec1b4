"""Plugin input that cannot be honoured ends the run at start-up with one line and exit 4.

Each test changes one thing in a copy of the example site plugin (tests/data/site_plugin) and runs pytest on the
prod inventory; listing runs (``--fixtures``, ``--markers``, ``--help``, ``--version``) print no verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from _pytest_nova.areas import OPTIONAL, REQUIRED, AreaSpec
from _pytest_nova.builtin_kinds import builtin_registry
from _pytest_nova.catalog import load_catalog
from _pytest_nova.errors import SourceError

pytestmark = pytest.mark.nova_suites
DATA = Path(__file__).resolve().parent / "data"
PROD = Path(__file__).resolve().parents[1] / "inventories" / "example-prod.yaml"


@pytest.fixture
def plugin(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example plugin's source, copied into the test's directory (with the prod inventory)."""
    shutil.copytree(DATA / "site_plugin", pytester.path / "plugin")
    shutil.copy(PROD, pytester.path / "prod.yaml")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path / "plugin"), *sys.path]))
    return pytester.path / "plugin" / "site_plugin.py"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def _refused(pytester: pytest.Pytester, *args: str) -> str:
    """Run with the plugin; the run must end with exit 4 and exactly one line on stderr, which is returned."""
    result = pytester.runpytest_subprocess("-p", "site_plugin", "--nova-inventory=prod.yaml", "-q", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    lines = [ln for ln in result.stderr.lines if ln.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    return lines[0]


def test_a_repeated_check_id_is_refused_not_renamed(pytester: pytest.Pytester, plugin: Path) -> None:
    _edit(plugin, 'yield SiteNodeCheck(id=f"{host.name}:{r.id}"', 'yield SiteNodeCheck(id=f"{r.id}"')
    line = _refused(pytester)
    assert line == ("ERROR: pytest_nova_add_kinds: kind 'site_node': check id 'site-time-source-configured' is "
                    "given twice (requirements site-time-source-configured and site-time-source-configured); each "
                    "id names one test item")


def test_a_check_outside_its_entrys_phase_is_refused(pytester: pytest.Pytester, plugin: Path) -> None:
    _edit(plugin, "phases=r.phases, source=\"runner\"", "phases=(\"preinstall\", \"postinstall\"), source=\"runner\"")
    line = _refused(pytester)
    assert line.startswith("ERROR: pytest_nova_add_kinds: kind 'site_tcp': check 'runner:127.0.0.1:1' is collected "
                           "in postinstall, not its requirement's phase (preinstall)")


def test_a_kind_module_that_cannot_be_imported_is_refused(pytester: pytest.Pytester, plugin: Path) -> None:
    _edit(plugin, "expand, verdicts=verdicts))", "expand, verdicts=verdicts, engine=\"site_engine\"))")
    line = _refused(pytester)
    assert line == ("ERROR: pytest_nova_add_kinds: kind 'site_tcp': engine module 'site_engine' cannot be imported: "
                    "ModuleNotFoundError: No module named 'site_engine'")
    (plugin.parent / "site_engine.py").write_text("import no_such_dependency\n")
    line = _refused(pytester)
    assert line.endswith("engine module 'site_engine' cannot be imported: ModuleNotFoundError: No module named "
                         "'no_such_dependency'")


def test_an_area_no_kind_expands_is_refused(pytester: pytest.Pytester, plugin: Path) -> None:
    _edit(plugin, '    registry.add_kind(Kind("site_tcp", SiteTcpCheck, ("site",), expand, verdicts=verdicts))\n', "")
    line = _refused(pytester)
    assert line.startswith("ERROR: pytest_nova_add_kinds: area 'site': no kind expands it, so its requirements "
                           "would never be checked")


def test_a_node_rule_reading_an_unknown_fact_is_refused(pytester: pytest.Pytester, plugin: Path) -> None:
    _edit(plugin, 'facts=("time_sources",)', 'facts=("time_source",)')
    line = _refused(pytester)
    assert line == ("ERROR: pytest_nova_add_kinds: node rule 'time_source_configured': unknown fact time_source "
                    "(add it with add_node_fact first)")


def test_a_value_of_a_declared_key_is_typed_with_file_line_and_key(pytester: pytest.Pytester, plugin: Path) -> None:
    _edit(plugin, '{"host": REQUIRED, "port": REQUIRED}', '{"host": REQUIRED, "port": REQUIRED, "protocol": OPTIONAL}')
    catalog = plugin.parent / "catalog" / "site.yaml"
    catalog.write_text(catalog.read_text() + "    protocol: tcpp\n")
    line = _refused(pytester)
    assert line.endswith(f"{catalog}:16: requirements[0].protocol: 'tcpp' is not one of tcp, udp, icmp, ipip")


@pytest.mark.parametrize("option", ["--fixtures", "--markers", "--help", "--version", "--fixtures-per-test"])
def test_listing_runs_print_no_verdict(pytester: pytest.Pytester, plugin: Path, option: str) -> None:
    result = pytester.runpytest_subprocess("-p", "site_plugin", "--nova-inventory=prod.yaml", option)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    out = result.stdout.str() + result.stderr.str()
    assert "nova verdict" not in out and "NOT ACCEPTED" not in out
    if option == "--fixtures":
        assert "nova_hosts" in out and "nova_run_cache" in out  # the fixtures a plugin uses are listed


def test_every_key_a_site_area_declares_reaches_its_requirements(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("""area: site
version: site-1
requirements:
  - id: site-ntp-rule
    section: site 3
    phase: [preinstall, postinstall]
    severity: required
    basis: site standard 3
    summary: NTP between the nodes
    fix: allow it
    rows: [{section: site 3, text: NTP between the nodes.}]
    sources: [workers]
    targets: [masters, infra]
    protocol: udp
    port: 123
    ips: [10.10.0.0/24]
    bidirectional: true
    scope: nodes
""")
    registry = builtin_registry()
    registry.add_area(AreaSpec("site", "Site", "site", {"sources": REQUIRED, "targets": REQUIRED, "protocol": REQUIRED,
                                                        "port": REQUIRED, "ips": OPTIONAL, "bidirectional": OPTIONAL,
                                                        "scope": OPTIONAL}))
    req = load_catalog(extra=[tmp_path], areas=registry.areas).get("site-ntp-rule")
    assert (req.sources, req.targets, req.protocol, req.port, req.ips, req.bidirectional, req.scope, req.phases) == (
        ("workers",), ("masters", "infra"), "udp", 123, ("10.10.0.0/24",), True, "nodes", ("preinstall", "postinstall"))
    (tmp_path / "site.yaml").write_text((tmp_path / "site.yaml").read_text().replace("[workers]", "[wrokers]"))
    with pytest.raises(SourceError, match=r"site.yaml:12: requirements\[0\].sources\[0\]: 'wrokers' is not one of"):
        load_catalog(extra=[tmp_path], areas=registry.areas)


def test_a_host_error_from_a_plugins_verdicts_is_one_error_record(pytester: pytest.Pytester, plugin: Path) -> None:
    _edit(plugin, "    timeout = session_of(request.config).settings.probe_timeout\n",
          "    raise HostError('time-1', 'ssh: connection refused by 10.10.0.123:22 (is sshd running?)', "
          "Reason.SSHD_DOWN)\n    timeout = session_of(request.config).settings.probe_timeout\n")
    _edit(plugin, "from pytest_nova import (\n",
          "from pytest_nova import HostError, Reason\nfrom pytest_nova import (\n")
    result = pytester.runpytest_subprocess("-p", "site_plugin", "--nova-inventory=prod.yaml", "-m", "site",
                                           "--nova-json=results.json", "-q")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "Observed: time-1: ssh: connection refused by 10.10.0.123:22 (is sshd running?)" in out
    assert "Fix:      start sshd on the host (systemctl start sshd)" in out and "Traceback" not in out
    records = json.loads((pytester.path / "results.json").read_text())["results"]
    assert [(r["requirement"], r["outcome"]) for r in records] == [("site-time-source", "error")]
