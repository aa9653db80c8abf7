"""smtp on Unix: the probe program (``unix_probe.py``) run by the host's python3, and its parser.

The program's TEXT is sent once per host, as a shell function every target's
step calls (``Step.shared``), with its parameters as quoted argv; it prints
one JSON object.  A host without python3 talks through nc or
bash's /dev/tcp instead (``FALLBACK``, read by ``fallback.py``).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import math
import shlex
import tokenize
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from fleet import causes
from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import SmtpProbe
from fleet.checks.harness import excerpt
from fleet.checks.smtp.fallback import is_transcript, parse_transcript
from fleet.checks.smtp.probe import TIMED_STAGES, checked_probe, deadline
from fleet.errors import ParseError

NO_PYTHON = "fleet: no python3"
# -S: no site module (the probe needs only the standard library): less to start.
# The probe program, defined once per host (``Step.shared``) and run per target;
# returns (to the nc/bash fallback) only when the host has no python3.
SMTP_FUNCTION = """fleet_smtp_py() {{
for p in python3 /usr/libexec/platform-python; do
  command -v "$p" >/dev/null 2>&1 && exec "$p" -S -c {program} "$@"
done
}}
"""
SMTP_RUN = "fleet_smtp_py {args}\n"
# Without python3: the same dialogue in sh (a function sent once per host, as the
# probe program) through the tool the host has, each
# event a line for ``fallback.parse_transcript``.  nc (or BusyBox's) or bash's
# /dev/tcp is the connection; two fifos carry its ends, and a sleeping watchdog
# ends it at the probe's deadline (the TERM trap takes the sleep with it).
# OpenBSD/traditional nc and ncat say with -v whether they connected; their -w
# is also an idle timeout, so it gets the greeting's patience.  BusyBox's -w is
# the connect's alone.  When the EHLO reply offers STARTTLS and the host has
# openssl, s_client does the handshake on a second connection (its lines "T ...",
# read by ``openssl.parse_s_client``), bounded by ``timeout`` where there is one.
FALLBACK = """fleet_smtp_sh() {{
h=$1 P=$2 n=$3 T=$4 G=$5 D=$6 f=${{d:-/tmp}}/smtp-$7 e=
if command -v nc >/dev/null 2>&1; then
  t=nc; set -- nc -v -w "$G"
  case $(nc -h 2>&1 </dev/null) in *BusyBox*) set -- nc -w "$T" ;; esac
elif command -v busybox >/dev/null 2>&1 && busybox nc -h 2>&1 </dev/null | grep -q BusyBox; then
  t=nc; set -- busybox nc -w "$T"
elif command -v bash >/dev/null 2>&1; then
  t=bash; set -- bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1; echo "fleet-smtp: connected"
cat <&0 >&3 2>/dev/null & exec cat <&3'
else
  echo '{no_python}'; echo 'fleet-smtp: no tool'; exit 127
fi
echo "fleet-smtp: probe $t"; echo "fleet-smtp: port $P"
rm -f "$f.i" "$f.o"
mkfifo "$f.i" "$f.o" || exit 70
trap '' PIPE
"$@" "$h" "$P" <"$f.i" >"$f.o" 2>&1 & c=$!
exec 3>"$f.i" 4<"$f.o"; rm -f "$f.i" "$f.o"
(trap 'kill $s 2>/dev/null; exit' TERM; sleep "$D" & s=$!; wait $s
echo 'fleet-smtp: timeout'; kill $c) 2>/dev/null 3>&- 4<&- & k=$!
r=$(printf '\\r'); w=greeting
while IFS= read -r l <&4; do
  l=${{l%"$r"}}; echo "S $l"
  case $w$l in ehlo250[-\\ ][Ss][Tt][Aa][Rr][Tt][Tt][Ll][Ss]*) e=1 ;; esac
  case $l in [0-9][0-9][0-9]-*) continue ;; [0-9][0-9][0-9]*) ;; *) continue ;; esac
  case $w in
    greeting) case $l in
      220*) w=ehlo; echo 'C EHLO'; printf 'EHLO %s\\r\\n' "$n" >&3 ;;
      *) w=quit; echo 'C QUIT'; printf 'QUIT\\r\\n' >&3 ;;
    esac ;;
    ehlo) w=quit; echo 'C QUIT'; printf 'QUIT\\r\\n' >&3 ;;
    *) break ;;
  esac
done
exec 3>&- 4<&-; kill $c 2>/dev/null; wait $c; echo "fleet-smtp: exit $?"
kill $k 2>/dev/null; wait $k
[ "$e" ] && command -v openssl >/dev/null 2>&1 || exit 0
echo 'fleet-smtp: tls openssl'; a=$h; case $h in *:*) a="[$h]" ;; esac
set -- openssl s_client -starttls smtp -connect "$a:$P" -name "$n" -nameopt RFC2253
case $h in *:*) ;; *[!0-9.]*) set -- "$@" -servername "$h" ;; esac
command -v timeout >/dev/null 2>&1 && set -- timeout "$D" "$@"
x=$("$@" </dev/null 2>&1)
{{ printf '%s\\n' "$x" | openssl x509 -noout -enddate 2>/dev/null; printf '%s\\n' "$x"; }} |
while IFS= read -r l; do echo "T $l"; done
}}
"""
FALLBACK_RUN = "fleet_smtp_sh {args}\n"


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
SHARED = (
    SMTP_FUNCTION.format(program=shlex.quote(PROBE_PROGRAM)),
    FALLBACK.format(no_python=NO_PYTHON),
)


def step(key: str, target: str, params: Mapping[str, Any]) -> Step:
    timeout, greeting = float(params["timeout"]), float(params["greeting_timeout"])
    script = smtp_script(
        target,
        int(params["port"]),
        timeout,
        str(params["helo"]),
        greeting,
        deadline(params),
        verify=bool(params.get("verify_cert", False)),
    )
    return Step(key, script, target, shared=SHARED)


def fallback_script(
    target: str, port: int, timeout: float, helo: str, greeting: float, deadline: float
) -> str:
    """sh that talks SMTP through nc or bash's /dev/tcp (the host has no python3)."""
    token = hashlib.sha256(f"{target}:{port}".encode()).hexdigest()[:12]  # a fifo's name
    # nc takes whole seconds.
    values = [target, int(port), helo, *(math.ceil(v) for v in (timeout, greeting, deadline))]
    return FALLBACK_RUN.format(args=" ".join(shlex.quote(str(v)) for v in [*values, token]))


def smtp_script(
    target: str,
    port: int,
    timeout: float,
    helo: str,
    greeting_timeout: float | None = None,
    deadline: float | None = None,
    verify: bool = False,
) -> str:
    """sh that runs the probe program (``SHARED``) with its parameters as quoted argv."""
    values: list[object] = [target, int(port), float(timeout), helo]
    values += [float(v) for v in (greeting_timeout, deadline) if v is not None]
    if verify and len(values) == 6:
        values.append(1)
    args = " ".join(shlex.quote(str(v)) for v in values)
    greeting = timeout if greeting_timeout is None else greeting_timeout
    total = greeting + TIMED_STAGES * timeout if deadline is None else deadline
    run = SMTP_RUN.format(args=args)
    return run + fallback_script(target, port, timeout, helo, greeting, total)


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
    """The probe's one JSON object as an SmtpProbe, or the fallback's transcript."""
    text = output.stdout.decode("utf-8", errors="replace")
    if NO_PYTHON in text:
        raise ParseError(
            "smtp probe needs python3, nc, bash or openssl on the host (install python3 or nc)",
            cause=causes.TOOL_MISSING,
        )
    if is_transcript(text):
        return parse_transcript(text, target)
    return replace(checked_probe(_probe_json(text), target, "smtp probe"), probe="python3")
