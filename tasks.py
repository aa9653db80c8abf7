"""invoke tasks: thin wrappers over the same functions the `fleet` console script uses.

invoke audit                      # audit this machine (the bundled local inventory)
invoke audit --inventory prod     # audit inventories/prod; every `fleet audit` option works
invoke merge reports/shards       # one report from the shards of an audit (--shard K/N)
invoke inventory / report / diff  # the other `fleet` commands, described in the same words
invoke test                       # the whole test suite, the lab included (root)
invoke lab.up / invoke lab.down   # the network-namespace lab
invoke bench                      # the benchmark (root); --all adds 10,000 hosts and WinRM
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from invoke import Argument, Collection, Context, Exit, Task, task

from fleet.app import audit_option
from fleet.cli import ARGUMENTS, COMMANDS

if TYPE_CHECKING:
    from fleet.app import AuditOption


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


def _fleet(argv: list[str]) -> None:
    """Run a ``fleet`` command, its exit code as this task's."""
    from fleet.cli import main

    _exit(main(argv))


def _as_params(helps: dict[str, str]) -> dict[str, str]:
    """fleet's argument names as the task's parameters (``--format`` is stored as ``formats``)."""
    return {("format" if name == "formats" else name): text for name, text in helps.items()}


def _said_as_fleet_says(command: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The task's docstring is the ``fleet`` subcommand's help: one text, two programs."""

    def describe(body: Callable[..., None]) -> Callable[..., None]:
        body.__doc__ = COMMANDS[command]
        return body

    return describe


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
@_said_as_fleet_says("audit")
def audit(c: Context, **given: Any) -> None:
    from fleet import app
    from fleet.cli import exit_code

    texts = {name.replace("_", "-"): value for name, value in given.items()}
    _exit(exit_code(lambda: app.audit(app.request_from_text(texts))))


class _MergeTask(Task):
    """``invoke merge`` takes ``fleet merge``'s parts and report options, from the same table."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        from fleet.app import MERGE_FIELDS

        parts = Argument(
            names=["parts"], kind=str, positional=True, help=ARGUMENTS["merge"]["parts"]
        )
        return [parts, *(_argument(audit_option(field)) for field in MERGE_FIELDS)]


@task(klass=_MergeTask, positional=["parts"])
@_said_as_fleet_says("merge")
def merge(c: Context, parts: str, **given: Any) -> None:
    # Parts comma-separated (invoke merge a.json,b.json), or a directory of them.
    from pathlib import Path

    from fleet import app
    from fleet.cli import exit_code

    texts = {name.replace("_", "-"): value for name, value in given.items()}
    sources = [Path(part) for part in parts.split(",") if part]
    _exit(exit_code(lambda: app.merge_reports(sources, app.request_from_text(texts))))


@task(help={"inventory": audit_option("inventory").help, "limit": audit_option("limit").help})
@_said_as_fleet_says("inventory")
def inventory(c: Context, inventory: str = "local", limit: str = "") -> None:
    _fleet(["inventory", "--inventory", inventory, "--list", *(["--limit", limit] * bool(limit))])


@task(help=_as_params(ARGUMENTS["report"]), positional=["result"])
@_said_as_fleet_says("report")
def report(c: Context, result: str, format: str = "", output: str = "") -> None:
    options = ["--format", format] * bool(format) + ["--output", output] * bool(output)
    _fleet(["report", result, *options])


@task(help=ARGUMENTS["diff"], positional=["before", "after"])
@_said_as_fleet_says("diff")
def diff(c: Context, before: str, after: str) -> None:
    _fleet(["diff", before, after])


@task
@_said_as_fleet_says("config")
def config(c: Context) -> None:
    _fleet(["config"])


@task(help={**ARGUMENTS["worker"], "inventory": audit_option("inventory").help})
@_said_as_fleet_says("worker")
def worker(c: Context, zone: str, inventory: str = "local", concurrency: int = 1) -> None:
    _fleet(["worker", "--zone", zone, "--inventory", inventory, "--concurrency", str(concurrency)])


@task(help={"k": "only tests matching this expression", "lab": "include the lab tests (default)"})
def test(c: Context, k: str = "", lab: bool = True) -> None:
    """run the whole test suite (the lab tests need root), installing missing system tools first"""
    from tests.lab import packages

    try:
        packages.ensure()  # root with apt-get installs them; otherwise one line, at once
    except packages.MissingPackages as exc:
        raise Exit(f"invoke test: {exc}", code=1) from None
    args = [sys.executable, "-m", "pytest", "-q"]
    if k:
        args += ["-k", k]
    env = {} if lab else {"FLEET_SKIP_LAB": "1"}
    c.run(" ".join(args), env=env, pty=False)


@task
def lint(c: Context) -> None:
    """ruff (lint and format check) and mypy over the package"""
    c.run("ruff check fleet tests tasks.py")
    c.run("ruff format --check fleet tests tasks.py")
    c.run("mypy fleet")


@task(
    help={
        "hosts": "bench hosts (200)",
        "quick": "fleet and the OpenSSH floor only",
        "scale": "also audit this many hosts for the memory and CPU figures (1000, 10000 or both: "
        "1000,10000)",
        "windows": "also this many simulated Windows hosts over WinRM (e.g. 200)",
        "all": "everything: the default run, --scale 1000,10000 and --windows 200",
        "repeat": "runs of fleet and the floor, taking turns; medians reported (3)",
    }
)
def bench(
    c: Context,
    hosts: int = 200,
    quick: bool = False,
    scale: str = "",
    windows: int = 0,
    all: bool = False,
    repeat: int = 3,
) -> None:
    """the benchmark: fleet vs the plain OpenSSH fan-out vs ansible-playbook (root)"""
    args = [
        f"--hosts {hosts}",
        f"--repeat {repeat}",
        "--quick" if quick else "",
        f"--scale {scale}" if scale and scale != "0" else "",
        f"--windows {windows}" if windows else "",
        "--all" if all else "",
    ]
    c.run(f"{sys.executable} -m tests.lab.bench {' '.join(filter(None, args))}", pty=False)


@task(name="up")
def lab_up(c: Context) -> None:
    """build the network-namespace lab (root)"""
    from tests.lab.__main__ import main

    _exit(main(["up"]))


@task(name="down")
def lab_down(c: Context) -> None:
    """tear the lab down, leaving nothing behind"""
    from tests.lab.__main__ import main

    _exit(main(["down"]))


@task(name="status")
def lab_status(c: Context) -> None:
    """what the lab has running"""
    from tests.lab.__main__ import main

    _exit(main(["status"]))


lab = Collection("lab", lab_up, lab_down, lab_status)
ns = Collection(audit, merge, inventory, report, diff, config, worker, test, lint, bench, lab)
