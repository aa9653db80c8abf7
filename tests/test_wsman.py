"""The lab's WS-Management server (and its CA) as the real pywinrm client sees it.

The server runs in threads on 127.0.0.1 with system-picked ports; pywinrm's
``Protocol`` talks to it unmodified.  ``WinLab`` and ``start_winlab`` are
reused by tests/test_winrm_transport.py.
"""

from __future__ import annotations

import base64
import json
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cryptography import x509
from winrm.exceptions import WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError
from winrm.protocol import Protocol

from fleet.transports.powershell import (
    MAX_COMMAND_LINE,
    POWERSHELL,
    decode_invocation,
    encode_invocation,
    reads_stdin,
)
from tests.helpers import clear_proxies
from tests.lab import pki, winhost
from tests.lab.wsman import Handler, WSManServer, read_users_file, write_users_file
from tests.sshd_fixture import free_port

USER = "fleet"
PASSWORD = "Lab-Passw0rd"


@dataclass
class Behaviour:
    """What the simulated host does with a script: a few words of a test language.

    ``sleep N`` sleeps then says so, ``hang`` waits until released, ``big N``
    prints N bytes, ``fail`` raises, anything else is echoed back as UTF-8.
    Every script received is recorded.
    """

    scripts: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, script: str) -> tuple[bytes, bytes, int]:
        self.scripts.append(script)
        word, _, rest = script.partition(" ")
        if word == "sleep":
            time.sleep(float(rest))
            return b"slept\r\n", b"", 0
        if word == "hang":
            self.release.wait()
            return b"", b"", 0
        if word == "big":
            return b"x" * int(rest), b"", 0
        if word == "fail":
            raise RuntimeError("the simulator broke")
        return ("ran: " + script).encode("utf-8"), b"warning\r\n", 3


@dataclass
class WinLab:
    server: WSManServer
    behaviour: Behaviour
    ca: Path
    directory: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}/wsman"

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.server.https_port}/wsman"

    def counts(self) -> dict[str, int]:
        return self.server.stats.snapshot().get("127.0.0.1", {})


def start_winlab(directory: Path, *, allow_unencrypted_basic: bool = False) -> WinLab:
    """A WSManServer on 127.0.0.1 (HTTP and HTTPS, random ports) with the test Behaviour."""
    users = write_users_file(directory / "users", {USER: PASSWORD})
    ca, _ = pki.ensure_ca(directory)
    cert, key = pki.issue(directory, "localhost", "127.0.0.1")
    behaviour = Behaviour()
    server = WSManServer(
        behaviour,
        users_file=users,
        http_port=0,
        https_port=0,
        cert_file=cert,
        key_file=key,
        allow_unencrypted_basic=allow_unencrypted_basic,
        stats_file=directory / "stats.json",
    ).start()
    return WinLab(server, behaviour, ca, directory)


def running_winlab(directory: Path) -> Iterator[WinLab]:
    """A module fixture's body: a started WinLab, stopped afterwards (hung scripts released)."""
    winlab = start_winlab(directory)
    yield winlab
    winlab.behaviour.release.set()
    winlab.server.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WinLab]:
    yield from running_winlab(tmp_path_factory.mktemp("wsman"))


def protocol(endpoint: str, lab: WinLab, **kwargs: object) -> Protocol:
    options: dict[str, object] = {
        "transport": "ntlm",
        "username": USER,
        "password": PASSWORD,
        "ca_trust_path": str(lab.ca),
        "proxy": None,
    }
    options.update(kwargs)
    return Protocol(endpoint, **options)  # type: ignore[arg-type]


def run_raw(p: Protocol, script: str) -> tuple[bytes, bytes, int]:
    command, args, stdin = encode_invocation(script)
    shell = p.open_shell()
    try:
        command_id = p.run_command(shell, command, args, skip_cmd_shell=True)
        if stdin is not None:
            p.send_command_input(shell, command_id, stdin, end=True)
        out, err, code = p.get_command_output(shell, command_id)
        p.cleanup_command(shell, command_id)
    finally:
        p.close_shell(shell)
    return out, err, code


# -- the invocation, both ways


def test_short_script_travels_in_encoded_command() -> None:
    command, args, stdin = encode_invocation("Get-Date")
    assert command == POWERSHELL and stdin is None
    assert args[:3] == ["-NoProfile", "-NonInteractive", "-EncodedCommand"]
    assert base64.b64decode(args[3]).decode("utf-16-le") == "Get-Date"
    assert decode_invocation(command, [" ".join(args)], None) == "Get-Date"


def test_script_too_long_for_a_command_line_travels_on_stdin() -> None:
    script = "Write-Output 'é'\n" * 3000
    command, args, stdin = encode_invocation(script)
    assert stdin is not None
    assert len(" ".join([command, *args])) <= MAX_COMMAND_LINE
    assert reads_stdin(command, args)
    assert decode_invocation(command, args, stdin) == script


def test_decode_reads_command_dash_from_stdin_and_abbreviated_parameters() -> None:
    assert reads_stdin("powershell", ["-NoProfile", "-Command", "-"])
    assert decode_invocation("powershell", ["-c -"], b"Get-Date") == "Get-Date"
    encoded = base64.b64encode("dir".encode("utf-16-le")).decode()
    assert (
        decode_invocation(r"C:\Windows\System32\powershell.exe", ["-enc", encoded], None) == "dir"
    )
    assert not reads_stdin("powershell.exe", ["-enc", encoded])


def test_decode_refuses_what_is_not_powershell() -> None:
    with pytest.raises(ValueError, match="not a PowerShell"):
        decode_invocation("cmd.exe", ["/c", "dir"], None)
    with pytest.raises(ValueError):
        decode_invocation("powershell.exe", ["-NoProfile"], None)


# -- the server through pywinrm's Protocol


def test_ntlm_with_encryption_over_http_round_trip(lab: WinLab) -> None:
    before = lab.counts().get("sealed", 0)
    out, err, code = run_raw(protocol(lab.http, lab), "Write-Output 'Grüße'")
    assert (out, err, code) == ("ran: Write-Output 'Grüße'".encode(), b"warning\r\n", 3)
    assert lab.counts()["sealed"] > before


def test_unsealed_soap_from_ntlm_over_http_is_refused(lab: WinLab) -> None:
    p = protocol(lab.http, lab, message_encryption="never")
    with pytest.raises(WinRMTransportError) as caught:
        p.open_shell()
    assert caught.value.code == 400


def test_http_offers_negotiate_but_not_basic(lab: WinLab) -> None:
    reply = requests.post(lab.http, data=b"<x/>", timeout=5)
    assert reply.status_code == 401
    offers = reply.headers["WWW-Authenticate"].lower()
    assert "negotiate" in offers and "basic" not in offers


def test_http_refuses_basic_even_with_the_right_password(lab: WinLab) -> None:
    p = protocol(lab.http, lab, transport="basic")
    with pytest.raises(Exception, match="credentials were rejected"):
        p.open_shell()


def test_https_accepts_basic_and_ntlm(lab: WinLab) -> None:
    for transport in ("basic", "ntlm"):
        out, _, code = run_raw(protocol(lab.https, lab, transport=transport), "hello")
        assert (out, code) == (b"ran: hello", 3)


def test_wrong_password_gets_401(lab: WinLab) -> None:
    before = lab.counts().get("auth_failures", 0)
    with pytest.raises(Exception, match="credentials were rejected"):
        protocol(lab.http, lab, password="not-it").open_shell()
    assert lab.counts()["auth_failures"] == before + 1


def test_slow_command_gets_operation_timeout_fault_then_output(lab: WinLab) -> None:
    p = protocol(lab.http, lab, operation_timeout_sec=1, read_timeout_sec=5)
    shell = p.open_shell()
    command, args, _ = encode_invocation("sleep 1.5")
    command_id = p.run_command(shell, command, args, skip_cmd_shell=True)
    with pytest.raises(WinRMOperationTimeoutError):
        p.get_command_output_raw(shell, command_id)
    out, _, code, done = p.get_command_output_raw(shell, command_id)
    assert (out, code, done) == (b"slept\r\n", 0, True)
    p.close_shell(shell)


def test_unknown_command_id_is_a_wsman_fault(lab: WinLab) -> None:
    p = protocol(lab.https, lab, transport="basic")
    shell = p.open_shell()
    with pytest.raises(WSManFaultError) as caught:
        p.get_command_output_raw(shell, "00000000-0000-0000-0000-000000000000")
    assert caught.value.wsman_fault_code == 2150858843
    p.close_shell(shell)


def test_output_larger_than_one_envelope_comes_in_several_receives(lab: WinLab) -> None:
    before = lab.counts().get("receives", 0)
    out, _, code = run_raw(protocol(lab.https, lab, transport="basic"), "big 300000")
    assert (len(out), code) == (300000, 0)
    assert lab.counts()["receives"] - before >= 5


def test_long_script_arrives_whole_through_stdin(lab: WinLab) -> None:
    script = "# padding\n" * 5000 + "Write-Output 'fin'"
    run_raw(protocol(lab.http, lab), script)
    assert lab.behaviour.scripts[-1] == script


def test_a_failing_handler_is_a_failing_process(lab: WinLab) -> None:
    _, err, code = run_raw(protocol(lab.https, lab, transport="basic"), "fail")
    assert code == 1 and b"the simulator broke" in err


def test_counts_requests_shells_and_commands_per_client(lab: WinLab) -> None:
    before = lab.counts()
    run_raw(protocol(lab.https, lab, transport="basic"), "one")
    after = lab.counts()
    assert after["shells"] == before.get("shells", 0) + 1
    assert after["commands"] == before.get("commands", 0) + 1
    # Create, Command, Receive, Signal, Delete
    assert after["requests"] - before.get("requests", 0) == 5
    served = requests.get(f"http://127.0.0.1:{lab.server.http_port}/stats", timeout=5).json()
    assert served["127.0.0.1"]["shells"] == after["shells"]
    saved = json.loads((lab.directory / "stats.json").read_text())
    assert saved["127.0.0.1"]["commands"] == after["commands"]


def test_basic_over_http_works_when_the_server_allows_it(tmp_path: Path) -> None:
    winlab = start_winlab(tmp_path, allow_unencrypted_basic=True)
    try:
        reply = requests.post(winlab.http, data=b"<x/>", timeout=5)
        assert "basic" in reply.headers["WWW-Authenticate"].lower()
        out, _, _ = run_raw(protocol(winlab.http, winlab, transport="basic"), "plain")
        assert out == b"ran: plain"
    finally:
        winlab.server.stop()


# -- users file


def test_users_file_is_private_and_read_back(tmp_path: Path) -> None:
    path = write_users_file(tmp_path / "users", {"fleet": "pw:with:colons", "LAB\\ops": "x"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines() == [":fleet:pw:with:colons", "LAB:ops:x"]
    assert read_users_file(path) == {"fleet": "pw:with:colons", "ops": "x"}


# -- the lab CA


def test_ca_is_created_once_and_keys_are_private(tmp_path: Path) -> None:
    cert, key = pki.ensure_ca(tmp_path)
    first = cert.read_bytes()
    assert pki.ensure_ca(tmp_path) == (cert, key)
    assert cert.read_bytes() == first
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(first)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_certificate_names_host_and_address_and_chains_to_the_ca(tmp_path: Path) -> None:
    ca_path, _ = pki.ensure_ca(tmp_path)
    cert_path, key_path = pki.issue(tmp_path, "mx1.lab", "198.18.0.21")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mx1.lab"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["198.18.0.21"]
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_certificate_is_reused_for_the_same_host_and_reissued_for_a_new_address(
    tmp_path: Path,
) -> None:
    cert_path, _ = pki.issue(tmp_path, "mx1.lab", "198.18.0.21")
    first = cert_path.read_bytes()
    pki.issue(tmp_path, "mx1.lab", "198.18.0.21")
    assert cert_path.read_bytes() == first
    pki.issue(tmp_path, "mx1.lab", "198.18.0.22")
    assert cert_path.read_bytes() != first


# -- the host process


def echo_address(seen: list[tuple[str, str]]) -> Callable[[str], Handler]:
    """Handlers that answer with the address they serve, noting (address, script) in ``seen``."""

    def handler_for(address: str) -> Handler:
        def handler(script: str) -> tuple[bytes, bytes, int]:
            seen.append((address, script))
            return address.encode(), b"", 0

        return handler

    return handler_for


def test_winhost_serves_each_address_with_its_own_handler(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    handler_for = echo_address(seen)
    servers = winhost.serve(
        ["127.0.0.1"], handler_for, tmp_path, users={USER: PASSWORD}, http_port=0, https_port=0
    )
    try:
        server = servers[0]
        winlab = WinLab(server, Behaviour(), tmp_path / "ca.crt", tmp_path)
        out, _, _ = run_raw(protocol(winlab.https, winlab), "whoami")
        assert out == b"127.0.0.1" and seen == [("127.0.0.1", "whoami")]
    finally:
        for server in servers:
            server.stop()


def test_a_block_server_serves_each_address_it_is_reached_at_as_its_own_host(
    tmp_path: Path,
) -> None:
    """One listener, many hosts (the bench's Windows nodes): the address a client reached
    picks the handler, and each host counts its own shells and commands."""
    seen: list[tuple[str, str]] = []
    handler_for = echo_address(seen)
    port = free_port()
    servers = winhost.serve_blocks(
        "127.0.0.1", handler_for, tmp_path, users={USER: PASSWORD}, http_port=port
    )
    try:
        for address in ("127.0.0.2", "127.0.0.3"):
            p = Protocol(
                f"http://{address}:{port}/wsman",
                transport="ntlm",  # sealed over plain HTTP, as the lab's Windows hosts
                ca_trust_path=None,  # plain HTTP: no CA, and no warning about the variable
                username=USER,
                password=PASSWORD,
                proxy=None,
            )
            out, _, _ = run_raw(p, "whoami")
            assert out == address.encode()
        assert seen == [("127.0.0.2", "whoami"), ("127.0.0.3", "whoami")]
        for address in ("127.0.0.2", "127.0.0.3"):
            stats = requests.get(f"http://{address}:{port}/stats", timeout=5).json()
            client = next(iter(stats.values()))
            assert (client["shells"], client["commands"], client["sealed"] > 0) == (1, 1, True)
    finally:
        for server in servers:
            server.stop()


def test_winhost_process_starts_with_a_winsim_profile(tmp_path: Path) -> None:
    winsim = pytest.importorskip("tests.lab.winsim")
    profile = sorted(winsim.PROFILES)[0]
    http_port, https_port = free_port(), free_port()
    process = winhost.start(
        None, "127.0.0.1", profile, tmp_path, http_port=http_port, https_port=https_port
    )
    try:
        user, password = winhost.credentials(winsim.PROFILES[profile])
        p = Protocol(
            f"https://127.0.0.1:{https_port}/wsman",
            transport="ntlm",
            username=user,
            password=password,
            ca_trust_path=str(tmp_path / "ca.crt"),
            proxy=None,
        )
        shell = p.open_shell()
        p.close_shell(shell)
    finally:
        process.terminate()
        process.wait(timeout=10)
    stats = json.loads((tmp_path / "winhost-127.0.0.1.stats.json").read_text())
    assert stats["127.0.0.1"]["shells"] == 1


def test_winhost_start_reports_a_process_that_dies(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        winhost.start(None, "not-an-address", "no-such-profile", tmp_path, timeout=10)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests.get/post in these tests must reach 127.0.0.1 directly.
    clear_proxies(monkeypatch)
    monkeypatch.setenv("NO_PROXY", "*")
