"""The binding check: is TCP/IP bound to an adapter that is up (KB Q128961, step 1)?

Windows: ms_tcpip bound and enabled on a connected adapter, Client for
Microsoft Networks present, no extra protocols (``windows.py``, ``binding.ps1``).
Unix: an interface up with a global IPv4 address, and the loopback up with
127.0.0.1, from the net step it shares with ipconfig (``fleet.checks.net``).
``judge.py`` decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.checks.binding.judge import judge_binding
from fleet.checks.facts import NetConfig
from fleet.checks.harness import HostWideCheck
from fleet.model import CheckResult, Platform


class BindingCheck(HostWideCheck[NetConfig]):
    """``binding``: takes no parameters; one result per host."""

    name = "binding"
    halves = {
        Platform.UNIX: "fleet.checks.net.unix",
        Platform.WINDOWS: "fleet.checks.binding.windows",
    }

    def judge(
        self, host: str, platform: Platform, params: Mapping[str, Any], facts: NetConfig, raw: str
    ) -> CheckResult:
        return judge_binding(host, facts, platform)
