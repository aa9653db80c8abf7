"""The ping check: can the host ping its gateway and its peers (KB Q128961, step 3)?

One result per target.  The special target "gateway" (on by default) is the
host's own default gateway, looked up on the host in the same step.  Targets
that are not host names or addresses never reach the host: they come back as
``error`` results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleet.checks import judge
from fleet.checks.base import Platform, Step, StepOutput, platform_probes
from fleet.model import CheckResult, Status

DEFAULTS: dict[str, Any] = {"targets": [], "gateway": True, "count": 2, "timeout": 2.0}


class PingCheck:
    """``ping``: ``{targets: [..], gateway: true, count: 2, timeout: 2}``."""

    name = "ping"

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        judge.known_params(self.name, params, DEFAULTS)
        merged = {**DEFAULTS, **params}
        return {
            "targets": judge.as_targets(self.name, merged["targets"]),
            "gateway": judge.as_bool(self.name, "gateway", merged["gateway"]),
            "count": judge.as_int(self.name, "count", merged["count"], 1, 100),
            "timeout": judge.as_number(self.name, "timeout", merged["timeout"], 0.1, 60),
        }

    def steps(self, platform: Platform, params: Mapping[str, Any]) -> Sequence[Step]:
        return platform_probes(platform).ping_steps(judge.probe_params(DEFAULTS, params))

    def evaluate(
        self,
        host: str,
        platform: Platform,
        params: Mapping[str, Any],
        outputs: Mapping[str, StepOutput],
    ) -> list[CheckResult]:
        probes = platform_probes(platform)
        results = judge.per_target(
            host,
            self.name,
            list(params.get("targets", ())),
            self.steps(platform, params),
            outputs,
            probes.parse_ping,
            lambda ping, raw: judge.judge_ping(host, ping, raw),
        )
        if not results:
            return [CheckResult(host, self.name, Status.SKIPPED, "no targets to ping")]
        return results
