"""The context every command receives, and the one place output and errors are rendered.

Commands are thin: they parse, call the library and hand back data; :func:`emit` prints it as
JSON (exactly one document on stdout) or as text. Every failure a user can cause becomes one
line on stderr — ``error: …`` — and exit status 1; a traceback is a bug.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

INTEGER_TEXT = re.compile(r"^[+-]?[0-9]{1,40}$")
"""A whole number as people type it (no '_', no decimals); 40 digits is far above 2^63 and far
below int()'s limits."""


@dataclass
class AppContext:
    """Built by the root group and passed down through ``click.Context.obj``."""

    home: Path
    password_file: Path | None = None
    json_output: bool = False
    sign_only: Path | None = None
    """``--out FILE`` on a submitting command: write the signed tx there instead of submitting."""
    _backend: Any = field(default=None, repr=False)

    @property
    def wallets_dir(self) -> Path:
        return self.home / "wallets"

    def backend(self) -> Any:
        """The chain backend (direct or through a running node), opened once per command."""
        if self._backend is None:
            from cli.backend import open_backend

            self._backend = open_backend(self.home)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


pass_app = click.make_pass_decorator(AppContext)


class CliError(click.ClickException):
    """Printed as one line ``error: message`` on stderr (click's default says ``Error:``)."""

    def show(self, file: Any = None) -> None:
        if file is None:
            click.echo(f"error: {self.format_message()}", err=True)
        else:
            click.echo(f"error: {self.format_message()}", file=file)


def fail(message: str) -> "click.ClickException":
    """An error a user can act on: printed as ``error: message``, exit status 1."""
    return CliError(message)


def emit(app: AppContext, data: Any, text: Callable[[Any], str] | str | None = None) -> None:
    """Print ``data`` as one JSON document, or as text rendered by ``text``."""
    if app.json_output:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if text is None:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif isinstance(text, str):
        click.echo(text)
    else:
        click.echo(text(data))


def json_option(func: F) -> F:
    """``--json`` on a command: sets the context's output mode."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.find_object(AppContext).json_output = True  # type: ignore[union-attr]
        return value

    return click.option(
        "--json", "json_flag", is_flag=True, expose_value=False, callback=callback,
        help="Print exactly one JSON document on stdout.",
    )(func)


def handles_errors(func: F) -> F:
    """Turn library errors into one-line click errors (exit 1) — never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ledger.errors import LedgerError
        from wallet.errors import WalletError

        try:
            return func(*args, **kwargs)
        except (LedgerError, WalletError) as exc:
            raise fail(str(exc)) from None
        except PermissionError as exc:
            raise fail(f"permission denied: {exc.filename}: choose another --home or fix its permissions") from None
        except OSError as exc:
            raise fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None

    return wrapper  # type: ignore[return-value]


def check_home_usable(home: Path) -> None:
    """Fail now if ``home`` could not be created or written — without creating anything, so a
    command refused later (no password, Ctrl-C) leaves no empty directory behind."""
    probe = home
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise fail(f"cannot use {home} as the posctl home: {probe} is not a directory; choose another with --home")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise fail(f"cannot use {home} as the posctl home: {probe} is not writable; choose another with --home")


def read_password(
    app: AppContext, *, confirm: bool = False, prompt: str = "Wallet password", why: str = ""
) -> str:
    """From ``--password-file``, else ``POSCTL_PASSWORD``, else a hidden prompt."""
    if app.password_file is not None:
        try:
            text = app.password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot read password file {app.password_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise fail(f"password file {app.password_file} is not UTF-8 text") from None
        password = text.rstrip("\r\n")
    elif "POSCTL_PASSWORD" in os.environ:
        password = os.environ["POSCTL_PASSWORD"]
    elif not sys.stdin.isatty():
        reason = f" ({why})" if why else ""
        raise fail(f"a password is needed{reason}: set POSCTL_PASSWORD, pass --password-file, or run in a terminal")
    else:
        password = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    if not password:
        raise fail("the password is empty: choose a non-empty password")
    return password


def resolve_account(app: AppContext, who: str, role: str = "account") -> tuple[str, str | None]:
    """(address, wallet name or None) for an account given as a ``pos1…`` address or a wallet name.

    A valid address wins; then a local wallet of that name (index 0 of its first account: 0, or a
    watch-only wallet's own; no password needed, but its public keys must carry this home's
    integrity tag); text that starts like an address but is not one reports the address error
    (typo, checksum), so a mistyped address is never taken for a missing wallet.
    """
    from ledger.crypto.address import ADDRESS_PREFIX, is_valid_address, parse_address
    from wallet.keystore import WALLET_NAME_PATTERN, Keystore

    if is_valid_address(who):
        return parse_address(who), None
    store = Keystore(app.wallets_dir)
    if WALLET_NAME_PATTERN.fullmatch(who) and store.exists(who):
        wallet = store.load_verified(who)
        return wallet.address(wallet.default_account, 0), who  # a watch-only wallet may hold another account
    if who.lower().startswith(ADDRESS_PREFIX):
        parse_address(who)  # raises InvalidAddress naming what is wrong
    raise fail(
        f"{role} {who!r} is neither a pos1… address nor a wallet in {app.wallets_dir}: "
        "check the spelling, or list wallets with `posctl wallet list`"
    )
