"""invoke tasks: thin wrappers over the same functions the `fleet` console script uses.

invoke audit                      # audit this machine (the bundled local inventory)
invoke audit --inventory prod     # audit inventories/prod; every `fleet audit` option works
invoke test                       # the whole test suite, the lab included (root)
invoke lab.up / invoke lab.down   # the network-namespace lab
invoke bench                      # the benchmark (root)
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from invoke import Argument, Collection, Context, Exit, Task, task

if TYPE_CHECKING:
    from fleet.app import AuditOption


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


class _AuditTask(Task):
    """``invoke audit`` takes every ``fleet audit`` option: both are made from one table."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        from fleet.app import AUDIT_OPTIONS

        return [_argument(option) for option in AUDIT_OPTIONS]


def _argument(option: AuditOption) -> Argument:
    names = [option.name] + ([option.short] if option.short else [])
    kind: type = str
    default: Any = None
    if option.switch is not None:
        kind, default = bool, False
    elif option.repeat:
        kind, default = list, []
    # As invoke names a task's parameters: --connect-timeout reaches it as connect_timeout.
    attr_name = option.name.replace("-", "_") if "-" in option.name else None
    return Argument(names=names, attr_name=attr_name, kind=kind, default=default, help=option.help)


@task(klass=_AuditTask, positional=[])
def audit(c: Context, **given: Any) -> None:
    """Audit an inventory's mail servers and write the reports (the options of fleet audit)."""
    from fleet import app
    from fleet.cli import exit_code

    texts = {name.replace("_", "-"): value for name, value in given.items()}
    _exit(exit_code(lambda: app.audit(app.request_from_text(texts))))


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
