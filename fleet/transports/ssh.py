"""The ``ssh``/``paramiko`` connection: one paramiko client per host, host keys checked.

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
import os
import socket
import time
from pathlib import Path
from typing import Any

import paramiko

from fleet.errors import (
    AuthenticationError,
    CommandTimeout,
    HostKeyError,
    TransportError,
    UnreachableError,
)
from fleet.model import CommandResult
from fleet.plan import HostPlan, RunOptions
from fleet.transports._io import CappedBuffer

STDERR_CAP = 64 * 1024
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


class SSHTransport:
    """Runs sh scripts over one paramiko SSH connection per host."""

    shell = "sh"

    def __init__(self, host: HostPlan, options: RunOptions) -> None:
        self.host = host
        self.options = options
        self.port = int(host.port or host.vars.get("ansible_ssh_port") or 22)
        self.user = host.user or os.environ.get("USER") or "root"
        self._client: paramiko.SSHClient | None = None

    # -- connecting --------------------------------------------------------

    def connect(self) -> None:
        if self._client is not None:
            return
        client = paramiko.SSHClient()
        checking = host_key_checking(self.host, self.options)
        if checking:
            self._load_known_hosts(client)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            # The operator opted out (host_key_checking=false), as in Ansible.
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507
        sock = self._open_socket()
        try:
            client.connect(
                self.host.address,
                port=self.port,
                username=self.user,
                sock=sock,
                timeout=self.options.connect_timeout,
                banner_timeout=self.options.connect_timeout,
                auth_timeout=self.options.connect_timeout,
                **self._auth_arguments(),
            )
        except Exception as exc:
            # paramiko may report "No existing session" when the real cause
            # (e.g. no banner) was saved on the transport.
            cause = getattr(client.get_transport(), "saved_exception", None) or exc
            sock.close()
            client.close()
            raise self._translate(cause) from exc
        self._client = client

    def _load_known_hosts(self, client: paramiko.SSHClient) -> None:
        # No ~/.ssh/known_hosts is fine: then only the inventory's file counts.
        with contextlib.suppress(OSError, paramiko.SSHException):
            client.load_system_host_keys()
        extra = self.host.vars.get("fleet_known_hosts") or self.options.known_hosts
        if extra:
            path = host_path(self.host, extra)
            try:
                client.load_host_keys(str(path))
            except OSError as exc:
                raise HostKeyError(
                    f"cannot read known_hosts file {path}: {exc.strerror}",
                    "fix fleet_known_hosts, or create the file with ssh-keyscan",
                ) from exc

    def _auth_arguments(self) -> dict[str, Any]:
        key_file = self.host.vars.get("ansible_ssh_private_key_file") or self.host.vars.get(
            "ansible_private_key_file"
        )
        password = self.host.vars.get("ansible_password") or self.host.vars.get("ansible_ssh_pass")
        explicit = bool(key_file or password)
        args: dict[str, Any] = {
            # A broken agent can hang connect: only consult it when nothing was given.
            "allow_agent": not explicit,
            "look_for_keys": not explicit,
        }
        if key_file:
            args["key_filename"] = str(host_path(self.host, key_file))
            passphrase = self.host.vars.get("ansible_ssh_private_key_passphrase")
            if passphrase:
                args["passphrase"] = str(passphrase)
        if password:
            args["password"] = str(password)
        return args

    def _open_socket(self) -> socket.socket:
        try:
            sock = socket.create_connection(
                (self.host.address, self.port), timeout=self.options.connect_timeout
            )
        except Exception as exc:
            raise self._translate(exc) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _translate(self, exc: BaseException) -> TransportError:
        """paramiko's and the socket layer's errors, in an operator's words."""
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
            status = channel.recv_exit_status()
        finally:
            channel.close()
        return CommandResult(
            command="/bin/sh -s",
            exit_status=status,
            stdout=out.getvalue(),
            stderr=err.getvalue(),
            duration=time.monotonic() - started,
            truncated=out.truncated,
        )

    def _drain(
        self, channel: paramiko.Channel, deadline: float, timeout: float
    ) -> tuple[CappedBuffer, CappedBuffer]:
        """Read stdout and stderr as they come until EOF, or raise at the deadline."""
        out = CappedBuffer(self.options.max_output)
        err = CappedBuffer(STDERR_CAP)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandTimeout(timeout, out.getvalue())
            channel.settimeout(min(remaining, 0.5))
            while channel.recv_stderr_ready():
                err.write(channel.recv_stderr(65536))
            try:
                data = channel.recv(65536)
            except TimeoutError:
                if channel.closed or not channel.get_transport():
                    raise UnreachableError("SSH connection lost during the command") from None
                continue
            if not data:
                while channel.recv_stderr_ready():
                    err.write(channel.recv_stderr(65536))
                return out, err
            out.write(data)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _known_hosts_name(transport: SSHTransport) -> str:
    if transport.port == 22:
        return transport.host.address
    return f"'[{transport.host.address}]:{transport.port}'"
