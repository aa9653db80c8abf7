"""Playbooks: which checks to run on which hosts, in Ansible's spirit.

A playbook is a YAML list of plays::

    - name: Mail connectivity (KB Q128961)
      hosts: mail:exchange          # an inventory pattern
      vars:
        default_peers: "{{ groups['mail'] | difference([inventory_hostname]) }}"
      checks:
        - binding: {}
        - smtp:
            targets: "{{ fleet_smtp_targets | default(default_peers) }}"

Values are Jinja2 templates rendered per host with Ansible's names
(``inventory_hostname``, ``groups``, ``hostvars``, ``group_names``, the host's
and the play's variables).  Everything is loaded, rendered and validated
before any host is contacted: a problem is a PlaybookError (exit 5) naming
the file, the line and what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleet.checks.base import CHECKS, get_check
from fleet.errors import InventoryError, PlaybookError
from fleet.inventory import Inventory, VaultedValue
from fleet.inventory.hostnames import address_problem, shorten
from fleet.inventory.limits import read_text_bounded
from fleet.inventory.yamlload import ShapeError, load_bounded
from fleet.plan import CheckPlan, HostPlan, is_secret
from fleet.templating import Renderer, has_template
from fleet.transports.base import TRANSPORTS

PLAY_KEYS = {"name", "hosts", "vars", "checks"}


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings remember the line they start on."""


class _LineDict(dict[Any, Any]):
    line: int = 0


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    mapping = _LineDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class CheckSpec:
    """One check of a play, as written (params still templates)."""

    name: str
    params: Mapping[str, Any]
    line: int


@dataclass(frozen=True)
class Play:
    name: str
    hosts: str
    vars: Mapping[str, Any]
    checks: tuple[CheckSpec, ...]
    line: int


@dataclass(frozen=True)
class Playbook:
    path: Path
    plays: tuple[Play, ...]


def resolve_playbook(name_or_path: str | Path, base: Path = Path("playbooks")) -> Path:
    """``mail-connectivity`` -> ``playbooks/mail-connectivity.yml``; else a path."""
    raw = Path(name_or_path)
    candidates = [raw, base / raw, base / f"{raw}.yml", base / f"{raw}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates[:3])
    raise PlaybookError(f"playbook {str(name_or_path)!r} not found: looked for {looked}")


def load_playbook(path: str | Path) -> Playbook:
    """Read and validate a playbook's structure and check names/parameters."""
    path = Path(path)
    text = read_text_bounded(path, PlaybookError, "playbook")
    try:
        data = load_bounded(text, _LineLoader)
    except ShapeError as exc:
        raise PlaybookError(f"refused YAML: {exc}", path=path, line=exc.line) from exc
    except ValueError as exc:  # e.g. a date like 2024-13-45, which the loader rejects
        raise PlaybookError(f"not valid YAML: {exc}", path=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PlaybookError(f"not valid YAML: {problem}", path=path, line=line) from exc
    if not isinstance(data, list) or not data:
        raise PlaybookError(
            "a playbook is a YAML list of plays (- hosts: ... checks: ...)", path=path
        )
    return Playbook(path, tuple(_load_play(path, play, i) for i, play in enumerate(data, 1)))


def _load_play(path: Path, play: Any, number: int) -> Play:
    if not isinstance(play, _LineDict):
        raise PlaybookError(f"play {number} is not a mapping", path=path)
    unknown = set(play) - PLAY_KEYS
    if unknown:
        raise PlaybookError(
            f"play {number}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"a play has {', '.join(sorted(PLAY_KEYS))}",
            path=path,
            line=play.line,
        )
    hosts = play.get("hosts")
    if not isinstance(hosts, str) or not hosts.strip():
        raise PlaybookError(
            f"play {number}: 'hosts' must be an inventory pattern such as 'all' or 'mail'",
            path=path,
            line=play.line,
        )
    variables = play.get("vars") or {}
    if not isinstance(variables, dict):
        raise PlaybookError(f"play {number}: 'vars' must be a mapping", path=path, line=play.line)
    checks = play.get("checks")
    if not isinstance(checks, list) or not checks:
        raise PlaybookError(
            f"play {number}: 'checks' must be a non-empty list, e.g. '- binding: {{}}'",
            path=path,
            line=play.line,
        )
    return Play(
        name=str(play.get("name") or f"play {number}"),
        hosts=hosts.strip(),
        vars=dict(variables),
        checks=tuple(_load_check(path, item, play.line) for item in checks),
        line=play.line,
    )


def _load_check(path: Path, item: Any, play_line: int) -> CheckSpec:
    line = item.line if isinstance(item, _LineDict) else play_line
    if isinstance(item, str):
        item = {item: {}}
    names = [k for k in item if k != "name"] if isinstance(item, dict) else []
    if len(names) != 1:
        raise PlaybookError(
            "each check is a mapping with one check name, e.g. '- smtp: {targets: [mx2]}'",
            path=path,
            line=line,
        )
    name = names[0]
    if name not in CHECKS:
        raise PlaybookError(
            f"unknown check {name!r}; known checks: {', '.join(sorted(CHECKS))}",
            path=path,
            line=line,
        )
    params = item[name] if item[name] is not None else {}
    if not isinstance(params, dict):
        raise PlaybookError(f"check {name}: parameters must be a mapping", path=path, line=line)
    if not has_template(params):
        try:  # static parameters are checked now, templated ones once rendered
            get_check(name).validate(params)
        except ValueError as exc:
            raise PlaybookError(f"check {name}: {exc}", path=path, line=line) from exc
    return CheckSpec(name, dict(params), line)


def build_plan(
    playbook: Playbook, inventory: Inventory, limit: str | None = None
) -> list[HostPlan]:
    """Every selected host with its rendered, validated checks, in inventory order.

    A host in several plays gets the checks of each; raises PlaybookError.
    """
    renderer = Renderer()
    allowed = set(inventory.select(limit)) if limit else None
    groups = {name: inventory.group_hosts(name) for name in inventory.groups}
    raw_hostvars = {name: inventory.host_vars(name) for name in inventory.hosts}
    per_host: dict[str, list[CheckPlan]] = {}
    for play in playbook.plays:
        for host in inventory.select(play.hosts):
            if allowed is not None and host not in allowed:
                continue
            context = {
                **raw_hostvars[host],
                "groups": groups,
                "hostvars": raw_hostvars,
                "inventory_hostname": host,
            }
            context.update(_render_vars(renderer, play, context, playbook.path, host))
            origin = _origin(playbook, play, inventory, host)
            per_host.setdefault(host, []).extend(
                _render_check(renderer, spec, context, playbook.path, host, origin)
                for spec in play.checks
            )
    return [
        _host_plan(
            name,
            _render_host_vars(renderer, name, raw_hostvars, groups, inventory.var_origin),
            tuple(checks),
        )
        for name in inventory.hosts
        if (checks := per_host.get(name))
    ]


_CONNECTION_VARS = frozenset(
    {
        "ansible_host",
        "ansible_port",
        "ansible_ssh_port",
        "ansible_user",
        "ansible_ssh_user",
        "ansible_connection",
        "ansible_ssh_private_key_file",
        "ansible_private_key_file",
        "ansible_host_key_checking",
        "ansible_ssh_host_key_checking",
    }
)


def _fleet_reads(key: str) -> bool:
    return (
        key in _CONNECTION_VARS
        or key.startswith(("fleet_", "ansible_winrm_"))
        or (key.startswith("ansible_") and is_secret(key))
    )


def _render_host_vars(
    renderer: Renderer,
    host: str,
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Any],
    origin: Callable[[str, str], str | None],
) -> dict[str, Any]:
    """The host's variables with templated values rendered (e.g. a password from the env);
    a PlaybookError names the variable and the file that sets it."""
    own = hostvars[host]
    context = {**own, "groups": groups, "hostvars": hostvars, "inventory_hostname": host}
    rendered = dict(own)
    for key, value in own.items():
        # Only what fleet reads; an inventory also holds variables for Ansible
        # (ansible_python_interpreter: "{{ ansible_playbook_python }}") that
        # fleet cannot and need not render.
        if not has_template(value) or not _fleet_reads(key):
            continue
        try:
            if is_secret(key) and isinstance(value, str):
                rendered[key] = renderer.render_text(value, context)
            else:
                rendered[key] = renderer.render(value, context)
        except Exception as exc:
            # The value may be a secret: name the variable, never show the value.
            raise PlaybookError(
                f"host {host}: variable {key} cannot be rendered: {type(exc).__name__}"
                f"{'' if is_secret(key) else f': {exc}'}",
                path=origin(host, key) or own.get("inventory_file"),
            ) from exc
    return rendered


def _render_vars(
    renderer: Renderer, play: Play, context: dict[str, Any], path: Path, host: str
) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    for key, value in play.vars.items():
        try:
            rendered[key] = renderer.render(value, {**context, **rendered})
        except Exception as exc:
            raise PlaybookError(
                f"play {play.name!r}, variable {key!r} for host {host}: {exc}",
                path=path,
                line=play.line,
            ) from exc
    return rendered


def _origin(
    playbook: Playbook, play: Play, inventory: Inventory, host: str
) -> Callable[[str], str | None]:
    """Where ``host``'s variable is set: the play's vars win over the inventory."""

    def where(name: str) -> str | None:
        if name in play.vars:
            return f"{playbook.path}:{play.line} (vars of play {play.name!r})"
        return inventory.var_origin(host, name)

    return where


def _render_check(
    renderer: Renderer,
    spec: CheckSpec,
    context: Mapping[str, Any],
    path: Path,
    host: str,
    origin: Callable[[str], str | None],
) -> CheckPlan:
    try:
        params = renderer.render(spec.params, context)
    except Exception as exc:  # TypeError, OSError from lookup('file')...: all bad playbooks
        raise PlaybookError(
            f"check {spec.name} for host {host}: {exc}", path=path, line=spec.line
        ) from exc
    try:
        params = get_check(spec.name).validate(params)
    except ValueError as exc:
        raise PlaybookError(
            f"check {spec.name} for host {host}: {exc}{_variables_hint(spec.params, origin)}",
            path=path,
            line=spec.line,
        ) from exc
    return CheckPlan(spec.name, params)


def _variables_hint(params: Mapping[str, Any], origin: Callable[[str], str | None]) -> str:
    """Where a bad value may come from: the inventory variables the templates use,
    and the file that sets each of them."""
    names = sorted(
        {
            name
            for value in params.values()
            if isinstance(value, str) and has_template(value)
            for name in _VARIABLE.findall(value)
            if name.startswith("fleet_")
        }
    )
    if not names:
        return ""
    places = [f"{name}, set in {where}" for name in names if (where := origin(name))]
    return f" (check the inventory's {'; '.join(places or names)})"


_VARIABLE = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b")


def _host_plan(name: str, hostvars: Mapping[str, Any], checks: Sequence[CheckPlan]) -> HostPlan:
    """The host's connection settings, checked now so a typo is exit 5, not a failed host."""
    source = hostvars.get("inventory_file")
    port = hostvars.get("ansible_port") or hostvars.get("ansible_ssh_port")
    try:
        port_number = int(port) if port is not None else None
    except (TypeError, ValueError):
        port_number = -1
    if port_number is not None and not 0 < port_number < 65536:
        raise InventoryError(
            f"host {name}: ansible_port={port!r} is not a port number (1-65535)", path=source
        )
    connection = str(hostvars.get("ansible_connection") or "ssh")
    if connection not in TRANSPORTS:
        raise InventoryError(
            f"host {name}: ansible_connection={connection!r} is not one of "
            f"{', '.join(sorted(TRANSPORTS))}",
            path=source,
        )
    vaulted = [k for k, v in hostvars.items() if isinstance(v, VaultedValue)]
    if vaulted:
        raise InventoryError(
            f"host {name}: {', '.join(sorted(vaulted))} is vault-encrypted and no vault "
            "password was given: use --vault-password-file, --vault-id or --ask-vault-pass",
            path=source,
        )
    address = str(hostvars.get("ansible_host") or name)
    problem = address_problem(address) if connection != "local" else None
    if problem:
        given = "ansible_host" if hostvars.get("ansible_host") else "the inventory name"
        raise InventoryError(
            f"host {name}: {given} {shorten(address)!r} is not a host name or address: {problem}",
            path=source,
        )
    plan = HostPlan(
        name=name,
        connection=connection,
        address=address,
        port=port_number,
        user=hostvars.get("ansible_user") or hostvars.get("ansible_ssh_user"),
        vars=hostvars,
        checks=tuple(checks),
    )
    if (plan.platform.value == "windows") != (connection == "winrm"):
        raise InventoryError(
            f"host {name}: fleet_platform={plan.platform.value} does not fit "
            f"ansible_connection={connection}: Windows hosts are audited over winrm",
            path=source,
        )
    return plan
