"""The product as `pip install .` gives it: a wheel of the package alone, whose `fleet`
finds its bundled playbook and `local` inventory from any directory.

Offline: the wheel is built without build isolation and installed with --no-index
into a venv that borrows this interpreter's packages for fleet's dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_THE_PRODUCT = ("lab", "bench", "winsim", "wsman", "sample")


def run(*argv: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: an in-tree build leaves build/ behind, whose stale files
    # would go into the next wheel.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "fleet", source / "fleet", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    done = run(
        sys.executable,
        *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"),
        *("-q", "-w", dist, source),
        cwd=source,
    )
    assert done.returncode == 0, done.stderr
    [built] = dist.glob("fleet-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("venv") / "venv"
    made = run(sys.executable, "-m", "venv", "--system-site-packages", where, cwd=where.parent)
    assert made.returncode == 0, made.stderr
    pip = [where / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    done = run(*pip, wheel, cwd=where.parent)
    assert done.returncode == 0, done.stderr
    return where


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty working directory outside the repository."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def test_the_wheel_holds_the_product_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("tests/")]
    parts = {part.lower() for name in names for part in Path(name).with_suffix("").parts}
    assert not [p for p in parts for word in NOT_THE_PRODUCT if word in p]
    assert "fleet/bundled/playbooks/mail-connectivity.yml" in names
    assert "fleet/bundled/inventories/local" in names


def test_the_installed_fleet_is_the_venvs_not_the_repositorys(venv: Path, elsewhere: Path) -> None:
    code = "import fleet; print(fleet.__file__)"
    done = run(venv / "bin" / "python", "-c", code, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(venv)


def test_installed_fleet_audits_with_its_bundled_playbook_from_any_directory(
    venv: Path, elsewhere: Path, listening: int
) -> None:
    # `listening` (conftest.py) is the port the host's `reach` check finds open.
    # Never the real inventories/local: its playbook pings this machine's gateway.
    hosts = elsewhere.parent / "lonely.ini"
    hosts.write_text(
        "[mail]\nlocalhost ansible_connection=local fleet_ping_gateway=false "
        f"fleet_ping_targets=[] fleet_smtp_targets=[] fleet_reach_ports=[{listening}]\n"
    )
    done = run(venv / "bin" / "fleet", "audit", "-i", hosts, "-q", "--no-colour", cwd=elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr
    latest = elsewhere / "reports" / "lonely" / "latest"
    data = json.loads((latest / "report.json").read_text())
    assert Path(data["playbook"]).is_relative_to(venv)
    assert Path(data["playbook"]).name == "mail-connectivity.yml"
    assert {"report.csv", "report.html", "report.xml"} <= {p.name for p in latest.iterdir()}


def test_installed_fleet_finds_the_bundled_local_inventory(venv: Path, elsewhere: Path) -> None:
    done = run(venv / "bin" / "fleet", "inventory", "--list", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["mail"]["hosts"] == ["localhost"]
    assert data["_meta"]["hostvars"]["localhost"]["ansible_connection"] == "local"
