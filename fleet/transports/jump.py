"""Logins through a jump host (ProxyJump) or a ProxyCommand, for both SSH transports.

A jump host is a real SSH login, with its own host-key check and the same
connect budget as any host.  The hosts behind one jump host share its
connection: each gets a ``direct-tcpip`` channel on it (at most
``MAX_CHANNELS`` at once, sshd's MaxSessions default) instead of a login of
its own.  The shared login is made once; when it fails, every host behind it
gets that failure, named after the jump host, without trying again.  The
connection is closed once no channel has used it for ``LINGER`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from typing import TYPE_CHECKING, Any, Protocol

from fleet import causes
from fleet.errors import TransportError, UnreachableError
from fleet.transports._io import WATCHDOG

if TYPE_CHECKING:
    from fleet.transports.base import AuditContext
    from fleet.transports.sshcommon import SshSettings

MAX_CHANNELS = 10  # sshd's MaxSessions default: channels open at once on one connection
LINGER = 2.0  # seconds an unused jump connection stays open for the next host
CHANNEL_WAIT = 300.0  # seconds a host waits for a free channel (the others' audits end)


class BastionError(UnreachableError):
    """A host behind a jump host is unreachable because of the jump host: ``facts`` name
    it (``bastion``, ``bastion_address``, ``bastion_port``) for the diagnosis's fix."""

    def __init__(self, reason: str, hint: str, cause: str, facts: dict[str, Any]) -> None:
        super().__init__(reason, hint, cause=cause)
        self.facts = facts


class Tunneller(Protocol):
    """An SSH transport logged in to a jump host, able to open channels through it."""

    connected: bool
    settings: SshSettings

    def connect(self) -> None: ...

    def tunnel(self, address: str, port: int, timeout: float, done: Any) -> Any:
        """A socket-like connection to ``address:port`` through this host; ``done()`` is
        called once when it is closed."""
        ...

    def close(self) -> None: ...


class Bastion:
    """One jump host's shared connection, logged in on first use."""

    def __init__(self, name: str, connection: Tunneller, max_channels: int = MAX_CHANNELS) -> None:
        self.name = name
        self.connection = connection
        self.logins = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_channels)
        self._open = 0
        self._failure: UnreachableError | None = None

    def open(self, address: str, port: int, timeout: float, wait: float) -> Any:
        """A connection to ``address:port`` through the jump host, after waiting at most
        ``wait`` seconds for a free channel.  UnreachableError names the jump host."""
        if not self._slots.acquire(timeout=wait):
            raise UnreachableError(
                f"bastion {self.name}: no free channel within {wait:g}s "
                f"({MAX_CHANNELS} hosts at once use it)",
                "raise --host-deadline, or lower --forks",
                cause=causes.LOGIN_TIMEOUT,
            )
        done = _Once(self._done)  # a channel is closed from more than one thread at times
        try:
            with self._lock:
                self._open += 1  # before the login: a failed one is counted out by done()
                self._log_in()
            return self.connection.tunnel(address, port, timeout, done)
        except BaseException:
            done()
            raise

    def _log_in(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self.connection.connected:
            return
        try:
            self.logins += 1
            self.connection.connect()
        except UnreachableError as exc:
            self._failure = via_bastion(self.connection.settings, exc)
            raise self._failure from exc
        except TransportError as exc:
            raise via_bastion(self.connection.settings, exc) from exc

    def _done(self) -> None:
        with self._lock:
            self._open = max(0, self._open - 1)
            idle = self._open == 0
        self._slots.release()
        if idle:
            WATCHDOG.call_later(LINGER, self._close_if_idle)

    def _close_if_idle(self) -> None:
        with self._lock:
            if self._open == 0:  # a dead connection too: its socket is closed with it
                self.connection.close()


class _Once:
    """``action`` run at the first call only, whichever thread calls first."""

    def __init__(self, action: Any) -> None:
        self._action: Any = action
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            action, self._action = self._action, None
        if action is not None:
            action()


def via_bastion(settings: SshSettings, exc: TransportError) -> BastionError:
    """The jump host's failure, as the reason a host behind it is unreachable."""
    facts = {
        "bastion": settings.host,
        "bastion_address": settings.address,
        "bastion_port": settings.port,
    }
    reason = exc.reason if isinstance(exc, UnreachableError) else str(exc)
    hint = exc.hint if isinstance(exc, UnreachableError) else ""
    return BastionError(f"bastion {settings.host}: {reason}", hint, exc.cause, facts)


def bastion(context: AuditContext, via: SshSettings, kind: type, build: Any) -> Bastion:
    """The audit's shared connection to the jump host ``via``; ``build()`` makes the
    transport (``kind``, the target's) that logs in to it, once per audit and kind."""
    return context.memo(("bastion", kind, via), lambda: Bastion(via.host, build()))


def channel_refused(name: str, where: str, reason: str) -> UnreachableError:
    """The jump host could not connect to the target (sshd's "open failed" reason)."""
    said = reason.lower()
    cause, hint = causes.TRANSPORT_ERROR, "check the host's address and port as the bastion sees it"
    if "refused" in said:
        cause, hint = causes.CONNECT_REFUSED, "sshd not running, or wrong ansible_port"
    elif "timed out" in said or "timeout" in said:
        cause, hint = causes.CONNECT_TIMEOUT, "host down, or port filtered by a firewall"
    elif "no route" in said or "unreachable" in said:
        cause, hint = causes.HOST_UNREACHABLE, "host down, or no route from the bastion"
    elif "resol" in said or "name" in said:
        cause, hint = causes.NAME_UNRESOLVED, "check ansible_host and the bastion's DNS"
    elif "prohibited" in said or "administratively" in said:
        hint = "the bastion forbids forwarding (AllowTcpForwarding no, or PermitOpen)"
    return UnreachableError(
        f"bastion {name} cannot connect to {where}: {reason or 'refused'}", hint, cause=cause
    )


# Seconds a ProxyCommand has, after the hang-up, to end before it is killed.
PROXY_GRACE = 2.0


class _ProxySocket(socket.socket):
    """fleet's end of a ProxyCommand's socket pair.  Shutting it down or closing it ends
    the command, as OpenSSH does (SIGHUP to its process group, SIGKILL if it lingers):
    a command that outlives its input (an ``nc`` without ``-N``) is never left behind."""

    process: subprocess.Popen[bytes] | None = None

    def shutdown(self, how: int) -> None:
        try:
            super().shutdown(how)
        finally:
            self._hang_up()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._hang_up()

    def _hang_up(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGHUP)
        timer = threading.Timer(PROXY_GRACE, _kill_if_running, args=(process,))
        timer.daemon = True
        timer.start()


def _kill_if_running(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)


def proxy_socket(command: str) -> socket.socket:
    """A socket whose other end is ``command``'s stdin and stdout (ProxyCommand), run by
    the shell in a process group of its own; shutting the socket down or closing it
    ends the command."""
    pair, theirs = socket.socketpair()
    ours = _ProxySocket(fileno=pair.detach())
    try:
        process = subprocess.Popen(  # noqa: S602 - ssh_config's ProxyCommand is a shell command
            command,
            shell=True,
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        ours.close()
        raise UnreachableError(
            f"ProxyCommand cannot run: {exc.strerror}", cause=causes.CONFIG_MISSING
        ) from exc
    finally:
        theirs.close()
    ours.process = process
    threading.Thread(target=_reap, args=(process,), daemon=True).start()
    return ours


def _reap(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(Exception):
        process.wait()
