"""The one-command-per-host script (fleet.checks.batch), run for real under sh.

compose_sh's promises are about processes, so they are tested by running the
script: steps run side by side, a stuck step is killed at the step deadline
without costing the others their sections, output is capped, exit statuses
and shared runs come back per step, host output cannot forge a frame, and
nothing is left in the temporary directory.  Run under every POSIX shell
this machine has (dash is Debian's sh; bash in POSIX mode is RHEL's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from fleet.checks.base import Step
from fleet.checks.batch import STEP_OUTPUT_CAP, compose_sh, new_nonce, split_sections

# By absolute path: a test's PATH may hold only a host's tools (BusyBox's applets).
SHELLS = [
    [found, *rest]
    for name, *rest in (["dash"], ["bash", "--posix"], ["busybox", "sh"])
    if (found := shutil.which(name))
]


@pytest.fixture(params=SHELLS, ids=[os.path.basename(s[0]) for s in SHELLS])
def shell(request) -> list[str]:
    return request.param


def run(
    shell: list[str], steps: list[Step], tmp_path: Path, step_timeout: float = 20, path: str = ""
):
    nonce = new_nonce()
    script = compose_sh(steps, nonce, step_timeout)
    started = time.monotonic()
    done = subprocess.run(
        [*shell, "-s"],
        input=script.encode(),
        capture_output=True,
        env={"PATH": f"{path}/usr/bin:/bin", "TMPDIR": str(tmp_path)},
        timeout=step_timeout + 20,
        check=False,
    )
    return split_sections(done.stdout, nonce, steps), time.monotonic() - started, done


def test_steps_run_side_by_side_and_keep_their_exit_status(shell, tmp_path):
    steps = [
        Step("a", "sleep 1; echo a"),
        Step("b", "sleep 1; echo b; exit 3"),
        Step("c", "sleep 1; echo c >&2; false"),
    ]
    out, seconds, _ = run(shell, steps, tmp_path)
    assert seconds < 2.5  # three 1 s steps, not 3 s
    assert (out["a"].exit_status, out["a"].stdout) == (0, b"a\n")
    assert (out["b"].exit_status, out["b"].stdout) == (3, b"b\n")
    assert (out["c"].exit_status, out["c"].stdout) == (1, b"c\n")  # stderr is in the section
    assert list(tmp_path.iterdir()) == []  # the work directory is removed


def test_a_stuck_step_is_killed_at_the_deadline_and_the_others_keep_their_sections(shell, tmp_path):
    steps = [
        Step("quick", "echo done"),
        Step("stuck", "echo started; sleep 60.0417; echo never"),
        Step("child", "sh -c 'sleep 60.0417'; echo never"),
    ]
    out, seconds, _ = run(shell, steps, tmp_path, step_timeout=1)
    assert seconds < 5
    assert (out["quick"].exit_status, out["quick"].stdout) == (0, b"done\n")
    # Killed: what it printed is kept, and the missing status says it never ended.
    assert (out["stuck"].exit_status, out["stuck"].stdout) == (255, b"started\n")
    assert out["child"].exit_status == 255
    # The whole process group went: no such sleep is left behind (an odd duration, so
    # that nobody else's "sleep 60" on the machine counts).
    left = subprocess.run(["pgrep", "-f", "sleep 60.0417"], capture_output=True, check=False)
    assert left.stdout == b""


def test_output_is_capped_per_step(shell, tmp_path):
    big = f"head -c {STEP_OUTPUT_CAP * 4} /dev/zero | tr '\\0' x; echo; echo after"
    steps = [Step("big", big), Step("small", "echo small")]
    out, _, done = run(shell, steps, tmp_path)
    assert out["big"].truncated is True
    assert out["big"].stdout == b"x" * STEP_OUTPUT_CAP
    assert (out["small"].stdout, out["small"].truncated) == (b"small\n", False)
    # Capped on the host, not only cut here: the host sent little more than the cap...
    assert len(done.stdout) < STEP_OUTPUT_CAP + 4096
    # ...and no step died of SIGXFSZ (which dumps core: a crash report on the host).
    assert out["big"].exit_status != 128 + 25


def test_shared_scripts_run_once_and_fill_every_section(shell, tmp_path):
    marker = tmp_path / "runs"
    script = f"echo run >>{marker}; echo same"
    steps = [Step("binding", script), Step("ipconfig", script), Step("other", "echo other")]
    out, _, _ = run(shell, steps, tmp_path)
    assert marker.read_text() == "run\n"
    assert out["binding"].stdout == out["ipconfig"].stdout == b"same\n"
    assert out["other"].stdout == b"other\n"


def test_host_output_cannot_forge_or_end_a_section(shell, tmp_path):
    forged = "printf '\\n@@fleet 0000000000000000 end 0 0 0 raw\\n@@fleet begin 1\\nfake\\n'"
    steps = [Step("a", forged + "; echo real"), Step("b", "echo b")]
    out, _, _ = run(shell, steps, tmp_path)
    assert out["a"].stdout.endswith(b"fake\nreal\n")
    assert out["b"].stdout == b"b\n"


def test_a_missing_section_is_reported_as_missing():
    steps = [Step("a", "true")]
    assert split_sections(b"no frames at all\n", new_nonce(), steps)["a"].exit_status is None


def _leftover(command: str) -> bytes:
    """The pids still running exactly ``command`` (an odd duration nobody else
    sleeps), which are then ended."""
    pattern = f"^{command}$"
    left = subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False)
    for pid in left.stdout.split():
        subprocess.run(["kill", "-KILL", pid.decode()], check=False)
    return left.stdout


def _stuck_steps_under(shell, tmp_path, path: str, pattern: str):
    steps = [
        Step("quick", "echo done"),
        Step("stuck", f"echo started; sleep {pattern}; echo never"),
        Step("child", f"sh -c 'sleep {pattern}'; echo never"),
    ]
    work = tmp_path / "tmp"
    work.mkdir()
    out, seconds, _ = run(shell, steps, work, step_timeout=1, path=path)
    left = _leftover(f"sleep {pattern}")
    assert seconds < 5
    assert (out["quick"].exit_status, out["quick"].stdout) == (0, b"done\n")
    assert (out["stuck"].exit_status, out["stuck"].stdout) == (255, b"started\n")
    assert out["child"].exit_status == 255
    assert left == b""  # the step's whole process group went, children included


def test_without_gnu_timeout_a_stuck_step_is_killed_whole_at_the_deadline(shell, tmp_path):
    # BSD, macOS and BusyBox have no GNU timeout: setsid gives the steps a group
    # of their own, which the fallback killer ends at the deadline.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "timeout").write_text("#!/bin/sh\necho 'timeout: unrecognized option' >&2\nexit 1\n")
    (bin_dir / "timeout").chmod(0o755)
    _stuck_steps_under(shell, tmp_path, f"{bin_dir}:", "61.0419")


@pytest.mark.skipif(not shutil.which("busybox"), reason="needs busybox")
def test_on_a_busybox_host_a_stuck_step_is_killed_whole_at_the_deadline(shell, tmp_path):
    # Only BusyBox's applets on the PATH (its timeout kills its child alone).
    applets = tmp_path / "busybox"
    applets.mkdir()
    busybox = shutil.which("busybox") or ""
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for name in listed.stdout.split():
        (applets / name).symlink_to(busybox)
    # run() appends /usr/bin:/bin: the applets come first, as on the host.
    _stuck_steps_under(shell, tmp_path, f"{applets}:", "62.0421")


def test_a_step_that_ends_in_time_leaves_no_killer_behind(shell, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "timeout").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "timeout").chmod(0o755)
    work = tmp_path / "tmp"
    work.mkdir()
    out, _, _ = run(shell, [Step("quick", "echo done")], work, 63.0423, f"{bin_dir}:")
    assert out["quick"].stdout == b"done\n"
    assert _leftover("sleep 63") == b""  # the killer's sleep went with the run


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_frames_still_come_back_when_the_temporary_directory_refuses_them():
    # A full /tmp on the host: the frames cannot be written beside the output, so they
    # are printed directly and each step still gets its section.  (An unprivileged
    # user, so that a read-only directory really refuses; pytest's tmp_path is private.)
    work = Path(tempfile.mkdtemp(prefix="fleet-batch-"))
    work.chmod(0o777)
    steps = [Step("a", "echo early"), Step("b", 'sleep 0.3; chmod 500 "$d"; echo late')]
    nonce = new_nonce()
    done = subprocess.run(
        ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "sh", "-s"],
        input=compose_sh(steps, nonce, 10).encode(),
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(work)},
        timeout=30,
        check=False,
    )
    for leftover in work.rglob("*"):  # the step made its directory read-only
        leftover.chmod(0o700)
    shutil.rmtree(work)
    out = split_sections(done.stdout, nonce, steps)
    assert out["a"].stdout == b"early\n"
    assert out["b"].stdout == b"late\n"
    assert out["b"].exit_status == 255  # its status could not be kept either
