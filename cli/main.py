"""``posctl``: the root command group.

Command groups live in their own modules (``wallet_cmd``, ``chain_cmd``, ``node_cmd``,
``demo``) and are imported only when that group runs, so ``posctl --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

import click

from cli.context import (AppContext, HomePath, color_setting, default_home, echo_error, interrupted_by_sigterm,
                         name_home_in_advice, output_options, refuse_a_home_others_control, signals_unwind_once)

LAZY_GROUPS = {
    "wallet": ("cli.wallet_cmd", "wallet", "Create wallets and sign stake, transfer and BPM transactions."),
    "chain": ("cli.chain_cmd", "chain", "Create, inspect, forge and verify the chain."),
    "node": ("cli.node_cmd", "node", "Run a long-lived forger with a local HTTP API; its status; stop it."),
    "validator": ("cli.validator_cmd", "validator", "Run a validator that proposes for every block by itself."),
    "demo": ("cli.demo", "demo", "Run the whole proof-of-stake story end to end."),
    "lab": ("cli.lab_cmd", "lab", "Run the classic PoS attacks against naive rules and posctl's, measured."),
}


def _version() -> str:
    try:
        return version("posctl")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0+source"


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())
"""click >= 8.2 raises this for a bare group; older versions print the help themselves."""


HARD_EXIT_ON_INTERRUPT = False
"""Set by the executable's entry points (``cli:main``, ``python -m cli.main``), never by click's
test runner, which runs commands inside its own process."""


def _leave(status: int, *, interrupted: bool) -> NoReturn:
    """Exit with ``status``. A command that was interrupted while worker processes live exits at
    once (``os._exit``) once its own clean-up has run and its line is printed: a process pool
    whose shutdown was cut short by a second Ctrl-C leaves its workers, feeder and manager
    waiting on each other at interpreter exit, and ``chain init`` given two Ctrl-Cs hung so in
    most runs. The workers are killed first; everything durable was synced when committed."""
    if interrupted and HARD_EXIT_ON_INTERRUPT and "multiprocessing" in sys.modules:
        import multiprocessing

        if multiprocessing.active_children():
            from ledger.chain.pools import kill_workers, release_pool_resources

            kill_workers()
            release_pool_resources()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    sys.exit(status)


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it is invoked (or its help is shown), and
    reports every failure as one line on stderr: ``error: …``, exit 1, usage errors exit 2."""

    def main(self, args: Any = None, prog_name: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        with signals_unwind_once():
            self._main_reporting_errors(args, prog_name, **extra)

    def _main_reporting_errors(self, args: Any, prog_name: str | None, **extra: Any) -> None:
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:
            click.echo(exc.format_message(), err=True)  # a bare group: its help is the answer
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "posctl"
            echo_error(f"{exc.format_message()} (see `{command} --help`)")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            _leave(exc.exit_code, interrupted=isinstance(exc.__context__, (KeyboardInterrupt, click.Abort)))
        except (click.Abort, KeyboardInterrupt, EOFError) as exc:
            echo_error(f"{'stopped by SIGTERM' if interrupted_by_sigterm(exc) else 'aborted'}: nothing was changed")
            _leave(1, interrupted=not isinstance(exc, EOFError))
        sys.exit(result if isinstance(result, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(LAZY_GROUPS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in LAZY_GROUPS:
            return None
        from cli.completion import attach_completions

        module_name, attr, _ = LAZY_GROUPS[name]
        module = __import__(module_name, fromlist=[attr])
        return attach_completions(name, getattr(module, attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, LAZY_GROUPS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _parse_node_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from cli.backend import parse_node_url

    if value is None or ctx.resilient_parsing:
        return value
    try:
        return parse_node_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home", type=HomePath(file_okay=False, path_type=Path), envvar="POSCTL_HOME",
    default=default_home, show_default="~/.posctl",
    help="Directory holding the chain and the wallets (env POSCTL_HOME).",
)
@click.option(
    "--password-file", type=click.Path(dir_okay=False, path_type=Path), envvar="POSCTL_PASSWORD_FILE",
    help="Read the wallet password from this file (else POSCTL_PASSWORD, else a hidden prompt).",
)
@click.option(
    "--node", "node_url", envvar="POSCTL_NODE", metavar="URL", callback=_parse_node_url,
    help="Reach the node at this loopback URL (e.g. http://127.0.0.1:9001) instead of the one "
    "--home records (env POSCTL_NODE).",
)
@output_options
@click.version_option(_version(), prog_name="posctl")
@click.pass_context
def posctl(ctx: click.Context, home: Path, password_file: Path | None, node_url: str | None) -> None:
    """posctl — a Proof-of-Stake ledger you can run, read and break on your own machine.

    --json and -o json work before or after the command. NO_COLOR=1 turns colour off.
    Shell completion (commands, wallet names, --param keys):
    eval "$(_POSCTL_COMPLETE=bash_source posctl)" (zsh_source, fish_source).
    """
    os.umask(0o077)  # everything posctl writes (chain, wallets, node record) is private to the user
    _no_core_dumps()
    app = ctx.ensure_object(AppContext)
    app.home, app.password_file, app.node_url = home.expanduser(), password_file, node_url
    given = ctx.get_parameter_source("home") is click.core.ParameterSource.COMMANDLINE
    name_home_in_advice(app.home if given else None)
    if ctx.invoked_subcommand is not None:
        refuse_a_home_others_control(app.home)
    if color_setting() is False:
        ctx.color = False  # click.secho anywhere below honours NO_COLOR too
    ctx.call_on_close(app.close)


def _no_core_dumps() -> None:
    """A crash writes no core file: one holds the process's memory, and a command that unlocked a
    wallet holds its key (a `validator run` killed with SIGSEGV left alice's private key and
    recovery entropy in a core file in the working directory)."""
    import resource

    try:  # the soft limit: a hard one lowered could not be raised again by the user's shell's children
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ValueError, OSError):  # not allowed here: nothing better to do
        pass


def main(argv: list[str] | None = None) -> Any:
    return posctl.main(args=argv, prog_name="posctl")


if __name__ == "__main__":
    HARD_EXIT_ON_INTERRUPT = True
    main()
