"""The transport contract, the registry by Ansible connection name, and an audit's shared files.

A transport connects lazily (or on ``connect()``), runs one command under a
hard deadline that *we* enforce, and closes.  Library errors are translated
at its edge into fleet's, each with its cause (``fleet.causes``):
``UnreachableError`` (and its ``AuthenticationError``, ``HostKeyError``) when
the host cannot be logged into, ``CommandTimeout`` when the deadline passes,
``TransportError`` otherwise.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

from fleet.errors import ConfigError
from fleet.model import CommandResult
from fleet.plan import HostPlan, RunOptions
from fleet.transports.handoff import Handoff

T = TypeVar("T")


class Transport(Protocol):
    """One connection to one host, used by one thread for the whole audit."""

    #: "sh" for POSIX shells, "powershell" for Windows
    shell: str
    #: the TCP port the login connects to (None: nothing to log into)
    port: int | None

    def connect(self, handoff: Handoff | None = None) -> None:
        """Open the connection now (idempotent), over ``handoff``'s socket when it is
        fresh and the transport can use one (it then owns it).  Raises UnreachableError."""
        ...

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run ``command`` (a sh script, or a PowerShell script for winrm).

        Returns within ``timeout`` seconds or raises ``CommandTimeout``.
        stdout is capped at the options' ``max_output`` (``truncated`` set).
        """
        ...

    def close(self) -> None: ...


class AuditContext:
    """What one audit's transports share: files parsed once (known_hosts, private keys).

    Created per audit (``fleet.runner.run_audit``) and dropped with it, so a
    file changed between two audits is read again.  Safe for the pool's
    threads: when many hosts need the same file at once, one reads it and the
    others wait for it.
    """

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._building: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value kept under ``key``, built by ``build()`` the first time (an exception
        is raised to the caller and nothing is kept)."""
        try:
            return self._values[key]
        except KeyError:
            pass
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:
            if key not in self._values:
                self._values[key] = build()
            return self._values[key]


TRANSPORTS: dict[str, str] = {
    "local": "fleet.transports.local:LocalTransport",
    # As in Ansible: "ssh" is the C implementation (libssh2 here, OpenSSH there),
    # "paramiko" the pure-Python one.  Same contract, inventory variables and messages.
    "ssh": "fleet.transports.libssh2:Libssh2Transport",
    "paramiko": "fleet.transports.paramiko_ssh:ParamikoTransport",
    "winrm": "fleet.transports.winrm:WinRMTransport",
}


def transport_class(host: HostPlan) -> Any:
    """The class registered for ``host``'s ``ansible_connection`` (imported on first use)."""
    try:
        target = TRANSPORTS[host.connection]
    except KeyError:
        known = ", ".join(sorted(TRANSPORTS))
        raise ConfigError(
            f"host {host.name}: ansible_connection={host.connection!r} is not one of {known}"
        ) from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def open_transport(
    host: HostPlan, options: RunOptions, context: AuditContext | None = None
) -> Transport:
    """A transport for ``host`` by its ``ansible_connection`` (not yet connected); its
    settings are read now (ConfigError).  ``context``: the audit's, else a private one."""
    transport: Transport = transport_class(host)(host, options, context or AuditContext())
    return transport


def login_port(host: HostPlan) -> int | None:
    """The TCP port ``host``'s transport logs in on (None for ``local``)."""
    port: int | None = transport_class(host).login_port(host)
    return port


def login_address(host: HostPlan) -> str:
    """The address ``host``'s transport connects to (ssh_config's HostName, for SSH)."""
    address = getattr(transport_class(host), "login_address", None)
    return address(host) if address is not None else host.address


def login_proxy(host: HostPlan) -> str | None:
    """The jump host (or "ProxyCommand") ``host``'s login goes through, if any: the
    runner cannot probe such a host itself."""
    proxy = getattr(transport_class(host), "login_proxy", None)
    return proxy(host) if proxy is not None else None


def check_transport_settings(
    hosts: Sequence[HostPlan], options: RunOptions, context: AuditContext | None = None
) -> AuditContext:
    """Build (without connecting) every host's transport, so a malformed connection
    variable (``ansible_winrm_scheme=htps``...) or an unusable key file is a ConfigError
    before any host is contacted.  Returns the context holding the files it read, for
    ``run_audit`` to reuse."""
    context = context or AuditContext()
    for host in hosts:
        open_transport(host, options, context)
    return context
