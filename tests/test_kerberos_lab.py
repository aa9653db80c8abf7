"""Windows lab hosts audited with Kerberos against the lab's real MIT KDC, and each failure.

The lab's Kerberos block (tests/lab/krblab.py): a KDC at 198.18.0.80, hosts
that accept Kerberos with a keytab (one without an SPN, one whose clock is 20
minutes ahead).  Audits run as a user runs them (``python -m fleet audit``)
with the realm's krb5.conf in ``KRB5_CONFIG``, over plain HTTP (5985), so
every message is sealed with the Kerberos session keys.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import spnego
import yaml

from fleet import causes
from fleet.errors import UnreachableError
from fleet.model import RunResult, Status
from fleet.plan import HostPlan, RunOptions
from fleet.transports.base import open_transport
from tests.helpers import run_module
from tests.lab import krblab
from tests.lab.topology import WRONG_PASSWORD

pytestmark = pytest.mark.lab
pytest.importorskip("gssapi", reason="the kerberos extra (gssapi) is not installed")

PLAYBOOK = Path(__file__).resolve().parents[1] / "playbooks" / "mail-connectivity.yml"


@pytest.fixture(scope="module")
def krb(lab: Any) -> Iterator[krblab.KerberosLab]:
    started = krblab.start(lab.state_dir, bridge=lab.topology.bridge, gateway=lab.topology.gateway)
    try:
        yield started
    finally:
        started.stop()


def host_vars(name: str, **more: str) -> dict[str, str]:
    return {
        "ansible_host": krblab.HOSTS[name],
        "ansible_connection": "winrm",
        "ansible_port": "5985",
        "ansible_winrm_transport": "kerberos",
        "fleet_platform": "windows",
        **more,
    }


def audit(
    krb: krblab.KerberosLab, tmp_path: Path, hosts: dict[str, dict[str, str]], **env: str
) -> RunResult:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"windows": {"hosts": hosts}}}}))
    reports = tmp_path / "reports"
    done = run_module(
        "fleet",
        "audit",
        "-i",
        str(inventory),
        "-p",
        str(PLAYBOOK),
        "--report-dir",
        str(reports),
        "--no-history",
        "--format",
        "csv",
        "-q",
        "--connect-timeout",
        "5",
        env={"KRB5_CONFIG": str(krb.realm.krb5_conf), "NO_PROXY": "*", **env},
        timeout=180,
    )
    found = list(reports.glob("*/*/report.json"))
    assert found, done.stdout + done.stderr
    return RunResult.from_json(found[0].read_text())


def login(run: RunResult, host: str) -> Any:
    """The host's unreachable result, or None when it was logged into."""
    (result,) = [h for h in run.hosts if h.host == host]
    return next((r for r in result.results if r.status is Status.UNREACHABLE), None)


def sealed_requests(krb: krblab.KerberosLab, address: str) -> int:
    stats = krb.realm.directory / f"winhost-{address}.stats.json"
    if not stats.exists():  # written at the first shell
        return 0
    return sum(c.get("sealed", 0) for c in json.loads(stats.read_text()).values())


def test_a_ticket_from_kinit_audits_windows_hosts_sealed_over_http(
    krb: krblab.KerberosLab, tmp_path: Path
) -> None:
    ccache = tmp_path / "ccache"
    krb.realm.kinit(ccache)
    before = sealed_requests(krb, krblab.HOSTS["win-krb"])
    run = audit(
        krb,
        tmp_path,
        {
            "win-krb": host_vars("win-krb"),  # SPN HTTP/198.18.0.81
            "win-krb-named": host_vars(  # SPN HTTP/win-krb.fleet.lab
                "win-krb", ansible_winrm_kerberos_hostname_override=krblab.HOST_NAME
            ),
            "win-krb-https": host_vars(  # inside TLS: not sealed again
                "win-krb",
                ansible_port="5986",
                ansible_winrm_scheme="https",
                ansible_winrm_ca_trust_path=str(krb.realm.directory / "ca.crt"),
            ),
        },
        KRB5CCNAME=f"FILE:{ccache}",
    )
    assert login(run, "win-krb") is None
    assert login(run, "win-krb-named") is None
    assert login(run, "win-krb-https") is None
    assert sealed_requests(krb, krblab.HOSTS["win-krb"]) > before


def test_managed_mode_and_each_kerberos_failure_has_its_own_reason(
    krb: krblab.KerberosLab, tmp_path: Path
) -> None:
    user = f"{krb.realm.user}@{krb.realm.realm}"
    managed = {"ansible_user": user, "ansible_password": krb.realm.password}
    run = audit(
        krb,
        tmp_path,
        {
            "managed": host_vars("win-krb", **managed),
            "managed-kinit-cmd": host_vars("win-krb", ansible_winrm_kinit_cmd="kinit", **managed),
            "no-ticket": host_vars("win-krb", ansible_user=user),
            "wrong-password": host_vars(
                "win-krb", ansible_user=user, ansible_password=WRONG_PASSWORD
            ),
            "kdc-down": host_vars(
                "win-krb", ansible_user=f"{krb.realm.user}@DEAD.LAB", ansible_password="x"
            ),
            "no-spn": host_vars("win-krb-nospn", **managed),
            "skewed": host_vars("win-krb-skew", **managed),
        },
        # The user's own cache is empty: managed mode must not need it.
        KRB5CCNAME=f"FILE:{tmp_path / 'no-ccache'}",
    )
    assert login(run, "managed") is None
    assert login(run, "managed-kinit-cmd") is None
    expected = {
        "no-ticket": causes.NO_TICKET,
        "wrong-password": causes.AUTH_REFUSED,
        "kdc-down": causes.KDC_UNREACHABLE,
        "no-spn": causes.UNKNOWN_SPN,
        "skewed": causes.CLOCK_SKEW,
    }
    seen = {name: getattr(login(run, name), "cause", None) for name in expected}
    assert seen == expected
    summaries = {login(run, name).summary for name in expected}
    assert len(summaries) == len(expected)  # each its own words
    assert all(krb.realm.password not in s for s in summaries)


def test_an_expired_ticket_is_told_from_a_missing_one(
    krb: krblab.KerberosLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ccache = tmp_path / "short"
    krb.realm.kinit(ccache, lifetime="2s")
    time.sleep(3)
    monkeypatch.setenv("KRB5_CONFIG", str(krb.realm.krb5_conf))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")
    monkeypatch.setenv("NO_PROXY", "*")
    host = HostPlan("win-krb", "winrm", krblab.HOSTS["win-krb"], 5985, None, host_vars("win-krb"))
    transport = open_transport(host, RunOptions(connect_timeout=5))
    with pytest.raises(UnreachableError) as failed:
        transport.connect()
    assert failed.value.cause == causes.NO_TICKET
    assert "expired" in failed.value.reason


@pytest.mark.parametrize("delegation", [True, False])
def test_delegation_forwards_the_ticket_only_when_asked(
    krb: krblab.KerberosLab, monkeypatch: pytest.MonkeyPatch, delegation: bool
) -> None:
    monkeypatch.setenv("KRB5_CONFIG", str(krb.realm.krb5_conf))
    monkeypatch.setenv("NO_PROXY", "*")
    variables = host_vars(
        "win-krb",
        ansible_user=f"{krb.realm.user}@{krb.realm.realm}",
        ansible_password=krb.realm.password,
        ansible_winrm_kerberos_delegation=str(delegation),
    )
    host = HostPlan("win-krb", "winrm", krblab.HOSTS["win-krb"], 5985, None, variables)
    transport = open_transport(host, RunOptions(connect_timeout=5))
    try:
        transport.connect()
        auth = transport._protocol.transport.session.auth  # type: ignore[attr-defined]
        delegated = bool(auth.context.context_attr & spnego.ContextReq.delegate)
    finally:
        transport.close()
    assert delegated is delegation
