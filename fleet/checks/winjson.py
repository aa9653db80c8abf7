"""Reading what the Windows step scripts print: JSON as PowerShell writes it.

Every Windows parser reads its step's JSON through these, which survive
ConvertTo-Json's quirks: one object where an array was expected, enums as
integers, ``-Depth`` truncation (arrays joined into one string).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any

from fleet import causes
from fleet.checks.base import StepOutput
from fleet.errors import ParseError

STEP_TIMED_OUT = 124  # the exit status the prelude gives a step that ran past its deadline


def load(output: StepOutput) -> dict[str, Any]:
    """The step's JSON object; ParseError when it is missing, not JSON, or the step failed."""
    if output.exit_status is None:
        lost = f"{output.key}: no output came back for this step"
        raise ParseError(lost, cause=causes.OUTPUT_LOST)
    try:
        data = json.loads(output.stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ParseError(f"{output.key}: output is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ParseError(f"{output.key}: expected a JSON object, got {type(data).__name__}")
    if set(data) == {"error"}:
        timed_out = output.exit_status == STEP_TIMED_OUT
        raise ParseError(
            f"{output.key}: the step failed on the host: {data['error']}",
            cause=causes.COMMAND_TIMEOUT if timed_out else causes.UNPARSED,
        )
    return data


def output(outputs: Mapping[str, StepOutput], key: str) -> StepOutput:
    try:
        return outputs[key]
    except KeyError:
        raise ParseError(f"no {key!r} step output", cause=causes.OUTPUT_LOST) from None


def rows(data: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    """A list of objects; ConvertTo-Json gives one object (not a list) for a one-row pipeline."""
    value = data.get(field)
    found = value if isinstance(value, list) else [] if value is None else [value]
    for row in found:
        if not isinstance(row, dict):
            # -Depth truncation turns a nested object into its type name or "@{...}" text.
            raise ParseError(f"{field}: expected objects, got {str(row)[:60]!r} (truncated?)")
    return found


def strings(value: Any) -> list[str]:
    """A list of strings from a list, a single string, or an array -Depth joined with spaces."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None]
    return str(value).split()


def ipv4s(value: Any) -> list[str]:
    out = []
    for text in strings(value):
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if addr.version == 4 and not addr.is_unspecified:
            out.append(text)
    return out


def text(row: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = row.get(name)
        if value is not None:
            return str(value)
    return ""


def integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def source(data: Mapping[str, Any], known: Sequence[str]) -> str:
    found = data.get("source")
    if found not in known:
        raise ParseError(f"unknown source {found!r}: expected one of {', '.join(known)}")
    return str(found)
