"""``--shard K/N``: a stable, balanced part of an audit's selected hosts, and the
selection a run records so that its parts can be merged (fleet.app.merge).

The selected hosts are ordered by a hash of their inventory name and cut into N
contiguous slices: the same hosts fall in the same shard whatever order the
inventory lists them, shard sizes differ by at most one, and a host added to or
removed from the inventory moves at most N - 1 others.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from fleet.errors import ConfigError
from fleet.model import Selection, Shard
from fleet.plan import HostPlan

AUTO = "auto"
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard_option(text: str) -> Shard | str:
    """``K/N`` (1 <= K <= N) or ``auto`` (read from the CI's variables when the audit starts)."""
    if text.strip().lower() == AUTO:
        return AUTO
    return _spec(text, "write it as K/N, e.g. 1/4, or auto")


def _spec(text: str, hint: str) -> Shard:
    found = _SPEC.match(text)
    if not found:
        raise ConfigError(f"{text!r} is not a shard: {hint}")
    index, total = int(found[1]), int(found[2])
    if total < 1 or not 1 <= index <= total:
        raise ConfigError(f"{text!r} is not a shard: K must be from 1 to N (N >= 1)")
    return Shard(index, total)


def resolve_shard(
    value: Shard | str, environ: Mapping[str, str] | None = None
) -> tuple[Shard, str]:
    """The shard, and where it came from: given, or (``auto``) GitLab's ``parallel:``
    (``CI_NODE_INDEX``, 1-based, of ``CI_NODE_TOTAL``), else a Kubernetes Indexed Job
    (``JOB_COMPLETION_INDEX``, 0-based, of ``FLEET_SHARD_TOTAL``: Kubernetes does not
    export the completions count).  ConfigError (one line) for missing or bad values."""
    if isinstance(value, Shard):
        return value, "--shard"
    env = os.environ if environ is None else environ
    if env.get("CI_NODE_INDEX") or env.get("CI_NODE_TOTAL"):
        index, total = env.get("CI_NODE_INDEX", ""), env.get("CI_NODE_TOTAL", "")
        said = f"CI_NODE_INDEX={index!r}, CI_NODE_TOTAL={total!r}"
        return _from_env(index, total, said, "GitLab parallel:"), f"GitLab ({said})"
    if env.get("JOB_COMPLETION_INDEX"):
        index, total = env["JOB_COMPLETION_INDEX"], env.get("FLEET_SHARD_TOTAL", "")
        said = f"JOB_COMPLETION_INDEX={index!r}, FLEET_SHARD_TOTAL={total!r}"
        if not index.strip().isdigit():
            raise ConfigError(f"--shard auto: {said}: the index is not a whole number")
        if not total:
            raise ConfigError(
                f"--shard auto: {said}: set FLEET_SHARD_TOTAL to the Job's completions"
            )
        one_based = str(int(index) + 1)
        shard = _from_env(one_based, total, said, "Kubernetes Indexed Job")
        return shard, f"Kubernetes Indexed Job ({said})"
    raise ConfigError(
        "--shard auto: no shard in the environment: GitLab parallel: sets CI_NODE_INDEX and "
        "CI_NODE_TOTAL; a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX (add "
        "FLEET_SHARD_TOTAL); elsewhere give --shard K/N"
    )


def _from_env(index: str, total: str, said: str, source: str) -> Shard:
    try:
        return _spec(f"{index}/{total}", "")
    except ConfigError:
        raise ConfigError(f"--shard auto: {said} from {source} is not a shard K of N") from None


def shard_hosts(hosts: Sequence[HostPlan], shard: Shard) -> list[HostPlan]:
    """The hosts of ``shard``, in their given (inventory) order."""
    ranked = sorted(range(len(hosts)), key=lambda i: (_rank(hosts[i].name), hosts[i].name))
    start = (shard.index - 1) * len(hosts) // shard.total
    end = shard.index * len(hosts) // shard.total
    return [hosts[i] for i in sorted(ranked[start:end])]


def _rank(name: str) -> bytes:
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def selection_of(
    hosts: Sequence[HostPlan], playbook: Path, shard: Shard | None = None
) -> Selection:
    """What an audit of ``hosts`` (all selected, before any shard) with ``playbook`` covers.

    The inventory digest covers each host's name, connection, address, port and the
    names of its checks, in name order: two runs that would audit the same hosts at the
    same addresses share it, wherever their inventory lies.  (Not the rendered check
    parameters: hashing them costs more than a host's audit at scale, and the playbook
    digest already covers how they are made.)"""
    digest = hashlib.sha256()
    for host in sorted(hosts, key=lambda h: h.name):
        checks = ",".join(check.name for check in host.checks)
        line = f"{host.name}\t{host.connection}\t{host.address}\t{host.port}\t{checks}\n"
        digest.update(line.encode("utf-8", "surrogatepass"))
    return Selection(
        inventory_digest=f"sha256:{digest.hexdigest()}",
        playbook_digest=f"sha256:{hashlib.sha256(playbook.read_bytes()).hexdigest()}",
        host_count=len(hosts),
        shard=shard,
        hosts=tuple(h.name for h in hosts) if shard else (),
    )
