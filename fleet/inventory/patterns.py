"""Host patterns, as ``ansible --limit`` reads them.

``all`` or ``*``; a group or host name; wildcards ``mx*``; ``~regex``
(matched from the start of the name); several patterns joined with ``,``
(or ``:`` when no comma is used); ``&pattern`` keeps only hosts also in it;
``!pattern`` removes hosts; ``group[0]`` / ``group[0:2]`` pick hosts by position.

As Ansible: the plain patterns are applied first (their union), then every
``&``, then every ``!``, whatever order they were written in; with only
``&``/``!`` patterns the start is ``all``.  A pattern matching group names
selects those groups' hosts; it is also tried on host names when no group
matched or when it is a wildcard or regex.  Unknown names match nothing.

Positions count in Ansible's walk order of the group (its own hosts in the
order listed, then its child groups' level by level); the final list is in
inventory order.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from fleet.errors import InventoryError

if TYPE_CHECKING:
    from fleet.inventory.model import Inventory

# pattern[3] or pattern[1:4] or pattern[2:]
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)[:-]([0-9]*))\]$")
# Words of a ':'-joined pattern list: a run of anything but whitespace and
# ':', or a whole bracketed expression (so mx[01:03] stays one word).
_COLON_WORD = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
# A single host name, address or ranged name, maybe with :port: not a list.
_ADDRESS = re.compile(r"^(?:[\w\[\]-]+(?:\.[\w\[\]-]+)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")
_GLOB_CHARS = (".", "?", "*", "[")


def split_patterns(pattern: str) -> list[str]:
    """``a,b`` / ``a:b`` / ``a:!b`` -> single patterns (``mx[01:03]`` is one)."""
    if "," in pattern:
        words = pattern.split(",")
    elif _is_single_address(pattern.strip()):
        words = [pattern]
    else:
        words = _COLON_WORD.findall(pattern)
        left = _COLON_WORD.sub("", pattern).strip(": \t")
        if left:  # e.g. '~[': the regex would be cut to '~', which matches every host
            raise InventoryError(
                f"invalid host pattern {pattern!r}: an unmatched {left[0]!r}; write a "
                "regex holding ':' or brackets as one pattern of a ','-separated list"
            )
    return [w.strip() for w in words if w.strip()]


def _is_single_address(text: str) -> bool:
    """True for one host (``mx01``, ``mx01:2222``, ``mx[01:03]``, an IPv6 address)."""
    if text.count(":") >= 2 and "[" not in text and re.fullmatch(r"[0-9a-fA-F:.]+", text):
        return True  # a bare IPv6 address, whose colons separate nothing
    if not _ADDRESS.match(text):
        return False
    # A ':' outside brackets not followed only by digits joins two patterns.
    outside = re.sub(r"\[[^\]]*\]", "", text)
    return ":" not in outside or outside.rsplit(":", 1)[1].isdigit()


def order_patterns(patterns: Iterable[str]) -> list[str]:
    """Plain patterns first, then ``&`` ones, then ``!`` ones (``all`` if no plain one)."""
    plain: list[str] = []
    both: list[str] = []
    excluded: list[str] = []
    for p in patterns:
        (excluded if p[0] == "!" else both if p[0] == "&" else plain).append(p)
    return (plain or ["all"]) + both + excluded


def evaluate(inventory: Inventory, pattern: str) -> list[str]:
    """The host names ``pattern`` selects (order: as found; the caller sorts)."""
    chosen: list[str] = []
    for p in order_patterns(split_patterns(pattern)):
        if p in inventory.hosts:
            matched = [p]
        else:
            matched = match_one(inventory, p[1:] if p[0] in "&!" else p)
        if p[0] == "!":
            drop = set(matched)
            chosen = [h for h in chosen if h not in drop]
        elif p[0] == "&":
            keep = set(matched)
            chosen = [h for h in chosen if h in keep]
        else:
            have = set(chosen)
            chosen.extend(h for h in dict.fromkeys(matched) if h not in have)
    return chosen


def match_one(inventory: Inventory, pattern: str) -> list[str]:
    """Hosts of one pattern without its ``&``/``!`` prefix, subscript applied."""
    expression, subscript = _split_subscript(pattern)
    hosts = _enumerate(inventory, expression)
    if not hosts or subscript is None:
        return hosts
    start, end = subscript
    try:
        if end is None:
            return [hosts[start]]
    except IndexError as exc:
        raise InventoryError(
            f"host pattern {pattern!r}: position {start} is past the {len(hosts)} matching hosts"
        ) from exc
    if end == -1:
        end = len(hosts) - 1
    return hosts[start : end + 1]


def _split_subscript(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    if pattern.startswith("~"):
        return pattern, None  # a regex keeps its brackets
    match = _SUBSCRIPT.match(pattern)
    if not match:
        return pattern, None
    expression, index, start, end = match.groups()
    if index is not None:
        return expression, (int(index), None)
    return expression, (int(start), int(end) if end else -1)


def _enumerate(inventory: Inventory, pattern: str) -> list[str]:
    matcher = _compile(pattern)
    hosts: list[str] = []
    groups = [g for g in inventory.groups if matcher(g)]
    for group in groups:
        hosts.extend(inventory.walk_hosts(group))
    if not groups or pattern.startswith("~") or any(c in pattern for c in _GLOB_CHARS):
        hosts.extend(h for h in inventory.hosts if matcher(h))
    return list(dict.fromkeys(hosts))


def _compile(pattern: str) -> Callable[[str], re.Match[str] | None]:
    try:
        if pattern.startswith("~"):
            return re.compile(pattern[1:]).match
        return re.compile(fnmatch.translate(pattern)).match
    except re.error as exc:
        raise InventoryError(f"invalid host pattern {pattern!r}: {exc}") from exc
