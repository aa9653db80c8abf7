"""The system packages the tests need: which are missing, and how they get installed.

The list is ``packages.txt`` beside this file, read by ``.ci/run`` too.  ``invoke test``
calls ``ensure()`` first, so a fresh machine either gets what it lacks (root with
apt-get, saying what it installs) or stops at once with one line naming the packages
and the command that installs them, instead of dozens of failing tests.

Imports nothing of the lab: it must run before the lab's own requirements are met.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

LIST = Path(__file__).with_name("packages.txt")
FETCH = "fetch"  # downloaded, never installed (tests/lab/exim.py)
# Where fetched packages are kept between labs (a cache: the lab's down() leaves it).
CACHE = Path(os.environ.get("FLEET_LAB_CACHE", "/var/cache/fleet-lab"))
SYSTEM_DIRS = ("/usr/sbin", "/sbin")  # sshd and ip live there, absent from a user's PATH
# postfix's debconf question, answered so that installing it writes no /etc/postfix/main.cf
# and starts no mail server: the lab runs its own instances (tests/lab/postfix.py).
DEBCONF = "postfix postfix/main_mailer_type select No configuration"


class MissingPackages(Exception):
    """Packages the tests need are missing and cannot be installed from here: one line."""


@dataclass(frozen=True)
class Package:
    name: str
    present_when: str  # a command, an absolute path, "python:<module>" or "fetch"

    @property
    def fetched(self) -> bool:
        return self.present_when == FETCH


def read(path: Path = LIST) -> tuple[Package, ...]:
    packages = []
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            name, present_when = fields
            packages.append(Package(name, present_when))
    return tuple(packages)


def installed(path: Path = LIST) -> tuple[str, ...]:
    """The names of the packages to install (not those only fetched)."""
    return tuple(p.name for p in read(path) if not p.fetched)


def fetched(path: Path = LIST) -> tuple[str, ...]:
    """The names of the packages the lab downloads without installing them."""
    return tuple(p.name for p in read(path) if p.fetched)


def is_present(package: Package, search_path: str | None = None) -> bool:
    """Whether ``package`` is there: its command on ``search_path`` (PATH and sbin), its file..."""
    probe = package.present_when
    if package.fetched:
        return deb(package.name) is not None
    if probe.startswith("python:"):
        return importlib.util.find_spec(probe.removeprefix("python:")) is not None
    if probe.startswith("/"):
        return Path(probe).exists()
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SYSTEM_DIRS])
    return shutil.which(probe, path=search_path) is not None


def deb(name: str) -> Path | None:
    """The fetched ``.deb`` of ``name`` in the cache, if there is one."""
    return next(iter(sorted(CACHE.glob(f"{name}_*.deb"))), None)


def missing(search_path: str | None = None, path: Path = LIST) -> list[str]:
    return [p.name for p in read(path) if not is_present(p, search_path)]


def _split(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """``names`` as (to install, to fetch)."""
    fetch = {p.name for p in read() if p.fetched}
    return [n for n in names if n not in fetch], [n for n in names if n in fetch]


def install_command(names: Sequence[str]) -> str:
    """The commands that install (or fetch) ``names`` on Debian, as a person would type them."""
    sudo = "" if os.geteuid() == 0 else "sudo "
    install, fetch = _split(names)
    commands = []
    if install:
        commands.append(f"{sudo}apt-get install --no-install-recommends {shlex.join(install)}")
    if fetch:
        where = shlex.quote(str(CACHE))
        commands.append(f"{sudo}mkdir -p {where} && cd {where} && {sudo}apt-get download ")
        commands[-1] += shlex.join(fetch)
    return "; ".join(commands)


def install(names: Sequence[str]) -> None:
    """apt-get update, install ``names`` (root) and fetch those to fetch; postfix unconfigured."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install, fetch = _split(names)
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    if install:
        subprocess.run(["debconf-set-selections"], input=DEBCONF.encode(), env=env, check=True)
        argv = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *install]
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    if fetch:
        download(fetch)


def download(names: Sequence[str]) -> None:
    """``apt-get download`` into the cache: needs apt's package lists only, installs nothing."""
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["apt-get", "download", "-qq", *names], cwd=CACHE, capture_output=True, text=True
    )
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("E:")]
        raise OSError(f"apt-get download {' '.join(names)}: {(errors or ['failed'])[-1]}")


def ensure(search_path: str | None = None, say: Callable[[str], object] = print) -> None:
    """Install what is missing when this process can (root, apt-get); else MissingPackages."""
    names = missing(search_path)
    if not names:
        return
    if os.geteuid() == 0 and shutil.which("apt-get", path=search_path):
        say(f"installing the system packages the tests need: {' '.join(names)}")
        try:
            install(names)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise MissingPackages(
                f"installing {' '.join(names)} failed ({exc}); try: {install_command(names)}"
            ) from exc
        names = missing(search_path)
        if not names:
            return
    raise MissingPackages(
        f"the tests need these system packages: {' '.join(names)}; "
        f"install them with: {install_command(names)}"
    )
