"""tasks.py: `invoke test` on a fresh machine, and invoke agreeing with `fleet --help`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_module
from tests.lab import packages

ROOT = Path(__file__).resolve().parent.parent

# The check `invoke test` runs first, in a fresh process whose PATH is ``argv[1]`` only.
ENSURE = """
import os, sys
from tests.lab import packages
try:
    packages.ensure(search_path=os.environ["PATH"])
except packages.MissingPackages as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
"""

# An apt-get that installs a package by creating the command packages.txt names for it.
FAKE_APT_GET = """#!/bin/sh
echo "$@" >> "$FAKE_APT_LOG"
case "$1" in
install)
    for name in "$@"; do
        command=$(awk -v p="$name" '$1 == p {print $2}' "$PACKAGES_TXT")
        case "$command" in
        ""|/*|python:*) ;;
        *) printf '#!/bin/sh\\n' > "$BIN/$command"; chmod +x "$BIN/$command" ;;
        esac
    done ;;
download)
    shift
    for name in "$@"; do touch "${name}_1.0_amd64.deb"; done ;;
esac
"""


def bin_dir(tmp_path: Path, tools: dict[str, str]) -> Path:
    """A directory to be the whole PATH: ``tools`` as name -> script (or a real program)."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name, script in tools.items():
        path = directory / name
        if script.startswith("/"):
            path.symlink_to(script)
        else:
            path.write_text(script)
            path.chmod(0o755)
    return directory


def ensure_in(directory: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(directory),
        "PYTHONPATH": str(ROOT),
        "FLEET_LAB_CACHE": str(tmp_path / "cache"),
        "FAKE_APT_LOG": str(tmp_path / "apt.log"),
        "PACKAGES_TXT": str(packages.LIST),
        "BIN": str(directory),
    }
    return subprocess.run(
        [sys.executable, "-c", ENSURE], env=env, capture_output=True, text=True, timeout=60
    )


def test_missing_system_tools_stop_at_once_with_one_line_naming_them(tmp_path: Path) -> None:
    directory = bin_dir(tmp_path, {"ping": "/bin/true"})  # no sshd, ip, chromium; no apt-get
    done = ensure_in(directory, tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("the tests need these system packages: openssh-server ")
    assert "iputils-ping" not in line  # ping is there
    assert "install them with: " in line and "apt-get install --no-install-recommends " in line
    assert "apt-get download exim4-daemon-light libidn12" in line  # fetched, not installed


@pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root")
def test_root_with_apt_installs_the_missing_tools_and_says_which(tmp_path: Path) -> None:
    tools = {"apt-get": FAKE_APT_GET, "debconf-set-selections": "#!/bin/sh\n"}
    real = {name: f"/usr/bin/{name}" for name in ("awk", "touch", "chmod")}
    directory = bin_dir(tmp_path, {**tools, **real, "ping": "/bin/true"})
    done = ensure_in(directory, tmp_path)
    assert done.returncode == 0, done.stderr
    [said] = done.stdout.splitlines()
    assert said.startswith("installing the system packages the tests need: openssh-server")
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert log[0] == "update -qq"
    assert log[1].startswith("install -y -qq --no-install-recommends openssh-server ")
    assert "iputils-ping" not in log[1] and "exim4-daemon-light" not in log[1]
    assert log[2] == "download -qq exim4-daemon-light libidn12"
    assert (directory / "sshd").exists()  # and ensure() found everything there afterwards


def test_ci_installs_the_same_list_invoke_test_checks() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "tests/lab/packages.txt" in script
    listed = subprocess.run(
        ["awk", '!/^#/ && NF && $2 != "fetch" {print $1}', str(packages.LIST)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == list(packages.installed())
    assert {"openssh-server", "iputils-ping", "iproute2", "chromium", "postfix"} <= set(listed)


def test_invoke_test_stops_before_pytest_with_the_one_line(monkeypatch) -> None:
    from invoke import Exit, MockContext

    import tasks

    monkeypatch.setattr(packages, "missing", lambda search_path=None: ["openssh-server"])
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: nothing can be installed
    with pytest.raises(Exit) as stopped:
        tasks.test(MockContext())  # any c.run would raise: pytest must not start
    assert stopped.value.message == (
        "invoke test: the tests need these system packages: openssh-server; "
        "install them with: sudo apt-get install --no-install-recommends openssh-server"
    )


def invoke(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_module("invoke", *argv, timeout=60)


def test_invoke_inventory_and_diff_run_the_fleet_commands(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("[mail]\nmx1 ansible_host=198.18.0.11 ansible_password=s3cret\n")
    listed = invoke("inventory", "--inventory", str(hosts))
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["mail"]["hosts"] == ["mx1"]
    assert data["_meta"]["hostvars"]["mx1"]["ansible_password"] == "********"
    missing = invoke("diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert missing.returncode == 5 and missing.stderr.startswith("fleet diff: ")
