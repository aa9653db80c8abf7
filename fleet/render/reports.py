"""Report files: write a run as report.json/.csv/.html/.xml, and ``fleet report``.

The CLI calls ``write_reports`` after an audit and ``report_command`` for
``fleet report RESULT.json --format html,csv,junit``, which re-renders a saved
result without contacting any host.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fleet.changes import Delta
from fleet.diagnose import Diagnosis, diagnose
from fleet.errors import ConfigError, FleetError
from fleet.model import RunResult
from fleet.render.csvreport import render_csv
from fleet.render.htmlreport import render_html
from fleet.render.junit import render_junit

# format name -> file name
FORMATS: dict[str, str] = {
    "json": "report.json",
    "csv": "report.csv",
    "html": "report.html",
    "junit": "report.xml",
}
_ALIASES = {"xml": "junit"}


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"html,csv"`` or ``["html", "csv"]`` -> known format names; ConfigError if unknown."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    names = []
    for item in items:
        name = _ALIASES.get(item.strip().lower(), item.strip().lower())
        if not name:
            continue
        if name not in FORMATS:
            known = ", ".join(FORMATS)
            raise ConfigError(f"unknown report format {item.strip()!r} (known: {known})")
        names.append(name)
    return tuple(dict.fromkeys(names))


def _renderers(diagnosis: Diagnosis, delta: Delta | None) -> dict[str, Callable[[RunResult], str]]:
    return {
        "json": lambda run: run.to_json() + "\n",
        "csv": render_csv,
        "html": lambda run: render_html(run, diagnosis, delta),
        "junit": render_junit,
    }


def write_reports(
    run: RunResult,
    outdir: Path,
    formats: str | Sequence[str],
    *,
    diagnosis: Diagnosis | None = None,
    delta: Delta | None = None,
) -> dict[str, Path]:
    """Write one file per format into ``outdir`` (created); format -> path written."""
    names = parse_formats(formats)
    renderers = _renderers(diagnosis if diagnosis is not None else diagnose(run), delta)
    outdir = Path(outdir)
    written: dict[str, Path] = {}
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = outdir / FORMATS[name]
            # write then rename: a reader never sees half a report
            partial = path.with_name(path.name + ".partial")
            partial.write_text(renderers[name](run), encoding="utf-8", newline="")
            partial.replace(path)
            written[name] = path
    except OSError as e:
        raise FleetError(f"cannot write reports to {outdir}: {e.strerror or e}") from e
    return written


def load_result(path: Path) -> RunResult:
    """A saved run result; ConfigError (one line) when it is not one."""
    try:
        return RunResult.from_json(Path(path).read_bytes())
    except OSError as e:
        raise ConfigError(e.strerror or str(e), path=path) from e
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        reason = str(e) if str(e).startswith("not a fleet") else f"not a fleet result: {e}"
        raise ConfigError(f"{reason} (give a report.json that fleet audit wrote)", path=path) from e


def report_command(
    result_path: Path, formats: str | Sequence[str], outdir: Path | None = None
) -> int:
    """``fleet report RESULT.json --format html,csv,junit``: 0 done, 5 bad input, 1 cannot write.

    Without ``outdir`` the reports go next to the result file.
    """
    try:
        run = load_result(result_path)
        written = write_reports(run, outdir or Path(result_path).parent, formats)
    except ConfigError as e:
        print(f"fleet report: {e}", file=sys.stderr)
        return 5
    except FleetError as e:
        print(f"fleet report: {e}", file=sys.stderr)
        return 1
    for path in written.values():
        print(path)
    return 0
