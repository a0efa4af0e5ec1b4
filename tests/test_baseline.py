"""``--nova-baseline``: the comparison with an earlier run, and the files it refuses in one line (exit 4)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from _pytest_nova.baseline import CHUNK, SCHEMA, BaselineError, compare, load_baseline, when
from _pytest_nova.model import Record
from tests.test_report import SUDO, SWAP, make_suite, results, run

# Two faults, each one result where a passing run has one too (same identity).
TWO = {SUDO: [{"observed": "sudo asks for a password"}], SWAP: [{"observed": "swap is on: /dev/sda2"}]}


def _results(records: list[dict[str, Any]], cluster: str = "lab1", **head: Any) -> dict[str, Any]:
    return {"schema": SCHEMA, "cluster": cluster, "started": "2026-12-01T10:02:13Z", **head,
            "summary": {}, "results": records}


def _rec(req: str, outcome: str, source: str | None = "w1", target: str | None = None, port: int | None = None,
         protocol: str | None = None) -> dict[str, Any]:
    return {"nodeid": f"t::{req}", "check": "os", "requirement": req, "section": "1", "source": source,
            "target": target, "port": port, "protocol": protocol, "outcome": outcome, "message": "m"}


def test_baseline_keeps_the_failing_identities_and_the_file_hash(tmp_path: Path) -> None:
    path = tmp_path / "prev.json"
    recs = [_rec("a", "failed"), _rec("b", "passed"), _rec("c", "error", "w1", "m1", 2379, "tcp"),
            _rec("d", "warning"), _rec("e", "waived")]
    path.write_text(json.dumps(_results(recs), indent=1))
    b = load_baseline(path, "lab1")
    assert b.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert b.started == "2026-12-01T10:02:13Z" and when(b.started) == "2026-12-01 10:02"
    assert b.failing == {("a", "w1", None, None, None), ("c", "w1", "m1", 2379, "tcp")}


def test_compare_counts_fixed_new_still_failing_and_not_checked(tmp_path: Path) -> None:
    path = tmp_path / "prev.json"
    path.write_text(json.dumps(_results([_rec("a", "failed"), _rec("b", "failed"), _rec("c", "failed"),
                                         _rec("d", "error")])))
    now: list[Record] = [_rec("a", "passed"), _rec("b", "failed"), _rec("x", "error"), _rec("d", "skipped")]  # type: ignore[list-item]
    c = compare(load_baseline(path, "lab1"), now)
    assert [k[0] for k in c.fixed] == ["a", "d"] and [k[0] for k in c.new] == ["x"]
    assert [k[0] for k in c.still_failing] == ["b"] and [k[0] for k in c.not_checked] == ["c"]
    assert c.as_json()["fixed"] == 2 and c.as_json()["new"] == 1 and c.as_json()["still_failing"] == 1
    assert c.line() == ("since the run of 2026-12-01 10:02: 2 fixed, 1 new, 1 still failing (1 failing then were "
                        "not checked this time)")


def test_a_large_baseline_is_read_in_chunks(tmp_path: Path) -> None:
    """Records straddle many chunk boundaries; keys in another order than the writer's are read too."""
    path = tmp_path / "big.json"
    n = 3 * CHUNK // 150
    recs = [_rec(f"r{i % 7}", "failed" if i % 1000 == 0 else "passed", f"h{i}", None, i, "udp") for i in range(n)]
    data = {"results": recs, "cluster": "lab1", "schema": SCHEMA, "started": "2026-12-01T10:02:13Z"}
    path.write_text(json.dumps(data, indent=1))
    assert path.stat().st_size > 2 * CHUNK
    b = load_baseline(path, "lab1")
    assert len(b.failing) == len(range(0, n, 1000)) and ("r0", "h0", None, 0, "udp") in b.failing


@pytest.mark.parametrize(("content", "message"), [
    (json.dumps(_results([], cluster="other")), "results of cluster 'other', not 'lab1' (this inventory)"),
    (json.dumps(_results([]) | {"schema": "pytest-nova/results/v2"}), "schema 'pytest-nova/results/v2', not"),
    (json.dumps(_results([]))[:-40], "ends early"),
    ('{"schema": "pytest-nova/results/v1", "cluster": "lab1", "results": [1]}', "a result without 'outcome'"),
    ("schema: v1\n", "expected '{'"),
    ('{"cluster": "lab1", "results": []}', "no 'schema'"),
    ('{"schema": "pytest-nova/results/v1", "cluster": "lab1"} {}', "text after the results JSON"),
    ('{"schema": "pytest-nova/results/v1",\n "cluster": "lab1", "results": [\n{"outcome": tru}]}', "prev.json:3: "),
])
def test_unusable_baselines_are_refused_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prev.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=None) as exc:
        load_baseline(path, "lab1")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_special_and_missing_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes it: opening it for reading must not block
    for path, message in ((fifo, "not a regular file"), (tmp_path, "not a regular file"),
                          (Path("/dev/zero"), "not a regular file"), (tmp_path / "nope.json", "cannot be read")):
        with pytest.raises(BaselineError) as exc:
            load_baseline(path, "lab1")
        assert message in str(exc.value)


def test_a_slow_read_ends_at_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "prev.json"
    path.write_text(json.dumps(_results([_rec("a", "failed")] * 20000)))
    ticks = iter(range(0, 10**6, 1000))
    with pytest.raises(BaselineError, match="not read within"):
        load_baseline(path, "lab1", clock=lambda: float(next(ticks)))


def test_a_run_with_a_baseline_says_what_was_fixed_and_what_is_new(pytester: pytest.Pytester) -> None:
    make_suite(pytester, faults=TWO)
    assert run(pytester).ret == pytest.ExitCode.TESTS_FAILED
    (pytester.path / "first.json").write_bytes((pytester.path / "results.json").read_bytes())
    sha = hashlib.sha256((pytester.path / "first.json").read_bytes()).hexdigest()

    # Both faults fixed: every failure of the first run is fixed, none is new.
    (pytester.path / "faults.json").write_text("{}")
    result = run(pytester, "--nova-baseline=first.json", "--html=report.html", "--self-contained-html")
    assert result.ret == pytest.ExitCode.OK
    started = when(json.loads((pytester.path / "first.json").read_text())["started"])
    result.stdout.fnmatch_lines(["*= nova verdict: ACCEPTED =*", "lab1: all * checks passed*",
                                 f"since the run of {started}: 2 fixed, 0 new, 0 still failing"])
    data = results(pytester)
    assert data["baseline"] == {"path": "first.json", "sha256": sha, "started": data["baseline"]["started"],
                                "fixed": 2, "new": 0, "still_failing": 0, "not_checked": 0}
    page = (pytester.path / "report.html").read_text()
    assert 'id="nova-baseline"' in page and "Fixed (2)" in page and "New failures" not in page

    # One fault fixed, one new (through the environment variable): new first, then still failing, then fixed.
    (pytester.path / "faults.json").write_text(json.dumps({SWAP: TWO[SWAP], "master-1:os-sudo-nopasswd": [
        {"observed": "sudo asks for a password"}]}))
    os.environ["NOVA_BASELINE"] = "first.json"
    try:
        result = run(pytester, "--html=report.html", "--self-contained-html")
    finally:
        del os.environ["NOVA_BASELINE"]
    result.stdout.fnmatch_lines([f"since the run of {started}: 1 fixed, 1 new, 1 still failing"])
    page = (pytester.path / "report.html").read_text()
    assert page.index("New failures (1)") < page.index("Still failing (1)") < page.index("Fixed (1)")
    assert SUDO.split(":")[0] in page[page.index("Fixed (1)"):]


def test_a_baseline_is_refused_at_start_up_with_exit_4(pytester: pytest.Pytester) -> None:
    make_suite(pytester)
    pytester.makefile(".json", other=json.dumps(_results([], cluster="prod")))
    result = run(pytester, "--nova-baseline=other.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --nova-baseline: other.json: results of cluster 'prod', not 'lab1'*"])
    assert not (pytester.path / "results.json").exists()

    # The baseline is an input: this run's results JSON may not overwrite it.
    (pytester.path / "results.json").write_text(json.dumps(_results([])))
    before = (pytester.path / "results.json").read_bytes()
    result = run(pytester, "--nova-baseline=results.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --nova-json: results.json is the baseline file; the run would replace it*"])
    assert (pytester.path / "results.json").read_bytes() == before
