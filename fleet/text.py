"""Host text made safe to show: the one sanitiser every report, mail and message uses.

Whatever a host prints (a greeting, an adapter name, an error) can hold
terminal escapes, NUL, bell, form feeds, C1 controls or Unicode bidi
overrides that reorder what a reader sees.  None of that carries meaning in a
report, so it is removed: escape sequences whole, other controls one by one.
``clean`` keeps the line structure (newlines and tabs); ``safe_text`` folds
the text onto one bounded line for tables, subjects and stderr.
"""

from __future__ import annotations

import re

# Escape sequences: CSI (ESC [ or the 8-bit 0x9b), OSC/DCS/APC/PM/SOS strings with their
# terminator, and the short ESC forms.  An unterminated string loses only its introducer.
_SEQUENCE = (
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]P^_X][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[ -/]*[0-~]"
)
# Characters that are never text: C0 (but tab and newline), DEL, C1, the bidi controls
# (Trojan Source, CVE-2021-42574), the line/paragraph separators, lone surrogates (from
# undecodable bytes) and the two non-characters.
_CONTROL = (
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
    "\ud800-\udfff\ufffe\uffff]"
)
_UNSAFE = re.compile(f"{_SEQUENCE}|{_CONTROL}")
_CARRIAGE = re.compile(r"\r\n?")
_FOLD = re.compile(r"[\t\n]")

NEWLINE = "\n"


def clean(text: object) -> str:
    """``text`` without escape sequences or control characters; lines and tabs kept
    (CR LF and a lone CR become a newline)."""
    return _UNSAFE.sub("", _CARRIAGE.sub(NEWLINE, str(text)))


def safe_text(text: object, limit: int | None = 160) -> str:
    """One printable line: ``clean``, newlines and tabs folded to spaces, at most
    ``limit`` characters (None: any length)."""
    line = _FOLD.sub(" ", clean(text))
    if limit is None or len(line) <= limit:
        return line
    return line[: limit - 1] + "…"


def is_clean(text: str) -> bool:
    """True when ``text`` holds nothing ``clean`` would remove (tests and audits use it)."""
    return "\r" not in text and _UNSAFE.search(text) is None
