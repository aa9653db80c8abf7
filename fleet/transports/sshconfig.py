"""What OpenSSH's client settings say about one host: ssh_config files and ssh's arguments.

Ansible's ``ssh`` connection runs OpenSSH, so an Ansible shop keeps part of
its login settings where OpenSSH reads them: ``~/.ssh/config`` (``Host`` and
``Match host`` blocks) and the arguments Ansible adds (ansible.cfg's
``[ssh_connection] ssh_args``, ``ansible_ssh_common_args``,
``ansible_ssh_extra_args``: ``-o Key=value``, ``-J``, ``-F``, ``-i``, ``-p``,
``-l``).  This module reads the keywords fleet honours (``SshOptions``) with
OpenSSH's rule that the first value obtained wins, arguments before files.
Pure text in, values out; what it does not honour is kept in ``ignored`` so
that ``fleet config`` and verbose runs can show it.  A small parser rather
than paramiko's SSHConfig: the libssh2 transport must run without paramiko.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.errors import ConfigError
from fleet.plan import HostPlan

if TYPE_CHECKING:
    from fleet.transports.sshcommon import SshSettings

USER_CONFIG = "~/.ssh/config"
# The host variables that carry ssh's arguments, in the order Ansible puts them on
# ssh's command line (the first value obtained wins).
ARG_VARS = ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args")
CONFIG_VAR = "fleet_ssh_config"  # another ssh_config file than ~/.ssh/config ("none": none)

# The keywords fleet honours, by their lower-case name.
HONOURED = (
    "hostname",
    "user",
    "port",
    "identityfile",
    "proxyjump",
    "proxycommand",
    "userknownhostsfile",
    "stricthostkeychecking",
)
# ssh's options that take an argument (ssh(1)); the others are single letters.
_WITH_ARGUMENT = set("BbcDEeFIiJLlmOoPpQRSWw")
_KEYWORD = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+)(.*?)\s*$")


@dataclass(frozen=True)
class SshOptions:
    """The honoured keywords' values for one host (None: not set), and what was ignored."""

    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None  # "none" is kept: it turns jumping off
    proxy_command: str | None = None
    known_hosts_file: str | None = None
    strict_host_key_checking: str | None = None
    ignored: tuple[str, ...] = ()

    def fill(self, key: str, value: str, origin: str) -> SshOptions:
        """This with ``key`` set to ``value`` unless it is already set (first one wins)."""
        name = _FIELDS.get(key.lower())
        if name is None:
            return replace(self, ignored=(*self.ignored, f"{key} ({origin})"))
        if getattr(self, name) is not None:
            return self
        if name in ("proxy_jump", "proxy_command") and (self.proxy_jump or self.proxy_command):
            return self  # one proxy: the first of the two obtained wins, as in OpenSSH
        if name == "port":
            try:
                return replace(self, port=int(value))
            except ValueError:
                raise ConfigError(f"{origin}: Port {value!r} is not a port number") from None
        return replace(self, **{name: value})  # type: ignore[arg-type]

    @property
    def checks_host_keys(self) -> bool:
        """False when StrictHostKeyChecking says no (``accept-new`` is checked as ``yes``)."""
        return (self.strict_host_key_checking or "yes").lower() not in ("no", "off")

    def jumps(self) -> tuple[Hop, ...]:
        """The ProxyJump hops, first hop first (none for ``none``)."""
        if not self.proxy_jump or self.proxy_jump.lower() == "none":
            return ()
        return tuple(Hop.parse(part) for part in self.proxy_jump.split(",") if part.strip())


_FIELDS = {
    "hostname": "hostname",
    "user": "user",
    "port": "port",
    "identityfile": "identity_file",
    "proxyjump": "proxy_jump",
    "proxycommand": "proxy_command",
    "userknownhostsfile": "known_hosts_file",
    "stricthostkeychecking": "strict_host_key_checking",
}


@dataclass(frozen=True)
class Hop:
    """One ProxyJump hop: ``[user@]host[:port]`` or ``ssh://[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Hop:
        spec = text.strip().removeprefix("ssh://")
        user, _, rest = spec.rpartition("@")
        host, port = rest, None
        if rest.startswith("["):  # [v6]:port
            host, _, tail = rest[1:].partition("]")
            port = tail.removeprefix(":") or None
        elif rest.count(":") == 1:
            host, port = rest.split(":")
        try:
            return cls(host, user or None, int(port) if port else None)
        except ValueError:
            raise ConfigError(f"ProxyJump {text!r}: {port!r} is not a port number") from None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class Block:
    """One ``Host`` or ``Match`` block of an ssh_config file: when it applies, and its lines."""

    kind: str  # "host" | "match" | "all" (the lines before the first block)
    patterns: tuple[str, ...]
    lines: tuple[tuple[str, str], ...] = field(default=())

    def applies(self, original: str, current: str) -> bool | None:
        """Whether the block applies to the host (None: a Match criterion fleet cannot test)."""
        if self.kind == "all":
            return True
        if self.kind == "host":
            return _matches(original, self.patterns)
        return _match_criteria(self.patterns, original, current)


@dataclass(frozen=True)
class SshConfigFile:
    """A parsed ssh_config file: its blocks in order."""

    path: str
    blocks: tuple[Block, ...]

    @classmethod
    def parse(cls, text: str, path: str = "ssh_config") -> SshConfigFile:
        blocks = [Block("all", ())]
        current: list[tuple[str, str]] = []
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            found = _KEYWORD.match(line)
            if not found:
                continue
            key, value = found.group(1), _unquote(found.group(2))
            if key.lower() in ("host", "match"):
                blocks[-1] = replace(blocks[-1], lines=tuple(current))
                current = []
                try:
                    words = tuple(shlex.split(value, comments=True)) if value else ()
                except ValueError as exc:  # an unbalanced quote
                    raise ConfigError(f"{path}: {key} {value}: {exc}") from None
                blocks.append(Block(key.lower(), words))
            else:
                current.append((key, value))
        blocks[-1] = replace(blocks[-1], lines=tuple(current))
        return cls(path, tuple(blocks))

    def apply(self, options: SshOptions, original: str) -> SshOptions:
        """``options`` filled from the blocks that apply to ``original`` (first value wins)."""
        for block in self.blocks:
            applies = block.applies(original, options.hostname or original)
            if applies is None:
                criteria = " ".join(block.patterns)
                options = replace(
                    options, ignored=(*options.ignored, f"Match {criteria} ({self.path})")
                )
            if not applies:
                continue
            for key, value in block.lines:
                if key.lower() == "include":
                    options = replace(options, ignored=(*options.ignored, f"Include ({self.path})"))
                    continue
                options = options.fill(key, value, self.path)
        return options


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _matches(name: str, patterns: Iterable[str]) -> bool:
    """ssh_config's pattern lists: a match of any pattern, and of no ``!`` pattern."""
    matched = False
    for pattern in (p for word in patterns for p in word.split(",") if p):
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(name.lower(), pattern.lstrip("!").lower()):
            if negated:
                return False
            matched = True
    return matched


def _match_criteria(words: Sequence[str], original: str, current: str) -> bool | None:
    """``Match all``, ``host``, ``originalhost`` (each may be negated with ``!``)."""
    items = list(words)
    result: bool | None = True
    while items:
        word = items.pop(0)
        negated, criterion = word.startswith("!"), word.lstrip("!").lower()
        if criterion in ("all", "canonical", "final"):
            ok = criterion == "all"
        elif criterion in ("host", "originalhost") and items:
            ok = _matches(current if criterion == "host" else original, [items.pop(0)])
        else:  # exec, user, localuser, localnetwork...: fleet does not evaluate them
            return None
        if ok == negated:
            result = False
    return result


# -- ssh's arguments ---------------------------------------------------------


def apply_args(options: SshOptions, text: str, origin: str) -> tuple[SshOptions, str | None]:
    """``options`` filled from ssh arguments (``-o Key=value``, ``-J``, ``-i``, ``-p``, ``-l``),
    and the ``-F`` file they name, if any."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{origin}: cannot split {text!r}: {exc}") from None
    config_file = None
    while words:
        word = words.pop(0)
        if not word.startswith("-") or len(word) < 2:
            options = replace(options, ignored=(*options.ignored, f"{word} ({origin})"))
            continue
        letter, attached = word[1], word[2:]
        value = None
        if letter in _WITH_ARGUMENT:
            value = attached or (words.pop(0) if words else "")
        elif attached:  # -4C: single letters run together
            options = replace(options, ignored=(*options.ignored, f"{word} ({origin})"))
            continue
        if letter == "o" and value is not None:
            found = _KEYWORD.match(value)
            if found:
                options = options.fill(found.group(1), _unquote(found.group(2)), origin)
            continue
        by_letter = {"J": "ProxyJump", "i": "IdentityFile", "p": "Port", "l": "User"}
        if letter in by_letter and value is not None:
            options = options.fill(by_letter[letter], value, origin)
        elif letter == "F" and value is not None:
            config_file = config_file or value
        else:
            shown = f"{word} {value}" if value is not None and not attached else word
            options = replace(options, ignored=(*options.ignored, f"{shown} ({origin})"))
    return options, config_file


# -- one host's options --------------------------------------------------------


def ssh_options(
    name: str, variables: Mapping[str, Any], read: Any = None
) -> tuple[SshOptions, str | None]:
    """What ssh's arguments in ``variables`` and the ssh_config file say about ``name``
    (the name ssh is given: ansible_host, else the inventory name), and the file read.

    The file is ``-F`` from the arguments, else ``fleet_ssh_config``, else
    ``~/.ssh/config`` ("none": no file).  ``read(path) -> SshConfigFile | None``
    reads a file (None: it does not exist); by default ``read_config_file``."""
    options = SshOptions()
    named = None
    for var in ARG_VARS:
        text = variables.get(var)
        if text:
            options, given = apply_args(options, str(text), var)
            named = named or given
    path = named or str(variables.get(CONFIG_VAR) or USER_CONFIG)
    if path.lower() == "none":
        return options, None
    parsed = (read or read_config_file)(path)
    if parsed is None:
        if named or variables.get(CONFIG_VAR):
            raise ConfigError(f"ssh_config file {path} cannot be read")
        return options, None
    return parsed.apply(options, name), parsed.path


def read_config_file(path: str) -> SshConfigFile | None:
    """The file at ``path`` (``~`` expanded), parsed; None when it does not exist."""
    expanded = Path(path).expanduser()
    try:
        text = expanded.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"ssh_config file {expanded} cannot be read: {exc.strerror}") from exc
    return SshConfigFile.parse(text, str(expanded))


# -- a login's route (settings: fleet.transports.sshcommon.SshSettings) ----------


def host_options(host: HostPlan) -> tuple[SshOptions, str | None]:
    """What ssh_config and ssh's arguments say about ``host`` (by the name ssh is given)."""
    try:
        return ssh_options(host.address, host.vars, cached_config)
    except ConfigError as exc:
        raise ConfigError(f"host {host.name}: {exc}") from None


def login_address(name: str, ssh: SshOptions) -> str:
    """Where ssh connects for ``name``: its HostName (``%h`` expanded), else the name."""
    if not ssh.hostname:
        return name
    return ssh.hostname.replace("%h", name).replace("%%", "%")


def ignored_lines(hosts: Iterable[HostPlan]) -> list[str]:
    """One line per ssh option or ssh_config line the SSH hosts set and fleet ignores,
    with how many hosts set it (``fleet audit --verbose`` prints them)."""
    seen: dict[str, list[str]] = {}
    for host in hosts:
        if host.connection in ("ssh", "paramiko"):
            for item in host_options(host)[0].ignored:
                seen.setdefault(item, []).append(host.name)
    return [
        f"fleet: ssh option ignored: {item}, for {len(names)} host(s): {', '.join(names[:3])}"
        + (", ..." if len(names) > 3 else "")
        for item, names in seen.items()
    ]


def cached_config(path: str) -> SshConfigFile | None:
    """An ssh_config file, parsed once while it does not change (hosts share it); looked
    at again at most once a second, as every host of an audit asks for it."""
    return _config_now(path, int(time.monotonic()))


@functools.lru_cache(maxsize=16)
def _config_now(path: str, second: int) -> SshConfigFile | None:
    expanded = Path(path).expanduser()
    try:
        stat = expanded.stat()
    except FileNotFoundError:
        return None
    except OSError:
        return read_config_file(path)  # says why
    return _parsed_config(str(expanded), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _parsed_config(path: str, mtime: int, size: int) -> SshConfigFile | None:
    return read_config_file(path)


def config_path(value: str | None, address: str, user: str) -> Path | None:
    if not value or value.lower() == "none":
        return None
    return expand_path(value, address, user)


def with_proxy(
    settings: SshSettings,
    ssh: SshOptions,
    config_file: str | None,
    depth: int = 0,
    *,
    hops_checked: bool = True,
) -> SshSettings:
    """``settings`` with their ProxyJump hops (each a login of its own, read from the same
    ssh_config) or ProxyCommand.  A hop's host key is checked unless the run turns
    checking off (``hops_checked`` False) or the hop's own ssh_config block does."""
    if ssh.proxy_command and ssh.proxy_command.lower() != "none":
        command = expand_tokens(
            ssh.proxy_command, settings.address, settings.port, settings.user, settings.host
        )
        return replace(settings, proxy_command=command)
    via = None
    for hop in ssh.jumps():
        if depth > 8:
            raise ConfigError("ProxyJump: more than 8 hops (a loop in ssh_config?)")
        via = _hop_settings(settings, hop, via, config_file, depth, hops_checked)
    return replace(settings, via=via) if via is not None else settings


def _hop_settings(
    target: SshSettings,
    hop: Hop,
    via: SshSettings | None,
    config_file: str | None,
    depth: int,
    hops_checked: bool,
) -> SshSettings:
    """A jump host's settings: its ProxyJump spec, then ssh_config's block for its name.
    The target's key, known_hosts and timeouts stand in for what ssh_config leaves unset;
    the target's opt-outs of host-key checking do not."""
    parsed = cached_config(config_file) if config_file else None
    ssh = parsed.apply(SshOptions(), hop.host) if parsed else SshOptions()
    address = login_address(hop.host, ssh)
    user = hop.user or ssh.user or os.environ.get("USER") or "root"
    settings = replace(
        target,
        host=hop.host,
        address=address,
        port=hop.port or ssh.port or 22,
        user=user,
        key_file=config_path(ssh.identity_file, address, user) or target.key_file,
        password=None,
        host_key_checking=hops_checked and ssh.checks_host_keys,
        known_hosts=config_path(ssh.known_hosts_file, address, user) or target.known_hosts,
        via=via,
        proxy_command=None,
        ignored=(),
    )
    if via is None:  # the first hop may have a ProxyJump of its own
        return with_proxy(settings, ssh, config_file, depth + 1, hops_checked=hops_checked)
    return settings


# What a host or user name expanded into a ProxyCommand may not hold (as OpenSSH 9.6
# refuses): quoting alone fails where the command line quotes ``%h`` itself.
_SHELL_CHARS = re.compile(r"[\s'\"`$;&|<>(){}*?!\\~#]")


def expand_tokens(text: str, host: str, port: int, user: str, original: str = "") -> str:
    """ssh_config's ``%h %p %r %n %d %u %%`` in ``text``; host and user shell-quoted, as
    ProxyCommand runs under a shell, and refused if they hold shell metacharacters."""
    for what, value in (("host", host), ("user", user), ("host", original)):
        if _SHELL_CHARS.search(value):
            raise ConfigError(
                f"ProxyCommand: the {what} name {value!r} holds shell metacharacters; "
                "fleet will not put it into a shell command (check ansible_host/ansible_user)"
            )
    values = {
        "h": shlex.quote(host),
        "p": str(port),
        "r": shlex.quote(user),
        "n": shlex.quote(original or host),
        "d": shlex.quote(str(Path.home())),
        "u": shlex.quote(os.environ.get("USER") or "root"),
        "%": "%",
    }
    return re.sub(r"%(.)", lambda m: values.get(m.group(1), m.group(0)), text)


def expand_path(text: str, host: str, user: str) -> Path:
    """An IdentityFile or UserKnownHostsFile value as a path (``~``, ``%d %h %r %u``)."""
    values = {"d": str(Path.home()), "h": host, "r": user, "u": os.environ.get("USER") or "root"}
    values["%"] = "%"
    expanded = re.sub(r"%(.)", lambda m: values.get(m.group(1), m.group(0)), text)
    return Path(expanded).expanduser()
