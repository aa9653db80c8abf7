"""Check parameters from the playbook: defaults, coercion, and what a valid target is.

Every check says "unknown parameter", "must be a number" and "not a valid
host name" the same way, with one line naming the check and the key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from fleet import truth

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_SCOPE_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def valid_target(name: object) -> bool:
    """True for a host name (RFC 1123 labels; "_" tolerated) or an IPv4/IPv6 address.

    Anything else (spaces, ";", a leading "-" that a command would take for an
    option) is refused before it gets near a command line.
    """
    if not isinstance(name, str) or not name or len(name) > 253:
        return False
    if "%" in name and not _SCOPE_ID.fullmatch(name.partition("%")[2]):
        return False  # an IPv6 zone may not smuggle spaces or CR/LF into a protocol line
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def known_params(check: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """``ValueError`` naming the first parameter ``check`` does not take."""
    for key in params:
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ValueError(f"{check}: unknown parameter {key!r} (known: {known})")


def merged(check: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` over ``defaults``; ``ValueError`` on a parameter the check does not take."""
    known_params(check, params, defaults)
    return {**defaults, **params}


def as_bool(check: str, key: str, value: object) -> bool:
    return truth.as_bool(value, f"{check}: {key}")


def as_number(check: str, key: str, value: object, low: float, high: float) -> float:
    """``value`` as a number within [low, high]; ``ValueError`` with one clear line if not."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{check}: {key} must be a number, not {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"{check}: {key} must be between {low:g} and {high:g}, not {value!r}")
    return number


def as_int(check: str, key: str, value: object, low: int, high: int) -> int:
    number = as_number(check, key, value, low, high)
    if number != int(number):
        raise ValueError(f"{check}: {key} must be a whole number, not {value!r}")
    return int(number)


def as_targets(check: str, value: object) -> list[str]:
    """The target list, de-duplicated in order.  Invalid names are kept: they
    become ``error`` results naming the bad value, not a refused playbook."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
        raise ValueError(f"{check}: targets must be a list of host names, not {value!r}")
    return list(dict.fromkeys(t.strip() for t in items if t.strip()))
