"""What ``openssl s_client -starttls smtp`` printed, read: the handshake of a host without python3.

The fallback (``unix.FALLBACK``) runs s_client once the dialogue saw STARTTLS
offered, and ``openssl x509 -noout -enddate`` on the certificate s_client
printed.  s_client's words differ by version (1.0: ``subject=/CN=x``,
``New, TLSv1/SSLv3, ...`` and the protocol only under ``SSL-Session``; 3.x:
``subject=CN=x`` and ``New, TLSv1.3, ...``); each fact is read where the
version says it, and what no line said stays empty.  ``Cipher is (NONE)`` is
a failed handshake: its error is openssl's own ``error:`` line.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from typing import Any

_NEW = re.compile(r"^New, (?P<proto>[^,]+), Cipher is (?P<cipher>\S+)")
_PROTOCOL = re.compile(r"^\s*Protocol\s*:\s*(?P<proto>\S+)")
_VERIFY = re.compile(r"^\s*Verify return code: (?P<code>\d+) \((?P<why>[^)]*)\)")
_ERROR = re.compile(r":error:[0-9A-F]+:[^:]*:(?:[^:]*:)?(?P<why>[^:]+)")


def _name(value: str) -> str:
    """``CN = a, O = b`` (1.1), ``/CN=a/O=b`` (1.0) or ``CN=a,O=b`` (RFC 2253) as ``CN=a, O=b``."""
    value = value.strip()
    parts = value.lstrip("/").split("/") if value.startswith("/") else re.split(r",\s*", value)
    return ", ".join(re.sub(r"\s*=\s*", "=", p, count=1) for p in parts if p)


def _not_after(value: str) -> str:
    """``Dec  5 05:56:11 2027 GMT`` as ISO 8601 UTC, or '' when it is not that."""
    try:
        when = datetime.datetime.strptime(" ".join(value.split()), "%b %d %H:%M:%S %Y GMT")
    except ValueError:
        return ""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_s_client(lines: Iterable[str]) -> dict[str, Any]:
    """SmtpProbe's TLS fields (``tls_checked``, ``tls_protocol``, ``cert_*``...) from the output."""
    facts: dict[str, Any] = {"tls_checked": True, "tls_protocol": ""}
    new_proto, session_proto, errors = "", "", []
    for line in lines:
        if match := _NEW.match(line):
            if match["cipher"] != "(NONE)":
                new_proto = match["proto"].strip()
        elif match := _PROTOCOL.match(line):
            session_proto = match["proto"]
        elif match := _VERIFY.match(line):
            facts["cert_verified"] = match["code"] == "0"
            facts["cert_verify_error"] = "" if match["code"] == "0" else match["why"]
        elif line.startswith("subject=") and "cert_subject" not in facts:
            facts["cert_subject"] = _name(line[8:])
        elif line.startswith("issuer=") and "cert_issuer" not in facts:
            facts["cert_issuer"] = _name(line[7:])
        elif line.startswith("notAfter="):
            facts["cert_not_after"] = _not_after(line[9:])
        elif match := _ERROR.search(line):
            errors.append(match["why"].strip())
    if new_proto:
        # 1.0 says "TLSv1/SSLv3" on its "New," line: its session's line names the version.
        facts["tls_protocol"] = session_proto or new_proto
    else:
        why = errors[0] if errors else "no cipher agreed"
        facts["tls_error"] = f"TLS handshake failed: {why}"
        for key in ("cert_verified", "cert_verify_error", "cert_subject", "cert_issuer"):
            facts.pop(key, None)  # nothing was verified: there was no certificate
    return facts
