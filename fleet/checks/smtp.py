"""The smtp check: does each peer answer on port 25 with a 220 greeting (KB Q128961, step 4)?

From the audited host: connect, read the whole greeting, EHLO, note
STARTTLS, QUIT; never DATA.  One result per target; targets that are not
host names or addresses never reach the host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleet.checks import judge
from fleet.checks.base import Platform, Step, StepOutput, platform_probes
from fleet.model import CheckResult, Status

DEFAULTS: dict[str, Any] = {
    "targets": [],
    "port": 25,
    "timeout": 5.0,
    "helo": "fleet.invalid",
    "require_starttls": False,
}


class SmtpCheck:
    """``smtp``: ``{targets: [..], port: 25, timeout: 5, helo: fleet.invalid,
    require_starttls: false}``."""

    name = "smtp"

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        judge.known_params(self.name, params, DEFAULTS)
        merged = {**DEFAULTS, **params}
        helo = str(merged["helo"])
        # The HELO name goes on the wire: a CR/LF or space in it would be a second command.
        if not judge.valid_target(helo):
            raise ValueError(f"smtp: helo must be a host name, not {merged['helo']!r}")
        return {
            "targets": judge.as_targets(self.name, merged["targets"]),
            "port": judge.as_int(self.name, "port", merged["port"], 1, 65535),
            "timeout": judge.as_number(self.name, "timeout", merged["timeout"], 0.1, 120),
            "helo": helo,
            "require_starttls": judge.as_bool(
                self.name, "require_starttls", merged["require_starttls"]
            ),
        }

    def steps(self, platform: Platform, params: Mapping[str, Any]) -> Sequence[Step]:
        return platform_probes(platform).smtp_steps(judge.probe_params(DEFAULTS, params))

    def evaluate(
        self,
        host: str,
        platform: Platform,
        params: Mapping[str, Any],
        outputs: Mapping[str, StepOutput],
    ) -> list[CheckResult]:
        probes = platform_probes(platform)
        require_starttls = bool(params.get("require_starttls", False))
        results = judge.per_target(
            host,
            self.name,
            list(params.get("targets", ())),
            self.steps(platform, params),
            outputs,
            probes.parse_smtp,
            lambda probe, _raw: judge.judge_smtp(host, probe, require_starttls),
        )
        if not results:
            return [CheckResult(host, self.name, Status.SKIPPED, "no SMTP targets")]
        return results
