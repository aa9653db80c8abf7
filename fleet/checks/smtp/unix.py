"""smtp on Unix: the probe program (``unix_probe.py``) run by the host's python3, and its parser.

The program's TEXT is sent inside the step and its parameters as quoted
argv; it prints one JSON object.
"""

from __future__ import annotations

import ast
import io
import json
import shlex
import tokenize
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleet import causes
from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import SmtpProbe
from fleet.checks.harness import excerpt
from fleet.checks.smtp.probe import checked_probe, deadline
from fleet.errors import ParseError

NO_PYTHON = "fleet: no python3"
# -S: no site module (the probe needs only the standard library): less to start.
SMTP_RUN = """for p in python3 /usr/libexec/platform-python; do
  command -v "$p" >/dev/null 2>&1 && exec "$p" -S -c {program} {args}
done
echo '{no_python}'; exit 127
"""


def compact(source: str) -> str:
    """``source`` without its comments, docstrings, blank lines and most of its
    indentation: the same program in fewer bytes, sent once per target to every host."""
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            start, end = first.lineno - 1, first.end_lineno or first.lineno
            # The body keeps a statement (a class may hold only its docstring).
            lines[start:end] = [" " * first.col_offset + "0"] + [""] * (end - start - 1)
    for token in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col]
    # One space per level of four: the source has no multi-line strings left to disturb.
    kept = [line.rstrip() for line in lines if line.strip()]
    return "".join(" " * ((len(x) - len(x.lstrip())) // 4) + x.lstrip() + "\n" for x in kept)


# The probe that runs on the host, read with this module.
PROBE_SOURCE = Path(__file__).with_name("unix_probe.py").read_text(encoding="utf-8")
PROBE_PROGRAM = compact(PROBE_SOURCE)
_QUOTED_PROGRAM = shlex.quote(PROBE_PROGRAM)


def step(key: str, target: str, params: Mapping[str, Any]) -> Step:
    timeout, greeting = float(params["timeout"]), float(params["greeting_timeout"])
    script = smtp_script(
        target, int(params["port"]), timeout, str(params["helo"]), greeting, deadline(params)
    )
    return Step(key, script, target)


def smtp_script(
    target: str,
    port: int,
    timeout: float,
    helo: str,
    greeting_timeout: float | None = None,
    deadline: float | None = None,
) -> str:
    """sh that runs the probe program with its parameters as quoted argv."""
    values: list[object] = [target, int(port), float(timeout), helo]
    values += [float(v) for v in (greeting_timeout, deadline) if v is not None]
    args = " ".join(shlex.quote(str(v)) for v in values)
    return SMTP_RUN.format(no_python=NO_PYTHON, program=_QUOTED_PROGRAM, args=args)


def _excerpt(text: str) -> str:
    """Enough of the output to recognise it in an error message."""
    return excerpt(text, 200)


def _probe_json(text: str) -> Mapping[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise ParseError(f"smtp probe printed broken JSON: {_excerpt(line)}") from exc
            if isinstance(data, dict):
                return data
    raise ParseError(f"smtp probe printed no result: {_excerpt(text)}")


def parse(output: StepOutput, target: str) -> SmtpProbe:
    """The probe's one JSON object as an SmtpProbe."""
    text = output.stdout.decode("utf-8", errors="replace")
    if NO_PYTHON in text:
        raise ParseError("smtp probe needs python3 on the host", cause=causes.TOOL_MISSING)
    return checked_probe(_probe_json(text), target, "smtp probe")
