"""A real MIT Kerberos KDC for the lab: a realm, its principals, a keytab, a client krb5.conf.

``create(directory, ...)`` makes a realm whose every file lives under
``directory`` (the database, the stash, ``kdc.conf``, the clients'
``krb5.conf``, the services' keytab): the system's ``/etc/krb5.conf`` is
never read or written, because every command gets ``KRB5_CONFIG`` and
``KRB5_KDC_PROFILE`` pointing here.  ``start`` runs ``krb5kdc -n`` (in a
network namespace when given one).  Principals: the user (with pre-auth
required, as Active Directory does) and ``HTTP/<name>`` for each service
name, exported to one keytab.

The client configuration also names a second realm, ``DEAD.LAB``, whose KDC
address has nothing listening: the lab's "KDC unreachable".
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REALM = "FLEET.LAB"
DEAD_REALM = "DEAD.LAB"
MASTER_PASSWORD = "Lab-KDC-Master"  # the lab's database only
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class Realm:
    """A created realm: where its files are and how clients reach it."""

    directory: Path
    realm: str
    kdc: str  # address
    port: int
    dead_kdc: str  # DEAD.LAB's "address:port", where nothing listens
    user: str
    password: str

    @property
    def krb5_conf(self) -> Path:
        return self.directory / "krb5.conf"

    @property
    def kdc_conf(self) -> Path:
        return self.directory / "kdc.conf"

    @property
    def keytab(self) -> Path:
        return self.directory / "http.keytab"

    @property
    def principal(self) -> str:
        return f"{self.user}@{self.realm}"

    def env(self, **more: str) -> dict[str, str]:
        """The environment for Kerberos commands and clients of this realm."""
        env = dict(os.environ)
        env.update(KRB5_CONFIG=str(self.krb5_conf), KRB5_KDC_PROFILE=str(self.kdc_conf))
        env.update(more)
        return env

    def kinit(self, ccache: Path, *, lifetime: str | None = None) -> None:
        """``kinit`` the user into ``ccache`` (the password on stdin)."""
        argv = ["kinit", *(["-l", lifetime] if lifetime else []), self.principal]
        done = subprocess.run(
            argv,
            input=self.password + "\n",
            capture_output=True,
            text=True,
            env=self.env(KRB5CCNAME=f"FILE:{ccache}"),
            timeout=15,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kinit failed: {done.stderr.strip()}")


def _krb5_conf(realm: str, kdc: str, port: int, dead_kdc: str) -> str:
    # No DNS in the lab: names are taken as written (an address is a host name too).
    return f"""[libdefaults]
    default_realm = {realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 1
    forwardable = true

[realms]
    {realm} = {{
        kdc = {kdc}:{port}
    }}
    {DEAD_REALM} = {{
        kdc = {dead_kdc}
    }}
"""


def _kdc_conf(directory: Path, realm: str, kdc: str, port: int) -> str:
    return f"""[kdcdefaults]
    kdc_listen = {kdc}:{port}
    kdc_tcp_listen = {kdc}:{port}

[realms]
    {realm} = {{
        database_name = {directory}/principal
        key_stash_file = {directory}/stash
        acl_file = {directory}/kadm5.acl
        max_life = 10h 0m 0s
        max_renewable_life = 1d 0h 0m 0s
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{directory}/kdc.log
"""


def create(
    directory: Path,
    *,
    kdc: str,
    port: int = 88,
    dead_kdc: str,
    user: str,
    password: str,
    services: Iterable[str],
    realm: str = REALM,
) -> Realm:
    """A fresh realm under ``directory`` with ``user`` and ``HTTP/<name>`` per service name."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("principal*"):
        stale.unlink()
    made = Realm(directory, realm, kdc, port, dead_kdc, user, password)
    made.krb5_conf.write_text(_krb5_conf(realm, kdc, port, dead_kdc))
    made.kdc_conf.write_text(_kdc_conf(directory, realm, kdc, port))
    (directory / "kadm5.acl").write_text("")
    made.keytab.unlink(missing_ok=True)
    _run(made, ["kdb5_util", "create", "-s", "-r", realm, "-P", MASTER_PASSWORD])
    queries = [f"addprinc -requires_preauth -pw {password} {user}"]
    for name in services:
        queries += [f"addprinc -randkey HTTP/{name}", f"ktadd -k {made.keytab} HTTP/{name}"]
    for query in queries:
        _run(made, ["kadmin.local", "-r", realm, "-q", query])
    return made


def _run(realm: Realm, argv: Sequence[str]) -> None:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, env=realm.env(), timeout=60, check=False
    )
    if done.returncode != 0 or "error" in done.stderr.lower():
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")


def start(realm: Realm, namespace: str | None = None) -> subprocess.Popen[bytes]:
    """Run the realm's KDC (in ``namespace``); returns once it answers on TCP."""
    argv = ["krb5kdc", "-n", "-r", realm.realm]
    if namespace:
        argv = ["ip", "netns", "exec", namespace, *argv]
    log = open(realm.directory / "krb5kdc.out", "ab")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=realm.env()
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection((realm.kdc, realm.port), timeout=1):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = (realm.directory / "krb5kdc.out").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"krb5kdc did not start: {tail}") from None
            time.sleep(0.1)
