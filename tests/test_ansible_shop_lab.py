"""An Ansible shop's setup, unchanged, against the lab (issue 13's "done when").

A copy of the lab inventory whose Windows credentials are vaulted by the real
``ansible-vault``, and an ``ansible.cfg`` beside it naming the inventory, the forks and
the vault password file: ``fleet audit`` run in that directory, with no ``-i``, audits
the lab with them.  The runner's login slots are watched from inside the audited
process, so the forks the audit really used are measured, not read back from a setting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.topology import WINDOWS_PASSWORD
from tests.test_vault import _vault, needs_ansible

pytestmark = [pytest.mark.lab, needs_ansible]
ROOT = Path(__file__).resolve().parent.parent
HOSTS = ["mx1", "mx2", "mx3", "win-ok", "win-2008"]

# Wraps the runner's login slots: the most logins held at once, printed at exit.
WATCH_SLOTS = """
import atexit, contextlib, threading, fleet.runner as runner
_seen = {"held": 0, "most": 0, "forks": None}
_lock = threading.Lock()
class _Watched(runner.LoginSlots):
    def __init__(self, forks):
        _seen["forks"] = forks
        super().__init__(forks)
    @contextlib.contextmanager
    def claim(self, *a, **k):
        with super().claim(*a, **k) as granted:
            if granted:
                with _lock:
                    _seen["held"] += 1
                    _seen["most"] = max(_seen["most"], _seen["held"])
            try:
                yield granted
            finally:
                if granted:
                    with _lock:
                        _seen["held"] -= 1
runner.LoginSlots = _Watched
atexit.register(lambda: print("SLOTS", _seen["forks"], _seen["most"], file=sys.stderr))
"""


def _shop(tmp_path: Path, lab, password: str = "lab vault pass") -> Path:
    """The lab inventory copied, its Windows group vars vaulted; an ansible.cfg beside it."""
    shop = tmp_path / "shop"
    shutil.copytree(lab.inventory.parent, shop / "inv", symlinks=True)
    (shop / "vault.pw").write_text("lab vault pass\n")
    windows = shop / "inv" / "group_vars" / "windows.yml"
    assert WINDOWS_PASSWORD in windows.read_text()
    _vault(["encrypt", "--vault-password-file", str(shop / "vault.pw"), str(windows)], shop)
    assert WINDOWS_PASSWORD not in windows.read_text()
    (shop / "ansible.cfg").write_text(
        "[defaults]\ninventory = ./inv\nforks = 2\nvault_password_file = ./vault.pw\n"
    )
    (shop / "vault.pw").write_text(password + "\n")
    return shop


def _audit(shop: Path, *args: str) -> subprocess.CompletedProcess[str]:
    program = (
        f"import sys\n{WATCH_SLOTS}\nfrom fleet.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return subprocess.run(
        [sys.executable, "-c", program, "audit", "--limit", ",".join(HOSTS), "-q", *args],
        cwd=shop,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _slots(stderr: str) -> tuple[int, int]:
    [line] = [ln for ln in stderr.splitlines() if ln.startswith("SLOTS ")]
    _, forks, most = line.split()
    return int(forks), int(most)


def test_a_vaulted_inventory_named_by_ansible_cfg_audits_with_its_forks(lab, tmp_path):
    shop = _shop(tmp_path, lab)
    done = _audit(shop, "--report-dir", str(tmp_path / "reports"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _slots(done.stderr) == (2, 2)  # forks = 2 from ansible.cfg, and 2 logins at once
    [report] = (tmp_path / "reports").rglob("latest/report.json")
    run = json.loads(report.read_text())
    assert sorted(h["host"] for h in run["hosts"]) == sorted(HOSTS)
    # The vaulted password logged in to the Windows hosts: their checks ran and passed.
    statuses = {h["host"]: {r["status"] for r in h["results"]} for h in run["hosts"]}
    assert statuses["win-ok"] == {"ok"} and statuses["win-2008"] == {"ok"}
    # The decrypted secret is nowhere in what was written or printed.
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file():
            assert WINDOWS_PASSWORD not in path.read_text(errors="replace"), path
    assert WINDOWS_PASSWORD not in done.stdout + done.stderr


def test_the_command_line_wins_over_ansible_cfg_forks(lab, tmp_path):
    done = _audit(_shop(tmp_path, lab), "--forks", "1", "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _slots(done.stderr) == (1, 1)


def test_a_wrong_vault_password_is_one_line_and_exit_5(lab, tmp_path):
    done = _audit(_shop(tmp_path, lab, password="not it"), "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 5
    problem = [ln for ln in done.stderr.splitlines() if not ln.startswith("SLOTS ")]
    assert len(problem) == 1 and "vault" in problem[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("report.json"))
