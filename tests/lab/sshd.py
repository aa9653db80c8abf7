"""Real OpenSSH servers for the lab's Unix hosts: keys, sshd_config, the login user.

Every lab gets fresh ed25519 keys (one per sshd, one client key) so a
known_hosts from an old lab never matches a new one by accident.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.lab.netns import LabError, run

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it
LAB_USER = "fleetlab"
LAB_HOME = Path("/var/lib/fleetlab")
# Marks a user this lab created, so that down() removes it and only it.
LAB_USER_COMMENT = "fleet lab login (created by tests.lab)"


def keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at ``path``; returns the public key line."""
    public = path.with_name(path.name + ".pub")
    path.unlink(missing_ok=True)
    public.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return public.read_text().strip()


def keygen_many(paths: Iterable[tuple[Path, str]]) -> list[str]:
    """Generate several key pairs at once (ssh-keygen is a process each)."""
    items = list(paths)
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda item: keygen(*item), items))


def sshd_config(
    *, listen: Iterable[str], host_key: Path, pid_file: Path, authorized_keys: Path
) -> str:
    listen_lines = "".join(f"ListenAddress {address}\n" for address in listen)
    return f"""\
# fleet lab sshd: public-key login for {LAB_USER} only
Port 22
{listen_lines}HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
AllowUsers {LAB_USER}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
# No PAM: no session modules to slow each login, no pam_systemd to wait for.
UsePAM no
# The keys live in the state dir, which root owns but fleetlab does not.
StrictModes no
# The benchmark opens hundreds of connections at once.
MaxStartups 200:30:500
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# The smtp check may open direct-tcpip channels from the host itself.
AllowTcpForwarding yes
LogLevel INFO
"""


def ensure_privsep_dir() -> bool:
    """Create /run/sshd if missing; True when this call created it."""
    if PRIVSEP_DIR.is_dir():
        return False
    PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
    return True


def ensure_user() -> bool:
    """Create the lab login user if absent; True when this call created it.

    Shell /bin/sh and an empty home: a heavy shell start-up would be timed as
    part of every command.  Password "*": no password can match, yet the
    account is not "locked" ("!"), which sshd refuses even for keys without PAM.
    """
    try:
        pwd.getpwnam(LAB_USER)
    except KeyError:
        pass
    else:
        return False
    run(
        [
            "useradd",
            "--no-create-home",
            "--home-dir",
            str(LAB_HOME),
            "--shell",
            "/bin/sh",
            "--comment",
            LAB_USER_COMMENT,
            "--user-group",
            LAB_USER,
        ]
    )
    run(["usermod", "--password", "*", LAB_USER])
    LAB_HOME.mkdir(mode=0o755, parents=True, exist_ok=True)
    entry = pwd.getpwnam(LAB_USER)
    os.chown(LAB_HOME, entry.pw_uid, entry.pw_gid)
    return True


def remove_user(name: str = LAB_USER, comment: str = LAB_USER_COMMENT) -> bool:
    """Remove a lab user (``fleetlab`` unless told) and its home if (and only if) the lab
    created it: its comment says so."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return False
    if entry.pw_gecos != comment:
        return False
    done = subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
    if done.returncode not in (0, 12):  # 12: home could not be removed (already gone)
        raise LabError(f"userdel {name}: {done.stderr.decode(errors='replace').strip()}")
    return True
