"""Real postfix for the lab: one instance per node, with its own config, queue and log.

Three set-ups that mail servers really run (``topology.Smtp``):

* ``postfix``: plain postfix offering STARTTLS with a self-signed certificate;
* ``postfix-postscreen``: postscreen in front, with its pre-greeting test on:
  the ``220-`` banner at once, the real greeting after ``postscreen_greet_wait``
  (its 6 s default), for every connection (no cache of passed clients);
* ``postfix-badtls``: STARTTLS offered, but the certificate and the key do not
  match: smtpd answers STARTTLS with ``454 4.7.0 TLS not available``.

``master -d`` runs in the foreground inside the node's namespace, so the lab
stops it as any other server.  Nothing under /etc/postfix is used or changed.
"""

from __future__ import annotations

import grp
import pwd
import shutil
from pathlib import Path

from tests.lab.netns import LabError
from tests.lab.smtpd import self_signed
from tests.lab.topology import Smtp

MASTER = Path("/usr/lib/postfix/sbin/master")
MODES = (Smtp.POSTFIX, Smtp.POSTFIX_POSTSCREEN, Smtp.POSTFIX_BADTLS)
PACKAGE_HINT = "apt-get install postfix (.ci/run does)"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = {name}.lab
mydomain = lab
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
inet_interfaces = {address}
inet_protocols = ipv4
smtpd_banner = $myhostname ESMTP fleet lab (postfix)
smtpd_peername_lookup = no
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = {directory}/maillog
maillog_file_prefixes = {directory}
"""
TLS_CF = """\
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
"""
POSTSCREEN_CF = """\
postscreen_access_list =
postscreen_cache_map =
postscreen_greet_action = enforce
postscreen_greet_wait = 6s
"""
# Every service runs outside a chroot; only what smtpd and postscreen talk to.
MASTER_CF = """\
postlog   unix-dgram n  -       n       -       1       postlogd
anvil     unix  -       -       n       -       1       anvil
proxymap  unix  -       -       n       -       -       proxymap
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""
SMTPD_CF = "smtp      inet  n       -       n       -       -       smtpd\n"
POSTSCREEN_MASTER_CF = """\
smtp      inet  n       -       n       -       1       postscreen
smtpd     pass  -       -       n       -       -       smtpd
dnsblog   unix  -       -       n       -       0       dnsblog
tlsproxy  unix  -       -       n       -       0       tlsproxy
"""


def require() -> None:
    """LabError naming the package when postfix (or its user and group) is missing."""
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        raise LabError(f"the postfix user or postdrop group is missing: {PACKAGE_HINT}") from None
    if not MASTER.exists():
        raise LabError(f"{MASTER} is missing: {PACKAGE_HINT}")


def configure(directory: Path, name: str, address: str, mode: Smtp) -> list[str]:
    """Write an instance's configuration and directories under ``directory``; its argv."""
    require()
    conf, queue, data = directory / "postfix", directory / "queue", directory / "data"
    for path in (conf, queue / "pid", data):
        path.mkdir(parents=True, exist_ok=True)
    for sub, mode_bits, group in (("private", 0o700, None), ("public", 0o710, "postdrop")):
        path = queue / sub
        path.mkdir(exist_ok=True)
        shutil.chown(path, "postfix", group)
        path.chmod(mode_bits)
    shutil.chown(data, "postfix")
    main = MAIN_CF.format(queue=queue, data=data, name=name, address=address, directory=directory)
    main += TLS_CF.format(**_certificate(directory, name, broken=mode is Smtp.POSTFIX_BADTLS))
    master = MASTER_CF
    if mode is Smtp.POSTFIX_POSTSCREEN:
        main += POSTSCREEN_CF
        master += POSTSCREEN_MASTER_CF
    else:
        master += SMTPD_CF
    (conf / "main.cf").write_text(main)
    (conf / "master.cf").write_text(master)
    # -d: stay in the foreground, logging goes to maillog through postlogd.
    return [str(MASTER), "-c", str(conf), "-d"]


def _certificate(directory: Path, name: str, *, broken: bool) -> dict[str, Path]:
    """A self-signed certificate and its key; with ``broken``, the key of another one."""
    good = directory / "tls"
    good.mkdir(exist_ok=True)
    self_signed(name, good)
    if not broken:
        return {"cert": good / "cert.pem", "key": good / "key.pem"}
    other = directory / "tls-other"
    other.mkdir(exist_ok=True)
    self_signed(name, other)
    return {"cert": good / "cert.pem", "key": other / "key.pem"}
