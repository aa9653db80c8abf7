"""The binding check: is TCP/IP bound to an adapter that is up (KB Q128961, step 1)?

Windows: ms_tcpip bound and enabled on a connected adapter, Client for
Microsoft Networks present, no extra protocols.  Unix: an interface up with a
global IPv4 address, and the loopback up with 127.0.0.1.  The platform module
gathers and parses; ``judge.judge_binding`` decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleet.checks import judge
from fleet.checks.base import Platform, Step, StepOutput, platform_probes
from fleet.model import CheckResult


class BindingCheck:
    """``binding``: takes no parameters; one result per host."""

    name = "binding"

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        judge.known_params(self.name, params, {})
        return {}

    def steps(self, platform: Platform, params: Mapping[str, Any]) -> Sequence[Step]:
        return platform_probes(platform).binding_steps(params)

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
                lambda: probes.parse_binding(outputs),
                lambda net, _raw: judge.judge_binding(host, net, platform),
            )
        ]
