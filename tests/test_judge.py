"""The judges on facts built here: what an operator reads for each kind of trouble."""

from __future__ import annotations

import datetime

import pytest

from fleet import causes
from fleet.checks import harness, params
from fleet.checks.base import Platform, StepOutput
from fleet.checks.binding.judge import judge_binding
from fleet.checks.facts import (
    SMTP_BAD_GREETING,
    SMTP_ERROR,
    SMTP_OK,
    SMTP_REFUSED,
    SMTP_TIMEOUT,
    SMTP_UNREACHABLE,
    SMTP_UNRESOLVED,
    Address,
    Interface,
    NetConfig,
    PingResult,
    SmtpProbe,
)
from fleet.checks.ipconfig.judge import judge_ipconfig
from fleet.checks.ping.judge import judge_ping
from fleet.checks.smtp.judge import Expectations, judge_smtp
from fleet.model import Status

LO = Interface("lo", up=True, loopback=True, ipv4=(Address("127.0.0.1", 8),))


def eth(*addresses: str, up: bool = True, dhcp: bool | None = None, name: str = "eth0"):
    parsed = tuple(Address(a.split("/")[0], int(a.split("/")[1])) for a in addresses)
    return Interface(name, up=up, ipv4=parsed, dhcp=dhcp)


def unix_net(*interfaces: Interface, gateways=("198.18.0.1",), dns=("198.18.0.53",)):
    return NetConfig(interfaces=(LO, *interfaces), default_gateways=gateways, dns_servers=dns)


TCPIP_ONLY = (("ms_tcpip", True), ("ms_tcpip6", True), ("ms_msclient", True), ("ms_server", True))


def adapter(name="Ethernet0", bindings=TCPIP_ONLY, up=True, address="198.18.0.21/24"):
    ip, prefix = address.split("/")
    return Interface(name, up=up, ipv4=(Address(ip, int(prefix)),), dhcp=False, bindings=bindings)


def windows_net(*adapters: Interface):
    return NetConfig(interfaces=adapters, default_gateways=("198.18.0.1",), dns_servers=("1.1",))


class TestBinding:
    def test_unix_host_with_a_global_address_is_bound(self):
        result = judge_binding("mx1", unix_net(eth("198.18.0.11/24")), Platform.UNIX)
        assert result.status is Status.OK
        assert result.summary == "TCP/IP bound to eth0"
        assert result.cause == ""
        assert result.facts["bound"] == ["eth0"]
        assert "eth0 up 198.18.0.11/24" in result.evidence

    def test_unix_host_with_only_apipa_fails(self):
        result = judge_binding("mx1", unix_net(eth("169.254.10.3/16")), Platform.UNIX)
        assert result.status is Status.FAIL
        assert result.summary == "no up interface has a global IPv4 address (eth0)"
        assert result.cause == causes.NO_INTERFACE_UP

    def test_unix_host_with_every_interface_down_fails(self):
        net = unix_net(eth("198.18.0.11/24", up=False))
        result = judge_binding("mx1", net, Platform.UNIX)
        assert result.status is Status.FAIL
        assert result.summary == "no network interface is up"
        assert result.cause == causes.NO_INTERFACE_UP

    def test_loopback_without_127_0_0_1_warns_on_unix(self):
        net = NetConfig(interfaces=(Interface("lo", up=True, loopback=True), eth("198.18.0.11/24")))
        result = judge_binding("mx1", net, Platform.UNIX)
        assert result.status is Status.WARN
        assert result.summary == "loopback lo has no 127.0.0.1"
        assert result.cause == causes.LOOPBACK_DOWN

    def test_loopback_down_warns_on_unix(self):
        down = Interface("lo", up=False, loopback=True, ipv4=(Address("127.0.0.1", 8),))
        result = judge_binding(
            "mx1", NetConfig(interfaces=(down, eth("198.18.0.11/24"))), Platform.UNIX
        )
        assert result.status is Status.WARN
        assert result.summary == "loopback lo is down"
        assert result.cause == causes.LOOPBACK_DOWN

    def test_windows_without_tcpip_on_its_adapter_fails(self):
        unbound = adapter(bindings=(("ms_tcpip", False), ("ms_msclient", True)))
        result = judge_binding("win1", windows_net(unbound), Platform.WINDOWS)
        assert result.status is Status.FAIL
        assert result.summary == "TCP/IP not bound to Ethernet0"
        assert result.cause == causes.TCPIP_UNBOUND

    def test_windows_has_no_loopback_and_is_not_warned_for_it(self):
        result = judge_binding("win1", windows_net(adapter()), Platform.WINDOWS)
        assert result.status is Status.OK
        assert result.summary == "TCP/IP bound to Ethernet0"

    def test_windows_without_client_for_microsoft_networks_warns(self):
        result = judge_binding(
            "win1", windows_net(adapter(bindings=(("ms_tcpip", True),))), Platform.WINDOWS
        )
        assert result.status is Status.WARN
        assert result.summary == "Client for Microsoft Networks not bound to Ethernet0"
        assert result.cause == causes.MSCLIENT_UNBOUND

    def test_windows_extra_protocols_warn(self):
        bindings = (*TCPIP_ONLY, ("ms_nwipx", True), ("ms_netbeui", False))
        result = judge_binding("win1", windows_net(adapter(bindings=bindings)), Platform.WINDOWS)
        assert result.status is Status.WARN
        assert result.summary == "other protocols bound to Ethernet0: ms_nwipx"
        assert result.cause == causes.EXTRA_PROTOCOLS

    def test_windows_second_adapter_without_tcpip_warns_only(self):
        second = adapter("Ethernet1", bindings=(("ms_tcpip", False),), address="10.0.0.5/24")
        result = judge_binding("win1", windows_net(adapter(), second), Platform.WINDOWS)
        assert result.status is Status.WARN
        assert result.summary == "TCP/IP not bound to Ethernet1"
        assert result.cause == causes.TCPIP_UNBOUND


class TestIpconfig:
    def test_sane_configuration_is_ok_and_says_what_it_saw(self):
        result = judge_ipconfig("mx1", unix_net(eth("198.18.0.11/24", dhcp=True)))
        assert result.status is Status.OK
        assert result.summary == ("eth0 198.18.0.11/24 (DHCP), gateway 198.18.0.1, DNS 198.18.0.53")
        assert result.cause == ""

    def test_apipa_address_fails_ipconfig(self):
        result = judge_ipconfig("mx1", unix_net(eth("169.254.10.3/16")))
        assert result.status is Status.FAIL
        assert "APIPA address 169.254.10.3 on eth0: DHCP failed" in result.summary
        messages = [f["message"] for f in result.facts["findings"]]
        assert "default gateway 198.18.0.1 is outside every interface's subnet" in messages
        assert result.cause == causes.APIPA

    def test_apipa_next_to_a_real_address_only_warns(self):
        result = judge_ipconfig("mx1", unix_net(eth("198.18.0.11/24", "169.254.10.3/16")))
        assert result.status is Status.WARN
        assert result.summary == "APIPA address 169.254.10.3 on eth0: DHCP failed"
        assert result.cause == causes.APIPA

    def test_the_cause_is_the_worst_findings_not_the_first(self):
        # A leftover APIPA address only warns; the missing gateway fails and names the cause.
        net = unix_net(eth("198.18.0.11/24", "169.254.10.3/16"), gateways=())
        result = judge_ipconfig("mx1", net)
        assert [f["status"] for f in result.facts["findings"]] == ["warn", "fail"]
        assert (result.status, result.cause) == (Status.FAIL, causes.NO_GATEWAY)

    def test_zero_address_fails(self):
        result = judge_ipconfig("mx1", unix_net(eth("0.0.0.0/0"), gateways=()))
        assert result.status is Status.FAIL
        assert "address 0.0.0.0 on eth0" in result.summary
        assert result.cause == causes.ZERO_ADDRESS

    def test_no_default_gateway_fails(self):
        result = judge_ipconfig("mx1", unix_net(eth("198.18.0.11/24"), gateways=()))
        assert result.status is Status.FAIL
        assert result.summary == "no default gateway"
        assert result.cause == causes.NO_GATEWAY

    def test_gateway_outside_every_subnet_fails(self):
        result = judge_ipconfig("mx1", unix_net(eth("198.18.0.11/24"), gateways=("10.9.9.1",)))
        assert result.status is Status.FAIL
        assert result.summary == "default gateway 10.9.9.1 is outside every interface's subnet"
        assert result.cause == causes.GATEWAY_OFF_SUBNET

    def test_no_ipv4_at_all_fails(self):
        result = judge_ipconfig("mx1", unix_net(eth(), gateways=()))
        assert result.status is Status.FAIL
        assert result.summary.startswith("no IPv4 address on any up interface")
        assert result.cause == causes.NO_IPV4

    def test_down_interfaces_do_not_count(self):
        result = judge_ipconfig("mx1", unix_net(eth("198.18.0.11/24", up=False)))
        assert result.status is Status.FAIL
        assert "no IPv4 address on any up interface" in result.summary
        assert result.cause == causes.NO_IPV4

    def test_no_dns_servers_warns(self):
        result = judge_ipconfig("mx1", unix_net(eth("198.18.0.11/24"), dns=()))
        assert result.status is Status.WARN
        assert result.summary == "no DNS servers configured"
        assert result.cause == causes.NO_DNS

    def test_facts_are_the_normalised_netconfig(self):
        result = judge_ipconfig("mx1", unix_net(eth("198.18.0.11/24")))
        assert result.facts["default_gateways"] == ("198.18.0.1",)
        assert result.facts["interfaces"][1]["ipv4"][0] == {
            "address": "198.18.0.11",
            "prefix": 24,
            "dynamic": None,
        }


class TestPing:
    def test_no_loss_is_ok_with_rtt(self):
        ping = PingResult("mx2", 2, 2, 0.05, 0.07, 0.09, address="198.18.0.12")
        result = judge_ping("mx1", ping)
        assert result.status is Status.OK
        assert result.summary == "mx2: 2/2 replies, rtt min/avg/max 0.05/0.07/0.09 ms"
        assert result.target == "mx2"
        assert result.facts["loss_percent"] == 0.0
        assert result.cause == ""

    def test_some_loss_warns(self):
        result = judge_ping("mx1", PingResult("mx2", 4, 2, 1.3, 1.4, 1.5))
        assert result.status is Status.WARN
        assert result.summary.startswith("mx2: 2/4 replies (50% loss)")
        assert result.cause == causes.PACKET_LOSS

    def test_all_lost_fails(self):
        result = judge_ping("mx1", PingResult("mx2", 2, 0))
        assert result.status is Status.FAIL
        assert result.summary == "mx2: 0/2 replies"
        assert result.cause == causes.NO_REPLY

    def test_all_lost_with_icmp_error_says_so(self):
        ping = PingResult("mx2", 5, 0, error="destination host unreachable")
        result = judge_ping("mx1", ping)
        assert result.summary == "mx2: 0/5 replies (destination host unreachable)"
        assert result.cause == causes.UNREACHABLE

    @pytest.mark.parametrize(
        ("error", "cause"),
        [
            ("timed out", causes.NO_REPLY),  # Windows' Win32_PingStatus 11010
            ("host unreachable", causes.UNREACHABLE),
            ("general failure (no route from this host?)", causes.UNREACHABLE),
            ("unknown host", causes.NAME_UNRESOLVED),  # Windows resolves per echo
            ("TTL expired in transit", causes.UNREACHABLE),
        ],
    )
    def test_every_probe_lost_has_the_cause_the_error_names(self, error, cause):
        result = judge_ping("win1", PingResult("mx2", 2, 0, error=error))
        assert (result.status, result.cause) == (Status.FAIL, cause)

    def test_unknown_host_fails(self):
        result = judge_ping("mx1", PingResult("mx9", 0, 0, error="unknown host"))
        assert result.status is Status.FAIL
        assert result.summary == "mx9: unknown host"
        assert result.cause == causes.NAME_UNRESOLVED

    def test_no_gateway_to_ping_fails(self):
        result = judge_ping("mx1", PingResult("gateway", 0, 0, error="no default gateway"))
        assert result.status is Status.FAIL
        assert result.summary == "gateway: no default gateway to ping"
        assert result.cause == causes.NO_GATEWAY

    def test_gateway_shows_its_address(self):
        result = judge_ping("mx1", PingResult("gateway", 2, 2, address="198.18.0.1"))
        assert result.summary.startswith("gateway 198.18.0.1: 2/2 replies")


def probe(outcome: str, **kw) -> SmtpProbe:
    return SmtpProbe(target="mx2", port=25, outcome=outcome, **kw)


class TestSmtp:
    def test_220_and_250_is_ok(self):
        good = probe(SMTP_OK, greeting_code=220, greeting=("220 mx2 ESMTP",), starttls=True)
        result = judge_smtp("mx1", good)
        assert result.status is Status.OK
        assert (
            result.summary == "mx2: 220 greeting, EHLO 250, STARTTLS offered (handshake not tried)"
        )
        assert result.evidence == "220 mx2 ESMTP"
        assert result.cause == ""

    def test_slow_greeting_warns_with_its_delay_and_is_never_a_failure(self):
        slow = probe(
            SMTP_OK, greeting_code=220, greeting=("220-pre", "220 mx2"), greeting_ms=6200.0
        )
        result = judge_smtp("mx1", slow)
        assert (result.status, result.cause) == (Status.WARN, causes.SLOW_GREETING)
        assert result.summary == "mx2: slow greeting: 6.2 s after connecting"
        assert judge_smtp("mx1", slow, Expectations(greeting_warn=10)).status is Status.OK

    def test_handshake_failure_fails_only_when_starttls_is_required(self):
        broken = probe(
            SMTP_OK, greeting_code=220, starttls=True, tls_checked=True,
            tls_error="454 4.7.0 TLS not available due to local problem",
        )  # fmt: skip
        required = judge_smtp("mx1", broken, Expectations(require_starttls=True))
        assert (required.status, required.cause) == (Status.FAIL, causes.STARTTLS_FAILED)
        assert required.summary == (
            "mx2: STARTTLS offered, but failed: 454 4.7.0 TLS not available due to local problem"
        )
        assert judge_smtp("mx1", broken).status is Status.WARN

    @pytest.mark.parametrize(
        ("not_after", "status", "cause"),
        [
            ("2030-01-31T00:00:00Z", Status.OK, ""),
            ("2030-01-10T00:00:00Z", Status.WARN, causes.CERTIFICATE_EXPIRING),
            ("2029-12-31T23:59:59Z", Status.FAIL, causes.CERTIFICATE_EXPIRED),
        ],
    )
    def test_certificate_expiry(self, not_after, status, cause):
        now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
        tls = probe(
            SMTP_OK, greeting_code=220, starttls=True, tls_checked=True, tls_protocol="TLSv1.3",
            cert_subject="CN=mx2.example", cert_not_after=not_after, cert_verified=False,
        )  # fmt: skip
        result = judge_smtp("mx1", tls, Expectations(cert_warn_days=14), now=now)
        assert (result.status, result.cause) == (status, cause), result.summary
        if status is Status.OK:
            assert result.summary == (
                "mx2: 220 greeting, EHLO 250, STARTTLS TLSv1.3 (CN=mx2.example, not verified)"
            )

    def test_missing_starttls_warns_when_required(self):
        plain = probe(SMTP_OK, greeting_code=220, starttls=False)
        assert judge_smtp("mx1", plain).status is Status.OK
        result = judge_smtp("mx1", plain, Expectations(require_starttls=True))
        assert result.status is Status.WARN
        assert result.summary == "mx2: no STARTTLS offered on port 25"
        assert result.cause == causes.NO_STARTTLS

    @pytest.mark.parametrize(
        ("outcome", "extra", "summary", "cause"),
        [
            (SMTP_REFUSED, {}, "mx2: connection refused on port 25", causes.REFUSED),
            (SMTP_TIMEOUT, {"error": "no answer on port 25 within the timeout"},
             "mx2: timed out on port 25: no answer on port 25 within the timeout",
             causes.TIMEOUT),
            (SMTP_TIMEOUT, {"error": "no greeting within the timeout", "connect_ms": 0.4},
             "mx2: timed out on port 25: no greeting within the timeout",
             causes.GREETING_TIMEOUT),
            (SMTP_TIMEOUT, {"error": "no EHLO reply within the timeout", "connect_ms": 0.4,
                            "greeting": ("220 mx2",), "greeting_code": 220},
             "mx2: timed out on port 25: no EHLO reply within the timeout",
             causes.SMTP_ERROR),
            (SMTP_UNREACHABLE, {"error": "No route to host"},
             "mx2: unreachable (No route to host), port 25", causes.UNREACHABLE),
            (SMTP_UNRESOLVED, {}, "mx2: name does not resolve on the host",
             causes.NAME_UNRESOLVED),
            (SMTP_BAD_GREETING, {"greeting_code": 421,
                                 "greeting": ("421 4.3.2 Service not available",)},
             "mx2: greeting 421 4.3.2 Service not available", causes.BAD_GREETING),
            (SMTP_ERROR, {"error": "connection closed before the greeting"},
             "mx2: error: connection closed before the greeting", causes.SMTP_ERROR),
        ],
    )  # fmt: skip
    def test_failures_read_as_the_operator_expects(self, outcome, extra, summary, cause):
        result = judge_smtp("mx1", probe(outcome, **extra))
        assert result.status is Status.FAIL
        assert result.summary == summary
        assert result.facts["outcome"] == outcome
        assert result.cause == cause


class TestSharedRules:
    @pytest.mark.parametrize(
        "name", ["mx1", "mx1.example.com", "mx1.example.com.", "198.18.0.11", "2001:db8::1", "_x"]
    )
    def test_host_names_and_addresses_are_valid_targets(self, name):
        assert params.valid_target(name)

    @pytest.mark.parametrize(
        "name",
        ["mx1; touch /tmp/pwned", "$(id)", "-f", "mx1 mx2", "", "a..b", "x" * 64, "`id`", "mx\n1"],
    )
    def test_anything_else_is_not_a_target(self, name):
        assert not params.valid_target(name)

    def test_missing_and_truncated_outputs_cannot_be_judged(self):
        lost, cause = harness.output_problem(StepOutput("k", None, b""))
        assert "cut short" in lost and cause == causes.OUTPUT_LOST
        cut, cause = harness.output_problem(StepOutput("k", 0, b"x", truncated=True))
        assert "truncated" in cut and cause == causes.OUTPUT_TRUNCATED
        assert harness.output_problem(StepOutput("k", 1, b"x")) is None

    def test_excerpt_keeps_head_and_tail_of_long_output(self):
        text = "head" + "x" * 10_000 + "tail"
        short = harness.excerpt(text)
        assert len(short) < 900
        assert short.startswith("head") and short.endswith("tail")

    def test_unknown_parameter_is_one_clear_line(self):
        with pytest.raises(ValueError, match=r"^ping: unknown parameter 'cout' \(known: count\)$"):
            params.known_params("ping", {"cout": 2}, {"count": 2})


def test_an_ipv6_zone_cannot_smuggle_protocol_lines() -> None:
    from fleet.checks.params import valid_target

    assert valid_target("fe80::1%eth0")
    assert not valid_target("fe80::1%x\r\nMAIL FROM:<a@b>")
    assert not valid_target("fe80::1%a b")


def test_a_cloud_style_slash_32_with_an_on_link_gateway_is_not_misconfigured() -> None:
    net = unix_net(eth("10.156.0.7/32"), gateways=("10.156.0.1",))
    assert judge_ipconfig("vm1", net).status is Status.OK
    outside = unix_net(eth("198.18.0.11/24"), gateways=("10.9.9.1",))
    assert "outside every interface's subnet" in judge_ipconfig("mx1", outside).summary
