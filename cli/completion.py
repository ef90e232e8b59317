"""Shell completion of the values people type most: wallet names and ``--param`` keys.

Click completes commands and options by itself; values need a type that knows them. Rather than
every command module remembering to pass ``shell_complete=``, the root group calls
:func:`attach_completions` on each command group it loads: in the wallet-facing groups every
plain string argument called ``name`` or ``to`` completes wallet names, and every ``--param``
option completes the chain parameter names. A new wallet command gets completion by naming its
argument ``name``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from cli.context import default_home

WALLET_GROUPS = frozenset({"wallet", "validator", "chain"})
"""Groups whose plain string arguments named as in ``WALLET_ARGUMENTS`` take wallet names."""

WALLET_ARGUMENTS = frozenset({"name", "to", "who", "address", "wallet"})


def _home(ctx: click.Context) -> Path:
    """The --home being completed for (POSCTL_HOME and the default included)."""
    home = ctx.find_root().params.get("home")
    return Path(home).expanduser() if home else default_home()


def wallet_names(ctx: click.Context) -> list[str]:
    """The wallets of the home; nothing (never an error) if it cannot be read."""
    from wallet.keystore import Keystore

    try:
        return Keystore(_home(ctx) / "wallets").names()
    except (OSError, ValueError):
        return []


class WalletNameType(click.types.StringParamType):
    """A string that completes to the home's wallet names."""

    name = "wallet"

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        return [CompletionItem(name) for name in wallet_names(ctx) if name.startswith(incomplete)]


class ParamKeyType(click.types.StringParamType):
    """``KEY=VALUE`` whose KEY completes to the chain parameter names (``ledger.params``)."""

    name = "param"

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        from ledger.params import Params

        if "=" in incomplete:
            return []
        return [CompletionItem(f"{key}=", type="plain") for key in Params.names() if key.startswith(incomplete)]


WALLET_NAME = WalletNameType()
PARAM_KEY = ParamKeyType()


def attach_completions(group_name: str, command: click.Command) -> click.Command:
    """Give the known value kinds their completion, in ``command`` and every subcommand."""
    stack: list[Any] = [command]
    while stack:
        current = stack.pop()
        for param in current.params:
            if type(param.type) is not click.types.StringParamType:
                continue  # a Choice, a Path, an amount: it completes (or not) by itself
            if isinstance(param, click.Argument) and group_name in WALLET_GROUPS and param.name in WALLET_ARGUMENTS:
                param.type = WALLET_NAME
            elif isinstance(param, click.Option) and "--param" in param.opts:
                param.type = PARAM_KEY
        if isinstance(current, click.Group):
            stack.extend(current.commands.values())
    return command


__all__ = ["attach_completions", "wallet_names", "WALLET_NAME", "PARAM_KEY"]
