"""ipconfig /all and ping.exe text in the languages Windows servers run.

Every file under tests/data/windows/localised/ is output published from a real
machine (tests/data/windows/README.md names each source).  Where a test edits a
recording, the edit is the point of the test and is spelled out in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet import causes
from fleet.checks.facts import PingResult
from fleet.checks.ipconfig.text import parse_ipconfig_text
from fleet.checks.ping.judge import judge_ping
from fleet.checks.ping.text import TTL_EXPIRED, UNREACHABLE, line_reason, parse_ping_text
from fleet.errors import ParseError

LOCALISED = Path(__file__).parent / "data" / "windows" / "localised"


def read(name: str) -> str:
    return (LOCALISED / name).read_text(encoding="utf-8")


def by_name(text: str):
    return {i.name: i for i in parse_ipconfig_text(text).interfaces}


# --------------------------------------------------------------------------- ipconfig /all


@pytest.mark.parametrize(
    ("sample", "adapter", "address", "prefix", "gateway", "dhcp"),
    [
        ("ipconfig-all-de-win11.out", "WLAN", "192.168.178.23", 24, "192.168.178.1", True),
        ("ipconfig-all-ru-win10.out", "Беспроводная сеть", "192.168.50.181", 24, "192.168.50.1",
         True),
        ("ipconfig-all-zh-win.out", "WLAN", "10.21.64.82", 16, "10.21.255.254", True),
        ("ipconfig-ja-win.out", "イーサネット", "192.168.3.16", 24, "192.168.3.1", None),
        ("ipconfig-it-win.out", "Wi-Fi", "192.168.10.157", 24, "192.168.10.1", None),
        ("ipconfig-all-pt-xp.out", "vivax", "200.189.93.177", 32, "200.189.93.177", False),
        ("ipconfig-es-cp850-dropped.out", "Conexin de rea local", "192.168.66.25", 24,
         "192.168.66.1", None),
    ],
)  # fmt: skip
def test_localised_ipconfig_reads_address_mask_gateway_and_dhcp(
    sample, adapter, address, prefix, gateway, dhcp
):
    config = parse_ipconfig_text(read(sample))
    iface = {i.name: i for i in config.interfaces}[adapter]
    assert [(a.address, a.prefix) for a in iface.ipv4] == [(address, prefix)]
    assert iface.gateways == (gateway,) and iface.up and iface.dhcp is dhcp
    assert gateway in config.default_gateways


@pytest.mark.parametrize(
    ("sample", "disconnected"),
    [
        ("ipconfig-all-de-win11.out", {"Ethernet", "Bluetooth-Netzwerkverbindung"}),
        ("ipconfig-all-ru-win10.out", {"Ethernet", "Сетевое подключение Bluetooth"}),
        ("ipconfig-all-zh-win.out", {"本地连接* 1", "本地连接* 10", "蓝牙网络连接"}),
        ("ipconfig-ja-win.out", {"ローカル エリア接続* 9", "ローカル エリア接続* 10"}),
        ("ipconfig-it-win.out", {"Connessione alla rete locale (LAN)* 1"}),
        ("ipconfig-es-cp850-dropped.out", {"Adaptador de tnel isatap.Home"}),
    ],
)
def test_disconnected_adapters_are_not_reported_up(sample, disconnected):
    interfaces = by_name(read(sample))
    assert disconnected <= set(interfaces)
    assert not any(interfaces[name].up for name in disconnected)


def test_gateway_after_an_ipv6_one_on_a_continuation_line_is_read():
    # Standardgateway: fe80::...%5 then 192.168.178.1 on the next line.
    assert by_name(read("ipconfig-all-de-win11.out"))["WLAN"].gateways == ("192.168.178.1",)


def test_ipv4_dns_servers_after_ipv6_ones_are_read():
    config = parse_ipconfig_text(read("ipconfig-all-de-win11.out"))
    assert config.dns_servers == ("192.168.178.1",)
    assert parse_ipconfig_text(read("ipconfig-all-zh-win.out")).dns_servers == (
        "218.201.96.130",
        "202.194.116.66",
    )


def test_apipa_on_portuguese_xp_is_read_with_its_mask():
    conexao = by_name(read("ipconfig-all-pt-xp.out"))["Conexão local"]
    assert [(a.address, a.prefix) for a in conexao.ipv4] == [("169.254.66.161", 16)]
    assert conexao.gateways == () and conexao.dhcp is True


def test_an_unknown_label_carrying_an_address_is_unparsed_not_no_address():
    # The recording with its IPv4 label renamed to a word no table knows.
    text = read("ipconfig-all-de-win11.out").replace("IPv4-Adresse  . .", "Adresse-IPv4x . .")
    with pytest.raises(ParseError, match="unparsed") as raised:
        parse_ipconfig_text(text)
    assert raised.value.cause == causes.UNPARSED


def test_russian_read_through_the_wrong_code_page_is_refused():
    # cp866 bytes decoded as cp1252: every Cyrillic label is noise, the values are not.
    garbled = read("ipconfig-all-ru-win10.out").encode("cp866").decode("cp1252", "replace")
    with pytest.raises(ParseError, match="unparsed"):
        parse_ipconfig_text(garbled)


def test_an_address_without_its_mask_is_refused():
    text = read("ipconfig-it-win.out").replace(
        "   Subnet mask . . . . . . . . . . . . . : 255.255.255.0\n", ""
    )
    with pytest.raises(ParseError, match="without a mask"):
        parse_ipconfig_text(text)


# --------------------------------------------------------------------------- ping.exe


@pytest.mark.parametrize(
    ("sample", "sent", "received", "error", "rtt"),
    [
        ("ping-ru-win.out", 8, 8, "", (68.0, 68.625, 69.0)),  # "мс", totals wrap a line
        ("ping-zh-win.out", 2, 2, "", (1.0, 1.0, 1.0)),  # full-width commas
        ("ping-ja-win.out", 1, 1, "", (1.0, 1.0, 1.0)),
        ("ping-ja-timeout.out", 1, 0, "timed out", None),
        ("ping-es-win.out", 4, 4, "", (1.0, 1.0, 1.0)),  # "tiempo<1m": the unit cut short
        ("ping-it-win.out", 4, 4, "", (6.0, 6.75, 8.0)),  # "Persi" on the next line
        ("ping-pt-win.out", 4, 4, "", (1.0, 1.5, 2.0)),  # "(0% de\n perda)"
        ("ping-en-ipv6-loopback.out", 4, 4, "", (1.0, 1.0, 1.0)),  # no bytes=, no TTL=
        ("ping-en-ttl-expired.out", 4, 0, "TTL expired in transit", None),
        ("ping-en-xp-unreachable.out", 4, 0, "host unreachable", None),
        ("ping-en-xp-unknown-host.out", 0, 0, "unknown host", None),
    ],
)
def test_ping_exe_text_in_many_languages(sample, sent, received, error, rtt):
    result = parse_ping_text(read(sample), "t")
    assert (result.transmitted, result.received, result.error) == (sent, received, error)
    if rtt:
        assert (result.rtt_min_ms, result.rtt_avg_ms, result.rtt_max_ms) == rtt


def test_ttl_expired_in_transit_is_its_own_cause():
    result = judge_ping("win1", parse_ping_text(read("ping-en-ttl-expired.out"), "mx2"))
    assert result.cause == causes.TTL_EXPIRED


@pytest.mark.parametrize(
    "sample",
    [
        "ping-en-xp-unknown-host.out",
        "ping-de-unknown-host.out",
        "ping-fr-unknown-host.out",  # typographic apostrophes (U+2019)
        "ping-es-unknown-host.out",  # wrapped at 80 columns
        "ping-ru-unknown-host.out",
        "ping-ja-unknown-host.out",
        "ping-zh-unknown-host.out",
    ],
)
def test_could_not_find_host_is_name_unresolved(sample):
    ping = parse_ping_text(read(sample), "mx9")
    assert (ping.transmitted, ping.error) == (0, "unknown host")
    assert judge_ping("win1", ping).cause == causes.NAME_UNRESOLVED


@pytest.mark.parametrize(
    ("sample", "reasons"),
    [
        ("ping-es-ttl-expired-cut.out", ["", *[TTL_EXPIRED] * 4]),  # the header, 4 answers
        ("ping-ru-ttl-expired-cut.out", [TTL_EXPIRED]),
        ("ping-ja-ttl-expired-cut.out", [TTL_EXPIRED]),
        ("ping-zh-ttl-expired-cut.out", [UNREACHABLE, TTL_EXPIRED]),
    ],
)
def test_ttl_expired_in_transit_is_read_in_each_language(sample, reasons):
    assert [line_reason(line) for line in read(sample).splitlines()] == reasons


@pytest.mark.parametrize(
    "sample",
    [
        "ping-es-ttl-expired-cut.out",
        "ping-ru-ttl-expired-cut.out",
        "ping-ja-ttl-expired-cut.out",
        "ping-zh-ttl-expired-cut.out",
    ],
)
def test_output_cut_before_the_totals_is_unparsed_and_names_what_it_read(sample):
    # These recordings were published without ping.exe's statistics: no count is
    # guessed, and the error says what the lines did say.
    with pytest.raises(ParseError, match=r"unparsed .*read: .*TTL expired in transit"):
        parse_ping_text(read(sample), "t")


def test_replies_that_do_not_add_up_with_the_totals_are_unparsed():
    # The Russian recording read through the wrong code page: "мс" is no longer a unit,
    # so no reply is recognised while ping.exe counted eight.
    garbled = read("ping-ru-win.out").replace("мс", "¬á")
    with pytest.raises(ParseError, match="unparsed"):
        parse_ping_text(garbled, "t")


def test_router_answers_count_for_ping_exe_but_not_as_replies():
    result = parse_ping_text(read("ping-en-ttl-expired.out"), "t")
    assert result == PingResult("t", 4, 0, error="TTL expired in transit")


def test_no_statistics_and_no_known_message_is_unparsed():
    with pytest.raises(ParseError, match="unparsed"):
        parse_ping_text(read("ping-ja-win.out").split("\n\n")[0], "t")
