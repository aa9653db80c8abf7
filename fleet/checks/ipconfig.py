"""The ipconfig check: is the IP configuration sane (KB Q128961, step 2)?

Address and mask, DHCP or static, default gateway inside a subnet of the
host, DNS servers; no APIPA 169.254.x.x and no 0.0.0.0.  The platform module
gathers and parses; ``judge.judge_ipconfig`` decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleet.checks import judge
from fleet.checks.base import Platform, Step, StepOutput, platform_probes
from fleet.model import CheckResult


class IpconfigCheck:
    """``ipconfig``: takes no parameters; one result per host."""

    name = "ipconfig"

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        judge.known_params(self.name, params, {})
        return {}

    def steps(self, platform: Platform, params: Mapping[str, Any]) -> Sequence[Step]:
        return platform_probes(platform).ipconfig_steps(params)

    def evaluate(
        self,
        host: str,
        platform: Platform,
        params: Mapping[str, Any],
        outputs: Mapping[str, StepOutput],
    ) -> list[CheckResult]:
        probes = platform_probes(platform)
        return [
            judge.judged(
                host,
                self.name,
                self.steps(platform, params),
                outputs,
                lambda: probes.parse_ipconfig(outputs),
                lambda net, _raw: judge.judge_ipconfig(host, net),
            )
        ]
