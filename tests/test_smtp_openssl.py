"""smtp on a host without python3 that has openssl: s_client does the STARTTLS handshake.

The parser is tested on s_client output recorded from the lab's real postfix and
on two published from real servers (tests/data/unix/README.md names the sources);
the lab tests run the fallback with python3 hidden (a PATH of links to the tools
such a host has) against the lab's postfix hosts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleet import causes
from fleet.checks.smtp import SmtpCheck
from fleet.checks.smtp.fallback import parse_transcript
from fleet.checks.smtp.openssl import parse_s_client
from fleet.model import Platform, Status
from tests.test_checks_unix import FALLBACK_TOOLS, host_without_python, run_steps

DATA = Path(__file__).parent / "data" / "unix"
PF_PLAIN, PF_BADTLS = "198.18.0.41", "198.18.0.43"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text(encoding="utf-8").splitlines()


# ------------------------------------------------------------------------- the parser


def test_s_client_3_handshake_with_a_self_signed_certificate():
    facts = parse_s_client(
        lines("lab-openssl-x509-pf-plain.out") + lines("lab-openssl-starttls-pf-plain.out")
    )
    assert facts == {
        "tls_checked": True,
        "tls_protocol": "TLSv1.3",
        "cert_not_after": "2027-12-05T05:56:11Z",
        "cert_subject": "CN=pf-plain.lab",
        "cert_issuer": "CN=pf-plain.lab",
        "cert_verified": False,
        "cert_verify_error": "self-signed certificate",
    }


@pytest.mark.parametrize(
    "sample",
    [
        # postfix with a certificate that does not match its key: STARTTLS is offered,
        # the handshake gets no TLS back ("Cipher is (NONE)", "Verify return code: 0").
        "lab-openssl-starttls-pf-badtls.out",
        # s_client 1.1 still prints "Protocol  : TLSv1.2" in its session block after
        # a handshake that failed: no protocol, no verified certificate is read from it.
        "public-openssl-plaintext-port-mailcow-1573.out",
    ],
)
def test_s_client_failed_handshake_names_openssls_error_and_no_certificate(sample):
    assert parse_s_client(lines(sample)) == {
        "tls_checked": True,
        "tls_protocol": "",
        "tls_error": "TLS handshake failed: wrong version number",
    }


def test_s_client_1_0_names_the_protocol_in_its_session():
    # "New, TLSv1/SSLv3, ..." names no version; "Protocol  : TLSv1" does.
    facts = parse_s_client(lines("public-openssl-starttls-docker-mailserver-705.out"))
    assert facts["tls_protocol"] == "TLSv1"
    assert facts["cert_subject"] == "CN=mail.xxx.net"
    assert facts["cert_issuer"] == "C=US, O=Let's Encrypt, CN=Let's Encrypt Authority X3"
    assert (facts["cert_verified"], facts["cert_verify_error"]) == (True, "")


def test_transcript_with_openssl_says_both_tools_and_the_handshake():
    greeting = ["S 220 pf-plain.lab ESMTP fleet lab (postfix)"]
    ehlo = ["S 250-pf-plain.lab", "S 250-STARTTLS", "S 250 CHUNKING"]
    tls = ["T " + line for line in lines("lab-openssl-starttls-pf-plain.out")]
    text = "\n".join(
        ["fleet-smtp: probe nc", "fleet-smtp: port 25", *greeting, "C EHLO", *ehlo, "C QUIT",
         "S 221 2.0.0 Bye", "fleet-smtp: exit 0", "fleet-smtp: tls openssl", *tls]
    )  # fmt: skip
    probe = parse_transcript(text, "pf-plain")
    assert (probe.probe, probe.outcome, probe.starttls) == ("nc+openssl", "ok", True)
    assert (probe.tls_protocol, probe.cert_subject) == ("TLSv1.3", "CN=pf-plain.lab")


# ------------------------------------------------------------- the lab's real postfix


def smtp_from_host_without_python(tmp_path: Path, tools: tuple[str, ...], target: str):
    env = host_without_python(tmp_path / "bin", *tools)
    openssl = shutil.which("openssl")
    assert openssl, "openssl is in tests/lab/packages.txt"
    (tmp_path / "bin" / "openssl").symlink_to(openssl)
    check = SmtpCheck()
    params = check.validate({"targets": [target], "require_starttls": True, "timeout": 5})
    outputs = run_steps(check.steps(Platform.UNIX, params), env=env, timeout=60)
    [result] = check.evaluate("lab-host", Platform.UNIX, params, outputs)
    return result


TOOLS = FALLBACK_TOOLS  # BusyBox (its nc) and bash (its /dev/tcp), each with openssl


@pytest.mark.lab
@pytest.mark.parametrize(("tools", "tool"), TOOLS)
def test_openssl_handshake_with_real_postfix_is_ok(lab, tmp_path, tools, tool):
    result = smtp_from_host_without_python(tmp_path, tools, PF_PLAIN)
    assert result.status is Status.OK, result.summary
    facts = result.facts
    assert facts["probe"] == f"{tool}+openssl"
    assert facts["tls_protocol"].startswith("TLSv1.")
    assert facts["cert_subject"] == "CN=pf-plain.lab" and facts["cert_not_after"]
    assert facts["cert_verified"] is False  # the lab's certificate is self-signed
    assert "STARTTLS TLSv1." in result.summary


@pytest.mark.lab
@pytest.mark.parametrize(("tools", "tool"), TOOLS)
def test_openssl_handshake_failing_with_real_postfix_fails_require_starttls(
    lab, tmp_path, tools, tool
):
    result = smtp_from_host_without_python(tmp_path, tools, PF_BADTLS)
    assert (result.status, result.cause) == (Status.FAIL, causes.STARTTLS_FAILED), result.summary
    assert result.facts["probe"] == f"{tool}+openssl"
    assert result.facts["tls_checked"] is True and result.facts["tls_protocol"] == ""
