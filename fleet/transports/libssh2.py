"""The ``ssh`` connection on libssh2 (ssh2-python): the paramiko transport's contract
at about a third of its client CPU.

paramiko runs the SSH protocol in Python, a thread per connection: on the
benchmark it costs 7-9 ms of client CPU per host by itself, more than fleet's
whole budget.  libssh2 does the same work in C (~2.5 ms).  Everything around
the protocol is the paramiko transport's, inherited: the inventory's
credentials and host-key settings, the known_hosts index, reach's handed-over
connection, one budget for the whole login (the watchdog), the hard command
deadline, the output cap and the error messages.  ``ansible_connection=paramiko``
keeps the paramiko transport, as in Ansible.

The login runs in libssh2's blocking mode (the GIL is released while it
waits); the command runs non-blocking, sleeping in ``select`` on the socket,
so stdout and stderr are read as they come and the deadline is ours.
"""

from __future__ import annotations

import contextlib
import functools
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

from fleet.errors import (
    AuthenticationError,
    CommandTimeout,
    HostKeyError,
    TransportError,
    UnreachableError,
)
from fleet.model import CommandResult
from fleet.transports._io import WATCHDOG, CappedBuffer, sh_result
from fleet.transports.ssh import (
    STDERR_CAP,
    SSHTransport,
    _known_hosts_name,
    _NoGreeting,
    _shut,
    host_key_checking,
    host_path,
)

# libssh2's names for the host key algorithms a known_hosts key type can answer.
_HOSTKEY_METHODS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}
_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_CHUNK = 65536


class Libssh2Transport(SSHTransport):
    """Runs sh scripts over one libssh2 session per host."""

    def __init__(self, host: Any, options: Any) -> None:
        super().__init__(host, options)  # reads and checks the credentials (ConfigError)
        self._session: Session | None = None

    # -- connecting --------------------------------------------------------

    def connect(self) -> None:
        if self._session is None:
            super().connect()  # reach's connection if fresh, else a new one; then _login

    def _login(self, sock: socket.socket, started: float, handed_over: bool = False) -> None:
        left = max(0.1, self.options.connect_timeout - (time.monotonic() - started))
        expired = threading.Event()
        # One budget for the greeting, the key exchange and authentication: at its
        # end the watchdog shuts the socket, which ends whatever libssh2 waits on.
        watchdog = WATCHDOG.call_later(left + 1.0, functools.partial(_shut, sock, expired))
        session = Session()
        greeted, phase = False, "key exchange"
        try:
            sock.settimeout(None)
            greeted = self._greeting(sock, left, handed_over)
            session.set_timeout(int(1000 * (left + 1.0)))
            known = self.known_keys() if host_key_checking(self.host, self.options) else None
            if known:  # ask for a key type we can check, as OpenSSH does
                with contextlib.suppress(ssh2_errors.SSH2Error):
                    session.method_pref(LIBSSH2_METHOD_HOSTKEY, _hostkey_methods(known))
            session.handshake(sock)
            phase = "authentication"
            if known is not None:
                self._check_host_key(session, known)
            self._authenticate(session)
        except (TransportError, _NoGreeting):
            _close(session, sock)
            raise
        except Exception as exc:
            _close(session, sock)
            if expired.is_set() or isinstance(exc, ssh2_errors.Timeout):
                if greeted:
                    raise UnreachableError(
                        f"{self.host.address}:{self.port} greeted but the {phase} did not "
                        f"complete within {self.options.connect_timeout:g}s",
                        "a path MTU black hole, or an overloaded sshd",
                    ) from exc
                raise UnreachableError(
                    f"no SSH greeting from {self.host.address}:{self.port} within "
                    f"{self.options.connect_timeout:g}s",
                    "the port answers but is not sshd, or sshd is overloaded (MaxStartups)",
                ) from exc
            raise self._translate_ssh2(exc) from exc
        finally:
            watchdog.cancel()
        if expired.is_set():  # done just as the budget ran out: the socket is shut
            _close(session, sock)
            raise self._login_too_slow()
        self._session, self._sock = session, sock

    def _greeting(self, sock: socket.socket, left: float, handed_over: bool) -> bool:
        """Wait (within ``left`` seconds) for the host's first bytes, without taking them:
        sshd speaks first.  True once it has; raises when it never does."""
        where = f"{self.host.address}:{self.port}"
        if not select.select([sock], [], [], left)[0]:
            raise UnreachableError(
                f"no SSH greeting from {where} within {self.options.connect_timeout:g}s",
                "the port answers but is not sshd, or sshd is overloaded (MaxStartups)",
            )
        try:
            head = sock.recv(64, socket.MSG_PEEK)
        except (ConnectionResetError, BrokenPipeError) as exc:
            if handed_over:
                raise _NoGreeting from exc
            raise self._translate(exc) from exc
        except OSError as exc:  # the watchdog shut it: handled as the budget running out
            raise ssh2_errors.Timeout(str(exc)) from exc
        if not head:
            if handed_over:  # sshd dropped reach's idle connection (LoginGraceTime)
                raise _NoGreeting
            raise UnreachableError(
                f"{where} closed the connection before its SSH greeting",
                "sshd refused this client (MaxStartups, a TCP wrapper, AllowUsers)",
            )
        return True

    def _check_host_key(self, session: Session, known: Mapping[str, Any]) -> None:
        where = f"{self.host.address}:{self.port}"
        if not known:
            raise HostKeyError(
                f"host key for {where} is unknown (not in known_hosts)",
                f"add it after verifying: ssh-keyscan -p {self.port} {self.host.address} "
                ">> known_hosts (or set host_key_checking=false to opt out)",
            )
        offered, _type = session.hostkey()
        if not any(key.asbytes() == offered for key in known.values()):
            raise HostKeyError(
                f"host key for {where} does not match known_hosts (changed key: "
                "possible man-in-the-middle, or the host was reinstalled)",
                f"verify the new key, then: ssh-keygen -R {_known_hosts_name(self)}",
            )

    def _authenticate(self, session: Session) -> None:
        """The inventory's key or password; with neither, the agent, then ~/.ssh's keys."""
        user = self.user
        key_file, passphrase = _key_file(self)
        password = self._auth.get("password")
        attempts: list[Callable[[], object]] = []
        if key_file is not None:
            attempts.append(
                lambda: session.userauth_publickey_fromfile(user, str(key_file), passphrase or "")
            )
        if password:
            attempts.append(lambda: session.userauth_password(user, password))
        if not attempts:
            if os.environ.get("SSH_AUTH_SOCK"):
                attempts.append(lambda: session.agent_auth(user))
            for name in _DEFAULT_KEYS:
                path = Path("~/.ssh").expanduser() / name
                if path.is_file():
                    attempts.append(
                        functools.partial(session.userauth_publickey_fromfile, user, str(path))
                    )
        for attempt in attempts:
            with contextlib.suppress(
                ssh2_errors.AuthenticationError,
                ssh2_errors.PublickeyUnverifiedError,
                ssh2_errors.AgentError,
                ssh2_errors.FileError,
                ssh2_errors.PublicKeyError,
                ssh2_errors.MethodNotSupported,
            ):
                attempt()
            if session.userauth_authenticated():
                return
        raise AuthenticationError(
            f"authentication refused for user {self.user} on {self.host.address}:{self.port}",
            "check ansible_user and ansible_ssh_private_key_file / ansible_password",
        )

    def _translate_ssh2(self, exc: BaseException) -> TransportError:
        if isinstance(exc, (TransportError, OSError)):
            return self._translate(exc)
        where = f"{self.host.address}:{self.port}"
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, (ssh2_errors.SocketDisconnectError, ssh2_errors.BannerRecvError)):
            return UnreachableError(
                f"{where} closed the connection before the SSH login completed ({reason})",
                "sshd refused this client (MaxStartups, a TCP wrapper, AllowUsers)",
            )
        return UnreachableError(f"SSH negotiation with {where} failed: {reason}")

    # -- running -----------------------------------------------------------

    def run(self, command: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        deadline = started + timeout
        self.connect()
        session, sock = self._session, self._sock
        assert session is not None and sock is not None
        out = CappedBuffer(self.options.max_output)
        err = CappedBuffer(STDERR_CAP)
        try:
            session.set_timeout(int(1000 * max(0.1, timeout)))
            channel = session.open_session()
            channel.execute("/bin/sh -s")
            session.set_blocking(False)
            _write_all(session, sock, channel, command.encode(), deadline, timeout, out)
            _again(session, sock, channel.send_eof, deadline, timeout, out)
        except CommandTimeout:
            raise
        except Exception as exc:
            if isinstance(exc, ssh2_errors.Timeout):
                raise CommandTimeout(timeout, out.getvalue()) from exc
            raise TransportError(f"cannot start the command: {exc}") from exc
        try:
            while True:
                _read_ready(channel, out, err)
                if channel.eof():  # the EOF may have come with the data just read
                    _read_ready(channel, out, err)
                    break
                _wait(session, sock, deadline, timeout, out)
            # The exit status may come after EOF: a host that never sends it is bound too.
            _again(session, sock, channel.close, deadline, timeout, out)
            _again(session, sock, channel.wait_closed, deadline, timeout, out)
            status = channel.get_exit_status()
        except (CommandTimeout, TransportError):
            raise
        except ssh2_errors.SSH2Error as exc:
            raise TransportError(f"the connection failed during the command: {exc}") from exc
        finally:
            session.set_blocking(True)
        return sh_result(status, out, err, started)

    def close(self) -> None:
        session, sock = self._session, self._sock
        self._session = self._sock = None
        if session is not None and sock is not None:
            _close(session, sock)


def _key_file(transport: SSHTransport) -> tuple[Path | None, str | None]:
    variables = transport.host.vars
    key = variables.get("ansible_ssh_private_key_file") or variables.get("ansible_private_key_file")
    if not key:
        return None, None
    passphrase = variables.get("ansible_ssh_private_key_passphrase")
    return host_path(transport.host, key), str(passphrase) if passphrase else None


def _hostkey_methods(known: Mapping[str, Any]) -> str:
    names: list[str] = []
    for keytype in known:
        names.extend(_HOSTKEY_METHODS.get(keytype, (keytype,)))
    return ",".join(dict.fromkeys(names))


def _close(session: Session, sock: socket.socket) -> None:
    """Say goodbye if the session can, without waiting on a dead peer; shut the socket.

    The descriptor itself is closed with the socket object, which the session holds
    until libssh2 has freed it.  Closed here, its number could be reused by another
    host's connection while libssh2, freeing a channel a deadline left open, still
    writes to it: that corrupted other logins, one in tens.
    """
    with contextlib.suppress(Exception):
        session.set_blocking(False)
        session.disconnect()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _wait(
    session: Session, sock: socket.socket, deadline: float, timeout: float, out: CappedBuffer
) -> None:
    """Sleep until the socket can go the way libssh2 waits for, or raise at the deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise CommandTimeout(timeout, out.getvalue())
    directions = session.block_directions()
    readers = [sock] if directions & LIBSSH2_SESSION_BLOCK_INBOUND or not directions else []
    writers = [sock] if directions & LIBSSH2_SESSION_BLOCK_OUTBOUND else []
    select.select(readers, writers, [], remaining)


def _again(
    session: Session,
    sock: socket.socket,
    call: Callable[[], Any],
    deadline: float,
    timeout: float,
    out: CappedBuffer,
) -> Any:
    """``call()`` until libssh2 stops answering EAGAIN."""
    while (result := call()) == LIBSSH2_ERROR_EAGAIN:
        _wait(session, sock, deadline, timeout, out)
    return result


def _write_all(
    session: Session,
    sock: socket.socket,
    channel: Any,
    data: bytes,
    deadline: float,
    timeout: float,
    out: CappedBuffer,
) -> None:
    view = memoryview(data)
    while view:
        rc, written = channel.write(bytes(view[:_CHUNK]))
        if rc == LIBSSH2_ERROR_EAGAIN or written == 0:
            _read_ready(channel, out, None)  # a host printing before reading its stdin
            _wait(session, sock, deadline, timeout, out)
            continue
        view = view[written:]


def _read_ready(channel: Any, out: CappedBuffer, err: CappedBuffer | None) -> None:
    """Whatever stdout and stderr the channel holds now (stderr too, lest its window fill)."""
    while True:
        size, data = channel.read(_CHUNK)
        if size <= 0:
            break
        out.write(data)
    while err is not None:
        size, data = channel.read_stderr(_CHUNK)
        if size <= 0:
            break
        err.write(data)
