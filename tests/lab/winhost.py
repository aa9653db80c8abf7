"""A simulated Windows host of the lab: WinRM on 5985/5986 answering with a winsim profile.

``start(namespace, address, profile, state_dir)`` runs, inside the node's
network namespace::

    python -m tests.lab.winhost --profile P --address A --state-dir D

which serves WinRM (``tests.lab.wsman``) on each address: HTTP 5985 with
NTLM and message encryption (Basic over plain HTTP only with
``--allow-unencrypted-basic``), HTTPS 5986 with Basic and NTLM and a
certificate from the lab CA in the state directory (``tests.lab.pki``).
Commands are answered by ``tests.lab.winsim.handle_script`` with the
profile's behaviour.  The login is the profile's ``user``/``password``
(default ``fleet`` / ``Lab-Passw0rd``).

A bench node serves many hosts from one process: with ``--block CIDR`` (the
node answers for the block through a ``local`` route) one HTTP listener on
0.0.0.0:5985 serves every address of the block as a host of its own, the
address a client reached being the host's (``WSManServer(handler_for=...)``);
no HTTPS there (a certificate per address is the standard lab's business).
``--gateway G`` gives the profile's first adapter the node's own ``--address``
as a second address and ``G`` as its gateway, so that the host's ping and
SMTP probes leave through the bench's router.

Files in the state directory, per first address A: ``winhost-A.log``
(output), ``winhost-A.ready`` (written once the ports listen),
``winhost-A.stats.json`` (per client: requests, shells, commands...),
``winhost-A.users`` (the NTLM users file).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.lab import pki
from tests.lab.wsman import Handler, WSManServer, write_users_file

LAB_USER = "fleet"
LAB_PASSWORD = "Lab-Passw0rd"
HTTP_PORT = 5985
HTTPS_PORT = 5986
START_TIMEOUT = 20.0

log = logging.getLogger(__name__)


def _files(state_dir: Path, address: str) -> dict[str, Path]:
    stem = f"winhost-{address.replace(':', '_')}"
    return {kind: state_dir / f"{stem}.{kind}" for kind in ("log", "ready", "users")} | {
        "stats": state_dir / f"{stem}.stats.json"
    }


def credentials(profile: Any) -> tuple[str, str]:
    """The login a profile accepts: its ``user``/``password`` or the lab's."""
    return (
        str(getattr(profile, "user", None) or LAB_USER),
        str(getattr(profile, "password", None) or LAB_PASSWORD),
    )


def _profile_handler(
    profile_name: str, gateway: tuple[str, str] | None = None
) -> tuple[Any, Callable[[str], Handler]]:
    """The winsim profile and a factory of per-address handlers (imported late: B's module).

    ``gateway`` (node address, gateway): the first adapter also carries the node's
    address (/24) and routes through ``gateway``, as the bench's Windows hosts do."""
    from dataclasses import replace

    from tests.lab import winsim

    try:
        profile = winsim.PROFILES[profile_name]
    except KeyError:
        known = ", ".join(sorted(winsim.PROFILES))
        raise SystemExit(f"unknown profile {profile_name!r} (known: {known})") from None
    if gateway is not None:
        node_address, router = gateway
        first, *rest = profile.adapters
        first = replace(
            first, ipv4=((node_address, 24), *first.ipv4), gateway=router, dns=(router,)
        )
        profile = replace(profile, adapters=(first, *rest))

    def for_address(address: str) -> Handler:
        def handler(script: str) -> tuple[bytes, bytes, int]:
            stdout, stderr, code = winsim.handle_script(profile, script, address=address)
            return stdout, stderr, code

        return handler

    return profile, for_address


def serve(
    addresses: Sequence[str],
    handler_for: Callable[[str], Handler],
    state_dir: Path,
    *,
    users: dict[str, str],
    http_port: int = HTTP_PORT,
    https_port: int = HTTPS_PORT,
    allow_unencrypted_basic: bool = False,
    keytab: Path | None = None,
) -> list[WSManServer]:
    """Start one WSManServer per address (HTTP and HTTPS); returns them started."""
    files = _files(state_dir, addresses[0])
    users_file = write_users_file(files["users"], users)
    servers = []
    for address in addresses:
        cert, key = pki.issue(state_dir, address, address)
        servers.append(
            WSManServer(
                handler_for(address),
                users_file=users_file,
                address=address,
                http_port=http_port,
                https_port=https_port,
                cert_file=cert,
                key_file=key,
                allow_unencrypted_basic=allow_unencrypted_basic,
                stats_file=_files(state_dir, address)["stats"],
                keytab=keytab,
            ).start()
        )
    return servers


def serve_blocks(
    address: str,
    handler_for: Callable[[str], Handler],
    state_dir: Path,
    *,
    users: dict[str, str],
    http_port: int = HTTP_PORT,
) -> list[WSManServer]:
    """One HTTP listener on every address of the node (its blocks included): a host per address."""
    users_file = write_users_file(_files(state_dir, address)["users"], users)
    server = WSManServer(
        handler_for(address),
        users_file=users_file,
        address="0.0.0.0",
        http_port=http_port,
        https_port=None,
        stats_file=_files(state_dir, address)["stats"],
        handler_for=handler_for,
    )
    return [server.start()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.winhost", description=__doc__)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--address", required=True, action="append", help="repeatable")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--http-port", type=int, default=HTTP_PORT)
    parser.add_argument("--https-port", type=int, default=HTTPS_PORT)
    parser.add_argument("--allow-unencrypted-basic", action="store_true")
    parser.add_argument("--keytab", type=Path, help="accept Kerberos with these HTTP/ keys")
    parser.add_argument(
        "--block", action="append", default=[], help="serve this routed block too (repeatable)"
    )
    parser.add_argument("--gateway", help="the hosts' default gateway, beside the node's address")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    gateway = (args.address[0], args.gateway) if args.gateway else None
    profile, handler_for = _profile_handler(args.profile, gateway)
    user, password = credentials(profile)
    if args.block:
        servers = serve_blocks(
            args.address[0],
            handler_for,
            args.state_dir,
            users={user: password},
            http_port=args.http_port,
        )
    else:
        servers = serve(
            args.address,
            handler_for,
            args.state_dir,
            users={user: password},
            http_port=args.http_port,
            https_port=args.https_port,
            allow_unencrypted_basic=args.allow_unencrypted_basic,
            keytab=args.keytab,
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    _files(args.state_dir, args.address[0])["ready"].write_text(
        " ".join(f"{s.address}:{s.http_port},{s.https_port}" for s in servers) + "\n"
    )
    log.info("serving WinRM for profile %s on %s", args.profile, ", ".join(args.address))
    stop.wait()
    for server in servers:
        server.stop()


def start(
    namespace: str | None,
    address: str | Sequence[str],
    profile: str,
    state_dir: str | Path,
    *,
    http_port: int = HTTP_PORT,
    https_port: int = HTTPS_PORT,
    allow_unencrypted_basic: bool = False,
    timeout: float = START_TIMEOUT,
    keytab: Path | None = None,
    env: dict[str, str] | None = None,
    blocks: Sequence[str] = (),
    gateway: str | None = None,
) -> subprocess.Popen[bytes]:
    """Run a simulated Windows host in ``namespace`` (None: this one); returns once it listens.

    With ``blocks``, the hosts of those routed blocks (see ``--block``), one process.

    Raises RuntimeError with the end of its log if it exits or does not
    listen within ``timeout`` seconds.  ``keytab``: also accept Kerberos; ``env``: the
    child's environment (e.g. libfaketime's, for a host whose clock is off).
    """
    addresses = [address] if isinstance(address, str) else list(address)
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    files = _files(state, addresses[0])
    files["ready"].unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "tests.lab.winhost",
        "--profile",
        profile,
        "--state-dir",
        str(state),
    ]
    argv += [item for a in addresses for item in ("--address", a)]
    argv += ["--http-port", str(http_port), "--https-port", str(https_port)]
    if allow_unencrypted_basic:
        argv.append("--allow-unencrypted-basic")
    if keytab is not None:
        argv += ["--keytab", str(keytab)]
    argv += [item for block in blocks for item in ("--block", block)]
    argv += ["--gateway", gateway] if gateway else []
    if namespace:
        argv = ["ip", "netns", "exec", namespace, *argv]
    # The child imports fleet from wherever this process did, whatever its cwd.
    env = dict(env or os.environ)
    source_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    with open(files["log"], "ab") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    _wait_ready(process, files, timeout)
    return process


def _wait_ready(process: subprocess.Popen[bytes], files: dict[str, Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not files["ready"].exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=5)
            tail = files["log"].read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"winhost did not start (exit {process.returncode}); its log ends:\n{tail}"
            )
        time.sleep(0.05)


if __name__ == "__main__":
    main()
