"""Secrets never leave: a proxy password, a kubeconfig token and a private key are in no output of a run.

The lab run uses a proxy URL with a password and the lab's kubeconfig (a bearer token the API stand-in checks)
and SSH key; the proxy refuses the vendor names, so the fix texts that quote the proxy are printed. Every
output is searched: terminal, results JSON, JUnit, HTML, the log file, and ``ps -eo args`` sampled during the
run. The unit tests prove the masking itself on texts that do contain the secrets.
"""

from __future__ import annotations

import json
import logging
import os
import secrets as random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from _pytest_nova import secrets
from _pytest_nova.plugin import mask_report
from nova_lab import Lab, LabSpec
from tests.lab_fixtures import REPO, booted, lab_name

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n" \
      "QyNTUxOQAAACBrZXlib2R5bGluZXR3b2tleWJvZHlsaW5ldHdva2V5Ym9keQAAAJg=\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    secrets.clear()
    yield
    secrets.clear()


def test_url_passwords_are_masked_but_environment_references_are_kept() -> None:
    assert secrets.mask("allow CONNECT on the proxy http://nova:s3cr%40t@proxy:3128 (docs 2)") == (
        "allow CONNECT on the proxy http://nova:***@proxy:3128 (docs 2)")
    assert secrets.mask("write http://user:${NOVA_PROXY_PASSWORD}@host:port") == (
        "write http://user:${NOVA_PROXY_PASSWORD}@host:port")


def test_registered_values_are_masked_in_all_their_forms(tmp_path: Path) -> None:
    kube = tmp_path / "kubeconfig"
    kube.write_text(yaml.safe_dump({"users": [{"name": "admin", "user": {"token": "tok-\"quoted\"-123456"}}]}))
    key = tmp_path / "id_nova"
    key.write_text(KEY)
    secrets.register_kubeconfig(kube)
    secrets.register_key_file(key)
    secrets.register_environment({"NOVA_SECRETS": "SUDO_PASS, OTHER", "SUDO_PASS": "hunter2-sudo"})
    text = json.dumps({"m": 'token tok-"quoted"-123456, sudo hunter2-sudo, key ' + KEY.splitlines()[1]})
    masked = secrets.mask(text)
    assert "123456" not in masked and "hunter2" not in masked and "b3BlbnNzaC1rZXk" not in masked
    assert masked.count(secrets.MASK) == 3
    assert secrets.mask(f"a pasted key: {KEY} end") == f"a pasted key: {secrets.MASK}\n end"


def test_reports_and_log_records_are_masked(pytester: pytest.Pytester, caplog: pytest.LogCaptureFixture) -> None:
    secrets.register("kube-token-abcdef")
    report = pytest.TestReport("t.py::x", ("t.py", 1, "x"), {}, "failed", "E  Bearer kube-token-abcdef", "call",
                               sections=[("Captured stdout call", "kube-token-abcdef")],
                               user_properties=[("nova_check", {"fix": "proxy http://u:pw-1234@p:3128"})])
    mask_report(report)
    assert "abcdef" not in str(report.longrepr) and "abcdef" not in report.sections[0][1]
    assert report.user_properties == [("nova_check", {"fix": "proxy http://u:***@p:3128"})]
    secrets.install_log_filter()
    with caplog.at_level(logging.INFO):
        logging.getLogger("pytest_nova.test").info("token %s", "kube-token-abcdef")
    assert caplog.messages == ["token ***"]


@pytest.fixture(scope="module")
def secrets_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """A 1/1/0/1 lab in proxy mode, installed, so post-install checks use the kubeconfig's token."""
    for lab in booted(LabSpec(name=lab_name("s", pytestconfig), masters=1, infra=1, ingress=0, workers=1,
                              proxy=True, modules=())):
        lab.set_installed(True)
        yield lab


@pytest.mark.lab
def test_no_secret_in_any_output_of_a_lab_run(secrets_lab: Lab, tmp_path: Path) -> None:
    lab = secrets_lab
    password = "pw-" + random.token_hex(8)
    inv = yaml.safe_load(lab.inventory_path.read_text())
    inv["network"]["httpProxy"] = inv["network"]["httpProxy"].replace("http://", f"http://nova:{password}@")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(inv))
    token = yaml.safe_load(Path(inv["kubeconfig"]).read_text())["users"][0]["user"]["token"]
    key_lines = [ln for ln in Path(inv["ssh"]["identityFile"]).read_text().splitlines() if not ln.startswith("-")]
    wanted = {"proxy password": password, "kubeconfig token": token, **{f"key line {i}": ln for i, ln in
                                                                        enumerate(key_lines) if len(ln) >= 16}}
    assert len(wanted) >= 4

    out = {name: tmp_path / name for name in ("results.json", "junit.xml", "report.html", "run.log", "terminal")}
    argv = [sys.executable, "-m", "pytest", f"--nova-inventory={inventory}", "--nova-phase=all", "-n", "2",
            f"--nova-json={out['results.json']}", f"--junitxml={out['junit.xml']}", f"--html={out['report.html']}",
            "--self-contained-html", f"--log-file={out['run.log']}", "--log-file-level=DEBUG", "-rA",
            "-p", "no:cacheprovider", "-m", "external or firewall or k8s or lb"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    samples: list[str] = []
    with lab.fault("proxy-deny"), open(out["terminal"], "wb") as terminal:
        proc = subprocess.Popen(lab.runner_cmd(argv), stdout=terminal, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            samples.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                                          check=True).stdout)
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait()
    text = {name: path.read_text(errors="replace") for name, path in out.items()}
    text["ps"] = "\n".join(samples)

    # The run really happened and quoted the proxy (masked) where the password used to appear.
    assert rc == 1, text["terminal"][-3000:]
    assert len(samples) >= 5 and "--nova-inventory=" in text["ps"]
    records = json.loads(text["results.json"])["results"]
    assert any(r["check"] == "k8s" and r["outcome"] == "passed" for r in records)  # the token was used
    assert any(r["check"] == "external" and r["outcome"] == "failed" for r in records)
    for name in ("terminal", "junit.xml", "report.html"):
        assert f"nova:{secrets.MASK}@" in text[name], name
    leaks = [(what, name) for what, value in wanted.items() for name, body in text.items() if value in body]
    assert leaks == []
