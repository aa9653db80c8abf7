"""The lab's Kerberos block (198.18.0.80-89): a real KDC and Windows hosts that accept Kerberos.

Added on top of a running lab (its bridge), in one namespace of its own,
``fleet-krb``, wired to the bridge like every node:

* 198.18.0.80: the KDC of ``FLEET.LAB`` (``tests.lab.kdc``);
* 198.18.0.81 ``win-krb``: a healthy Windows host with ``HTTP/198.18.0.81``
  and ``HTTP/win-krb.fleet.lab`` in the keytab;
* 198.18.0.82 ``win-krb-nospn``: the same, but the KDC has no ``HTTP/`` for it;
* 198.18.0.83 ``win-krb-skew``: its keys are known, its clock is 20 minutes
  ahead (libfaketime), beyond Kerberos' 5 minutes.

``DEAD.LAB``'s KDC is 198.18.0.80:8899, where nothing listens.  The hosts
answer with winsim's ``ok`` profile; the login is the lab's Windows user.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.lab import kdc, netns, winhost
from tests.lab.topology import WINDOWS_PASSWORD

NAMESPACE = "fleet-krb"
VETH = "fleetvkrb"  # the netns module's prefix: lab teardown removes it too
KDC_ADDRESS = "198.18.0.80"
HOSTS = {"win-krb": "198.18.0.81", "win-krb-nospn": "198.18.0.82", "win-krb-skew": "198.18.0.83"}
HOST_NAME = "win-krb.fleet.lab"  # win-krb's name in the realm (hostname override)
SKEW = "+20m"
START_TIMEOUT = 60.0  # a loaded machine: the hosts' keys and certificates take a while
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@dataclass
class KerberosLab:
    realm: kdc.Realm
    processes: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, check=False)


def _wire(bridge: str, gateway: str, prefix: int) -> None:
    subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, check=False)
    netns.ip_batch(
        [
            f"netns add {NAMESPACE}",
            f"link add {VETH} type veth peer name eth0 netns {NAMESPACE}",
            f"link set {VETH} master {bridge} up",
        ]
    )
    addresses = [KDC_ADDRESS, *HOSTS.values()]
    netns.ip_batch(
        [f"addr add {a}/{prefix} dev eth0" for a in addresses]
        + ["link set lo up", "link set eth0 up", f"route add default via {gateway}"],
        namespace=NAMESPACE,
    )


def start(state_dir: Path, *, bridge: str, gateway: str, prefix: int = 24) -> KerberosLab:
    """Wire the block, create the realm, start the KDC and the hosts."""
    directory = state_dir / "kerberos"
    shutil.rmtree(directory, ignore_errors=True)
    _wire(bridge, gateway, prefix)
    user, password = winhost.LAB_USER, WINDOWS_PASSWORD
    realm = kdc.create(
        directory,
        kdc=KDC_ADDRESS,
        dead_kdc=f"{KDC_ADDRESS}:8899",
        user=user,
        password=password,
        services=[HOSTS["win-krb"], HOST_NAME, HOSTS["win-krb-skew"]],
    )
    started = KerberosLab(realm, [])
    try:
        started.processes.append(kdc.start(realm, NAMESPACE))
        started.processes.append(
            winhost.start(
                NAMESPACE,
                [HOSTS["win-krb"], HOSTS["win-krb-nospn"]],
                "ok",
                directory,
                keytab=realm.keytab,
                env=realm.env(),
                timeout=START_TIMEOUT,
            )
        )
        skewed = realm.env(
            LD_PRELOAD=str(FAKETIME), FAKETIME=SKEW, FAKETIME_DONT_FAKE_MONOTONIC="1"
        )
        started.processes.append(
            winhost.start(
                NAMESPACE,
                HOSTS["win-krb-skew"],
                "ok",
                directory,
                keytab=realm.keytab,
                env=skewed,
                timeout=START_TIMEOUT,
            )
        )
    except BaseException:
        started.stop()
        raise
    return started
