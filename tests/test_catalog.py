"""The requirements catalog: schema, invariants, and coverage of the source documents.

The coverage test reads the seed document itself (``tests/data/seeds/``, the source documents kept in the
repository as test data) and proves that every data row of its tables (sections 2, 2.1, 3.1.1-3.1.6, 3.2) and
every DNS name of section 1 is quoted in the ``rows`` of some catalog entry of the matching area.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from _pytest_nova.catalog import AREAS, PHASES, SEVERITIES, Catalog, load_catalog
from _pytest_nova.errors import SourceError

SEEDS = Path(__file__).parent / "data" / "seeds"
SEED_000 = SEEDS / "000_77cdbd3ff13b5fb9.txt"  # Nova installation requirements (Russian)
SEED_002 = SEEDS / "002_da7ba6c094596acc.txt"  # Kubernetes basics guide
CATALOG_DIR = Path(__file__).parents[1] / "_pytest_nova" / "catalog"
VERSION = "nova-77cdbd3f"

_HEADER = re.compile(r"^(\d+(?:\.\d+)*)\.\s+\S")
_TABLE_HEADS = ("Источник\t", "Ресурс\t", "Порт\t")
_DNS_ITEM = re.compile(r"^- (`[^`]+`)\s*$")
_ID_PREFIX = {"dns": "dns-", "external": "ext-", "firewall": "fw-", "lb": "lb-", "os": "os-", "k8s": "k8s-",
              "inventory": "inv-"}
# Sections of the first document of seed 000 whose rows the catalog must cover, and their catalog area.
COVERED = {
    "1": "dns", "2": "external", "2.1": "external",
    **{f"3.1.{i}": "firewall" for i in range(1, 7)},
    "3.2": "lb",
}


def norm(text: str) -> str:
    """Normalise whitespace: runs of spaces collapse, table cells stay separated by one tab."""
    return "\t".join(" ".join(cell.split()) for cell in text.strip().split("\t"))


def read_seed(path: Path) -> str:
    """The text of a seed document; a missing seed fails the test (it is the ground truth, never skipped)."""
    if not path.is_file():
        pytest.fail(f"seed document not found: {path} (the source documents live in tests/data/seeds/)",
                    pytrace=False)
    return path.read_text(encoding="utf-8")


def seed_rows(text: str) -> list[tuple[str, str]]:
    """Every (section, normalised row) of the covered sections of the first document of seed 000.

    Table rows are the tab-separated lines after a header line starting with ``Источник``, ``Ресурс`` or
    ``Порт`` until the first line that is blank or has no tab; section 1 contributes its DNS list items.
    The first document ends where a second ``1.`` heading starts the next one (Nova Universe install).
    """
    rows: list[tuple[str, str]] = []
    section = ""
    in_table = False
    for line in text.splitlines():
        head = _HEADER.match(line)
        if head:
            if head.group(1) == "1" and section:
                break  # the next document of the file starts
            section, in_table = head.group(1), False
            continue
        if section not in COVERED:
            in_table = False
            continue
        if line.startswith(_TABLE_HEADS):
            in_table = True
            continue
        if in_table:
            if "\t" in line and line.strip():
                rows.append((section, norm(line)))
                continue
            in_table = False
        if section == "1":
            item = _DNS_ITEM.match(line)
            if item:
                rows.append((section, norm(item.group(1))))
    return rows


def _catalog_rows(catalog: Catalog) -> Counter[tuple[str, str, str]]:
    """(area, section, normalised text) of every catalog row, counted once per entry that quotes it."""
    found: Counter[tuple[str, str, str]] = Counter()
    for req in catalog.requirements:
        for key in {(req.area, row.section, norm(row.text)) for row in req.rows}:
            found[key] += 1
    return found


def missing_rows(catalog: Catalog, seed: Path = SEED_000) -> list[str]:
    """Seed rows that no catalog entry of the right area quotes, as ``section [area]: text`` lines."""
    found = _catalog_rows(catalog)
    return [f"{section} [{COVERED[section]}]: {text!r}" for section, text in seed_rows(read_seed(seed))
            if not found[(COVERED[section], section, text)]]


def _is_seed_row(section: str, text: str) -> bool:
    """Whether a catalog row has the shape of a covered seed row (a table row or a section 1 DNS item)."""
    return section in COVERED and ("\t" in text or (section == "1" and text.startswith("`")))


# ---- coverage -------------------------------------------------------------------------------------------


def test_catalog_covers_every_seed_row(capsys: pytest.CaptureFixture[str]) -> None:
    catalog = load_catalog()
    seed = seed_rows(read_seed(SEED_000))
    assert seed, "no rows extracted from the seed: has its layout changed?"
    assert missing_rows(catalog) == []

    # Counts, per section: seed rows vs distinct catalog rows of that section (extra rows would be invented).
    seed_count = Counter(section for section, _ in seed)
    cat_rows = {(s, t) for (area, s, t) in _catalog_rows(catalog) if _is_seed_row(s, t) and COVERED[s] == area}
    cat_count = Counter(section for section, _ in cat_rows)
    with capsys.disabled():
        print("\nseed 000 rows covered by the catalog, per section (seed / catalog):")
        for section in COVERED:
            print(f"  {section:6} {COVERED[section]:9} {seed_count[section]:3} / {cat_count[section]:3}")
        print(f"  total            {sum(seed_count.values()):3} / {sum(cat_count.values()):3}")
    assert len(set(seed)) == len(seed), "the seed repeats a row within a section; the row key is ambiguous"
    assert cat_rows - set(seed) == set(), "catalog rows that are not rows of the seed"
    assert cat_count == seed_count


def test_firewall_sentences_outside_the_tables_are_covered() -> None:
    """A rule stated in prose in 3.1.1-3.1.6 (the HTTP proxy, 3.1.5) is quoted by a firewall entry of its own."""
    section, sentences = "", []
    for line in read_seed(SEED_000).splitlines():
        head = _HEADER.match(line)
        if head:
            if head.group(1) == "1" and section:
                break
            section = head.group(1)
        elif section.startswith("3.1.") and "\t" not in line and "разрешающих правил" in line:
            sentences.append((section, norm(line)))
    assert sentences == [("3.1.5", norm(load_catalog().get("fw-http-proxy").rows[0].text))]
    quoting = [r.id for r in load_catalog().by_area("firewall") if (sentences[0][0], sentences[0][1]) in
               {(row.section, norm(row.text)) for row in r.rows}]
    assert quoting == ["fw-http-proxy"]
    proxy = load_catalog().get("fw-http-proxy")
    assert (proxy.sources, proxy.targets, proxy.bidirectional, proxy.protocol) == (
        ("nova-ctl", "nodes"), ("proxy",), False, "tcp")


def test_missing_row_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    file = folder / "firewall.yaml"
    removed = next(e for e in yaml.safe_load(file.read_text(encoding="utf-8"))["requirements"]
                   if e["id"] == "fw-bgp")
    # Delete the entry's YAML text: from its "- id:" line up to the next entry.
    lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index("  - id: fw-bgp\n")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("  - id: "))
    file.write_text("".join(lines[:start] + lines[end:]), encoding="utf-8")

    reduced = load_catalog(folder)
    assert len(reduced.by_area("firewall")) == len(load_catalog().by_area("firewall")) - 1
    missing = missing_rows(reduced)
    assert missing == [f"3.1.5 [firewall]: {norm(removed['rows'][0]['text'])!r}"]
    assert "179/tcp" in missing[0]


def test_missing_seed_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="seed document not found"):
        missing_rows(load_catalog(), tmp_path / "absent.txt")


def test_every_firewall_row_in_exactly_one_entry() -> None:
    counts = _catalog_rows(load_catalog())
    twice = [f"{s}: {t}" for (area, s, t), n in counts.items() if area == "firewall" and n > 1]
    assert twice == []
    for req in load_catalog().requirements:
        texts = [(row.section, norm(row.text)) for row in req.rows]
        assert len(texts) == len(set(texts)), f"{req.id} lists the same row twice"


def test_every_row_is_verbatim_from_its_seed() -> None:
    seeds = {"000": read_seed(SEED_000), "002": read_seed(SEED_002)}
    # A row is one whole line of its seed, or a list item without its "- " bullet (the DNS names of section 1).
    lines = {name: {norm(line) for line in text.splitlines()} | {norm(line[2:]) for line in text.splitlines()
                                                                  if line.startswith("- ")}
             for name, text in seeds.items()}
    bad = []
    for req in load_catalog().requirements:
        for row in req.rows:
            seed = "002" if row.section == "k8s-basics" else "000"
            if norm(row.text) not in lines[seed]:
                bad.append(f"{req.id} ({row.section}): {row.text!r}")
    assert bad == [], "rows must quote one whole line of the seed"


def test_merged_rows_are_explained() -> None:
    for req in load_catalog().requirements:
        if len(req.rows) > 1 and req.area in ("firewall", "external"):
            assert req.note, f"{req.id} merges {len(req.rows)} rows without a note saying why"


# ---- catalog invariants ---------------------------------------------------------------------------------


def test_every_area_present_with_one_version() -> None:
    catalog = load_catalog()
    assert catalog.version == VERSION
    for area in AREAS:
        assert catalog.by_area(area), f"no requirements for area {area}"
    for file in sorted(CATALOG_DIR.glob("*.yaml")):
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        assert data["version"] == VERSION, file.name
        assert file.stem == data["area"], f"{file.name} holds area {data['area']}"


def test_ids_unique_kebab_and_prefixed() -> None:
    ids = [r.id for r in load_catalog().requirements]
    assert len(ids) == len(set(ids))
    for req in load_catalog().requirements:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", req.id), req.id
        assert req.id.startswith(_ID_PREFIX[req.area]), req.id


def test_phases_and_common_fields() -> None:
    for req in load_catalog().requirements:
        assert req.phase in PHASES, req.id
        assert req.rows and req.summary and req.fix, req.id
        assert "\n" not in req.summary and "\n" not in req.fix, f"{req.id}: summary and fix are one line"
        assert req.section in COVERED or req.section in (
            "universe 2.4", "universe 2.7", "account 1", "account 2", "k8s-basics"), req.id
    assert {r.phase for r in load_catalog().by_area("lb")} == {"postinstall"}
    assert {r.phase for r in load_catalog().by_area("firewall")} == {"preinstall"}


def test_firewall_entries_have_ports_unless_icmp_ipip_or_to_the_proxy() -> None:
    for req in load_catalog().by_area("firewall"):
        if req.protocol in ("icmp", "ipip") or req.targets == ("proxy",):
            assert req.port is None, req.id  # the proxy rule takes the port of network.httpProxy
        else:
            assert isinstance(req.port, int) and 0 < req.port < 65536, req.id
        assert req.sources and req.targets and req.description, req.id


def test_firewall_rules_are_distinct() -> None:
    rules = Counter((r.sources, r.targets, r.port, r.protocol) for r in load_catalog().by_area("firewall"))
    assert [k for k, n in rules.items() if n > 1] == []


def test_dns_records() -> None:
    dns = load_catalog().by_area("dns")
    assert len(dns) == 10
    modules = {r.record: r.module for r in dns}
    assert modules["nova-neuvector-ui"] == modules["nova-neuvector-api-docs"] == "neuvector"
    assert modules["nova-logs-main"] == "opensearch"
    assert sum(m is None for m in modules.values()) == 7


def test_external_endpoints() -> None:
    ext = load_catalog().by_area("external")
    internet = {(r.host, r.port) for r in ext if r.mode == "internet" and r.check is None}
    assert internet == {("hub.nova-platform.io", 443), ("storage.cloud.croc.ru", 443),
                        ("access.nova-platform.io", 443), ("code.nova-platform.io", 443),
                        ("sun.nova-platform.io", 8140)}
    closed = {(r.host, r.port) for r in ext if r.mode == "closed"}
    assert closed == {(f"{h}.{{universe}}", 443) for h in ("hub", "sun", "repo", "uploads")}
    assert all(r.ips for r in ext if r.mode == "internet" and r.check is None)
    assert [r.id for r in ext if r.check] == ["ext-documented-ips", "ext-tls-trusted"]
    assert not any(r.ips for r in ext if r.mode == "closed")


def test_node_checks_have_scope_and_check() -> None:
    for req in (*load_catalog().by_area("os"), *load_catalog().by_area("k8s")):
        assert req.check and re.fullmatch(r"[a-z][a-z0-9_]*", req.check), req.id
        assert req.scope in (("nodes", "nova-ctl") if req.area == "os" else ("nodes", "cluster")), req.id
    ca = load_catalog().get("os-universe-ca")
    assert (ca.check, ca.scope, ca.params.get("mode")) == ("universe_ca_trusted", "nodes", "closed")


# ---- loader errors --------------------------------------------------------------------------------------

_GOOD_ENTRY = """\
area: firewall
version: nova-77cdbd3f
requirements:
  - id: fw-test
    section: "3.1.5"
    phase: preinstall
    severity: required
    basis: docs 3.1
    sources: [nodes]
    targets: [nodes]
    bidirectional: true
    port: 179
    protocol: {protocol}
    description: BGP
    summary: nodes reach each other on 179/tcp
    fix: open it
    rows:
      - {{section: "3.1.5", text: "x"}}
{extra}"""


def _write(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "firewall.yaml").write_text(text, encoding="utf-8")
    return folder


def test_loader_accepts_good_entry(tmp_path: Path) -> None:
    cat = load_catalog(_write(tmp_path / "c", _GOOD_ENTRY.format(protocol="tcp", extra="")))
    assert [r.id for r in cat.requirements] == ["fw-test"]
    assert cat.get("fw-test").port == 179


def test_loader_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    folder = _write(tmp_path / "c", _GOOD_ENTRY.format(protocol="tcp", extra="    colour: blue\n"))
    with pytest.raises(SourceError) as err:
        load_catalog(folder)
    assert err.value.line == 19 and err.value.key == "requirements[0].colour"
    assert str(err.value).startswith(f"{folder / 'firewall.yaml'}:19: requirements[0].colour: unknown key")


def test_loader_bad_protocol_names_file_line_and_key(tmp_path: Path) -> None:
    folder = _write(tmp_path / "c", _GOOD_ENTRY.format(protocol="sctp", extra=""))
    with pytest.raises(SourceError) as err:
        load_catalog(folder)
    assert str(err.value) == (f"{folder / 'firewall.yaml'}:13: requirements[0].protocol: "
                              "'sctp' is not one of tcp, udp, icmp, ipip")


def test_loader_tcp_rule_without_port(tmp_path: Path) -> None:
    text = _GOOD_ENTRY.format(protocol="tcp", extra="").replace("    port: 179\n", "")
    with pytest.raises(SourceError, match=r"firewall\.yaml:4: requirements\[0\]: tcp and udp rules need a port"):
        load_catalog(_write(tmp_path / "c", text))


@pytest.mark.parametrize(("old", "new", "where"), [
    ("    targets: [nodes]\n", "    targets: nodes\n", r":10: requirements\[0\]\.targets: expected a list"),
    ('{section: "3.1.5", text: "x"}', '{text: "x"}', r":18: requirements\[0\]\.rows\[0\]: a row is"),
    ("    rows:\n      - {section: \"3.1.5\", text: \"x\"}\n", "    rows: []\n",
     r":17: requirements\[0\]\.rows: list at least one row"),
    ("requirements:", "requirement:", r":1: a catalog file has the keys"),
])
def test_loader_shape_errors(tmp_path: Path, old: str, new: str, where: str) -> None:
    text = _GOOD_ENTRY.format(protocol="tcp", extra="")
    assert old in text
    with pytest.raises(SourceError, match=where):
        load_catalog(_write(tmp_path / "c", text.replace(old, new)))


@pytest.mark.parametrize(("old", "new", "where"), [
    ("    targets: [nodes]\n", "    targets: [proxy, nodes]\n", r"targets: proxy is only a rule's sole target"),
    ("    targets: [nodes]\n", "    targets: [proxy]\n", r"a rule to the proxy is one-way tcp without a port"),
])
def test_loader_proxy_target_shape(tmp_path: Path, old: str, new: str, where: str) -> None:
    text = _GOOD_ENTRY.format(protocol="tcp", extra="")
    with pytest.raises(SourceError, match=where):
        load_catalog(_write(tmp_path / "c", text.replace(old, new)))
    good = text.replace(old, "    targets: [proxy]\n").replace("    bidirectional: true\n", "")
    good = good.replace("    port: 179\n", "")
    assert load_catalog(_write(tmp_path / "ok", good)).get("fw-test").targets == ("proxy",)


def test_loader_duplicate_id_across_files(tmp_path: Path) -> None:
    folder = _write(tmp_path / "c", _GOOD_ENTRY.format(protocol="tcp", extra=""))
    (folder / "more.yaml").write_text(_GOOD_ENTRY.format(protocol="udp", extra=""), encoding="utf-8")
    with pytest.raises(SourceError, match="duplicate requirement id 'fw-test'"):
        load_catalog(folder)


# ---- severity -------------------------------------------------------------------------------------------

_QUOTE = re.compile(r"«([^»]+)»")


def test_every_entry_has_a_severity_and_the_docs_wording_it_rests_on() -> None:
    """required rests on a quote of the Nova docs (verbatim, … marks a cut); advisory says why it is not demanded.

    The post-install gate's k8s entries quote the Kubernetes guide (seed 002), the only document that shows an
    installed cluster.
    """
    nova = " ".join(read_seed(SEED_000).replace("`", "").replace("**", "").split())
    guide = " ".join(read_seed(SEED_002).split())
    for req in load_catalog().requirements:
        seed = guide if req.area == "k8s" else nova
        assert req.severity in SEVERITIES, req.id
        assert req.basis and "\n" not in req.basis, req.id
        quotes = _QUOTE.findall(req.basis)
        if req.severity == "required":
            assert quotes, f"{req.id}: a required entry quotes the docs' demand"
        for quote in quotes:
            for fragment in quote.replace("`", "").split("…"):
                fragment = " ".join(fragment.split()).strip(" ,.")
                if fragment:
                    assert fragment in seed, f"{req.id}: «{fragment}» is not in the docs"


def test_what_the_nova_docs_do_not_demand_is_advisory() -> None:
    catalog = load_catalog()
    advisory = {r.id for r in catalog.requirements if r.severity == "advisory"}
    # Kubernetes-guide and kubeadm-preflight practice: every k8s entry but the post-install gate (every node
    # registered, Ready, with its roles); docs recommendations (universe 2.7).
    gate = {"k8s-nodes-ready", "k8s-node-roles"}
    assert {r.id for r in catalog.by_area("k8s")} - gate <= advisory
    assert not gate & advisory and all(catalog.get(g).phase == "postinstall" for g in gate)
    assert {"k8s-ip-forward", "k8s-br-netfilter", "k8s-swap-off", "k8s-packages-installed",
            "os-sudoers-file", "os-universe-ca", "os-universe-ca-nova-ctl", "ext-documented-ips"} <= advisory
    assert catalog.advisory == frozenset(advisory)
    # Everything the Nova docs state as a rule or a command stays required.
    for area in ("dns", "firewall", "lb", "inventory"):
        assert all(r.severity == "required" for r in catalog.by_area(area)), area
    for req_id in ("os-user-exists", "os-sudo-nopasswd", "os-ssh-dir", "os-authorized-keys-mode",
                   "os-authorized-keys-has-key", "os-private-key", "os-resolver-internal",
                   "os-resolver-internal-nova-ctl", "ext-image-registry-hub", "ext-universe-hub"):
        assert catalog.get(req_id).severity == "required", req_id
    for req in catalog.requirements:
        if req.severity == "advisory" and req.area == "k8s":
            assert "seed 002" in req.basis, req.id


def test_loader_rejects_unknown_severity(tmp_path: Path) -> None:
    text = _GOOD_ENTRY.format(protocol="tcp", extra="").replace("severity: required", "severity: optional")
    with pytest.raises(SourceError, match=r"firewall\.yaml:7: requirements\[0\]\.severity: 'optional' is not one "
                                          "of required, advisory"):
        load_catalog(_write(tmp_path / "c", text))


def test_balancer_ports_carry_the_access_columns() -> None:
    for req in load_catalog().by_area("lb"):
        row = req.rows[0].text.split("\t")
        if req.id == "lb-api-l4-passthrough":
            assert not (req.internal or req.external)
            continue
        assert (req.internal, req.external) == (row[2] == "Да", row[3] == "Да"), req.id
