"""The judges on facts built here: what an operator reads for each kind of trouble."""

from __future__ import annotations

import datetime

import pytest

from fleet import causes
from fleet.checks import harness, params
from fleet.checks.base import Platform, StepOutput
from fleet.checks.binding.judge import judge_binding
from fleet.checks.facts import (
    Address,
    DefaultRoute,
    Interface,
    NetConfig,
    PingResult,
    SmtpOutcome,
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


def verdict(result) -> tuple[Status, str, str]:
    """What the operator reads first: the status, the summary and the cause."""
    return result.status, result.summary, result.cause


WIN = Platform.WINDOWS


class TestBinding:
    def test_unix_host_with_a_global_address_is_bound(self):
        result = judge_binding("mx1", unix_net(eth("198.18.0.11/24")), Platform.UNIX)
        assert verdict(result) == (Status.OK, "TCP/IP bound to eth0", "")
        assert result.facts["bound"] == ["eth0"]
        assert "eth0 up 198.18.0.11/24" in result.evidence

    @pytest.mark.parametrize(
        ("net", "platform", "status", "summary", "cause"),
        [
            pytest.param(
                unix_net(eth("169.254.10.3/16")), Platform.UNIX,
                Status.FAIL, "no up interface has a global IPv4 address (eth0)",
                causes.NO_INTERFACE_UP,
                id="unix_host_with_only_apipa_fails",
            ),
            pytest.param(
                unix_net(eth("198.18.0.11/24", up=False)), Platform.UNIX,
                Status.FAIL, "no network interface is up", causes.NO_INTERFACE_UP,
                id="unix_host_with_every_interface_down_fails",
            ),
            pytest.param(
                NetConfig(interfaces=(Interface("lo", up=True, loopback=True),
                                      eth("198.18.0.11/24"))), Platform.UNIX,
                Status.WARN, "loopback lo has no 127.0.0.1", causes.LOOPBACK_DOWN,
                id="loopback_without_127_0_0_1_warns_on_unix",
            ),
            pytest.param(
                NetConfig(interfaces=(
                    Interface("lo", up=False, loopback=True, ipv4=(Address("127.0.0.1", 8),)),
                    eth("198.18.0.11/24"),
                )), Platform.UNIX,
                Status.WARN, "loopback lo is down", causes.LOOPBACK_DOWN,
                id="loopback_down_warns_on_unix",
            ),
            pytest.param(
                windows_net(adapter(bindings=(("ms_tcpip", False), ("ms_msclient", True)))),
                Platform.WINDOWS,
                Status.FAIL, "TCP/IP not bound to Ethernet0", causes.TCPIP_UNBOUND,
                id="windows_without_tcpip_on_its_adapter_fails",
            ),
            pytest.param(
                windows_net(adapter()), Platform.WINDOWS,
                Status.OK, "TCP/IP bound to Ethernet0", "",
                id="windows_has_no_loopback_and_is_not_warned_for_it",
            ),
            pytest.param(
                windows_net(adapter(bindings=(("ms_tcpip", True),))), Platform.WINDOWS,
                Status.WARN, "Client for Microsoft Networks not bound to Ethernet0",
                causes.MSCLIENT_UNBOUND,
                id="windows_without_client_for_microsoft_networks_warns",
            ),
            pytest.param(
                windows_net(adapter(bindings=(*TCPIP_ONLY, ("ms_nwipx", True),
                                              ("ms_netbeui", False)))),
                Platform.WINDOWS,
                Status.WARN, "other protocols bound to Ethernet0: ms_nwipx",
                causes.EXTRA_PROTOCOLS,
                id="windows_extra_protocols_warn",
            ),
            pytest.param(
                windows_net(adapter(), adapter("Ethernet1", bindings=(("ms_tcpip", False),),
                                               address="10.0.0.5/24")),
                Platform.WINDOWS,
                Status.WARN, "TCP/IP not bound to Ethernet1", causes.TCPIP_UNBOUND,
                id="windows_second_adapter_without_tcpip_warns_only",
            ),
        ],
    )  # fmt: skip
    def test_binding_reads_as_the_operator_expects(self, net, platform, status, summary, cause):
        assert verdict(judge_binding("mx1", net, platform)) == (status, summary, cause)


class TestServersMailTeamsRun:
    """Cluster, team and Hyper-V adapters (issue 11): listed, not judged as the server's own."""

    NETFT = Interface(
        "Local Area Connection* 12",
        up=True,
        ipv4=(Address("169.254.1.57", 16),),
        bindings=TCPIP_ONLY,
        internal="failover cluster adapter (NetFT)",
    )

    def test_cluster_adapter_apipa_is_not_dhcp_failing(self):
        result = judge_ipconfig("dag1", windows_net(adapter(), self.NETFT))
        assert (result.status, result.cause) == (Status.OK, "")
        assert "not judged" in result.evidence and "169.254.1.57" in result.evidence

    def test_an_apipa_address_on_the_servers_own_adapter_still_fails(self):
        own = Interface("Ethernet1", up=True, ipv4=(Address("169.254.9.9", 16),), dhcp=True)
        result = judge_ipconfig("dag1", windows_net(adapter(), self.NETFT, own))
        assert (result.status, result.cause) == (Status.FAIL, causes.APIPA)

    @pytest.mark.parametrize("why", ["Hyper-V switch uplink", "NIC team member"])
    def test_uplink_or_team_member_without_tcpip_does_not_warn(self, why):
        member = Interface(
            "NIC1", up=True, bindings=(("ms_tcpip", False), ("vms_pp", True)), internal=why
        )
        result = judge_binding("hv1", windows_net(adapter("vEthernet (External)"), member), WIN)
        assert (result.status, result.summary) == (
            Status.OK,
            "TCP/IP bound to vEthernet (External)",
        )
        assert why in result.evidence

    def test_only_internal_adapters_up_is_still_no_interface(self):
        member = Interface("NIC1", up=True, bindings=(("ms_tcpip", False),), internal="x")
        result = judge_binding("hv1", windows_net(member), WIN)
        assert (result.status, result.cause) == (Status.FAIL, causes.NO_INTERFACE_UP)

    @pytest.mark.parametrize("state", ["Duplicate", "Tentative", "Invalid"])
    def test_an_address_windows_holds_back_is_a_conflict(self, state):
        held = Interface(
            "Ethernet0",
            up=True,
            ipv4=(Address("198.18.0.21", 24), Address("198.18.0.200", 24, False, state)),
            dhcp=False,
        )
        result = judge_ipconfig("win1", windows_net(held))
        assert (result.status, result.cause) == (Status.FAIL, causes.ADDRESS_CONFLICT)
        assert result.summary.startswith(f"address 198.18.0.200 on Ethernet0 is {state}")
        assert f"198.18.0.200/24({state})" in result.evidence

    def test_a_conflicting_only_address_leaves_no_usable_one(self):
        held = Interface(
            "Ethernet0", up=True, ipv4=(Address("198.18.0.21", 24, None, "Duplicate"),)
        )
        result = judge_binding("win1", windows_net(held), Platform.UNIX)
        assert (result.status, result.cause) == (Status.FAIL, causes.NO_INTERFACE_UP)

    def test_preferred_and_deprecated_addresses_are_healthy(self):
        fine = Interface(
            "Ethernet0",
            up=True,
            ipv4=(Address("198.18.0.21", 24, False, "Preferred"),),
            dhcp=False,
        )
        assert judge_ipconfig("win1", windows_net(fine)).status is Status.OK

    def test_several_default_routes_are_shown_with_their_metrics_in_use_first(self):
        routes = (
            DefaultRoute("198.18.0.1", "Team1", 15),
            DefaultRoute("10.20.0.1", "Backup", 281),
        )
        net = NetConfig(
            interfaces=(adapter("Team1"), adapter("Backup", address="10.20.0.5/24")),
            default_gateways=("198.18.0.1", "10.20.0.1"),
            dns_servers=("1.1",),
            default_routes=routes,
        )
        result = judge_ipconfig("team1", net)
        assert result.status is Status.OK
        assert "gateway 198.18.0.1 (metric 15), 10.20.0.1 (metric 281)" in result.summary


class TestIpconfig:
    @pytest.mark.parametrize(
        ("net", "status", "summary", "cause"),
        [
            pytest.param(
                unix_net(eth("198.18.0.11/24", dhcp=True)),
                Status.OK, "eth0 198.18.0.11/24 (DHCP), gateway 198.18.0.1, DNS 198.18.0.53", "",
                id="sane_configuration_is_ok_and_says_what_it_saw",
            ),
            pytest.param(
                unix_net(eth("198.18.0.11/24", "169.254.10.3/16")),
                Status.WARN, "APIPA address 169.254.10.3 on eth0: DHCP failed", causes.APIPA,
                id="apipa_next_to_a_real_address_only_warns",
            ),
            pytest.param(
                unix_net(eth("0.0.0.0/0"), gateways=()),
                Status.FAIL, "address 0.0.0.0 on eth0; no default gateway", causes.ZERO_ADDRESS,
                id="zero_address_fails",
            ),
            pytest.param(
                unix_net(eth("198.18.0.11/24"), gateways=()),
                Status.FAIL, "no default gateway", causes.NO_GATEWAY,
                id="no_default_gateway_fails",
            ),
            pytest.param(
                unix_net(eth("198.18.0.11/24"), gateways=("10.9.9.1",)),
                Status.FAIL, "default gateway 10.9.9.1 is outside every interface's subnet",
                causes.GATEWAY_OFF_SUBNET,
                id="gateway_outside_every_subnet_fails",
            ),
            pytest.param(
                unix_net(eth(), gateways=()),
                Status.FAIL, "no IPv4 address on any up interface; no default gateway",
                causes.NO_IPV4,
                id="no_ipv4_at_all_fails",
            ),
            pytest.param(
                unix_net(eth("198.18.0.11/24", up=False)),
                Status.FAIL,
                "no IPv4 address on any up interface; "
                "default gateway 198.18.0.1 is outside every interface's subnet",
                causes.NO_IPV4,
                id="down_interfaces_do_not_count",
            ),
            pytest.param(
                unix_net(eth("198.18.0.11/24"), dns=()),
                Status.WARN, "no DNS servers configured", causes.NO_DNS,
                id="no_dns_servers_warns",
            ),
        ],
    )  # fmt: skip
    def test_ipconfig_reads_as_the_operator_expects(self, net, status, summary, cause):
        assert verdict(judge_ipconfig("mx1", net)) == (status, summary, cause)

    def test_apipa_address_fails_ipconfig(self):
        result = judge_ipconfig("mx1", unix_net(eth("169.254.10.3/16")))
        assert result.status is Status.FAIL
        assert "APIPA address 169.254.10.3 on eth0: DHCP failed" in result.summary
        messages = [f["message"] for f in result.facts["findings"]]
        assert "default gateway 198.18.0.1 is outside every interface's subnet" in messages
        assert result.cause == causes.APIPA

    def test_the_cause_is_the_worst_findings_not_the_first(self):
        # A leftover APIPA address only warns; the missing gateway fails and names the cause.
        net = unix_net(eth("198.18.0.11/24", "169.254.10.3/16"), gateways=())
        result = judge_ipconfig("mx1", net)
        assert [f["status"] for f in result.facts["findings"]] == ["warn", "fail"]
        assert (result.status, result.cause) == (Status.FAIL, causes.NO_GATEWAY)

    def test_facts_are_the_normalised_netconfig(self):
        result = judge_ipconfig("mx1", unix_net(eth("198.18.0.11/24")))
        assert result.facts["default_gateways"] == ("198.18.0.1",)
        assert result.facts["interfaces"][1]["ipv4"][0] == {
            "address": "198.18.0.11",
            "prefix": 24,
            "dynamic": None,
            "state": "",
        }


def routed_net(*routes: DefaultRoute, interfaces: tuple[Interface, ...] = ()):
    """A Unix host (eth0 198.18.0.11/24 unless told) whose default routes are ``routes``,
    the kernel's choice first."""
    return NetConfig(
        interfaces=(LO, *(interfaces or (eth("198.18.0.11/24"),))),
        default_gateways=tuple(dict.fromkeys(r.gateway for r in routes if r.gateway)),
        dns_servers=("198.18.0.53",),
        default_routes=routes,
    )


class TestDefaultRoutes:
    def test_on_link_default_route_is_not_a_missing_gateway(self):
        result = judge_ipconfig("vpn1", routed_net(DefaultRoute("", "wg0", 0)))
        assert verdict(result) == (
            Status.OK,
            "eth0 198.18.0.11/24, gateway on-link via dev wg0, DNS 198.18.0.53",
            "",
        )

    def test_no_default_route_at_all_still_fails(self):
        result = judge_ipconfig("mx1", routed_net())
        assert (result.status, result.cause) == (Status.FAIL, causes.NO_GATEWAY)

    def test_default_route_on_a_link_without_carrier_is_no_carrier_not_off_subnet(self):
        uplink = eth("10.9.0.2/30", up=False, name="eth1")  # NO-CARRIER: not up, not judged
        net = routed_net(
            DefaultRoute("10.9.0.1", "eth1", 0), interfaces=(eth("198.18.0.11/24"), uplink)
        )
        assert verdict(judge_ipconfig("mx1", net)) == (
            Status.FAIL,
            "default route 10.9.0.1: eth1 has no carrier (NO-CARRIER)",
            causes.NO_CARRIER,
        )

    def test_a_backup_default_route_without_carrier_warns(self):
        net = routed_net(
            DefaultRoute("198.18.0.1", "eth0", 100),
            DefaultRoute("10.9.0.1", "eth1", 200, linkdown=True),
        )
        assert verdict(judge_ipconfig("mx1", net)) == (
            Status.WARN,
            "backup default route 10.9.0.1: eth1 has no carrier (NO-CARRIER)",
            causes.NO_CARRIER,
        )

    def test_policy_table_default_is_shown_with_its_table(self):
        net = routed_net(DefaultRoute("198.18.0.1", "eth0", None, table="100"))
        result = judge_ipconfig("mx1", net)
        assert result.status is Status.OK
        assert "gateway 198.18.0.1 (table 100)" in result.summary


class TestPing:
    def test_no_loss_is_ok_with_rtt(self):
        ping = PingResult("mx2", 2, 2, 0.05, 0.07, 0.09, address="198.18.0.12")
        result = judge_ping("mx1", ping)
        summary = "mx2: 2/2 replies, rtt min/avg/max 0.05/0.07/0.09 ms"
        assert verdict(result) == (Status.OK, summary, "")
        assert result.target == "mx2"
        assert result.facts["loss_percent"] == 0.0

    @pytest.mark.parametrize(
        ("ping", "status", "summary", "cause"),
        [
            pytest.param(
                PingResult("mx2", 4, 2, 1.3, 1.4, 1.5),
                Status.WARN, "mx2: 2/4 replies (50% loss), rtt min/avg/max 1.3/1.4/1.5 ms",
                causes.PACKET_LOSS,
                id="some_loss_warns",
            ),
            pytest.param(
                PingResult("mx2", 2, 0),
                Status.FAIL, "mx2: 0/2 replies", causes.NO_REPLY,
                id="all_lost_fails",
            ),
            pytest.param(
                PingResult("mx2", 5, 0, error="destination host unreachable"),
                Status.FAIL, "mx2: 0/5 replies (destination host unreachable)",
                causes.UNREACHABLE,
                id="all_lost_with_icmp_error_says_so",
            ),
            pytest.param(
                PingResult("mx9", 0, 0, error="unknown host"),
                Status.FAIL, "mx9: unknown host", causes.NAME_UNRESOLVED,
                id="unknown_host_fails",
            ),
            pytest.param(
                PingResult("gateway", 0, 0, error="no default gateway"),
                Status.FAIL, "gateway: no default gateway to ping", causes.NO_GATEWAY,
                id="no_gateway_to_ping_fails",
            ),
            pytest.param(
                PingResult("gateway", 2, 2, address="198.18.0.1"),
                Status.OK, "gateway 198.18.0.1: 2/2 replies", "",
                id="gateway_shows_its_address",
            ),
        ],
    )  # fmt: skip
    def test_ping_reads_as_the_operator_expects(self, ping, status, summary, cause):
        assert verdict(judge_ping("mx1", ping)) == (status, summary, cause)

    @pytest.mark.parametrize(
        ("error", "cause"),
        [
            ("timed out", causes.NO_REPLY),  # Windows' Win32_PingStatus 11010
            ("host unreachable", causes.UNREACHABLE),
            ("general failure (no route from this host?)", causes.UNREACHABLE),
            ("unknown host", causes.NAME_UNRESOLVED),  # Windows resolves per echo
            ("TTL expired in transit", causes.TTL_EXPIRED),
        ],
    )
    def test_every_probe_lost_has_the_cause_the_error_names(self, error, cause):
        result = judge_ping("win1", PingResult("mx2", 2, 0, error=error))
        assert (result.status, result.cause) == (Status.FAIL, cause)


def probe(outcome: str, **kw) -> SmtpProbe:
    return SmtpProbe(target="mx2", port=25, outcome=outcome, **kw)


class TestSmtp:
    def test_220_and_250_is_ok(self):
        good = probe(SmtpOutcome.OK, greeting_code=220, greeting=("220 mx2 ESMTP",), starttls=True)
        result = judge_smtp("mx1", good)
        summary = "mx2: 220 greeting, EHLO 250, STARTTLS offered (handshake not tried)"
        assert verdict(result) == (Status.OK, summary, "")
        assert result.evidence == "220 mx2 ESMTP"

    def test_slow_greeting_warns_with_its_delay_and_is_never_a_failure(self):
        slow = probe(
            SmtpOutcome.OK, greeting_code=220, greeting=("220-pre", "220 mx2"), greeting_ms=6200.0
        )
        result = judge_smtp("mx1", slow)
        assert (result.status, result.cause) == (Status.WARN, causes.SLOW_GREETING)
        assert result.summary == "mx2: slow greeting: 6.2 s after connecting"
        assert judge_smtp("mx1", slow, Expectations(greeting_warn=10)).status is Status.OK

    def test_handshake_failure_fails_only_when_starttls_is_required(self):
        broken = probe(
            SmtpOutcome.OK, greeting_code=220, starttls=True, tls_checked=True,
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
            SmtpOutcome.OK, greeting_code=220, starttls=True, tls_checked=True,
            tls_protocol="TLSv1.3", cert_subject="CN=mx2.example", cert_not_after=not_after,
            cert_verified=False,
        )  # fmt: skip
        result = judge_smtp("mx1", tls, Expectations(cert_warn_days=14), now=now)
        assert (result.status, result.cause) == (status, cause), result.summary
        if status is Status.OK:
            assert result.summary == (
                "mx2: 220 greeting, EHLO 250, STARTTLS TLSv1.3 (CN=mx2.example, not verified)"
            )

    def test_missing_starttls_warns_when_required(self):
        plain = probe(SmtpOutcome.OK, greeting_code=220, starttls=False)
        assert judge_smtp("mx1", plain).status is Status.OK
        result = judge_smtp("mx1", plain, Expectations(require_starttls=True))
        summary = "mx2: no STARTTLS offered on port 25"
        assert verdict(result) == (Status.WARN, summary, causes.NO_STARTTLS)

    @pytest.mark.parametrize(
        ("outcome", "extra", "summary", "cause"),
        [
            (SmtpOutcome.REFUSED, {}, "mx2: connection refused on port 25", causes.REFUSED),
            (SmtpOutcome.TIMEOUT, {"error": "no answer on port 25 within the timeout"},
             "mx2: timed out on port 25: no answer on port 25 within the timeout",
             causes.TIMEOUT),
            (SmtpOutcome.TIMEOUT, {"error": "no greeting within the timeout", "connect_ms": 0.4},
             "mx2: timed out on port 25: no greeting within the timeout",
             causes.GREETING_TIMEOUT),
            (SmtpOutcome.TIMEOUT, {"error": "no EHLO reply within the timeout", "connect_ms": 0.4,
                            "greeting": ("220 mx2",), "greeting_code": 220},
             "mx2: timed out on port 25: no EHLO reply within the timeout",
             causes.SMTP_ERROR),
            (SmtpOutcome.UNREACHABLE, {"error": "No route to host"},
             "mx2: unreachable (No route to host), port 25", causes.UNREACHABLE),
            (SmtpOutcome.UNRESOLVED, {}, "mx2: name does not resolve on the host",
             causes.NAME_UNRESOLVED),
            (SmtpOutcome.BAD_GREETING, {"greeting_code": 421,
                                 "greeting": ("421 4.3.2 Service not available",)},
             "mx2: greeting 421 4.3.2 Service not available", causes.BAD_GREETING),
            (SmtpOutcome.ERROR, {"error": "connection closed before the greeting"},
             "mx2: error: connection closed before the greeting", causes.SMTP_ERROR),
        ],
    )  # fmt: skip
    def test_failures_read_as_the_operator_expects(self, outcome, extra, summary, cause):
        result = judge_smtp("mx1", probe(outcome, **extra))
        assert verdict(result) == (Status.FAIL, summary, cause)
        assert result.facts["outcome"] == outcome


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
