"""The plan: which checks, with which rendered parameters, on which hosts.

Built from an inventory and a playbook before any host is contacted; a
problem found here is a ConfigError (exit 5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.errors import ConfigError
from fleet.model import Platform

# Inventory variables that hold secrets: never printed, logged or reported.
SECRET_VARS = frozenset(
    {
        "ansible_password",
        "ansible_pass",
        "ansible_ssh_pass",
        "ansible_ssh_password",
        "ansible_become_password",
        "ansible_become_pass",
        "ansible_winrm_password",
        "ansible_winrm_pass",
        "ansible_ssh_private_key_passphrase",
        "ansible_winrm_cert_key_pem",
    }
)
_SECRET_WORDS = ("pass", "secret", "token", "credential", "private_key_passphrase")


def is_secret(name: str) -> bool:
    """Known secret variables, and anything whose name says it is one (``vault_*``, ``*pass*``)."""
    lowered = name.lower()
    return (
        name in SECRET_VARS
        or lowered.startswith("vault_")
        or any(word in lowered for word in _SECRET_WORDS)
    )


MASK = "********"


def masked(value: Any, name: str = "") -> Any:
    """``value`` with its secrets masked by meaning, nested ones included: a vaulted or
    decrypted value anywhere, and text or numbers under a secret name (``password``
    in a list of users); a boolean or null under such a name (``token_enabled``) stays."""
    from fleet.inventory import SecretText, VaultedValue

    if isinstance(value, (SecretText, VaultedValue)):
        return MASK
    if isinstance(value, Mapping):
        return {key: masked(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(item, name) for item in value]
    if name and is_secret(name) and not isinstance(value, (bool, type(None))):
        return MASK
    return value


@dataclass(frozen=True)
class CheckPlan:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostPlan:
    """One host and what to run on it.  ``vars`` are the merged host variables."""

    name: str
    connection: str  # local | ssh | paramiko | winrm
    address: str  # ansible_host or the inventory name
    port: int | None
    user: str | None
    vars: Mapping[str, Any] = field(default_factory=dict, repr=False)
    checks: tuple[CheckPlan, ...] = ()

    @property
    def platform(self) -> Platform:
        declared = str(self.vars.get("fleet_platform", "")).lower()
        if declared in ("unix", "windows"):
            return Platform(declared)
        return Platform.WINDOWS if self.connection == "winrm" else Platform.UNIX


@dataclass(frozen=True)
class RunOptions:
    """How the runner behaves; every field has the default ops should get."""

    forks: int = 50
    connect_timeout: float = 10.0
    command_timeout: float = 120.0  # hard deadline for the one batched command
    host_deadline: float = 180.0  # everything on one host
    run_deadline: float | None = None  # the whole run
    host_key_checking: bool = True
    known_hosts: str | None = None  # extra known_hosts file (besides ~/.ssh/known_hosts)
    max_output: int = 4 * 1024 * 1024  # bytes kept from one command's stdout


def check_route_guards(hosts: Sequence[HostPlan], sys_net: Path = Path("/sys/class/net")) -> None:
    """Refuse to start when a host's ``fleet_route_via`` interface does not exist.

    The lab inventories set ``fleet_route_via: fleetbr0``: without the lab's
    bridge their addresses would be reached through the default route, i.e.
    outside this machine.  Raises ConfigError (exit 5) before any traffic.
    """
    needed: dict[str, str] = {}
    for host in hosts:
        interface = host.vars.get("fleet_route_via")
        if interface:
            needed.setdefault(str(interface), host.name)
    for interface, name in needed.items():
        if not (sys_net / interface).exists():
            raise ConfigError(
                f"host {name} must be reached through interface {interface} "
                "(fleet_route_via), which does not exist on this machine: bring that "
                "network up first (for the lab: invoke lab.up)"
            )
