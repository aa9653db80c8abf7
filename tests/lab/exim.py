"""Real exim for the lab, greeting late on purpose: ``acl_smtp_connect`` with ``delay = 8s``.

Debian's exim4 packages conflict with postfix, which the lab also runs, so exim is not
installed: its package (and a library it needs that postfix does not) is fetched with
``apt-get download`` into the cache (``tests.lab.packages``) and unpacked with
``dpkg-deb -x`` into a private root under the node's directory.  The binary runs from
there with its own configuration (``-C``), spool and log, in the foreground (``-bdf``)
inside the node's namespace, as the lab runs postfix.  Nothing under /etc/exim4 exists
or is used.

The binary looks up its user, ``Debian-exim``, by name before it reads any
configuration, so the lab creates that system user when absent (and removes it on
``down()`` only when it was the lab's).
"""

from __future__ import annotations

import pwd
import shutil
from pathlib import Path

from tests.lab import packages, sshd
from tests.lab.netns import LabError, run
from tests.lab.smtpd import self_signed

BINARY = Path("usr/sbin/exim4")  # inside the private root
USER = "Debian-exim"
USER_COMMENT = "exim of the fleet lab (created by tests.lab)"
GREETING_DELAY = 8  # seconds: above fleet's warning threshold (5 s), below its patience (30 s)

CONFIG = """\
primary_hostname = {name}.lab
daemon_smtp_ports = 25
local_interfaces = {address}
spool_directory = {directory}/spool
log_file_path = {directory}/log/%slog
pid_file_path = {directory}/exim.pid
smtp_banner = $primary_hostname ESMTP fleet lab (exim)
host_lookup =
rfc1413_hosts =
keep_environment = LD_LIBRARY_PATH
tls_certificate = {directory}/tls/cert.pem
tls_privatekey = {directory}/tls/key.pem
acl_smtp_connect = acl_check_connect

begin acl

acl_check_connect:
  accept delay = {delay}s
"""


def fetch() -> list[Path]:
    """The cached ``.deb`` files, downloaded first when missing; LabError naming the fix."""
    names = packages.fetched()
    absent = [name for name in names if packages.deb(name) is None]
    if absent:
        try:
            packages.download(absent)
        except OSError as exc:
            raise LabError(f"{exc} (apt-get update first; .ci/run does)") from exc
    return [path for path in map(packages.deb, names) if path is not None]


def configure(directory: Path, name: str, address: str) -> list[str]:
    """Unpack exim under ``directory``, write its configuration; the argv that runs it."""
    root = directory / "root"
    for deb in fetch():
        run(["dpkg-deb", "-x", str(deb), str(root)])
    ensure_user()
    for sub in ("spool", "log", "tls"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    self_signed(name, directory / "tls")
    for path in (directory / "spool", directory / "log", directory / "tls" / "key.pem"):
        shutil.chown(path, USER, USER)  # the receiving process runs as the exim user
    config = directory / "exim.conf"
    config.write_text(
        CONFIG.format(name=name, address=address, directory=directory, delay=GREETING_DELAY)
    )
    config.chmod(0o644)  # exim refuses a configuration others may write
    libraries = ":".join(str(p) for p in sorted(root.glob("usr/lib/*-linux-gnu")))
    return ["env", f"LD_LIBRARY_PATH={libraries}", str(root / BINARY), "-C", str(config), "-bdf"]


def ensure_user() -> bool:
    """Create the system user the binary insists on, if absent; True when this call did."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        pass
    else:
        return False
    run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            USER_COMMENT,
            "--user-group",
            USER,
        ]
    )
    return True


def remove_user() -> bool:
    """Remove the exim user if (and only if) the lab created it."""
    return sshd.remove_user(USER, USER_COMMENT)
