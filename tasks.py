"""invoke tasks: thin wrappers over the same functions the `fleet` console script uses.

invoke audit                      # audit this machine (inventories/local)
invoke audit --inventory prod     # audit inventories/prod
invoke test                       # the whole test suite, the lab included (root)
invoke lab.up / invoke lab.down   # the network-namespace lab
invoke bench                      # the benchmark (root)
"""

from __future__ import annotations

import sys

from invoke import Collection, Context, Exit, task


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


@task(
    help={
        "inventory": "inventories/NAME or a path (default: local)",
        "playbook": "playbooks/NAME or a path (default: mail-connectivity)",
        "limit": "Ansible host pattern",
        "forks": "hosts audited at once",
        "deadline": "seconds after which the run ends with what finished",
        "mail_to": "comma-separated addresses to mail the report to",
        "formats": "report formats, e.g. csv,html,junit",
        "quiet": "no progress output",
        "no_host_key_checking": "accept unknown SSH host keys",
        "report_dir": "where reports and the run history go (default: reports)",
    }
)
def audit(
    c: Context,
    inventory: str = "local",
    playbook: str = "mail-connectivity",
    limit: str = "",
    forks: int = 50,
    deadline: float = 0.0,
    mail_to: str = "",
    formats: str = "",
    quiet: bool = False,
    no_host_key_checking: bool = False,
    report_dir: str = "reports",
) -> None:
    """Audit an inventory's mail servers and write the reports."""
    from fleet.cli import main

    argv = ["audit", "--inventory", inventory, "--playbook", playbook, "--forks", str(forks)]
    argv += ["--report-dir", report_dir]
    if limit:
        argv += ["--limit", limit]
    if deadline:
        argv += ["--deadline", str(deadline)]
    for address in filter(None, (a.strip() for a in mail_to.split(","))):
        argv += ["--mail-to", address]
    if formats:
        argv += ["--format", formats]
    if quiet:
        argv.append("--quiet")
    if no_host_key_checking:
        argv.append("--no-host-key-checking")
    _exit(main(argv))


@task(help={"k": "only tests matching this expression", "lab": "include the lab tests (default)"})
def test(c: Context, k: str = "", lab: bool = True) -> None:
    """Run the whole test suite (the lab tests need root)."""
    args = [sys.executable, "-m", "pytest", "-q"]
    if k:
        args += ["-k", k]
    env = {} if lab else {"FLEET_SKIP_LAB": "1"}
    c.run(" ".join(args), env=env, pty=False)


@task
def lint(c: Context) -> None:
    """ruff (lint and format check) and mypy over the package."""
    c.run("ruff check fleet tests tasks.py")
    c.run("ruff format --check fleet tests tasks.py")
    c.run("mypy fleet")


@task(
    help={
        "hosts": "bench hosts (200)",
        "quick": "fleet and the OpenSSH floor only",
        "scale": "also audit this many hosts for the peak-memory figure (e.g. 1000)",
    }
)
def bench(
    c: Context, hosts: int = 200, quick: bool = False, scale: int = 0, repeat: int = 3
) -> None:
    """The benchmark: fleet vs the plain OpenSSH fan-out vs ansible-playbook (root)."""
    args = [
        f"--hosts {hosts}",
        f"--repeat {repeat}",
        "--quick" if quick else "",
        f"--scale {scale}" if scale else "",
    ]
    c.run(f"{sys.executable} -m tests.lab.bench {' '.join(filter(None, args))}", pty=False)


@task(name="up")
def lab_up(c: Context) -> None:
    """Build the network-namespace lab (root)."""
    from tests.lab.__main__ import main

    _exit(main(["up"]))


@task(name="down")
def lab_down(c: Context) -> None:
    """Tear the lab down, leaving nothing behind."""
    from tests.lab.__main__ import main

    _exit(main(["down"]))


@task(name="status")
def lab_status(c: Context) -> None:
    """What the lab has running."""
    from tests.lab.__main__ import main

    _exit(main(["status"]))


lab = Collection("lab", lab_up, lab_down, lab_status)
ns = Collection(audit, test, lint, bench, lab)
