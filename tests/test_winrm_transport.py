"""fleet's WinRM transport, driven through the real pywinrm against the lab's WS-Management server.

The server (tests/test_wsman.py's ``start_winlab``) listens on 127.0.0.1
with random ports: HTTP with NTLM and sealing, HTTPS with a lab-CA
certificate.  Nothing here talks to another address.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fleet import causes
from fleet.errors import (
    AuthenticationError,
    CommandTimeout,
    ConfigError,
    FleetError,
    HostKeyError,
    TransportError,
    UnreachableError,
)
from fleet.plan import HostPlan, RunOptions
from fleet.transports.base import open_transport
from fleet.transports.winrm import WinRMTransport, _cause, translate
from fleet.transports.winrm_settings import WinRMSettings
from tests.helpers import clear_proxies
from tests.lab import pki
from tests.sshd_fixture import free_port
from tests.test_wsman import PASSWORD, USER, WinLab, running_winlab

WRONG_PASSWORD = "Wr0ng-Secret-4711"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WinLab]:
    yield from running_winlab(tmp_path_factory.mktemp("winrm"))


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxies(monkeypatch)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def https_host(lab: WinLab, **variables: Any) -> HostPlan:
    merged = {"ansible_password": PASSWORD, "ansible_winrm_ca_trust_path": str(lab.ca), **variables}
    return HostPlan("win1", "winrm", "127.0.0.1", lab.server.https_port, USER, merged)


def http_host(lab: WinLab, **variables: Any) -> HostPlan:
    merged = {"ansible_password": PASSWORD, "ansible_winrm_scheme": "http", **variables}
    return HostPlan("win1", "winrm", "127.0.0.1", lab.server.http_port, USER, merged)


def run_once(host: HostPlan, script: str, timeout: float = 20, **options: Any) -> Any:
    transport = WinRMTransport(host, RunOptions(connect_timeout=5, **options))
    try:
        return transport.run(script, timeout)
    finally:
        transport.close()


# -- round trips


def test_ntlm_over_http_is_sealed_and_non_ascii_output_survives(lab: WinLab) -> None:
    script = "Write-Output 'Grüße aus Köln — 東京'"
    sealed_before = lab.counts().get("sealed", 0)
    result = run_once(http_host(lab), script)
    assert result.stdout == f"ran: {script}".encode()
    assert (result.stderr, result.exit_status) == (b"warning\r\n", 3)
    assert result.command == "powershell.exe -NoProfile -NonInteractive -EncodedCommand ..."
    assert lab.counts()["sealed"] > sealed_before
    assert lab.behaviour.scripts[-1] == script


def test_basic_over_https_with_the_lab_ca_trusted(lab: WinLab) -> None:
    result = run_once(https_host(lab, ansible_winrm_transport="basic"), "hello")
    assert (result.stdout, result.exit_status) == (b"ran: hello", 3)


def test_ntlm_over_https_with_channel_binding(lab: WinLab) -> None:
    result = run_once(https_host(lab, ansible_winrm_transport="ntlm"), "hello")
    assert result.stdout == b"ran: hello"


def test_ansible_transport_ssl_means_basic_over_https(lab: WinLab) -> None:
    result = run_once(https_host(lab, ansible_winrm_transport="ssl"), "hello")
    assert result.stdout == b"ran: hello"


def test_opened_through_the_registry(lab: WinLab) -> None:
    transport = open_transport(https_host(lab), RunOptions())
    try:
        assert isinstance(transport, WinRMTransport) and transport.shell == "powershell"
        assert transport.run("x", 10).stdout == b"ran: x"
    finally:
        transport.close()


def test_one_shell_and_one_process_per_script_for_the_whole_audit(lab: WinLab) -> None:
    before = lab.counts()
    transport = WinRMTransport(https_host(lab), RunOptions())
    try:
        for n in range(3):
            assert transport.run(f"step {n}", 10).stdout == f"ran: step {n}".encode()
    finally:
        transport.close()
    after = lab.counts()
    assert after["shells"] - before.get("shells", 0) == 1
    assert after["commands"] - before.get("commands", 0) == 3
    assert after["deletes"] - before.get("deletes", 0) == 1


def test_script_too_long_for_a_command_line_goes_through_stdin(lab: WinLab) -> None:
    script = "\n".join(f"Write-Output 'line {n} ü'" for n in range(3000))
    result = run_once(http_host(lab), script)
    assert lab.behaviour.scripts[-1] == script
    assert result.exit_status == 3
    assert result.command.endswith("(script on stdin)")


def test_stdout_is_capped_at_max_output(lab: WinLab) -> None:
    result = run_once(https_host(lab), "big 200000", max_output=100_000)
    assert len(result.stdout) == 100_000 and result.truncated
    whole = run_once(https_host(lab), "big 200000")
    assert len(whole.stdout) == 200_000 and not whole.truncated


# -- certificates


def test_untrusted_certificate_is_a_host_key_error(lab: WinLab, tmp_path: Path) -> None:
    other_ca, _ = pki.ensure_ca(tmp_path / "other")
    with pytest.raises(HostKeyError) as caught:
        run_once(https_host(lab, ansible_winrm_ca_trust_path=str(other_ca)), "x")
    assert "certificate rejected" in caught.value.reason
    assert "unable to get local issuer certificate" in caught.value.reason
    assert "ansible_winrm_ca_trust_path" in caught.value.hint
    assert caught.value.cause == causes.CERTIFICATE_REJECTED


def test_default_trust_store_rejects_the_lab_certificate(lab: WinLab) -> None:
    host = https_host(lab)
    variables = dict(host.vars)
    del variables["ansible_winrm_ca_trust_path"]
    with pytest.raises(HostKeyError):
        run_once(HostPlan(host.name, "winrm", host.address, host.port, host.user, variables), "x")


def test_validation_off_accepts_an_untrusted_certificate(lab: WinLab, tmp_path: Path) -> None:
    other_ca, _ = pki.ensure_ca(tmp_path / "other")
    host = https_host(
        lab,
        ansible_winrm_ca_trust_path=str(other_ca),
        ansible_winrm_server_cert_validation="ignore",
    )
    assert run_once(host, "x").stdout == b"ran: x"


# -- refusals and failures


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_wrong_password_is_an_authentication_error_that_never_shows_it(
    lab: WinLab, scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    make = http_host if scheme == "http" else https_host
    host = make(lab, ansible_password=WRONG_PASSWORD)
    caplog.set_level(logging.DEBUG)
    transport = WinRMTransport(host, RunOptions())
    with pytest.raises(AuthenticationError) as caught:
        transport.run("x", 10)
    error = caught.value
    assert "authentication refused for user fleet" in error.reason
    assert error.cause == causes.AUTH_REFUSED
    texts = [str(error), repr(error), error.hint, repr(transport), repr(transport.settings)]
    cause: BaseException | None = error
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__
    texts += [record.getMessage() for record in caplog.records]
    assert not [text for text in texts if WRONG_PASSWORD in text]


def test_refused_port_is_unreachable(lab: WinLab) -> None:
    port = free_port()
    host = HostPlan("win1", "winrm", "127.0.0.1", port, USER, {"ansible_password": PASSWORD})
    with pytest.raises(UnreachableError) as caught:
        run_once(host, "x")
    assert caught.value.reason == f"connection refused on port {port}"
    assert "5985" in caught.value.hint and not isinstance(caught.value, AuthenticationError)
    assert caught.value.cause == causes.CONNECT_REFUSED


def test_basic_over_plain_http_is_refused_before_sending_anything(lab: WinLab) -> None:
    requests_before = lab.counts().get("requests", 0)
    with pytest.raises(UnreachableError) as caught:
        run_once(http_host(lab, ansible_winrm_transport="basic"), "x")
    assert "plain HTTP" in caught.value.reason
    assert "fleet_winrm_allow_insecure_basic" in caught.value.hint
    assert caught.value.cause == causes.CONFIG_MISSING
    assert lab.counts().get("requests", 0) == requests_before


def test_insecure_basic_when_allowed_reaches_the_server(lab: WinLab) -> None:
    # The lab server refuses Basic over HTTP (Windows' default): the client
    # sent it, and the server's refusal reads as an authentication error.
    host = http_host(lab, ansible_winrm_transport="basic", fleet_winrm_allow_insecure_basic="true")
    with pytest.raises(AuthenticationError):
        run_once(host, "x")


def test_unencrypted_ntlm_over_http_is_refused(lab: WinLab) -> None:
    with pytest.raises(UnreachableError, match="unencrypted"):
        run_once(http_host(lab, ansible_winrm_message_encryption="never"), "x")


def test_http_against_the_https_port_is_unreachable(lab: WinLab) -> None:
    host = https_host(lab, ansible_winrm_scheme="http")
    with pytest.raises(UnreachableError):
        run_once(host, "x")


def test_https_against_the_http_port_is_unreachable_not_a_certificate_problem(
    lab: WinLab,
) -> None:
    host = https_host(lab)
    host = HostPlan(host.name, "winrm", host.address, lab.server.http_port, host.user, host.vars)
    with pytest.raises(UnreachableError) as caught:
        run_once(host, "x")
    assert not isinstance(caught.value, HostKeyError)
    assert "TLS handshake" in caught.value.reason and "5986" in caught.value.hint
    assert caught.value.cause == causes.PROTOCOL_ERROR


# -- time


def test_command_slower_than_the_operation_timeout_still_completes(lab: WinLab) -> None:
    timeouts_before = lab.counts().get("operation_timeouts", 0)
    host = https_host(lab, ansible_winrm_operation_timeout_sec=1, ansible_winrm_read_timeout_sec=4)
    result = run_once(host, "sleep 2.5")
    assert (result.stdout, result.exit_status) == (b"slept\r\n", 0)
    assert lab.counts()["operation_timeouts"] - timeouts_before >= 2


def test_command_that_never_finishes_times_out_within_the_deadline(lab: WinLab) -> None:
    before = lab.counts()
    transport = WinRMTransport(http_host(lab), RunOptions())
    started = time.monotonic()
    try:
        with pytest.raises(CommandTimeout) as caught:
            transport.run("hang", timeout=2)
        elapsed = time.monotonic() - started
        assert caught.value.timeout == 2
        assert caught.value.cause == causes.COMMAND_TIMEOUT
        assert 2 <= elapsed < 4.5
        assert lab.counts()["signals"] == before.get("signals", 0) + 1
        # The stopped command leaves the shell usable for the rest of the audit.
        assert transport.run("after", 10).stdout == b"ran: after"
    finally:
        transport.close()
    assert lab.counts()["shells"] == before.get("shells", 0) + 1


def test_a_host_that_never_answers_is_unreachable_after_the_read_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        host = HostPlan(
            "win1",
            "winrm",
            "127.0.0.1",
            port,
            USER,
            {
                "ansible_password": PASSWORD,
                "ansible_winrm_scheme": "http",
                "ansible_winrm_operation_timeout_sec": 1,
                "ansible_winrm_read_timeout_sec": 2,
            },
        )
        started = time.monotonic()
        with pytest.raises(UnreachableError, match=r"no answer from 127\.0\.0\.1") as caught:
            run_once(host, "x")
        assert time.monotonic() - started < 4
    assert caught.value.cause == causes.LOGIN_TIMEOUT


# -- settings from the inventory


def plan(port: int | None = None, **variables: Any) -> HostPlan:
    return HostPlan("win1", "winrm", "198.18.0.30", port, "fleet", variables)


def test_defaults_are_https_5986_ntlm_with_validation() -> None:
    s = WinRMSettings.from_host(plan(), RunOptions())
    assert (s.scheme, s.port, s.auth, s.server_cert_validation, s.path) == (
        "https",
        5986,
        "ntlm",
        "validate",
        "/wsman",
    )
    assert s.endpoint == "https://198.18.0.30:5986/wsman"


def test_port_5985_without_a_scheme_means_http_as_in_ansible() -> None:
    assert WinRMSettings.from_host(plan(5985), RunOptions()).scheme == "http"
    assert WinRMSettings.from_host(plan(scheme_free := 15986), RunOptions()).port == scheme_free


def test_ansible_transport_list_takes_the_first() -> None:
    assert (
        WinRMSettings.from_host(plan(ansible_winrm_transport=["basic", "ntlm"]), RunOptions()).auth
        == "basic"
    )
    assert (
        WinRMSettings.from_host(plan(ansible_winrm_transport="kerberos,ntlm"), RunOptions()).auth
        == "kerberos"
    )


@pytest.mark.parametrize(
    "variables",
    [
        {"ansible_winrm_transport": "telnet"},
        {"ansible_winrm_scheme": "ftp"},
        {"ansible_winrm_server_cert_validation": "maybe"},
        {"ansible_winrm_operation_timeout_sec": 30, "ansible_winrm_read_timeout_sec": 30},
        {"ansible_winrm_read_timeout_sec": "soon"},
    ],
)
def test_malformed_variables_are_config_errors_naming_the_host(variables: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="host win1"):
        WinRMSettings.from_host(plan(**variables), RunOptions())


def test_ipv6_endpoint_is_bracketed() -> None:
    host = HostPlan("w6", "winrm", "fd00::5", None, "fleet", {})
    assert WinRMSettings.from_host(host, RunOptions()).endpoint == "https://[fd00::5]:5986/wsman"


def test_missing_password_is_an_authentication_error(lab: WinLab) -> None:
    host = HostPlan("win1", "winrm", "127.0.0.1", lab.server.https_port, USER, {})
    with pytest.raises(AuthenticationError, match="no password") as caught:
        run_once(host, "x")
    assert caught.value.cause == causes.CONFIG_MISSING


def test_translated_errors_hide_the_password() -> None:
    settings = WinRMSettings.from_host(plan(ansible_password=WRONG_PASSWORD), RunOptions())
    leaky = requests.exceptions.ConnectionError(f"proxy said {WRONG_PASSWORD}")
    error = translate(leaky, settings, connecting=True)
    assert isinstance(error, UnreachableError)
    assert WRONG_PASSWORD not in str(error)
    # ...and the library's own words are not chained under it either.
    assert _cause(leaky, settings.password) is None
    assert _cause(leaky, "something-else") is leaky


@pytest.mark.parametrize(
    ("exc", "kind", "words", "cause"),
    [
        (
            requests.exceptions.ConnectTimeout("slow"),
            UnreachableError,
            "timed out connecting",
            causes.CONNECT_TIMEOUT,
        ),
        (
            requests.exceptions.ReadTimeout("slow"),
            TransportError,
            "no answer",
            causes.SERVICE_ERROR,
        ),
        (StopIteration(), TransportError, "malformed", causes.PROTOCOL_ERROR),
        (AssertionError(), TransportError, "malformed", causes.PROTOCOL_ERROR),
    ],
)
def test_library_errors_become_fleet_errors(
    exc: Exception, kind: type[FleetError], words: str, cause: str
) -> None:
    error = translate(exc, WinRMSettings.from_host(plan(), RunOptions()), connecting=False)
    assert isinstance(error, kind) and words in str(error)
    assert error.cause == cause


def test_a_wsman_fault_is_a_service_error(lab: WinLab) -> None:
    from tests.test_wsman import protocol

    transport = WinRMTransport(https_host(lab), RunOptions())
    try:
        transport.connect()
        # The shell goes away under the transport (a WinRM service restart).
        protocol(lab.https, lab, transport="basic").close_shell(transport._shell_id)
        with pytest.raises(TransportError, match="WinRM fault") as caught:
            transport.run("x", 10)
    finally:
        transport.close()
    assert caught.value.cause == causes.SERVICE_ERROR


def test_a_wrong_wsman_path_is_a_protocol_error(lab: WinLab) -> None:
    with pytest.raises(TransportError, match="HTTP 404") as caught:
        run_once(https_host(lab, ansible_winrm_path="/nowhere"), "x")
    assert caught.value.cause == causes.PROTOCOL_ERROR


def test_a_bad_insecure_basic_switch_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="fleet_winrm_allow_insecure_basic"):
        WinRMSettings.from_host(plan(fleet_winrm_allow_insecure_basic="perhaps"), RunOptions())


def test_the_login_port_follows_the_scheme_as_in_ansible() -> None:
    assert WinRMTransport.login_port(plan()) == 5986
    assert WinRMTransport.login_port(plan(ansible_winrm_scheme="HTTP")) == 5985
    assert WinRMTransport.login_port(plan(15986)) == 15986
