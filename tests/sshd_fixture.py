"""A real OpenSSH sshd on 127.0.0.1 for transport tests (no namespaces needed)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    client_key: Path
    known_hosts: Path
    host_key_pub: Path
    user: str
    proc: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-f", str(path)], check=True)


def start_sshd(tmp: Path, extra_host_key: str = "") -> Sshd:
    """sshd with an ed25519 host key (and one of ``extra_host_key``'s type, listed
    first in its config, when given); known_hosts records the first key only."""
    Path("/run/sshd").mkdir(exist_ok=True)
    host_key, client_key = tmp / "host_key", tmp / "client_key"
    keygen(host_key)
    keygen(client_key)
    host_keys = [host_key]
    if extra_host_key:
        host_keys.insert(0, tmp / f"host_key_{extra_host_key}")
        keygen(host_keys[0], extra_host_key)
    (tmp / "authorized_keys").write_text((tmp / "client_key.pub").read_text())
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
{"".join(f"HostKey {k}{chr(10)}" for k in host_keys)}PidFile {tmp}/sshd.pid
AuthorizedKeysFile {tmp}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxStartups 100:30:200
"""
    )
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    host_pub = host_keys[0].with_suffix(".pub")
    key_type, key_b64 = host_pub.read_text().split()[:2]
    known = tmp / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {key_type} {key_b64}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(4).startswith(b"SSH-"):
                    break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("sshd did not start")
    user = os.environ.get("USER") or "root"
    return Sshd(port, client_key, known, host_pub, user, proc)
