"""The ``ssh`` connection on libssh2 (ssh2-python): the SSH protocol in C.

paramiko runs the SSH protocol in Python, a thread per connection; libssh2
does the same work in C for a fraction of the client CPU (the README's
benchmark), which makes it the default, as OpenSSH is Ansible's.  Everything around the protocol is
shared with the ``paramiko`` connection (fleet.transports.sshcommon): the
inventory's settings and credentials, the known_hosts index, reach's
handed-over connection, one budget for the whole login (the watchdog), the
messages and their causes.

The login runs in libssh2's blocking mode (the GIL is released while it
waits) under the watchdog; the command runs non-blocking, sleeping in
``poll`` on the socket, so stdout and stderr are read as they come and the
deadline is ours.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ssh2 import exceptions as ssh2_errors
from ssh2.error_codes import LIBSSH2_ERROR_EAGAIN
from ssh2.session import (
    LIBSSH2_METHOD_HOSTKEY,
    LIBSSH2_SESSION_BLOCK_INBOUND,
    LIBSSH2_SESSION_BLOCK_OUTBOUND,
    Session,
)

from fleet import causes
from fleet.errors import CommandTimeout, TransportError
from fleet.model import CommandResult
from fleet.plan import HostPlan, RunOptions
from fleet.text import safe_text
from fleet.transports import sshcommon
from fleet.transports._io import WATCHDOG, CappedBuffer, sh_result
from fleet.transports.base import AuditContext
from fleet.transports.handoff import Handoff
from fleet.transports.sshcommon import STDERR_CAP, NoGreeting

# libssh2's names for the host key algorithms a known_hosts key type can answer.
_HOSTKEY_METHODS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}
_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_CHUNK = 65536
# The longest sleep between two looks at a non-blocking call.  libssh2 sometimes
# answers EAGAIN after it has read the packet it was waiting for (seen on
# channel close: the host's CLOSE came in with the call that said "again"), and
# the socket then stays quiet: sleeping until the deadline cost the odd host its
# whole --command-timeout.  Closing, where that happens, looks often.
_PATIENCE = 0.5
_CLOSING_PATIENCE = 0.02


class Libssh2Transport(sshcommon.SshTransport):
    """Runs sh scripts over one libssh2 session per host."""

    def __init__(
        self,
        host: HostPlan | None,
        options: RunOptions | None,
        context: AuditContext | None = None,
        settings: sshcommon.SshSettings | None = None,
    ) -> None:
        super().__init__(host, options, context, settings)
        self._session: Session | None = None
        self._sock: socket.socket | None = None
        self._pump: Any = None  # a jump host's (fleet.transports.libssh2_tunnel)
        self._pump_lock = threading.Lock()

    # -- connecting --------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Logged in, and (a jump host's) the thread carrying its channels still runs."""
        return self._session is not None and (self._pump is None or self._pump.alive)

    def connect(self, handoff: Handoff | None = None) -> None:
        if self._session is not None and not self.connected:  # a jump host's, gone under it
            self.close()
        super().connect(handoff)

    def _login(self, sock: socket.socket, started: float, handed_over: bool) -> None:
        s = self.settings
        left = max(0.1, s.connect_timeout - (time.monotonic() - started))
        expired = threading.Event()
        # One budget for the greeting, the key exchange and authentication: at its
        # end the watchdog shuts the socket, which ends whatever libssh2 waits on.
        watchdog = WATCHDOG.call_later(left + 1.0, functools.partial(sshcommon.shut, sock, expired))
        session = Session()
        greeted, phase = False, "key exchange"
        try:
            sock.settimeout(None)
            greeted = self._greeting(sock, left, handed_over)
            session.set_timeout(int(1000 * (left + 1.0)))
            known = sshcommon.known_keys(s, self._context) if s.host_key_checking else None
            if known:  # ask for a key type we can check first, as OpenSSH does
                with contextlib.suppress(ssh2_errors.SSH2Error):
                    session.method_pref(LIBSSH2_METHOD_HOSTKEY, _hostkey_methods(session, known))
            session.handshake(sock)
            phase = "authentication"
            if known is not None:
                self._check_host_key(session, known)
            self._authenticate(session)
        except (TransportError, NoGreeting):
            _close(session, sock)
            raise
        except Exception as exc:
            _close(session, sock)
            if expired.is_set() or isinstance(exc, ssh2_errors.Timeout):
                if greeted:
                    raise sshcommon.stalled(s, phase) from exc
                raise sshcommon.no_greeting(s) from exc
            raise self._translate(exc, session) from exc
        finally:
            watchdog.cancel()
        if expired.is_set():  # done just as the budget ran out: the socket is shut
            _close(session, sock)
            raise sshcommon.login_too_slow(s)
        self._session, self._sock = session, sock

    def _greeting(self, sock: socket.socket, left: float, handed_over: bool) -> bool:
        """Wait (within ``left`` seconds) for the host's first bytes, without taking them:
        sshd speaks first.  True once it has; raises when it never does."""
        if not _poll(sock, select.POLLIN, left):
            raise sshcommon.no_greeting(self.settings)
        try:
            head = sock.recv(64, socket.MSG_PEEK)
        except (ConnectionResetError, BrokenPipeError) as exc:
            if handed_over:
                raise NoGreeting from exc
            raise sshcommon.translate(exc, self.settings) from exc
        except OSError as exc:  # the watchdog shut it: handled as the budget running out
            raise ssh2_errors.Timeout(str(exc)) from exc
        if not head:
            if handed_over:  # sshd dropped reach's idle connection (LoginGraceTime)
                raise NoGreeting
            raise sshcommon.closed_early(self.settings)
        return True

    def _check_host_key(self, session: Session, known: Mapping[str, bytes]) -> None:
        if not known:
            raise sshcommon.host_key_unknown(self.settings)
        offered, _type = session.hostkey()
        if offered not in known.values():
            raise sshcommon.host_key_changed(self.settings)

    def _authenticate(self, session: Session) -> None:
        """The inventory's key or password; with neither, the agent, then ~/.ssh's keys."""
        user, key = self.settings.user, self._credentials.key
        password = self._credentials.password
        attempts: list[Callable[[], object]] = []
        if key is not None:
            # With <key>-cert.pub beside it, the certificate is offered (as paramiko does).
            cert = key.certificate
            if key.encrypted:  # unlocked once per audit: libssh2 would run the KDF each time
                attempts.append(
                    lambda: session.userauth_publickey_frommemory(
                        user, key.unlocked, "", cert.read_bytes() if cert else None
                    )
                )
            else:
                attempts.append(
                    functools.partial(
                        session.userauth_publickey_fromfile,
                        user,
                        str(key.path),
                        "",
                        str(cert) if cert else None,
                    )
                )
        if password:
            attempts.append(lambda: session.userauth_password(user, password))
            # PasswordAuthentication no + KbdInteractiveAuthentication yes (paramiko's fallback)
            attempts.append(lambda: session.userauth_keyboardinteractive(user, password))
        if not attempts:
            attempts = _default_attempts(session, user)
        for attempt in attempts:
            with contextlib.suppress(
                ssh2_errors.AuthenticationError,
                ssh2_errors.PublickeyUnverifiedError,
                ssh2_errors.AgentError,
                ssh2_errors.FileError,
                ssh2_errors.PublicKeyError,
                ssh2_errors.MethodNotSupported,
                ssh2_errors.MethodNoneError,
            ):
                attempt()
            if session.userauth_authenticated():
                return
        raise sshcommon.auth_refused(self.settings)

    def _translate(self, exc: BaseException, session: Session | None = None) -> TransportError:
        if isinstance(exc, (TransportError, OSError)):
            return sshcommon.translate(exc, self.settings)
        reason = _reason(exc, session)
        if isinstance(exc, (ssh2_errors.SocketDisconnectError, ssh2_errors.BannerRecvError)):
            return sshcommon.closed_early(self.settings, reason)
        return sshcommon.negotiation_failed(self.settings, reason)

    def tunnel(self, address: str, port: int, timeout: float, done: Callable[[], None]) -> Any:
        """A socket to ``address:port`` through this host (a jump host's work): from the
        first one on, a thread owns this session (fleet.transports.libssh2_tunnel)."""
        from fleet.transports.libssh2_tunnel import TunnelPump

        with self._pump_lock:  # hosts arrive together: one thread may own the session
            if self._pump is None:
                assert self._session is not None and self._sock is not None
                self._pump = TunnelPump(self._session, self._sock, self.settings.host)
            pump = self._pump
        return pump.open(address, port, timeout, done)

    # -- running -----------------------------------------------------------

    def run(self, command: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        deadline = started + timeout
        self.connect()
        session, sock = self._session, self._sock
        assert session is not None and sock is not None
        io = _ChannelIO(session, sock, deadline, timeout, self.settings.max_output)
        try:
            # Non-blocking from here: every wait is a poll() bounded by the deadline.
            session.set_blocking(False)
            channel = io.again(session.open_session)
            io.again(lambda: channel.execute("/bin/sh -s"))
            io.write_all(channel, command.encode())
            io.again(channel.send_eof, channel)
            while True:
                io.read_ready(channel)
                if channel.eof():  # the EOF may have come with the data just read
                    io.read_ready(channel)
                    break
                io.wait()
            # The exit status may come after EOF: a host that never sends it is bound too.
            io.again(channel.close, channel, patience=_CLOSING_PATIENCE)
            io.again(channel.wait_closed, channel, patience=_CLOSING_PATIENCE)
            status = channel.get_exit_status()
        except BaseException as exc:
            # The connection is spent: shut it now, so that freeing the channel later
            # (libssh2 says goodbye to the host) can neither wait on it nor block others.
            self.close()
            if isinstance(exc, (CommandTimeout, KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(exc, ssh2_errors.Timeout):
                raise CommandTimeout(timeout, io.out.getvalue()) from exc
            raise TransportError(
                f"the command's connection failed: {_reason(exc, session)}",
                cause=causes.TRANSPORT_ERROR,
            ) from exc
        session.set_blocking(True)
        return sh_result(status, io.out, io.err, started)

    def close(self) -> None:
        session, sock = self._session, self._sock
        self._session = self._sock = None
        if self._pump is not None:
            self._pump, pump = None, self._pump
            pump.stop()
        if session is not None and sock is not None:
            _close(session, sock)


def _default_attempts(session: Session, user: str) -> list[Callable[[], object]]:
    """With no key or password in the inventory: the agent, then ~/.ssh's usual keys."""
    attempts: list[Callable[[], object]] = []
    if os.environ.get("SSH_AUTH_SOCK"):
        attempts.append(lambda: session.agent_auth(user))
    for name in _DEFAULT_KEYS:
        path = Path("~/.ssh").expanduser() / name
        if path.is_file():
            attempts.append(functools.partial(session.userauth_publickey_fromfile, user, str(path)))
    return attempts


def _hostkey_methods(session: Session, known: Mapping[str, Any]) -> str:
    """The host key algorithms known_hosts has keys for, then every other one libssh2
    has: a host that now offers only another type is reported as a changed key, not
    as a failed negotiation."""
    names: list[str] = []
    for keytype in known:
        names.extend(_HOSTKEY_METHODS.get(keytype, (keytype,)))
    # (Host certificates would need @cert-authority lines, which fleet does not read.)
    supported = [n for n in session.supported_algs(LIBSSH2_METHOD_HOSTKEY) if "-cert-" not in n]
    names = [n for n in names if n in supported] + supported
    return ",".join(dict.fromkeys(names))


def _close(session: Session, sock: socket.socket) -> None:
    """Say goodbye if the session can, without waiting on a dead peer; shut the socket.

    The descriptor itself is closed with the socket object, which the session holds
    until libssh2 has freed it.  Closed here, its number could be reused by another
    host's connection while libssh2, freeing a channel a deadline left open, still
    writes to it: that corrupted other logins, one in tens.
    """
    if getattr(session, "sock", None) is not None:  # handshake begun: libssh2 knows the fd
        with contextlib.suppress(Exception):
            session.set_blocking(False)
            session.disconnect()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _poll(sock: socket.socket, events: int, seconds: float) -> bool:
    """Whether ``sock`` is ready for ``events`` within ``seconds`` (poll: no fd limit)."""
    waiter = select.poll()
    waiter.register(sock, events)
    return bool(waiter.poll(max(0, math.ceil(seconds * 1000))))


# What failed, for ssh2-python's exceptions (which often carry no message at all); the
# first class ``exc`` is an instance of wins, so subclasses come before their bases.
_WHAT_FAILED: tuple[tuple[type[BaseException], str], ...] = (
    (ssh2_errors.BannerRecvError, "no SSH banner came back (not sshd, or it hung up)"),
    (ssh2_errors.BannerSendError, "the SSH banner could not be sent"),
    (ssh2_errors.KexFailureError, "the key exchange failed (no algorithm in common?)"),
    (ssh2_errors.KeyExchangeError, "the key exchange failed (no algorithm in common?)"),
    (ssh2_errors.AlgoUnsupportedError, "no algorithm in common with the host"),
    (ssh2_errors.MethodNotSupported, "no method in common with the host"),
    (ssh2_errors.HostkeyInitError, "the host key could not be read"),
    (ssh2_errors.SessionHostKeyError, "the host key could not be read"),
    (ssh2_errors.HostkeySignError, "the host key's signature did not verify"),
    (ssh2_errors.DecryptError, "the host's packets did not decrypt (corrupted stream)"),
    (ssh2_errors.InvalidMACError, "a packet failed its integrity check (corrupted stream)"),
    (ssh2_errors.MacFailureError, "a packet failed its integrity check (corrupted stream)"),
    (ssh2_errors.KeyfileAuthFailedError, "the private key was refused or could not be read"),
    (ssh2_errors.PublicKeyError, "the private key could not be used (wrong passphrase?)"),
    (ssh2_errors.FileError, "the private key file could not be used (wrong passphrase?)"),
    (ssh2_errors.PasswordExpiredError, "the account's password has expired"),
    (ssh2_errors.AuthenticationError, "authentication failed"),
    (ssh2_errors.SocketDisconnectError, "the host closed the connection"),
    (ssh2_errors.SocketRecvError, "reading from the connection failed"),
    (ssh2_errors.SocketSendError, "writing to the connection failed"),
    (ssh2_errors.ChannelRequestDenied, "the host refused to run the command"),
    (ssh2_errors.ChannelFailure, "the host refused to open a channel"),
    (ssh2_errors.ChannelError, "the command's channel failed"),
    (ssh2_errors.ProtocolError, "the host broke the SSH protocol"),
    (ssh2_errors.SocketTimeout, "the connection timed out"),
    (ssh2_errors.Timeout, "the connection timed out"),
)


def _reason(exc: BaseException, session: Session | None = None) -> str:
    """What failed, in words, with libssh2's own message when it has one: ssh2-python's
    exceptions often carry none (a bare "SSH2Error" says nothing)."""
    what = next((text for cls, text in _WHAT_FAILED if isinstance(exc, cls)), "")
    detail = str(exc)
    if not detail and session is not None:
        with contextlib.suppress(Exception):
            detail = str(session.last_error() or "")
    parts = [p for p in (what, safe_text(detail, 200)) if p]
    return ": ".join(parts) or f"libssh2 failed ({type(exc).__name__}, no message)"


class _ChannelIO:
    """One command's non-blocking reads and writes, each wait bounded by the deadline."""

    def __init__(
        self, session: Session, sock: socket.socket, deadline: float, timeout: float, cap: int
    ) -> None:
        self.session, self.sock, self.deadline, self.timeout = session, sock, deadline, timeout
        self.out, self.err = CappedBuffer(cap), CappedBuffer(STDERR_CAP)

    def expired(self) -> CommandTimeout:
        return CommandTimeout(self.timeout, self.out.getvalue())

    def wait(self, patience: float = _PATIENCE) -> None:
        """Sleep until the socket can go the way libssh2 waits for (at most ``patience``
        seconds: libssh2 may answer EAGAIN having already read what it waited for, and
        then the socket stays quiet), or raise at the deadline."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.expired()
        remaining = min(remaining, patience)
        directions = self.session.block_directions()
        events = 0
        if directions & LIBSSH2_SESSION_BLOCK_INBOUND:
            events |= select.POLLIN
        if directions & LIBSSH2_SESSION_BLOCK_OUTBOUND:
            events |= select.POLLOUT
        # Not blocked either way: look again soon rather than sleep on a quiet socket.
        _poll(self.sock, events or select.POLLIN, remaining if events else min(remaining, 0.01))

    def again(
        self, call: Callable[[], Any], channel: Any = None, patience: float = _PATIENCE
    ) -> Any:
        """``call()`` until libssh2 stops answering EAGAIN; output that arrives meanwhile
        is read (``channel``), lest the host block on a full window."""
        while (result := call()) == LIBSSH2_ERROR_EAGAIN:
            if channel is not None:
                self.read_ready(channel)
            self.wait(patience)
        return result

    def write_all(self, channel: Any, data: bytes) -> None:
        view = memoryview(data)
        while view:
            rc, written = channel.write(bytes(view[:_CHUNK]))
            if written > 0:
                view = view[written:]
            elif rc in (LIBSSH2_ERROR_EAGAIN, 0):
                self.read_ready(channel)  # a host printing before reading all its stdin
                self.wait()
            else:
                raise TransportError(
                    f"cannot send the script (libssh2 error {rc})", cause=causes.TRANSPORT_ERROR
                )

    def read_ready(self, channel: Any) -> None:
        """Whatever stdout and stderr the channel holds now, taken in turns; a host that
        prints without end is still held to the deadline."""
        more = True
        while more:
            if time.monotonic() > self.deadline:
                raise self.expired()
            more = False
            size, data = channel.read(_CHUNK)
            if size > 0:
                self.out.write(data)
                more = True
            size, data = channel.read_stderr(_CHUNK)
            if size > 0:
                self.err.write(data)
                more = True
