"""Hosts the runner could not audit, and checks that could not run: the steps chosen by cause.

A result from an older report has no cause: its status still says "could not
log in" or "could not run", and the steps are the general ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleet import causes
from fleet.diagnose.model import CHECK_ERROR, NOT_AUDITED, Finding
from fleet.diagnose.observe import LOGIN_CAUSES, Fleet, reach_line
from fleet.model import CheckResult, Status

_SSH_AUTH = (
    "ssh -o BatchMode=yes {address} true   # as ansible_user, with the inventory's key",
    "# check ansible_user and the key or password in the vault",
    "journalctl -u ssh --since today   # on the host: why it refused",
)
_SSH_HOST_KEY = (
    "ssh-keyscan {address} | ssh-keygen -lf -   # the key the host shows now",
    "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub   # on the host's console",
)
_WINRM_CERTIFICATE = (
    "winrm enumerate winrm/config/listener   # on the host: which certificate?",
    "# trust its CA on the runner (ansible_winrm_ca_trust_path)",
)
_SSH_SILENT = (
    "ping -c 3 {address}   # from the runner",
    "nc -vz {address} 22   # a firewall between the runner and the host?",
)
_WINRM_SILENT = (
    "Test-NetConnection {address} -Port 5985   # from a Windows machine",
    "# Windows Firewall must allow WinRM (Enable-PSRemoting adds the rule)",
)
_UNRESOLVED = (  # the runner's lookup, whatever the host runs
    "getent hosts {name}   # on the runner: does the name resolve?",
    "# fix the DNS record, or set ansible_host to the address in the inventory",
)

# (cause, platform) -> the steps, ``{address}`` and ``{name}`` filled in.
_LOGIN_FIX: dict[tuple[str, str], tuple[str, ...]] = {
    (causes.AUTH_REFUSED, "unix"): _SSH_AUTH,
    (causes.AUTH_REFUSED, "windows"): (
        "Test-WSMan {address} -Authentication Negotiate -Credential (Get-Credential)",
        "# check ansible_user/ansible_password in the vault; is the account locked?",
    ),
    (causes.HOST_KEY_UNKNOWN, "unix"): (
        *_SSH_HOST_KEY,
        "# if they match, add the key to known_hosts",
    ),
    (causes.HOST_KEY_CHANGED, "unix"): (
        *_SSH_HOST_KEY,
        "# if they differ, find out why it changed before you trust it;",
        "# once you know: ssh-keygen -R {address}, then add the new key to known_hosts",
    ),
    (causes.CERTIFICATE_REJECTED, "windows"): _WINRM_CERTIFICATE,
    (causes.CERTIFICATE_REJECTED, "unix"): _WINRM_CERTIFICATE,
    (causes.CONNECT_REFUSED, "unix"): (
        "systemctl status ssh   # on the host's console: is sshd running?",
    ),
    (causes.CONNECT_REFUSED, "windows"): (
        "Get-Service WinRM   # on the host: running?",
        "Enable-PSRemoting   # or winrm quickconfig; then Test-WSMan {address}",
    ),
    (causes.CONNECT_TIMEOUT, "unix"): _SSH_SILENT,
    (causes.CONNECT_TIMEOUT, "windows"): _WINRM_SILENT,
    (causes.HOST_UNREACHABLE, "unix"): _SSH_SILENT,
    (causes.HOST_UNREACHABLE, "windows"): _WINRM_SILENT,
    (causes.LOGIN_TIMEOUT, "unix"): (
        "ssh -v {address} true   # where does the login stall?",
        "# a slow reverse DNS lookup on the host stalls logins: UseDNS no in sshd_config",
    ),
    (causes.LOGIN_TIMEOUT, "windows"): (
        "Test-WSMan {address} -Authentication Negotiate -Credential (Get-Credential)",
        "# a slow domain controller stalls Negotiate logins: nltest /sc_query:<domain> on the host",
    ),
    (causes.NAME_UNRESOLVED, "unix"): _UNRESOLVED,
    (causes.NAME_UNRESOLVED, "windows"): _UNRESOLVED,
    (causes.PROTOCOL_ERROR, "unix"): (
        "nc {address} 22 </dev/null   # the banner must start with SSH-2.0",
        "# check ansible_port: is something other than sshd listening there?",
    ),
    (causes.PROTOCOL_ERROR, "windows"): (
        "Test-WSMan {address}   # is it WinRM that answers?",
        "# check ansible_port and ansible_winrm_scheme (http on 5985, https on 5986)",
    ),
    (causes.SERVICE_ERROR, "unix"): ("journalctl -u ssh --since today   # on the host",),
    (causes.SERVICE_ERROR, "windows"): (
        "Get-Service WinRM; winrm get winrm/config   # on the host",
        "Get-WinEvent -LogName Microsoft-Windows-WinRM/Operational -MaxEvents 20",
    ),
    (causes.CONFIG_MISSING, "unix"): (
        "# the inventory lacks what the login needs: ansible_user, and",
        "# ansible_ssh_private_key_file or ansible_password for {name}",
    ),
    (causes.CONFIG_MISSING, "windows"): (
        "# the inventory lacks what the login needs: ansible_user and ansible_password for {name}",
    ),
}

# No cause, or one without its own steps (an older report, a transport error).
_LOGIN_GENERIC: dict[str, tuple[str, ...]] = {
    "unix": ("ssh -v {address} true   # log in by hand as the runner would: why does it fail?",),
    "windows": (
        "Test-WSMan {address} -Authentication Negotiate -Credential (Get-Credential)"
        "   # log in by hand as the runner would",
    ),
}


def login_fix(cause: str, platform: str, name: str, address: str) -> str:
    """The steps that fix a failed login of ``cause`` on a ``platform`` host."""
    kind = "windows" if platform == "windows" else "unix"
    steps = _LOGIN_FIX.get((cause, kind), _LOGIN_GENERIC[kind])
    return "\n".join(steps).format(name=name, address=address or name)


def not_audited_findings(fleet: Fleet, explained: set[str]) -> list[Finding]:
    findings = []
    for name, failed in fleet.logins.items():
        if name in explained:
            continue
        host = fleet.hosts[name]
        why = causes.CAUSES.get(failed.cause, "could not log in")
        findings.append(
            Finding(
                cause=NOT_AUDITED,
                title=f"{name} was not audited: {why}",
                hosts=(name,),
                evidence=(f"{name} ({host.connection}): {failed.summary}", reach_line(fleet, name)),
                fix=login_fix(failed.cause, host.platform, name, host.address),
                severity=Status.UNREACHABLE,
                key=f"{NOT_AUDITED}:{name}",
            )
        )
    return findings


_OUT_OF_TIME = (
    "# the audit ran out of time on this host: look for a stuck probe or an\n"
    "# overloaded host, then raise --command-timeout / --deadline if it is just slow"
)
_STOPPED = "# the run was stopped before this host finished: rerun the audit on this host"
_TOOL_MISSING = (
    "# the host lacks a command a check needs (the evidence names it):\n"
    "# install it (iproute2, iputils-ping), or audit the host with the checks it supports"
)
_UNREADABLE = (
    "# the host's output made no sense to fleet: see the raw evidence;\n"
    "# rerun the audit on this host, and report it if it happens again"
)
_GENERIC = (
    "# the check could not run on this host: see the evidence;\n"
    "# rerun the audit on this host, and report it if it happens again"
)

_CHECK_ERROR_FIX = {
    causes.COMMAND_TIMEOUT: _OUT_OF_TIME,
    causes.DEADLINE: _OUT_OF_TIME,
    causes.INTERRUPTED: _STOPPED,
    causes.TOOL_MISSING: _TOOL_MISSING,
    causes.UNPARSED: _UNREADABLE,
    causes.OUTPUT_LOST: _UNREADABLE,
    causes.OUTPUT_TRUNCATED: _UNREADABLE,
}


def check_error_fix(errors: Sequence[CheckResult]) -> str:
    """The steps that fit why the checks could not run, one paragraph per reason."""
    fixes = dict.fromkeys(_CHECK_ERROR_FIX.get(r.cause, _GENERIC) for r in errors)
    return "\n".join(fixes)


def check_error_findings(fleet: Fleet) -> list[Finding]:
    findings = []
    for name, host in fleet.hosts.items():
        # a failed login is its own finding; the results it left are not check errors
        login_failed = name in fleet.logins
        errors = [
            r
            for r in host.results
            if r.status is Status.ERROR and not (login_failed and r.cause in LOGIN_CAUSES)
        ]
        if not errors:
            continue
        checks = sorted({r.check for r in errors})
        findings.append(
            Finding(
                cause=CHECK_ERROR,
                title=f"{name}: {', '.join(checks)} could not run",
                hosts=(name,),
                evidence=tuple(
                    f"{r.check}{' -> ' + r.target if r.target else ''}: {r.summary}" for r in errors
                ),
                fix=check_error_fix(errors),
                severity=Status.ERROR,
                key=f"{CHECK_ERROR}:{name}",
            )
        )
    return findings
