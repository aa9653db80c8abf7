"""fleet.checks.facts: typed facts survive the trip through a result's dict (report.json)."""

from __future__ import annotations

import json

import pytest

from fleet.checks.facts import (
    Address,
    Interface,
    NetConfig,
    PingResult,
    SmtpOutcome,
    SmtpProbe,
    as_facts,
    net_config_from,
    ping_result_from,
    smtp_probe_from,
)

NET = NetConfig(
    interfaces=(
        Interface("lo", True, loopback=True, ipv4=(Address("127.0.0.1", 8),)),
        Interface(
            "Ethernet0",
            True,
            ipv4=(Address("198.18.0.11", 24, True),),
            dhcp=True,
            gateways=("198.18.0.1",),
            dns=("198.18.0.53",),
            mac="00-15-5D-01-02-03",
            description="vmxnet3 Ethernet Adapter",
            bindings=(("ms_tcpip", True), ("ms_msclient", False)),
        ),
    ),
    default_gateways=("198.18.0.1",),
    dns_servers=("198.18.0.53",),
    source="Get-NetAdapterBinding",
)
PING = PingResult("mx2", 3, 2, 0.31, 0.42, 0.55, "198.18.0.12", "")
SMTP = SmtpProbe(
    "mx2", 25, SmtpOutcome.BAD_GREETING, "198.18.0.12", 421, ("421 busy",), (), False, "", 1.5
)
SMTP_TLS = SmtpProbe(
    "mx3", 25, "ok", "198.18.0.13", 220, ("220-wait", "220 mx3"), ("250 STARTTLS",), True,
    greeting_ms=6012.5, stage="quit", tls_checked=True, tls_protocol="TLSv1.3",
    cert_subject="CN=mx3.lab", cert_issuer="CN=mx3.lab", cert_not_after="2027-01-01T00:00:00Z",
    cert_verified=False, cert_verify_error="self-signed certificate",
)  # fmt: skip


@pytest.mark.parametrize(
    ("value", "decode"),
    [
        (NET, net_config_from),
        (PING, ping_result_from),
        (SMTP, smtp_probe_from),
        (SMTP_TLS, smtp_probe_from),
    ],
)
def test_facts_come_back_equal_from_json(value, decode):
    assert decode(json.loads(json.dumps(as_facts(value)))) == value


@pytest.mark.parametrize("decode", [net_config_from, ping_result_from, smtp_probe_from])
def test_facts_that_are_not_that_type_say_so(decode):
    with pytest.raises(ValueError, match="not a"):
        decode({"open": True, "port": 22})
