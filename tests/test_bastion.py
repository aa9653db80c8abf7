"""Logins through a jump host, with real sshds on 127.0.0.1: both SSH transports.

One sshd is the bastion (behind a forwarder that counts its TCP connections,
i.e. its logins), another the mail hosts; the hosts are named in a private
ssh_config (never the user's ~/.ssh/config) or reached with ``-J``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from ssh2.error_codes import LIBSSH2_ERROR_EAGAIN
from ssh2.session import LIBSSH2_SESSION_BLOCK_OUTBOUND

from fleet import causes
from fleet.checks.reach import ReachCheck
from fleet.diagnose.observe import observe, reach_line
from fleet.errors import UnreachableError
from fleet.model import HostResult, RunResult, Status
from fleet.plan import HostPlan, RunOptions
from fleet.transports.base import AuditContext
from fleet.transports.jump import Bastion
from fleet.transports.libssh2 import Libssh2Transport
from fleet.transports.paramiko_ssh import ParamikoTransport
from tests.sshd_fixture import Sshd, start_sshd
from tests.test_transport_ssh import CountingForwarder

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sshd needs root")


@dataclass
class Setup:
    bastion: Sshd
    mail: Sshd
    forwarder: CountingForwarder
    known_hosts: Path
    config: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("bastion")
    (tmp / "b").mkdir()
    (tmp / "m").mkdir()
    bastion, mail = start_sshd(tmp / "b"), start_sshd(tmp / "m")
    with (tmp / "m" / "authorized_keys").open("a") as keys:  # one key for both, as ops do
        keys.write((tmp / "b" / "client_key.pub").read_text())
    forwarder = CountingForwarder(bastion.port)
    key = " ".join(bastion.host_key_pub.read_text().split()[:2])
    known = tmp / "known_hosts"
    known.write_text(
        f"[127.0.0.1]:{forwarder.port} {key}\n"
        + bastion.known_hosts.read_text()
        + mail.known_hosts.read_text()
    )
    config = tmp / "ssh_config"
    config.write_text(
        f"Host bast1\n  HostName 127.0.0.1\n  Port {forwarder.port}\n"
        f"  IdentityFile {bastion.client_key}\n"
        f"Host mx-*\n  HostName 127.0.0.1\n  Port {mail.port}\n  ProxyJump bast1\n"
    )
    yield Setup(bastion, mail, forwarder, known, config)
    for server in (bastion, mail):
        server.proc.terminate()
        server.proc.wait()


@pytest.fixture(params=[Libssh2Transport, ParamikoTransport], ids=["libssh2", "paramiko"])
def kind(request: pytest.FixtureRequest) -> type:
    return request.param


def mail_host(setup: Setup, name: str, **extra: object) -> HostPlan:
    variables = {
        "fleet_ssh_config": str(setup.config),
        "fleet_known_hosts": str(setup.known_hosts),
        "ansible_ssh_private_key_file": str(setup.bastion.client_key),
        **extra,
    }
    return HostPlan(name, "ssh", name, None, setup.bastion.user, variables)


def audit_all(
    kind: type,
    hosts: list[HostPlan],
    context: AuditContext | None = None,
    script: str = "echo $SSH_CONNECTION",
) -> list[str | Exception]:
    """Run a command on every host at once, the audit's way: one context, a thread each."""
    context = context or AuditContext()
    found: list[str | Exception] = [""] * len(hosts)

    def one(i: int) -> None:
        transport = kind(hosts[i], RunOptions(connect_timeout=5), context)
        try:
            found[i] = transport.run(script, 30).stdout.decode().strip()
        except Exception as exc:
            found[i] = exc
        finally:
            transport.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(hosts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def test_hosts_behind_a_bastion_share_one_login_on_it(setup: Setup, kind: type) -> None:
    before = setup.forwarder.accepted
    # more than MAX_CHANNELS at once; paramiko once lost the jump connection in such runs
    hosts = [mail_host(setup, f"mx-{i}") for i in range(24)]
    found = audit_all(kind, hosts)
    assert all(isinstance(line, str) and line.endswith(str(setup.mail.port)) for line in found)
    assert setup.forwarder.accepted - before == 1


def the_bastion(context: AuditContext) -> Bastion:
    (found,) = [v for v in context._values.values() if isinstance(v, Bastion)]
    return found


def test_large_scripts_for_many_hosts_cross_one_bastion_at_once(setup: Setup) -> None:
    # A small send buffer on the bastion's socket: libssh2's sends stop half-way often,
    # and each must be finished before any other channel's (else LIBSSH2_ERROR_BAD_USE).
    context = AuditContext()
    (warm,) = audit_all(Libssh2Transport, [mail_host(setup, "mx-warm")], context)
    assert isinstance(warm, str)
    sock = the_bastion(context).connection._sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    script = ("# " + "x" * 97 + "\n") * 2000 + "echo $SSH_CONNECTION\n"  # 200 KB each
    hosts = [mail_host(setup, f"mx-big{i}") for i in range(12)]
    found = audit_all(Libssh2Transport, hosts, context, script)
    assert all(isinstance(line, str) and line.endswith(str(setup.mail.port)) for line in found), [
        f for f in found if not isinstance(f, str)
    ]


class CuttableForwarder:
    """A TCP forwarder in front of ``port`` whose connections (and listener) can be cut."""

    def __init__(self, port: int) -> None:
        self.target, self.accepted = port, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                self.accepted += 1
                upstream = socket.create_connection(("127.0.0.1", self.target))
                self.sockets += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(
                        target=CountingForwarder._pipe, args=(a, b), daemon=True
                    ).start()

    def cut(self, listener_too: bool) -> None:
        if listener_too:  # shut first: a close alone leaves accept() listening on
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def bastion_behind(setup: Setup, forwarder: CuttableForwarder, tmp: Path) -> dict[str, str]:
    """Variables for hosts ``mx2-*`` behind bastion ``bast2``, reached through ``forwarder``."""
    key = " ".join(setup.bastion.host_key_pub.read_text().split()[:2])
    known = tmp / "known_hosts"
    known.write_text(f"[127.0.0.1]:{forwarder.port} {key}\n" + setup.known_hosts.read_text())
    config = tmp / "ssh_config"
    config.write_text(
        f"Host bast2\n  HostName 127.0.0.1\n  Port {forwarder.port}\n"
        f"  IdentityFile {setup.bastion.client_key}\n"
        f"Host mx2-*\n  HostName 127.0.0.1\n  Port {setup.mail.port}\n  ProxyJump bast2\n"
    )
    return {"fleet_ssh_config": str(config), "fleet_known_hosts": str(known)}


def cut_under_a_running_host(
    setup: Setup, forwarder: CuttableForwarder, tmp: Path, listener_too: bool
) -> tuple[AuditContext, dict[str, str]]:
    """A host runs through ``bast2`` while its connection is cut; the context it used."""
    variables = bastion_behind(setup, forwarder, tmp)
    context = AuditContext()
    running = threading.Thread(
        target=audit_all,
        args=(Libssh2Transport, [mail_host(setup, "mx2-a", **variables)], context, "sleep 3"),
    )
    running.start()
    deadline = time.monotonic() + 10
    while not forwarder.sockets and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # its login behind is done, its command runs
    forwarder.cut(listener_too)
    running.join()
    return context, variables


def test_a_host_after_the_bastion_connection_died_fails_at_once_with_the_cause(
    setup: Setup, tmp_path: Path
) -> None:
    # Once the bastion's connection dies, a later host must not wait its whole connect
    # budget for a thread that is gone, then say "timed out": it logs in again, here in
    # vain (nothing listens any more), and says why.
    forwarder = CuttableForwarder(setup.bastion.port)
    context, variables = cut_under_a_running_host(setup, forwarder, tmp_path, listener_too=True)
    started = time.monotonic()
    (failure,) = audit_all(Libssh2Transport, [mail_host(setup, "mx2-b", **variables)], context)
    assert time.monotonic() - started < 2.0  # connect_timeout is 5 s
    assert isinstance(failure, UnreachableError), failure
    assert failure.cause == causes.CONNECT_REFUSED
    assert str(failure).startswith("bastion bast2: ")


def test_a_host_after_the_bastion_connection_died_logs_in_to_it_again(
    setup: Setup, tmp_path: Path
) -> None:
    forwarder = CuttableForwarder(setup.bastion.port)
    context, variables = cut_under_a_running_host(setup, forwarder, tmp_path, listener_too=False)
    (line,) = audit_all(Libssh2Transport, [mail_host(setup, "mx2-b", **variables)], context)
    assert isinstance(line, str) and line.endswith(str(setup.mail.port)), line
    assert forwarder.accepted == 2


def test_dash_j_in_common_args_jumps_too(setup: Setup, kind: type) -> None:
    before = setup.forwarder.accepted
    jump = f"-J {setup.bastion.user}@127.0.0.1:{setup.forwarder.port}"
    hosts = [
        HostPlan(
            f"relay{i}",
            "ssh",
            "127.0.0.1",
            setup.mail.port,
            setup.bastion.user,
            {
                "ansible_ssh_common_args": jump,
                "fleet_ssh_config": "none",
                "fleet_known_hosts": str(setup.known_hosts),
                "ansible_ssh_private_key_file": str(setup.bastion.client_key),
            },
        )
        for i in range(3)
    ]
    found = audit_all(kind, hosts)
    assert all(isinstance(line, str) and line for line in found), found
    assert setup.forwarder.accepted - before == 1


def test_a_chain_of_two_jumps_logs_in_to_each_hop(setup: Setup, kind: type) -> None:
    # first hop: the bastion through the counting forwarder; second: the bastion's own
    # sshd, reached through the first; then the mail host through the second.
    user, first = setup.bastion.user, setup.forwarder.port
    chain = f"-J {user}@127.0.0.1:{first},{user}@127.0.0.1:{setup.bastion.port}"
    before = setup.forwarder.accepted
    hosts = [
        replace(
            mail_host(setup, f"chained{i}", ansible_ssh_common_args=chain), port=setup.mail.port
        )
        for i in range(3)
    ]
    hosts = [
        replace(h, address="127.0.0.1", vars={**h.vars, "fleet_ssh_config": "none"}) for h in hosts
    ]
    found = audit_all(kind, hosts)
    assert all(isinstance(line, str) and line.endswith(str(setup.mail.port)) for line in found)
    assert setup.forwarder.accepted - before == 1


def test_a_bastion_with_a_changed_host_key_is_refused(
    setup: Setup, kind: type, tmp_path: Path
) -> None:
    altered = tmp_path / "known_hosts"
    mail_key = " ".join(setup.mail.host_key_pub.read_text().split()[:2])
    altered.write_text(
        f"[127.0.0.1]:{setup.forwarder.port} {mail_key}\n" + setup.mail.known_hosts.read_text()
    )
    before = setup.forwarder.accepted
    hosts = [mail_host(setup, f"mx-{i}", fleet_known_hosts=str(altered)) for i in range(3)]
    found = audit_all(kind, hosts)
    for failure in found:
        assert isinstance(failure, UnreachableError)
        assert failure.cause == causes.HOST_KEY_CHANGED
        assert str(failure).startswith("bastion bast1: host key for 127.0.0.1:")
        assert "ssh-keygen -R" in str(failure)
    assert setup.forwarder.accepted - before == 1  # tried once, not once per host


def test_a_target_the_bastion_cannot_reach_names_the_bastion(setup: Setup, kind: type) -> None:
    host = replace(mail_host(setup, "mx-gone"), port=1)  # nothing listens on port 1
    (failure,) = audit_all(kind, [host])
    assert isinstance(failure, UnreachableError)
    assert "bastion bast1 cannot connect to 127.0.0.1:1" in str(failure)


def test_reach_says_behind_bastion_and_the_diagnosis_does_not_call_it_down(
    setup: Setup,
) -> None:
    host = mail_host(setup, "mx-1")
    results, kept = ReachCheck().reach(host, {}, 3.0, setup.mail.port, keep=True)
    assert kept is None
    assert {r.status for r in results} == {Status.SKIPPED}
    assert {r.cause for r in results} == {causes.BEHIND_BASTION}
    assert "behind bastion bast1" in results[0].summary
    hosts = (HostResult("mx-1", "mx-1", "ssh", "unix", tuple(results), 0.1),)
    run = RunResult("inv", "play", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", hosts)
    fleet = observe(run)
    assert fleet.runner_reaches("mx-1") is None  # neither up nor down
    assert "behind bastion bast1" in reach_line(fleet, "mx-1")


def test_a_failed_bastion_is_diagnosed_with_the_fix_on_the_bastion() -> None:
    from fleet.diagnose import diagnose
    from fleet.model import CheckResult

    facts = {"bastion": "bast1", "bastion_address": "198.18.0.70", "bastion_port": 22}
    summary = "bastion bast1: host key for 198.18.0.70:22 does not match known_hosts"
    failed = tuple(
        CheckResult(
            "dmz1", check, Status.UNREACHABLE, summary, cause=causes.HOST_KEY_CHANGED, facts=facts
        )
        for check in ("binding", "smtp")
    )
    hosts = (HostResult("dmz1", "198.18.2.11", "ssh", "unix", failed, 0.1),)
    run = RunResult("inv", "play", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", hosts)
    (found,) = [f for f in diagnose(run).findings if f.hosts == ("dmz1",)]
    assert found.title == "dmz1 was not audited: bastion bast1: host key changed"
    assert "ssh-keygen -R 198.18.0.70" in found.fix
    assert "198.18.2.11" not in found.fix


RELAY = """\
import os, socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def back():
    while data := sock.recv(65536):
        os.write(1, data)
    os._exit(0)
threading.Thread(target=back, daemon=True).start()
while data := os.read(0, 65536):
    sock.sendall(data)
"""


def test_proxycommand_carries_the_login(setup: Setup, kind: type, tmp_path: Path) -> None:
    relay = tmp_path / "relay.py"
    relay.write_text(RELAY)
    command = f"-o 'ProxyCommand={sys.executable} {relay} %h %p'"
    host = HostPlan(
        "mx-proxied",
        "ssh",
        "127.0.0.1",
        setup.mail.port,
        setup.bastion.user,
        {
            "ansible_ssh_common_args": command,
            "fleet_ssh_config": "none",
            "fleet_known_hosts": str(setup.known_hosts),
            "ansible_ssh_private_key_file": str(setup.bastion.client_key),
        },
    )
    (line,) = audit_all(kind, [host])
    assert isinstance(line, str) and line.endswith(str(setup.mail.port))


def test_a_proxycommand_that_outlives_its_input_ends_with_its_socket() -> None:
    from fleet.transports import jump

    sock = jump.proxy_socket("trap '' INT; sleep 300 & wait")  # ignores its input's end
    process = sock.process  # type: ignore[attr-defined]
    group = process.pid
    sock.shutdown(socket.SHUT_RDWR)  # as the libssh2 transport ends a connection
    process.wait(timeout=jump.PROXY_GRACE + 3)
    deadline = time.monotonic() + jump.PROXY_GRACE + 3
    while True:  # the shell's child too: the whole process group is gone
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the ProxyCommand's child outlived its socket"
        time.sleep(0.05)
    sock.close()


class OnePacketSession:
    """A stand-in for a non-blocking libssh2 session as its sends behave: every packet
    goes out half first (EAGAIN, blocked outbound), and until the same call is repeated
    to finish it, any other send is misuse (LIBSSH2_ERROR_BAD_USE in libssh2 1.10)."""

    PACKET = 1000

    def __init__(self) -> None:
        self.half_sent: tuple[object, ...] | None = None
        self.misuse: list[tuple[object, ...]] = []
        self.channels: list[OnePacketChannel] = []

    def send(self, call: tuple[object, ...]) -> bool:
        """True once the packet of ``call`` is out; False: EAGAIN, call again."""
        if self.half_sent is None:
            self.half_sent = call
            return False
        if self.half_sent != call:
            self.misuse.append(call)
            raise RuntimeError("LIBSSH2_ERROR_BAD_USE")
        self.half_sent = None
        return True

    def block_directions(self) -> int:
        return LIBSSH2_SESSION_BLOCK_OUTBOUND if self.half_sent else 0

    def set_blocking(self, blocking: bool) -> None:
        pass

    def direct_tcpip_ex(self, address: str, port: int, *_: object) -> object:
        if not self.send(("open", address, port)):
            return LIBSSH2_ERROR_EAGAIN
        channel = OnePacketChannel(self, len(self.channels))
        self.channels.append(channel)
        return channel


class OnePacketChannel:
    def __init__(self, session: OnePacketSession, number: int) -> None:
        self.session, self.number = session, number
        self.received = b""
        self.closed = False

    def write(self, data: bytes) -> tuple[int, int]:
        if not self.session.send(("write", self.number)):
            return LIBSSH2_ERROR_EAGAIN, 0
        size = min(len(data), OnePacketSession.PACKET)
        self.received += data[:size]
        return size, size

    def read(self, size: int) -> tuple[int, bytes]:
        return LIBSSH2_ERROR_EAGAIN, b""

    def eof(self) -> bool:
        return False

    def close(self) -> int:
        if not self.session.send(("close", self.number)):
            return LIBSSH2_ERROR_EAGAIN
        self.closed = True
        return 0


def test_the_pump_finishes_each_half_sent_packet_before_any_other_send() -> None:
    from fleet.transports.libssh2_tunnel import TunnelPump

    session = OnePacketSession()
    ours, theirs = socket.socketpair()
    pump = TunnelPump(session, ours, "bast3")  # type: ignore[arg-type]
    try:
        payload = os.urandom(50_000)
        sockets = [pump.open(f"10.0.0.{i}", 22, 5.0, lambda: None) for i in range(4)]
        senders = [
            threading.Thread(target=lambda s=s: (s.sendall(payload), s.close())) for s in sockets
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        deadline = time.monotonic() + 10
        while not all(c.closed for c in session.channels) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.misuse == []
        assert [c.received == payload for c in session.channels] == [True] * 4
        assert all(c.closed for c in session.channels)  # each CLOSE was sent in full
    finally:
        pump.stop()
        ours.close()
        theirs.close()
