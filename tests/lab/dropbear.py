"""A busybox-only host served by dropbear: a small appliance without python3, bash or iproute2.

The node's root is a chroot under the lab's state dir holding BusyBox (every
applet linked in /bin, /sbin, /usr/bin and /usr/sbin), dropbear and the
libraries the two need, a passwd naming the lab user with ``/bin/sh``
(BusyBox's ash), the lab's hosts and resolv.conf, and a few device nodes.
dropbear runs in the node's network namespace, in a mount namespace of its own
(``unshare -m``) where /proc is mounted inside the chroot (BusyBox's ifconfig
and netstat read it), so nothing is
mounted on the machine and ``down()`` (which kills the namespace's processes
and removes the state dir) leaves nothing behind.

The host key is the one ``control`` made with ssh-keygen for every SSH node
(known_hosts lists it), converted to dropbear's format by ``dropbearconvert``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.lab.netns import LabError, run

DROPBEAR = Path("/usr/sbin/dropbear")
CONVERT = Path("/usr/bin/dropbearconvert")
APPLET_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin")
# (name, type, major, minor): what a shell, nc, ping and dropbear open.
DEVICES = (
    ("null", stat.S_IFCHR, 1, 3),
    ("zero", stat.S_IFCHR, 1, 5),
    ("random", stat.S_IFCHR, 1, 8),
    ("urandom", stat.S_IFCHR, 1, 9),
    ("tty", stat.S_IFCHR, 5, 0),
)


def require() -> None:
    """dropbear and BusyBox are installed (tests/lab/packages.txt), or one line saying so."""
    missing = [p for p in ("dropbear", "busybox") if not _which(p)]
    if missing:
        raise LabError(
            f"the busybox host needs {' and '.join(missing)}: apt-get install dropbear-bin busybox"
        )


def _which(name: str) -> str:
    if name == "dropbear":
        return str(DROPBEAR) if DROPBEAR.is_file() else ""
    return shutil.which(name) or ""


def _libraries(binaries: Iterable[str]) -> set[str]:
    """The shared objects (and the loader) the binaries load, as ldd names them."""
    found: set[str] = set()
    for binary in binaries:
        listed = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
        for line in listed.stdout.splitlines():
            path = line.split("=>")[-1].split("(")[0].strip()
            if path.startswith("/"):
                found.add(path)
    return found


def _copy(source: str, root: Path) -> None:
    target = root / source.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(source), target)


def make_root(root: Path, *, user: str, authorized_keys: str, hosts: str, resolv_conf: str) -> Path:
    """The chroot of a busybox host at ``root``: BusyBox, dropbear, the user's key."""
    busybox = _which("busybox")
    for directory in (*APPLET_DIRS, "etc/dropbear", "dev", "proc", "tmp", "root"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    _copy(str(DROPBEAR), root)
    for library in _libraries([busybox, str(DROPBEAR)]):
        _copy(library, root)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for name in applets.stdout.split():
        for directory in APPLET_DIRS:
            link = root / directory / name
            if not link.exists():
                link.symlink_to("/bin/busybox")
    for name, kind, major, minor in DEVICES:
        os.mknod(root / "dev" / name, 0o666 | kind, os.makedev(major, minor))
        (root / "dev" / name).chmod(0o666)  # mknod's mode went through the umask
    entry = pwd.getpwnam(user)
    home = root / "home" / user
    (home / ".ssh").mkdir(parents=True)
    etc = root / "etc"
    etc.joinpath("passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\n"
        f"{user}:x:{entry.pw_uid}:{entry.pw_gid}:fleet lab:/home/{user}:/bin/sh\n"
    )
    etc.joinpath("group").write_text(f"root:x:0:\n{user}:x:{entry.pw_gid}:\n")
    etc.joinpath("shells").write_text("/bin/sh\n")
    etc.joinpath("hosts").write_text(hosts)
    etc.joinpath("resolv.conf").write_text(resolv_conf)
    etc.joinpath("nsswitch.conf").write_text("hosts: files\npasswd: files\ngroup: files\n")
    (home / ".ssh" / "authorized_keys").write_text(authorized_keys)
    for path in (home, home / ".ssh", home / ".ssh" / "authorized_keys"):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    (home / ".ssh").chmod(0o700)
    return root


def host_key(openssh_key: Path, root: Path) -> Path:
    """``openssh_key`` (ssh-keygen's) in dropbear's format, inside the chroot."""
    converted = root / "etc" / "dropbear" / "dropbear_ed25519_host_key"
    run([str(CONVERT), "openssh", "dropbear", str(openssh_key), str(converted)])
    return Path("/") / converted.relative_to(root)


def argv(root: Path, address: str, key_in_root: Path) -> list[str]:
    """dropbear in the foreground, logging to stderr, keys only, in its own mount namespace."""
    script = (
        'mount -t proc proc "$0/proc" && exec chroot "$0" '
        f"{DROPBEAR} -F -E -s -p {address}:22 -r {key_in_root}"
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root)]
