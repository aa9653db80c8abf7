"""A WinRM host's settings, read once from its Ansible variables (``ansible_winrm_*``).

An inventory written for Ansible works unchanged, with safer defaults:

* HTTPS (5986) with certificate validation unless told otherwise;
* NTLM over plain HTTP only with message encryption;
* Basic over plain HTTP refused unless ``fleet_winrm_allow_insecure_basic``.

No WinRM library is imported here: the runner reads the login port (for
``reach``) without loading pywinrm.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleet import causes
from fleet.errors import ConfigError, UnreachableError
from fleet.plan import HostPlan, RunOptions
from fleet.truth import as_bool

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


@dataclass(frozen=True)
class KerberosSettings:
    """How to get and use a Kerberos ticket, as Ansible's winrm connection reads it.

    ``managed``: fleet gets the ticket with the inventory's password into a
    private credential cache (``ansible_winrm_kinit_mode=managed``, the default
    when a password is set); else the runner's own ticket (``kinit``) is used.
    """

    managed: bool = False
    kinit_cmd: str | None = None  # a kinit program to run instead of the library
    kinit_args: tuple[str, ...] | None = None
    delegation: bool = False  # forwardable ticket, delegated to the host
    hostname_override: str | None = None  # the SPN's host: HTTP/<this>
    service: str = "HTTP"


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
    kerberos: KerberosSettings = KerberosSettings()

    @staticmethod
    def login_port(host: HostPlan) -> int:
        """The port WinRM listens on: ``ansible_port``, else 5985 for http and 5986 for https."""
        if host.port:
            return int(host.port)
        return 5985 if _scheme(host) == "http" else 5986

    @classmethod
    def from_host(cls, host: HostPlan, options: RunOptions) -> WinRMSettings:
        """Read ``host``'s WinRM settings; ConfigError names a malformed variable."""
        v = host.vars
        scheme = _scheme(host)
        port = cls.login_port(host)
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
        auth = _auth_method(host.name, _var(v, "ansible_winrm_transport"))
        password = _var(v, "ansible_password", "ansible_winrm_password", "ansible_winrm_pass")
        return cls(
            host=host.name,
            address=host.address,
            scheme=scheme,
            port=port,
            path=path if path.startswith("/") else f"/{path}",
            auth=auth,
            user=_var(v, "ansible_user", "ansible_winrm_user") or host.user,
            password=password,
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
            allow_insecure_basic=_flag(
                host.name,
                "fleet_winrm_allow_insecure_basic",
                _var(v, "fleet_winrm_allow_insecure_basic"),
            ),
            proxy=_var(v, "ansible_winrm_proxy"),
            kerberos=_kerberos(host.name, v, password),
        )

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


def _kerberos(host: str, v: Mapping[str, Any], password: Any) -> KerberosSettings:
    # As Ansible: without ansible_winrm_kinit_mode, a password means managed.
    mode = _choice(
        host,
        "ansible_winrm_kinit_mode",
        _var(v, "ansible_winrm_kinit_mode"),
        ("managed", "manual"),
        "managed" if password is not None else "manual",
    )
    args = _var(v, "ansible_winrm_kinit_args")
    try:
        kinit_args = tuple(shlex.split(str(args))) if args is not None else None
    except ValueError as exc:  # an unbalanced quote
        raise ConfigError(f"host {host}: ansible_winrm_kinit_args: {exc}") from None
    return KerberosSettings(
        managed=mode == "managed",
        kinit_cmd=_var(v, "ansible_winrm_kinit_cmd"),
        kinit_args=kinit_args,
        delegation=_flag(
            host, "ansible_winrm_kerberos_delegation", _var(v, "ansible_winrm_kerberos_delegation")
        ),
        hostname_override=_var(v, "ansible_winrm_kerberos_hostname_override"),
        service=str(_var(v, "ansible_winrm_service") or "HTTP"),
    )


def _scheme(host: HostPlan) -> str:
    value = _var(host.vars, "ansible_winrm_scheme")
    # As Ansible: without a scheme, port 5985 means http and anything else https.
    default = "http" if host.port is not None and int(host.port) == 5985 else "https"
    return _choice(host.name, "ansible_winrm_scheme", value, SCHEMES, default)


def _flag(host: str, name: str, value: Any) -> bool:
    if value is None:
        return False
    try:
        return as_bool(value, name)
    except ValueError as exc:
        raise ConfigError(f"host {host}: {exc}") from None


def refusal(settings: WinRMSettings) -> UnreachableError | None:
    """Why these settings would put the password or the traffic in clear text, if they would."""
    if settings.scheme == "https":
        return None
    if settings.auth in CLEARTEXT_AUTH and not settings.allow_insecure_basic:
        return UnreachableError(
            f"refused to send Basic credentials over plain HTTP to {settings.where}",
            "use ansible_winrm_scheme=https (port 5986) or ansible_winrm_transport=ntlm; "
            "set fleet_winrm_allow_insecure_basic=true only for a lab",
            cause=causes.CONFIG_MISSING,
        )
    if settings.auth == "certificate":
        return UnreachableError(
            f"certificate authentication needs HTTPS, not plain HTTP to {settings.where}",
            "set ansible_winrm_scheme=https (port 5986)",
            cause=causes.CONFIG_MISSING,
        )
    if settings.auth in SEALING_AUTH and settings.message_encryption == "never":
        return UnreachableError(
            f"refused unencrypted WinRM over plain HTTP to {settings.where}",
            "remove ansible_winrm_message_encryption=never, or use ansible_winrm_scheme=https",
            cause=causes.CONFIG_MISSING,
        )
    return None


def pywinrm_encryption(settings: WinRMSettings) -> str:
    # Over plain HTTP the messages must be sealed: "always" makes pywinrm fail
    # rather than quietly fall back to clear text.
    if settings.scheme == "http" and settings.auth in SEALING_AUTH:
        return "always"
    return settings.message_encryption


def pywinrm_trust(settings: WinRMSettings) -> str:
    # Unset: pywinrm's "legacy_requests" (REQUESTS_CA_BUNDLE, else certifi), as Ansible does.
    return settings.ca_trust_path or "legacy_requests"
