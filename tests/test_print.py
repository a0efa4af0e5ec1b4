"""The report as people attach it to a sign-off: printed to PDF by headless Chromium, read back with pdftotext.

Skipped only when Chromium or poppler-utils is not installed and the CI variable is unset: in CI it must run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from _pytest_nova.report import html
from tests.test_report import SUDO, make_suite, run

CHROMIUM = "/usr/bin/chromium"
PNG = Path(__file__).resolve().parents[1] / "docs" / "report-print.png"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and shutil.which("pdftotext")) and not os.environ.get("CI"),
    reason="headless Chromium and poppler-utils not installed (apt-get install chromium poppler-utils); "
           "required in CI",
)


def print_pdf(page: Path, pdf: Path) -> None:
    """``page`` printed to ``pdf`` as a person would, without the browser's header and footer."""
    profile = pdf.parent / "chromium-profile"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--no-pdf-header-footer",
         f"--print-to-pdf={pdf}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    shutil.rmtree(profile, ignore_errors=True)


def pdf_pages(pdf: Path) -> list[str]:
    """The text of each page in reading order, without white space: a table cell's wrapped lines join up again."""
    text = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout
    pages = text.split("\f")
    return ["".join(p.split()) for p in (pages[:-1] if text.endswith("\f") else pages)]


def squeeze(text: str) -> str:
    """``text`` without white space, to find it in :func:`pdf_pages`."""
    return "".join(text.split())


def test_the_printed_report_starts_with_the_sign_off_what_to_fix_and_coverage(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    make_suite(pytester, faults={SUDO: [{"observed": "sudo asks for a password (printed in full)"}]})
    # What the screen folds: every row's details (render_collapsed), the list of passed checks (past 5 rows).
    monkeypatch.setattr(html, "OPEN_PASSED", 5)
    result = run(pytester, "--html=report.html", "--self-contained-html", "-o", "render_collapsed=all")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    page = (pytester.path / "report.html").read_text()
    folded = re.search(r"<details><summary>(Passed checks: \d+) ", page)  # folded on screen
    assert folded, "the passed checks are not folded on screen"

    pdf = pytester.path / "report.pdf"
    print_pdf(pytester.path / "report.html", pdf)
    pages = pdf_pages(pdf)
    assert 2 <= len(pages) <= 6, len(pages)
    first = pages[0]
    assert first.startswith(squeeze("Nova acceptance report: lab1: NOT ACCEPTED"))
    assert first.index("Sign-off") < first.index("NOTACCEPTEDMay") < first.index(squeeze("What to fix (1 result)"))
    assert "os-sudo-nopasswd" in first and "NOPASSWD:ALL" in first
    text = "".join(pages)
    # Coverage follows on the first pages, before the matrix, the environment and the results table.
    order = [squeeze(s) for s in ("Not covered by this run (", "Summary by area and role", "Environment",
                                  folded.group(1))]
    assert [text.index(name) for name in order] == sorted(text.index(name) for name in order)
    assert order[0] in "".join(pages[:2])
    # Expanded, nothing lost: the failed row's details and every passed check; no buttons or filters.
    assert text.count(squeeze("sudo asks for a password (printed in full)")) == 2  # what to fix, the row's details
    assert "os-private-key" in text.split(order[-1])[1]
    for screen_only in ("Show all details", "(Un)check the boxes", "Reload this page"):
        assert squeeze(screen_only) not in text
    if os.environ.get("NOVA_UPDATE_SCREENSHOT") and shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                        str(PNG.with_suffix(""))], check=True, timeout=60)
