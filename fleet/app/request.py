"""What an audit is asked to do, and the one table of options that asks it.

``fleet audit`` (argparse, fleet.cli) and ``invoke audit`` (tasks.py) are both
built from :data:`AUDIT_OPTIONS`: the same names, defaults and help, and the
same :class:`AuditRequest` for the same options.  What the options leave out
comes from the Ansible setup (ANSIBLE_* variables, ansible.cfg; fleet.ansiblecfg)
with Ansible's precedence: command line, then environment, then ansible.cfg.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fleet.ansiblecfg import AnsibleConfig, load_config
from fleet.app.shard import shard_option
from fleet.errors import ConfigError
from fleet.inventory.builder import check_group_name_policy
from fleet.inventory.hostnames import address_problem, is_ip_address, shorten
from fleet.inventory.vault import VaultSecret, vault_secrets
from fleet.model import Shard
from fleet.plan import HostPlan
from fleet.truth import as_bool

DEFAULT_PLAYBOOK = "mail-connectivity"
DEFAULT_FORMATS = ("json", "csv", "html", "junit", "prom")


@dataclass(frozen=True)
class AuditRequest:
    """Everything an audit needs; the defaults are what `fleet audit` gives ops."""

    inventory: str = "local"
    playbook: str = DEFAULT_PLAYBOOK
    limit: str | None = None
    forks: int = 50
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    host_deadline: float = 180.0
    deadline: float | None = None
    host_key_checking: bool = True
    known_hosts: str | None = None
    report_dir: str = "reports"
    formats: tuple[str, ...] = DEFAULT_FORMATS
    mail_to: tuple[str, ...] = ()
    history: bool = True
    quiet: bool = False
    colour: bool | None = None  # None: colour when stdout is a terminal
    # From an Ansible setup: its options, ANSIBLE_* variables and ansible.cfg (fleet.ansiblecfg).
    vault_ids: tuple[str, ...] = ()
    vault_password_files: tuple[str, ...] = ()
    ask_vault_pass: bool = False
    remote_user: str | None = None
    private_key_file: str | None = None
    ssh_args: str | None = None  # [ssh_connection] ssh_args: the hosts' ansible_ssh_args
    group_names: str = "never"  # force_valid_group_names
    verbose: bool = False  # the full host x check table, not only the problems
    dispatch: bool = False  # send each zone's hosts to its workers (fleet.dispatch)
    shard: Shard | str | None = None  # --shard K/N, or "auto" (fleet.app.shard)


def positive_seconds(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{text!r} is not a positive number of seconds")
    return number


def whole_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{text!r} is not a whole number >= 1")
    return int(text)


def report_formats(text: str) -> tuple[str, ...]:
    from fleet.render import parse_formats

    return parse_formats(text)


def mail_addresses(text: str) -> tuple[str, ...]:
    """``a@x`` or ``a@x,b@x``, each checked to be a plain address (``user@domain``)."""
    addresses = tuple(filter(None, (part.strip() for part in text.split(","))))
    if not addresses:
        raise ConfigError(f"{text!r} holds no mail address")
    for address in addresses:
        problem = mail_address_problem(address)
        if problem:
            raise ConfigError(f"{shorten(address)!r} is not a mail address: {problem}")
    return addresses


#: RFC 5321's longest forward path (an address), and its longest local part.
MAX_MAIL_ADDRESS = 254
MAX_MAIL_LOCAL_PART = 64
# RFC 5322's dot-atom: what an address's user part is without quotes (non-ASCII allowed).
_LOCAL_PART = re.compile(r"^[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*$")


def mail_address_problem(address: str) -> str | None:
    """Why ``address`` is not ``user@domain`` (a DNS name or a ``[literal]``), or None."""
    if len(address) > MAX_MAIL_ADDRESS:
        return f"it is {len(address)} characters long (at most {MAX_MAIL_ADDRESS})"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "write it as user@domain"
    if len(local) > MAX_MAIL_LOCAL_PART or not _LOCAL_PART.match(local):
        return (
            f"the part before '@' is not a mail user name (at most {MAX_MAIL_LOCAL_PART} "
            "letters, digits and ._%+-)"
        )
    if domain.startswith("[") and domain.endswith("]"):
        ip = is_ip_address(domain[1:-1].removeprefix("IPv6:"))
        return None if ip else "a domain in brackets must be an IP address"
    problem = address_problem(domain)
    return f"the domain {shorten(domain)!r} is not a host name: {problem}" if problem else None


def _one_vault_id(text: str) -> tuple[str, ...]:
    if not text:
        raise ConfigError("an empty vault id or password file")
    return (text,)


@dataclass(frozen=True)
class AuditOption:
    """One option of `fleet audit` / `invoke audit`: its flags, the request field it sets.

    A value option reads its text with ``read`` (ConfigError says why not); a
    switch sets its field to ``switch``; a repeatable one adds to a tuple.
    """

    flags: tuple[str, ...]
    field: str
    help: str
    read: Callable[[str], Any] = str
    switch: bool | None = None
    repeat: bool = False

    @property
    def name(self) -> str:
        """The long flag without its dashes: ``connect-timeout``."""
        return self.flags[-1].lstrip("-")

    @property
    def short(self) -> str | None:
        """The one-letter flag without its dash, if it has one: ``i``."""
        return self.flags[0][1:] if len(self.flags) > 1 else None

    def value(self, text: str) -> Any:
        """The text given on a command line as the value the request holds."""
        try:
            return self.read(text)
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"argument {'/'.join(self.flags)}: {exc}") from None


AUDIT_OPTIONS: tuple[AuditOption, ...] = (
    AuditOption(
        ("-i", "--inventory"),
        "inventory",
        "inventories/NAME (here, else the bundled one: local) or a path (local)",
    ),
    AuditOption(
        ("-p", "--playbook"),
        "playbook",
        "playbooks/NAME (here, else the bundled one) or a path (mail-connectivity)",
    ),
    AuditOption(("-l", "--limit"), "limit", "Ansible host pattern, e.g. 'mail:!mx-old*'"),
    AuditOption(("-f", "--forks"), "forks", "hosts audited at once (50)", whole_number),
    AuditOption(
        ("--connect-timeout",),
        "connect_timeout",
        "seconds for the login: connect, banner, key exchange, authentication (10)",
        positive_seconds,
    ),
    AuditOption(
        ("--command-timeout",),
        "command_timeout",
        "deadline per host command (120)",
        positive_seconds,
    ),
    AuditOption(("--host-deadline",), "host_deadline", "per host (180)", positive_seconds),
    AuditOption(
        ("--deadline",),
        "deadline",
        "end the whole run after this many seconds",
        positive_seconds,
    ),
    AuditOption(
        ("--no-host-key-checking",),
        "host_key_checking",
        "accept unknown/changed SSH host keys (like ANSIBLE_HOST_KEY_CHECKING=False)",
        switch=False,
    ),
    AuditOption(("--known-hosts",), "known_hosts", "an extra known_hosts file"),
    AuditOption(
        ("--vault-id",),
        "vault_ids",
        "a vault password as LABEL@FILE, LABEL@prompt or FILE (repeatable)",
        _one_vault_id,
        repeat=True,
    ),
    AuditOption(
        ("--vault-password-file",),
        "vault_password_files",
        "a file holding the vault password, or a script printing it (repeatable)",
        _one_vault_id,
        repeat=True,
    ),
    AuditOption(("--ask-vault-pass",), "ask_vault_pass", "ask for the vault password", switch=True),
    AuditOption(
        ("-u", "--user"), "remote_user", "log in as this user where the inventory names none"
    ),
    AuditOption(
        ("--private-key",),
        "private_key_file",
        "SSH key file where the inventory names none",
    ),
    AuditOption(
        ("--ssh-args",),
        "ssh_args",
        "ssh's arguments (-J, -F, -o ProxyJump=...) where the inventory sets no ansible_ssh_args",
    ),
    AuditOption(
        ("--group-names",),
        "group_names",
        "force_valid_group_names: never (keep, warn), always, silently, ignore (never)",
        check_group_name_policy,
    ),
    AuditOption(
        ("--shard",),
        "shard",
        "audit part K of N of the selected hosts (K/N, or auto from CI_NODE_INDEX/CI_NODE_TOTAL "
        "or JOB_COMPLETION_INDEX/FLEET_SHARD_TOTAL); a shard neither mails nor records "
        "history: fleet merge does",
        shard_option,
    ),
    AuditOption(("--report-dir",), "report_dir", "where reports and the history go (reports)"),
    AuditOption(
        ("--format",),
        "formats",
        "report formats besides json: csv,html,junit,prom (all)",
        report_formats,
    ),
    AuditOption(
        ("--mail-to",),
        "mail_to",
        "mail the report to these addresses (repeatable, or comma-separated)",
        mail_addresses,
        repeat=True,
    ),
    AuditOption(
        ("--no-history",),
        "history",
        "neither compare with the previous run nor record this one",
        switch=False,
    ),
    AuditOption(("-q", "--quiet"), "quiet", "no progress output", switch=True),
    AuditOption(
        ("--no-colour",),
        "colour",
        "no colour in the table (default: colour on a terminal)",
        switch=False,
    ),
    AuditOption(
        ("--verbose",),
        "verbose",
        "print every host and check after the findings, not only the problems",
        switch=True,
    ),
    AuditOption(
        ("--dispatch",),
        "dispatch",
        "send each zone's hosts (fleet_zone) to the workers of its queue (fleet worker), "
        "broker from FLEET_BROKER_URL, and merge their runs",
        switch=True,
    ),
)


# The audit options `fleet merge` / `invoke merge` take: how the merged run is reported.
MERGE_FIELDS = ("report_dir", "formats", "mail_to", "history", "colour", "verbose")


def audit_option(field: str) -> AuditOption:
    """The audit option that sets this request field."""
    return next(option for option in AUDIT_OPTIONS if option.field == field)


def audit_request(given: Mapping[str, Any], config: AnsibleConfig | None = None) -> AuditRequest:
    """The request from the options given, by request field, each already read
    (``AuditOption.value``); a repeatable option gives a list of what each use read.

    What is not given comes from ``config`` (ANSIBLE_* variables and ansible.cfg; by
    default those of this process and directory), else the request's defaults."""
    values = dict(given)
    for option in AUDIT_OPTIONS:
        if option.repeat and option.field in values:
            values[option.field] = tuple(v for read in values[option.field] for v in read)
    for name, value in config_defaults(load_config() if config is None else config).items():
        if name == "vault_ids":  # as Ansible: the configured ids, then those given
            values[name] = (*value, *values.get(name, ()))
        else:
            values.setdefault(name, value)
    return AuditRequest(**values)


def config_defaults(config: AnsibleConfig) -> dict[str, Any]:
    """Request fields from an Ansible setup's settings; ConfigError names the bad one."""
    readers: dict[str, tuple[str, Callable[[str], Any]]] = {
        "inventory": ("inventory", lambda text: text.split(",")[0]),
        "forks": ("forks", whole_number),
        "timeout": ("connect_timeout", positive_seconds),
        "host_key_checking": ("host_key_checking", lambda t: as_bool(t, "host_key_checking")),
        "remote_user": ("remote_user", str),
        "private_key_file": ("private_key_file", str),
        "ssh_args": ("ssh_args", str),
        "vault_password_file": ("vault_password_files", lambda text: (text,)),
        "vault_identity_list": (
            "vault_ids",
            lambda text: tuple(p.strip() for p in text.split(",") if p.strip()),
        ),
        "force_valid_group_names": ("group_names", check_group_name_policy),
    }
    found: dict[str, Any] = {}
    for name, setting in config.settings.items():
        if name not in readers:
            continue
        field, read = readers[name]
        try:
            found[field] = read(setting.value)
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"{name} from {setting.origin}: {exc}") from None
    return found


def vault_secrets_for(request: AuditRequest) -> tuple[VaultSecret, ...]:
    """The vault passwords the request names (files read, scripts run, prompts asked)."""
    return vault_secrets(request.vault_ids, request.vault_password_files, request.ask_vault_pass)


def with_login_defaults(hosts: Sequence[HostPlan], request: AuditRequest) -> list[HostPlan]:
    """Hosts given remote_user, private_key_file and ssh_args (as ``ansible_ssh_args``, read
    by fleet.transports.sshconfig) where the inventory names none."""
    key_vars = ("ansible_ssh_private_key_file", "ansible_private_key_file")
    planned = []
    for host in hosts:
        if request.remote_user and not host.user:
            host = replace(host, user=request.remote_user)
        if request.private_key_file and not any(host.vars.get(k) for k in key_vars):
            host = replace(
                host, vars={**host.vars, "ansible_private_key_file": request.private_key_file}
            )
        if request.ssh_args and not host.vars.get("ansible_ssh_args"):
            host = replace(host, vars={**host.vars, "ansible_ssh_args": request.ssh_args})
        planned.append(host)
    return planned


def request_from_text(given: Mapping[str, Any]) -> AuditRequest:
    """The request from options as a command line gives them, by option name
    (``connect-timeout``): the text of a value, the texts of a repeatable option, True
    for a switch given (None, False or empty: not given, the default applies);
    ConfigError for a bad value."""
    read: dict[str, Any] = {}
    for option in AUDIT_OPTIONS:
        value = given.get(option.name)
        if value is None or value is False or (option.repeat and not value):
            continue
        if option.switch is not None:
            read[option.field] = option.switch
        elif option.repeat:
            read[option.field] = [option.value(text) for text in value]
        else:
            read[option.field] = option.value(value)
    return audit_request(read)
