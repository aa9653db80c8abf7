"""The check contract, and the registry of checks by name.

A host check does its work in three stages:

* ``steps``: what to run on the host (a list of ``Step``); the runner batches
  every step of every check into ONE remote command per host, composed by the
  platform's shell module (``fleet.checks.unix`` or ``fleet.checks.windows``);
* the check's parser for that platform turns each step's output into facts;
* the check's judge turns facts into ``CheckResult``s.

Each check lives in its own folder, ``fleet/checks/<check>/``, and is named
once, in ``CHECKS``.  A runner check (``reach``) runs on the runner instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

from fleet.model import CheckResult, Platform

if TYPE_CHECKING:
    from fleet.plan import HostPlan

__all__ = [
    "CHECKS",
    "Composer",
    "HostCheck",
    "Platform",
    "Readings",
    "RunnerCheck",
    "Step",
    "StepOutput",
    "get_check",
    "platform_probes",
]

T = TypeVar("T")

# name -> "module:Class"; imported on first use so optional dependencies stay optional.
CHECKS: dict[str, str] = {
    "binding": "fleet.checks.binding:BindingCheck",
    "ipconfig": "fleet.checks.ipconfig:IpconfigCheck",
    "ping": "fleet.checks.ping:PingCheck",
    "smtp": "fleet.checks.smtp:SmtpCheck",
    "reach": "fleet.checks.reach:ReachCheck",
}


def get_check(name: str) -> HostCheck | RunnerCheck:
    """The check registered as ``name``; ``KeyError`` if there is none."""
    module_name, _, attr = CHECKS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cast("HostCheck | RunnerCheck", cls())


@dataclass(frozen=True)
class Step:
    """One thing to run on the host.

    ``key`` is unique within the check's steps, e.g. ``"ping:mx2"``.  On Unix
    ``script`` is a POSIX sh fragment whose every inventory-derived value is
    already quoted (``shlex.quote``).  On Windows ``script`` names a ``.ps1``
    file beside its check (``"ping/ping.ps1"``) and ``params`` reach it as
    data, never spliced into code.  ``shared`` (Unix) holds sh definitions the
    script calls, sent once per host however many steps name them (the SMTP
    probe program is the same for every target).
    """

    key: str
    script: str
    target: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    shared: tuple[str, ...] = ()


class Readings:
    """What checks read from one output, kept for the host's other checks.

    Outputs that are the same bytes (binding and ipconfig share the Unix net
    step) share one ``Readings``: the net output is parsed once per host.
    Lives as long as the host's outputs.
    """

    __slots__ = ("_found",)

    def __init__(self) -> None:
        self._found: dict[object, Any] = {}

    def once(self, reader: Callable[[], T], key: object) -> T:
        """``reader()``, or what it returned the first time ``key`` was read."""
        if key in self._found:
            return cast(T, self._found[key])
        found = self._found[key] = reader()
        return found


@dataclass(frozen=True)
class StepOutput:
    """What one step printed.  ``exit_status`` is None when its section never came back."""

    key: str
    exit_status: int | None
    stdout: bytes
    truncated: bool = False
    read: Readings = field(default_factory=Readings, compare=False, repr=False)


@runtime_checkable
class HostCheck(Protocol):
    """A check whose evidence is gathered on the audited host."""

    name: str

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Normalised params with defaults filled in; ``ValueError`` (one line) if bad."""
        ...

    def steps(self, platform: Platform, params: Mapping[str, Any]) -> Sequence[Step]: ...

    def evaluate(
        self,
        host: str,
        platform: Platform,
        params: Mapping[str, Any],
        outputs: Mapping[str, StepOutput],
    ) -> list[CheckResult]:
        """Parse and judge; a ParseError for one step becomes an ``error`` result."""
        ...


@runtime_checkable
class RunnerCheck(Protocol):
    """A check the runner performs itself (no login needed), e.g. ``reach``."""

    name: str

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]: ...

    def run(
        self, host: HostPlan, params: Mapping[str, Any], timeout: float
    ) -> list[CheckResult]: ...


class Composer(Protocol):
    """What a platform's shell module (``fleet.checks.unix``, ``fleet.checks.windows``) does."""

    def compose(self, steps: Sequence[Step], nonce: str, step_timeout: float) -> str:
        """The one script that runs every step and prints framed sections (see batch.py)."""
        ...


def platform_probes(platform: Platform) -> Composer:
    """The shell module for ``platform`` (imported on first use)."""
    return cast(Composer, importlib.import_module(f"fleet.checks.{platform.value}"))
