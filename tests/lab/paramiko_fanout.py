"""The benchmark's library floor: paramiko alone, fanned out over threads.

``python -m tests.lab.paramiko_fanout --key K --known-hosts F --user U --forks N
HOSTS SCRIPT OUT`` logs in to every address in HOSTS (one per line) with at
most N at once, runs SCRIPT on ``/bin/sh -s`` and writes each host's stdout to
``OUT/<address>``.  Host keys are checked, as fleet does; nothing else is done:
no inventory, plan, reach probe, parsing or report.  The benchmark runs it
beside fleet to show what the SSH library itself costs the client, so fleet's
own share of its client CPU can be read off the table.  Lab use only.
"""

from __future__ import annotations

import argparse
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

from fleet.transports.sshcommon import KnownHostsIndex


def audit_one(
    address: str,
    script: bytes,
    user: str,
    key: paramiko.PKey,
    known: KnownHostsIndex,
    out: Path,
    timeout: float = 10.0,
) -> bool:
    sock = socket.create_connection((address, 22), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as fleet does
    client = paramiko.SSHClient()
    try:
        for keytype, blob in known.lookup(address).items():
            hostkey = paramiko.PKey.from_type_string(keytype, blob)
            client.get_host_keys().add(address, keytype, hostkey)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            address,
            username=user,
            pkey=key,
            sock=sock,
            timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session()
        channel.exec_command("/bin/sh -s")
        channel.sendall(script)
        channel.shutdown_write()
        chunks = []
        while data := channel.recv(65536):
            chunks.append(data)
        channel.recv_exit_status()
        (out / address).write_bytes(b"".join(chunks))
        return True
    finally:
        client.close()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.paramiko_fanout")
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--known-hosts", type=Path, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("hosts", type=Path)
    parser.add_argument("script", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    addresses = args.hosts.read_text().split()
    script = args.script.read_bytes()
    key = paramiko.Ed25519Key.from_private_key_file(str(args.key))
    known = KnownHostsIndex.parse(args.known_hosts)  # parsed once, as fleet does

    def one(address: str) -> bool:
        try:
            return audit_one(address, script, args.user, key, known, args.out)
        except Exception as exc:
            print(f"{address}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return False

    with ThreadPoolExecutor(args.forks) as pool:
        done = list(pool.map(one, addresses))
    return 0 if all(done) else 1


if __name__ == "__main__":
    sys.exit(main())
