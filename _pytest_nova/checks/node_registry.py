"""The facts a node's one facts run gathers, and how a plugin adds one (:class:`NodeFact`).

``probes/node_facts.py`` gathers the built-in facts (:data:`BUILTIN_FACTS`: the account, sudo, stats, sysctls…)
by itself. A plugin adds a fact in one of two forms, both sent with the probe and run inside the same run, so a
rule reading it costs no extra SSH session:

- ``command``: an argv run without a shell; the fact is ``{"rc": …, "out": …, "err": …}``;
- ``gather``: a module-level Python function without arguments, standard library only, its imports inside its
  body; it runs under the host's ``python3`` (3.6+) and the fact is its return value (JSON data).

A fact that fails is ``{"error": "…"}``; one still running at the probe's deadline is
``{"error": "no result in time"}``. Rules read a plugin's fact with :func:`gathered`.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from _pytest_nova.checks.facts import Facts
from _pytest_nova.model import JSONObject, JSONValue
from _pytest_nova.plan import Check
from _pytest_nova.verdicts import Verdict

BUILTIN_FACTS = tuple(name for name in Facts.__annotations__ if name != "extra")


class FactError(ValueError):
    """A fact that cannot be sent to the hosts (a plugin's mistake), named with the reason."""


@dataclass(frozen=True)
class NodeFact:
    """One fact a plugin adds to the node's facts run: a ``command`` or a ``gather`` function (exactly one)."""

    name: str
    command: tuple[str, ...] = ()
    gather: Callable[[], object] | None = None
    timeout: float = 5.0  # seconds a command may run (a gatherer is bounded by the probe's deadline)

    def spec(self) -> JSONObject:
        """What the probe receives for this fact; raises :class:`FactError` when it cannot be sent."""
        if not self.name.isidentifier():
            raise FactError(f"fact {self.name!r}: a name is letters, digits and _")
        if not (isinstance(self.timeout, int | float) and math.isfinite(self.timeout) and 0 < self.timeout <= 600):
            raise FactError(f"fact {self.name!r}: timeout {self.timeout!r} is not a number of seconds in (0, 600]")
        if bool(self.command) == (self.gather is not None):
            raise FactError(f"fact {self.name!r}: give exactly one of command=(argv…) or gather=function")
        if self.command:
            if not all(isinstance(a, str) for a in self.command) or isinstance(self.command, str):
                raise FactError(f"fact {self.name!r}: command is a tuple of strings (an argv, run without a shell)")
            return {"command": list(self.command), "timeout": float(self.timeout)}
        fn = self.gather
        if fn is None:
            raise FactError(f"fact {self.name!r}: give command=(argv…) or gather=function")
        name = getattr(fn, "__name__", "")
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError) as exc:
            raise FactError(f"fact {self.name!r}: the source of gather cannot be read ({exc})") from None
        if not source.startswith("def ") or name == "<lambda>":
            raise FactError(f"fact {self.name!r}: gather is a plain module-level function (def, no decorator)")
        return {"python": source, "function": name}


def gathered(facts: Facts, name: str) -> JSONValue:
    """The value of plugin fact ``name`` in a node's facts (``{"error": …}`` when it failed; None if not gathered)."""
    return (facts.get("extra") or {}).get(name)


def node_verdicts(check: Check, request: pytest.FixtureRequest) -> list[Verdict]:
    """The verdicts of a node check: pass it as the ``verdicts`` of a kind whose check type subclasses NodeCheck.

    Judged by the run's node rules from the node's one facts run, which gathers what every selected node check
    of the host needs, the plugin's ones included.
    """
    engine = request.getfixturevalue("node_facts")  # checks.node.NodeFacts; a plugin module, loaded by pytest
    verdicts: list[Verdict] = engine.verdicts(check)
    return verdicts
