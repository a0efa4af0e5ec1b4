"""Site plugins extend pytest-nova through its hooks: the example plugin adds a requirement, an area and a kind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.nova_suites
DATA = Path(__file__).resolve().parent / "data"
PROD = Path(__file__).resolve().parents[1] / "inventories" / "example-prod.yaml"
PLUGIN = DATA / "site_plugin"


@pytest.fixture
def site(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example plugin and its catalog folder copied into the test's directory, with the prod inventory."""
    shutil.copytree(PLUGIN, pytester.path / "plugin")
    shutil.copy(PROD, pytester.path / "prod.yaml")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path / "plugin"), *sys.path]))
    return pytester.path / "plugin"


@pytest.fixture
def listener() -> Iterator[int]:
    """A real TCP listener on the loopback: the site's time source."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens there


def _point_at(site: Path, port: int) -> None:
    catalog = site / "catalog" / "site.yaml"
    catalog.write_text(catalog.read_text().replace("port: 1\n", f"port: {port}\n"))


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, object]]:
    result = pytester.runpytest_subprocess("-p", "site_plugin", "--nova-inventory=prod.yaml", "-m", "site",
                                           "--nova-json=results.json", "-q", *args)
    path = pytester.path / "results.json"
    return result, json.loads(path.read_text()) if path.exists() else {}


def test_a_site_requirement_of_a_plugin_kind_passes_when_it_holds(pytester: pytest.Pytester, site: Path,
                                                                   listener: int) -> None:
    _point_at(site, listener)
    result, data = _run(pytester, "--html=report.html", "--self-contained-html")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "<th>Site requirements</th>" in (pytester.path / "report.html").read_text()  # the area's report title
    result.stdout.fnmatch_lines(["*nova verdict: ACCEPTED*", "*1 passed*"])
    records = data["results"]
    assert isinstance(records, list) and len(records) == 1
    record = records[0]
    assert record["nodeid"].endswith(f"test_extensions.py::test_check[runner:127.0.0.1:{listener}]")
    assert (record["check"], record["requirement"], record["outcome"]) == ("site", "site-time-source", "passed")
    assert record["message"] == f"connected to 127.0.0.1:{listener}"
    assert data["site"] == {"standard": "site-1"}  # pytest_nova_results_fields
    assert data["verdict"] == "ACCEPTED"  # the report's own fields come through the same hook


def test_a_site_requirement_that_does_not_hold_fails_with_its_fix(pytester: pytest.Pytester, site: Path) -> None:
    port = _closed_port()
    _point_at(site, port)
    result, data = _run(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert f"Observed: refused or unreachable: 127.0.0.1:{port}: Connection refused" in out
    assert "Expected: The site's time source answers on its TCP port" in out
    assert "(docs site 1)" in out and "Traceback" not in out
    records = data["results"]
    assert isinstance(records, list)
    assert [(r["requirement"], r["outcome"]) for r in records] == [("site-time-source", "failed")]
    assert data["verdict"] == "NOT ACCEPTED"


def test_a_broken_site_catalog_is_one_line_with_file_line_and_key(pytester: pytest.Pytester, site: Path) -> None:
    catalog = site / "catalog" / "site.yaml"
    catalog.write_text(catalog.read_text().replace("    host: 127.0.0.1\n", "    hots: 127.0.0.1\n"))
    result, _ = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = [ln for ln in result.stderr.lines if ln.strip()]
    assert len(err) == 1, err
    assert f"{catalog}:14: requirements[0].hots: unknown key" in err[0]


def test_a_site_requirement_cannot_take_an_id_of_the_packaged_catalog(pytester: pytest.Pytester, site: Path) -> None:
    catalog = site / "catalog" / "site.yaml"
    catalog.write_text(catalog.read_text().replace("id: site-time-source", "id: fw-master-etcd-client"))
    result, _ = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "duplicate requirement id 'fw-master-etcd-client' (also in firewall.yaml)" in result.stderr.str()


def test_a_kind_on_an_unknown_area_is_refused_in_one_line(pytester: pytest.Pytester, site: Path) -> None:
    source = site / "site_plugin.py"
    source.write_text(source.read_text().replace('Kind("site_tcp", SiteTcpCheck, ("site",)',
                                                 'Kind("site_tcp", SiteTcpCheck, ("ntp",)'))
    result, _ = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("pytest_nova_add_kinds: kind 'site_tcp': unknown area ntp (add it with add_area)"
            in result.stderr.str())


def test_without_a_plugin_kind_the_generic_suite_is_not_collected(pytester: pytest.Pytester) -> None:
    shutil.copy(PROD, pytester.path / "prod.yaml")
    result = pytester.runpytest("--nova-inventory=prod.yaml", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert "test_extensions.py" not in result.stdout.str()
    assert "test_port[worker-1:masters:2379/tcp]" in result.stdout.str()
