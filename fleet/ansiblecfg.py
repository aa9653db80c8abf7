"""ansible.cfg and ANSIBLE_* variables: the settings of an Ansible setup fleet honours.

The file is found as Ansible finds it: ``$ANSIBLE_CONFIG`` (a file, or a
directory holding ansible.cfg), ``./ansible.cfg`` (not in a world-writable
directory, as Ansible refuses it there), ``~/.ansible.cfg``,
``/etc/ansible/ansible.cfg``; the first that exists is the only one read.
Each setting is taken from the environment, else from that file; the command
line wins over both (fleet.app.request).  Paths written in the file are
relative to the file's directory, as in Ansible.
"""

from __future__ import annotations

import configparser
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleet.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/ansible/ansible.cfg")


@dataclass(frozen=True)
class Known:
    """One setting fleet reads: where Ansible keeps it, and whether it is a path."""

    name: str
    env: str
    section: str = "defaults"
    key: str = ""
    paths: bool = False  # a path, or a comma-separated list of paths

    @property
    def ini_key(self) -> str:
        return self.key or self.name


KNOWN = (
    Known("inventory", "ANSIBLE_INVENTORY", paths=True),
    Known("forks", "ANSIBLE_FORKS"),
    Known("remote_user", "ANSIBLE_REMOTE_USER"),
    Known("private_key_file", "ANSIBLE_PRIVATE_KEY_FILE", paths=True),
    Known("host_key_checking", "ANSIBLE_HOST_KEY_CHECKING"),
    Known("timeout", "ANSIBLE_TIMEOUT"),
    Known("vault_password_file", "ANSIBLE_VAULT_PASSWORD_FILE", paths=True),
    Known("vault_identity_list", "ANSIBLE_VAULT_IDENTITY_LIST"),
    Known("ssh_args", "ANSIBLE_SSH_ARGS", section="ssh_connection"),
    Known("force_valid_group_names", "ANSIBLE_TRANSFORM_INVALID_GROUP_CHARS"),
)


@dataclass(frozen=True)
class Setting:
    """A value and where it came from (``ANSIBLE_FORKS``, ``/srv/ansible.cfg [defaults]``)."""

    value: str
    origin: str


@dataclass(frozen=True)
class AnsibleConfig:
    """The settings found, by name; ``path`` is the ansible.cfg read, if any."""

    path: Path | None = None
    settings: Mapping[str, Setting] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def get(self, name: str) -> str | None:
        found = self.settings.get(name)
        return found.value if found else None


def find_config_file(
    env: Mapping[str, str], cwd: Path, home: Path
) -> tuple[Path | None, tuple[str, ...]]:
    """The ansible.cfg Ansible would read, and a warning when ./ansible.cfg is refused."""
    warnings: list[str] = []
    given = env.get("ANSIBLE_CONFIG")
    candidates: list[Path] = []
    if given:
        path = Path(os.path.expandvars(given)).expanduser()
        candidates.append(path / "ansible.cfg" if path.is_dir() else path)
    local = cwd / "ansible.cfg"
    if local.is_file() and _world_writable(cwd):
        warnings.append(f"{local} ignored: {cwd} is world writable (as Ansible does)")
    else:
        candidates.append(local)
    candidates += [home / ".ansible.cfg", SYSTEM_CONFIG]
    return next((c for c in candidates if c.is_file()), None), tuple(warnings)


def _world_writable(directory: Path) -> bool:
    try:
        return bool(directory.stat().st_mode & stat.S_IWOTH)
    except OSError:
        return False


def load_config(
    env: Mapping[str, str] | None = None, cwd: Path | None = None, home: Path | None = None
) -> AnsibleConfig:
    """The settings of the Ansible setup in ``env`` and ``cwd`` (the process's by default)."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
    path, warnings = find_config_file(env, cwd, home)
    parser = _read(path) if path else None
    settings: dict[str, Setting] = {}
    for known in KNOWN:
        if env.get(known.env):
            settings[known.name] = Setting(_paths(env[known.env], known, cwd), known.env)
        elif parser is not None and path is not None and parser.has_option(*_where(known)):
            value = _value(parser, known, path)
            settings[known.name] = Setting(
                _paths(value, known, path.parent), f"{path} [{known.section}]"
            )
    return AnsibleConfig(path, settings, warnings)


def _where(known: Known) -> tuple[str, str]:
    return known.section, known.ini_key


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",))
    try:
        parser.read_string(path.read_text(encoding="utf-8", errors="replace"), str(path))
    except (OSError, configparser.Error) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"ansible.cfg cannot be read: {first}", path=path) from exc
    return parser


def _value(parser: configparser.ConfigParser, known: Known, path: Path) -> str:
    try:
        return parser.get(*_where(known)).strip()
    except configparser.InterpolationError:
        # e.g. a ControlPath with a lone %: what is written, as written.
        return parser.get(*_where(known), raw=True).strip()


def _paths(value: str, known: Known, base: Path) -> str:
    """Relative paths made absolute from ``base`` (the file's directory, or here)."""
    if not known.paths:
        return value
    parts = [part.strip() for part in value.split(",") if part.strip()]
    resolved = []
    for part in parts:
        expanded = Path(os.path.expandvars(part)).expanduser()
        resolved.append(str(expanded if expanded.is_absolute() else base / expanded))
    return ",".join(resolved)
