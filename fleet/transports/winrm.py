"""Run one PowerShell script on a Windows host over WinRM (pywinrm), under a hard deadline.

Configured by Ansible's inventory variables (``ansible_winrm_*``) so an
inventory written for Ansible works unchanged, with safer defaults:

* HTTPS (5986) with certificate validation unless told otherwise;
* NTLM over plain HTTP only with message encryption;
* Basic over plain HTTP refused unless ``fleet_winrm_allow_insecure_basic``.

One ``Protocol`` and one shell per transport instance, i.e. per host per
audit (pywinrm's sessions are not thread-safe: pywinrm #277).  The script
runs as ``powershell.exe -NoProfile -NonInteractive -EncodedCommand ...``
straight from WinRS (no cmd.exe and its 8,191-character line); a script too
long for a Windows command line travels on stdin instead.

pywinrm retries WinRM operation timeouts forever, so the receive loop is
ours: each Receive asks the host to answer within what is left of the
deadline, and past the deadline the command is signalled to stop and
``CommandTimeout`` raised.  Library errors are translated here; the password
never appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import ipaddress
import logging
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from fleet.errors import (
    AuthenticationError,
    CommandTimeout,
    ConfigError,
    FleetError,
    HostKeyError,
    TransportError,
    UnreachableError,
)
from fleet.model import CommandResult
from fleet.plan import HostPlan, RunOptions

log = logging.getLogger(__name__)

POWERSHELL = "powershell.exe"
POWERSHELL_ARGS = ("-NoProfile", "-NonInteractive")
# CreateProcess takes at most 32,767 characters; keep a margin for WinRS's quoting.
MAX_COMMAND_LINE = 32_000
# Bytes of script per Send: a Send envelope must stay under WinRM's
# MaxEnvelopeSize (150 KiB) after two rounds of base64.
STDIN_CHUNK = 48 * 1024
# Bytes kept from stderr: enough for any error a script prints.
STDERR_CAP = 256 * 1024
# Seconds a Signal may take once the deadline has passed: cleanup must not
# stretch the deadline by a whole read timeout.
CLEANUP_TIMEOUT = 5
# Seconds a reply may take beyond the time the host was given (network, TLS).
REPLY_GRACE = 3
# UTF-8 code page: WinRS starts shells in 437, which garbles non-ASCII output.
UTF8_CODEPAGE = 65001

# Reads the real script from stdin as base64 of UTF-8 (so the console code
# page cannot touch it) and runs it.  ``$input`` is how Ansible's bootstrap
# wrapper reads stdin too; ``-Command -`` would run stdin line by line and
# break multi-line statements.  PowerShell 2.0 compatible.
STDIN_BOOTSTRAP = (
    "$fleet_b64 = ($input | Out-String)\n"
    "$fleet_script = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($fleet_b64))\n"
    "& ([ScriptBlock]::Create($fleet_script))\n"
    "exit $LASTEXITCODE\n"
)

DEFAULT_OPERATION_TIMEOUT = 20  # Ansible's and pywinrm's defaults
DEFAULT_READ_TIMEOUT = 30
SCHEMES = ("http", "https")
# Ansible's ansible_winrm_transport values -> pywinrm's transport names.
AUTH_METHODS = {
    "ntlm": "ntlm",
    "kerberos": "kerberos",
    "credssp": "credssp",
    "basic": "basic",
    "plaintext": "plaintext",
    "ssl": "ssl",
    "certificate": "certificate",
}
# Methods that send the password as-is (Basic): only ever inside TLS.
CLEARTEXT_AUTH = frozenset({"basic", "plaintext", "ssl"})
# Methods that can seal each message over plain HTTP.
SEALING_AUTH = frozenset({"ntlm", "kerberos", "credssp"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})


# --------------------------------------------------------------------------
# The invocation: what powershell.exe is asked to run


def _encoded(script: str) -> str:
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def encode_invocation(script: str) -> tuple[str, list[str], bytes | None]:
    """How to start ``script``: ``(command, arguments, stdin or None)``.

    The script goes in ``-EncodedCommand`` (base64 of UTF-16LE) when the
    command line fits; otherwise a small bootstrap goes there and the script
    follows on stdin as base64 of UTF-8.
    """
    args = [*POWERSHELL_ARGS, "-EncodedCommand", _encoded(script)]
    if len(" ".join([POWERSHELL, *args])) <= MAX_COMMAND_LINE:
        return POWERSHELL, args, None
    bootstrap = [*POWERSHELL_ARGS, "-EncodedCommand", _encoded(STDIN_BOOTSTRAP)]
    return POWERSHELL, bootstrap, base64.b64encode(script.encode("utf-8"))


def _is_powershell(command: str) -> bool:
    name = command.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return name in ("powershell", "powershell.exe", "pwsh", "pwsh.exe")


def _parameter_value(args: Sequence[str], full_name: str, shortest: int) -> str | None:
    """The value after a PowerShell parameter given by any unambiguous prefix (``-enc``)."""
    for i, arg in enumerate(args[:-1]):
        if not arg.startswith(("-", "/")):
            continue
        name = arg[1:].lower()
        if len(name) >= shortest and full_name.startswith(name):
            return args[i + 1]
    return None


def reads_stdin(command: str, args: Sequence[str]) -> bool:
    """Whether this invocation takes its script from stdin (the process waits for it to close)."""
    if not _is_powershell(command):
        return False
    words = [word for arg in args for word in arg.split()]
    encoded = _parameter_value(words, "encodedcommand", 1)
    if encoded is not None:
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            return base64.b64decode(encoded, validate=True).decode("utf-16-le") == STDIN_BOOTSTRAP
        return False
    return _parameter_value(words, "command", 1) == "-"


def decode_invocation(command: str, args: Sequence[str], stdin: bytes | None) -> str:
    """The PowerShell script that ``command args`` (with ``stdin``) would run.

    The inverse of ``encode_invocation``; also reads ``-Command -`` (script
    on stdin as text) and ``-Command <words>``.  ``args`` may hold several
    arguments per item (WinRS sends them space-joined).  Raises ValueError
    for anything else.
    """
    if not _is_powershell(command):
        raise ValueError(f"not a PowerShell invocation: {command!r}")
    words = [word for arg in args for word in arg.split()]
    encoded = _parameter_value(words, "encodedcommand", 1)
    if encoded is not None:
        try:
            script = base64.b64decode(encoded, validate=True).decode("utf-16-le")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"-EncodedCommand is not base64 of UTF-16LE: {exc}") from exc
        if script != STDIN_BOOTSTRAP:
            return script
        try:
            return base64.b64decode(b"".join((stdin or b"").split())).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"stdin is not base64 of UTF-8: {exc}") from exc
    inline = _parameter_value(words, "command", 1)
    if inline == "-":
        return (stdin or b"").decode("utf-8", errors="replace")
    if inline is not None:
        start = words.index(inline)
        return " ".join(words[start:])
    raise ValueError("neither -EncodedCommand nor -Command in the arguments")


# --------------------------------------------------------------------------
# Settings from the inventory


@dataclass(frozen=True)
class WinRMSettings:
    """How to reach one host, read from its Ansible variables."""

    host: str
    address: str
    scheme: str
    port: int
    path: str
    auth: str  # pywinrm's transport name
    user: str | None
    password: str | None = field(repr=False)
    server_cert_validation: str = "validate"
    ca_trust_path: str | None = None
    cert_pem: str | None = None
    cert_key_pem: str | None = None
    operation_timeout: int = DEFAULT_OPERATION_TIMEOUT
    read_timeout: int = DEFAULT_READ_TIMEOUT
    connect_timeout: float = 10.0
    message_encryption: str = "auto"
    allow_insecure_basic: bool = False
    proxy: str | None = None

    @property
    def endpoint(self) -> str:
        host = self.address
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def where(self) -> str:
        """``address:port`` for messages."""
        return f"{self.address}:{self.port}"


def _var(vars_: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = vars_.get(name)
        if value is not None and value != "":
            return value
    return None


def _choice(host: str, name: str, value: Any, allowed: Sequence[str], default: str) -> str:
    if value is None:
        return default
    text = str(value).strip().lower()
    if text not in allowed:
        raise ConfigError(f"host {host}: {name}={value!r} is not one of {', '.join(allowed)}")
    return text


def _seconds(host: str, name: str, value: Any, default: int) -> int:
    if value is None:
        return default
    try:
        seconds = int(float(value))
    except (TypeError, ValueError):
        raise ConfigError(f"host {host}: {name}={value!r} is not a number of seconds") from None
    if seconds < 1:
        raise ConfigError(f"host {host}: {name}={value!r} must be at least 1 second")
    return seconds


def _auth_method(host: str, value: Any) -> str:
    # Ansible accepts a list (tried in order); pywinrm takes one: the first.
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    elif isinstance(value, str) and "," in value:
        value = value.split(",")[0]
    # NTLM is on by default on every Windows listener, Basic is not: a safer
    # default than Ansible's ("ssl", i.e. Basic over TLS).
    return AUTH_METHODS[
        _choice(host, "ansible_winrm_transport", value, tuple(AUTH_METHODS), "ntlm")
    ]


def _scheme(host: HostPlan) -> str:
    value = _var(host.vars, "ansible_winrm_scheme")
    # As Ansible: without a scheme, port 5985 means http and anything else https.
    default = "http" if host.port is not None and int(host.port) == 5985 else "https"
    return _choice(host.name, "ansible_winrm_scheme", value, SCHEMES, default)


def _is_true(value: Any) -> bool:
    return str(value).strip().lower() in TRUE_WORDS if value is not None else False


def settings_for(host: HostPlan, options: RunOptions) -> WinRMSettings:
    """Read ``host``'s WinRM settings; ConfigError names a malformed variable."""
    v = host.vars
    scheme = _scheme(host)
    port = int(host.port) if host.port else (5985 if scheme == "http" else 5986)
    operation = _seconds(
        host.name,
        "ansible_winrm_operation_timeout_sec",
        _var(v, "ansible_winrm_operation_timeout_sec"),
        DEFAULT_OPERATION_TIMEOUT,
    )
    read = _seconds(
        host.name,
        "ansible_winrm_read_timeout_sec",
        _var(v, "ansible_winrm_read_timeout_sec"),
        max(DEFAULT_READ_TIMEOUT, operation + 10),
    )
    if read <= operation:
        raise ConfigError(
            f"host {host.name}: ansible_winrm_read_timeout_sec ({read}) must exceed "
            f"ansible_winrm_operation_timeout_sec ({operation})"
        )
    path = str(_var(v, "ansible_winrm_path") or "/wsman")
    return WinRMSettings(
        host=host.name,
        address=host.address,
        scheme=scheme,
        port=port,
        path=path if path.startswith("/") else f"/{path}",
        auth=_auth_method(host.name, _var(v, "ansible_winrm_transport")),
        user=_var(v, "ansible_user", "ansible_winrm_user") or host.user,
        password=_var(v, "ansible_password", "ansible_winrm_password", "ansible_winrm_pass"),
        server_cert_validation=_choice(
            host.name,
            "ansible_winrm_server_cert_validation",
            _var(v, "ansible_winrm_server_cert_validation"),
            ("validate", "ignore"),
            "validate",
        ),
        ca_trust_path=_var(v, "ansible_winrm_ca_trust_path"),
        cert_pem=_var(v, "ansible_winrm_cert_pem"),
        cert_key_pem=_var(v, "ansible_winrm_cert_key_pem"),
        operation_timeout=operation,
        read_timeout=read,
        connect_timeout=options.connect_timeout,
        message_encryption=_choice(
            host.name,
            "ansible_winrm_message_encryption",
            _var(v, "ansible_winrm_message_encryption"),
            ("auto", "always", "never"),
            "auto",
        ),
        allow_insecure_basic=_is_true(_var(v, "fleet_winrm_allow_insecure_basic")),
        proxy=_var(v, "ansible_winrm_proxy"),
    )


def refusal(settings: WinRMSettings) -> UnreachableError | None:
    """Why these settings would put the password or the traffic in clear text, if they would."""
    if settings.scheme == "https":
        return None
    if settings.auth in CLEARTEXT_AUTH and not settings.allow_insecure_basic:
        return UnreachableError(
            f"refused to send Basic credentials over plain HTTP to {settings.where}",
            "use ansible_winrm_scheme=https (port 5986) or ansible_winrm_transport=ntlm; "
            "set fleet_winrm_allow_insecure_basic=true only for a lab",
        )
    if settings.auth == "certificate":
        return UnreachableError(
            f"certificate authentication needs HTTPS, not plain HTTP to {settings.where}",
            "set ansible_winrm_scheme=https (port 5986)",
        )
    if settings.auth in SEALING_AUTH and settings.message_encryption == "never":
        return UnreachableError(
            f"refused unencrypted WinRM over plain HTTP to {settings.where}",
            "remove ansible_winrm_message_encryption=never, or use ansible_winrm_scheme=https",
        )
    return None


def _message_encryption(settings: WinRMSettings) -> str:
    # Over plain HTTP the messages must be sealed: "always" makes pywinrm fail
    # rather than quietly fall back to clear text.
    if settings.scheme == "http" and settings.auth in SEALING_AUTH:
        return "always"
    return settings.message_encryption


def _ca_trust_path(settings: WinRMSettings) -> str:
    # Unset: pywinrm's "legacy_requests" (REQUESTS_CA_BUNDLE, else certifi), as Ansible does.
    return settings.ca_trust_path or "legacy_requests"


# --------------------------------------------------------------------------
# Errors: pywinrm, requests and socket -> fleet


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "********")
    return text


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and all behind it: chained exceptions, urllib3's ``reason``, exception args."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        behind = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        behind += list(getattr(current, "args", ()))
        todo += [b for b in behind if isinstance(b, BaseException)]


def _root_os_error(exc: BaseException) -> OSError | None:
    """The socket-level error under a requests/urllib3 error (the last one found)."""
    found: OSError | None = None
    for cause in _causes(exc):
        if isinstance(cause, OSError) and not isinstance(cause, requests.RequestException):
            found = cause
    return found


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _tls_error(exc: requests.exceptions.SSLError, s: WinRMSettings) -> FleetError:
    root = _root_os_error(exc)
    if isinstance(root, ssl.SSLCertVerificationError):
        return HostKeyError(
            f"certificate rejected for {s.endpoint}: {root.verify_message or _short(root)}",
            "set ansible_winrm_ca_trust_path to the CA that issued the host's certificate "
            "(or, knowingly, ansible_winrm_server_cert_validation=ignore)",
        )
    return UnreachableError(
        f"TLS handshake with {s.where} failed: {_short(root or exc)}",
        "does this port speak HTTPS? 5985 is plain HTTP, 5986 is HTTPS "
        "(ansible_port, ansible_winrm_scheme)",
    )


def _network_error(
    exc: requests.RequestException, s: WinRMSettings, connecting: bool
) -> FleetError:
    if isinstance(exc, requests.exceptions.SSLError):
        return _tls_error(exc, s)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return UnreachableError(
            f"timed out connecting to {s.where}", "host down, or a firewall drops WinRM"
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        reason = f"no answer from {s.where} within {s.read_timeout}s"
        if connecting:
            return UnreachableError(
                reason, "WinRM service hung? raise ansible_winrm_read_timeout_sec"
            )
        return TransportError(reason)
    root = _root_os_error(exc)
    if isinstance(root, ConnectionRefusedError) or (
        isinstance(root, OSError) and root.errno == errno.ECONNREFUSED
    ):
        return UnreachableError(
            f"connection refused on port {s.port}",
            "WinRM listener not configured? 5985 is HTTP, 5986 is HTTPS "
            "(ansible_winrm_scheme, ansible_port)",
        )
    if isinstance(root, socket.gaierror):
        return UnreachableError(f"name not resolved: {s.address}", "check ansible_host")
    if isinstance(root, OSError) and root.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return UnreachableError(f"no route to {s.address}", "host down or network unreachable")
    if isinstance(root, TimeoutError):
        return UnreachableError(
            f"timed out connecting to {s.where}", "host down, or a firewall drops WinRM"
        )
    reason = f"connection to {s.where} failed: {_short(root or exc)}"
    if connecting:
        return UnreachableError(reason, "HTTP against an HTTPS port (or back)? 5985 vs 5986")
    return TransportError(reason)


def _fault_error(exc: WSManFaultError, s: WinRMSettings) -> FleetError:
    reason = (exc.reason or "").strip()
    if exc.wsman_fault_code == 5 or "access is denied" in reason.lower():
        return AuthenticationError(
            f"access denied for user {s.user}",
            "the user must be in Administrators or Remote Management Users on the host",
        )
    return TransportError(f"WinRM fault from {s.where}: {reason} (code {exc.wsman_fault_code})")


def translate(exc: BaseException, s: WinRMSettings, *, connecting: bool) -> FleetError:
    """A fleet error saying what ``exc`` means for an operator; never quotes the password."""
    error: FleetError
    if isinstance(exc, FleetError):
        return exc
    if isinstance(exc, InvalidCredentialsError):
        error = AuthenticationError(
            f"authentication refused for user {s.user} ({s.auth})",
            "check ansible_user/ansible_password, NTLM vs Kerberos (ansible_winrm_transport)",
        )
    elif isinstance(exc, WSManFaultError):
        error = _fault_error(exc, s)
    elif isinstance(exc, WinRMOperationTimeoutError):
        error = TransportError(f"WinRM operation timeout from {s.where}")
    elif isinstance(exc, WinRMTransportError):
        error = TransportError(f"HTTP {exc.code} from {s.endpoint}")
    elif isinstance(exc, requests.RequestException):
        error = _network_error(exc, s, connecting)
    elif isinstance(exc, WinRMError) and connecting:
        error = UnreachableError(
            f"WinRM setup failed: {_short(exc)}", f"ansible_winrm_transport={s.auth}"
        )
    elif isinstance(exc, (StopIteration, AssertionError, ET.ParseError, KeyError, ValueError)):
        error = TransportError(f"malformed WinRM reply from {s.where}: {type(exc).__name__}")
    else:
        error = TransportError(f"WinRM error talking to {s.where}: {_short(exc)}")
    return _scrubbed(error, s.password)


def _cause(exc: BaseException, secret: str | None) -> BaseException | None:
    """``exc`` to chain under our error, unless anything in it quotes the password."""
    if secret and any(secret in str(cause) or secret in repr(cause) for cause in _causes(exc)):
        return None
    return exc


def _scrubbed(error: FleetError, secret: str | None) -> FleetError:
    if not secret or secret not in str(error):
        return error
    if isinstance(error, UnreachableError):
        return type(error)(_scrub(error.reason, secret), _scrub(error.hint, secret))
    return type(error)(_scrub(str(error), secret))


# --------------------------------------------------------------------------
# The transport


@dataclass
class _Output:
    """stdout/stderr gathered across Receives, capped."""

    stdout_cap: int
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, stdout: bytes, stderr: bytes) -> None:
        room = self.stdout_cap - len(self.stdout)
        if len(stdout) > room:
            self.truncated = True
        self.stdout += stdout[: max(room, 0)]
        self.stderr += stderr[: max(STDERR_CAP - len(self.stderr), 0)]


class WinRMTransport:
    """fleet's Transport over WinRM: one shell per host per audit, PowerShell scripts."""

    shell = "powershell"

    def __init__(self, host: HostPlan, options: RunOptions) -> None:
        self.host = host
        self.options = options
        self.settings = settings_for(host, options)
        self._protocol: Protocol | None = None
        self._shell_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"WinRMTransport({self.host.name!r}, {self.settings.endpoint!r}, {self.settings.auth})"
        )

    # -- connection

    def connect(self) -> None:
        """Log in and open the shell (idempotent).  Raises UnreachableError."""
        if self._shell_id is not None:
            return
        s = self.settings
        refused = refusal(s)
        if refused is not None:
            raise refused
        # Certificates need no password; Kerberos may use the runner's ticket cache (kinit).
        needs_password = s.auth not in ("certificate", "kerberos")
        if needs_password and (not s.user or s.password is None):
            raise AuthenticationError(
                f"no {'user' if not s.user else 'password'} for WinRM ({s.auth})",
                "set ansible_user and ansible_password",
            )
        try:
            protocol = self._new_protocol()
            self._shell_id = protocol.open_shell(noprofile=True, codepage=UTF8_CODEPAGE)
        except Exception as exc:  # noqa: BLE001 - every library error is translated here
            self._protocol = None
            raise translate(exc, s, connecting=True) from _cause(exc, s.password)
        self._protocol = protocol

    def _new_protocol(self) -> Protocol:
        s = self.settings
        protocol = Protocol(
            s.endpoint,
            transport=s.auth,  # type: ignore[arg-type]
            username=s.user,
            password=s.password,
            server_cert_validation=s.server_cert_validation,  # type: ignore[arg-type]
            ca_trust_path=_ca_trust_path(s),
            cert_pem=s.cert_pem,
            cert_key_pem=s.cert_key_pem,
            read_timeout_sec=s.read_timeout,
            operation_timeout_sec=s.operation_timeout,
            message_encryption=_message_encryption(s),  # type: ignore[arg-type]
            proxy=s.proxy,
        )
        self._protocol = protocol
        # requests takes (connect, read): a dead host fails after the
        # runner's connect timeout, not after the long read timeout.
        protocol.transport.read_timeout_sec = (s.connect_timeout, s.read_timeout)  # type: ignore[assignment]
        return protocol

    def close(self) -> None:
        """Delete the shell and drop the connection; never raises."""
        protocol, shell_id = self._protocol, self._shell_id
        self._protocol = self._shell_id = None
        if protocol is None:
            return
        try:
            if shell_id is not None:
                self._limit_read(protocol, CLEANUP_TIMEOUT)
                protocol.close_shell(shell_id)
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.debug("%s: closing the WinRM shell failed: %s", self.host.name, type(exc).__name__)
        finally:
            protocol.transport.close_session()

    def _discard(self) -> None:
        """Forget a connection in an unknown state: the next run logs in afresh."""
        protocol = self._protocol
        self._protocol = self._shell_id = None
        if protocol is not None:
            with contextlib.suppress(Exception):
                protocol.transport.close_session()

    # -- running

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run the PowerShell script ``command`` within ``timeout`` or raise CommandTimeout."""
        started = time.monotonic()
        deadline = started + timeout
        self.connect()
        assert self._protocol is not None and self._shell_id is not None
        protocol, shell_id = self._protocol, self._shell_id
        output = _Output(self.options.max_output)
        invocation = encode_invocation(command)
        try:
            exit_status = self._execute(protocol, shell_id, invocation, output, deadline)
        except CommandTimeout:
            raise
        except requests.exceptions.Timeout as exc:
            self._discard()
            if time.monotonic() >= deadline:
                raise CommandTimeout(timeout, bytes(output.stdout)) from exc
            raise translate(exc, self.settings, connecting=False) from _cause(
                exc, self.settings.password
            )
        except Exception as exc:  # noqa: BLE001 - every library error is translated here
            self._discard()
            raise translate(exc, self.settings, connecting=False) from _cause(
                exc, self.settings.password
            )
        finally:
            protocol.operation_timeout_sec = self.settings.operation_timeout
            self._limit_read(protocol, self.settings.read_timeout)
        if exit_status is None:
            raise CommandTimeout(timeout, bytes(output.stdout))
        exe, args, stdin = invocation
        return CommandResult(
            # As the others say "/bin/sh -s": what ran, not the whole script.
            command=" ".join([exe, *args[:-1]]) + (" (script on stdin)" if stdin else " ..."),
            exit_status=exit_status,
            stdout=bytes(output.stdout),
            stderr=bytes(output.stderr),
            duration=time.monotonic() - started,
            truncated=output.truncated,
        )

    def _execute(
        self,
        protocol: Protocol,
        shell_id: str,
        invocation: tuple[str, list[str], bytes | None],
        output: _Output,
        deadline: float,
    ) -> int | None:
        """Start the script, feed it, poll it: its exit status, or None past the deadline."""
        exe, args, stdin = invocation
        self._limit_read(protocol, _left(deadline) + REPLY_GRACE)
        command_id = protocol.run_command(shell_id, exe, args, skip_cmd_shell=True)
        if stdin is not None:
            chunks = [stdin[i : i + STDIN_CHUNK] for i in range(0, len(stdin), STDIN_CHUNK)]
            for i, chunk in enumerate(chunks):
                self._limit_read(protocol, _left(deadline) + REPLY_GRACE)
                protocol.send_command_input(shell_id, command_id, chunk, end=i == len(chunks) - 1)
        exit_status = self._receive(protocol, shell_id, command_id, output, deadline)
        if exit_status is None:
            self._abandon(protocol, shell_id, command_id)
            return None
        try:  # the result is complete: cleaning up is best effort
            self._limit_read(protocol, CLEANUP_TIMEOUT)
            protocol.cleanup_command(shell_id, command_id)
        except Exception as exc:  # noqa: BLE001 - never lose a finished result to cleanup
            log.debug(
                "%s: cleanup after the command failed: %s", self.host.name, type(exc).__name__
            )
            self._discard()  # the next run logs in afresh
        return exit_status

    def _receive(
        self, protocol: Protocol, shell_id: str, command_id: str, output: _Output, deadline: float
    ) -> int | None:
        """Poll until the command is done (its exit status) or the deadline passes (None)."""
        while True:
            remaining = _left(deadline)
            if remaining <= 0:
                return None
            # Ask the host to answer within what is left of the deadline (a
            # Receive waits server-side up to the operation timeout), and do
            # not wait much longer than that for its answer.
            operation = max(1, min(self.settings.operation_timeout, int(remaining)))
            protocol.operation_timeout_sec = operation
            self._limit_read(protocol, operation + REPLY_GRACE)
            try:
                stdout, stderr, exit_status, done = protocol.get_command_output_raw(
                    shell_id, command_id
                )
            except WinRMOperationTimeoutError:
                continue  # still running: WinRM's way of saying "poll again"
            output.add(stdout, stderr)
            if done:
                return exit_status

    def _abandon(self, protocol: Protocol, shell_id: str, command_id: str) -> None:
        """Past the deadline: ask the host to stop the command, briefly.

        The shell is kept for the next script when the host says the command
        is stopped; otherwise the next run logs in afresh.
        """
        try:
            self._limit_read(protocol, CLEANUP_TIMEOUT)
            protocol.cleanup_command(shell_id, command_id)
        except Exception as exc:  # noqa: BLE001 - the timeout is what the caller must hear
            log.debug(
                "%s: stopping the timed-out command failed: %s", self.host.name, type(exc).__name__
            )
            self._discard()

    def _limit_read(self, protocol: Protocol, seconds: float) -> None:
        """Wait at most ``seconds`` (and never more than the read timeout) for the next reply."""
        protocol.transport.read_timeout_sec = (  # type: ignore[assignment]
            self.settings.connect_timeout,
            max(1.0, min(seconds, self.settings.read_timeout)),
        )


def _left(deadline: float) -> float:
    return deadline - time.monotonic()
