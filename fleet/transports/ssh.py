"""The ``paramiko`` connection (and the base of ``ssh``'s, fleet.transports.libssh2):
one paramiko client per host, host keys checked.

Why things are done the way they are (see facts-unix-ssh.md):

* we open the TCP socket ourselves, with a connect timeout and TCP_NODELAY
  (paramiko never sets it, and each exec would wait ~40 ms on Nagle);
* the script goes to ``/bin/sh -s`` on stdin: no command-line limits, and it
  runs under sh whatever the login shell is;
* ``exec_command(timeout=)`` is only an idle timeout, so the deadline is ours:
  we read stdout and stderr as they come and close the channel when it passes;
* unknown or changed host keys are refused unless ``host_key_checking`` is off.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import math
import os
import select
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fleet.transports._paramiko  # noqa: F401 - first: paramiko without invoke

# isort: split
import paramiko

from fleet.errors import (
    AuthenticationError,
    CommandTimeout,
    ConfigError,
    HostKeyError,
    TransportError,
    UnreachableError,
)
from fleet.model import CommandResult
from fleet.plan import HostPlan, RunOptions
from fleet.transports import handoff
from fleet.transports._io import WATCHDOG, CappedBuffer, sh_result

STDERR_CAP = 64 * 1024
IDLE_WAKEUP = 5.0  # seconds: paramiko's thread's socket timeout once logged in
_FALSE = ("0", "false", "no", "off", "n")


def host_key_checking(host: HostPlan, options: RunOptions) -> bool:
    """Ansible's switches: the option, ANSIBLE_HOST_KEY_CHECKING, then the host's variables."""
    if not options.host_key_checking:
        return False
    if os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "").lower() in _FALSE:
        return False
    for name in ("ansible_host_key_checking", "ansible_ssh_host_key_checking"):
        value = host.vars.get(name)
        if value is not None and str(value).lower() in _FALSE:
            return False
    return True


def host_path(host: HostPlan, value: Any) -> Path:
    """A path from the inventory: ``~`` expanded, relative to the inventory directory."""
    path = Path(str(value)).expanduser()
    if not path.is_absolute():
        base = host.vars.get("inventory_dir")
        if base:
            path = Path(str(base)) / path
    return path


def key_file(host: HostPlan) -> tuple[Path | None, str | None]:
    """The inventory's private key file for ``host`` (resolved) and its passphrase."""
    key = host.vars.get("ansible_ssh_private_key_file") or host.vars.get("ansible_private_key_file")
    if not key:
        return None, None
    passphrase = host.vars.get("ansible_ssh_private_key_passphrase")
    return host_path(host, key), str(passphrase) if passphrase else None


class SSHTransport:
    """Runs sh scripts over one paramiko SSH connection per host."""

    shell = "sh"

    def __init__(self, host: HostPlan, options: RunOptions) -> None:
        self.host = host
        self.options = options
        self.port = int(host.port or host.vars.get("ansible_ssh_port") or 22)
        self.user = host.user or os.environ.get("USER") or "root"
        self._client: paramiko.SSHClient | None = None
        self._sock: socket.socket | None = None
        # Credentials are read now, before any host is contacted: a missing key
        # file or a wrong passphrase is the inventory's fault (exit 5), and it
        # must not cost a login attempt per host.
        self._auth = self._load_auth()

    def _load_auth(self) -> dict[str, Any]:
        try:
            return self._auth_arguments()
        except (OSError, paramiko.SSHException, AuthenticationError) as exc:
            key, _ = key_file(self.host)
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(
                f"host {self.host.name}: private key {key} cannot be "
                f"used: {reason} (check ansible_ssh_private_key_file and its passphrase)",
                path=self.host.vars.get("inventory_file"),
            ) from exc

    # -- connecting --------------------------------------------------------

    def connect(self) -> None:
        if self._client is not None:
            return
        started = time.monotonic()
        # reach's connection to this port, when it just made one (fleet.transports.handoff)
        sock = handoff.take(self.host.address, self.port)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self._login(sock, started, handed_over=True)
                return
            except _NoGreeting:
                pass  # sshd closed it before greeting (LoginGraceTime): reconnect
        left = self.options.connect_timeout - (time.monotonic() - started)
        self._login(self._open_socket(max(0.1, left)), started)

    def _login(self, sock: socket.socket, started: float, handed_over: bool = False) -> None:
        """Log in over ``sock``; the budget counts from ``started``.  ``_NoGreeting`` when a
        handed-over connection ends before sshd's greeting (try a fresh one)."""
        client = paramiko.SSHClient()
        checking = host_key_checking(self.host, self.options)
        if checking:
            self._load_known_hosts(client)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            # The operator opted out (host_key_checking=false), as in Ansible.
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507
        # paramiko gives the banner, the key exchange and authentication each the
        # whole timeout; the watchdog makes --connect-timeout one budget for the login.
        # (A second of grace lets each phase's own timeout give its sharper reason.)
        left = max(0.1, self.options.connect_timeout - (time.monotonic() - started)) + 1.0
        expired = threading.Event()
        watchdog = WATCHDOG.call_later(left, functools.partial(_shut, sock, expired))
        try:
            client.connect(
                self.host.address,
                port=self.port,
                username=self.user,
                sock=sock,
                timeout=self.options.connect_timeout,
                banner_timeout=self.options.connect_timeout,
                auth_timeout=self.options.connect_timeout,
                **self._auth,
            )
        except Exception as exc:
            # paramiko may report "No existing session" when the real cause
            # (e.g. no banner) was saved on the transport.
            cause = getattr(client.get_transport(), "saved_exception", None) or exc
            greeting = getattr(client.get_transport(), "remote_version", None)
            sock.close()
            client.close()
            closed = _closed_by_peer(cause) or _closed_by_peer(exc)
            if handed_over and not greeting and closed and not expired.is_set():
                raise _NoGreeting from exc
            if (
                greeting
                and not isinstance(cause, paramiko.AuthenticationException)
                and ("no existing session" in str(cause).lower() or "banner" in str(cause).lower())
            ):
                raise UnreachableError(
                    f"{self.host.address}:{self.port} greeted ({greeting[:60]}) but the key "
                    f"exchange did not complete within {self.options.connect_timeout:g}s",
                    "a path MTU black hole, or an overloaded sshd",
                ) from exc
            if expired.is_set():
                raise self._login_too_slow() from exc
            raise self._translate(cause) from exc
        finally:
            watchdog.cancel()
        if expired.is_set():  # the login finished just as the budget ran out: socket shut
            client.close()
            raise self._login_too_slow()
        # paramiko's thread wakes at every socket timeout (0.1 s) to notice a
        # close; once logged in nothing else needs it, and at 50 hosts at once
        # those wake-ups were ~0.7 ms of CPU per host and second.  close()
        # shuts the socket down, which wakes the thread at once.
        sock.settimeout(IDLE_WAKEUP)
        self._client, self._sock = client, sock

    def _login_too_slow(self) -> UnreachableError:
        return UnreachableError(
            f"SSH login to {self.host.address}:{self.port} did not complete within "
            f"{self.options.connect_timeout:g}s",
            "host overloaded, or sshd stalls (MaxStartups, slow DNS in sshd: UseDNS)",
        )

    def _load_known_hosts(self, client: paramiko.SSHClient) -> None:
        """Give the client this host's known keys (``known_keys``)."""
        name = self._host_key_name()
        for keytype, key in self.known_keys().items():
            client.get_host_keys().add(name, keytype, key)

    def known_keys(self) -> Mapping[str, paramiko.PKey]:
        """This host's known keys by type: ~/.ssh/known_hosts's, else the inventory's.

        The files are parsed once per process (``known_hosts_index``), not per
        connection: paramiko's own ``load`` is quadratic in the file's lines,
        which made a 1,000-host audit cubic.  As in paramiko, a host named in
        the system file is checked against that file only.
        """
        name = self._host_key_name()
        # No ~/.ssh/known_hosts is fine: then only the inventory's file counts.
        keys: Mapping[str, paramiko.PKey] = {}
        with contextlib.suppress(OSError):
            keys = known_hosts_index(Path("~/.ssh/known_hosts").expanduser()).lookup(name)
        extra = self.host.vars.get("fleet_known_hosts") or self.options.known_hosts
        if extra and not keys:
            path = host_path(self.host, extra)
            try:
                keys = known_hosts_index(path).lookup(name)
            except OSError as exc:
                raise HostKeyError(
                    f"cannot read known_hosts file {path}: {exc.strerror}",
                    "fix fleet_known_hosts, or create the file with ssh-keyscan",
                ) from exc
        return keys

    def _host_key_name(self) -> str:
        """The name paramiko looks the server's key up by: ``addr`` or ``[addr]:port``."""
        return self.host.address if self.port == 22 else f"[{self.host.address}]:{self.port}"

    def _auth_arguments(self) -> dict[str, Any]:
        key, passphrase = key_file(self.host)
        password = self.host.vars.get("ansible_password") or self.host.vars.get("ansible_ssh_pass")
        explicit = bool(key or password)
        args: dict[str, Any] = {
            # A broken agent can hang connect: only consult it when nothing was given.
            "allow_agent": not explicit,
            "look_for_keys": not explicit,
        }
        if key:
            # Read once per process: paramiko would read and parse the file
            # once per key type it tries, on every connection.
            args["pkey"] = private_key(key, passphrase)
        if password:
            args["password"] = str(password)
        return args

    def _open_socket(self, timeout: float | None = None) -> socket.socket:
        try:
            sock = socket.create_connection(
                (self.host.address, self.port), timeout=timeout or self.options.connect_timeout
            )
        except Exception as exc:
            raise self._translate(exc) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _translate(self, exc: BaseException) -> TransportError:
        """paramiko's and the socket layer's errors, in an operator's words."""
        if isinstance(exc, TransportError):
            return exc  # already in an operator's words
        where = f"{self.host.address}:{self.port}"
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(
                f"host key for {where} does not match known_hosts (changed key: "
                "possible man-in-the-middle, or the host was reinstalled)",
                f"verify the new key, then: ssh-keygen -R {_known_hosts_name(self)}",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return AuthenticationError(
                f"authentication refused for user {self.user} on {where}",
                "check ansible_user and ansible_ssh_private_key_file / ansible_password",
            )
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            return HostKeyError(
                f"host key for {where} is unknown (not in known_hosts)",
                f"add it after verifying: ssh-keyscan -p {self.port} {self.host.address} "
                ">> known_hosts (or set host_key_checking=false to opt out)",
            )
        if isinstance(exc, socket.gaierror):
            return UnreachableError(
                f"name {self.host.address} not resolved", "check ansible_host and DNS"
            )
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return UnreachableError(
                f"timed out connecting to {where}", "host down, or port filtered by a firewall"
            )
        if isinstance(exc, ConnectionRefusedError):
            return UnreachableError(
                f"connection refused on {where}", "sshd not running, or wrong ansible_port"
            )
        if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return UnreachableError(
                f"no route to {where} ({exc.strerror})", "host down, or no route to its network"
            )
        if isinstance(exc, paramiko.SSHException):
            message = str(exc) or type(exc).__name__
            # "No existing session": the transport died before authentication,
            # in practice because the banner never came (a race in paramiko).
            if "banner" in message.lower() or "no existing session" in message.lower():
                return UnreachableError(
                    f"no SSH greeting from {where} within {self.options.connect_timeout:g}s",
                    "the port answers but is not sshd, or sshd is overloaded (MaxStartups)",
                )
            return UnreachableError(f"SSH negotiation with {where} failed: {message}")
        if isinstance(exc, OSError):
            return UnreachableError(f"cannot connect to {where}: {exc.strerror or exc}")
        return UnreachableError(f"cannot connect to {where}: {type(exc).__name__}: {exc}")

    # -- running -----------------------------------------------------------

    def run(self, command: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        self.connect()
        assert self._client is not None
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise UnreachableError(f"SSH connection to {self.host.address} was lost")
        try:
            channel = transport.open_session(timeout=timeout)
            channel.exec_command("/bin/sh -s")
            channel.sendall(command.encode())
            channel.shutdown_write()
        except Exception as exc:
            raise TransportError(f"cannot start the command: {exc}") from exc
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
        EOF or a close arrives: no timed polling (it cost ~1 ms of CPU per host
        and second, at fleet scale the biggest client cost after login).
        """
        out = CappedBuffer(self.options.max_output)
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


def _read_buffered(channel: paramiko.Channel, out: CappedBuffer, err: CappedBuffer) -> None:
    """Whatever stdout and stderr the channel holds now (stderr too, lest its window fill)."""
    while channel.recv_stderr_ready():
        err.write(channel.recv_stderr(65536))
    while channel.recv_ready():
        out.write(channel.recv(65536))


@dataclass(frozen=True)
class KnownHostsIndex:
    """One known_hosts file, parsed once: keys by host name; hashed names kept apart."""

    plain: Mapping[str, Mapping[str, paramiko.PKey]]
    hashed: tuple[tuple[str, paramiko.PKey], ...] = ()

    @classmethod
    def parse(cls, path: Path) -> KnownHostsIndex:
        plain: dict[str, dict[str, paramiko.PKey]] = {}
        hashed: list[tuple[str, paramiko.PKey]] = []
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
                except paramiko.SSHException:
                    continue  # a line paramiko cannot read (as paramiko's own load)
                if entry is None or entry.key is None:
                    continue
                for name in entry.hostnames:
                    if name.startswith("|1|"):
                        hashed.append((name, entry.key))
                    else:  # the first line naming a host and key type wins, as in paramiko
                        plain.setdefault(name, {}).setdefault(entry.key.get_name(), entry.key)
        return cls(plain, tuple(hashed))

    def lookup(self, name: str) -> Mapping[str, paramiko.PKey]:
        """The keys (by key type) this file holds for ``name``."""
        found = dict(self.plain.get(name, {}))
        for hashed_name, key in self.hashed:
            if key.get_name() not in found and hmac.compare_digest(
                paramiko.HostKeys.hash_host(name, hashed_name), hashed_name
            ):
                found[key.get_name()] = key
        return found


_INDEXES: dict[Path, tuple[tuple[int, int, int], KnownHostsIndex]] = {}
_INDEXES_LOCK = threading.Lock()


def known_hosts_index(path: Path) -> KnownHostsIndex:
    """The parsed file, re-read only when it changed (inode, size, mtime); OSError if unreadable."""
    info = path.stat()
    stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
    # One lock: when 50 workers start at once, one parses and the others wait for it.
    with _INDEXES_LOCK:
        cached = _INDEXES.get(path)
        if cached is None or cached[0] != stamp:
            cached = _INDEXES[path] = (stamp, KnownHostsIndex.parse(path))
        return cached[1]


_KEYS: dict[tuple[Path, tuple[int, int, int], str], paramiko.PKey] = {}
_KEYS_LOCK = threading.Lock()
CERT_SUFFIX = "-cert.pub"


def private_key(path: Path, passphrase: str | None) -> paramiko.PKey:
    """The private key at ``path`` (with ``<path>-cert.pub`` when present, as paramiko does).

    Parsed once per process and file version.  Raises OSError (unreadable),
    paramiko's SSHException (not a key) or AuthenticationError (wrong or
    missing passphrase).
    """
    info = path.stat()
    # The passphrase is part of the key, as a digest: a wrong one must still fail.
    secret = hashlib.sha256((passphrase or "").encode()).hexdigest()
    index = (path, (info.st_ino, info.st_size, info.st_mtime_ns), secret)
    with _KEYS_LOCK:
        key = _KEYS.get(index)
        if key is None:
            try:
                # cryptography wants bytes here, whatever paramiko's annotation says.
                secret_bytes = passphrase.encode() if passphrase else None
                key = paramiko.PKey.from_path(path, secret_bytes)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:  # cryptography's words for a bad passphrase
                raise AuthenticationError(
                    f"cannot use the private key {path}: {exc}",
                    "check ansible_ssh_private_key_passphrase",
                ) from exc
            cert = path.with_name(path.name + CERT_SUFFIX)
            if cert.is_file():
                key.load_certificate(str(cert))
            _KEYS[index] = key
        return key


class _NoGreeting(Exception):
    """A handed-over connection was closed by the host before sshd said a word."""


def _closed_by_peer(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what it was raised from) is the peer closing or resetting the
    connection; a silent peer (a timeout) is not: a second try would only wait again."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _shut(sock: socket.socket, expired: threading.Event) -> None:
    """Wake whoever is blocked on ``sock``: the login took too long."""
    expired.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _known_hosts_name(transport: SSHTransport) -> str:
    if transport.port == 22:
        return transport.host.address
    return f"'[{transport.host.address}]:{transport.port}'"
