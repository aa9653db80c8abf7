"""The ping check: can the host ping its gateway and its peers (KB Q128961, step 3)?

One result per target.  The special target "gateway" (on by default) is the
host's own default gateway, looked up on the host in the same step; an on-link
default route has none, and that target is skipped saying so.  Unix:
``unix.py``; Windows: ``windows.py`` and ``ping.ps1``; ``judge.py`` decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet import causes
from fleet.checks.facts import PingResult, as_facts
from fleet.checks.harness import PerTargetCheck
from fleet.checks.params import as_bool, as_int, as_number, as_targets, merged
from fleet.checks.ping.judge import judge_ping
from fleet.model import CheckResult, Platform, Status

GATEWAY = "gateway"  # the ping target that means "this host's default gateway"
DEFAULTS: dict[str, Any] = {"targets": [], "gateway": True, "count": 2, "timeout": 2.0}
ON_LINK = "default route has no gateway"  # how a gateway lookup's error starts for one


def on_link_note(dev: str) -> str:
    """The gateway lookup's answer for an on-link default route (``default dev ppp0``)."""
    return f"{ON_LINK} (on-link via dev {dev})"


def judge_on_link(host: str, ping: PingResult, evidence: str) -> CheckResult:
    """Nothing to ping for an on-link default route: skipped, saying why (not a gateway down)."""
    return CheckResult(
        host=host,
        check="ping",
        status=Status.SKIPPED,
        summary=f"gateway: {ping.error}: nothing to ping",
        target=ping.target,
        facts=as_facts(ping),
        evidence=evidence,
        cause=causes.NO_TARGETS,
    )


class PingCheck(PerTargetCheck[PingResult]):
    """``ping``: ``{targets: [..], gateway: true, count: 2, timeout: 2}``."""

    name = "ping"
    defaults = DEFAULTS
    halves = {
        Platform.UNIX: "fleet.checks.ping.unix",
        Platform.WINDOWS: "fleet.checks.ping.windows",
    }
    nothing_to_probe = "no targets to ping"

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        given = merged(self.name, params, DEFAULTS)
        return {
            "targets": as_targets(self.name, given["targets"]),
            "gateway": as_bool(self.name, "gateway", given["gateway"]),
            "count": as_int(self.name, "count", given["count"], 1, 100),
            "timeout": as_number(self.name, "timeout", given["timeout"], 0.1, 60),
        }

    def targets(self, params: Mapping[str, Any]) -> list[str]:
        """The gateway first (when asked for), then the targets."""
        targets = list(params.get("targets", ()))
        if params.get("gateway", True) and GATEWAY not in targets:
            targets.insert(0, GATEWAY)
        return targets

    def judge(
        self, host: str, params: Mapping[str, Any], facts: PingResult, raw: str
    ) -> CheckResult:
        if facts.target == GATEWAY and facts.error.startswith(ON_LINK):
            return judge_on_link(host, facts, raw)
        return judge_ping(host, facts, raw)
