"""What the two SSH transports share; neither SSH library is imported here.

(Over 500 lines: the one seam both transports share, kept whole rather than split thin.)

``ssh`` (libssh2, fleet.transports.libssh2) and ``paramiko``
(fleet.transports.paramiko_ssh) are siblings over this module: each speaks
the protocol with its own library, and takes from here the inventory's
settings (``SshSettings``), the credentials (``Credentials``, keys read with
cryptography), the known_hosts index and host-key policy, the login's
skeleton (reach's handed-over connection, then a fresh one) and the words an
operator reads when a login fails, each error with its cause.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import hmac
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet import causes
from fleet.errors import (
    AuthenticationError,
    ConfigError,
    HostKeyError,
    TransportError,
    UnreachableError,
)
from fleet.plan import HostPlan, RunOptions
from fleet.text import safe_text
from fleet.transports import jump, sshconfig
from fleet.transports.base import AuditContext
from fleet.transports.handoff import Handoff, give_up
from fleet.truth import as_bool

STDERR_CAP = 64 * 1024
CERT_SUFFIX = "-cert.pub"
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
HOST_KEY_CHECKING_VARS = ("ansible_host_key_checking", "ansible_ssh_host_key_checking")


# -- settings --------------------------------------------------------------


def _flag(host: HostPlan, name: str, value: Any) -> bool:
    try:
        return as_bool(value, name)
    except ValueError as exc:
        raise ConfigError(f"host {host.name}: {exc}") from None


def _host_key_checking(host: HostPlan, run_wide: bool) -> bool:
    """Ansible's switches: the run's (``run_wide``), then the host's variables; any of
    them off turns checking off (each is read, so a bad value is always an error)."""
    switches = [(name, host.vars.get(name)) for name in HOST_KEY_CHECKING_VARS]
    read = [_flag(host, name, value) for name, value in switches if value not in (None, "")]
    return run_wide and all(read)


def _run_wide_host_key_checking(host: HostPlan, options: RunOptions) -> bool:
    """The option and ANSIBLE_HOST_KEY_CHECKING: what also holds for jump hosts, which a
    target's own opt-outs (its variables, its -o StrictHostKeyChecking=no, its ssh_config
    block) never reach, as in OpenSSH, where each hop is checked on its own terms."""
    value = os.environ.get("ANSIBLE_HOST_KEY_CHECKING")
    checked = value in (None, "") or _flag(host, "ANSIBLE_HOST_KEY_CHECKING", value)
    return options.host_key_checking and checked


def host_path(host: HostPlan, value: Any) -> Path:
    """A path from the inventory: ``~`` expanded, relative to the inventory directory."""
    path = Path(str(value)).expanduser()
    if not path.is_absolute():
        base = host.vars.get("inventory_dir")
        if base:
            path = Path(str(base)) / path
    return path


@dataclass(frozen=True)
class SshSettings:
    """How to log in to one host over SSH, read once from its inventory variables
    (and what ssh_config and ssh's arguments add: fleet.transports.sshconfig)."""

    host: str  # the inventory name (a jump host's: its name in ProxyJump)
    address: str
    port: int
    user: str
    key_file: Path | None
    passphrase: str | None = field(repr=False)
    password: str | None = field(repr=False)
    host_key_checking: bool
    known_hosts: Path | None  # the inventory's file (fleet_known_hosts, --known-hosts)
    connect_timeout: float
    max_output: int
    inventory_file: str | None = None
    via: SshSettings | None = None  # the jump host (ProxyJump's last hop) the login goes through
    proxy_command: str | None = None  # ssh_config's ProxyCommand, tokens expanded
    ignored: tuple[str, ...] = ()  # ssh options and ssh_config lines fleet does not honour

    @staticmethod
    def login_port(host: HostPlan, ssh: sshconfig.SshOptions | None = None) -> int:
        """The inventory's port, else ssh_config's (``ssh``: already read), else 22."""
        value = host.port or host.vars.get("ansible_ssh_port")
        if not value:
            return (ssh or sshconfig.host_options(host)[0]).port or 22
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"host {host.name}: ansible_ssh_port={value!r} is not a port number"
            ) from None

    @classmethod
    def from_host(cls, host: HostPlan, options: RunOptions) -> SshSettings:
        """``host``'s settings; ConfigError names a malformed variable.  The inventory's
        user, port and key win over ssh_config's, which fills what the inventory leaves
        unset (as with Ansible, which passes them to ssh as ``-o`` options)."""
        v = host.vars
        ssh, config_file = sshconfig.host_options(host)
        address = sshconfig.login_address(host.address, ssh)
        user = host.user or ssh.user or os.environ.get("USER") or "root"
        key = v.get("ansible_ssh_private_key_file") or v.get("ansible_private_key_file")
        passphrase = v.get("ansible_ssh_private_key_passphrase")
        password = v.get("ansible_password") or v.get("ansible_ssh_pass")
        known_hosts = v.get("fleet_known_hosts") or options.known_hosts
        key_path = host_path(host, key) if key else None
        key_path = key_path or sshconfig.config_path(ssh.identity_file, address, user)
        known_path = host_path(host, known_hosts) if known_hosts else None
        known_path = known_path or sshconfig.config_path(ssh.known_hosts_file, address, user)
        inventory_file = v.get("inventory_file")
        run_wide = _run_wide_host_key_checking(host, options)
        settings = cls(
            host=host.name,
            address=address,
            port=cls.login_port(host, ssh),
            user=user,
            key_file=key_path,
            passphrase=str(passphrase) if passphrase else None,
            password=str(password) if password else None,
            host_key_checking=_host_key_checking(host, run_wide) and ssh.checks_host_keys,
            known_hosts=known_path,
            connect_timeout=options.connect_timeout,
            max_output=options.max_output,
            inventory_file=str(inventory_file) if inventory_file else None,
            ignored=ssh.ignored,
        )
        try:
            return sshconfig.with_proxy(settings, ssh, config_file, hops_checked=run_wide)
        except ConfigError as exc:
            raise ConfigError(f"host {host.name}: {exc}", path=inventory_file) from None

    @property
    def bastion(self) -> str | None:
        """The jump host the login goes through (the last hop's name), if any."""
        return self.via.host if self.via is not None else None

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def host_key_name(self) -> str:
        """The name known_hosts files record the host under: ``addr`` or ``[addr]:port``."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


# -- credentials -----------------------------------------------------------


@dataclass(frozen=True)
class PrivateKey:
    """The inventory's private key, read and (with its passphrase) unlocked once per audit."""

    path: Path
    algorithm: str  # the key's SSH name: ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256...
    encrypted: bool  # the file needs the passphrase
    unlocked: bytes = field(repr=False)  # the key without passphrase (OpenSSH PEM), in memory
    certificate: Path | None = None  # <key>-cert.pub beside it, offered with the key


@dataclass(frozen=True)
class Credentials:
    """What a login offers: the inventory's key and password; with neither, the
    agent and ~/.ssh's keys (the SSH library's defaults)."""

    key: PrivateKey | None
    password: str | None = field(repr=False)

    @property
    def explicit(self) -> bool:
        return self.key is not None or self.password is not None


def credentials(settings: SshSettings, context: AuditContext) -> Credentials:
    """``settings``' credentials, the key file read once per audit.  A missing key file
    or a wrong passphrase is the inventory's fault: ConfigError, before any login."""
    key = None
    if settings.key_file is not None:
        path, passphrase = settings.key_file, settings.passphrase
        secret = hashlib.sha256((passphrase or "").encode()).hexdigest()
        try:
            key = context.memo(("private key", path, secret), lambda: _read_key(path, passphrase))
        except (OSError, ValueError, TypeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ConfigError(
                f"host {settings.host}: private key {path} cannot be used: {reason} "
                "(check ansible_ssh_private_key_file and its passphrase)",
                path=settings.inventory_file,
            ) from exc
    return Credentials(key, settings.password)


def _read_key(path: Path, passphrase: str | None) -> PrivateKey:
    """Read and unlock the key at ``path``; the key's KDF (bcrypt for OpenSSH keys) runs
    here, once, rather than in the SSH library at every login."""
    from cryptography.hazmat.primitives import serialization as ser

    data = path.read_bytes()
    load = ser.load_ssh_private_key if b"OPENSSH PRIVATE KEY" in data else ser.load_pem_private_key
    try:
        key: Any = load(data, None)
        encrypted = False
    except TypeError as exc:  # "password-protected, but password was not provided"
        if not passphrase:
            raise ValueError(
                "the key is encrypted and no passphrase is set (ansible_ssh_private_key_passphrase)"
            ) from exc
        try:
            key, encrypted = load(data, passphrase.encode()), True
        except ValueError as wrong:  # cryptography: "Incorrect password", "broken checksum"
            raise ValueError(
                "wrong passphrase: ansible_ssh_private_key_passphrase does not decrypt it"
            ) from wrong
    algorithm = key.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH)
    unlocked = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption())
    cert = path.with_name(path.name + CERT_SUFFIX)
    return PrivateKey(
        path=path,
        algorithm=algorithm.split()[0].decode(),
        encrypted=encrypted,
        unlocked=unlocked,
        certificate=cert if cert.is_file() else None,
    )


# -- known_hosts -----------------------------------------------------------


@dataclass(frozen=True)
class KnownHostsIndex:
    """One known_hosts file, parsed once: key blobs by host name and key type.

    Hashed names (``|1|salt|hash``) are kept apart and matched by HMAC.  As
    in OpenSSH and paramiko, the first line naming a host and key type wins;
    lines that cannot be read are skipped, as are ``@cert-authority`` and
    ``@revoked`` lines (fleet does not read host certificates).
    """

    plain: Mapping[str, Mapping[str, bytes]]
    hashed: tuple[tuple[bytes, bytes, str, bytes], ...] = ()  # (salt, digest, type, blob)

    @classmethod
    def parse(cls, path: Path) -> KnownHostsIndex:
        plain: dict[str, dict[str, bytes]] = {}
        hashed: list[tuple[bytes, bytes, str, bytes]] = []
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) < 3 or fields[0].startswith(("#", "@")):
                    continue
                names, keytype, encoded = fields[:3]
                try:
                    blob = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    continue
                for name in names.split(","):
                    if name.startswith("|1|"):
                        with contextlib.suppress(binascii.Error, ValueError):
                            _, _, salt, digest = name.split("|")
                            hashed.append(
                                (base64.b64decode(salt), base64.b64decode(digest), keytype, blob)
                            )
                    else:
                        plain.setdefault(name, {}).setdefault(keytype, blob)
        return cls(plain, tuple(hashed))

    def lookup(self, name: str) -> dict[str, bytes]:
        """The key blobs (by key type) this file holds for ``name``."""
        found = dict(self.plain.get(name, {}))
        for salt, digest, keytype, blob in self.hashed:
            if keytype not in found and hmac.compare_digest(
                hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest
            ):
                found[keytype] = blob
        return found


def known_hosts_index(context: AuditContext, path: Path) -> KnownHostsIndex:
    """The file at ``path``, parsed once per audit; OSError if it cannot be read."""
    return context.memo(("known_hosts", path), lambda: KnownHostsIndex.parse(path))


def known_keys(settings: SshSettings, context: AuditContext) -> dict[str, bytes]:
    """The host's known key blobs by type: ~/.ssh/known_hosts's, else the inventory's file's.

    As in paramiko, a host named in the user's file is checked against that file only.
    """
    name = settings.host_key_name
    user_file = Path(USER_KNOWN_HOSTS).expanduser()
    # No ~/.ssh/known_hosts is fine: then only the inventory's file counts.
    user = context.memo(("user known_hosts", user_file), lambda: _parse_if_there(user_file))
    keys = user.lookup(name) if user is not None else {}
    if settings.known_hosts is not None and not keys:
        try:
            keys = known_hosts_index(context, settings.known_hosts).lookup(name)
        except OSError as exc:
            raise HostKeyError(
                f"cannot read known_hosts file {settings.known_hosts}: {exc.strerror}",
                "fix fleet_known_hosts, or create the file with ssh-keyscan",
                cause=causes.CONFIG_MISSING,
            ) from exc
    return keys


def _parse_if_there(path: Path) -> KnownHostsIndex | None:
    try:
        return KnownHostsIndex.parse(path)
    except OSError:
        return None


# -- the login's skeleton --------------------------------------------------

# Log in over ``sock``; the budget counts from ``started``; ``handed_over`` when the
# socket is reach's (then ``NoGreeting`` asks for a fresh connection).
Login = Callable[[socket.socket, float, bool], None]


class NoGreeting(Exception):
    """A handed-over connection was closed by the host before sshd said a word."""


def log_in(settings: SshSettings, handoff: Handoff | None, login: Login) -> None:
    """``login`` over reach's connection when it is fresh, else (or when sshd dropped it
    before greeting: LoginGraceTime) over a new one; one connect budget for both."""
    started = time.monotonic()
    sock = handoff.take(settings.address, settings.port) if handoff is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            login(sock, started, True)
            return
        except NoGreeting:
            pass
    left = settings.connect_timeout - (time.monotonic() - started)
    login(open_socket(settings, max(0.1, left)), started, False)


def open_socket(settings: SshSettings, timeout: float) -> socket.socket:
    """A TCP connection to the host, with TCP_NODELAY (each exec would wait on Nagle)."""
    try:
        sock = socket.create_connection((settings.address, settings.port), timeout=timeout)
    except OSError as exc:
        raise translate(exc, settings) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def shut(sock: socket.socket, expired: threading.Event) -> None:
    """Wake whoever is blocked on ``sock``: the login took too long (the watchdog's action)."""
    expired.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def closed_by_peer(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what it was raised from) is the peer closing or resetting the
    connection; a silent peer (a timeout) is not: a second try would only wait again."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class SshTransport:
    """What both SSH transports do alike: read the host's settings and credentials when
    built (a bad key file is a ConfigError before any host is contacted), and log in
    through ``log_in``, or through a jump host or ProxyCommand (fleet.transports.jump).
    Each library's transport supplies ``_login``, ``connected`` and ``tunnel``."""

    shell = "sh"
    login_port = staticmethod(SshSettings.login_port)

    @staticmethod
    def login_address(host: HostPlan) -> str:
        """ssh_config's HostName for the name ssh is given, else that name."""
        return sshconfig.login_address(host.address, sshconfig.host_options(host)[0])

    @staticmethod
    def login_proxy(host: HostPlan) -> str | None:
        """The jump host (ProxyJump's last hop) or "ProxyCommand" the login goes through."""
        ssh = sshconfig.host_options(host)[0]
        if ssh.proxy_command and ssh.proxy_command.lower() != "none":
            return "ProxyCommand"
        hops = ssh.jumps()
        return hops[-1].host if hops else None

    def __init__(
        self,
        host: HostPlan | None,
        options: RunOptions | None,
        context: AuditContext | None = None,
        settings: SshSettings | None = None,
    ) -> None:
        self.host = host
        if settings is None:
            assert host is not None and options is not None
            settings = SshSettings.from_host(host, options)
        self.settings = settings
        self.port: int | None = self.settings.port
        self._context = context or AuditContext()
        self._credentials = credentials(self.settings, self._context)
        if settings.via is not None:  # the jump hosts' key files are read now too
            self.for_jump(settings.via, self._context)

    @classmethod
    def for_jump(cls, settings: SshSettings, context: AuditContext) -> Any:
        """The audit's shared connection to the jump host ``settings`` (not yet logged in)."""
        return jump.bastion(context, settings, cls, lambda: cls(None, None, context, settings))

    @property
    def connected(self) -> bool:
        raise NotImplementedError

    def _login(self, sock: Any, started: float, handed_over: bool) -> None:
        raise NotImplementedError

    def tunnel(self, address: str, port: int, timeout: float, done: Callable[[], None]) -> Any:
        """A connection to ``address:port`` through this (logged-in) host."""
        raise NotImplementedError

    def connect(self, handoff: Handoff | None = None) -> None:
        s = self.settings
        if self.connected:
            give_up(handoff)
        elif s.via is None and s.proxy_command is None:
            log_in(s, handoff, self._login)
        else:
            give_up(handoff)  # reach does not probe a host behind a proxy
            if s.proxy_command is not None or s.via is None:
                sock = jump.proxy_socket(s.proxy_command or "")
            else:
                bastion = self.for_jump(s.via, self._context)
                sock = bastion.open(s.address, s.port, s.connect_timeout, jump.CHANNEL_WAIT)
            self._login(sock, time.monotonic(), False)


# -- what an operator reads ------------------------------------------------


def host_key_unknown(s: SshSettings) -> HostKeyError:
    return HostKeyError(
        f"host key for {s.where} is unknown (not in known_hosts)",
        f"add it after verifying: ssh-keyscan -p {s.port} {s.address} "
        ">> known_hosts (or set host_key_checking=false to opt out)",
        cause=causes.HOST_KEY_UNKNOWN,
    )


def host_key_changed(s: SshSettings) -> HostKeyError:
    name = s.address if s.port == 22 else f"'[{s.address}]:{s.port}'"
    return HostKeyError(
        f"host key for {s.where} does not match known_hosts (changed key: "
        "possible man-in-the-middle, or the host was reinstalled)",
        f"verify the new key, then: ssh-keygen -R {name}",
        cause=causes.HOST_KEY_CHANGED,
    )


def auth_refused(s: SshSettings) -> AuthenticationError:
    return AuthenticationError(
        f"authentication refused for user {s.user} on {s.where}",
        "check ansible_user and ansible_ssh_private_key_file / ansible_password",
        cause=causes.AUTH_REFUSED,
    )


def _login_timeout(s: SshSettings, what: str, hint: str) -> UnreachableError:
    """``what`` did not happen within the login's budget (--connect-timeout)."""
    return UnreachableError(
        f"{what} within {s.connect_timeout:g}s", hint, cause=causes.LOGIN_TIMEOUT
    )


def no_greeting(s: SshSettings) -> UnreachableError:
    hint = "the port answers but is not sshd, or sshd is overloaded (MaxStartups)"
    return _login_timeout(s, f"no SSH greeting from {s.where}", hint)


def stalled(s: SshSettings, phase: str, greeting: str = "") -> UnreachableError:
    said = f" ({safe_text(greeting, 60)})" if greeting else ""
    what = f"{s.where} greeted{said} but the {phase} did not complete"
    return _login_timeout(s, what, "a path MTU black hole, or an overloaded sshd")


def login_too_slow(s: SshSettings) -> UnreachableError:
    hint = "host overloaded, or sshd stalls (MaxStartups, slow DNS in sshd: UseDNS)"
    return _login_timeout(s, f"SSH login to {s.where} did not complete", hint)


def closed_early(s: SshSettings, reason: str = "") -> UnreachableError:
    """The host closed the connection before its greeting (or, with ``reason``, the login)."""
    what = f"the SSH login completed ({safe_text(reason, 200)})" if reason else "its SSH greeting"
    return UnreachableError(
        f"{s.where} closed the connection before {what}",
        "sshd refused this client (MaxStartups, a TCP wrapper, AllowUsers)",
        cause=causes.PROTOCOL_ERROR,
    )


def negotiation_failed(s: SshSettings, reason: str) -> UnreachableError:
    return UnreachableError(
        f"SSH negotiation with {s.where} failed: {safe_text(reason, 200)}",
        cause=causes.PROTOCOL_ERROR,
    )


def translate(exc: BaseException, s: SshSettings) -> TransportError:
    """The socket layer's errors (and anything unforeseen), in an operator's words."""
    if isinstance(exc, TransportError):
        return exc  # already in an operator's words
    if isinstance(exc, socket.gaierror):
        return UnreachableError(
            f"name {s.address} not resolved",
            "check ansible_host and DNS",
            cause=causes.NAME_UNRESOLVED,
        )
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return UnreachableError(
            f"timed out connecting to {s.where}",
            "host down, or port filtered by a firewall",
            cause=causes.CONNECT_TIMEOUT,
        )
    if isinstance(exc, ConnectionRefusedError):
        return UnreachableError(
            f"connection refused on {s.where}",
            "sshd not running, or wrong ansible_port",
            cause=causes.CONNECT_REFUSED,
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return UnreachableError(
            f"no route to {s.where} ({exc.strerror})",
            "host down, or no route to its network",
            cause=causes.HOST_UNREACHABLE,
        )
    if isinstance(exc, OSError):
        return UnreachableError(
            f"cannot connect to {s.where}: {exc.strerror or exc}", cause=causes.TRANSPORT_ERROR
        )
    return UnreachableError(
        f"cannot connect to {s.where}: {type(exc).__name__}: {safe_text(exc, 200)}",
        cause=causes.TRANSPORT_ERROR,
    )
