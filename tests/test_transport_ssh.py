"""The SSH transports against a real OpenSSH sshd on 127.0.0.1.

Every promise is checked for both implementations of the contract: libssh2
(``ansible_connection=ssh``, the default) and paramiko (``=paramiko``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from fleet import causes
from fleet.errors import (
    AuthenticationError,
    CommandTimeout,
    ConfigError,
    FleetError,
    HostKeyError,
    UnreachableError,
)
from fleet.model import CommandResult, Status
from fleet.plan import CheckPlan, HostPlan, RunOptions
from fleet.runner import audit_host
from fleet.transports import sshcommon
from fleet.transports.base import AuditContext
from fleet.transports.handoff import Handoff
from fleet.transports.libssh2 import Libssh2Transport
from fleet.transports.paramiko_ssh import ParamikoTransport
from tests.sshd_fixture import Sshd, free_port, keygen, start_sshd

SSHTransport = Libssh2Transport | ParamikoTransport
E = TypeVar("E", bound=FleetError)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sshd needs root")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.skip("sshd needs root")
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.proc.terminate()
    server.proc.wait()


@pytest.fixture(params=[Libssh2Transport, ParamikoTransport], ids=["libssh2", "paramiko"])
def transport_cls(request: pytest.FixtureRequest) -> type[SSHTransport]:
    return request.param


def host_for(sshd: Sshd, **extra: object) -> HostPlan:
    variables = {
        "ansible_ssh_private_key_file": str(sshd.client_key),
        "fleet_known_hosts": str(sshd.known_hosts),
        **extra,
    }
    return HostPlan("mx-test", "ssh", "127.0.0.1", sshd.port, sshd.user, variables)


def run_once(
    transport_cls: type[SSHTransport],
    host: HostPlan,
    script: str,
    timeout: float = 10,
    context: AuditContext | None = None,
    handoff: Handoff | None = None,
    **options,
) -> CommandResult:
    """Log in to ``host`` (over ``handoff`` if given), run ``script`` once, close."""
    transport = transport_cls(host, RunOptions(connect_timeout=5, **options), context)
    try:
        transport.connect(handoff)
        return transport.run(script, timeout)
    finally:
        transport.close()


def login_error(
    transport_cls: type[SSHTransport],
    host: HostPlan,
    error: type[E],
    match: str | None,
    connect_timeout: float = 5,
) -> E:
    """The ``error`` (its message matching ``match``, if given) a login to ``host`` fails with."""
    with pytest.raises(error, match=match) as caught:
        transport_cls(host, RunOptions(connect_timeout=connect_timeout)).connect()
    return caught.value


def known_hosts_file(tmp_path: Path, text: str = "") -> Path:
    """A known_hosts file holding ``text`` (none: no host is known)."""
    path = tmp_path / "known_hosts"
    path.write_text(text)
    return path


def another_key(sshd: Sshd, tmp_path: Path) -> Path:
    """A known_hosts file that gives the sshd a key it does not have (a changed host key)."""
    keygen(tmp_path / "other")
    key_type, key = (tmp_path / "other.pub").read_text().split()[:2]
    return known_hosts_file(tmp_path, f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")


@contextlib.contextmanager
def mute_host(greeting: bytes = b"") -> Iterator[tuple[HostPlan, list[socket.socket]]]:
    """A host on 127.0.0.1 that takes every connection, sends ``greeting`` and then nothing;
    yields it and the connections it took, all closed on leaving."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])
                accepted[-1].sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield HostPlan("mute", "ssh", "127.0.0.1", server.getsockname()[1], "nobody", {}), accepted
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept
        server.close()
        for conn in accepted:
            conn.close()


def test_runs_a_script_and_separates_stdout_stderr_and_exit_status(
    sshd: Sshd, transport_cls: type[SSHTransport]
) -> None:
    result = run_once(transport_cls, host_for(sshd), "echo out; echo err >&2; exit 7")
    assert (result.stdout, result.stderr, result.exit_status) == (b"out\n", b"err\n", 7)


def test_one_connection_serves_every_command(sshd: Sshd, transport_cls: type[SSHTransport]) -> None:
    transport = transport_cls(host_for(sshd), RunOptions(connect_timeout=5))
    try:
        first = transport.run("echo $PPID", 10).stdout
        client = getattr(transport, "_client", None) or getattr(transport, "_session", None)
        second = transport.run("echo $PPID", 10).stdout
        assert client is not None
        assert (
            getattr(transport, "_client", None) or getattr(transport, "_session", None)
        ) is client
        assert first and second
    finally:
        transport.close()


def test_deadline_holds_while_the_command_keeps_printing(
    sshd: Sshd, transport_cls: type[SSHTransport]
) -> None:
    transport = transport_cls(host_for(sshd), RunOptions(connect_timeout=5))
    started = time.monotonic()
    try:
        with pytest.raises(CommandTimeout) as caught:
            transport.run("while :; do echo tick; sleep 0.1; done", timeout=1.5)
    finally:
        transport.close()
    assert time.monotonic() - started < 4
    assert b"tick" in caught.value.partial_stdout
    assert caught.value.cause == causes.COMMAND_TIMEOUT


def test_a_login_after_an_abandoned_command_is_unharmed(
    sshd: Sshd, transport_cls: type[SSHTransport]
) -> None:
    # A deadline leaves the command's channel open, and a traceback keeps it alive.
    # Freed later, it must not write to a descriptor number a newer connection has
    # reused (with libssh2 it did: that login broke).
    import gc

    abandoned = transport_cls(host_for(sshd), RunOptions(connect_timeout=5))
    with pytest.raises(CommandTimeout) as caught:
        abandoned.run("while :; do echo tick; sleep 0.05; done", timeout=0.5)
    abandoned.close()
    del abandoned
    transport = transport_cls(host_for(sshd), RunOptions(connect_timeout=5))
    try:
        transport.connect()
        del caught  # the abandoned channel is freed now, after the new connection
        gc.collect()
        assert transport.run("echo ok", 10).stdout == b"ok\n"
    finally:
        transport.close()


def test_a_passphrase_protected_key_logs_in(
    sshd: Sshd, tmp_path: Path, transport_cls: type[SSHTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives import serialization

    decrypted: list[Path] = []
    real = serialization.load_ssh_private_key

    def counting(data, password, *args, **kwargs):
        decrypted.append(data)
        return real(data, password, *args, **kwargs)

    monkeypatch.setattr(serialization, "load_ssh_private_key", counting)
    key = tmp_path / "locked"
    keygen(key, passphrase="s3cret")
    authorized = sshd.known_hosts.with_name("authorized_keys")
    authorized.write_text(authorized.read_text() + (tmp_path / "locked.pub").read_text())
    host = host_for(
        sshd, ansible_ssh_private_key_file=str(key), ansible_ssh_private_key_passphrase="s3cret"
    )
    after: list[int] = []
    cpu: list[float] = []
    audit = AuditContext()
    for _ in range(2):
        started = time.thread_time()
        assert run_once(transport_cls, host, "echo in", context=audit).stdout == b"in\n"
        after.append(len(decrypted))
        cpu.append(time.thread_time() - started)
    # The key's KDF (bcrypt) runs once per audit, not at every login: libssh2 left
    # to itself runs it at each.
    assert after[1] == after[0]
    assert cpu[1] < 0.06, cpu
    # A new audit reads the file again (it may have changed).
    run_once(transport_cls, host, "echo in", context=AuditContext())
    assert len(decrypted) > after[1]


@needs_root
def test_a_host_known_by_its_rsa_key_is_asked_for_that_key(
    tmp_path: Path, transport_cls: type[SSHTransport]
) -> None:
    # sshd offers ed25519 too, which both libraries prefer; known_hosts holds only the
    # RSA key (common in old fleets): asking for ed25519 would look like a changed key.
    server = start_sshd(tmp_path, extra_host_key="rsa")
    try:
        assert run_once(transport_cls, host_for(server), "echo rsa").stdout == b"rsa\n"
    finally:
        server.proc.terminate()
        server.proc.wait()


def test_a_large_script_arrives_whole(sshd: Sshd, transport_cls: type[SSHTransport]) -> None:
    # Far more than one write's worth: a byte lost or sent twice would change the count.
    lines = "".join(f"line {n}\n" for n in range(30000))
    result = run_once(transport_cls, host_for(sshd), f"wc -l <<'END'\n{lines}END\n", 20)
    assert result.stdout.split() == [b"30000"]


def test_logins_work_on_descriptors_above_1024(
    sshd: Sshd, transport_cls: type[SSHTransport]
) -> None:
    # fleet raises its open-files limit for the run; select() would fail past 1024.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip("the open-files hard limit is below 1300")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300), hard))
    fillers = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        assert run_once(transport_cls, host_for(sshd), "echo high").stdout == b"high\n"
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_output_is_capped(sshd: Sshd, transport_cls: type[SSHTransport]) -> None:
    result = run_once(
        transport_cls, host_for(sshd), "head -c 5000000 /dev/zero", 20, max_output=1000
    )
    assert len(result.stdout) == 1000 and result.truncated


def test_unknown_host_key_is_refused(
    sshd: Sshd, tmp_path: Path, transport_cls: type[SSHTransport]
) -> None:
    host = host_for(sshd, fleet_known_hosts=str(known_hosts_file(tmp_path)))
    unknown = login_error(transport_cls, host, HostKeyError, "unknown")
    assert unknown.cause == causes.HOST_KEY_UNKNOWN


def test_changed_host_key_is_refused(
    sshd: Sshd, tmp_path: Path, transport_cls: type[SSHTransport]
) -> None:
    host = host_for(sshd, fleet_known_hosts=str(another_key(sshd, tmp_path)))
    changed = login_error(transport_cls, host, HostKeyError, "does not match")
    assert changed.cause == causes.HOST_KEY_CHANGED


def test_known_hosts_lines_of_other_key_types_are_no_obstacle(
    sshd: Sshd, tmp_path: Path, transport_cls: type[SSHTransport]
) -> None:
    name = f"[127.0.0.1]:{sshd.port}"
    known = known_hosts_file(
        tmp_path,
        f"{name} ssh-dss AAAAB3NzaC1kc3MAAACBAP8=\n"  # a type neither library checks any more
        f"{name} x-unknown-type AAAA\n" + sshd.known_hosts.read_text(),
    )
    host = host_for(sshd, fleet_known_hosts=str(known))
    assert run_once(transport_cls, host, "echo known").stdout == b"known\n"


def test_host_key_checking_can_be_turned_off_explicitly(
    sshd: Sshd, tmp_path: Path, transport_cls: type[SSHTransport]
) -> None:
    empty = known_hosts_file(tmp_path)
    host = host_for(sshd, fleet_known_hosts=str(empty), ansible_host_key_checking=False)
    assert run_once(transport_cls, host, "echo ok").stdout == b"ok\n"


def test_wrong_key_is_an_authentication_error(
    sshd: Sshd, tmp_path: Path, transport_cls: type[SSHTransport]
) -> None:
    keygen(tmp_path / "stranger")
    host = host_for(sshd, ansible_ssh_private_key_file=str(tmp_path / "stranger"))
    refused = login_error(transport_cls, host, AuthenticationError, "authentication refused")
    assert refused.cause == causes.AUTH_REFUSED


def test_closed_port_is_connection_refused(transport_cls: type[SSHTransport]) -> None:
    host = HostPlan("gone", "ssh", "127.0.0.1", free_port(), "nobody", {})
    refused = login_error(transport_cls, host, UnreachableError, "connection refused", 2)
    assert refused.cause == causes.CONNECT_REFUSED


def test_a_port_that_never_speaks_ssh_is_bounded(transport_cls: type[SSHTransport]) -> None:
    started = time.monotonic()
    with mute_host() as (host, _):
        mute = login_error(transport_cls, host, UnreachableError, "no SSH greeting", 1)
    assert time.monotonic() - started < 5
    assert mute.cause == causes.LOGIN_TIMEOUT


def test_password_never_appears_in_errors(sshd: Sshd, transport_cls: type[SSHTransport]) -> None:
    host = host_for(sshd, ansible_password="S3cret-Pa55", ansible_ssh_private_key_file="")
    refused = login_error(transport_cls, host, UnreachableError, None)
    assert "S3cret-Pa55" not in str(refused)
    assert "S3cret-Pa55" not in repr(refused)


def test_the_whole_login_shares_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # paramiko bounds the banner, the key exchange and authentication each by the
    # timeout; a host slow in all three would take three times --connect-timeout.
    import paramiko

    def stalls_until_woken(self, hostname, sock=None, **kwargs) -> None:
        sock.settimeout(None)
        if not sock.recv(1):  # the watchdog's shutdown ends the wait
            raise paramiko.SSHException("EOF during negotiation")

    monkeypatch.setattr(paramiko.SSHClient, "connect", stalls_until_woken)
    started = time.monotonic()
    with mute_host() as (host, _):
        slow = login_error(
            ParamikoTransport, host, UnreachableError, "did not complete within 1s", 1
        )
    assert time.monotonic() - started < 4
    assert slow.cause == causes.LOGIN_TIMEOUT


def test_a_host_that_greets_then_stalls_the_key_exchange_says_so(
    transport_cls: type[SSHTransport],
) -> None:
    with mute_host(b"SSH-2.0-OpenSSH_9.2\r\n") as (host, _):
        stalled = login_error(
            transport_cls, host, UnreachableError, "key exchange did not complete", 1
        )
    assert stalled.cause == causes.LOGIN_TIMEOUT


def test_a_missing_key_file_is_the_inventorys_fault_before_any_contact(
    tmp_path: Path, transport_cls: type[SSHTransport]
) -> None:
    host = HostPlan(
        "mx1",
        "ssh",
        "198.18.0.11",
        None,
        "audit",
        {"ansible_ssh_private_key_file": str(tmp_path / "no-such-key")},
    )
    with pytest.raises(ConfigError, match="no-such-key cannot be used") as caught:
        transport_cls(host, RunOptions())  # constructing opens no socket
    assert caught.value.cause == causes.CONFIG_MISSING


def test_the_watchdog_runs_due_actions_in_order_and_skips_cancelled_ones():
    from fleet.transports._io import Watchdog

    dog, ran, done = Watchdog(), [], threading.Event()
    dog.call_later(0.3, lambda: (ran.append("late"), done.set()))
    dog.call_later(0.1, lambda: ran.append("early"))
    dog.call_later(0.05, lambda: 1 / 0)  # a failing action does not stop the dog
    dog.call_later(0.2, lambda: ran.append("cancelled")).cancel()
    assert done.wait(5)
    assert ran == ["early", "late"]


def test_the_ssh_connection_runs_without_paramiko(sshd: Sshd) -> None:
    # ansible_connection=ssh (the default) is libssh2's: paramiko is not even imported.
    code = (
        "import sys; sys.modules['paramiko'] = None\n"
        "import fleet.cli, fleet.runner\n"
        "from fleet.plan import HostPlan, RunOptions\n"
        "from fleet.transports.base import open_transport\n"
        f"host = HostPlan('mx', 'ssh', '127.0.0.1', {sshd.port}, {sshd.user!r}, "
        f"{{'ansible_ssh_private_key_file': {str(sshd.client_key)!r}, "
        f"'fleet_known_hosts': {str(sshd.known_hosts)!r}}})\n"
        "transport = open_transport(host, RunOptions(connect_timeout=5))\n"
        "print(transport.run('echo via libssh2', 10).stdout.decode().strip())\n"
        "transport.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "via libssh2"


class CountingForwarder:
    """A TCP forwarder on 127.0.0.1 in front of ``port`` that counts the connections."""

    def __init__(self, port: int, drop_first: bool = False) -> None:
        self.target, self.accepted, self.drop_first = port, 0, drop_first
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            client, _ = self.listener.accept()
            self.accepted += 1
            if self.drop_first and self.accepted == 1:  # as sshd after LoginGraceTime
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_reach_and_the_login_share_one_tcp_connection(sshd: Sshd) -> None:
    # reach connects to the login port anyway; the login takes that connection over,
    # so an audited host sees one connection (one sshd, one auth-log line) per audit.
    forwarder = CountingForwarder(sshd.port)
    plan = replace(
        host_for(sshd, fleet_known_hosts=str(forwarder_known_hosts(sshd, forwarder))),
        port=forwarder.port,
        checks=(
            CheckPlan("reach", {"ports": [forwarder.port], "timeout": 3.0}),
            CheckPlan("binding", {}),
        ),
    )
    result = audit_host(plan, RunOptions())
    assert result is not None
    reach, binding = result.results
    assert (reach.check, reach.status) == ("reach", Status.OK)
    assert binding.check == "binding"
    assert binding.status not in (Status.UNREACHABLE, Status.ERROR), binding.summary
    assert forwarder.accepted == 1


def forwarder_known_hosts(sshd: Sshd, forwarder: CountingForwarder) -> Path:
    """The sshd's host key under the forwarder's port."""
    key = " ".join(sshd.host_key_pub.read_text().split()[:2])
    path = sshd.known_hosts.with_name(f"known_hosts_{forwarder.port}")
    path.write_text(f"[127.0.0.1]:{forwarder.port} {key}\n")
    return path


def test_a_handed_over_socket_is_only_taken_open_fresh_and_for_its_own_address() -> None:
    def pair() -> socket.socket:
        a, b = socket.socketpair()
        b.close()
        return a

    first = Handoff("198.18.0.11", 22, pair())
    assert first.take("198.18.0.12", 22) is None  # another host: closed, not given
    assert first.sock.fileno() == -1
    stale = Handoff("198.18.0.11", 22, pair(), since=time.monotonic() - 6)
    assert stale.take("198.18.0.11", 22) is None  # sshd's LoginGraceTime may be near
    assert stale.sock.fileno() == -1
    fresh = Handoff("198.18.0.11", 22, pair())
    assert fresh.take("198.18.0.11", 22) is fresh.sock
    fresh.close()  # given up (the host had to wait for a login slot)
    assert fresh.take("198.18.0.11", 22) is None


def test_a_handed_over_connection_that_sshd_dropped_is_replaced(
    sshd: Sshd, transport_cls: type[SSHTransport]
) -> None:
    forwarder = CountingForwarder(sshd.port, drop_first=True)
    plan = replace(
        host_for(sshd, fleet_known_hosts=str(forwarder_known_hosts(sshd, forwarder))),
        port=forwarder.port,
    )
    dropped = socket.create_connection(("127.0.0.1", forwarder.port))
    handoff = Handoff("127.0.0.1", forwarder.port, dropped)
    assert run_once(transport_cls, plan, "echo fresh", handoff=handoff).stdout == b"fresh\n"
    assert forwarder.accepted == 2


def test_a_handed_over_connection_to_a_silent_port_is_not_tried_twice(
    transport_cls: type[SSHTransport],
) -> None:
    # Only a connection the host closed is replaced; a silent one would just wait again.
    with mute_host() as (host, accepted):
        port = host.port
        assert port is not None
        handoff = Handoff("127.0.0.1", port, socket.create_connection(("127.0.0.1", port)))
        started = time.monotonic()
        with pytest.raises(UnreachableError, match="no SSH greeting"):
            transport_cls(host, RunOptions(connect_timeout=1)).connect(handoff)
        elapsed = time.monotonic() - started
    assert elapsed < 1.8  # one connect budget, not two
    assert len(accepted) == 1


def test_a_call_libssh2_answers_again_is_retried_soon_on_a_quiet_socket() -> None:
    # libssh2 may say EAGAIN having already read what it waited for; the socket then
    # stays quiet.  Sleeping until the deadline once cost a host its whole timeout.
    from ssh2.error_codes import LIBSSH2_ERROR_EAGAIN

    from fleet.transports import libssh2

    class QuietSession:
        def block_directions(self) -> int:
            return libssh2.LIBSSH2_SESSION_BLOCK_INBOUND

    quiet, other = socket.socketpair()
    try:
        io = libssh2._ChannelIO(QuietSession(), quiet, time.monotonic() + 30, 30, 100)
        answers = iter([LIBSSH2_ERROR_EAGAIN, LIBSSH2_ERROR_EAGAIN, 0])
        started = time.monotonic()
        assert io.again(lambda: next(answers), patience=0.05) == 0
        assert time.monotonic() - started < 1
        # ...and a call that never finishes still ends at the deadline.
        io = libssh2._ChannelIO(QuietSession(), quiet, time.monotonic() + 0.3, 0.3, 100)
        with pytest.raises(CommandTimeout):
            io.again(lambda: LIBSSH2_ERROR_EAGAIN)
        assert time.monotonic() - started < 2
    finally:
        quiet.close()
        other.close()


# -- causes through the runner -------------------------------------------------


def test_the_runner_reports_a_changed_host_key_with_its_cause(
    sshd: Sshd, tmp_path: Path, transport_cls: type[SSHTransport]
) -> None:
    connection = "ssh" if transport_cls is Libssh2Transport else "paramiko"
    plan = replace(
        host_for(sshd, fleet_known_hosts=str(another_key(sshd, tmp_path))),
        connection=connection,
        checks=(CheckPlan("reach", {"ports": [sshd.port]}), CheckPlan("binding", {})),
    )
    result = audit_host(plan, RunOptions(connect_timeout=5))
    assert result is not None
    reach, binding = result.results
    assert (reach.status, reach.cause) == (Status.OK, "")
    assert (binding.status, binding.cause) == (Status.UNREACHABLE, causes.HOST_KEY_CHANGED)


def test_a_refused_login_port_is_reported_by_reach_and_never_tried() -> None:
    port = free_port()
    plan = HostPlan(
        "gone",
        "ssh",
        "127.0.0.1",
        port,
        "nobody",
        {},
        checks=(CheckPlan("reach", {"ports": [port]}), CheckPlan("binding", {})),
    )
    result = audit_host(plan, RunOptions(connect_timeout=2))
    assert result is not None
    reach, binding = result.results
    assert (reach.status, reach.cause) == (Status.FAIL, causes.REFUSED)
    assert (binding.status, binding.cause) == (Status.UNREACHABLE, causes.CONNECT_REFUSED)


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (socket.gaierror(-2, "Name or service not known"), causes.NAME_UNRESOLVED),
        (OSError(113, "No route to host"), causes.HOST_UNREACHABLE),
        (TimeoutError("timed out"), causes.CONNECT_TIMEOUT),
        (ConnectionRefusedError(111, "Connection refused"), causes.CONNECT_REFUSED),
    ],
)
def test_socket_errors_carry_their_cause(error: OSError, cause: str) -> None:
    from fleet.transports import sshcommon

    settings = sshcommon.SshSettings.from_host(HostPlan("mx", "ssh", "mx1", 22, "u"), RunOptions())
    assert sshcommon.translate(error, settings).cause == cause


# -- settings, credentials and known_hosts (no SSH library) --------------------


def test_host_key_checking_is_read_with_ansibles_words(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet.transports.sshcommon import SshSettings

    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    host = HostPlan("mx", "ssh", "198.18.0.11", None, "u", {"ansible_host_key_checking": "No"})
    assert not SshSettings.from_host(host, RunOptions()).host_key_checking
    assert SshSettings.from_host(replace(host, vars={}), RunOptions()).host_key_checking
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "off")
    assert not SshSettings.from_host(replace(host, vars={}), RunOptions()).host_key_checking
    bad = replace(host, vars={"ansible_ssh_host_key_checking": "sometimes"})
    with pytest.raises(ConfigError, match="ansible_ssh_host_key_checking"):
        SshSettings.from_host(bad, RunOptions())


def known_hosts_line(name: str, pub: Path) -> str:
    return f"{name} {' '.join(pub.read_text().split()[:2])}\n"


def test_known_hosts_index_finds_plain_and_hashed_names(tmp_path: Path) -> None:
    import paramiko  # the reference for hashed names

    from fleet.transports.sshcommon import KnownHostsIndex

    keygen(tmp_path / "first", "ecdsa")
    keygen(tmp_path / "second", "ecdsa")
    first, second = ((tmp_path / f"{n}.pub").read_text().split()[:2] for n in ("first", "second"))
    path = tmp_path / "known_hosts"
    path.write_text(
        "# comment\n"
        + known_hosts_line("mx1,198.18.0.11", tmp_path / "first.pub")
        + known_hosts_line("mx1", tmp_path / "second.pub")  # a later line: the first wins
        + known_hosts_line(paramiko.HostKeys.hash_host("198.18.0.7"), tmp_path / "second.pub")
        + "@cert-authority *.example ssh-ed25519 AAAA\n"
        + "garbage line\n"
    )
    index = KnownHostsIndex.parse(path)
    blob = __import__("base64").b64decode
    assert index.lookup("198.18.0.11") == {first[0]: blob(first[1])}
    assert index.lookup("mx1") == {first[0]: blob(first[1])}
    assert index.lookup("198.18.0.7") == {second[0]: blob(second[1])}
    assert index.lookup("198.18.0.99") == {}


def test_known_hosts_are_parsed_once_per_audit(tmp_path: Path) -> None:
    from fleet.transports.sshcommon import known_hosts_index

    keygen(tmp_path / "key")
    path = tmp_path / "known_hosts"
    path.write_text(known_hosts_line("a", tmp_path / "key.pub"))
    audit = AuditContext()
    assert known_hosts_index(audit, path) is known_hosts_index(audit, path)
    path.write_text(
        known_hosts_line("a", tmp_path / "key.pub") + known_hosts_line("b", tmp_path / "key.pub")
    )
    assert known_hosts_index(AuditContext(), path).lookup("b")  # the next audit reads it anew


def key_settings(key: Path, passphrase: str | None) -> sshcommon.SshSettings:
    """The SSH settings of a host whose inventory names ``key`` (and its ``passphrase``)."""
    variables = {"ansible_ssh_private_key_file": str(key)}
    if passphrase:
        variables["ansible_ssh_private_key_passphrase"] = passphrase
    host = HostPlan("mx", "ssh", "mx1", 22, "u", variables)
    return sshcommon.SshSettings.from_host(host, RunOptions())


def test_keys_are_unlocked_once_per_audit_and_a_bad_passphrase_is_the_inventorys_fault(
    tmp_path: Path,
) -> None:
    from fleet.transports.sshcommon import credentials

    key = tmp_path / "id"
    keygen(key, passphrase="s3cret")
    settings = functools.partial(key_settings, key)

    audit = AuditContext()
    unlocked = credentials(settings("s3cret"), audit).key
    assert unlocked is not None and unlocked.encrypted and unlocked.algorithm == "ssh-ed25519"
    assert credentials(settings("s3cret"), audit).key is unlocked
    for wrong in (None, "wrong"):
        with pytest.raises(ConfigError, match="passphrase") as caught:
            credentials(settings(wrong), audit)
        assert "s3cret" not in str(caught.value)


def test_a_wrong_key_passphrase_says_so(tmp_path: Path) -> None:
    from fleet.transports.sshcommon import credentials

    key = tmp_path / "id"
    keygen(key, passphrase="s3cret")
    settings = functools.partial(key_settings, key)

    with pytest.raises(ConfigError, match="wrong passphrase"):
        credentials(settings("wrong"), AuditContext())
    with pytest.raises(ConfigError, match="encrypted and no passphrase is set"):
        credentials(settings(None), AuditContext())


def test_a_libssh2_error_without_a_message_names_what_failed() -> None:
    from ssh2 import exceptions as ssh2_errors

    from fleet.transports.libssh2 import _reason

    assert _reason(ssh2_errors.KeyExchangeError()).startswith("the key exchange failed")
    assert "wrong passphrase?" in _reason(ssh2_errors.PublicKeyError())
    assert _reason(ssh2_errors.SocketDisconnectError("\x1b[2Jbye")) == (
        "the host closed the connection: bye"
    )
    assert "SSH2Error" in _reason(ssh2_errors.SSH2Error())  # at least what it was
