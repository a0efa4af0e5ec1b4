"""Hostile and careless input: every class is exactly one line ``file:line: key: what, what instead``, exit 4.

The table below is the reference of the messages (docs/input-safety.md repeats it; a test keeps them equal).
Each row runs in-process twice: plainly and under ``-n 2`` (the errors must be raised on the xdist controller,
before workers start).
"""

from __future__ import annotations

import errno
import html
import importlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from _pytest_nova import inputs, outputs, secrets
from _pytest_nova.checks.cluster import fetch
from _pytest_nova.hosts import HostError
from _pytest_nova.inventory import load_inventory
from _pytest_nova.kubeconfig import kubeconfig_problem
from tests.test_inventory import GOOD

# Development plugins a user's install does not have; the benchmark plugin would also create .benchmarks/.
QUIET = ("-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:hypothesispytest")
SUITE = "def test_x(node_requirement):\n    pass\n"
WAIVER = """\
waivers:
  - requirement: os-sudo-nopasswd
    justification: by policy
    approver: J. Smith
    expires: 2026-02-30
"""
BOMB = "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9) if i else ', '.join(['x'] * 9)}]\n"
    for i in range(8)
)
PROXY_99999 = GOOD.replace("  dnsServers: [10.10.0.53]\n", "  dnsServers: [10.10.0.53]\n  httpProxy: http://proxy:99999\n")
LB_ON_NODE = GOOD + "loadBalancers:\n  api: {address: 10.10.1.11}\n"
NO_CTL = GOOD.replace("  - {name: nova-ctl, address: 10.10.0.5, roles: [nova-ctl], connection: local}\n", "")


def _node(address: str) -> str:
    return GOOD.replace("10.10.1.41", address)


Setup = Callable[[Path], list[str]]


def inventory(text: str | bytes) -> Setup:
    def setup(folder: Path) -> list[str]:
        (folder / "inv.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["--nova-inventory=inv.yaml"]

    return setup


def args(*extra: str, inv: str = GOOD) -> Setup:
    def setup(folder: Path) -> list[str]:
        (folder / "inv.yaml").write_text(inv)
        return ["--nova-inventory=inv.yaml", *extra]

    return setup


def big_file(folder: Path) -> list[str]:
    with open(folder / "big.yaml", "wb") as f:
        f.truncate(50 * 1024 * 1024)  # 50 MB (sparse): the reader must stop after its limit
    return ["--nova-inventory=big.yaml"]


def waivers(folder: Path) -> list[str]:
    (folder / "inv.yaml").write_text(GOOD)
    (folder / "waivers.yaml").write_text(WAIVER)
    return ["--nova-inventory=inv.yaml", "--nova-waivers=waivers.yaml"]


def no_inventory(folder: Path) -> list[str]:
    return []


def json_under_a_file(folder: Path) -> list[str]:
    (folder / "inv.yaml").write_text(GOOD)
    return ["--nova-inventory=inv.yaml", "--nova-json=inv.yaml/results.json"]


def json_in_proc(folder: Path) -> list[str]:
    (folder / "inv.yaml").write_text(GOOD)
    return ["--nova-inventory=inv.yaml", "--nova-json=/proc/nova-results.json"]


def json_is_directory(folder: Path) -> list[str]:
    (folder / "inv.yaml").write_text(GOOD)
    (folder / "out").mkdir()
    return ["--nova-inventory=inv.yaml", "--nova-json=out"]


def files(argv: list[str], inv: str = GOOD, **others: str) -> Setup:
    """The inventory and other files (``folder/name``: text; a value "fifo" makes a FIFO), then ``argv``."""
    def setup(folder: Path) -> list[str]:
        (folder / "inv.yaml").write_text(inv)
        for name, text in others.items():
            path = folder / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            if text == "fifo":
                os.mkfifo(path)
            else:
                path.write_text(text)
        return argv

    return setup


def hard_link(folder: Path) -> list[str]:
    (folder / "inv.yaml").write_text(GOOD)
    os.link(folder / "inv.yaml", folder / "report.json")
    return ["--nova-inventory=inv.yaml", "--nova-json=report.json"]


def symlink(folder: Path) -> list[str]:
    (folder / "inv.yaml").write_text(GOOD)
    (folder / "out").mkdir()
    (folder / "out" / "report.xml").symlink_to(folder / "inv.yaml")
    return ["--nova-inventory=inv.yaml", "--junitxml=out/report.xml"]


INV = "--nova-inventory=inv.yaml"
KEY_INV = GOOD.replace("~/.ssh/id_nova", "id_nova")
KUBE_INV = GOOD + "kubeconfig: kube.yaml\n"
REPLACE = "; the run would replace it: name another file for the output"
FIFO_OUT = ("is a FIFO; pytest writes this report at the end of the run and would wait there for a reader forever: "
            "name a regular file")
def patched(setup: Setup, *settings: str) -> Setup:
    """``setup``, with module constants of _pytest_nova set for the run ("module.NAME=int")."""
    def run(folder: Path) -> list[str]:
        return [*setup(folder), *(f"patch:{s}" for s in settings)]

    return run


def port(value: str) -> str:
    return GOOD.replace("  identityFile: ~/.ssh/id_nova\n", f"  identityFile: ~/.ssh/id_nova\n  port: {value}\n")


def proxy(url: str) -> str:
    return GOOD.replace("  dnsServers: [10.10.0.53]\n", f"  dnsServers: [10.10.0.53]\n  httpProxy: {url}\n")


def nodes(count: int) -> str:
    rows = "".join(f"  - {{name: w{i}, address: 10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}, roles: [worker]}}\n"
                   for i in range(count))
    return GOOD.replace("  - {name: worker-1, address: 10.10.1.41, roles: [worker]}\n", rows)


FIFO_IN = ("is a pipe or FIFO that did not deliver its content within 0.5 s; start its writer first, or name a "
           "regular file")
NOT_INVENTORY = ("not a pytest-nova inventory: it has none of the top-level keys cluster, network, universe, ssh, "
                 "loadBalancers, nodes, workstations, kubeconfig; is this the right file?")
PERCENT = ("its user or password holds '/', '?', '#' or '@', which end the host part of a URL; percent-encode them "
           "(/ as %2F, @ as %40), as curl and other proxy clients expect")
YAML11 = ("is a YAML 1.1 {} number (read as {}); write it in decimal digits without leading zeros, or quote it ('{}') "
          "if it is text")
TIMEOUT = "expected seconds greater than 0 and at most 86400, got {!r}; write e.g. --nova-connect-timeout=5"
NOT_HOST = "inv.yaml:14: nodes[3].address: {} is {}, not a host's address; write the address other hosts reach"

# class -> (setup, the exact line after "ERROR: ")
TABLE: dict[str, tuple[Setup, str]] = {
    "alias-bomb": (inventory(BOMB), "inv.yaml:6: f: the document expands to more than 100000 "
                   "values through aliases; write the values out instead of nesting aliases"),
    "nesting-20000": (inventory("a: " + "[" * 20000 + "]" * 20000 + "\n"),
                      "inv.yaml:1: nested deeper than 64 levels; flatten the file"),
    "dev-zero": (lambda f: ["--nova-inventory=/dev/zero"], "/dev/zero: is a device, not a file; name a YAML file"),
    "50-MB-file": (big_file, "big.yaml: larger than 4096 KiB, the reader's limit of a file's size; is this the right "
                   "file?"),
    "not-utf8": (inventory(GOOD.replace("prod", "pr\xffod").encode("latin-1")),
                 "inv.yaml:2: not UTF-8 text; save the file as UTF-8"),
    "tag-vault": (inventory(GOOD.replace("user: nova-installer", "user: !vault |\n    $ANSIBLE_VAULT;1.1;AES256\n"
                                         "    6162636465\n")),
                  "inv.yaml:8: ssh.user: unknown tag '!vault': the file must not be Ansible-vault encrypted; write "
                  "the value in clear, or for a proxy password write httpProxy: "
                  "http://user:${NOVA_PROXY_PASSWORD}@host:port and export NOVA_PROXY_PASSWORD"),
    "tag-int-x": (inventory(GOOD.replace("  identityFile: ~/.ssh/id_nova\n",
                                         "  identityFile: ~/.ssh/id_nova\n  port: !!int 'x'\n")),
                  "inv.yaml:10: ssh.port: 'x' is not a valid int; write a plain int or drop the tag"),
    "tag-python": (inventory(GOOD.replace("name: prod", "name: !!python/object/apply:os.system ['true']")),
                   "inv.yaml:2: cluster.name: unknown tag '!!python/object/apply:os.system' (only plain YAML "
                   "values are read); remove the tag"),
    "proxy-port-99999": (inventory(PROXY_99999), "inv.yaml:7: network.httpProxy: 'http://proxy:99999' has an "
                         "invalid port; write http://host:port with a port 1-65535"),
    "proxy-password-in-error": (inventory(PROXY_99999.replace("http://proxy", "http://nova:hunter2-pw@proxy")),
                                "inv.yaml:7: network.httpProxy: 'http://nova:***@proxy:99999' has an invalid port; "
                                "write http://host:port with a port 1-65535"),
    "proxy-env-unset": (inventory(PROXY_99999.replace("http://proxy:99999", "http://nova:${NOVA_UNSET_9F2}@p:3128")),
                        "inv.yaml:7: network.httpProxy: environment variable NOVA_UNSET_9F2 is not set; export it "
                        "before running pytest"),
    "waiver-2026-02-30": (waivers, "--nova-waivers: waivers.yaml:5: waivers[0].expires: '2026-02-30' is not a valid "
                          "date (day is out of range for month); write a real date as YYYY-MM-DD"),
    "no-inventory": (no_inventory, "pytest-nova: no inventory given; pass --nova-inventory=PATH, set "
                     "NOVA_INVENTORY=PATH, or add 'nova_inventory = PATH' to the [pytest] ini section"),
    "timeout-inf": (args("--nova-connect-timeout=inf"), "--nova-connect-timeout: " + TIMEOUT.format("inf")),
    "timeout-nan": (args("--nova-connect-timeout=nan"), "--nova-connect-timeout: " + TIMEOUT.format("nan")),
    "timeout-0": (args("--nova-connect-timeout=0"), "--nova-connect-timeout: " + TIMEOUT.format("0")),
    "timeout-minus-1": (args("--nova-connect-timeout=-1"), "--nova-connect-timeout: " + TIMEOUT.format("-1")),
    "timeout-1e999": (args("--nova-connect-timeout=1e999"), "--nova-connect-timeout: " + TIMEOUT.format("1e999")),
    "json-under-a-file": (json_under_a_file,
                          "--nova-json: cannot write inv.yaml/results.json: Not a directory"),
    "json-unwritable": (json_in_proc, "--nova-json: cannot write /proc/nova-results.json: /proc: No such file or "
                        "directory"),
    "json-directory": (json_is_directory, "--nova-json: out is a directory; name a file in it"),
    "json-is-inventory": (args("--nova-json=inv.yaml"), "--nova-json: inv.yaml is the inventory" + REPLACE),
    "junit-is-inventory": (args("--junitxml=inv.yaml"), "--junitxml: inv.yaml is the inventory" + REPLACE),
    "html-is-inventory": (args("--html=inv.yaml"), "--html: inv.yaml is the inventory" + REPLACE),
    "json-is-waivers": (files([INV, "--nova-waivers=w.yaml", "--nova-json=w.yaml"], **{"w.yaml": "waivers: []\n"}),
                        "--nova-json: w.yaml is the waivers file" + REPLACE),
    "json-is-key": (files(["--nova-inventory=inv.yaml", "--nova-json=id_nova"], KEY_INV, id_nova="KEY\n"),
                    "--nova-json: id_nova is an SSH key (identityFile)" + REPLACE),
    "junit-is-key-pub": (files([INV, "--junitxml=id_nova.pub"], KEY_INV, id_nova="K\n", **{"id_nova.pub": "P\n"}),
                         "--junitxml: id_nova.pub is the public key of an identityFile" + REPLACE),
    "json-is-kubeconfig": (files([INV, "--nova-json=kube.yaml"], KUBE_INV, **{"kube.yaml": "apiVersion: v1\n"}),
                           "--nova-json: kube.yaml is the kubeconfig" + REPLACE),
    "json-is-ini": (files([INV, "--nova-json=pytest.ini"], **{"pytest.ini": "[pytest]\n"}),
                    "--nova-json: pytest.ini is the ini file ({ini})" + REPLACE),
    "json-hard-link": (hard_link, "--nova-json: report.json is the inventory (inv.yaml)" + REPLACE),
    "junit-symlink": (symlink, "--junitxml: out/report.xml is the inventory (inv.yaml)" + REPLACE),
    "junit-is-json": (args("--nova-json=out.xml", "--junitxml=out.xml"),
                      "--junitxml: out.xml is also the file of --nova-json; give each output a file of its own"),
    "html-assets-hold-inventory": (
        files(["--nova-inventory=assets/inv.yaml", "--html=report.html"], **{"assets__inv.yaml": GOOD}),
        "--html: report.html writes its assets to {folder}/assets, which holds the inventory (assets/inv.yaml): "
        "name a report in another folder, or add --self-contained-html"),
    "html-dev-null": (args("--html=/dev/null"), "--html: /dev/null is not a regular file, and pytest-html would "
                      "create /dev/assets beside it: name a file, or add --self-contained-html"),
    "json-dev-full": (args("--nova-json=/dev/full"),
                      "--nova-json: /dev/full is the device /dev/full, which takes no data: name a file"),
    "junit-fifo": (files([INV, "--junitxml=out.fifo"], **{"out.fifo": "fifo"}), "--junitxml: out.fifo " + FIFO_OUT),
    "html-fifo": (files([INV, "--html=out.fifo"], **{"out.fifo": "fifo"}), "--html: out.fifo " + FIFO_OUT),
    "tag-timestamp-name": (inventory(GOOD.replace("name: prod", "name: !!timestamp prod")),
                           "inv.yaml:2: cluster.name: 'prod' is not a valid date; write a real date as YYYY-MM-DD"),
    "tag-bool-maybe": (inventory(port("!!bool maybe")),
                       "inv.yaml:10: ssh.port: 'maybe' is not a valid bool; write a plain bool or drop the tag"),
    "tag-int-empty": (inventory(port("!!int ''")),
                      "inv.yaml:10: ssh.port: '' is not a valid int; write a plain int or drop the tag"),
    "tag-float-empty": (inventory(port("!!float ''")),
                        "inv.yaml:10: ssh.port: '' is not a valid float; write a plain float or drop the tag"),
    "tag-int-underscore": (inventory(port("!!int '_'")),
                           "inv.yaml:10: ssh.port: '_' is not a valid int; write a plain int or drop the tag"),
    "waiver-tag-timestamp": (files([INV, "--nova-waivers=w.yaml"], **{"w.yaml": WAIVER.replace("2026-02-30",
                                                                                                "!!timestamp soon")}),
                             "--nova-waivers: w.yaml:5: waivers[0].expires: 'soon' is not a valid date; write a real "
                             "date as YYYY-MM-DD"),
    "alias-cycle": (inventory(GOOD.replace("cluster:\n", "x: &a [*a]\ncluster:\n")),
                    "inv.yaml:1: x[0]: an alias refers to a collection it is part of (a cycle); write the values out"),
    "alias-depth": (inventory("".join(f"a{i}: &a{i} [*a{i - 1}]\n" if i else "a0: &a0 [x]\n" for i in range(70))),
                    "inv.yaml:1: " + ("a63" + "[0]" * 61)[:77] + "...: nested deeper than 64 levels through aliases; "
                    "write the values out"),
    # The limits lowered for speed: the same code refuses 100,001 values and 4,001 hosts.
    "values-over-limit": (patched(inventory("x: [" + ",".join(["1"] * 1001) + "]\n"), "yamlsource.MAX_VALUES=1000"),
                          "inv.yaml:1: holds more than 1000 values, the reader's limit of values in a file; is this "
                          "the right file?"),
    "hosts-over-limit": (patched(inventory(nodes(8)), "inventory.MAX_HOSTS=10"), "inv.yaml:10: nodes: 11 nodes and "
                         "workstations; one run supports at most 10 (the plan's port rules grow with the square of the "
                         "hosts, docs/scaling.md): check the cluster in parts"),
    "fifo-inventory": (files(["--nova-inventory=inv.fifo"], **{"inv.fifo": "fifo"}), "inv.fifo: " + FIFO_IN),
    "fifo-inventory-env": (files(["env:NOVA_INVENTORY=inv.fifo"], **{"inv.fifo": "fifo"}), "inv.fifo: " + FIFO_IN),
    "fifo-waivers": (files([INV, "--nova-waivers=w.fifo"], **{"w.fifo": "fifo"}),
                     "--nova-waivers: w.fifo: " + FIFO_IN),
    "inventory-env-empty": (files(["env:NOVA_INVENTORY="]),
                            "NOVA_INVENTORY: set but empty; set it to the inventory's path, or unset it"),
    "proxy-slash-in-password": (inventory(proxy("http://nova:Pa/ss@proxy:3128")),
                                "inv.yaml:7: network.httpProxy: 'http://***@proxy:3128': " + PERCENT),
    "proxy-password-like-port": (inventory(proxy("http://nova:2024/Secret@proxy:3128")),
                                 "inv.yaml:7: network.httpProxy: 'http://***@proxy:3128': " + PERCENT),
    "proxy-at-in-password": (inventory(proxy("http://nova:p@ss@proxy:3128")),
                             "inv.yaml:7: network.httpProxy: 'http://***@proxy:3128': " + PERCENT),
    "proxy-path": (inventory(proxy("http://proxy:3128/x")),
                   "inv.yaml:7: network.httpProxy: 'http://proxy:3128/x' has a path; a proxy URL is http://host:port"),
    "name-newline": (inventory(GOOD.replace("{name: worker-1,", '{name: "worker-1\\n",')),
                     "inv.yaml:14: nodes[3].name: 'worker-1\\n' is not a valid name (letters, digits, '-', '_', '.')"),
    "cluster-name-newline": (inventory(GOOD.replace("name: prod", 'name: "prod\\n"')),
                             "inv.yaml:2: cluster.name: 'prod\\n' is not a valid cluster name"),
    "domain-newline": (inventory(GOOD.replace("dnsBaseDomain: nova.example.local", 'dnsBaseDomain: "a.local\\n"')),
                       "inv.yaml:3: cluster.dnsBaseDomain: 'a.local\\n' is not a valid DNS domain"),
    "names-differ-in-case": (inventory(GOOD + "  - {name: Worker-1, address: 10.10.1.42, roles: [worker]}\n"),
                             "inv.yaml:15: nodes[4].name: 'Worker-1' differs only in case from 'worker-1' at "
                             "nodes[3], line 14; Kubernetes names nodes in lower case, so both would be one node: "
                             "give each host its own name"),
    "dns-server-twice": (inventory(GOOD.replace("[10.10.0.53]", "[10.10.0.53, 10.10.0.53]")),
                         "inv.yaml:6: network.dnsServers[1]: 10.10.0.53 is listed twice (also at "
                         "network.dnsServers[0]); list each DNS server once"),
    "port-octal-022": (inventory(port("022")), "inv.yaml:10: ssh.port: '022' " + YAML11.format("octal", 18, "022")),
    "port-base-60": (inventory(port("1:10")), "inv.yaml:10: ssh.port: '1:10' " + YAML11.format("base-60", 70, "1:10")),
    "port-hex": (inventory(port("0x16")), "inv.yaml:10: ssh.port: '0x16' " + YAML11.format("hexadecimal", 22, "0x16")),
    "shadow-file": (files(["--nova-inventory=shadow"], shadow="root:$6$salt$HASHHASHHASH:19000:0:99999:7:::\n"),
                    "shadow:1: " + NOT_INVENTORY),
    "scalar-900k": (inventory(port("'" + "x" * 900_000 + "'")),
                    "inv.yaml:10: ssh.port: expected a port number 1-65535, got '" + "x" * 77 + "...'"),
    "ipv6-node": (inventory(_node("fd00::41")), "inv.yaml:14: nodes[3].address: 'fd00::41' is IPv6; nodes, "
                  "balancers and workstations need IPv4 addresses: the nodes talk IP-in-IP (protocol 4, docs 3.1), "
                  "which carries IPv4 only; write the host's IPv4 address"),
    "no-nova-ctl": (inventory(NO_CTL), "inv.yaml:10: nodes: no node has the nova-ctl role; add the host the "
                    "installer runs on, usually this machine: {name: nova-ctl, address: <its IPv4>, roles: "
                    "[nova-ctl], connection: local}"),
    "address-0.0.0.0": (inventory(_node("0.0.0.0")), NOT_HOST.format("0.0.0.0", "the unspecified address")),
    "address-127.0.0.1": (inventory(_node("127.0.0.1")), NOT_HOST.format("127.0.0.1", "a loopback address")),
    "address-broadcast": (inventory(_node("255.255.255.255")),
                          NOT_HOST.format("255.255.255.255", "the broadcast address")),
    "address-duplicate": (inventory(_node("10.10.1.21")), "inv.yaml:14: nodes[3].address: duplicate address "
                          "10.10.1.21 (also at nodes[2], line 13)"),
    "balancer-on-node": (inventory(LB_ON_NODE), "inv.yaml:16: loadBalancers.api.address: 10.10.1.11 is also the "
                         "address of nodes[1], line 12; a balancer is a host of its own (docs 3.2): write the "
                         "balancer's address"),
}


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "n2"])
@pytest.mark.parametrize("setup,expected", list(TABLE.values()), ids=list(TABLE))
def test_bad_input_is_one_line_exit_4(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setup: Setup,
                                      expected: str, xdist: bool) -> None:
    pytester.makepyfile(test_suite=SUITE)
    monkeypatch.setattr(inputs, "FIFO_SECONDS", 0.5)
    argv = []
    for arg in setup(pytester.path):
        if arg.startswith("env:"):
            monkeypatch.setenv(*arg[4:].split("=", 1))
        elif arg.startswith("patch:"):
            target, value = arg[6:].split("=")
            module, name = target.split(".")
            monkeypatch.setattr(importlib.import_module(f"_pytest_nova.{module}"), name, int(value))
        else:
            argv.append(arg)
    if xdist:
        argv += ["-n", "2"]
    before = _contents(pytester.path)
    result = pytester.runpytest(*argv, *QUIET)
    out, err = result.stdout.str(), result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out + err
    errors = [line for line in err.splitlines() if line.strip()]
    assert errors == [f"ERROR: {_placed(expected, pytester.path)}"]
    assert "Traceback" not in out + err and "INTERNALERROR" not in out + err
    # Nothing the user gave is changed, nothing is left behind (pytest-html writes its assets when configured).
    assert _contents(pytester.path) == before and not Path("/dev/assets").exists()


def _placed(expected: str, folder: Path) -> str:
    return expected.replace("{folder}", str(folder)).replace("{ini}", str(folder / "pytest.ini"))


def _contents(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: a regular file's bytes, else its kind."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        mode = path.lstat().st_mode
        found[str(path)] = path.read_bytes() if stat.S_ISREG(mode) else stat.filemode(mode)[0]
    return found


def test_fifo_symlink_and_device_are_written_through(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """--nova-json through a symlink keeps the link; a FIFO with a reader stays a FIFO; /dev/null stays a device."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".yaml", inv=GOOD)
    target = tmp_path / "real.json"
    target.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    result = pytester.runpytest("test_suite.py", INV, f"--nova-json={link}", "-k", "nothing", *QUIET)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert link.is_symlink() and '"schema": "pytest-nova/results/v1"' in target.read_text()

    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = pytester.runpytest("test_suite.py", INV, f"--nova-json={fifo}", "-k", "nothing", *QUIET)
        assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
        assert b'"schema": "pytest-nova/results/v1"' in os.read(reader, 1 << 20)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)

    before = os.stat("/dev/null")
    result = pytester.runpytest("test_suite.py", INV, "--nova-json=/dev/null", "-k", "nothing", *QUIET)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not list(tmp_path.glob(".*.tmp")) and not list(Path("/dev").glob(".null.*"))


def test_fifo_without_reader_is_refused_not_replaced(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".yaml", inv=GOOD)
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    result = pytester.runpytest("test_suite.py", INV, f"--nova-json={fifo}", "-k", "nothing", *QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: --nova-json: cannot write {fifo}: it is a FIFO nobody reads; start its reader first" in (
        result.stderr.str().splitlines()
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and not list(tmp_path.glob(".*.tmp"))


def test_collect_only_prints_no_verdict_and_writes_no_json(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".yaml", inv=GOOD)
    result = pytester.runpytest("--nova-inventory=inv.yaml", "--nova-json=out.json", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert "worker-1:os-sudo-nopasswd" in result.stdout.str()
    assert "verdict" not in result.stdout.str() and "ACCEPTED" not in result.stdout.str()
    assert not (pytester.path / "out.json").exists()


def test_proxy_password_from_the_environment_is_used_and_masked(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVA_PROXY_PASSWORD", "s3cret-from-env")
    inv = tmp_path / "inv.yaml"
    inv.write_text(PROXY_99999.replace("http://proxy:99999", "http://nova:${NOVA_PROXY_PASSWORD}@proxy:3128"))
    loaded = load_inventory(inv)
    assert loaded.http_proxy == "http://nova:***@proxy:3128"
    assert "s3cret-from-env" in secrets.registered()
    assert secrets.mask("proxy said s3cret-from-env") == "proxy said ***"


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    target.write_text("previous run\n")
    target.chmod(0o640)

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(outputs.OutputError, match=r"^cannot write .*results.json: No space left on device$"):
        outputs.write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "previous run\n" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    outputs.write_text(target, "new\n")
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_block_devices_sockets_and_directories_are_refused(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.sock"))
    try:
        with pytest.raises(outputs.OutputError, match=r"s.sock is a socket; name a file$"):
            outputs.check_writable(tmp_path / "s.sock")
    finally:
        sock.close()
    with pytest.raises(outputs.OutputError, match=r"is a directory; name a file in it$"):
        outputs.write_text(tmp_path, "x")
    block = tmp_path / "disk"  # a device node of our own: refused by its type, never opened
    os.mknod(block, stat.S_IFBLK | 0o600, os.makedev(7, 254))
    for call in (outputs.check_writable, lambda p: outputs.write_text(p, "x")):
        with pytest.raises(outputs.OutputError, match=r"disk is a block device; refusing to write over it, name a"):
            call(block)
    assert block.is_block_device()


def test_an_output_that_is_the_terminal_log_is_refused(pytester: pytest.Pytester) -> None:
    """``--nova-json=/dev/stdout > run.log`` would replace the log the run is writing: refused, the log kept."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".yaml", inv=GOOD)
    log = pytester.path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "pytest", "test_suite.py", INV, "--nova-json=/dev/stdout",
                               *QUIET], cwd=pytester.path, stdout=out, stderr=subprocess.PIPE, text=True, check=False,
                              timeout=120)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line] == [
        "ERROR: --nova-json: /dev/stdout is the file this run's output goes to; writing there would replace the "
        "terminal log: name another file"]
    assert "pytest-nova/results" not in log.read_text()


def test_tilde_in_an_output_is_the_home_folder(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--nova-json='~/r.json'`` (as from addopts, unexpanded by a shell) is checked and written in $HOME."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".yaml", inv=GOOD)
    home = pytester.mkdir("home")
    monkeypatch.setenv("HOME", str(home))
    result = pytester.runpytest("test_suite.py", INV, "--nova-json=~/r.json", "-k", "nothing", *QUIET)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert '"schema": "pytest-nova/results/v1"' in (home / "r.json").read_text()
    assert not (pytester.path / "~").exists()


def test_ini_inventory_is_relative_to_the_ini_file(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    site = pytester.mkdir("site")
    (site / "inv.yaml").write_text(GOOD)
    (site / "pytest.ini").write_text("[pytest]\nnova_inventory = inv.yaml\n")
    (site / "test_suite.py").write_text(SUITE)
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    result = pytester.runpytest("-c", str(site / "pytest.ini"), str(site / "test_suite.py"), "--collect-only", "-q",
                                *QUIET)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert "worker-1:os-sudo-nopasswd" in result.stdout.str()


def test_collect_only_without_inventory_lists_no_placeholders(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--collect-only", "-q", *QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "nova-no-inventory" not in result.stdout.str() + result.stderr.str()


KUBE = """\
users:
- name: admin
  user:
    token: !!bool maybe
    password: kube-password-1
"""


def test_a_broken_kubeconfig_is_ignored_before_installation(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale kubeconfig with a tag PyYAML cannot read: a pre-install run goes on, its secrets still masked."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".yaml", inv=GOOD)
    (pytester.path / "kube.yaml").write_text(KUBE)
    monkeypatch.setenv("KUBECONFIG", str(pytester.path / "kube.yaml"))
    result = pytester.runpytest("test_suite.py", INV, "-k", "nothing", *QUIET)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert "kube-password-1" in secrets.registered()


def test_a_broken_kubeconfig_is_a_finding_after_installation(tmp_path: Path) -> None:
    kube = tmp_path / "kube.yaml"
    kube.write_text(KUBE)
    expected = (f"{kube}:4: users[0].user.token: 'maybe' is not a valid bool; write a plain bool or drop the tag")
    assert kubeconfig_problem(kube) == expected
    with pytest.raises(HostError) as caught:
        fetch(kube, "kube-system", 1.0, tmp_path / "cache", "nova", kubectl="/bin/true")
    assert caught.value.cause == (f"kubeconfig {expected}; kubectl cannot use it: fix it or point 'kubeconfig:' in the "
                                  "inventory at the cluster's admin kubeconfig")


def test_kubeconfig_tokens_are_registered_whatever_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kube = tmp_path / "kube.yaml"
    kube.write_text("clusters: []\n" + "# padding\n" * 150_000 + "users:\n- name: a\n  user: {token: tok-after-1MiB}\n"
                    "- name: b\n  user:\n    token: 'tok-line-scan'\n- name: c\n  user:\n    token: !!str tok-tag\n")
    assert kube.stat().st_size > 1 << 20
    secrets.clear()
    secrets.register_kubeconfig(kube)
    assert {"tok-after-1MiB", "tok-line-scan"} <= secrets.registered()
    # Beyond the reader's limit, the line scan still finds block-style tokens.
    secrets.clear()
    monkeypatch.setattr(secrets, "KUBECONFIG_BYTES", 1024)
    secrets.register_kubeconfig(kube)
    assert {"tok-line-scan", "tok-tag"} <= secrets.registered()
    secrets.clear()


def test_secrets_of_any_length_are_masked_in_every_form() -> None:
    secrets.clear()
    try:
        secrets.register("ab")  # short: masked where it stands alone, not inside words
        assert secrets.mask("password ab, 'ab'") == "password ***, '***'"
        assert secrets.mask("about cab") == "about cab"
        value = "q'u\"ote<&>/é pw"
        secrets.register(value)
        for form in (value, repr(value), ascii(value), json.dumps(value), json.dumps(value, ensure_ascii=False),
                     html.escape(value), html.escape(json.dumps(value)), urllib.parse.quote(value, safe="")):
            masked = secrets.mask(f"x {form} y")
            assert "q'u" not in masked and "ote" not in masked and "***" in masked, (form, masked)
        # An unencoded "@" in a URL's password is masked whole.
        assert secrets.mask("via http://nova:p@ss@proxy:3128/") == "via http://nova:***@proxy:3128/"
    finally:
        secrets.clear()


def test_workers_get_the_inventory_from_the_controller(pytester: pytest.Pytester) -> None:
    """A FIFO (or ``<(cat inv.yaml)``) can be read once: the controller reads it, the workers are handed it."""
    pytester.makepyfile(test_suite=SUITE)
    fifo = pytester.path / "inv.fifo"
    os.mkfifo(fifo)

    def write_once() -> None:
        with open(fifo, "w") as f:
            f.write(GOOD)

    writer = threading.Thread(target=write_once, daemon=True)
    writer.start()
    try:
        result = pytester.runpytest("test_suite.py", "--nova-inventory=inv.fifo", "-n", "2", *QUIET)
    finally:
        if writer.is_alive():  # the run never read it: let the writer finish
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.OK, out
    assert "Traceback" not in out and "INTERNALERROR" not in out
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 1 and not outcomes.get("failed") and not outcomes.get("errors"), outcomes


def test_the_docs_list_every_class_with_its_line() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "input-safety.md").read_text()
    for name, (_, expected) in TABLE.items():
        line = expected.replace("{folder}", "<folder>").replace("{ini}", "<folder>/pytest.ini").replace("|", "\\|")
        assert f"| {name} | `ERROR: {line}` |" in doc, name
