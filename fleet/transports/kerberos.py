"""Kerberos for WinRM: the ticket, the HTTP authentication with message sealing, its errors.

Used by ``fleet.transports.winrm`` for ``ansible_winrm_transport=kerberos``,
through pyspnego and python-gssapi (the ``kerberos`` extra; pywinrm's own
Kerberos needs pykerberos, which cannot hold one ticket per principal per
thread).  The ticket is either the runner's (``kinit``: the default
credential cache) or, in managed mode, one fleet gets with the inventory's
password once per principal per audit into a private credential cache: a
MEMORY cache through the krb5 library, or a file in a private directory when
``ansible_winrm_kinit_cmd`` names a kinit program (the password on its stdin).
A failed managed kinit is remembered for the audit, so a wrong password is
tried once, not once per host (account lockout).

Errors are read by their GSS and krb5 codes, never by their wording, and
each becomes the unreachable reason that says what to fix.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import spnego
from winrm.exceptions import InvalidCredentialsError
from winrm.transport import Transport as PywinrmTransport

from fleet import causes
from fleet.errors import AuthenticationError, UnreachableError
from fleet.transports.base import AuditContext
from fleet.transports.winrm_settings import WinRMSettings, pywinrm_trust

# krb5 error codes (MIT krb5_err.et: the protocol's numbers plus the library's table base).
KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN = -1765328378
KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN = -1765328377
KRB5KDC_ERR_CLIENT_REVOKED = -1765328366
KRB5KDC_ERR_KEY_EXP = -1765328361
KRB5KDC_ERR_PREAUTH_FAILED = -1765328360
KRB5KRB_AP_ERR_BAD_INTEGRITY = -1765328353
KRB5KRB_AP_ERR_TKT_EXPIRED = -1765328352
KRB5KRB_AP_ERR_TKT_NYV = -1765328351
KRB5KRB_AP_ERR_SKEW = -1765328347
KRB5_CC_NOTFOUND = -1765328243
KRB5_CC_END = -1765328242
KRB5_REALM_UNKNOWN = -1765328230
KRB5_KDC_UNREACH = -1765328228
KRB5_FCC_NOFILE = -1765328189
KRB5_REALM_CANT_RESOLVE = -1765328164
# GSS major codes (RFC 2744: routine errors shifted 16 bits).
GSS_S_NO_CRED = 7 << 16
GSS_S_CREDENTIALS_EXPIRED = 11 << 16

KINIT_TIMEOUT = 30  # seconds a kinit program may take
_NO_TICKET = frozenset({KRB5_CC_NOTFOUND, KRB5_CC_END, KRB5_FCC_NOFILE})
_WRONG_PASSWORD = frozenset({KRB5KDC_ERR_PREAUTH_FAILED, KRB5KRB_AP_ERR_BAD_INTEGRITY})
_KDC_DOWN = frozenset({KRB5_KDC_UNREACH, KRB5_REALM_CANT_RESOLVE, KRB5_REALM_UNKNOWN})


# --------------------------------------------------------------------------
# Errors: gssapi and krb5 codes -> fleet


@dataclass(frozen=True)
class Codes:
    """The codes behind a Kerberos failure: GSS major, krb5 (GSS minor or krb5's own)."""

    major: int | None
    krb5: int | None


def codes(exc: BaseException) -> Codes | None:
    """The GSS/krb5 codes of ``exc`` or of an exception behind it (None: not Kerberos)."""
    for cause in _chain(exc):
        if isinstance(getattr(cause, "err_code", None), int):  # krb5.Krb5Error
            return Codes(None, _signed(cause.err_code))  # type: ignore[attr-defined]
        if isinstance(getattr(cause, "maj_code", None), int):  # gssapi's GSSError
            minor = getattr(cause, "min_code", None)
            return Codes(cause.maj_code, _signed(minor) if minor else None)  # type: ignore[attr-defined]
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "base_error", None)]


def _signed(code: int) -> int:
    """GSS hands krb5's (negative) codes over as unsigned 32-bit minor codes."""
    return code - (1 << 32) if code >= 1 << 31 else code


def spn_host(s: WinRMSettings) -> str:
    return s.kerberos.hostname_override or s.address


def translate(exc: BaseException, s: WinRMSettings) -> UnreachableError | None:
    """The reason a Kerberos failure gives an operator (None: ``exc`` is not one)."""
    found = codes(exc)
    who = s.user or "the runner's default principal"
    if found is None and isinstance(exc, InvalidCredentialsError):  # a 401 without a KRB-ERROR
        return AuthenticationError(
            f"{s.address} refused the Kerberos ticket of {who}",
            f"is {s.kerberos.service}/{spn_host(s)} registered on this host's own account "
            "(setspn -Q), and may the user use WinRM (Remote Management Users)?",
            cause=causes.AUTH_REFUSED,
        )
    if found is None:
        return None
    code, spn = found.krb5, f"{s.kerberos.service}/{spn_host(s)}"
    if code in _NO_TICKET or found.major == GSS_S_NO_CRED:
        return UnreachableError(
            f"no Kerberos ticket for {who}",
            "run kinit on the runner (or set ansible_password: fleet then gets the ticket, "
            "ansible_winrm_kinit_mode=managed)",
            cause=causes.NO_TICKET,
        )
    if code == KRB5KRB_AP_ERR_TKT_EXPIRED or found.major == GSS_S_CREDENTIALS_EXPIRED:
        return UnreachableError(
            f"the Kerberos ticket of {who} has expired",
            "run kinit again (kinit -R renews it), or let fleet get it: ansible_password",
            cause=causes.NO_TICKET,
        )
    if code in (KRB5KRB_AP_ERR_SKEW, KRB5KRB_AP_ERR_TKT_NYV):
        return UnreachableError(
            f"clock skew: {s.address} and the realm's clocks differ by more than Kerberos allows",
            "compare the clocks (on the host: w32tm /query /status; w32tm /resync), "
            "runner and KDC included",
            cause=causes.CLOCK_SKEW,
        )
    if code == KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN:
        return UnreachableError(
            f"the KDC knows no service principal {spn}",
            f"register it (setspn -S {spn} <the host's account>), or set "
            "ansible_winrm_kerberos_hostname_override to the host's name in the domain",
            cause=causes.UNKNOWN_SPN,
        )
    if code in _KDC_DOWN:
        return UnreachableError(
            f"no KDC answers for the realm of {who}",
            "check the realm's kdc in krb5.conf (or KRB5_CONFIG) and that port 88 "
            "is open from the runner",
            cause=causes.KDC_UNREACHABLE,
        )
    if code in _WRONG_PASSWORD or code == KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN:
        unknown = code == KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN
        return UnreachableError(
            f"the KDC refused {who}: " + ("unknown user" if unknown else "wrong password"),
            "check ansible_user (user@REALM) and ansible_password; is the account locked?",
            cause=causes.AUTH_REFUSED,
        )
    if code in (KRB5KDC_ERR_CLIENT_REVOKED, KRB5KDC_ERR_KEY_EXP):
        state = "locked or disabled" if code == KRB5KDC_ERR_CLIENT_REVOKED else "expired"
        return UnreachableError(
            f"the KDC refused {who}: account or password {state}",
            "unlock the account or change its password in the domain",
            cause=causes.AUTH_REFUSED,
        )
    return UnreachableError(
        f"Kerberos failed for {spn}: {_words(exc)}",
        "klist on the runner; KRB5_TRACE=/dev/stderr shows each step",
        cause=causes.AUTH_REFUSED,
    )


def _words(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


# --------------------------------------------------------------------------
# Tickets


@dataclass(frozen=True)
class Ticket:
    """A managed kinit's outcome, kept for the audit: a credential cache, or why not."""

    ccache: str | None
    principal: str
    error: BaseException | None = None


def credential(s: WinRMSettings, context: AuditContext) -> Any:
    """What pyspnego authenticates with: the default cache, or the audit's managed ticket."""
    if not s.kerberos.managed:
        if s.user and "@" in s.user:  # a principal: its ticket, from the cache collection
            return spnego.CredentialCache(username=s.user)
        return None
    if not s.user or s.password is None:
        raise UnreachableError(
            "managed Kerberos needs ansible_user and ansible_password",
            "set them, or kinit on the runner and set ansible_winrm_kinit_mode=manual",
            cause=causes.CONFIG_MISSING,
        )
    k = s.kerberos
    key = (
        "kerberos-ticket",
        s.user,
        hashlib.sha256(s.password.encode()).hexdigest(),
        k.delegation,
        k.kinit_cmd,
        k.kinit_args,
    )
    ticket = context.memo(key, lambda: _managed_ticket(s))
    if isinstance(ticket.error, UnreachableError):  # a copy: hosts' threads raise it at once
        e = ticket.error
        raise UnreachableError(e.reason, e.hint, cause=e.cause)
    if ticket.error is not None or ticket.ccache is None:
        raise ticket.error or UnreachableError("no Kerberos ticket", cause=causes.NO_TICKET)
    return spnego.KerberosCCache(ccache=ticket.ccache, principal=ticket.principal)


def _managed_ticket(s: WinRMSettings) -> Ticket:
    assert s.user is not None and s.password is not None
    try:
        if s.kerberos.kinit_cmd or s.kerberos.kinit_args is not None:
            return _kinit_program(s)
        return _kinit_library(s.user, s.password, s.kerberos.delegation)
    except Exception as exc:  # noqa: BLE001 - kept for every host of the audit
        error = exc if isinstance(exc, UnreachableError) else translate(exc, s)
        return Ticket(None, s.user, error or exc)


def _kinit_library(principal: str, password: str, forwardable: bool) -> Ticket:
    """kinit in-process (MIT krb5) into a MEMORY cache of this process only."""
    import krb5

    ctx = krb5.init_context()
    name = krb5.parse_name_flags(ctx, principal.encode())
    options = krb5.get_init_creds_opt_alloc(ctx)
    krb5.get_init_creds_opt_set_canonicalize(options, True)
    krb5.get_init_creds_opt_set_forwardable(options, forwardable)
    creds = krb5.get_init_creds_password(ctx, name, options, password=password.encode())
    ccache_name = f"MEMORY:fleet-{uuid.uuid4().hex}"
    ccache = krb5.cc_resolve(ctx, ccache_name.encode())
    krb5.cc_initialize(ctx, ccache, creds.client)
    krb5.cc_store_cred(ctx, ccache, creds)
    ticket = Ticket(ccache_name, principal)
    # The cache is destroyed when the audit drops its ticket.
    weakref.finalize(ticket, _destroy, ccache, ctx)
    return ticket


def _destroy(ccache: Any, ctx: Any) -> None:
    import krb5

    with contextlib.suppress(Exception):
        krb5.cc_destroy(ctx, ccache)


# What kinit prints for the failures fleet tells apart: its words come from the
# library's error table, whose codes are read back here (a program gives no code).
_KINIT_PATTERNS: tuple[tuple[str, int], ...] = (
    (r"password incorrect|preauthentication failed", KRB5KDC_ERR_PREAUTH_FAILED),
    (r"not found in kerberos database", KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN),
    (r"cannot (contact|find) any kdc|cannot find kdc", KRB5_KDC_UNREACH),
    (r"clock skew", KRB5KRB_AP_ERR_SKEW),
    (r"revoked|locked", KRB5KDC_ERR_CLIENT_REVOKED),
    (r"password has expired", KRB5KDC_ERR_KEY_EXP),
)


class KinitFailed(Exception):
    """A kinit program failed; ``err_code`` is the krb5 code its message stands for."""

    def __init__(self, message: str, err_code: int | None) -> None:
        super().__init__(message)
        if err_code is not None:
            self.err_code = err_code


def _kinit_program(s: WinRMSettings) -> Ticket:
    """Run ``ansible_winrm_kinit_cmd`` (default kinit) with the password on stdin into a
    credential cache file in a private directory, removed when the audit ends."""
    assert s.user is not None and s.password is not None
    k = s.kerberos
    args = k.kinit_args if k.kinit_args is not None else (("-f",) if k.delegation else ())
    directory = tempfile.mkdtemp(prefix="fleet-krb5-")  # mode 0700
    ccache = f"FILE:{os.path.join(directory, 'ccache')}"
    env = dict(os.environ, KRB5CCNAME=ccache)
    try:
        done = subprocess.run(
            [k.kinit_cmd or "kinit", *args, s.user],
            input=s.password + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=KINIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise UnreachableError(
            f"kinit program {k.kinit_cmd or 'kinit'} failed: {type(exc).__name__}",
            "check ansible_winrm_kinit_cmd (or install krb5-user)",
            cause=causes.CONFIG_MISSING,
        ) from exc
    if done.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        message = (done.stderr or done.stdout).strip().replace(s.password, "********")
        lowered = message.lower()
        code = next((c for pattern, c in _KINIT_PATTERNS if re.search(pattern, lowered)), None)
        raise KinitFailed(message.splitlines()[-1] if message else "kinit failed", code)
    ticket = Ticket(ccache, s.user)
    weakref.finalize(ticket, shutil.rmtree, directory, True)
    return ticket


# --------------------------------------------------------------------------
# HTTP: the Authorization header, mutual authentication, sealing


class SpnegoKerberosAuth(requests.auth.AuthBase):
    """requests' auth for WinRM with Kerberos, as pywinrm's Encryption expects of it.

    The first request carries the AP-REQ (``Negotiate`` with a Kerberos token,
    as Windows and pywinrm use); the reply's token (AP-REP) completes mutual
    authentication, or, on a 401, says why the host refused (a KRB-ERROR such
    as clock skew), which is raised.  Then the keep-alive connection is
    authenticated and messages are sealed with the context's keys.
    """

    winrm_encryption_available = True

    def __init__(self, hostname: str, service: str, cred: Any, delegate: bool) -> None:
        flags = spnego.ContextReq.mutual_auth | spnego.ContextReq.sequence_detect
        if delegate:
            flags |= spnego.ContextReq.delegate
        self._new = lambda: spnego.client(
            username=cred,
            hostname=hostname,
            service=service,
            protocol="kerberos",
            context_req=flags,
        )
        self.context: Any = None
        self._lock = threading.Lock()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.context is None or not self.context.complete:
            self.context = self._new()
            token = self.context.step()
            request.headers["Authorization"] = f"Negotiate {base64.b64encode(token).decode()}"
            request.register_hook("response", self._response)
        return request

    def _response(self, response: requests.Response, **_: Any) -> requests.Response:
        token = _negotiate_token(response)
        if token is not None and self.context is not None and not self.context.complete:
            self.context.step(token)  # GSS errors (KRB-ERROR, mutual auth) propagate
        return response

    def wrap_winrm(self, host: str, message: bytes) -> tuple[bytes, bytes]:
        with self._lock:
            wrapped = self.context.wrap_winrm(message)
        return wrapped.data, wrapped.header

    def unwrap_winrm(self, host: str, message: bytes, header: bytes) -> bytes:
        with self._lock:
            return bytes(self.context.unwrap_winrm(header, message))


def _negotiate_token(response: requests.Response) -> bytes | None:
    for offer in response.headers.get("WWW-Authenticate", "").split(","):
        scheme, _, value = offer.strip().partition(" ")
        if scheme.lower() in ("negotiate", "kerberos") and value.strip():
            return base64.b64decode(value.strip())
    return None


def available() -> bool:
    return importlib.util.find_spec("gssapi") is not None


def attach(transport: PywinrmTransport, s: WinRMSettings, context: AuditContext) -> None:
    """Give pywinrm's transport a session that authenticates with Kerberos, and seal
    its messages over plain HTTP (the empty POST that sets up encryption logs in)."""
    if not available():
        raise UnreachableError(
            "Kerberos needs python-gssapi and krb5 on the runner",
            "pip install 'fleet[kerberos]' (Debian: apt-get install libkrb5-dev first)",
            cause=causes.CONFIG_MISSING,
        )
    auth = SpnegoKerberosAuth(
        spn_host(s), s.kerberos.service, credential(s, context), s.kerberos.delegation
    )
    # pywinrm's own session (certificate checks, proxies, headers) with our auth.
    plain = PywinrmTransport(
        s.endpoint,
        auth_method="plaintext",
        username="-",
        password="-",  # noqa: S106 - never sent: the session's auth is replaced
        server_cert_validation=s.server_cert_validation,  # type: ignore[arg-type]
        ca_trust_path=pywinrm_trust(s),
        proxy=s.proxy,
        message_encryption="never",
    )
    session = plain.build_session()
    session.auth = auth
    transport.session = session
    if s.scheme == "http" or s.message_encryption == "always":
        transport.setup_encryption(session)
