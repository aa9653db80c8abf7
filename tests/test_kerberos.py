"""Kerberos for WinRM without a KDC: settings, and errors translated by their real codes.

The errors here come from the real libraries (MIT krb5 through python-gssapi
and krb5) failing for real: no credential cache, a realm whose KDC address
has nothing listening.  The lab's KDC (tests/test_kerberos_lab.py) shows the
rest: unknown service principal, clock skew, wrong password, sealed audits.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet import causes
from fleet.errors import ConfigError, UnreachableError
from fleet.plan import HostPlan, RunOptions
from fleet.transports import kerberos
from fleet.transports.base import AuditContext
from fleet.transports.winrm_settings import WinRMSettings

gssapi = pytest.importorskip("gssapi", reason="the kerberos extra (gssapi) is not installed")
krb5 = pytest.importorskip("krb5", reason="the kerberos extra (krb5) is not installed")

PASSWORD = "Krb-Secret-0"


def settings(**variables: Any) -> WinRMSettings:
    merged = {"ansible_winrm_transport": "kerberos", "ansible_winrm_scheme": "http", **variables}
    host = HostPlan("win1", "winrm", "198.18.0.81", 5985, merged.pop("user", None), merged)
    return WinRMSettings.from_host(host, RunOptions())


@pytest.fixture
def dead_realm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A krb5.conf whose realm's KDC is a loopback port with nothing listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "krb5.conf"
    conf.write_text(
        "[libdefaults]\n default_realm = DEAD.LAB\n dns_lookup_kdc = false\n"
        f"[realms]\n DEAD.LAB = {{\n  kdc = 127.0.0.1:{port}\n }}\n"
    )
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'no-such-ccache'}")
    yield "DEAD.LAB"


# -- settings


def test_a_password_means_managed_mode_as_in_ansible() -> None:
    assert settings(ansible_password=PASSWORD).kerberos.managed
    assert not settings().kerberos.managed
    assert not settings(
        ansible_password=PASSWORD, ansible_winrm_kinit_mode="manual"
    ).kerberos.managed


def test_kerberos_variables_are_read() -> None:
    k = settings(
        ansible_winrm_kinit_cmd="/usr/bin/kinit",
        ansible_winrm_kinit_args="-f -V",
        ansible_winrm_kerberos_delegation="yes",
        ansible_winrm_kerberos_hostname_override="ex1.corp.example",
    ).kerberos
    assert (k.kinit_cmd, k.kinit_args, k.delegation) == ("/usr/bin/kinit", ("-f", "-V"), True)
    assert k.hostname_override == "ex1.corp.example"


# -- errors from the real libraries


def test_no_credential_cache_is_no_ticket(dead_realm: str) -> None:
    context = gssapi.SecurityContext(
        name=gssapi.Name("HTTP@198.18.0.81", gssapi.NameType.hostbased_service), usage="initiate"
    )
    with pytest.raises(gssapi.exceptions.GSSError) as failed:
        context.step()
    error = kerberos.translate(failed.value, settings())
    assert error is not None and error.cause == causes.NO_TICKET
    assert "kinit" in error.hint


def test_a_kdc_that_does_not_answer_is_kdc_unreachable(dead_realm: str) -> None:
    s = settings(user=f"fleet@{dead_realm}", ansible_password=PASSWORD)
    with pytest.raises(UnreachableError) as failed:
        kerberos.credential(s, AuditContext())
    assert failed.value.cause == causes.KDC_UNREACHABLE
    assert "krb5.conf" in failed.value.hint
    assert PASSWORD not in str(failed.value)


def test_a_failed_managed_kinit_is_tried_once_per_audit(
    dead_realm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = kerberos._kinit_library

    def counting(*args: Any) -> kerberos.Ticket:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(kerberos, "_kinit_library", counting)
    context = AuditContext()
    s = settings(user=f"fleet@{dead_realm}", ansible_password=PASSWORD)
    for _ in range(3):  # three hosts of one audit, one principal
        with pytest.raises(UnreachableError):
            kerberos.credential(s, context)
    assert calls == [f"fleet@{dead_realm}"]


def test_a_kinit_program_failure_keeps_the_password_out(dead_realm: str, tmp_path: Path) -> None:
    echo = tmp_path / "kinit"
    echo.write_text(
        '#!/bin/sh\nread pw\necho "kinit: Cannot contact any KDC for $pw" >&2\nexit 1\n'
    )
    echo.chmod(0o755)
    s = settings(
        user=f"fleet@{dead_realm}", ansible_password=PASSWORD, ansible_winrm_kinit_cmd=str(echo)
    )
    with pytest.raises(UnreachableError) as failed:
        kerberos.credential(s, AuditContext())
    assert failed.value.cause == causes.KDC_UNREACHABLE
    assert PASSWORD not in repr(failed.value.__dict__)


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (kerberos.KRB5KRB_AP_ERR_SKEW, causes.CLOCK_SKEW),
        (kerberos.KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN, causes.UNKNOWN_SPN),
        (kerberos.KRB5KRB_AP_ERR_TKT_EXPIRED, causes.NO_TICKET),
        (kerberos.KRB5KDC_ERR_PREAUTH_FAILED, causes.AUTH_REFUSED),
        (kerberos.KRB5_KDC_UNREACH, causes.KDC_UNREACHABLE),
    ],
)
def test_gss_minor_codes_choose_the_cause(code: int, cause: str) -> None:
    # As GSSAPI raises them: GSS_S_FAILURE with the krb5 code as an unsigned minor.
    error = gssapi.raw.GSSError(13 << 16, code & 0xFFFFFFFF)
    translated = kerberos.translate(error, settings())
    assert translated is not None and translated.cause == cause


def test_the_spn_named_is_the_hostname_override() -> None:
    error = gssapi.raw.GSSError(13 << 16, kerberos.KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN & 0xFFFFFFFF)
    s = settings(ansible_winrm_kerberos_hostname_override="ex1.corp.example")
    translated = kerberos.translate(error, s)
    assert translated is not None and "HTTP/ex1.corp.example" in translated.reason


def test_errors_that_are_not_kerberos_are_left_to_the_transport() -> None:
    assert kerberos.translate(ConnectionRefusedError(), settings()) is None


def test_each_kerberos_cause_has_its_own_fix() -> None:
    from fleet.diagnose.access import login_fix

    kerberos_causes = (causes.NO_TICKET, causes.CLOCK_SKEW, causes.UNKNOWN_SPN)
    fixes = [
        login_fix(c, "windows", "ex1", "198.18.0.81", 5985, "fleet@FLEET.LAB").lines
        for c in (*kerberos_causes, causes.KDC_UNREACHABLE)
    ]
    assert len({tuple(f) for f in fixes}) == len(fixes)
    assert any("w32tm" in line for line in fixes[1])


def test_a_host_refusing_the_ticket_names_the_spn_to_check() -> None:
    from winrm.exceptions import InvalidCredentialsError

    s = settings(ansible_winrm_kerberos_hostname_override="ex1.corp.example")
    error = kerberos.translate(InvalidCredentialsError("rejected"), s)
    assert error is not None and error.cause == causes.AUTH_REFUSED
    assert "setspn -Q" in error.hint and "HTTP/ex1.corp.example" in error.hint


def test_an_unbalanced_quote_in_kinit_args_is_one_line_naming_the_host() -> None:
    with pytest.raises(ConfigError, match=r"^host win1: ansible_winrm_kinit_args: No closing"):
        settings(user="ops@FLEET.LAB", ansible_winrm_kinit_args='-f "x')
