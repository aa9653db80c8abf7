"""Why a result is not ok, as a machine-readable slug: the vocabulary every stage shares.

A cause is set where the problem is found (the transport that was refused,
the parser that could not read, the judge that saw APIPA) and travels with the
``CheckResult`` into report.json.  The diagnosis, the history and the renderers
read causes, never the wording of a summary, so a reworded message cannot
change a finding.  Adding a cause: a constant here, and its line in ``CAUSES``.
"""

from __future__ import annotations

# -- not audited: the runner could not log in or could not finish (status unreachable/error)
CONNECT_REFUSED = "connect-refused"  # nothing listens on the management port
CONNECT_TIMEOUT = "connect-timeout"  # no answer from the host or its management port
HOST_UNREACHABLE = "host-unreachable"  # no route to the host (ICMP, ARP)
NAME_UNRESOLVED = "name-unresolved"  # the host's name does not resolve (runner or host side)
AUTH_REFUSED = "auth-refused"  # the host refused the credentials
HOST_KEY_UNKNOWN = "host-key-unknown"  # the SSH host key is not in known_hosts
HOST_KEY_CHANGED = "host-key-changed"  # the SSH host key differs from known_hosts
CERTIFICATE_REJECTED = "certificate-rejected"  # the WinRM TLS certificate is not trusted
LOGIN_TIMEOUT = "login-timeout"  # connected, but the login did not finish in time
PROTOCOL_ERROR = "protocol-error"  # the service answered, not as SSH/WS-Management should
SERVICE_ERROR = "service-error"  # the management service failed (WinRM fault, HTTP 5xx)
CONFIG_MISSING = "config-missing"  # the inventory lacks what the login needs (key, password)
TRANSPORT_ERROR = "transport-error"  # anything else the transport could not do
# Kerberos (WinRM): each failure its own, as each has its own fix.
NO_TICKET = "no-ticket"  # no Kerberos ticket on the runner, or it expired
CLOCK_SKEW = "clock-skew"  # clocks of the runner, the KDC or the host too far apart
UNKNOWN_SPN = "unknown-spn"  # the KDC has no service principal HTTP/<host>
KDC_UNREACHABLE = "kdc-unreachable"  # no KDC of the realm answers the runner

# -- the audit on a logged-in host
COMMAND_TIMEOUT = "command-timeout"  # the audit command ran past its deadline
INTERRUPTED = "interrupted"  # the run was stopped (Ctrl-C, SIGTERM) before this finished
DEADLINE = "deadline"  # the run's --deadline passed before this finished
ZONE_UNAVAILABLE = "zone-unavailable"  # --dispatch: no worker of the host's zone ran it to the end
OUTPUT_LOST = "output-lost"  # the host's output did not come back (or not this step's part)
OUTPUT_TRUNCATED = "output-truncated"  # the output was cut at its cap
UNPARSED = "unparsed"  # the output is not what the step promised
TOOL_MISSING = "tool-missing"  # the host lacks the command a step needs
INVALID_TARGET = "invalid-target"  # a target that is not a host name or address
NO_TARGETS = "no-targets"  # nothing to probe (skipped)
BEHIND_BASTION = "behind-bastion"  # reach skipped: the host is reached through a jump host

# -- binding
TCPIP_UNBOUND = "tcpip-unbound"  # TCP/IP not bound or disabled on the connected adapters
NO_INTERFACE_UP = "no-interface-up"  # no adapter up with an IPv4 address
LOOPBACK_DOWN = "loopback-down"  # the loopback is down or lacks 127.0.0.1
MSCLIENT_UNBOUND = "msclient-unbound"  # Client for Microsoft Networks not bound (warn)
EXTRA_PROTOCOLS = "extra-protocols"  # other protocols bound (the KB's "simplify") (warn)

# -- ipconfig
NO_IPV4 = "no-ipv4"  # no usable IPv4 address
APIPA = "apipa"  # 169.254.x.x: DHCP failed
ZERO_ADDRESS = "zero-address"  # 0.0.0.0 on an adapter
NO_GATEWAY = "no-gateway"  # no default gateway
GATEWAY_OFF_SUBNET = "gateway-off-subnet"  # the gateway is outside every subnet of the host
NO_DNS = "no-dns"  # no DNS server (warn)

# -- ping and smtp, and the runner's reach probe (from the host, or from the runner)
PACKET_LOSS = "packet-loss"  # some replies lost
NO_REPLY = "no-reply"  # no reply at all
REFUSED = "refused"  # TCP RST: nothing listens on the port
TIMEOUT = "timeout"  # no SYN-ACK within the timeout
UNREACHABLE = "unreachable"  # no route, host unreachable
GREETING_TIMEOUT = "greeting-timeout"  # connected, no greeting within the timeout
BAD_GREETING = "bad-greeting"  # a greeting that is not 220 (421, 554, ...)
NO_STARTTLS = "no-starttls"  # STARTTLS required and not offered
SMTP_ERROR = "smtp-error"  # the SMTP dialogue failed otherwise (reset, EHLO refused)
SLOW_GREETING = "slow-greeting"  # the greeting came, late (postscreen, a banner delay) (warn)
STARTTLS_FAILED = "starttls-failed"  # STARTTLS offered, the TLS handshake failed
CERTIFICATE_EXPIRING = "certificate-expiring"  # the server's certificate expires soon (warn)
CERTIFICATE_EXPIRED = "certificate-expired"  # the server's certificate has expired
TTL_EXPIRED = "ttl-expired"  # "TTL expired in transit": a routing loop on the way

# -- the host's own addresses and links
ADDRESS_CONFLICT = "address-conflict"  # an address Windows marks Duplicate/Tentative/Invalid
NO_CARRIER = "no-carrier"  # the default route's interface has no link

# Every cause, with the few words a report may show beside it.
CAUSES: dict[str, str] = {
    CONNECT_REFUSED: "connection refused",
    CONNECT_TIMEOUT: "connection timed out",
    HOST_UNREACHABLE: "host unreachable",
    NAME_UNRESOLVED: "name does not resolve",
    AUTH_REFUSED: "credentials refused",
    HOST_KEY_UNKNOWN: "host key unknown",
    HOST_KEY_CHANGED: "host key changed",
    CERTIFICATE_REJECTED: "certificate rejected",
    LOGIN_TIMEOUT: "login timed out",
    PROTOCOL_ERROR: "protocol error",
    SERVICE_ERROR: "management service error",
    CONFIG_MISSING: "inventory incomplete",
    TRANSPORT_ERROR: "transport error",
    NO_TICKET: "no Kerberos ticket",
    CLOCK_SKEW: "clock skew",
    UNKNOWN_SPN: "service principal unknown",
    KDC_UNREACHABLE: "KDC unreachable",
    COMMAND_TIMEOUT: "audit command timed out",
    INTERRUPTED: "run interrupted",
    DEADLINE: "run deadline passed",
    ZONE_UNAVAILABLE: "zone worker unavailable",
    OUTPUT_LOST: "output lost",
    OUTPUT_TRUNCATED: "output truncated",
    UNPARSED: "output unparsed",
    TOOL_MISSING: "tool missing on the host",
    INVALID_TARGET: "invalid target",
    NO_TARGETS: "no targets",
    BEHIND_BASTION: "behind a bastion",
    TCPIP_UNBOUND: "TCP/IP not bound",
    NO_INTERFACE_UP: "no interface up",
    LOOPBACK_DOWN: "loopback down",
    MSCLIENT_UNBOUND: "Client for Microsoft Networks not bound",
    EXTRA_PROTOCOLS: "other protocols bound",
    NO_IPV4: "no IPv4 address",
    APIPA: "APIPA address",
    ZERO_ADDRESS: "0.0.0.0 address",
    NO_GATEWAY: "no default gateway",
    GATEWAY_OFF_SUBNET: "gateway outside the subnet",
    NO_DNS: "no DNS server",
    PACKET_LOSS: "packet loss",
    NO_REPLY: "no reply",
    REFUSED: "refused",
    TIMEOUT: "timed out",
    UNREACHABLE: "unreachable",
    GREETING_TIMEOUT: "no greeting",
    BAD_GREETING: "bad greeting",
    NO_STARTTLS: "no STARTTLS",
    SMTP_ERROR: "SMTP error",
    SLOW_GREETING: "slow greeting",
    STARTTLS_FAILED: "STARTTLS handshake failed",
    CERTIFICATE_EXPIRING: "certificate expires soon",
    CERTIFICATE_EXPIRED: "certificate expired",
    TTL_EXPIRED: "TTL expired in transit",
    ADDRESS_CONFLICT: "address conflict",
    NO_CARRIER: "no carrier",
}

# The causes that mean the runner never got (or never finished) the audit of a host.
NOT_AUDITED = frozenset(
    {
        CONNECT_REFUSED,
        CONNECT_TIMEOUT,
        HOST_UNREACHABLE,
        NAME_UNRESOLVED,
        AUTH_REFUSED,
        HOST_KEY_UNKNOWN,
        HOST_KEY_CHANGED,
        CERTIFICATE_REJECTED,
        LOGIN_TIMEOUT,
        PROTOCOL_ERROR,
        SERVICE_ERROR,
        CONFIG_MISSING,
        TRANSPORT_ERROR,
        NO_TICKET,
        CLOCK_SKEW,
        UNKNOWN_SPN,
        KDC_UNREACHABLE,
        INTERRUPTED,
        DEADLINE,
        ZONE_UNAVAILABLE,
    }
)
