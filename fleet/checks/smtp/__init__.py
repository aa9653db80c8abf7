"""The smtp check: does each peer answer on port 25 with a 220 greeting (KB Q128961, step 4)?

From the audited host: connect, read the whole greeting, EHLO, note
STARTTLS, QUIT; never DATA.  One result per target.  Unix: ``unix.py`` runs
``unix_probe.py`` with the host's python3; Windows: ``windows.py`` and
``smtp.ps1``; ``judge.py`` decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.checks.facts import SmtpProbe
from fleet.checks.harness import PerTargetCheck
from fleet.checks.params import as_bool, as_int, as_number, as_targets, merged, valid_target
from fleet.checks.smtp.judge import judge_smtp
from fleet.model import CheckResult, Platform

DEFAULTS: dict[str, Any] = {
    "targets": [],
    "port": 25,
    "timeout": 5.0,
    "helo": "fleet.invalid",
    "require_starttls": False,
}


class SmtpCheck(PerTargetCheck[SmtpProbe]):
    """``smtp``: ``{targets: [..], port: 25, timeout: 5, helo: fleet.invalid,
    require_starttls: false}``."""

    name = "smtp"
    defaults = DEFAULTS
    halves = {
        Platform.UNIX: "fleet.checks.smtp.unix",
        Platform.WINDOWS: "fleet.checks.smtp.windows",
    }
    nothing_to_probe = "no SMTP targets"

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        given = merged(self.name, params, DEFAULTS)
        helo = str(given["helo"])
        # The HELO name goes on the wire: a CR/LF or space in it would be a second command.
        if not valid_target(helo):
            raise ValueError(f"smtp: helo must be a host name, not {given['helo']!r}")
        return {
            "targets": as_targets(self.name, given["targets"]),
            "port": as_int(self.name, "port", given["port"], 1, 65535),
            "timeout": as_number(self.name, "timeout", given["timeout"], 0.1, 120),
            "helo": helo,
            "require_starttls": as_bool(self.name, "require_starttls", given["require_starttls"]),
        }

    def judge(
        self, host: str, params: Mapping[str, Any], facts: SmtpProbe, raw: str
    ) -> CheckResult:
        return judge_smtp(host, facts, bool(params.get("require_starttls", False)))
