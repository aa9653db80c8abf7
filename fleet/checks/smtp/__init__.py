"""The smtp check: does each peer answer on port 25 with a 220 greeting (KB Q128961, step 4)?

From the audited host: connect, wait (patiently: postscreen and exim delay
it on purpose) for the whole greeting, EHLO, STARTTLS and its handshake when
offered, QUIT; never DATA.  On Unix each probe has an overall deadline
(``probe.deadline``) besides its per-read timeouts; Windows notes STARTTLS
as offered without the handshake.  One result per target.  Unix: ``unix.py`` runs
``unix_probe.py`` with the host's python3; Windows: ``windows.py`` and
``smtp.ps1``; ``judge.py`` decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.checks.facts import SmtpProbe
from fleet.checks.harness import PerTargetCheck
from fleet.checks.params import as_bool, as_int, as_number, as_targets, merged, valid_target
from fleet.checks.smtp.judge import Expectations, judge_smtp
from fleet.model import CheckResult, Platform

DEFAULTS: dict[str, Any] = {
    "targets": [],
    "port": 25,
    "timeout": 5.0,
    "greeting_timeout": 30.0,
    "greeting_warn": 5.0,
    "helo": "fleet.invalid",
    "require_starttls": False,
    "cert_warn_days": 14,
    "verify_cert": False,
}


class SmtpCheck(PerTargetCheck[SmtpProbe]):
    """``smtp``: ``{targets: [..], port: 25, timeout: 5, greeting_timeout: 30,
    greeting_warn: 5, helo: fleet.invalid, require_starttls: false, cert_warn_days: 14,
    verify_cert: false}``.

    ``timeout`` bounds the connect and each reply after the greeting;
    ``greeting_timeout`` is the patience for the greeting (RFC 5321 allows a
    client five minutes), ``greeting_warn`` the delay after which it is slow.
    ``verify_cert`` also checks the certificate against the host's CA store (a
    second handshake when it does not verify); off by default, as MTAs' own
    opportunistic STARTTLS on port 25 does not verify either.
    """

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
            "greeting_timeout": as_number(
                self.name, "greeting_timeout", given["greeting_timeout"], 0.1, 300
            ),
            "greeting_warn": as_number(self.name, "greeting_warn", given["greeting_warn"], 0, 300),
            "helo": helo,
            "require_starttls": as_bool(self.name, "require_starttls", given["require_starttls"]),
            "cert_warn_days": as_int(self.name, "cert_warn_days", given["cert_warn_days"], 0, 3650),
            "verify_cert": as_bool(self.name, "verify_cert", given["verify_cert"]),
        }

    def judge(
        self, host: str, params: Mapping[str, Any], facts: SmtpProbe, raw: str
    ) -> CheckResult:
        given = {**DEFAULTS, **params}
        wants = Expectations(
            require_starttls=bool(given["require_starttls"]),
            greeting_warn=float(given["greeting_warn"]),
            cert_warn_days=int(given["cert_warn_days"]),
        )
        return judge_smtp(host, facts, wants)
