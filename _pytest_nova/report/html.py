"""HTML fragments of the acceptance report: sign-off block, problems to fix, summary matrix, row details.

Everything user-derived is escaped here. pytest-html inserts the row details into a ``white-space: pre-wrap``
block and wraps every line starting with "E" in an error span, so fragments contain no raw newline: a newline
inside a text is written as ``&#10;``.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from _pytest_nova.areas import BUILTIN_AREAS
from _pytest_nova.baseline import Comparison, Identity, when
from _pytest_nova.coverage import KIND_REASONS, Coverage
from _pytest_nova.model import CheckMeta, Record
from _pytest_nova.report.groups import listed, problems
from _pytest_nova.report.signoff import ACCEPTED, ACCEPTED_WITH_WAIVERS, Decision
from _pytest_nova.roles import Cell, cells_of
from _pytest_nova.verdicts import (
    COUNTS_PROPERTY,
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    USER_PROPERTY,
    WAIVED,
    WARNING,
    observed,
    where,
)
from _pytest_nova.waivers import Usage, Waivers

# Area titles in the order of the area × role matrix: the built-in areas, then those site plugins add.
AREA_TITLES = {a.name: a.title for a in BUILTIN_AREAS}
ROLE_ORDER = ("nova-ctl", "master", "infra", "ingress", "worker", "workstation", "load balancer", "cluster-wide")
# Outcomes in the order a reader cares about them.
SHOWN = ((FAILED, "failed"), (ERROR, "error"), (WAIVED, "waived"), (WARNING, "warning"), (SKIPPED, "skipped"),
         (PASSED, "passed"))
LABELS = ("Checked", "Expected", "Observed", "Fix")
MAX_PLACES = 200  # places listed per observation at the top; the rest are counted
MAX_DETAIL = 200  # non-passed records detailed per row; the rest are in the results JSON
OPEN_PASSED = 500  # the list of passed checks starts unfolded up to this many rows

CSS = """<style>
.nova h2{margin:.6em 0 .3em}
.nova-verdict{font-size:2em;font-weight:bold;padding:.4em .6em;border-radius:6px;color:#fff;display:inline-block}
.nova-verdict.ok{background:#1e7d32}.nova-verdict.waived{background:#b26a00}.nova-verdict.bad{background:#c62828}
.nova table{border-collapse:collapse;margin:.4em 0}
.nova td,.nova th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
.nova td.cell{text-align:center;white-space:nowrap}
.nova .c-failed{background:#ffcdd2}.nova .c-waived{background:#ffe0b2}.nova .c-passed{background:#c8e6c9}
.nova .c-none{color:#999}
.nova .n-failed,.nova .n-error{color:#c62828;font-weight:bold}.nova .n-waived{color:#b26a00;font-weight:bold}
.nova .n-passed{color:#1e7d32}.nova .n-warning{color:#8d6e00;font-weight:bold}.nova .c-warning{background:#fff9c4}
.nova .fix{font-family:monospace;white-space:pre-wrap}
.nova .sign td{height:2em;min-width:14em}
.nova-detail{white-space:normal;font-family:sans-serif}
.nova-detail td,.nova-detail th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;white-space:pre-wrap}
.nova-detail table{border-collapse:collapse}
.nova .obs{white-space:pre-wrap}.nova .places{color:#555}
#nova-coverage td:first-child,#nova-problems td:first-child,#nova-warnings td:first-child,
#nova-baseline td:first-child{white-space:nowrap}
#nova-coverage td:last-child{white-space:pre-line}
@media print{
@page{size:A4;margin:12mm}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{min-width:0;display:flex;flex-direction:column;color:#000;font-size:10px}
.summary,.summary__data{display:contents}
body>*,.summary__data>*,.summary>*{order:5}
#title{order:0}
.additional-summary.prefix{order:1}
#environment-header,#environment{order:2}
#results-table{order:3}
.additional-summary.postfix{order:4}
#environment.hidden{display:table}
.summary__data>h2,.filter,.summary__reload,.summary__spacer,.controls,.logexpander,.media,.sortable:after,
#environment-header h2:after,.col-result:after{display:none !important}
.extras-row.hidden{display:table-row !important}
.logwrapper{max-height:none;overflow:visible}
.logwrapper .log{top:0;padding-right:5px}
details::details-content{content-visibility:visible;display:block}
.nova table{width:100%}
.nova tr,.nova-detail tr,#results-table tbody{break-inside:avoid}
.nova h2,.nova h3{break-after:avoid}
.nova td{overflow-wrap:anywhere}
}
</style>"""


def esc(value: object) -> str:
    """HTML-escaped text with newlines as character references (see the module note)."""
    if value is None:
        return ""
    return html.escape(str(value), quote=True).replace("\r", "").replace("\n", "&#10;")


def explain_parts(record: Record) -> dict[str, str]:
    """A record's Checked / Expected / Observed / Fix, from its fields (empty ones left out)."""
    expected = record.get("_expected", "")
    parts = {
        "Checked": record.get("_checked", ""),
        "Expected": f"{expected} (docs {record['section']})" if expected else "",
        "Observed": observed(record),
        "Fix": record.get("_fix", ""),
    }
    return {label: text for label, text in parts.items() if text}


def _counts(counter: Counter[str]) -> str:
    parts = [f'<span class="n-{o}">{counter[o]} {label}</span>' for o, label in SHOWN if counter[o]]
    return "<br>".join(parts)


def _cell_class(counter: Counter[str]) -> str:
    if counter[FAILED] or counter[ERROR]:
        return "c-failed"
    if counter[WAIVED]:
        return "c-waived"
    if counter[WARNING]:
        return "c-warning"
    return "c-passed" if sum(counter.values()) else "c-none"


def matrix_html(records: Iterable[Mapping[str, object]], roles: Mapping[str, str],
                titles: Mapping[str, str] = AREA_TITLES, *, counted: Mapping[Cell, int] | None = None) -> str:
    """Areas × roles: counts of failed, waived, skipped and passed results per cell, coloured by the worst.

    ``counted`` (the collector's :meth:`~_pytest_nova.results.Collector.cells`) saves reading ``records``.
    """
    cells: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for (area, role, outcome), n in (cells_of(records, roles) if counted is None else counted).items():
        for key in ((area, role), (area, ""), ("", role), ("", "")):
            cells[key][outcome] += n
    areas = [a for a in titles if (a, "") in cells] + sorted({a for a, _ in cells if a and a not in titles})
    cols = [c for c in ROLE_ORDER if ("", c) in cells] + sorted({c for _, c in cells if c and c not in ROLE_ORDER})

    def td(key: tuple[str, str]) -> str:
        c = cells.get(key, Counter())
        return f'<td class="cell {_cell_class(c)}">{_counts(c) or "–"}</td>'

    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    rows = "".join(
        f"<tr><th>{esc(titles.get(a, a))}</th>{''.join(td((a, c)) for c in cols)}{td((a, ''))}</tr>"
        for a in areas
    )
    total = f"<tr><th>all areas</th>{''.join(td(('', c)) for c in cols)}{td(('', ''))}</tr>"
    return (
        '<div class="nova" id="nova-matrix"><h2>Summary by area and role</h2>'
        f'<table><tr><th>area \\ role</th>{head}<th>all roles</th></tr>{rows}{total}</table></div>'
    )


def signoff_html(outcome: Decision, waivers: Waivers | None, cluster: str, cov: Coverage | None = None) -> str:
    """The verdict, the waivers it rests on, expired or unused waivers, and how much the run did not cover."""
    kind = {ACCEPTED: "ok", ACCEPTED_WITH_WAIVERS: "waived"}.get(outcome.verdict, "bad")
    out = [
        '<div class="nova" id="nova-signoff"><h2>Sign-off</h2>',
        f'<div class="nova-verdict {kind}" id="nova-verdict">{esc(outcome.verdict)}</div>',
        f"<p>May the platform be installed on cluster <b>{esc(cluster)}</b>? "
        f"<b>{'Yes' if kind != 'bad' else 'No'}</b>: {esc(outcome.reason)}.</p>",
        f"<p>{_counts(Counter(outcome.summary)).replace('<br>', ', ')}</p>",
    ]
    if cov is not None and cov.requirements:
        n = cov.requirements
        out.append(f'<p class="nova-gaps">Not covered by this run: <b>{n} requirement{"s" if n != 1 else ""}</b> '
                   '(see <a href="#nova-coverage">Not covered by this run</a>).</p>')
    applied = [u for u in outcome.usage if u.status == "applied"]
    if applied:
        out.append("<h3>Waived deviations</h3>" + _waiver_table(applied, waivers, "results waived"))
    expired = [u for u in outcome.usage if u.status == "expired"]
    if expired:
        out.append(
            "<h3>Expired waivers (not applied)</h3>" + _waiver_table(expired, waivers, "failures it would cover")
        )
    unused = [u for u in outcome.usage if u.status == "unused"]
    if unused:
        out.append("<h3>Waivers that matched no failure</h3>" + _waiver_table(unused, waivers, None))
    out.append("</div>")
    return "".join(out)


def signature_html(sha256: str) -> str:
    """Lines to sign, naming the inventory the verdict is about."""
    return (
        f'<div class="nova" id="nova-signature"><p>Verdict given for the inventory with sha256 <code>{esc(sha256)}'
        '</code>.</p><table class="sign"><tr><th>Accepted by (name, role)</th><th>Date</th><th>Signature</th></tr>'
        "<tr><td></td><td></td><td></td></tr></table></div>"
    )


def _waiver_table(usage: list[Usage], waivers: Waivers | None, count_label: str | None) -> str:
    head = "<tr><th>requirement</th><th>node</th><th>justification</th><th>approver</th><th>expires</th>"
    head += f"<th>{esc(count_label)}</th>" if count_label else ""
    head += "<th>file</th></tr>"
    rows = []
    for u in usage:
        w = u.waiver
        rows.append(
            f"<tr><td>{esc(w.requirement)}</td><td>{esc(w.node or 'every node')}</td><td>{esc(w.justification)}</td>"
            f"<td>{esc(w.approver)}</td><td>{esc(w.expires.isoformat())}</td>"
            + (f"<td>{u.count}</td>" if count_label else "")
            + f"<td>{esc(waivers.where(w) if waivers else '')}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def problems_html(records: Iterable[Record]) -> str:
    """Failures grouped by requirement and fix: what to fix, and where."""
    return _grouped(records, (FAILED, ERROR), "nova-problems", "What to fix")


def warnings_html(records: Iterable[Record]) -> str:
    """Advisory requirements that do not hold: listed on their own, they do not change the verdict."""
    return _grouped(records, (WARNING,), "nova-warnings",
                    "Advisory warnings, not gating (good practice the Nova docs do not demand; --nova-strict gates)")


def _grouped(records: Iterable[Record], outcomes: tuple[str, ...], div: str, title: str) -> str:
    found = problems(records, outcomes)
    if not found:
        return ""
    items = []
    for p in found:
        seen = []
        for obs in p.observations.values():
            n = len(obs.places)
            seen.append(f'<li><span class="obs">{esc(obs.message)}</span><br><span class="places">'
                        f"{n} place{'s' if n != 1 else ''}: {esc(listed(obs.places, MAX_PLACES))}</span></li>")
        sources = f"<br>(one fix for {len(p.sources)} sources)" if p.shared else ""
        items.append(
            f"<tr><td><b>{esc(p.requirement)}</b><br>docs {esc(p.section)}</td>"
            f"<td>{esc(p.expected)}<ul>{''.join(seen)}</ul></td>"
            f'<td class="fix">{esc(p.fix)}{sources}</td></tr>'
        )
    n = sum(p.count for p in found)
    return (
        f'<div class="nova" id="{div}"><h2>{esc(title)} ({n} result{"s" if n > 1 else ""})</h2>'
        "<table><tr><th>requirement</th><th>expected, what was observed and where</th><th>fix</th></tr>"
        f"{''.join(items)}</table></div>"
    )


MAX_LISTED = 60  # places listed per requirement in a list of places; the rest are counted


def _place(key: Identity) -> str:
    _, src, dst, port, proto = key
    return where({"source": src, "target": dst, "port": port, "protocol": proto}) or "cluster-wide"


COVERAGE_TITLES = {"workstations": "Workstation rules", "phase": "The other phase", "inventory": "Not in the inventory",
                   "deselected": "Deselected", "not-run": "Not run", "unprovable": "Could not be proven"}


def _requirement_list(reqs: list[str]) -> str:
    """Requirement names on one line; one per line when each has a note of its own."""
    return ("\n" if any(": " in r for r in reqs) else ", ").join(reqs)


def coverage_html(cov: Coverage) -> str:
    """Not covered by this run: requirements sharing a reason are one row."""
    if not cov.not_covered:
        return ""
    rows: dict[tuple[str, str], list[str]] = {}
    for g in cov.not_covered:
        name = f"{g.requirement} ({g.section})" if g.section else g.requirement
        rows.setdefault((g.kind, KIND_REASONS.get(g.kind, g.reason)), []).append(f"{name}: {g.note}" if g.note
                                                                                   else name)
    body = "".join(
        f"<tr><td><b>{esc(COVERAGE_TITLES.get(kind, kind))}</b></td><td>{esc(reason)}</td>"
        f"<td>{len(reqs)}: {esc(_requirement_list(reqs))}</td></tr>"
        for (kind, reason), reqs in sorted(rows.items(), key=lambda kv: list(COVERAGE_TITLES).index(kv[0][0])
                                            if kv[0][0] in COVERAGE_TITLES else len(COVERAGE_TITLES))
    )
    n = cov.requirements
    return (
        f'<div class="nova" id="nova-coverage"><h2>Not covered by this run ({n} requirement{"s" if n != 1 else ""})'
        "</h2><p>What this verdict does not rest on: these requirements, or the parts named, were not proven by this "
        f"run.</p><table><tr><th>what</th><th>why, and how to cover it</th><th>requirements (docs)</th></tr>{body}"
        "</table></div>"
    )


def baseline_html(comparison: Comparison) -> str:
    """Since the earlier run: new failures first, then those still failing, then the fixed."""
    b = comparison.baseline
    parts = [
        '<div class="nova" id="nova-baseline"><h2>Since the run of '
        f"{esc(when(b.started))}</h2><p>{esc(comparison.line())}. Baseline: <code>{esc(b.path)}</code>, "
        f"sha256 <code>{esc(b.sha256)}</code>.</p>"
    ]
    for keys, title, cls in ((comparison.new, "New failures", "n-failed"),
                             (comparison.still_failing, "Still failing", "n-failed"),
                             (comparison.fixed, "Fixed", "n-passed"),
                             (comparison.not_checked, "Failing then, not checked by this run", "")):
        if not keys:
            continue
        by_req: dict[str, list[str]] = {}
        for key in keys:
            by_req.setdefault(key[0], []).append(_place(key))
        rows = "".join(f"<tr><td><b>{esc(req)}</b></td><td>{len(places)}</td>"
                       f"<td>{esc(listed(places, MAX_LISTED))}</td></tr>" for req, places in by_req.items())
        parts.append(f'<h3 class="{cls}">{esc(title)} ({len(keys)})</h3><table><tr><th>requirement</th>'
                     f"<th>results</th><th>where</th></tr>{rows}</table>")
    parts.append("</div>")
    return "".join(parts)


TABLE_COLUMNS = (("area", "Area"), ("requirement", "Requirement"), ("section", "Docs"), ("source", "Source"),
                 ("target", "Target"))


def header_cells() -> list[str]:
    """Header cells added after the Test column."""
    return [f'<th class="sortable" data-column-type="{key}">{title}</th>' for key, title in TABLE_COLUMNS]


def row_cells(meta: CheckMeta | None) -> list[str]:
    """Row cells matching :func:`header_cells`, from an item's check description."""
    data: Mapping[str, object] = meta or {}
    values = {"area": data.get("check"), **{k: data.get(k) for k, _ in TABLE_COLUMNS[1:]}}
    return [f'<td class="col-{key}">{esc(values[key])}</td>' for key, _ in TABLE_COLUMNS]


def result_count(props: Sequence[tuple[str, object]]) -> int:
    """How many results an item's report stands for: its records, or the counts that replaced passed ones."""
    counts = dict(props).get(COUNTS_PROPERTY)
    if isinstance(counts, dict):
        return sum(counts.values())
    return sum(1 for k, _ in props if k == USER_PROPERTY)


def detail_html(records: Sequence[Record], counts: Mapping[str, int] | None = None) -> str:
    """One item's results: counts, then Checked / Expected / Observed / Fix of each one that did not pass.

    ``counts`` (per outcome) when the passed records are no longer in ``records``.
    """
    counts = Counter(counts) if counts is not None else Counter(str(r.get("outcome")) for r in records)
    total = sum(counts.values())
    head = f"{total} result{'s' if total != 1 else ''}: " + ", ".join(
        f'<span class="n-{o}">{counts[o]} {label}</span>' for o, label in SHOWN if counts[o]
    )
    bad = [r for r in records if r.get("outcome") != PASSED]
    if not bad:
        return f'<div class="nova-detail">{head}</div>'
    rows = []
    for r in bad[:MAX_DETAIL]:
        p = explain_parts(r)
        rows.append(
            f'<tr class="r-{esc(r.get("outcome"))}"><td>{esc(where(r))}</td>'
            f'<td class="n-{esc(r.get("outcome"))}">{esc(r.get("outcome"))}</td>'
            + "".join(f"<td>{esc(p.get(label, ''))}</td>" for label in LABELS)
            + "</tr>"
        )
    more = f"<p>… and {len(bad) - MAX_DETAIL} more in the results JSON</p>" if len(bad) > MAX_DETAIL else ""
    return (
        f'<div class="nova-detail">{head}<table><tr><th>where</th><th>outcome</th>'
        + "".join(f"<th>{label}</th>" for label in LABELS)
        + f"</tr>{''.join(rows)}</table>{more}</div>"
    )


def passed_row(nodeid: str, meta: CheckMeta, records: int) -> str:
    """One passed check in the static list."""
    data: Mapping[str, object] = meta
    cells = [nodeid, data.get("check"), *(data.get(k) for k, _ in TABLE_COLUMNS[1:]), records]
    return "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"


def passed_table(rows: Sequence[str]) -> str:
    """Every passed check, folded: a static table stays fast with tens of thousands of rows."""
    if not rows:
        return ""
    head = "".join(f"<th>{t}</th>" for t in ("Test", *(title for _, title in TABLE_COLUMNS), "Results"))
    # Open when short; a long list stays folded so the browser does not lay it out until asked.
    fold = " open" if len(rows) <= OPEN_PASSED else ""
    return (
        f'<div class="nova" id="nova-passed"><details{fold}><summary>Passed checks: {len(rows)} (listed here, '
        f"not in the results table below)</summary><table><tr>{head}</tr>{''.join(rows)}</table></details></div>"
    )
