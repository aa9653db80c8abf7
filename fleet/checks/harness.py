"""The machinery every host check shares: steps per platform, outputs to results.

A check is a class naming its platform halves (a module per platform, e.g.
``fleet.checks.ping.unix``) and its judge.  This module turns the halves'
steps and parsers and the judge into ``CheckResult``s, so that every check
says "could not run", "output truncated" and "not a valid host name" the same
way, with the same cause and a piece of the raw output as evidence.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from fleet import causes
from fleet.checks.base import Step, StepOutput
from fleet.checks.params import known_params, valid_target
from fleet.errors import ParseError
from fleet.model import CheckResult, Platform, Status

F = TypeVar("F")
F_co = TypeVar("F_co", covariant=True)

EVIDENCE_LIMIT = 800  # characters of raw output kept as evidence

# What a parser may raise on output it does not understand.  The Unix parsers
# raise ParseError only; the others are caught too so that a parser's blind
# spot becomes an ``error`` result instead of ending the host's audit.
PARSE_FAILURES = (ParseError, ValueError, KeyError, TypeError, IndexError, AttributeError)

# A judge's finding: how bad, its cause (fleet.causes), the operator's sentence.
Finding = tuple[Status, str, str]


class HostProbe(Protocol[F_co]):
    """One platform's half of a check that reads the host as a whole (binding, ipconfig)."""

    def steps(self, params: Mapping[str, Any]) -> list[Step]: ...

    def parse(self, outputs: Mapping[str, StepOutput]) -> F_co: ...


class TargetProbe(Protocol[F_co]):
    """One platform's half of a check run once per target (ping, smtp)."""

    def step(self, key: str, target: str, params: Mapping[str, Any]) -> Step: ...

    def parse(self, output: StepOutput, target: str) -> F_co: ...


# ---------------------------------------------------------------- results


def excerpt(raw: bytes | str, limit: int = EVIDENCE_LIMIT) -> str:
    """A short piece of raw output for the report: its head and tail when long."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[...]\n{text[-half:]}"


def output_problem(output: StepOutput | None) -> tuple[str, str] | None:
    """Why a step's output cannot be judged, and its cause; None when it can."""
    if output is not None and output.exit_status is None and output.truncated:
        return (
            "output truncated: the host's output passed its cap before this step's part",
            causes.OUTPUT_TRUNCATED,
        )
    if output is None or output.exit_status is None:
        return "no output came back for this step (the batch was cut short)", causes.OUTPUT_LOST
    if output.truncated:
        return f"output was truncated after {len(output.stdout)} bytes", causes.OUTPUT_TRUNCATED
    return None


def error_result(
    host: str,
    check: str,
    reason: str,
    target: str | None = None,
    evidence: str = "",
    cause: str = causes.UNPARSED,
) -> CheckResult:
    """The check could not run or its output made no sense."""
    label = f"{target}: " if target else ""
    return CheckResult(
        host=host,
        check=check,
        status=Status.ERROR,
        summary=f"{label}{reason}",
        target=target,
        evidence=evidence,
        cause=cause,
    )


def judged(
    host: str,
    check: str,
    keys: Sequence[str],
    outputs: Mapping[str, StepOutput],
    parse: Callable[[], F],
    verdict: Callable[[F, str], CheckResult],
    target: str | None = None,
) -> CheckResult:
    """Parse the outputs of the steps ``keys`` and judge them; never raises.

    A missing or truncated section, or output the parser refuses, becomes an
    ``error`` result carrying the reason, its cause and a piece of the raw
    output.  ``verdict`` gets the facts and that piece (for evidence).
    """
    shown = excerpt(b"\n".join(outputs[k].stdout for k in keys if k in outputs))
    for key in keys:
        problem = output_problem(outputs.get(key))
        if problem:
            return error_result(host, check, problem[0], target, shown, problem[1])
    try:
        facts = parse()
    except PARSE_FAILURES as exc:
        if isinstance(exc, ParseError):
            return error_result(host, check, str(exc), target, shown, exc.cause)
        return error_result(host, check, f"unreadable output ({exc!r})", target, shown)
    return verdict(facts, shown)


def with_findings(
    host: str,
    check: str,
    findings: Sequence[Finding],
    ok_summary: str,
    facts: Mapping[str, Any],
    evidence: str,
) -> CheckResult:
    """The result of the worst findings (their messages; the first one's cause), or ok."""
    status, summary, cause = Status.OK, ok_summary, ""
    if findings:
        status = max((s for s, _, _ in findings), key=lambda s: s.severity)
        worst = [(c, m) for s, c, m in findings if s is status]
        summary, cause = "; ".join(m for _, m in worst), worst[0][0]
    return CheckResult(
        host=host,
        check=check,
        status=status,
        summary=summary,
        facts={**facts, "findings": [{"status": s.value, "message": m} for s, _, m in findings]},
        evidence=evidence,
        cause=cause,
    )


# ---------------------------------------------------------------- the two kinds of check


class _Check:
    """What both kinds share: a name, defaults, platform halves imported on first use."""

    name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = {}
    # Platform -> the module of that platform's half, e.g. "fleet.checks.ping.unix".
    halves: ClassVar[Mapping[Platform, str]]

    def __init__(self) -> None:
        self._halves: dict[Platform, Any] = {}

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Normalised params; this default takes none."""
        known_params(self.name, params, self.defaults)
        return {}

    def half(self, platform: Platform) -> Any:
        module = self._halves.get(platform)
        if module is None:
            module = self._halves[platform] = importlib.import_module(self.halves[platform])
        return module


class HostWideCheck(_Check, Generic[F]):
    """A check with one result per host, judged from the host as a whole."""

    def probe(self, platform: Platform) -> HostProbe[F]:
        return cast(HostProbe[F], self.half(platform))

    def steps(self, platform: Platform, params: Mapping[str, Any]) -> Sequence[Step]:
        return self.probe(platform).steps(params)

    def evaluate(
        self,
        host: str,
        platform: Platform,
        params: Mapping[str, Any],
        outputs: Mapping[str, StepOutput],
    ) -> list[CheckResult]:
        probe = self.probe(platform)
        keys = [step.key for step in probe.steps(params)]

        def verdict(facts: F, shown: str) -> CheckResult:
            return self.judge(host, platform, params, facts, shown)

        return [judged(host, self.name, keys, outputs, lambda: probe.parse(outputs), verdict)]

    def judge(
        self, host: str, platform: Platform, params: Mapping[str, Any], facts: F, raw: str
    ) -> CheckResult:
        raise NotImplementedError


class PerTargetCheck(_Check, Generic[F]):
    """A check with one result per target, in the operator's order.

    A target that is not a host name or address never reaches the host: it
    comes back as an ``error`` result in its place.
    """

    nothing_to_probe: ClassVar[str] = "no targets"

    def probe(self, platform: Platform) -> TargetProbe[F]:
        return cast(TargetProbe[F], self.half(platform))

    def targets(self, params: Mapping[str, Any]) -> list[str]:
        """What the steps probe, in order (a check may add its own, as ping's gateway)."""
        return list(params.get("targets", ()))

    def key(self, target: str) -> str:
        return f"{self.name}:{target}"

    def steps(self, platform: Platform, params: Mapping[str, Any]) -> Sequence[Step]:
        probe = self.probe(platform)
        params = {**self.defaults, **params}
        probed = (t for t in self.targets(params) if valid_target(t))
        return [probe.step(self.key(t), t, params) for t in probed]

    def evaluate(
        self,
        host: str,
        platform: Platform,
        params: Mapping[str, Any],
        outputs: Mapping[str, StepOutput],
    ) -> list[CheckResult]:
        probe = self.probe(platform)
        results = {
            target: self._judged(host, probe, params, outputs, target)
            for target in self.targets(params)
            if valid_target(target)
        }
        asked = list(params.get("targets", ()))
        extra = [t for t in results if t not in asked]  # targets the check added come first
        found = [results.get(t) or self._unprobed(host, t) for t in [*extra, *asked]]
        if not found:
            return [
                CheckResult(
                    host, self.name, Status.SKIPPED, self.nothing_to_probe, cause=causes.NO_TARGETS
                )
            ]
        return found

    def _judged(
        self,
        host: str,
        probe: TargetProbe[F],
        params: Mapping[str, Any],
        outputs: Mapping[str, StepOutput],
        target: str,
    ) -> CheckResult:
        key = self.key(target)

        def verdict(facts: F, shown: str) -> CheckResult:
            return self.judge(host, params, facts, shown)

        def parse() -> F:
            return probe.parse(outputs[key], target)

        return judged(host, self.name, [key], outputs, parse, verdict, target)

    def _unprobed(self, host: str, target: str) -> CheckResult:
        if not valid_target(target):
            return error_result(
                host,
                self.name,
                "not a valid host name or address",
                target,
                cause=causes.INVALID_TARGET,
            )
        return error_result(
            host, self.name, "no step was run for this target", target, cause=causes.OUTPUT_LOST
        )

    def judge(self, host: str, params: Mapping[str, Any], facts: F, raw: str) -> CheckResult:
        raise NotImplementedError
