"""The typed vocabulary shared by the engines, the results JSON and the report.

Outcomes, areas and phases are ``StrEnum`` members: they compare equal to, and serialize as, the strings of
format v1, so the results JSON does not change. :class:`Record` is one record of that JSON, with the private
keys the report reads (stripped by :func:`_pytest_nova.results.public` before writing).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NotRequired, TypeAlias, TypedDict

# A value as JSON carries it: what the probe scripts answer and the run cache stores.
JSONScalar: TypeAlias = str | int | float | bool | None
JSONValue: TypeAlias = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]
JSONObject: TypeAlias = dict[str, JSONValue]


class Outcome(StrEnum):
    """The outcome of one result (``outcome`` in the results JSON)."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"
    WAIVED = "waived"
    # An advisory requirement (good practice the Nova docs do not demand) that does not hold: reported, not gating.
    WARNING = "warning"


class Area(StrEnum):
    """The area of a requirement (``check`` in the results JSON, the catalog file's ``area``)."""

    DNS = "dns"
    EXTERNAL = "external"
    FIREWALL = "firewall"
    OS = "os"
    LB = "lb"
    K8S = "k8s"
    INVENTORY = "inventory"


class Phase(StrEnum):
    """When a requirement is checked: before the platform is installed, or after."""

    PREINSTALL = "preinstall"
    POSTINSTALL = "postinstall"


class Record(TypedDict):
    """One record of the results JSON (format v1), plus the private keys the report reads.

    ``message`` is what was observed. The private keys (a leading ``_``) never reach the results JSON.
    """

    nodeid: str
    check: str
    requirement: str
    section: str
    source: str | None
    target: str | None
    port: int | None
    protocol: str | None
    outcome: str
    message: str
    severity: str
    _checked: NotRequired[str]  # what was checked, where
    _expected: NotRequired[str]  # what the docs demand, with their section
    _fix: NotRequired[str]  # how to make it hold
    _fix_shared: NotRequired[str]  # the fix shared by failures differing only in source, "{sources}" their addresses
    _fix_source: NotRequired[str]  # this failure's source address, for _fix_shared
    _unprovable: NotRequired[bool]  # skipped: the rule may or may not hold, and nothing could tell
    _waiver: NotRequired[int]  # index of the waiver that waived it
    _observed: NotRequired[str]  # the message before a waiver's reason was added to it


class CheckMeta(TypedDict, total=False):
    """What an item's ``nova_check`` property says about its check (for records of items that ended early)."""

    check: str
    requirement: str
    section: str
    source: str | None
    target: str | None
    port: int | None
    protocol: str | None
    severity: str
    fix: str
    summary: str
    kind: str
    id: str  # the check's id in the plan (its test id's parameter)
