"""The transport contract and the registry by Ansible connection name.

A transport connects lazily (or on ``connect()``), runs one command under a
hard deadline that *we* enforce, and closes.  Library errors are translated
here into fleet's: ``UnreachableError`` (and its ``AuthenticationError``,
``HostKeyError``) when the host cannot be logged into, ``CommandTimeout``
when the deadline passes, ``TransportError`` otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol

from fleet.errors import ConfigError
from fleet.model import CommandResult
from fleet.plan import HostPlan, RunOptions


class Transport(Protocol):
    """One connection to one host, used by one thread for the whole audit."""

    #: "sh" for POSIX shells, "powershell" for Windows
    shell: str

    def connect(self) -> None:
        """Open the connection now (idempotent).  Raises UnreachableError."""
        ...

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run ``command`` (a sh script, or a PowerShell script for winrm).

        Returns within ``timeout`` seconds or raises ``CommandTimeout``.
        stdout is capped at the options' ``max_output`` (``truncated`` set).
        """
        ...

    def close(self) -> None: ...


TRANSPORTS: dict[str, str] = {
    "local": "fleet.transports.local:LocalTransport",
    # As in Ansible: "ssh" is the C implementation (libssh2 here, OpenSSH there),
    # "paramiko" the pure-Python one.  Same contract, inventory variables and messages.
    "ssh": "fleet.transports.libssh2:Libssh2Transport",
    "paramiko": "fleet.transports.ssh:SSHTransport",
    "winrm": "fleet.transports.winrm:WinRMTransport",
}


def open_transport(host: HostPlan, options: RunOptions) -> Transport:
    """A transport for ``host`` by its ``ansible_connection`` (not yet connected)."""
    try:
        target = TRANSPORTS[host.connection]
    except KeyError:
        known = ", ".join(sorted(TRANSPORTS))
        raise ConfigError(
            f"host {host.name}: ansible_connection={host.connection!r} is not one of {known}"
        ) from None
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    transport: Transport = cls(host, options)
    return transport


def check_transport_settings(hosts: Sequence[HostPlan], options: RunOptions) -> None:
    """Build (without connecting) every host's transport, so a malformed connection
    variable (``ansible_winrm_scheme=htps``...) is a ConfigError before any host is contacted."""
    for host in hosts:
        open_transport(host, options)
