"""Host entries as an inventory writes them: ``mx[01:20].example.com:2222``.

One entry names one host or, with ``[begin:end]`` / ``[begin:end:step]``
ranges, many; an optional ``:port`` applies to all of them.  The rules are
those of Ansible's inventory plugins (numeric ranges keep the zero padding of
``begin``; alphabetic ranges run over ``a..z`` then ``A..Z``; several ranges
in one name multiply).

Errors are ``ValueError`` with a message for an operator; the INI and YAML
readers add the file and line.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
import string
from typing import Any

from fleet.inventory.limits import MAX_HOSTS_PER_RANGE

# ``host:port``, where the host part may hold complete ``[...]`` ranges but no
# other colon (so a bare IPv6 address never loses its last group to a "port").
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
# ``[anything]:port``: the only way to give a port with an IPv6 address.
_BRACKETED_HOST_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_RANGE = re.compile(r"\[([^\]]*)\]")


def split_port(entry: str) -> tuple[str, int | None]:
    """``mx01:2222`` -> (``mx01``, 2222); ``[2001:db8::1]:22`` -> (``2001:db8::1``, 22)."""
    match = _BRACKETED_HOST_PORT.match(entry)
    if match and _is_ipv6(match.group(1)):
        return match.group(1), int(match.group(2))
    match = _HOST_PORT.match(entry)
    if match and match.group(1):
        return match.group(1), int(match.group(2))
    return entry, None


def _is_ipv6(text: str) -> bool:
    return is_ip_address(text, ipaddress.IPv6Address)


def is_ip_address(text: str, kind: Any = ipaddress.ip_address) -> bool:
    """True when ``text`` is an IP address (of ``kind``: IPv6Address for IPv6 only)."""
    try:
        kind(text)
    except ValueError:
        return False
    return True


def expand_host_entry(entry: str) -> tuple[list[str], int | None]:
    """The host names and the port of one inventory host entry."""
    name, port = split_port(entry.strip())
    if entry.strip().endswith(":") and port is None:
        raise ValueError(
            f"host {entry!r} ends in ':' with no port number: write host:port, e.g. mx01:2222"
        )
    if name.strip() == "---":
        raise ValueError("'---' is not a host name; it usually means a YAML file read as INI")
    return expand_ranges(name), port


def expand_ranges(name: str) -> list[str]:
    """``mx[01:03]`` -> ``mx01 mx02 mx03``; a name without ``[`` is returned alone.

    Several ranges multiply; more than MAX_HOSTS_PER_RANGE names is an error,
    found before any name is made.
    """
    if "[" not in name:
        return [name]
    pieces = _RANGE.split(name)
    texts, specs = pieces[0::2], pieces[1::2]
    if any("[" in text for text in texts):
        raise ValueError(f"host range in {name!r} has no closing ']': write e.g. mx[01:20]")
    items = [_range_items(spec, name) for spec in specs]
    if math.prod(len(i) for i in items) > MAX_HOSTS_PER_RANGE:
        raise _too_many(name)
    return [
        "".join(itertools.chain.from_iterable(zip(texts, chosen, strict=False))) + texts[-1]
        for chosen in itertools.product(*items)
    ]


def _too_many(name: str) -> ValueError:
    return ValueError(
        f"host range {name!r} makes more than {MAX_HOSTS_PER_RANGE:,} hosts "
        "(fleet.inventory.limits.MAX_HOSTS_PER_RANGE): split it, or check the bounds"
    )


def _range_items(spec: str, name: str) -> list[str]:
    """The items of one ``begin:end[:step]`` range, formatted as Ansible does."""
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(
            f"host range [{spec}] in {name!r} must be [begin:end] or [begin:end:step], "
            "e.g. mx[01:20] or mx[01:20:2]"
        )
    begin, end = bounds[0] or "0", bounds[1]
    step = _range_step(bounds[2] if len(bounds) == 3 else "1", spec, name)
    if not end:
        raise ValueError(f"host range [{spec}] in {name!r} has no end: write e.g. [01:20]")
    if (
        len(begin) == len(end) == 1
        and begin in string.ascii_letters
        and end in string.ascii_letters
    ):
        return _letter_range(begin, end, step, spec, name)
    return _number_range(begin, end, step, spec, name)


def _range_step(text: str, spec: str, name: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"host range [{spec}] in {name!r}: the step must be a number >= 1")
    return int(text)


def _letter_range(begin: str, end: str, step: int, spec: str, name: str) -> list[str]:
    letters = string.ascii_letters  # a..z then A..Z, as Ansible orders them
    first, last = letters.index(begin), letters.index(end)
    if first > last:
        raise ValueError(f"host range [{spec}] in {name!r} runs backwards: begin must be <= end")
    return list(letters[first : last + 1 : step])


def _number_range(begin: str, end: str, step: int, spec: str, name: str) -> list[str]:
    if not (begin.isdigit() and end.isdigit()):
        raise ValueError(
            f"host range [{spec}] in {name!r} must be numbers (e.g. [01:20]) "
            "or single letters (e.g. [a:f])"
        )
    # A zero-padded begin fixes the width of every item: [01:20] -> 01..20.
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and len(end) != width:
        raise ValueError(
            f"host range [{spec}] in {name!r}: a zero-padded begin needs an end of the "
            f"same width, e.g. [{begin}:{end.zfill(width)}]"
        )
    # Ansible silently yields no host for [20:01]; an empty range is a typo, so say so.
    if int(begin) > int(end):
        raise ValueError(f"host range [{spec}] in {name!r} runs backwards: begin must be <= end")
    numbers = range(int(begin), int(end) + 1, step)
    if len(numbers) > MAX_HOSTS_PER_RANGE:
        raise _too_many(name)
    return [str(i).zfill(width) for i in numbers]


#: DNS's own limits (RFC 1035): a label, and a whole name without its final dot.
MAX_DNS_LABEL = 63
MAX_DNS_NAME = 253
_LABEL = re.compile(r"^[^\W_](?:[\w-]*[^\W_])?$|^_[\w-]*$")


def address_problem(address: str) -> str | None:
    """Why ``address`` can be neither an IP address nor a DNS name, or None when it can.

    Letters of any script (internationalised names), digits, ``-`` and ``_``
    are allowed in labels, as resolvers and ``/etc/hosts`` accept them.
    """
    if is_ip_address(address.split("%", 1)[0]):  # fe80::1%eth0 keeps its zone
        return None
    name = address[:-1] if address.endswith(".") else address
    if not name:
        return "it is empty"
    if len(name) > MAX_DNS_NAME:
        return f"it is {len(name)} characters long (a DNS name has at most {MAX_DNS_NAME})"
    for label in name.split("."):
        if len(label) > MAX_DNS_LABEL:
            return (
                f"its label {shorten(label)!r} is {len(label)} characters long "
                f"(a DNS label has at most {MAX_DNS_LABEL})"
            )
        if not _LABEL.match(label):
            return (
                f"its label {shorten(label)!r} is not a DNS label "
                "(letters, digits and '-', with no '-' at either end)"
                if label
                else "it has an empty label ('..', or a leading '.')"
            )
    return None


def shorten(text: str, keep: int = 40) -> str:
    """``text`` cut to ``keep`` characters with an ellipsis, for messages about long values."""
    return text if len(text) <= keep else text[: keep - 1] + "…"
