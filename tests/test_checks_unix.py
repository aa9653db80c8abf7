"""The Unix side of the checks: parsers on real recorded output, the composed
scripts run for real under sh, and the SMTP probe against real servers on
127.0.0.1.  Samples and their sources: tests/data/unix/README.md.
No test sends a packet beyond loopback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from fleet import causes
from fleet.checks.base import CHECKS, Platform, Step, StepOutput, get_check
from fleet.checks.batch import compose_sh, new_nonce, split_sections
from fleet.checks.binding import BindingCheck
from fleet.checks.ipconfig import IpconfigCheck
from fleet.checks.net import unix as net_unix
from fleet.checks.ping import PingCheck
from fleet.checks.ping import unix as ping_unix
from fleet.checks.smtp import SmtpCheck, unix_probe
from fleet.checks.smtp import unix as smtp_unix
from fleet.errors import ParseError
from fleet.model import Status

DATA = Path(__file__).parent / "data" / "unix"
UNIX = Platform.UNIX


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def labelled(**outputs: str) -> str:
    """A net step's output assembled from separately recorded command outputs."""
    return "".join(f"\n{net_unix.NET_LABEL}{label}\n{text}" for label, text in outputs.items())


def recorded_net(samples: Mapping[str, str]):
    """The net facts parsed from recorded samples, by the command each was recorded from."""
    return net_unix.parse_net(labelled(**{label: sample(name) for label, name in samples.items()}))


def interface(net, name: str):
    return next(i for i in net.interfaces if i.name == name)


def out(key: str, text: str | bytes, status: int | None = 0, truncated: bool = False):
    data = text.encode() if isinstance(text, str) else text
    return StepOutput(key=key, exit_status=status, stdout=data, truncated=truncated)


def run_steps(steps: Sequence[Step], env: Mapping[str, str] | None = None, timeout: float = 20):
    """Run ``steps`` exactly as a host would: one composed script under sh."""
    nonce = new_nonce()
    script = compose_sh(steps, nonce, step_timeout=timeout)
    done = subprocess.run(
        ["sh", "-c", script], capture_output=True, timeout=timeout + 10, env=env, check=False
    )
    return split_sections(done.stdout, nonce, steps)


def test_every_registered_check_imports_and_is_named_as_registered():
    for name in CHECKS:
        assert get_check(name).name == name


def test_checks_are_registered_under_their_names():
    for name, cls in [
        ("binding", BindingCheck),
        ("ipconfig", IpconfigCheck),
        ("ping", PingCheck),
        ("smtp", SmtpCheck),
    ]:
        check = get_check(name)
        assert isinstance(check, cls) and check.name == name


# ---------------------------------------------------------------- interfaces and routes


class TestNetParsing:
    def test_iproute2_json_recorded_in_a_namespace(self):
        net = net_unix.parse_net(sample("local-net-ip-json.out"))
        lo, rec0 = net.interfaces
        assert (lo.name, lo.up, lo.loopback, lo.ipv4[0].address) == ("lo", True, True, "127.0.0.1")
        assert (rec0.name, rec0.up, rec0.loopback) == ("rec0", True, False)
        assert (rec0.ipv4[0].address, rec0.ipv4[0].prefix) == ("198.18.0.250", 24)
        assert rec0.ipv4[0].dynamic is True
        assert rec0.dhcp is True
        assert rec0.gateways == ("198.18.0.249",)
        assert rec0.mac == "9a:ca:7c:cc:f8:ed"
        assert net.default_gateways == ("198.18.0.249",)
        assert net.dns_servers == ("198.18.0.53",)
        assert net.source == "ip -j addr + ip -j route + /etc/resolv.conf"

    def test_iproute2_text_gives_the_same_facts_as_json(self):
        text = labelled(
            **{
                "ip addr": sample("local-ip-addr.out"),
                "ip route": sample("local-ip-route.out"),
                "/etc/resolv.conf": "nameserver 198.18.0.53\n",
            }
        )
        from_text = net_unix.parse_net(text)
        from_json = net_unix.parse_net(sample("local-net-ip-json.out"))
        assert from_text.interfaces == from_json.interfaces
        assert from_text.default_gateways == from_json.default_gateways
        assert from_text.source == "ip addr + ip route + /etc/resolv.conf"

    def test_ifconfig_and_netstat_of_the_same_namespace(self):
        net = recorded_net(
            {"ifconfig -a": "local-ifconfig-a.out", "netstat -rn": "local-netstat-rn.out"}
        )
        rec0 = interface(net, "rec0")
        assert rec0.up and (rec0.ipv4[0].address, rec0.ipv4[0].prefix) == ("198.18.0.250", 24)
        # ifconfig does not show the dynamic flag: DHCP stays unknown, never guessed.
        assert rec0.dhcp is None
        assert rec0.gateways == ("198.18.0.249",)
        assert net.default_gateways == ("198.18.0.249",)

    def test_centos_ifconfig_interface_without_running_is_not_up(self):
        net = recorded_net({"ifconfig -a": "jc-centos-7.7-ifconfig.out"})
        assert interface(net, "docker0").up is False  # UP but not RUNNING: no carrier
        assert interface(net, "ens33").up is True
        assert interface(net, "ens33").ipv4[0].address == "192.168.71.137"
        assert interface(net, "lo").loopback is True

    def test_macos_ifconfig_hex_netmask_and_bsd_netstat(self):
        net = recorded_net(
            {
                "ifconfig -a": "jc-osx-10.14.6-ifconfig.out",
                "netstat -rn": "jc-freebsd12-netstat-r.out",
            }
        )
        en0 = interface(net, "en0")
        assert (en0.ipv4[0].address, en0.ipv4[0].prefix) == ("192.168.1.72", 24)
        assert interface(net, "lo0").loopback
        assert net.default_gateways == ("192.168.71.2",)

    def test_apipa_namespace_fails_ipconfig_and_binding(self):
        outputs = {net_unix.KEY: out(net_unix.KEY, sample("local-net-apipa-ip-json.out"))}
        [ipconfig] = IpconfigCheck().evaluate("mx1", UNIX, {}, outputs)
        assert ipconfig.status is Status.FAIL
        assert ipconfig.summary == (
            "APIPA address 169.254.10.3 on rec0: DHCP failed; no default gateway"
        )
        assert ipconfig.facts["dns_servers"] == ("198.18.0.53",)
        assert "rec0 up 169.254.10.3/16" in ipconfig.evidence
        assert ipconfig.cause == causes.APIPA  # the first of the worst findings
        [binding] = BindingCheck().evaluate("mx1", UNIX, {}, outputs)
        assert binding.status is Status.FAIL
        assert binding.cause == causes.NO_INTERFACE_UP

    def test_healthy_namespace_passes_both(self):
        outputs = {net_unix.KEY: out(net_unix.KEY, sample("local-net-ip-json.out"))}
        [ipconfig] = IpconfigCheck().evaluate("mx1", UNIX, {}, outputs)
        assert ipconfig.status is Status.OK, ipconfig.summary
        assert ipconfig.summary == (
            "rec0 198.18.0.250/24 (DHCP), gateway 198.18.0.249, DNS 198.18.0.53"
        )
        [binding] = BindingCheck().evaluate("mx1", UNIX, {}, outputs)
        assert (binding.status, binding.summary) == (Status.OK, "TCP/IP bound to rec0")
        assert binding.cause == ipconfig.cause == ""

    def test_binding_and_ipconfig_parse_the_shared_net_output_once(self, monkeypatch):
        text = sample("local-net-ip-json.out").encode()
        # The two checks' outputs of one host: equal sections, so one Readings (batch.py).
        [section] = split_sections(
            b"\n@@fleet n0nce0000 begin 0\n" + text + b"\n@@fleet n0nce0000 end 0 0 0 raw\n",
            "n0nce0000",
            [Step(net_unix.KEY, "")],
        ).values()
        calls = []
        real = net_unix.parse_net
        monkeypatch.setattr(net_unix, "parse_net", lambda t: calls.append(t) or real(t))
        outputs = {net_unix.KEY: section}
        [binding] = BindingCheck().evaluate("mx1", UNIX, {}, outputs)
        [ipconfig] = IpconfigCheck().evaluate("mx1", UNIX, {}, outputs)
        assert binding.status is ipconfig.status is Status.OK
        assert len(calls) == 1
        # Another host's output is read afresh: nothing is cached beyond its outputs.
        other = {net_unix.KEY: out(net_unix.KEY, text)}
        BindingCheck().evaluate("mx2", UNIX, {}, other)
        assert len(calls) == 2


def routes_text_net(name: str) -> str:
    """A net step as iproute2 without -j (busybox, < 4.17) prints it, from recorded text."""
    return labelled(
        **{
            "ip addr": sample(f"local-routes-{name}-ip-addr.out"),
            "ip route": sample(f"local-routes-{name}-ip-route.out"),
            "ip route get": sample(f"local-routes-{name}-ip-route-get.out"),
        }
    )


def ipconfig_of(text: str):
    [result] = IpconfigCheck().evaluate("h", UNIX, {}, {net_unix.KEY: out(net_unix.KEY, text)})
    return result


def routes(net) -> list[tuple[str, str, int | None, str, bool]]:
    return [(r.gateway, r.interface, r.metric, r.table, r.linkdown) for r in net.default_routes]


class TestDefaultRoutes:
    """Default routes as the kernel sees them, on outputs recorded in namespaces
    (tests/data/unix/record-routes.sh)."""

    @pytest.mark.parametrize("name", ["onlink", "twodefaults", "policy", "nocarrier"])
    def test_iproute2_text_gives_the_same_routes_as_json(self, name):
        from_json = net_unix.parse_net(sample(f"local-routes-{name}-net.out"))
        from_text = net_unix.parse_net(routes_text_net(name))
        assert from_text.default_routes == from_json.default_routes
        assert from_text.default_gateways == from_json.default_gateways

    def test_on_link_default_route_is_a_default_route_without_a_gateway(self):
        net = net_unix.parse_net(sample("local-routes-onlink-net.out"))
        assert routes(net) == [("", "rec0", 0, "", False)]
        assert net.default_gateways == ()
        result = ipconfig_of(sample("local-routes-onlink-net.out"))
        assert (result.status, result.cause) == (Status.OK, "")
        assert "gateway on-link via dev rec0" in result.summary
        assert "default gateway: on-link via dev rec0" in result.evidence

    def test_default_route_only_in_a_policy_table_counts(self):
        net = net_unix.parse_net(sample("local-routes-policy-net.out"))
        assert routes(net) == [("198.18.200.1", "rec0", None, "100", False)]
        assert net.default_gateways == ("198.18.200.1",)
        assert net.source == "ip -j addr + ip -j route + ip -j route get + /etc/resolv.conf"
        result = ipconfig_of(sample("local-routes-policy-net.out"))
        assert result.status is Status.OK
        assert "gateway 198.18.200.1 (table 100)" in result.summary

    def test_two_default_routes_are_listed_lowest_metric_first(self):
        net = net_unix.parse_net(sample("local-routes-twodefaults-net.out"))
        assert routes(net) == [
            ("198.18.200.1", "rec0", 100, "", False),
            ("198.18.200.2", "rec0", 200, "", False),
        ]
        result = ipconfig_of(sample("local-routes-twodefaults-net.out"))
        assert result.status is Status.OK
        assert "gateway 198.18.200.1 (metric 100), 198.18.200.2 (metric 200)" in result.summary

    def test_default_route_on_an_uplink_without_carrier_fails_as_no_carrier(self):
        net = net_unix.parse_net(sample("local-routes-nocarrier-net.out"))
        assert routes(net) == [("198.18.200.130", "up0", 0, "", True)]
        for text in (sample("local-routes-nocarrier-net.out"), routes_text_net("nocarrier")):
            result = ipconfig_of(text)
            assert (result.status, result.cause) == (Status.FAIL, causes.NO_CARRIER)
            assert result.summary == (
                "default route 198.18.200.130: up0 has no carrier (NO-CARRIER)"
            )

    def test_the_route_the_kernel_uses_comes_first_whatever_its_metric(self):
        listed = net_unix.routes_from_ip_text(sample("local-routes-twodefaults-ip-route.out"))
        kernel = net_unix.kernel_route_from_ip_text("192.0.2.1 via 198.18.200.2 dev rec0 uid 0\n")
        ordered = net_unix.ordered_routes(listed, kernel)
        assert [(r.gateway, r.metric) for r in ordered] == [
            ("198.18.200.2", 200),
            ("198.18.200.1", 100),
        ]

    @pytest.mark.parametrize(
        ("name", "parser"),
        [
            ("local-routes-none-ip-route-get.out", net_unix.kernel_route_from_ip_text),
            ("local-routes-none-ip-j-route-get.out", net_unix.kernel_route_from_ip_json),
        ],
    )
    def test_no_route_at_all_is_no_kernel_route(self, name, parser):
        assert parser(sample(name)) is None

    def test_net_step_asks_the_kernel_about_the_probe_destination(self):
        assert f"route get {net_unix.PROBE_DESTINATION} " in net_unix.NET_SCRIPT

    def test_on_link_gateway_is_skipped_saying_why_not_pinged(self):
        key = "ping:gateway"
        raw = sample("local-routes-onlink-ping-gateway.out")
        [result] = PingCheck().evaluate("h", UNIX, PingCheck().validate({}), {key: out(key, raw)})
        assert (result.status, result.cause) == (Status.SKIPPED, causes.NO_TARGETS)
        assert result.summary == (
            "gateway: default route has no gateway (on-link via dev rec0): nothing to ping"
        )

    @pytest.mark.parametrize(
        ("name", "address"),
        [("policy", "198.18.200.1"), ("twodefaults", "198.18.200.1")],
    )
    def test_gateway_pinged_is_the_one_the_kernel_uses(self, name, address):
        key = "ping:gateway"
        raw = sample(f"local-routes-{name}-ping-gateway.out")
        [result] = PingCheck().evaluate("h", UNIX, PingCheck().validate({}), {key: out(key, raw)})
        assert result.status is Status.OK
        assert result.summary.startswith(f"gateway {address}: 2/2 replies")


class TestNetGarbage:
    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("sh: 1: ip: not found\n", "no interface listing"),
            (labelled(**{"ip -j addr": '[{"ifname": "lo", "addr_'}), "ip -j addr: unreadable"),
            (labelled(**{"ip -j addr": '{"not": "a list"}'}), "ip -j addr: unreadable"),
            (labelled(**{"ip addr": "BusyBox v1.36 multi-call binary"}), "ip addr: unreadable"),
            ("", "no interface listing"),
        ],
    )  # fmt: skip
    def test_unreadable_output_is_an_error_result_with_the_reason(self, text, reason):
        outputs = {net_unix.KEY: out(net_unix.KEY, text)}
        [result] = BindingCheck().evaluate("mx1", UNIX, {}, outputs)
        assert result.status is Status.ERROR
        assert reason in result.summary
        assert result.cause == causes.UNPARSED

    def test_missing_section_is_an_error(self):
        outputs = {net_unix.KEY: out(net_unix.KEY, "", status=None)}
        [result] = IpconfigCheck().evaluate("mx1", UNIX, {}, outputs)
        assert result.status is Status.ERROR
        assert "no output came back" in result.summary
        assert result.cause == causes.OUTPUT_LOST
        [result] = IpconfigCheck().evaluate("mx1", UNIX, {}, {})
        assert (result.status, result.cause) == (Status.ERROR, causes.OUTPUT_LOST)

    def test_truncated_output_is_an_error_even_when_it_would_parse(self):
        text = sample("local-net-ip-json.out")
        outputs = {net_unix.KEY: out(net_unix.KEY, text, truncated=True)}
        [result] = IpconfigCheck().evaluate("mx1", UNIX, {}, outputs)
        assert result.status is Status.ERROR
        assert "truncated" in result.summary
        assert result.cause == causes.OUTPUT_TRUNCATED

    def test_huge_garbage_is_an_error_with_short_evidence(self):
        huge = (b"\xff\xfe garbage \x00" * 400_000)[:4_000_000]
        started = time.monotonic()
        [result] = BindingCheck().evaluate("mx1", UNIX, {}, {net_unix.KEY: out(net_unix.KEY, huge)})
        assert result.status is Status.ERROR
        assert len(result.evidence) < 1000 and len(result.summary) < 400
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------- ping


PING_SAMPLES = [
    # file, transmitted, received, error, status, cause
    ("local-ping-success.out", 2, 2, "", Status.OK, ""),
    ("local-ping-gateway.out", 2, 2, "", Status.OK, ""),
    ("local-ping-loss-100.out", 2, 0, "", Status.FAIL, causes.NO_REPLY),
    ("local-ping-host-unreachable.out", 5, 0, "destination host unreachable", Status.FAIL,
     causes.UNREACHABLE),
    ("local-ping-unknown-host.out", 0, 0, "unknown host", Status.FAIL, causes.NAME_UNRESOLVED),
    ("local-ping-network-unreachable.out", 0, 0, "network unreachable", Status.FAIL,
     causes.UNREACHABLE),
    ("local-ping-gateway-none.out", 0, 0, "no default gateway", Status.FAIL, causes.NO_GATEWAY),
    ("public-amzn2-ping-partial-loss.out", 4, 2, "", Status.WARN, causes.PACKET_LOSS),
    ("jc-ubuntu-18.04-ping-ip-O.out", 20, 20, "", Status.OK, ""),
    ("jc-freebsd12-ping-ip.out", 3, 3, "", Status.OK, ""),
    ("jc-osx-10.14.6-ping-ip.out", 3, 3, "", Status.OK, ""),
    ("jc-osx-10.14.6-ping-ip-unreachable.out", 8, 0, "destination host unreachable", Status.FAIL,
     causes.UNREACHABLE),
]  # fmt: skip


class TestPingParsing:
    @pytest.mark.parametrize(("name", "sent", "got", "error", "status", "cause"), PING_SAMPLES)
    def test_recorded_ping_output(self, name, sent, got, error, status, cause):
        target = "gateway" if "gateway" in name else "mx2"
        key = f"ping:{target}"
        raw = (DATA / name).read_bytes()
        ping = ping_unix.parse(out(key, raw, status=0 if got else 1), target)
        assert (ping.transmitted, ping.received, ping.error) == (sent, got, error)
        params = PingCheck().validate({"targets": [] if target == "gateway" else [target]})
        [*_, result] = PingCheck().evaluate("mx1", UNIX, params, {key: out(key, raw)})
        assert result.status is status, result.summary
        assert result.target == target
        assert result.cause == cause

    def test_rtt_and_gateway_address_are_kept(self):
        ping = ping_unix.parse(out("ping:gateway", sample("local-ping-gateway.out")), "gateway")
        assert ping.address == "198.18.0.249"
        assert (ping.rtt_min_ms, ping.rtt_avg_ms, ping.rtt_max_ms) == (0.05, 0.333, 0.616)

    def test_gateway_missing_reads_as_no_gateway_to_ping(self):
        key = "ping:gateway"
        raw = sample("local-ping-gateway-none.out")
        [result] = PingCheck().evaluate("mx1", UNIX, PingCheck().validate({}), {key: out(key, raw)})
        assert (result.status, result.summary) == (
            Status.FAIL,
            "gateway: no default gateway to ping",
        )

    @pytest.mark.parametrize(
        ("name", "status"),
        [("local-busybox-ping-not-root.out", 1), ("local-ping-no-cap-net-raw.out", 2)],
    )
    def test_ping_without_the_right_to_its_socket_says_it_needs_root(self, name, status):
        output = out("ping:mx2", sample(name), status=status)
        params = PingCheck().validate({"targets": ["mx2"], "gateway": False})
        [result] = PingCheck().evaluate("mx1", UNIX, params, {"ping:mx2": output})
        assert (result.status, result.cause) == (Status.ERROR, causes.TOOL_MISSING)
        assert "ping needs root" in result.summary
        assert "CAP_NET_RAW" in result.summary and "ping_group_range" in result.summary

    @pytest.mark.parametrize(
        ("text", "status", "cause"),
        [
            ("sh: 1: exec: ping: not found\n", 127, causes.TOOL_MISSING),
            ("ping: socket: Operation not permitted\n", 2, causes.TOOL_MISSING),
            ("Segmentation fault\n", 139, causes.UNPARSED),
            ("PING x\n--- x ping statistics ---\n2 packets transmitted, many received\n", 1,
             causes.UNPARSED),
        ],
    )  # fmt: skip
    def test_ping_that_cannot_run_or_makes_no_sense_is_an_error(self, text, status, cause):
        with pytest.raises(ParseError):
            ping_unix.parse(out("ping:mx2", text, status=status), "mx2")
        params = PingCheck().validate({"targets": ["mx2"], "gateway": False})
        output = out("ping:mx2", text, status=status)
        [result] = PingCheck().evaluate("mx1", UNIX, params, {"ping:mx2": output})
        assert (result.status, result.cause) == (Status.ERROR, cause)


class TestPingCheck:
    def test_defaults_and_validation(self):
        check = PingCheck()
        assert check.validate({}) == {"targets": [], "gateway": True, "count": 2, "timeout": 2.0}
        assert check.validate({"targets": "mx2", "gateway": "no"})["gateway"] is False
        assert check.validate({"targets": ["mx2", "mx2", "mx3"]})["targets"] == ["mx2", "mx3"]
        for bad, message in [
            ({"cout": 3}, "ping: unknown parameter 'cout'"),
            ({"count": 0}, "ping: count must be between 1 and 100"),
            ({"count": 2.5}, "ping: count must be a whole number"),
            ({"targets": [1, 2]}, "ping: targets must be a list of host names"),
            ({"gateway": "maybe"}, "ping: gateway must be one of true/false"),
        ]:
            with pytest.raises(ValueError, match=message):
                check.validate(bad)

    def test_one_step_per_valid_target_gateway_first(self):
        params = PingCheck().validate({"targets": ["mx2", "mx1; touch /tmp/pwned", "mx3"]})
        steps = PingCheck().steps(UNIX, params)
        assert [(s.key, s.target) for s in steps] == [
            ("ping:gateway", "gateway"),
            ("ping:mx2", "mx2"),
            ("ping:mx3", "mx3"),
        ]
        assert 'ping -n -c 2 -W 2 -- "$t"' in steps[1].script

    def test_invalid_target_is_an_error_result_in_its_place(self):
        params = PingCheck().validate({"targets": ["mx2", "mx1; touch /tmp/pwned"]})
        ok = sample("local-ping-success.out")
        outputs = {"ping:gateway": out("ping:gateway", ok), "ping:mx2": out("ping:mx2", ok)}
        results = PingCheck().evaluate("mx1", UNIX, params, outputs)
        assert [(r.target, r.status) for r in results] == [
            ("gateway", Status.OK),
            ("mx2", Status.OK),
            ("mx1; touch /tmp/pwned", Status.ERROR),
        ]
        assert "not a valid host name" in results[2].summary
        assert [r.cause for r in results] == ["", "", causes.INVALID_TARGET]

    def test_nothing_to_ping_is_skipped(self):
        params = PingCheck().validate({"gateway": False})
        [result] = PingCheck().evaluate("mx1", UNIX, params, {})
        assert (result.status, result.cause) == (Status.SKIPPED, causes.NO_TARGETS)


# ---------------------------------------------------------------- the scripts, run for real


needs_ping = pytest.mark.skipif(shutil.which("ping") is None, reason="no ping here")
needs_ip = pytest.mark.skipif(shutil.which("ip") is None, reason="no iproute2 here")


@needs_ip
def test_net_step_runs_and_parses_on_this_machine():
    outputs = run_steps(IpconfigCheck().steps(UNIX, {}))
    config = net_unix.parse(outputs)
    assert config.source.startswith("ip -j addr + ip -j route")
    lo = next(i for i in config.interfaces if i.loopback)
    assert lo.up and any(a.address == "127.0.0.1" for a in lo.ipv4)
    [binding] = BindingCheck().evaluate("here", UNIX, {}, outputs)
    assert binding.status in (Status.OK, Status.WARN, Status.FAIL)  # judged, not an error


@needs_ping
def test_ping_step_to_loopback_runs_and_is_ok():
    params = PingCheck().validate({"targets": ["127.0.0.1"], "gateway": False, "count": 2})
    outputs = run_steps(PingCheck().steps(UNIX, params))
    [result] = PingCheck().evaluate("here", UNIX, params, outputs)
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("127.0.0.1: 2/2 replies, rtt")


def fake_tools(bindir: Path) -> dict[str, str]:
    """ping and python3 stand-ins that print their argv, one per line: with them
    the composed script runs for real but nothing resolves or leaves the machine."""
    bindir.mkdir()
    for tool in ("ping", "python3"):
        path = bindir / tool
        path.write_text('#!/bin/sh\nfor a in "$@"; do printf "arg:%s\\n" "$a"; done\n')
        path.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}


HOSTILE = [
    "mx1; touch {p}",
    "$(touch {p})",
    "`touch {p}`",
    "mx1' ; touch {p} ; '",
    'mx1" ; touch {p} ; "',
    "mx1\ntouch {p}",
    "mx1 && touch {p}",
    "-f; touch {p}",
]


def test_hostile_targets_run_nothing_even_without_validation(tmp_path):
    env = fake_tools(tmp_path / "bin")
    canary = Path("/tmp/pwned")
    if canary.exists():  # left by someone else: this test's verdict would be ambiguous
        pytest.skip("/tmp/pwned already exists")
    targets = ["mx1; touch /tmp/pwned"] + [
        t.format(p=tmp_path / f"pwned{i}") for i, t in enumerate(HOSTILE)
    ]
    # Straight to the script builders: the checks' validation would have dropped these.
    steps = [
        Step(f"ping:{i}", ping_unix.ping_script(t, 1, 1), target=t) for i, t in enumerate(targets)
    ] + [
        Step(
            f"smtp:{i}",
            smtp_unix.smtp_script(t, 25, 1, "fleet.invalid"),
            t,
            shared=smtp_unix.SHARED,
        )
        for i, t in enumerate(targets)
    ]
    outputs = run_steps(steps, env=env)
    assert not canary.exists()
    assert not list(tmp_path.glob("pwned*"))
    for i, target in enumerate(targets):
        # Each value arrived as ONE argument, intact, after "--" for ping.
        ping_args = outputs[f"ping:{i}"].stdout.decode().split("arg:")[1:]
        assert ping_args[-2:] == ["--\n", target + "\n"]
        smtp_args = outputs[f"smtp:{i}"].stdout.decode().split("arg:")[1:]
        assert smtp_args[-4:] == [target + "\n", "25\n", "1.0\n", "fleet.invalid\n"]


@pytest.mark.parametrize(
    ("name", "first_line", "pinged"),
    [
        ("onlink", "fleet: on-link dev rec0", None),
        ("policy", "fleet: gateway 198.18.200.1", "198.18.200.1"),
        ("twodefaults", "fleet: gateway 198.18.200.1", "198.18.200.1"),
        ("nocarrier", "fleet: gateway 198.18.200.130", "198.18.200.130"),
    ],
)
def test_gateway_lookup_follows_the_kernels_route(tmp_path, name, first_line, pinged):
    """The ping step's lookup, run under sh with an ``ip`` that answers as recorded."""
    env = fake_tools(tmp_path / "bin")
    ip = tmp_path / "bin" / "ip"
    recorded = DATA / f"local-routes-{name}-ip-route-get.out"
    ip.write_text(f'#!/bin/sh\n[ "$3" = get ] && exec cat {recorded}\nexit 1\n')
    ip.chmod(0o755)
    step = Step("ping:gateway", ping_unix.ping_script("gateway", 1, 1), target="gateway")
    lines = run_steps([step], env=env)["ping:gateway"].stdout.decode().splitlines()
    assert lines[0] == first_line
    if pinged is None:
        assert lines == [first_line]  # nothing pinged
    else:
        assert lines[-1] == f"arg:{pinged}"


# ---------------------------------------------------------------- smtp probe


class ScriptedServer:
    """A one-connection TCP server on 127.0.0.1 that plays a scripted SMTP part.

    It records every line the client sent, and whether the client said
    anything before the greeting was complete (postscreen would punish that).
    """

    def __init__(
        self,
        greeting: Sequence[str],
        ehlo: Sequence[str] = ("250 ok",),
        pause=0.2,
        starttls: str = "454 4.7.0 TLS not available due to local problem",
    ):
        self.greeting, self.ehlo, self.pause, self.starttls = greeting, ehlo, pause, starttls
        self.received: list[str] = []
        self.talked_early = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            if not self.greeting:  # a server that never speaks
                with contextlib.suppress(OSError):
                    conn.recv(1)
                return
            for i, line in enumerate(self.greeting):
                if i:
                    time.sleep(self.pause)
                    readable, _, _ = select.select([conn], [], [], 0)
                    self.talked_early |= bool(readable)
                conn.sendall(line.encode() + b"\r\n")
            self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        for raw in conn.makefile("rb"):
            line = raw.decode().rstrip("\r\n")
            self.received.append(line)
            if line.upper().startswith("EHLO"):
                conn.sendall("".join(f"{x}\r\n" for x in self.ehlo).encode())
            elif line.upper() == "STARTTLS":
                conn.sendall(f"{self.starttls}\r\n".encode())
                if self.starttls.startswith("220"):  # then no TLS at all: garbage
                    conn.sendall(b"this is not a TLS server hello\r\n" * 4)
                    return
            elif line.upper() == "QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.listener.close()


@contextlib.contextmanager
def scripted(*args, **kwargs) -> Iterator[ScriptedServer]:
    server = ScriptedServer(*args, **kwargs)
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smtp_through_sh(
    port: int,
    timeout: float = 3,
    require_starttls: bool = False,
    env: Mapping[str, str] | None = None,
    **more,
):
    """The smtp check end to end: steps, composed script under sh, parse, judge."""
    check = SmtpCheck()
    params = check.validate(
        {"targets": ["127.0.0.1"], "port": port, "timeout": timeout,
         "require_starttls": require_starttls, **more}
    )  # fmt: skip
    outputs = run_steps(check.steps(UNIX, params), env=env)
    [result] = check.evaluate("mx1", UNIX, params, outputs)
    return result


def test_probe_against_aiosmtpd_is_ok():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    port = free_port()  # Controller's start-up self-test cannot use port 0
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = smtp_through_sh(port)
        warned = smtp_through_sh(port, require_starttls=True)
    finally:
        controller.stop()
    assert result.status is Status.OK, result.summary
    assert result.summary == "127.0.0.1: 220 greeting, EHLO 250, no STARTTLS"
    assert result.facts["tls_checked"] is False
    assert result.facts["greeting_code"] == 220
    assert result.facts["ehlo"][-1].startswith("250 ")
    assert result.facts["connect_ms"] is not None
    assert (warned.status, warned.summary) == (
        Status.WARN,
        f"127.0.0.1: no STARTTLS offered on port {port}",
    )
    assert (result.cause, warned.cause) == ("", causes.NO_STARTTLS)


def test_probe_reads_a_multi_line_greeting_before_speaking():
    greeting = ["220-mx2.lab.invalid ESMTP", "220-please wait", "220 mx2.lab.invalid ready"]
    ehlo = ["250-mx2.lab.invalid", "250-STARTTLS", "250 SIZE 10240000"]
    with scripted(greeting, ehlo) as server:
        result = smtp_through_sh(server.port)
    assert result.status is Status.WARN, result.summary
    assert result.cause == causes.STARTTLS_FAILED
    assert list(result.facts["greeting"]) == greeting
    assert result.facts["starttls"] is True
    assert server.talked_early is False
    # STARTTLS was offered, so tried; the server said 454: a warning, not a dead server.
    assert server.received == ["EHLO fleet.invalid", "STARTTLS", "QUIT"]  # never DATA, MAIL


def test_probe_421_greeting_fails_and_still_quits():
    with scripted(["421 4.3.2 Service not available"]) as server:
        result = smtp_through_sh(server.port)
    assert (result.status, result.summary) == (
        Status.FAIL,
        "127.0.0.1: greeting 421 4.3.2 Service not available",
    )
    assert result.facts["outcome"] == "bad-greeting"
    assert result.cause == causes.BAD_GREETING
    assert server.received == ["QUIT"]


def test_probe_silent_server_times_out_waiting_for_the_greeting():
    with scripted([]) as server:
        started = time.monotonic()
        result = smtp_through_sh(server.port, timeout=1, greeting_timeout=1)
    assert result.status is Status.FAIL
    assert result.facts["outcome"] == "timeout"
    # Connected (a connect time), then nothing: the greeting timed out, not the connect.
    assert result.facts["connect_ms"] is not None
    assert result.cause == causes.GREETING_TIMEOUT
    assert result.summary.startswith(f"127.0.0.1: timed out on port {server.port}")
    assert time.monotonic() - started < 8


def test_probe_closed_port_is_refused():
    port = free_port()
    result = smtp_through_sh(port)
    assert (result.status, result.summary) == (
        Status.FAIL,
        f"127.0.0.1: connection refused on port {port}",
    )
    assert result.cause == causes.REFUSED


def test_slow_greeting_after_a_pre_greeting_warns_with_its_delay():
    # postscreen: "220-" at once, the real greeting after its greet wait.
    greeting = ["220-mx.lab.invalid pre-greeting", "220 mx.lab.invalid ESMTP Postfix"]
    with scripted(greeting, pause=1.5) as server:
        result = smtp_through_sh(server.port, timeout=0.5, greeting_warn=1)
    assert (result.status, result.cause) == (Status.WARN, causes.SLOW_GREETING), result.summary
    assert result.summary.startswith("127.0.0.1: slow greeting: 1.")
    assert list(result.facts["greeting"]) == greeting
    assert 1400 < result.facts["greeting_ms"] < 5000
    assert server.talked_early is False


def test_greeting_that_never_ends_times_out_keeping_its_first_lines():
    with scripted(["220-mx.lab.invalid pre-greeting", "220-still"], pause=0) as server:
        result = smtp_through_sh(server.port, timeout=0.5, greeting_timeout=1)
    assert (result.status, result.cause) == (Status.FAIL, causes.GREETING_TIMEOUT)
    assert list(result.facts["greeting"]) == ["220-mx.lab.invalid pre-greeting", "220-still"]
    assert "after 2 greeting line(s)" in result.summary


class DripServer:
    """Accepts one connection and sends "220-" bytes one at a time, forever."""

    def __init__(self, every: float = 0.2):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.every, self.stop = every, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, contextlib.suppress(OSError):
            while not self.stop.wait(self.every):
                conn.sendall(b"2")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


def test_slow_drip_server_is_cut_at_the_probe_deadline():
    server = DripServer()
    try:
        started = time.monotonic()
        # Each byte comes well within the 0.5 s read timeout; the deadline is 1 + 4 x 0.5 s.
        result = smtp_through_sh(server.port, timeout=0.5, greeting_timeout=1)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert (result.status, result.cause) == (Status.FAIL, causes.GREETING_TIMEOUT)
    assert elapsed < 6  # not the step's 20 s


def test_starttls_refused_with_454_fails_when_required():
    ehlo = ["250-mx.lab.invalid", "250 STARTTLS"]
    with scripted(["220 mx.lab.invalid ESMTP"], ehlo) as server:
        result = smtp_through_sh(server.port, require_starttls=True)
    assert (result.status, result.cause) == (Status.FAIL, causes.STARTTLS_FAILED)
    assert result.summary == (
        "127.0.0.1: STARTTLS offered, but failed: 454 4.7.0 TLS not available due to local problem"
    )
    assert result.facts["tls_checked"] is True and result.facts["tls_protocol"] == ""
    assert server.received == ["EHLO fleet.invalid", "STARTTLS", "QUIT"]


def test_starttls_handshake_garbage_is_a_failed_handshake():
    ehlo = ["250-mx.lab.invalid", "250 STARTTLS"]
    with scripted(["220 mx.lab.invalid ESMTP"], ehlo, starttls="220 2.0.0 go ahead") as server:
        result = smtp_through_sh(server.port, timeout=2)
    assert (result.status, result.cause) == (Status.WARN, causes.STARTTLS_FAILED)
    assert "TLS handshake failed" in result.facts["tls_error"]


@pytest.mark.parametrize(
    ("verify_cert", "verified", "trust"),
    [(True, False, "not verified"), (False, None, "not checked")],
    ids=["verified-when-asked", "not-checked-by-default"],
)
def test_starttls_handshake_reports_protocol_and_the_self_signed_certificate(
    tmp_path, verify_cert, verified, trust
):
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    from tests.lab.smtpd import self_signed

    port = free_port()
    context = self_signed("mx7", tmp_path)
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, tls_context=context)
    controller.start()
    try:
        result = smtp_through_sh(port, require_starttls=True, verify_cert=verify_cert)
    finally:
        controller.stop()
    facts = result.facts
    assert result.status is Status.OK, result.summary
    assert facts["tls_protocol"].startswith("TLSv1.")
    assert (facts["cert_subject"], facts["cert_issuer"]) == ("CN=mx7.lab", "CN=mx7.lab")
    # Reported, not failed: mail servers often present self-signed certificates.
    assert facts["cert_verified"] is verified
    assert ("self" in facts["cert_verify_error"]) is bool(verify_cert)
    assert facts["cert_not_after"].endswith("Z") and facts["cert_not_after"][:2] == "20"
    assert "STARTTLS TLSv1." in result.summary and trust in result.summary


@pytest.mark.parametrize("years", [1, 40])  # UTCTime before 2050, GeneralizedTime after
def test_probe_reads_subject_issuer_and_not_after_from_der(years):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Müller Mail"),
            x509.NameAttribute(NameOID.COMMON_NAME, "mx.example"),
        ]
    )
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lab CA")])
    end = datetime.datetime(2025 + years, 3, 4, 5, 6, 7)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2024, 1, 1))
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    found: dict = {}
    unix_probe.certificate(cert.public_bytes(serialization.Encoding.DER), found)
    assert found == {
        "cert_subject": "C=DE, O=Müller Mail, CN=mx.example",
        "cert_issuer": "CN=Lab CA",
        "cert_not_after": f"{2025 + years}-03-04T05:06:07Z",
    }


def probe_main(monkeypatch, capsys, **patches) -> dict:
    for name, fake in patches.items():
        monkeypatch.setattr(unix_probe.socket, name, fake)
    unix_probe.main(["probe", "mx9.lab.invalid", "25", "1", "fleet.invalid"])
    return json.loads(capsys.readouterr().out)


def test_probe_classifies_an_unresolvable_name(monkeypatch, capsys):
    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = probe_main(monkeypatch, capsys, getaddrinfo=no_such_name)
    assert result["outcome"] == "unresolved"
    assert "mx9.lab.invalid" in result["error"]


def test_probe_classifies_no_route_to_host(monkeypatch, capsys):
    class Unreachable:  # stands in for the probe's _socket.socket
        def __init__(self, *args):
            self.closed = False

        def settimeout(self, seconds):
            pass

        def connect(self, address):
            raise OSError(errno.EHOSTUNREACH, "No route to host")

        def close(self):
            self.closed = True

    def loopback(*args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 25))]

    result = probe_main(monkeypatch, capsys, getaddrinfo=loopback, socket=Unreachable)
    assert result["outcome"] == "unreachable"
    assert result["error"] == "No route to host"


# ---------------------------------------------------------------- smtp without python3

# What a host without python3 may still have; each test's PATH holds only these.
BASE_TOOLS = ("sh", "cat", "rm", "mkfifo", "sleep", "grep", "mktemp", "printf", "timeout")


def host_without_python(bindir: Path, *tools: str) -> dict[str, str]:
    """A PATH of links to this machine's ``tools`` (BusyBox's applets for "busybox")."""
    bindir.mkdir()
    if "busybox" in tools:
        busybox = shutil.which("busybox") or ""
        listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
        for name in listed.stdout.split():
            (bindir / name).symlink_to(busybox)
        return {"PATH": str(bindir)}
    for tool in (*BASE_TOOLS, *tools):
        (bindir / tool).symlink_to(shutil.which(tool) or f"/nonexistent/{tool}")
    return {"PATH": str(bindir)}


FALLBACK_TOOLS = [
    pytest.param(
        ("busybox",),
        "nc",
        marks=pytest.mark.skipif(not shutil.which("busybox"), reason="needs busybox"),
        id="busybox-nc",
    ),
    pytest.param(("bash",), "bash", id="bash-dev-tcp"),
]


@pytest.mark.parametrize(("tools", "probe"), FALLBACK_TOOLS)
class TestSmtpWithoutPython:
    def test_greeting_and_ehlo_are_read_through_the_hosts_tool(self, tmp_path, tools, probe):
        env = host_without_python(tmp_path / "bin", *tools)
        greeting = ["220-mx2.lab.invalid ESMTP", "220 mx2.lab.invalid ready"]
        ehlo = ["250-mx2.lab.invalid", "250-STARTTLS", "250 SIZE 10240000"]
        with scripted(greeting, ehlo) as server:
            result = smtp_through_sh(server.port, env=env)
        assert (result.status, result.cause) == (Status.OK, ""), result.summary
        facts = result.facts
        assert facts["probe"] == probe
        assert (list(facts["greeting"]), list(facts["ehlo"])) == (greeting, ehlo)
        assert (facts["greeting_code"], facts["starttls"]) == (220, True)
        # What the tool cannot know stays unknown: no clock, no TLS handshake.
        assert (facts["connect_ms"], facts["greeting_ms"]) == (None, None)
        assert (facts["tls_checked"], facts["cert_verified"]) == (False, None)
        assert "handshake not tried" in result.summary
        assert server.talked_early is False
        assert server.received == ["EHLO fleet.invalid", "QUIT"]  # never STARTTLS, DATA

    def test_bad_greeting_fails_and_quits(self, tmp_path, tools, probe):
        env = host_without_python(tmp_path / "bin", *tools)
        with scripted(["554 5.7.1 go away"]) as server:
            result = smtp_through_sh(server.port, env=env)
        assert (result.status, result.cause) == (Status.FAIL, causes.BAD_GREETING)
        assert result.summary == "127.0.0.1: greeting 554 5.7.1 go away"
        assert server.received == ["QUIT"]

    def test_closed_port_is_refused(self, tmp_path, tools, probe):
        env = host_without_python(tmp_path / "bin", *tools)
        port = free_port()
        result = smtp_through_sh(port, env=env)
        assert (result.status, result.cause) == (Status.FAIL, causes.REFUSED), result.summary
        assert result.facts["probe"] == probe

    def test_silent_server_times_out_at_the_probe_deadline(self, tmp_path, tools, probe):
        env = host_without_python(tmp_path / "bin", *tools)
        with scripted([]) as server:
            started = time.monotonic()
            result = smtp_through_sh(server.port, env=env, timeout=0.5, greeting_timeout=1)
        assert (result.status, result.facts["outcome"]) == (Status.FAIL, "timeout")
        # bash says it connected; BusyBox's nc does not, so which stage is unknown.
        wanted = causes.GREETING_TIMEOUT if probe == "bash" else causes.TIMEOUT
        assert result.cause == wanted
        assert time.monotonic() - started < 8


def test_smtp_without_any_tool_says_what_to_install(tmp_path):
    env = host_without_python(tmp_path / "bin")
    result = smtp_through_sh(free_port(), env=env)
    assert (result.status, result.cause) == (Status.ERROR, causes.TOOL_MISSING)
    assert "install python3 or nc" in result.summary


def test_smtp_with_python3_says_so(tmp_path):
    with scripted(["220 mx2.lab.invalid"]) as server:
        result = smtp_through_sh(server.port)
    assert result.facts["probe"] == "python3"


class TestSmtpParsing:
    def test_missing_python_is_an_error_not_a_mail_failure(self):
        params = SmtpCheck().validate({"targets": ["mx2"]})
        outputs = {"smtp:mx2": out("smtp:mx2", smtp_unix.NO_PYTHON + "\n", status=127)}
        [result] = SmtpCheck().evaluate("mx1", UNIX, params, outputs)
        assert (result.status, result.summary) == (
            Status.ERROR,
            "mx2: smtp probe needs python3, nc, bash or openssl on the host"
            " (install python3 or nc)",
        )
        assert result.cause == causes.TOOL_MISSING

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "Traceback (most recent call last):\n  ...\nSyntaxError: invalid syntax\n",
            '{"outcome": "ok", "greeting": [1, 2]}\n',
            '{"outcome": "maybe"}\n',
            '{"outcome": "ok", "port": "twenty-five"}\n',
            '{"outcome": "ok", "greeting": ["220 x"\n',
        ],
    )
    def test_garbage_from_the_probe_is_an_error(self, text):
        params = SmtpCheck().validate({"targets": ["mx2"]})
        [result] = SmtpCheck().evaluate("mx1", UNIX, params, {"smtp:mx2": out("smtp:mx2", text)})
        assert (result.status, result.cause) == (Status.ERROR, causes.UNPARSED)
        assert result.target == "mx2"

    def test_validation(self):
        check = SmtpCheck()
        assert check.validate({}) == {
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
        for bad, message in [
            ({"helo": "x\r\nMAIL FROM:<a@b>"}, "smtp: helo must be a host name"),
            ({"port": 70000}, "smtp: port must be between 1 and 65535"),
            ({"starttls": True}, "smtp: unknown parameter 'starttls'"),
            ({"greeting_timeout": 0}, "smtp: greeting_timeout must be between 0.1 and 300"),
            ({"cert_warn_days": "soon"}, "smtp: cert_warn_days must be a number"),
        ]:
            with pytest.raises(ValueError, match=message):
                check.validate(bad)

    def test_compact_program_drops_comments_and_docstrings_not_code(self):
        source = (
            'class Retry(Exception):\n    """Only a docstring."""\n\n\n'
            'def f():\n    """Doc\n    on two lines."""\n'
            '    x = "a # not a comment"  # a comment\n    return x\n'
        )
        compacted = smtp_unix.compact(source)
        assert 'comment"' in compacted and "# a comment" not in compacted
        assert "Doc" not in compacted and "docstring" not in compacted
        namespace: dict = {}
        exec(compile(compacted, "compacted", "exec"), namespace)
        assert namespace["f"]() == "a # not a comment"
        assert len(smtp_unix.PROBE_PROGRAM) < 0.75 * len(smtp_unix.PROBE_SOURCE)

    def test_probe_program_has_no_single_quote(self):
        # It is sent inside sh single quotes; one there would cost escaping on every host.
        assert "'" not in smtp_unix.PROBE_PROGRAM


@pytest.mark.parametrize(
    "value",
    [
        "220 mx.example ESMTP",
        'quote " backslash \\ tab \t nul \x00 del \x7f',
        "latin é, euro €, emoji 😀 (a surrogate pair)",
        ["250-a", "250 b"],
        {"n": None, "t": True, "f": False, "i": -25, "x": 0.748, "l": []},
    ],
)
def test_probe_json_writer_round_trips(value):
    # The probe writes its own JSON (importing json costs every host a regex engine).
    text = unix_probe.to_json(value)
    assert text.isascii()
    assert json.loads(text) == value


def test_the_probe_program_travels_once_per_host_whatever_the_targets():
    params = SmtpCheck().validate({"targets": ["mx1", "mx2", "mx3", "mx4"]})
    steps = SmtpCheck().steps(Platform.UNIX, params)
    script = compose_sh(steps, new_nonce(), 30)
    assert len(steps) == 4
    assert script.count("fleet_smtp_py() {") == 1
    assert script.count(smtp_unix.PROBE_PROGRAM.splitlines()[1]) == 1
    assert len(script) < len(smtp_unix.PROBE_PROGRAM) + 4 * 2500  # not four copies
