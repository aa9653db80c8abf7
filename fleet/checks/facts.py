"""Normalised facts that the platform parsers produce and the judges read.

Unix and Windows parsers differ; what they return does not.  Every type is
frozen and made of plain values so it turns into a CheckResult's ``facts``
with ``as_facts``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_FIELDS: dict[type, tuple[str, ...]] = {}


def as_facts(value: Any) -> Any:
    """``dataclasses.asdict`` for these plain, frozen types, without its deep copies.

    Every host's every result goes through this, and asdict's deepcopy of each
    leaf was a third of the time spent judging a host's output.
    """
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is tuple or kind is list:
        return kind(as_facts(v) for v in value)
    if kind is dict:
        return {k: as_facts(v) for k, v in value.items()}
    names = _FIELDS.get(kind)
    if names is None:
        if not dataclasses.is_dataclass(value):
            return value
        names = _FIELDS.setdefault(kind, tuple(f.name for f in dataclasses.fields(value)))
    return {name: as_facts(getattr(value, name)) for name in names}


_LEAVES = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class Address:
    """One IPv4 address on an interface."""

    address: str  # "198.18.0.11"
    prefix: int  # 24
    dynamic: bool | None = None  # from DHCP? None when the host does not say
    # Duplicate address detection as Windows reports it (Get-NetIPAddress AddressState):
    # Preferred, Deprecated, Tentative, Duplicate, Invalid; "" where the source has no
    # such field (WMI's Win32_NetworkAdapterConfiguration, Unix).
    state: str = ""


@dataclass(frozen=True)
class Interface:
    """One network adapter as the binding and ipconfig checks see it."""

    name: str
    up: bool  # administratively up and link up (UP,LOWER_UP / Status "Up")
    loopback: bool = False
    ipv4: tuple[Address, ...] = ()
    dhcp: bool | None = None  # None: unknown (Unix has no single signal)
    gateways: tuple[str, ...] = ()  # default gateways through this adapter
    dns: tuple[str, ...] = ()
    mac: str = ""
    description: str = ""
    # Windows: ComponentID -> enabled (ms_tcpip, ms_tcpip6, ms_msclient, ms_server, ...).
    # Empty on Unix, where "bound" means "has an address".
    bindings: tuple[tuple[str, bool], ...] = ()
    # Why this adapter is not one of the server's own connections, in the operator's words
    # ("failover cluster adapter", "Hyper-V switch uplink", "team member"); "" when it is.
    # The judges list such an adapter and leave its APIPA address or its unbound TCP/IP be.
    internal: str = ""


@dataclass(frozen=True)
class DefaultRoute:
    """One active default route, through ``gateway`` on ``interface``.

    ``gateway`` is "" for an on-link route (``default dev ppp0``: tun, WireGuard,
    point-to-point links), which has no next hop to name or ping.  ``metric`` is
    the route's (iproute2), or the route's plus its interface's (Windows).
    """

    gateway: str
    interface: str = ""
    metric: int | None = None
    table: str = ""  # a policy-routing table other than main ("100"), where the kernel said so
    linkdown: bool = False  # the kernel marks it so: its interface has no carrier
    proto: str = ""  # who installed it (iproute2: "dhcp", "static", ...)

    def describe(self) -> str:
        """The route in an operator's words: "198.18.0.1", "on-link via dev ppp0"."""
        where = self.gateway or f"on-link via dev {self.interface or '?'}"
        return f"{where} (table {self.table})" if self.table else where


@dataclass(frozen=True)
class NetConfig:
    """A host's interfaces, default gateways and DNS servers.

    ``default_gateways`` is ordered by preference: the first one is the one
    the host uses (the lowest metric), the one ``ping gateway`` probes.
    """

    interfaces: tuple[Interface, ...]
    default_gateways: tuple[str, ...] = ()
    dns_servers: tuple[str, ...] = ()
    source: str = ""  # which command the facts came from, e.g. "ip -j addr"
    default_routes: tuple[DefaultRoute, ...] = ()  # with their metrics, where the host says


@dataclass(frozen=True)
class PingResult:
    """ping from the audited host to one target."""

    target: str
    transmitted: int
    received: int
    rtt_min_ms: float | None = None
    rtt_avg_ms: float | None = None
    rtt_max_ms: float | None = None
    address: str = ""  # what the target resolved to
    error: str = ""  # "unknown host", "network unreachable", "no default gateway", ...

    @property
    def loss_percent(self) -> float:
        if self.transmitted == 0:
            return 100.0
        return round(100.0 * (self.transmitted - self.received) / self.transmitted, 1)


class SmtpOutcome:
    """How an SMTP probe ended: the values of ``SmtpProbe.outcome`` (plain strings)."""

    OK = "ok"  # 220 greeting, EHLO answered 250
    REFUSED = "refused"  # TCP RST: nothing listens on the port
    TIMEOUT = "timeout"  # no SYN-ACK, or no greeting within the timeout
    UNREACHABLE = "unreachable"  # no route / host unreachable (ICMP, ARP failed)
    UNRESOLVED = "unresolved"  # the name does not resolve on the host
    BAD_GREETING = "bad-greeting"  # greeting code is not 220 (421, 554, ...)
    ERROR = "error"  # anything else (connection reset, EHLO refused, ...)
    ALL = (OK, REFUSED, TIMEOUT, UNREACHABLE, UNRESOLVED, BAD_GREETING, ERROR)


@dataclass(frozen=True)
class SmtpProbe:
    """A polite SMTP conversation from the audited host to one target.

    ``starttls`` says the server offered it; ``tls_checked`` that the probe
    tried it (STARTTLS and the handshake), ``tls_protocol`` what was
    negotiated ("" when it failed: ``tls_error`` says why).  The certificate's
    facts are reported whether or not it verified against the host's CA store
    (``cert_verified``; None when not tried).
    """

    target: str
    port: int
    outcome: str  # one of SmtpOutcome.ALL
    address: str = ""
    greeting_code: int | None = None
    greeting: tuple[str, ...] = ()  # every line of the (possibly multi-line) 220, as received
    ehlo: tuple[str, ...] = ()  # the EHLO reply lines (extensions)
    starttls: bool = False
    error: str = ""
    connect_ms: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    greeting_ms: float | None = None  # from connected to the last greeting line
    stage: str = ""  # where the dialogue stopped: connect, greeting, ehlo, starttls, quit
    tls_checked: bool = False
    tls_protocol: str = ""  # "TLSv1.3"
    tls_error: str = ""  # "454 4.7.0 TLS not available ...", "TLS handshake failed: ..."
    cert_subject: str = ""  # "CN=mx1.example, O=Example"
    cert_issuer: str = ""
    cert_not_after: str = ""  # ISO 8601 UTC, "2026-01-31T12:00:00Z"
    cert_verified: bool | None = None
    cert_verify_error: str = ""  # "self-signed certificate", ...
    probe: str = ""  # the tools that talked on the host: python3, nc, bash, nc+openssl, ...


# -- facts back from a result's dict (report.json): the diagnosis reads typed facts


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else ()


def _address_from(data: Mapping[str, Any]) -> Address:
    return Address(
        str(data["address"]), int(data["prefix"]), data.get("dynamic"), str(data.get("state", ""))
    )


def _route_from(data: Mapping[str, Any]) -> DefaultRoute:
    metric = data.get("metric")
    return DefaultRoute(
        gateway=str(data.get("gateway") or ""),
        interface=str(data.get("interface", "")),
        metric=int(metric) if isinstance(metric, int) and not isinstance(metric, bool) else None,
        table=str(data.get("table", "")),
        linkdown=data.get("linkdown") is True,
        proto=str(data.get("proto", "")),
    )


def _interface_from(data: Mapping[str, Any]) -> Interface:
    return Interface(
        name=str(data["name"]),
        up=bool(data["up"]),
        loopback=bool(data.get("loopback", False)),
        ipv4=tuple(_address_from(a) for a in _tuple(data.get("ipv4"))),
        dhcp=data.get("dhcp"),
        gateways=tuple(map(str, _tuple(data.get("gateways")))),
        dns=tuple(map(str, _tuple(data.get("dns")))),
        mac=str(data.get("mac", "")),
        description=str(data.get("description", "")),
        bindings=tuple((str(c), bool(e)) for c, e in _tuple(data.get("bindings"))),
        internal=str(data.get("internal", "")),
    )


def net_config_from(data: Mapping[str, Any]) -> NetConfig:
    """The NetConfig a binding or ipconfig result's facts hold; ``ValueError`` if they hold none."""
    try:
        return NetConfig(
            interfaces=tuple(_interface_from(i) for i in _tuple(data["interfaces"])),
            default_gateways=tuple(map(str, _tuple(data.get("default_gateways")))),
            dns_servers=tuple(map(str, _tuple(data.get("dns_servers")))),
            source=str(data.get("source", "")),
            default_routes=tuple(_route_from(r) for r in _tuple(data.get("default_routes"))),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a network configuration: {exc!r}") from exc


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def ping_result_from(data: Mapping[str, Any]) -> PingResult:
    """The PingResult a ping result's facts hold; ``ValueError`` if they hold none."""
    try:
        return PingResult(
            target=str(data["target"]),
            transmitted=int(data["transmitted"]),
            received=int(data["received"]),
            rtt_min_ms=_number(data.get("rtt_min_ms")),
            rtt_avg_ms=_number(data.get("rtt_avg_ms")),
            rtt_max_ms=_number(data.get("rtt_max_ms")),
            address=str(data.get("address", "")),
            error=str(data.get("error", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a ping result: {exc!r}") from exc


def smtp_probe_from(data: Mapping[str, Any]) -> SmtpProbe:
    """The SmtpProbe an smtp result's facts hold; ``ValueError`` if they hold none."""
    try:
        code = data.get("greeting_code")
        return SmtpProbe(
            target=str(data["target"]),
            port=int(data.get("port") or 0),
            outcome=str(data["outcome"]),
            address=str(data.get("address", "")),
            greeting_code=int(code) if isinstance(code, int) else None,
            greeting=tuple(map(str, _tuple(data.get("greeting")))),
            ehlo=tuple(map(str, _tuple(data.get("ehlo")))),
            starttls=data.get("starttls") is True,
            error=str(data.get("error", "")),
            connect_ms=_number(data.get("connect_ms")),
            extra={str(k): str(v) for k, v in dict(data.get("extra") or {}).items()},
            greeting_ms=_number(data.get("greeting_ms")),
            stage=str(data.get("stage", "")),
            tls_checked=data.get("tls_checked") is True,
            tls_protocol=str(data.get("tls_protocol", "")),
            tls_error=str(data.get("tls_error", "")),
            cert_subject=str(data.get("cert_subject", "")),
            cert_issuer=str(data.get("cert_issuer", "")),
            cert_not_after=str(data.get("cert_not_after", "")),
            cert_verified=data.get("cert_verified")
            if isinstance(data.get("cert_verified"), bool)
            else None,
            cert_verify_error=str(data.get("cert_verify_error", "")),
            probe=str(data.get("probe", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an SMTP probe: {exc!r}") from exc
