"""The check contract, and the registry of checks by name.

A host check does its work in three pure-ish stages:

* ``steps``: what to run on the host (a list of ``Step``); the runner batches
  every step of every check into ONE remote command per host;
* the platform's parser turns each step's output into normalised facts;
* a judge turns facts into ``CheckResult``s.

A runner check (``reach``) runs on the runner itself instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from fleet.checks.facts import NetConfig, PingResult, SmtpProbe
from fleet.model import CheckResult

if TYPE_CHECKING:
    from fleet.plan import HostPlan


class Platform(str, Enum):
    UNIX = "unix"
    WINDOWS = "windows"


@dataclass(frozen=True)
class Step:
    """One thing to run on the host.

    ``key`` is unique within the host's batch, e.g. ``"ping:mx2"``.  On Unix
    ``script`` is a POSIX sh fragment whose every inventory-derived value is
    already quoted (``shlex.quote``).  On Windows ``script`` names a ``.ps1``
    file in ``fleet/checks/ps1/`` and ``params`` reach it as data, never
    spliced into code.
    """

    key: str
    script: str
    target: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepOutput:
    """What one step printed.  ``exit_status`` is None when its section never came back."""

    key: str
    exit_status: int | None
    stdout: bytes
    truncated: bool = False


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
    return cls()


class PlatformProbes(Protocol):
    """What each platform module (``fleet.checks.unix``, ``fleet.checks.windows``) provides.

    The check classes choose the module by the host's platform; the judges
    (``fleet.checks.judge``) read the normalised facts it returns, so one
    judge serves both platforms.  Every ``parse_*`` raises ``ParseError`` on
    output that is not what the step promised.
    """

    def compose(self, steps: Sequence[Step], nonce: str, step_timeout: float) -> str:
        """The one script that runs every step and prints framed sections (see batch.py)."""
        ...

    def binding_steps(self, params: Mapping[str, Any]) -> list[Step]: ...

    def ipconfig_steps(self, params: Mapping[str, Any]) -> list[Step]: ...

    def ping_steps(self, params: Mapping[str, Any]) -> list[Step]:
        """One step per target (targets run side by side on the host)."""
        ...

    def smtp_steps(self, params: Mapping[str, Any]) -> list[Step]: ...

    def parse_binding(self, outputs: Mapping[str, StepOutput]) -> NetConfig: ...

    def parse_ipconfig(self, outputs: Mapping[str, StepOutput]) -> NetConfig: ...

    def parse_ping(self, output: StepOutput, target: str) -> PingResult: ...

    def parse_smtp(self, output: StepOutput, target: str) -> SmtpProbe: ...


def platform_probes(platform: Platform) -> PlatformProbes:
    """The platform module for ``platform`` (imported on first use)."""
    module = importlib.import_module(f"fleet.checks.{platform.value}")
    return cast(PlatformProbes, module)
