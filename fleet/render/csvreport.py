"""The CSV report: one row per host x check x target, safe to open in a spreadsheet.

Host text can start with ``=``, ``+``, ``-`` or ``@``, which Excel and
LibreOffice would run as a formula (CSV injection); such cells get a leading
apostrophe, the neutralisation OWASP recommends.  Control characters and
terminal escapes are removed first (``fleet.text``).
"""

from __future__ import annotations

import csv
import io

from fleet.model import RunResult
from fleet.text import clean

COLUMNS = (
    "host",
    "address",
    "platform",
    "check",
    "target",
    "status",
    "reason",
    "duration",
)

# A spreadsheet treats a cell starting with any of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise(cell: str) -> str:
    """``cell`` made inert for spreadsheets and terminals: controls removed, a leading
    apostrophe before formula starts."""
    cell = clean(cell)
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def render_csv(run: RunResult) -> str:
    """The run as CSV text (RFC 4180: CRLF line ends, quoted where needed)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for h in run.hosts:
        for r in h.results:
            row = (
                h.host,
                h.address,
                h.platform,
                r.check,
                r.target or "",
                r.status.value,
                r.summary,
                f"{r.duration:.3f}",
            )
            writer.writerow([neutralise(cell) for cell in row])
    return out.getvalue()
