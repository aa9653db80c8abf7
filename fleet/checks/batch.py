"""One remote command per host: every check's steps batched, then split back.

Each step's output comes back in a section framed by marker lines that carry
a random nonce, so nothing a host prints can forge or end a section early::

    @@fleet <nonce> begin <index>
    <output: raw bytes, or base64 of UTF-8 when <enc> is b64>
    @@fleet <nonce> end <index> <exit status> <truncated 0|1> <enc>

The sh composer lives here; the PowerShell composer is in
``fleet.checks.windows`` and prints the same frames (base64 content, so the
shell's code page cannot garble it).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import secrets
import shlex
from collections.abc import Mapping, Sequence

from fleet.checks.base import Readings, Step, StepOutput

STEP_OUTPUT_CAP = 256 * 1024  # bytes kept from one step


def new_nonce() -> str:
    return secrets.token_hex(8)


def compose_sh(steps: Sequence[Step], nonce: str, step_timeout: float = 60.0) -> str:
    """A POSIX sh script running ``steps`` side by side, printing framed sections.

    Every audited host pays for this script in CPU, so it forks little: each
    step runs in a subshell (no ``sh -c``, no ``head``) whose output file is
    capped by ``ulimit -f`` (POSIX; 512-byte blocks), and ONE deadline bounds
    them all: the steps start together and share it.  A stuck step is killed
    with its whole process group (GNU ``timeout``, else ``setsid`` and a
    sleeping killer: BusyBox hosts), and the sections of the steps that ended
    come back whole.  Exit
    statuses are read with the ``read`` builtin and every section goes out
    in one ``cat``, so the output leaves the host in a few large writes.
    Steps with the same script (binding and ipconfig read the same ``ip``
    output) run once and share their output.  A section longer than
    STEP_OUTPUT_CAP is cut, and marked truncated, by ``split_sections``.
    """
    shared = tuple(dict.fromkeys(text for step in steps for text in step.shared))
    scripts = tuple(step.script for step in steps)
    head, pairs = _sh_steps(scripts, max(1, int(step_timeout)), shared)
    begin = f"printf '\\n@@fleet {nonce} begin %s\\n' \"$i\""
    end = f'printf \'\\n@@fleet {nonce} end %s %s 0 raw\\n\' "$i" "${{r:-255}}"'
    # Each section: its index $i, the run $s whose output it prints, that run's status $r.
    each = (
        f"for p in {pairs}; do i=${{p%:*}}; s=${{p#*:}}; r=; "
        '[ -f "$d/$s.rc" ] && read -r r <"$d/$s.rc"; '
    )
    tail = [
        f'n=; {each}{begin} >"$d/b$i" && {end} >"$d/e$i" || n=1; '
        'set -- "$@" "$d/b$i" "$d/$s" "$d/e$i"; done',
        # The frames go out with the output in one cat; if /tmp was too full to hold
        # them, they are printed one by one instead.
        'if [ -z "$n" ]; then cat -- "$@" 2>/dev/null; else',
        f'{each}{begin}; cat -- "$d/$s" 2>/dev/null; {end}; done; fi',
    ]
    return head + "\n".join(tail) + "\n"


def _sh_steps(scripts: tuple[str, ...], secs: int, shared: tuple[str, ...] = ()) -> tuple[str, str]:
    """The script up to the framing (steps run, statuses kept), and the
    "section:run" pairs: each section's index and the run whose output it prints.
    ``shared`` definitions come first, once: every step's subshell inherits them."""
    blocks = -(-(STEP_OUTPUT_CAP + 1) // 512)  # the file may hold a byte past the cap
    sources = shared_runs([Step(str(i), script) for i, script in enumerate(scripts)])
    runs = ["d=$1", *(text.rstrip() for text in shared)]
    for i in sorted(set(sources)):
        runs.append(
            # XFSZ ignored: a write past the cap fails (EFBIG) instead of killing the
            # step with a signal that dumps core (a crash report on the host).
            f"{{ ( trap '' XFSZ; ulimit -f {blocks} 2>/dev/null\n{scripts[i].rstrip()}\n"
            f') >"$d/{i}" 2>&1; echo $? >"$d/{i}.rc"; }} &'
        )
    runs.append("wait")
    lines = [
        "LC_ALL=C; export LC_ALL",
        "PATH=$PATH:/usr/sbin:/sbin:/usr/local/bin; export PATH",
        "d=$(mktemp -d 2>/dev/null || mktemp -d -t fleet) || "
        '{ echo "fleet: mktemp failed" >&2; exit 70; }',
        "trap 'rm -rf \"$d\"' EXIT",
        f"run={shlex.quote(chr(10).join(runs))}",
        # GNU timeout kills the steps' whole process group.  Elsewhere (BusyBox's
        # timeout kills only its child) ``setsid`` gives the step runner a process
        # group of its own, with no job control needed, and a sleeping killer ends
        # that group at the deadline; without setsid (BSD, macOS) it ends the runner.
        # Either way the sections of the steps that finished come back, and a run
        # that ends in time takes its killer, and the killer's sleep, with it.
        "if timeout --version >/dev/null 2>&1; then",
        f'  timeout -s KILL {secs} sh -c "$run" sh "$d" </dev/null >/dev/null 2>&1',
        "else",
        "  g=; command -v setsid >/dev/null 2>&1 && g=setsid",
        '  $g sh -c "$run" sh "$d" </dev/null >/dev/null 2>&1 & w=$!',
        f"  (trap 'kill $s 2>/dev/null; exit' TERM; sleep {secs} & s=$!; wait $s",
        "  kill -KILL -$w 2>/dev/null || kill -KILL $w) </dev/null >/dev/null 2>&1 & k=$!",
        "  wait $w; kill $k 2>/dev/null; wait $k",
        "fi",
        "set --",
    ]
    pairs = " ".join(f"{i}:{source}" for i, source in enumerate(sources))
    return "\n".join(lines) + "\n", pairs


def shared_runs(steps: Sequence[Step]) -> list[int]:
    """For each step, the index of the first step with the same script (itself if none)."""
    first: dict[str, int] = {}
    return [first.setdefault(step.script, i) for i, step in enumerate(steps)]


def split_sections(stdout: bytes, nonce: str, steps: Sequence[Step]) -> Mapping[str, StepOutput]:
    """Every step's output by key; a step whose section is missing gets exit_status None.

    The output is cut at the nonce's marker (no pattern is compiled per host):
    a begin chunk followed by its end chunk is a section; anything else that
    mentions the nonce is ignored.
    """
    chunks = stdout.split(b"@@fleet " + nonce.encode() + b" ")
    found: dict[int, StepOutput] = {}
    # Equal outputs (steps sharing a run) share what the checks read from them.
    readings: dict[tuple[int, bool, bytes], Readings] = {}
    for begin, end in itertools.pairwise(chunks[1:]):
        output = _section(begin, end, len(steps))
        if output is not None and output[0] not in found:
            index, status, body, truncated = output
            read = readings.setdefault((status, truncated, body), Readings())
            found[index] = StepOutput(steps[index].key, status, body, truncated, read)
    return {
        step.key: found.get(i, StepOutput(key=step.key, exit_status=None, stdout=b""))
        for i, step in enumerate(steps)
    }


_BEGIN = re.compile(rb"begin (\d+)\n")
_END = re.compile(rb"end (\d+) (-?\d+) ([01]) (raw|b64)(?:\n|$)")


def _section(begin: bytes, end: bytes, count: int) -> tuple[int, int, bytes, bool] | None:
    """(index, exit status, body, truncated) when ``begin`` + ``end`` frame one section."""
    opened, closed = _BEGIN.match(begin), _END.match(end)
    if not opened or not closed or opened.group(1) != closed.group(1):
        return None
    index = int(opened.group(1))
    body = begin[opened.end() :]
    if index >= count or not body.endswith(b"\n"):  # the end marker starts a line
        return None
    body = body[:-1]
    if closed.group(4) == b"b64":
        try:
            body = base64.b64decode(body.strip(), validate=True)
        except (binascii.Error, ValueError):
            body = b"fleet: section is not valid base64: " + body[:200]
    # The sh composer caps by file size and leaves the cut to this side.
    truncated = closed.group(3) == b"1" or len(body) > STEP_OUTPUT_CAP
    return index, int(closed.group(2)), body[:STEP_OUTPUT_CAP], truncated
