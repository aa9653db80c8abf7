"""The ``paramiko`` connection: one paramiko client per host, host keys checked.

The sibling of ``ssh`` (fleet.transports.libssh2), with the same settings,
credentials, known_hosts, login skeleton and messages (fleet.transports.sshcommon).
paramiko is imported only here, so only ``ansible_connection=paramiko`` loads it.

* the script goes to ``/bin/sh -s`` on stdin: no command-line limits, and it
  runs under sh whatever the login shell is;
* ``exec_command(timeout=)`` is only an idle timeout, so the deadline is ours:
  stdout and stderr are read as they come and the channel closed when it passes;
* paramiko bounds the banner, the key exchange and authentication each by the
  timeout; the watchdog makes ``--connect-timeout`` one budget for the login.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko

from fleet import causes
from fleet.errors import CommandTimeout, TransportError, UnreachableError
from fleet.model import CommandResult
from fleet.plan import HostPlan, RunOptions
from fleet.text import safe_text
from fleet.transports import jump, sshcommon
from fleet.transports._io import WATCHDOG, CappedBuffer, sh_result
from fleet.transports.base import AuditContext
from fleet.transports.sshcommon import STDERR_CAP, NoGreeting, PrivateKey

IDLE_WAKEUP = 5.0  # seconds: paramiko's thread's socket timeout once logged in
_KEY_CLASSES: dict[str, type[paramiko.PKey]] = {
    "ssh-ed25519": paramiko.Ed25519Key,
    "ssh-rsa": paramiko.RSAKey,
}


class _DebugOnly(logging.Handler):
    """paramiko's own log, kept off stderr: its thread logs a hostile server's banner
    as it came (terminal escapes included) and a traceback per failed login, while
    the login's failure already comes back as a result.  With FLEET_DEBUG set, each
    record is one sanitised line, without its traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        if not os.environ.get("FLEET_DEBUG") or record.getMessage().startswith(("Traceback", " ")):
            return
        with contextlib.suppress(Exception):
            print(f"paramiko: {safe_text(record.getMessage(), 300)}", file=sys.stderr)


def quiet_paramiko_log() -> None:
    """Keep paramiko's records to ``_DebugOnly`` (done once, when this transport loads)."""
    log = logging.getLogger("paramiko")
    log.propagate = False  # nor to the root logger's (or Python's last-resort) stderr
    if not any(isinstance(h, _DebugOnly) for h in log.handlers):
        log.addHandler(_DebugOnly())


quiet_paramiko_log()


class ParamikoTransport(sshcommon.SshTransport):
    """Runs sh scripts over one paramiko SSH connection per host."""

    def __init__(
        self,
        host: HostPlan | None,
        options: RunOptions | None,
        context: AuditContext | None = None,
        settings: sshcommon.SshSettings | None = None,
    ) -> None:
        super().__init__(host, options, context, settings)
        self._auth = self._auth_arguments()
        self._client: paramiko.SSHClient | None = None
        self._sock: socket.socket | None = None

    def _auth_arguments(self) -> dict[str, Any]:
        found = self._credentials
        args: dict[str, Any] = {
            # A broken agent can hang connect: only consult it when nothing was given.
            "allow_agent": not found.explicit,
            "look_for_keys": not found.explicit,
        }
        if found.key is not None:
            key = found.key
            args["pkey"] = self._context.memo(("paramiko key", key), lambda: _pkey(key))
        if found.password:
            args["password"] = found.password
        return args

    # -- connecting --------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None

    def _login(self, sock: Any, started: float, handed_over: bool) -> None:
        s = self.settings
        client = paramiko.SSHClient()
        if s.host_key_checking:
            for keytype, blob in sshcommon.known_keys(s, self._context).items():
                # A key paramiko cannot read (a type it lacks) cannot match: skipped.
                with contextlib.suppress(paramiko.SSHException, paramiko.pkey.UnknownKeyType):
                    key = paramiko.PKey.from_type_string(keytype, blob)
                    client.get_host_keys().add(s.host_key_name, keytype, key)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            # The operator opted out (host_key_checking=false), as in Ansible.
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507
        # (A second of grace lets each phase's own timeout give its sharper reason.)
        left = max(0.1, s.connect_timeout - (time.monotonic() - started)) + 1.0
        expired = threading.Event()
        watchdog = WATCHDOG.call_later(left, functools.partial(sshcommon.shut, sock, expired))
        try:
            client.connect(
                s.address,
                port=s.port,
                username=s.user,
                sock=sock,
                timeout=s.connect_timeout,
                banner_timeout=s.connect_timeout,
                auth_timeout=s.connect_timeout,
                **self._auth,
            )
        except Exception as exc:
            failure = self._failed(client, exc, expired, handed_over)  # before close()
            sock.close()
            client.close()
            raise failure from exc
        finally:
            watchdog.cancel()
        if expired.is_set():  # the login finished just as the budget ran out: socket shut
            client.close()
            raise sshcommon.login_too_slow(s)
        # paramiko's thread wakes at every socket timeout (0.1 s) to notice a close;
        # once logged in nothing else needs it.  close() shuts the socket down, which
        # wakes the thread at once.
        sock.settimeout(IDLE_WAKEUP)
        self._client, self._sock = client, sock

    def _failed(
        self,
        client: paramiko.SSHClient,
        exc: Exception,
        expired: threading.Event,
        handed_over: bool,
    ) -> Exception:
        """Why the login failed (NoGreeting: try a fresh connection)."""
        # paramiko may report "No existing session" when the real cause (e.g. no
        # banner) was saved on the transport.
        transport = client.get_transport()
        cause = getattr(transport, "saved_exception", None) or exc
        greeting = getattr(transport, "remote_version", None)
        closed = sshcommon.closed_by_peer(cause) or sshcommon.closed_by_peer(exc)
        if handed_over and not greeting and closed and not expired.is_set():
            return NoGreeting()
        if greeting and _no_session(cause):
            return sshcommon.stalled(self.settings, "key exchange", greeting)
        if expired.is_set():
            return sshcommon.login_too_slow(self.settings)
        return self._translate(cause)

    def _translate(self, exc: BaseException) -> TransportError:
        """paramiko's errors in an operator's words (the socket layer's: sshcommon's)."""
        s = self.settings
        if isinstance(exc, paramiko.BadHostKeyException):
            return sshcommon.host_key_changed(s)
        if isinstance(exc, paramiko.AuthenticationException):
            return sshcommon.auth_refused(s)
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            return sshcommon.host_key_unknown(s)
        if isinstance(exc, paramiko.SSHException):
            # "No existing session": the transport died before authentication,
            # in practice because the banner never came (a race in paramiko).
            if _no_session(exc):
                return sshcommon.no_greeting(s)
            return sshcommon.negotiation_failed(s, str(exc) or type(exc).__name__)
        return sshcommon.translate(exc, s)

    def tunnel(self, address: str, port: int, timeout: float, done: Callable[[], None]) -> Any:
        """A ``direct-tcpip`` channel to ``address:port`` (a jump host's work)."""
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            raise UnreachableError(
                f"bastion {self.settings.host}: its SSH connection was lost",
                cause=causes.TRANSPORT_ERROR,
            )
        where = f"{address}:{port}"
        try:
            channel = transport.open_channel(
                "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=timeout
            )
        except paramiko.ChannelException as exc:
            raise jump.channel_refused(self.settings.host, where, exc.text) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            said = str(exc) or type(exc).__name__
            raise jump.channel_refused(self.settings.host, where, said) from exc
        return _tunnel_socket(channel, done)

    # -- running -----------------------------------------------------------

    def run(self, command: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        self.connect()
        assert self._client is not None
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise UnreachableError(
                f"SSH connection to {self.settings.address} was lost",
                cause=causes.TRANSPORT_ERROR,
            )
        try:
            channel = transport.open_session(timeout=timeout)
            channel.exec_command("/bin/sh -s")
            channel.sendall(command.encode())
            channel.shutdown_write()
        except Exception as exc:
            raise TransportError(
                f"cannot start the command: {exc}", cause=causes.TRANSPORT_ERROR
            ) from exc
        try:
            out, err = self._drain(channel, started + timeout, timeout)
            status = channel.exit_status
        finally:
            channel.close()
        return sh_result(status, out, err, started)

    def _drain(
        self, channel: paramiko.Channel, deadline: float, timeout: float
    ) -> tuple[CappedBuffer, CappedBuffer]:
        """Read stdout and stderr as they come until EOF, or raise at the deadline.

        Sleeps in poll() on the channel's pipe, which paramiko sets when data,
        EOF or a close arrives: no timed polling.
        """
        out = CappedBuffer(self.settings.max_output)
        err = CappedBuffer(STDERR_CAP)
        waiter = select.poll()
        waiter.register(channel.fileno(), select.POLLIN)
        while True:
            # EOF first: data that came before it is in the buffers, read below.
            finished = channel.eof_received or channel.closed
            _read_buffered(channel, out, err)
            if finished:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandTimeout(timeout, out.getvalue())
            waiter.poll(max(1, math.ceil(remaining * 1000)))
        # The exit status may come after EOF; a host that never sends it is
        # bound by the same deadline.
        if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            raise CommandTimeout(timeout, out.getvalue())
        return out, err

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock = None
        if self._client is not None:
            self._client.close()
            self._client = None


def _tunnel_socket(channel: paramiko.Channel, done: Callable[[], None]) -> socket.socket:
    """A socket for the login behind the jump host, its bytes carried to and from
    ``channel`` by one thread: only that thread writes to the channel and closes it
    (paramiko's channel used as the login's socket was written to by two threads, and a
    late write after the close made sshd drop the whole jump connection)."""
    ours, theirs = socket.socketpair()
    threading.Thread(target=_carry, args=(channel, ours, done), daemon=True).start()
    return theirs


def _carry(channel: paramiko.Channel, local: socket.socket, done: Callable[[], None]) -> None:
    waiter = select.poll()
    waiter.register(channel.fileno(), select.POLLIN)
    waiter.register(local, select.POLLIN)
    try:
        while True:
            waiter.poll(IDLE_WAKEUP * 1000)
            while channel.recv_ready():
                local.sendall(channel.recv(65536))
            if channel.eof_received or channel.closed:
                break
            try:
                data = local.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            if not data:  # the login behind closed its socket
                break
            channel.sendall(data)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        with contextlib.suppress(Exception):
            channel.close()
        with contextlib.suppress(OSError):
            local.close()
        done()


def _pkey(key: PrivateKey) -> paramiko.PKey:
    """paramiko's object for the (already unlocked) key, with its certificate if any."""
    cls = _KEY_CLASSES.get(key.algorithm, paramiko.ECDSAKey)
    pkey = cls.from_private_key(io.StringIO(key.unlocked.decode()))
    if key.certificate is not None:
        pkey.load_certificate(str(key.certificate))
    return pkey


def _no_session(exc: BaseException) -> bool:
    """paramiko's words for a transport that died before authentication (no banner)."""
    if isinstance(exc, paramiko.AuthenticationException):
        return False
    message = str(exc).lower()
    return "no existing session" in message or "banner" in message


def _read_buffered(channel: paramiko.Channel, out: CappedBuffer, err: CappedBuffer) -> None:
    """Whatever stdout and stderr the channel holds now (stderr too, lest its window fill)."""
    while channel.recv_stderr_ready():
        err.write(channel.recv_stderr(65536))
    while channel.recv_ready():
        out.write(channel.recv(65536))
