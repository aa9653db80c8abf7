"""Run one PowerShell script on a Windows host over WinRM (pywinrm), under a hard deadline.

(Over 500 lines: one WinRM login's whole life, NTLM or Kerberos, under its deadline, and
the translation of every pywinrm/requests error at this one edge.)

One ``Protocol`` and one shell per transport instance, i.e. per host per
audit (pywinrm's sessions are not thread-safe: pywinrm #277).  The script
runs as ``powershell.exe -NoProfile -NonInteractive -EncodedCommand ...``
straight from WinRS (no cmd.exe and its 8,191-character line); a script too
long for a Windows command line travels on stdin instead
(fleet.transports.powershell).  The settings come from the inventory
(fleet.transports.winrm_settings); Kerberos goes through pyspnego and GSSAPI
(fleet.transports.kerberos).

pywinrm retries WinRM operation timeouts forever, so the receive loop is
ours: each Receive asks the host to answer within what is left of the
deadline, and past the deadline the command is signalled to stop and
``CommandTimeout`` raised.  Library errors are translated here, each with its
cause; the password never appears in a message.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import requests
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from fleet import causes
from fleet.errors import (
    AuthenticationError,
    CommandTimeout,
    FleetError,
    HostKeyError,
    TransportError,
    UnreachableError,
)
from fleet.model import CommandResult
from fleet.plan import HostPlan, RunOptions
from fleet.transports import kerberos
from fleet.transports._io import CappedBuffer
from fleet.transports.base import AuditContext
from fleet.transports.handoff import Handoff, give_up
from fleet.transports.powershell import decode_invocation, encode_invocation, reads_stdin
from fleet.transports.winrm_settings import (
    WinRMSettings,
    pywinrm_encryption,
    pywinrm_trust,
    refusal,
)

# The lab's WS-Management server reads invocations with these.
__all__ = ["WinRMTransport", "decode_invocation", "encode_invocation", "reads_stdin"]

log = logging.getLogger(__name__)

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
            cause=causes.CERTIFICATE_REJECTED,
        )
    return UnreachableError(
        f"TLS handshake with {s.where} failed: {_short(root or exc)}",
        "does this port speak HTTPS? 5985 is plain HTTP, 5986 is HTTPS "
        "(ansible_port, ansible_winrm_scheme)",
        cause=causes.PROTOCOL_ERROR,
    )


def _network_error(
    exc: requests.RequestException, s: WinRMSettings, connecting: bool
) -> FleetError:
    if isinstance(exc, requests.exceptions.SSLError):
        return _tls_error(exc, s)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return _connect_timeout(s)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return _failed(
            f"no answer from {s.where} within {s.read_timeout}s",
            connecting,
            ("WinRM service hung? raise ansible_winrm_read_timeout_sec", causes.LOGIN_TIMEOUT),
            causes.SERVICE_ERROR,
        )
    root = _root_os_error(exc)
    if isinstance(root, ConnectionRefusedError) or (
        isinstance(root, OSError) and root.errno == errno.ECONNREFUSED
    ):
        return UnreachableError(
            f"connection refused on port {s.port}",
            "WinRM listener not configured? 5985 is HTTP, 5986 is HTTPS "
            "(ansible_winrm_scheme, ansible_port)",
            cause=causes.CONNECT_REFUSED,
        )
    if isinstance(root, socket.gaierror):
        return UnreachableError(
            f"name not resolved: {s.address}", "check ansible_host", cause=causes.NAME_UNRESOLVED
        )
    if isinstance(root, OSError) and root.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return UnreachableError(
            f"no route to {s.address}",
            "host down or network unreachable",
            cause=causes.HOST_UNREACHABLE,
        )
    if isinstance(root, TimeoutError):
        return _connect_timeout(s)
    return _failed(
        f"connection to {s.where} failed: {_short(root or exc)}",
        connecting,
        ("HTTP against an HTTPS port (or back)? 5985 vs 5986", causes.PROTOCOL_ERROR),
        causes.TRANSPORT_ERROR,
    )


def _failed(reason: str, connecting: bool, at_login: tuple[str, str], later: str) -> TransportError:
    """At login: the host is not audited (``at_login``: hint, cause); later: ``later``'s cause."""
    if connecting:
        return UnreachableError(reason, at_login[0], cause=at_login[1])
    return TransportError(reason, cause=later)


def _connect_timeout(s: WinRMSettings) -> UnreachableError:
    return UnreachableError(
        f"timed out connecting to {s.where}",
        "host down, or a firewall drops WinRM",
        cause=causes.CONNECT_TIMEOUT,
    )


def _fault_error(exc: WSManFaultError, s: WinRMSettings) -> FleetError:
    reason = (exc.reason or "").strip()
    if exc.wsman_fault_code == 5 or "access is denied" in reason.lower():
        return AuthenticationError(
            f"access denied for user {s.user}",
            "the user must be in Administrators or Remote Management Users on the host",
            cause=causes.AUTH_REFUSED,
        )
    return TransportError(
        f"WinRM fault from {s.where}: {reason} (code {exc.wsman_fault_code})",
        cause=causes.SERVICE_ERROR,
    )


def translate(exc: BaseException, s: WinRMSettings, *, connecting: bool) -> FleetError:
    """A fleet error saying what ``exc`` means for an operator; never quotes the password."""
    error: FleetError
    if isinstance(exc, FleetError):
        return exc
    if s.auth == "kerberos" and (krb := kerberos.translate(exc, s)) is not None:
        error = krb
    elif isinstance(exc, InvalidCredentialsError):
        error = AuthenticationError(
            f"authentication refused for user {s.user} ({s.auth})",
            "check ansible_user/ansible_password, NTLM vs Kerberos (ansible_winrm_transport)",
            cause=causes.AUTH_REFUSED,
        )
    elif isinstance(exc, WSManFaultError):
        error = _fault_error(exc, s)
    elif isinstance(exc, WinRMOperationTimeoutError):
        error = TransportError(
            f"WinRM operation timeout from {s.where}", cause=causes.SERVICE_ERROR
        )
    elif isinstance(exc, WinRMTransportError):
        # 5xx: the service failed; anything else: it did not answer as WS-Management does.
        failed = isinstance(exc.code, int) and exc.code >= 500
        error = TransportError(
            f"HTTP {exc.code} from {s.endpoint}",
            cause=causes.SERVICE_ERROR if failed else causes.PROTOCOL_ERROR,
        )
    elif isinstance(exc, requests.RequestException):
        error = _network_error(exc, s, connecting)
    elif isinstance(exc, WinRMError) and connecting:
        error = UnreachableError(
            f"WinRM setup failed: {_short(exc)}",
            f"ansible_winrm_transport={s.auth}",
            cause=causes.TRANSPORT_ERROR,
        )
    elif isinstance(exc, (StopIteration, AssertionError, ET.ParseError, KeyError, ValueError)):
        error = TransportError(
            f"malformed WinRM reply from {s.where}: {type(exc).__name__}",
            cause=causes.PROTOCOL_ERROR,
        )
    else:
        error = TransportError(
            f"WinRM error talking to {s.where}: {_short(exc)}", cause=causes.TRANSPORT_ERROR
        )
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
        return type(error)(
            _scrub(error.reason, secret), _scrub(error.hint, secret), cause=error.cause
        )
    return TransportError(_scrub(str(error), secret), cause=error.cause)


# --------------------------------------------------------------------------
# The transport


class _Output:
    """stdout/stderr gathered across Receives, capped."""

    def __init__(self, stdout_cap: int) -> None:
        self.out, self.err = CappedBuffer(stdout_cap), CappedBuffer(STDERR_CAP)

    def add(self, stdout: bytes, stderr: bytes) -> None:
        self.out.write(stdout)
        self.err.write(stderr)


class WinRMTransport:
    """fleet's Transport over WinRM: one shell per host per audit, PowerShell scripts."""

    shell = "powershell"

    login_port = staticmethod(WinRMSettings.login_port)

    def __init__(
        self, host: HostPlan, options: RunOptions, context: AuditContext | None = None
    ) -> None:
        self.host = host
        self.options = options
        self.settings = WinRMSettings.from_host(host, options)
        self._context = context or AuditContext()
        self.port: int | None = self.settings.port
        self._protocol: Protocol | None = None
        self._shell_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"WinRMTransport({self.host.name!r}, {self.settings.endpoint!r}, {self.settings.auth})"
        )

    # -- connection

    def connect(self, handoff: Handoff | None = None) -> None:
        """Log in and open the shell (idempotent).  Raises UnreachableError.  (pywinrm
        opens its own connections: a handed-over socket is closed.)"""
        give_up(handoff)
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
                cause=causes.CONFIG_MISSING,
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
            ca_trust_path=pywinrm_trust(s),
            cert_pem=s.cert_pem,
            cert_key_pem=s.cert_key_pem,
            read_timeout_sec=s.read_timeout,
            operation_timeout_sec=s.operation_timeout,
            message_encryption=pywinrm_encryption(s),  # type: ignore[arg-type]
            proxy=s.proxy,
        )
        self._protocol = protocol
        # requests takes (connect, read): a dead host fails after the
        # runner's connect timeout, not after the long read timeout.
        protocol.transport.read_timeout_sec = (s.connect_timeout, s.read_timeout)  # type: ignore[assignment]
        if s.auth == "kerberos":  # pyspnego's Kerberos, not pywinrm's (pykerberos)
            kerberos.attach(protocol.transport, s, self._context)
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
        except Exception as exc:  # every library error is translated here
            self._discard()
            if isinstance(exc, requests.exceptions.Timeout) and time.monotonic() >= deadline:
                raise CommandTimeout(timeout, output.out.getvalue()) from exc
            raise translate(exc, self.settings, connecting=False) from _cause(
                exc, self.settings.password
            )
        finally:
            protocol.operation_timeout_sec = self.settings.operation_timeout
            self._limit_read(protocol, self.settings.read_timeout)
        if exit_status is None:
            raise CommandTimeout(timeout, output.out.getvalue())
        exe, args, stdin = invocation
        return CommandResult(
            # As the others say "/bin/sh -s": what ran, not the whole script.
            command=" ".join([exe, *args[:-1]]) + (" (script on stdin)" if stdin else " ..."),
            exit_status=exit_status,
            stdout=output.out.getvalue(),
            stderr=output.err.getvalue(),
            duration=time.monotonic() - started,
            truncated=output.out.truncated,
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
