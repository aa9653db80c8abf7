"""The smtp probe of a host without python3: the transcript its sh dialogue prints, read.

The step (``unix.FALLBACK``) talks SMTP through ``nc``/``busybox nc`` or bash's
``/dev/tcp`` and prints one line per event::

    fleet-smtp: probe nc          the tool it used
    fleet-smtp: port 25           the port it talked to
    S <line>                      a line from the connection (the server, or the tool's message)
    C EHLO | C QUIT               what it sent, when
    fleet-smtp: timeout           the probe's deadline ended the conversation
    fleet-smtp: exit <status>     the tool's exit status
    fleet-smtp: tls openssl       STARTTLS was offered: openssl s_client tries the handshake
    T <line>                      a line of s_client's output (``openssl.parse_s_client``)

Such a tool measures no time: ``connect_ms``/``greeting_ms`` stay None; without
openssl it does no TLS either: ``tls_checked`` False (unknown, never guessed).
With openssl the probe is ``nc+openssl`` (or ``bash+openssl``); the tool's own
words tell refused, unreachable and unresolved apart, and what it did not say
is an ``error`` with its words.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from fleet.checks.facts import SmtpOutcome, SmtpProbe
from fleet.checks.smtp.openssl import parse_s_client

MARK = "fleet-smtp: "
_REPLY = re.compile(r"\d{3}(?:[ -]|$)")
# What nc (BusyBox, OpenBSD with -v, traditional, ncat) and bash say about the connect.
_TOOL_SAYS = (
    (re.compile(r"refused", re.I), SmtpOutcome.REFUSED),
    (
        re.compile(
            r"bad address|not known|getaddrinfo|name resolution|no address associated"
            r"|could not resolve|unknown host|nodename nor servname",
            re.I,
        ),
        SmtpOutcome.UNRESOLVED,
    ),
    (
        re.compile(r"no route to host|network is unreachable|host is unreachable", re.I),
        SmtpOutcome.UNREACHABLE,
    ),
    (re.compile(r"timed out|timeout", re.I), SmtpOutcome.TIMEOUT),
)
_CONNECTED = re.compile(r"fleet-smtp: connected|succeeded|Connected to|\bopen$", re.I)


def is_transcript(text: str) -> bool:
    return f"{MARK}probe " in text


def parse_transcript(text: str, target: str) -> SmtpProbe:
    """The SmtpProbe a fallback transcript shows, as far as its tool could tell."""
    tool, port, timed_out = "", 0, False
    said: list[str] = []
    sent: list[str] = []
    tls: list[str] | None = None  # s_client's lines, when it ran
    replies: dict[str, list[str]] = {"greeting": [], "ehlo": [], "quit": []}
    for line in text.splitlines():
        if line.startswith(MARK + "probe "):
            tool = line[len(MARK) + 6 :].strip()
        elif line.startswith(MARK + "port ") and line[len(MARK) + 5 :].strip().isdigit():
            port = int(line[len(MARK) + 5 :])
        elif line.strip() == MARK + "timeout":
            timed_out = True
        elif line.strip() == MARK + "tls openssl":
            tls = []
        elif line.startswith("T ") and tls is not None:
            tls.append(line[2:])
        elif line.startswith("C "):
            sent.append(line[2:].strip())
        elif line.startswith("S "):
            body = line[2:]
            stage = "quit" if "QUIT" in sent else "ehlo" if "EHLO" in sent else "greeting"
            (replies[stage] if _REPLY.match(body) else said).append(body)
    greeting = replies["greeting"]
    base: dict[str, Any] = {"target": target, "port": port, "probe": tool}
    base["greeting"] = tuple(greeting)
    if not greeting:
        return SmtpProbe(**base, **_no_greeting(said, timed_out))
    probe = _dialogue(base, greeting, replies["ehlo"], timed_out)
    if tls is None or not probe.starttls:
        return probe
    return replace(probe, probe=f"{tool}+openssl", **parse_s_client(tls))


def _dialogue(
    base: dict[str, Any], greeting: list[str], ehlo: list[str], timed_out: bool
) -> SmtpProbe:
    """The probe of a conversation that got a greeting: where it stopped, and why."""
    code = int(greeting[0][:3])
    common: dict[str, Any] = {**base, "greeting_code": code, "ehlo": tuple(ehlo)}
    if not _complete(greeting):
        outcome = SmtpOutcome.TIMEOUT if timed_out else SmtpOutcome.ERROR
        why = "no greeting within the timeout" if timed_out else "connection closed"
        return SmtpProbe(**common, outcome=outcome, stage="greeting", error=why)
    if code != 220:
        why = "greeting " + greeting[-1]
        return SmtpProbe(**common, outcome=SmtpOutcome.BAD_GREETING, stage="greeting", error=why)
    if not _complete(ehlo):
        if timed_out:
            error, outcome = "no EHLO reply within the timeout", SmtpOutcome.TIMEOUT
        else:
            error, outcome = "connection closed before the EHLO reply", SmtpOutcome.ERROR
        return SmtpProbe(**common, outcome=outcome, stage="ehlo", error=error)
    if ehlo[0][:3] != "250":
        why = "EHLO refused: " + ehlo[-1]
        return SmtpProbe(**common, outcome=SmtpOutcome.ERROR, stage="ehlo", error=why)
    starttls = any(line[4:].strip().upper() == "STARTTLS" for line in ehlo[1:])
    return SmtpProbe(**common, outcome=SmtpOutcome.OK, stage="quit", starttls=starttls)


def _complete(lines: list[str]) -> bool:
    """A reply ends with a line whose fourth character is not ``-``."""
    return bool(lines) and (len(lines[-1]) < 4 or lines[-1][3] != "-")


def _no_greeting(said: list[str], timed_out: bool) -> dict[str, Any]:
    """Outcome, stage and error of a conversation that never got a reply line."""
    words = " ".join(s.strip() for s in said if s.strip() and not s.startswith(MARK))
    for pattern, outcome in _TOOL_SAYS:
        if pattern.search(words):
            return {"outcome": outcome, "stage": "connect", "error": words}
    connected = any(_CONNECTED.search(s) for s in said)
    if timed_out:
        # Connected but silent: the greeting's timeout; else nobody can tell which.
        stage = "greeting" if connected else ""
        return {
            "outcome": SmtpOutcome.TIMEOUT,
            "stage": stage,
            "error": "no greeting within the timeout",
        }
    why = words or ("connection closed before the greeting" if connected else "no answer")
    return {
        "outcome": SmtpOutcome.ERROR,
        "stage": "greeting" if connected else "connect",
        "error": why,
    }
