"""Report files: write a run as report.json/.csv/.html/.xml, and ``fleet report``.

An audit publishes its reports with ``publish_reports`` (a report directory of its
own, ``latest`` moved to it once complete); ``report_command`` serves
``fleet report RESULT.json --format html,csv,junit``, which re-renders a saved
result without contacting any host.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from fleet.changes import Delta, inventory_label
from fleet.diagnose import Diagnosis, diagnose
from fleet.errors import ConfigError, FleetError
from fleet.model import RunResult
from fleet.render.csvreport import render_csv
from fleet.render.htmlreport import render_html
from fleet.render.junit import render_junit
from fleet.render.prom import render_prom

# format name -> file name
FORMATS: dict[str, str] = {
    "json": "report.json",
    "csv": "report.csv",
    "html": "report.html",
    "junit": "report.xml",
    "prom": "report.prom",
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
        "prom": lambda run: render_prom(run, diagnosis),
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


def publish_reports(
    run: RunResult,
    base: Path,
    formats: Sequence[str],
    *,
    diagnosis: Diagnosis | None = None,
    delta: Delta | None = None,
) -> tuple[dict[str, Path], bool]:
    """Write ``<base>/<inventory>/<timestamp>/``; the files written, and whether all were.

    The files are written into a hidden directory of the run's own, which is then
    renamed to a name no other run holds, so concurrent runs never collide.
    ``latest`` moves (a new link renamed over it) only to a complete directory.  A
    disk that fails is said in one line, never raised: the table and the mail go on.
    """
    parent = base / inventory_label(run.inventory)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    staging: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{stamp}-", suffix=".partial", dir=parent))
        write_reports(run, staging, formats, diagnosis=diagnosis, delta=delta)
        outdir = _claim(staging, parent, stamp)
        _point_latest(parent, outdir)
    except (OSError, FleetError) as exc:
        return _salvage(staging, parent, stamp, exc), False
    return {fmt: outdir / name for fmt, name in _report_files(outdir).items()}, True


def _report_files(outdir: Path) -> dict[str, str]:
    return {fmt: name for fmt, name in FORMATS.items() if (outdir / name).is_file()}


def _claim(staging: Path, parent: Path, stamp: str) -> Path:
    """Rename ``staging`` to ``<stamp>``, or ``<stamp>-2``, ... : the first name free.
    A rename never replaces a directory that has files, so two runs never share one."""
    for suffix in itertools.count(1):
        outdir = parent / (stamp if suffix == 1 else f"{stamp}-{suffix}")
        if outdir.exists() or outdir.is_symlink():
            continue
        try:
            staging.rename(outdir)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise
            continue
        return outdir
    raise AssertionError("unreachable")


def _point_latest(parent: Path, outdir: Path) -> None:
    """``latest`` -> ``outdir``, atomically: a reader never sees no "latest"."""
    link = parent / f".latest-{os.getpid()}-{secrets.token_hex(4)}"
    link.symlink_to(outdir.name)
    try:
        link.replace(parent / "latest")
    except OSError:
        link.unlink(missing_ok=True)
        raise


def _salvage(staging: Path | None, parent: Path, stamp: str, exc: Exception) -> dict[str, Path]:
    """After a failed write: the reports that were written whole are kept under their
    own directory (``latest`` stays where it was); the files kept."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    print(f"fleet: reports NOT written: {reason}", file=sys.stderr)
    if staging is None or not staging.is_dir():
        return {}
    with contextlib.suppress(OSError):
        for leftover in staging.glob("*.partial"):
            leftover.unlink(missing_ok=True)
    if not _report_files(staging):
        shutil.rmtree(staging, ignore_errors=True)
        return {}
    try:
        outdir = _claim(staging, parent, stamp)
    except OSError:
        outdir = staging
    print(f"fleet: incomplete reports kept in {outdir} (latest not moved)", file=sys.stderr)
    return {fmt: outdir / name for fmt, name in _report_files(outdir).items()}


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
