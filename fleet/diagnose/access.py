"""Hosts the runner could not audit, and checks that could not run: the steps chosen by cause.

A result from an older report has no cause: its status still says "could not
log in" or "could not run", and the steps are the general ones.  Login steps
name the host's real address, port and user (``fleet.diagnose.commands``
checks and quotes each).
"""

from __future__ import annotations

from collections.abc import Sequence

from fleet import causes
from fleet.diagnose.commands import Fix, Port, Target, Word, ssh_options
from fleet.diagnose.model import CHECK_ERROR, NOT_AUDITED, Finding, finding
from fleet.diagnose.observe import LOGIN_CAUSES, Fleet, reach_line
from fleet.model import CheckResult, Status

_SSH_AUTH = (
    "ssh -o BatchMode=yes{ssh} {address} true   # with the inventory's key",
    "# check ansible_user and the key or password in the vault",
    "journalctl -u ssh --since today   # on the host: why it refused",
)
_SSH_HOST_KEY = (
    "ssh-keyscan{p} {address} | ssh-keygen -lf -   # the key the host shows now",
    "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub   # on the host's console",
)
_WINRM_CERTIFICATE = (
    "winrm enumerate winrm/config/listener   # on the host: which certificate?",
    "# trust its CA on the runner (ansible_winrm_ca_trust_path)",
)
_NO_ZONE_WORKER = (
    "# no worker of {name}'s zone (its fleet_zone) audited it: on a runner inside that zone,",
    "# with the same inventory and FLEET_BROKER_URL, start: fleet worker --zone <its zone>",
    'celery -b "$FLEET_BROKER_URL" inspect active_queues   # which zones have a worker',
)
_SSH_SILENT = (
    "ping -c 3 {address}   # from the runner",
    "nc -vz {address} {port}   # a firewall between the runner and the host?",
)
_WINRM_SILENT = (
    "Test-NetConnection {address} -Port {port}   # from a Windows machine",
    "# Windows Firewall must allow WinRM (Enable-PSRemoting adds the rule)",
)
_UNRESOLVED = (  # the runner's lookup, whatever the host runs
    "getent hosts {name}   # on the runner: does the name resolve?",
    "# fix the DNS record, or set ansible_host to the address in the inventory",
)

# (cause, platform) -> the steps: ``{address}``, ``{name}``, ``{port}`` filled in; ``{ssh}``
# (ssh's -p/-l), ``{p}`` (-p), ``{known}`` (known_hosts' name), ``{wsport}`` (-Port) as needed.
_LOGIN_FIX: dict[tuple[str, str], tuple[str, ...]] = {
    (causes.AUTH_REFUSED, "unix"): _SSH_AUTH,
    (causes.AUTH_REFUSED, "windows"): (
        "Test-WSMan {address}{wsport} -Authentication Negotiate -Credential (Get-Credential)",
        "# check ansible_user/ansible_password in the vault; is the account locked?",
    ),
    (causes.HOST_KEY_UNKNOWN, "unix"): (
        *_SSH_HOST_KEY,
        "# if they match, add the key to known_hosts",
    ),
    (causes.HOST_KEY_CHANGED, "unix"): (
        *_SSH_HOST_KEY,
        "# if they differ, find out why it changed before you trust it; once you know:",
        "ssh-keygen -R {known}   # then add the new key to known_hosts",
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
        "ssh -v{ssh} {address} true   # where does the login stall?",
        "# a slow reverse DNS lookup on the host stalls logins: UseDNS no in sshd_config",
    ),
    (causes.LOGIN_TIMEOUT, "windows"): (
        "Test-WSMan {address}{wsport} -Authentication Negotiate -Credential (Get-Credential)",
        "# a slow domain controller stalls Negotiate logins: nltest /sc_query:<domain> on the host",
    ),
    (causes.NAME_UNRESOLVED, "unix"): _UNRESOLVED,
    (causes.NAME_UNRESOLVED, "windows"): _UNRESOLVED,
    (causes.PROTOCOL_ERROR, "unix"): (
        "nc {address} {port} </dev/null   # the banner must start with SSH-2.0",
        "# check ansible_port: is something other than sshd listening there?",
    ),
    (causes.PROTOCOL_ERROR, "windows"): (
        "Test-WSMan {address}{wsport}   # is it WinRM that answers?",
        "# check ansible_port and ansible_winrm_scheme (http on 5985, https on 5986)",
    ),
    (causes.SERVICE_ERROR, "unix"): ("journalctl -u ssh --since today   # on the host",),
    (causes.SERVICE_ERROR, "windows"): (
        "Get-Service WinRM; winrm get winrm/config   # on the host",
        "Get-WinEvent -LogName Microsoft-Windows-WinRM/Operational -MaxEvents 20",
    ),
    (causes.ZONE_UNAVAILABLE, "unix"): _NO_ZONE_WORKER,
    (causes.ZONE_UNAVAILABLE, "windows"): _NO_ZONE_WORKER,
    # Kerberos (WinRM): the runner's ticket, the clocks, the SPN, the KDC.
    (causes.NO_TICKET, "windows"): (
        "klist   # on the runner: a ticket, still valid?",
        "kinit {user}   # or set ansible_password: fleet then gets the ticket itself",
    ),
    (causes.CLOCK_SKEW, "windows"): (
        "w32tm /query /status   # on the host: its time source and offset",
        "w32tm /resync   # then compare with the runner's and the KDC's clocks",
    ),
    (causes.UNKNOWN_SPN, "windows"): (
        "setspn -Q HTTP/{name}   # on a domain member: is the SPN registered?",
        "# register it on the host's account, or set ansible_winrm_kerberos_hostname_override",
    ),
    (causes.KDC_UNREACHABLE, "windows"): (
        "# the realm's kdc entries in krb5.conf (or KRB5_CONFIG) on the runner",
        "# and port 88 open from the runner to each KDC",
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
    "unix": ("ssh -v{ssh} {address} true   # log in as the runner would: why does it fail?",),
    "windows": (
        "Test-WSMan {address}{wsport} -Authentication Negotiate -Credential (Get-Credential)"
        "   # log in by hand as the runner would",
    ),
}


_DEFAULT_PORT = {"unix": 22, "windows": 5985}


def login_fix(
    cause: str, platform: str, name: str, address: str, port: int | None = None, user: str = ""
) -> Fix:
    """The steps that fix a failed login of ``cause`` on a ``platform`` host, with the
    host's address, login port and user."""
    kind = "windows" if platform == "windows" else "unix"
    shown_port = port or _DEFAULT_PORT[kind]
    custom = port not in (None, 22)
    shapes = {  # parts of a step that depend on the port and user
        "{ssh}": ssh_options(port, user),
        "{p}": " -p {port}" if custom else "",
        "{known}": "'[{address}]:{port}'" if custom else "{address}",
        "{wsport}": " -Port {port}" if port is not None else "",
    }
    steps = []
    for step in _LOGIN_FIX.get((cause, kind), _LOGIN_GENERIC[kind]):
        for shape, part in shapes.items():
            step = step.replace(shape, part)
        steps.append(step)
    fix = Fix()
    values = {"address": Target(address or name), "name": Target(name)}
    fix.steps(
        "powershell" if kind == "windows" else "sh",
        steps,
        **values,
        port=Port(shown_port),
        user=Word(user),
    )
    return fix


def not_audited_findings(fleet: Fleet, explained: set[str]) -> list[Finding]:
    findings = []
    for name, failed in fleet.logins.items():
        if name in explained:
            continue
        host = fleet.hosts[name]
        why = causes.CAUSES.get(failed.cause, "could not log in")
        bastion = failed.facts.get("bastion")
        if bastion:  # the jump host failed: the fix is on it, not on the host behind it
            address = str(failed.facts.get("bastion_address") or bastion)
            port = failed.facts.get("bastion_port")
            fix = login_fix(failed.cause, "unix", str(bastion), address, int(port or 22))
            why = f"bastion {bastion}: {why}"
        else:
            fix = login_fix(failed.cause, host.platform, name, host.address, host.port, host.user)
        title = f"{name} was not audited: {why}"
        evidence = (f"{name} ({host.connection}): {failed.summary}", reach_line(fleet, name))
        findings.append(
            finding(NOT_AUDITED, name, title, [name], evidence, fix, Status.UNREACHABLE)
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

_NO_PYTHON = (
    "# the SMTP probe found no way to talk SMTP on the host: it needs python3, or nc,\n"
    "# bash (/dev/tcp) or openssl: install python3 (apt-get install python3-minimal,\n"
    "# dnf install python3, apk add python3)"
)
_PING_CANNOT_RUN = (
    "# the host's ping could not run: it is missing (apt-get install iputils-ping,\n"
    "# dnf install iputils, apk add iputils), or busybox ping needs root (raw sockets):\n"
    "# run the audit as root, or install iputils-ping, which pings without root\n"
    "sysctl net.ipv4.ping_group_range   # on the host: which groups may ping without root"
)
_NET_TOOLS = (
    "# the host lacks the network tools the check reads: install iproute2 (ip),\n"
    "# or net-tools (ifconfig, netstat) on hosts without it"
)
_WMI_BROKEN = (
    "# Windows could not report its adapters (WMI/CIM, and the ipconfig fallback):\n"
    "Get-CimInstance Win32_NetworkAdapterConfiguration   # on the host: does WMI answer?\n"
    "winmgmt /verifyrepository   # is the WMI repository consistent?\n"
    "Restart-Service Winmgmt -Force   # then rerun the audit on this host"
)

# (cause, check, platform), None matching any: the most specific key that matches wins.
_CHECK_ERROR_FIX: dict[tuple[str, str | None, str | None], str] = {
    (causes.COMMAND_TIMEOUT, None, None): _OUT_OF_TIME,
    (causes.DEADLINE, None, None): _OUT_OF_TIME,
    (causes.INTERRUPTED, None, None): _STOPPED,
    (causes.TOOL_MISSING, None, None): _TOOL_MISSING,
    (causes.TOOL_MISSING, "smtp", "unix"): _NO_PYTHON,
    (causes.TOOL_MISSING, "ping", "unix"): _PING_CANNOT_RUN,
    (causes.TOOL_MISSING, "binding", "unix"): _NET_TOOLS,
    (causes.TOOL_MISSING, "ipconfig", "unix"): _NET_TOOLS,
    (causes.TOOL_MISSING, "binding", "windows"): _WMI_BROKEN,
    (causes.TOOL_MISSING, "ipconfig", "windows"): _WMI_BROKEN,
    (causes.UNPARSED, None, None): _UNREADABLE,
    (causes.OUTPUT_LOST, None, None): _UNREADABLE,
    (causes.OUTPUT_TRUNCATED, None, None): _UNREADABLE,
}


def _check_error_steps(r: CheckResult, platform: str) -> str:
    kind = "windows" if platform == "windows" else "unix"
    for key in ((r.cause, r.check, kind), (r.cause, r.check, None), (r.cause, None, None)):
        if key in _CHECK_ERROR_FIX:
            return _CHECK_ERROR_FIX[key]
    return _GENERIC


def check_error_fix(errors: Sequence[CheckResult], platform: str = "unix") -> str:
    """The steps that fit why the checks could not run (the cause, the check and the
    platform; never the summary's words), one paragraph per reason."""
    return "\n".join(dict.fromkeys(_check_error_steps(r, platform) for r in errors))


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
                fix=check_error_fix(errors, host.platform),
                severity=Status.ERROR,
                key=f"{CHECK_ERROR}:{name}",
            )
        )
    return findings
