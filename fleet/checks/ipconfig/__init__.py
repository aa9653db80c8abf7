"""The ipconfig check: is the IP configuration sane (KB Q128961, step 2)?

Address and mask, DHCP or static, default gateway inside a subnet of the
host, DNS servers; no APIPA 169.254.x.x and no 0.0.0.0.  Unix reads the net
step it shares with binding (``fleet.checks.net``); Windows runs
``ipconfig.ps1`` (``windows.py``).  ``judge.py`` decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.checks.facts import NetConfig
from fleet.checks.harness import HostWideCheck
from fleet.checks.ipconfig.judge import judge_ipconfig
from fleet.model import CheckResult, Platform


class IpconfigCheck(HostWideCheck[NetConfig]):
    """``ipconfig``: takes no parameters; one result per host."""

    name = "ipconfig"
    halves = {
        Platform.UNIX: "fleet.checks.net.unix",
        Platform.WINDOWS: "fleet.checks.ipconfig.windows",
    }

    def judge(
        self, host: str, platform: Platform, params: Mapping[str, Any], facts: NetConfig, raw: str
    ) -> CheckResult:
        return judge_ipconfig(host, facts)
