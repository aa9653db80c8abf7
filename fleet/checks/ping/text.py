"""The text of ``ping.exe``: the fallback when WMI is broken (ping.ps1).

ping.exe speaks the language of the host.  Its shape does not change: one line
per echo, then the totals (sent, received, lost: three numbers after ``=``,
however the words and commas are spelled, and wherever the line wraps).  An echo
reply is a line naming an address with exactly one round-trip time on it
(IPv6 replies carry no ``bytes=``/``TTL=``).  The reasons for a lost echo are
read from a small phrase table per language.  ping.exe's own "received" counts
the "Destination host unreachable" and "TTL expired" replies of routers too, so
the replies found must add up with those to ping.exe's count: when they do not,
a line was not understood and the output is refused as unparsed, never guessed.
"""

from __future__ import annotations

import re

from fleet.checks.facts import PingResult
from fleet.errors import ParseError

# A round-trip time: "time=12ms", Russian ms in Cyrillic, "tiempo<1m" (es cuts the unit).
_TIME = re.compile(r"[=<]\s*(?P<ms>\d+)\s*(?:ms|мс|m)(?![\w.])", re.IGNORECASE)
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|[0-9a-f]*:[0-9a-f]*:[0-9a-f:]*", re.IGNORECASE)
_SEP = r"\s*[,\uff0c\u3001][^=\d]{0,60}="  # full-width commas: zh, ja
_TOTALS = re.compile(rf"=\s*(?P<sent>\d+){_SEP}\s*(?P<received>\d+){_SEP}\s*(?P<lost>\d+)")

# What ping.exe prints for a lost echo or a failed name, per language.  Matched on
# the casefolded line and, for the Latin scripts, on its ASCII letters alone, so
# that "Délai ... dépassé" still matches after cp850 text went through cp1252.
TTL_EXPIRED = "TTL expired in transit"
UNREACHABLE = "host unreachable"
GENERAL_FAILURE = "general failure (no route from this host?)"
TIMED_OUT = "timed out"
UNKNOWN_HOST = "unknown host"
_PHRASES: dict[str, tuple[str, ...]] = {
    TTL_EXPIRED: (
        "TTL expired in transit",
        "TTL abgelaufen",
        "TTL expiré",
        "TTL expirado",
        "TTL scaduto",
        "TTL expirou",
        "Превышен срок жизни",
        "TTL が期限切れ",
        "TTL 传输中过期",
        "TTL 在傳輸時過期",
    ),
    UNREACHABLE: (
        "Destination host unreachable",
        "Destination net unreachable",
        "Zielhost nicht erreichbar",
        "Zielnetz nicht erreichbar",
        "Impossible de joindre l'hôte de destination",
        "Impossible de joindre le réseau de destination",
        "Host de destino inaccesible",
        "Red de destino inaccesible",
        "Host di destinazione non raggiungibile",
        "Rete di destinazione non raggiungibile",
        "Host de destino inacessível",
        "Rede de destino inacessível",
        "Заданный узел недоступен",
        "Заданная сеть недоступна",
        "宛先ホストに到達できません",
        "宛先ネットワークに到達できません",
        "无法访问目标主机",
        "无法访问目标网",
        "目的地主機無法連線",
    ),
    GENERAL_FAILURE: (
        "General failure",
        "Allgemeiner Fehler",
        "Défaillance générale",
        "Error general",
        "Errore generale",
        "Falha geral",
        "Общий сбой",
        "一般エラー",
        "一般故障",
    ),
    TIMED_OUT: (
        "Request timed out",
        "Zeitüberschreitung der Anforderung",
        "Délai d'attente de la demande dépassé",
        "Tiempo de espera agotado",
        "Richiesta scaduta",
        "Esgotado o tempo limite",
        "Tempo limite do pedido esgotado",
        "Превышен интервал ожидания",
        "要求がタイムアウトしました",
        "请求超时",
        "要求等候逾時",
    ),
    UNKNOWN_HOST: (
        "could not find host",
        "konnte Host",
        "n'a pas pu trouver l'hôte",
        "no pudo encontrar el host",
        "impossibile trovare l'host",
        "não pôde encontrar o host",
        "не удалось обнаружить узел",
        "が見つかりませんでした",
        "找不到主机",
        "找不到主機",
    ),
}
# A router's answer names the router: ping.exe counts these lines as received.
_ANSWERED = (TTL_EXPIRED, UNREACHABLE)
# The reason reported when nothing came back, the most telling first.
_PRIORITY = (TTL_EXPIRED, UNREACHABLE, GENERAL_FAILURE, TIMED_OUT)


def _ascii(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.casefold())


def _latin(text: str) -> bool:
    return not re.search(r"[\u0400-\u04ff\u3000-\u9fff\uff00-\uffef]", text)


_LATIN_KEYS = [
    (_ascii(p), reason) for reason, ps in _PHRASES.items() for p in ps if _latin(p) and len(p) > 8
]
_OTHER_KEYS = [(p.casefold(), reason) for reason, ps in _PHRASES.items() for p in ps]


def line_reason(line: str) -> str:
    """Which known reason one line of ping.exe states (``TTL_EXPIRED``...), or ''."""
    folded = line.casefold()
    for key, reason in _OTHER_KEYS:
        if key in folded:
            return reason
    squeezed = _ascii(line)
    return next((reason for key, reason in _LATIN_KEYS if key and key in squeezed), "")


def _reply_ms(line: str) -> float | None:
    """The round-trip time of an echo reply line, or None when the line is no reply."""
    times = _TIME.findall(line)
    if len(times) != 1 or not _ADDRESS.search(line):
        return None  # the summary line carries three times and no address
    return float(times[0])


def parse_ping_text(text: str, target: str) -> PingResult:
    """``ping.exe`` output in any of the languages above.  Only echo replies count."""
    lines = text.splitlines()
    times = [ms for ms in map(_reply_ms, lines) if ms is not None]
    reasons = [line_reason(line) for line in lines if _reply_ms(line) is None]
    totals = _TOTALS.search(text)
    if not totals:
        if UNKNOWN_HOST in reasons:
            return PingResult(target=target, transmitted=0, received=0, error=UNKNOWN_HOST)
        # Output cut before the totals (a copy, a dropped stream): the reasons read are
        # named, but no count is guessed from them.
        seen = ", ".join(dict.fromkeys(r for r in reasons if r)) or "no known message"
        raise ParseError(f"unparsed ping.exe output: no statistics (read: {seen})")
    sent, counted, lost = (int(totals.group(k)) for k in ("sent", "received", "lost"))
    answered = sum(
        1
        for line in lines
        if _reply_ms(line) is None and line_reason(line) in _ANSWERED and _ADDRESS.search(line)
    )
    if sent != counted + lost or len(times) + answered != counted:
        raise ParseError(
            f"unparsed ping.exe output: {len(times)} replies and {answered} router answers"
            f" read, ping.exe counted {counted} of {sent}"
        )
    error = ""
    if not times:
        error = next((r for r in _PRIORITY if r in reasons), "no reply")
    return PingResult(
        target=target,
        transmitted=sent,
        received=len(times),
        rtt_min_ms=min(times) if times else None,
        rtt_avg_ms=round(sum(times) / len(times), 3) if times else None,
        rtt_max_ms=max(times) if times else None,
        error=error,
    )
