"""``posctl wallet``: create and inspect wallets, and sign the four kinds of transaction.

Each command is thin: it parses, asks :mod:`wallet` for keys and signatures and the chain
backend for state, and renders. Whether a transaction is acceptable (balance, nonce, chain id,
BPM range) is the ledger's decision; its error is printed as it is.

Exit statuses: a value that is wrong on the command line alone (an amount that is not a whole
number in [1, 2^63), a BPM that is not an integer, an account number out of range) is a usage
error, status 2, raised before anything is read or asked. Everything that needs the wallet or
the chain to decide (unknown wallet, wrong password, BPM outside this chain's range, balance,
eligibility) is status 1 with one ``error: …`` line. Nothing is written unless the command
succeeds.

A submitting command asks for the password only once everything that can be checked without it
has been checked, so a mistake never costs a password prompt (or a scrypt run).

Questions (the transfer confirmation, a wallet name typed back before ``delete`` or
``export --phrase``, a new password typed twice) are asked only when stdin is a terminal.
Without one, each command does what its flags say (``--yes``, ``--yes-show-phrase``) or refuses
with one line; it never blocks waiting for an answer nobody can give.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from cli.context import (
    INTEGER_TEXT,
    resolve_account,
    AppContext,
    check_home_usable,
    emit,
    fail,
    interrupts_reported_as,
    may_have_been_submitted,
    handles_errors,
    json_option,
    pass_app,
    read_password,
    read_password_file,
)
from cli.render import render_account
from ledger.chain.facade import ensure_home
from ledger.consensus.state import check_can_propose
from ledger.errors import ChainNotInitialized, InvalidProposal, InvalidTransaction
from ledger.params import MAX_AMOUNT, Params
from ledger.consensus.transactions import Bpm, Transaction, check_amount, check_bpm
from ledger.chain.views import tx_view
from wallet import bip39, lifecycle, signing
from wallet.errors import WalletError, WalletExists, WalletNotFound, WalletTampered, WatchOnlyWallet
from wallet.accounts import ADDRESS_PATH
from wallet.hd import HARDENED
from wallet.protection import SlashingProtection
from wallet.keystore import Keystore, UnlockedWallet
from wallet.wallet_file import ScryptParams, WalletFile

F = TypeVar("F", bound=Callable[..., Any])

KDF_ENV = "POSCTL_KDF"
"""``light`` selects cheap scrypt parameters: for tests and demos only, never for real funds."""
NEW_PASSWORD_ENV = "POSCTL_NEW_PASSWORD"
"""``wallet passwd`` reads the new password from here when scripted (POSCTL_PASSWORD is the old one)."""
MAX_ADDRESS_COUNT = 1000
"""``wallet addresses --count`` bound: each address is an elliptic-curve derivation."""



# ---- parameter types: what can be checked from the command line alone -----------------------


class AmountType(click.ParamType):
    """A whole number of tokens in [1, 2^63), the ledger's own rule (``check_amount``)."""

    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        else:
            text = str(value).strip()
        if not INTEGER_TEXT.fullmatch(text):
            self.fail(
                f"{value!r} is not a whole number of tokens: "
                "use an integer from 1 to 2^63-1 (no decimals, no exponents, no units)",
                param, ctx,
            )
        try:
            return check_amount(int(text))
        except InvalidTransaction as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)


class BpmType(click.ParamType):
    """An integer heart rate; its allowed range is a chain parameter, checked against the chain."""

    name = "bpm"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value).strip()
        if not INTEGER_TEXT.fullmatch(text):
            self.fail(f"{value!r} is not an integer: a BPM is a whole number of beats per minute", param, ctx)
        return int(text)


AMOUNT = AmountType()
BPM_VALUE = BpmType()
KEY_NUMBER = click.IntRange(0, HARDENED - 1)


def account_options(func: F) -> F:
    """``--account N --index I``: which key of the wallet (path m/44'/1'/N'/0/I); and
    ``--out FILE``, which signs without submitting (for ``curl`` or another machine)."""

    def remember_out(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
        if value is not None:
            ctx.find_object(AppContext).sign_only = value  # type: ignore[union-attr]
        return value

    def remember_nonce(ctx: click.Context, _param: click.Parameter, value: int | None) -> int | None:
        if value is not None:
            ctx.find_object(AppContext).nonce = value  # type: ignore[union-attr]
        return value

    func = click.option(
        "--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), expose_value=False,
        callback=remember_out,
        help="Write the signed tx (its canonical JSON, as POST /txs takes it) to FILE ('-': stdout) instead of "
             "submitting; `posctl chain submit FILE` broadcasts it.",
    )(func)
    func = click.option(
        "--nonce", type=click.IntRange(0, MAX_AMOUNT - 1), expose_value=False, callback=remember_nonce,
        metavar="N", help="Sign with nonce N instead of the account's next one: to sign several txs ahead with "
                          "--out (N, N+1, …), each broadcast later in order.",
    )(func)
    func = click.option(
        "--index", type=KEY_NUMBER, default=0, show_default=True,
        help="Address index inside the account (m/44'/1'/ACCOUNT'/0/INDEX).",
    )(func)
    return click.option(
        "--account", type=KEY_NUMBER, default=0, show_default=True,
        help="BIP-44 account number (m/44'/1'/ACCOUNT').",
    )(func)  # type: ignore[return-value]


def submitting(func: F) -> F:
    """The options and plumbing every signing command shares: which key (``--account``,
    ``--index``), ``--out FILE``, ``--json``, the app context and one-line errors."""
    return account_options(json_option(pass_app(handles_errors(func))))


# ---- small helpers ---------------------------------------------------------------------------


def kdf_params() -> ScryptParams:
    """Key stretching for new wallets: strong scrypt, unless ``POSCTL_KDF=light`` (tests, demos)."""
    mode = os.environ.get(KDF_ENV, "").strip().lower()
    if mode in ("", "default"):
        return ScryptParams.default()
    if mode == "light":
        return ScryptParams.light()
    raise fail(f"{KDF_ENV}={os.environ[KDF_ENV]!r} is not known: unset it (or 'light', for tests and demos only)")


def warn_if_light_kdf() -> None:
    if os.environ.get(KDF_ENV, "").strip().lower() == "light":
        click.echo(
            f"warning: {KDF_ENV}=light: this wallet's password is cheap to guess; "
            "use it for tests and demos only",
            err=True,
        )


def keystore(app: AppContext) -> Keystore:
    return Keystore(app.wallets_dir)


def key_path(account: int, index: int) -> str:
    return ADDRESS_PATH.format(account=account, index=index)


def public_address(wallet: WalletFile, account: int, index: int) -> str | None:
    """The address without the password, or None for an account whose xpub is not stored."""
    if account not in wallet.accounts:
        return None
    return wallet.address(account, index)


def refuse_existing(store: Keystore, name: str) -> None:
    """Wallets are never overwritten; checked before any prompt."""
    if store.exists(name):
        raise WalletExists(
            f"wallet '{name}' already exists at {store.path(name)}: choose another name "
            "(posctl never overwrites a wallet)"
        )


def at_terminal() -> bool:
    """Whether a person can answer a prompt: stdin is a terminal (never true under a pipe)."""
    return sys.stdin.isatty()


def prompt_new_password(prompt: str = "Wallet password", what: str = "passwords", may_be_empty: bool = False) -> str:
    """A new secret typed twice at a terminal; a mismatch is one ``error:`` line, exit 1
    (click's own confirmation loop prints ``Error:`` and asks again, unlike every other error)."""
    options: dict[str, Any] = {"default": "", "show_default": False} if may_be_empty else {}
    first = click.prompt(prompt, hide_input=True, err=True, **options)
    second = click.prompt("Repeat for confirmation", hide_input=True, err=True, **options)
    if first != second:
        raise fail(f"the two {what} typed do not match: nothing was written; run the command again")
    return first


def read_chosen_password(app: AppContext) -> str:
    """The password of a wallet being made: --password-file, POSCTL_PASSWORD, else typed twice."""
    if app.password_file is None and "POSCTL_PASSWORD" not in os.environ and at_terminal():
        return refuse_blank(prompt_new_password(), "password")
    return refuse_blank(read_password(app), "password")


def refuse_blank(password: str, what: str) -> str:
    """A new password of spaces alone is as good as none (an empty one was refused, three spaces
    were taken); a wallet already sealed with one still opens with it."""
    if password and not password.strip():
        raise fail(f"the {what} is only spaces: choose one with other characters too; nothing was written")
    return password


def read_new_password(new_password_file: Path | None) -> str:
    """``wallet passwd``'s new password: --new-password-file, POSCTL_NEW_PASSWORD, else typed twice."""
    if new_password_file is not None:
        password = read_password_file(new_password_file, "new password file")
    elif NEW_PASSWORD_ENV in os.environ:
        password = os.environ[NEW_PASSWORD_ENV]
    elif at_terminal():
        password = prompt_new_password("New password")
    else:
        raise fail(f"a new password is needed: pass --new-password-file, set {NEW_PASSWORD_ENV}, or run in a terminal")
    if not password:
        raise fail("the new password is empty: choose a non-empty password")
    return refuse_blank(password, "new password")


def confirm_by_typing(name: str, action: str) -> None:
    """A destructive or revealing step goes ahead only once the wallet's name is typed back."""
    typed = click.prompt(f"Type the wallet name ({name}) to {action}", default="", show_default=False, err=True)
    if typed.strip() != name:
        raise fail(f"what was typed is not {name!r}: nothing was done")  # not echoed: it may be a secret


def warn_same_keys(store: Keystore, name: str) -> None:
    """One stderr line when another wallet name holds the same keys (two names, one wallet)."""
    twins = store.same_keys(name)
    if twins:
        others = ", ".join(f"'{twin}'" for twin in twins)
        click.echo(
            f"warning: wallet '{name}' holds the same keys as {others} (the same account xpub): "
            "both names show the same addresses and balances",
            err=True,
        )


def unlock(app: AppContext, name: str, why: str = "") -> UnlockedWallet:
    password = read_password(app, prompt=f"Password for wallet '{name}'", why=why)
    unlocked = keystore(app).unlock(name, password)
    warn_light_wallet(unlocked.file)
    return unlocked


def warn_light_wallet(wallet_file: WalletFile) -> None:
    """Every unlock of a light-KDF wallet says so: a warning shown once at creation is forgotten.
    Not repeated while ``POSCTL_KDF=light`` is set: that session chose light wallets knowingly
    (tests, demos) and already got the warning when each was made."""
    if wallet_file.light_kdf and os.environ.get(KDF_ENV, "").strip().lower() != "light":
        click.echo(
            f"warning: wallet '{wallet_file.name}' uses light scrypt (made with {KDF_ENV}=light): its password "
            "is cheap to guess; use it for tests and demos only",
            err=True,
        )


def open_chain(app: AppContext) -> Any | None:
    """The chain backend, or None when this home has no chain yet."""
    try:
        return app.backend()
    except ChainNotInitialized:
        return None


def format_phrase(phrase: str, columns: int = 4) -> str:
    """Numbered words in columns, the way people copy them onto paper."""
    words = phrase.split()
    rows = (len(words) + columns - 1) // columns
    width = max(len(word) for word in words)
    lines = []
    for row in range(rows):
        cells = []
        for column in range(columns):
            position = column * rows + row
            if position < len(words):
                cells.append(f"{position + 1:>2}. {words[position]:<{width}}")
        lines.append("    " + "   ".join(cells).rstrip())
    return "\n".join(lines)


# ---- the group -------------------------------------------------------------------------------


@click.group()
def wallet() -> None:
    """Create wallets and sign stake, transfer and BPM transactions.

    Wallets live in HOME/wallets/NAME.json, encrypted with your password (scrypt +
    AES-256-GCM). Passwords come from --password-file, else POSCTL_PASSWORD, else a hidden
    prompt.
    """


@wallet.command("new")
@click.argument("name")
@click.option(
    "--words", type=click.Choice(["12", "15", "18", "21", "24"]), default="24", show_default=True,
    help="Length of the recovery phrase.",
)
@click.option(
    "--passphrase", "ask_passphrase", is_flag=True,
    help="Also ask for a BIP-39 passphrase (a 25th word): recovery will need it too.",
)
@json_option
@pass_app
@handles_errors
def new(app: AppContext, name: str, words: str, ask_passphrase: bool) -> None:
    """Create wallet NAME and show its recovery phrase, once.

    Set POSCTL_KDF=light for fast, weak key stretching in tests and demos only.
    """
    store = keystore(app)
    refuse_existing(store, name)
    check_home_usable(app.home)  # an unusable home fails before any prompt, creating nothing
    kdf = kdf_params()
    passphrase = ""
    if ask_passphrase and sys.stdin.isatty():
        passphrase = prompt_new_password("BIP-39 passphrase", what="passphrases", may_be_empty=True)
    elif ask_passphrase:  # scripted: the passphrase is the first line of stdin
        passphrase = _stdin_line("--passphrase reads the BIP-39 passphrase from the first line of stdin")
    password = read_chosen_password(app)
    ensure_home(app.home)

    def text(view: dict[str, Any]) -> str:
        count = len(view["mnemonic"].split())
        lines = [
            f"Created wallet '{name}' in {view['file']}",
            f"  address     {view['address']}  ({view['path']})",
            "",
            f"Recovery phrase ({count} words). It is shown this once and never again:",
            "",
            format_phrase(view["mnemonic"]),
            "",
            "WARNING: write these words down, in order, on paper, and keep them safe and offline.",
            "Anyone who has them controls this wallet's tokens; if you lose the wallet file or its",
            "password, they are the only way back (`posctl wallet recover NAME`).",
        ]
        if view["passphrase"]:
            lines.append("Recovery also needs the BIP-39 passphrase you just typed: write it down separately.")
        return "\n".join(lines)

    try:
        created, phrase = store.create(name, password, words=int(words), passphrase=passphrase, kdf=kdf)
        data = {
            "name": name,
            "address": created.address(0, 0),
            "path": key_path(0, 0),
            "file": str(created.path),
            "mnemonic": phrase,
            "passphrase": bool(passphrase),
        }
        warn_if_light_kdf()
        emit(app, data, text)
    except (KeyboardInterrupt, click.Abort):
        # Interrupted once the file was written (the last milliseconds of create, or while the
        # phrase was printed): a wallet whose phrase was never shown whole must not stay. It is
        # ours: the name was free when the command began and create never overwrites a file.
        if not store.exists(name):
            raise
        store.delete(name)
        raise fail(f"interrupted before the recovery phrase of '{name}' was shown in full: the new wallet "
                   "was removed again, so nothing was changed; run the command again") from None


@wallet.command("recover")
@click.argument("name")
@click.option(
    "--passphrase", "ask_passphrase", is_flag=True,
    help="The wallet had a BIP-39 passphrase: ask for it (from stdin: the line after the phrase).",
)
@json_option
@pass_app
@handles_errors
def recover(app: AppContext, name: str, ask_passphrase: bool) -> None:
    """Rebuild wallet NAME from its recovery phrase.

    The phrase is read from a hidden prompt, or from stdin when stdin is not a terminal
    (e.g. `posctl wallet recover alice < phrase.txt`).
    """
    store = keystore(app)
    refuse_existing(store, name)
    check_home_usable(app.home)  # an unusable home fails before any prompt, creating nothing
    kdf = kdf_params()
    phrase, passphrase = read_recovery_phrase(ask_passphrase)
    phrase = bip39.validate_mnemonic(phrase)  # before the password: a typo costs no prompt
    password = read_chosen_password(app)
    ensure_home(app.home)
    # the wallet is whole once its file exists (written atomically), and its phrase is the user's
    with interrupts_reported_as(f"interrupted after wallet '{name}' was written: it is complete; "
                                f"`posctl wallet show {name}` shows it", when=lambda: store.exists(name)):
        recovered = store.recover(name, phrase, password, passphrase=passphrase, kdf=kdf)
        data = {
            "name": name,
            "address": recovered.address(0, 0),
            "path": key_path(0, 0),
            "file": str(recovered.path),
        }
        warn_if_light_kdf()
        warn_same_keys(store, name)
        emit(app, data, lambda v: f"Recovered wallet '{name}' in {v['file']}\n  address     {v['address']}  ({v['path']})")


def read_recovery_phrase(ask_passphrase: bool) -> tuple[str, str]:
    """(phrase, passphrase) from hidden prompts, or from stdin when it is not a terminal."""
    stdin = sys.stdin
    if stdin.isatty():
        phrase = click.prompt("Recovery phrase", hide_input=True, default="", show_default=False, err=True)
        passphrase = ""
        if ask_passphrase:
            passphrase = click.prompt(
                "BIP-39 passphrase", hide_input=True, default="", show_default=False, err=True
            )
        return phrase, passphrase
    if not ask_passphrase:
        return _bounded(stdin.read(MAX_STDIN_CHARS + 1), "the recovery phrase"), ""
    phrase = _bounded(stdin.readline(MAX_STDIN_CHARS + 1), "the recovery phrase")
    return phrase, _stdin_line("--passphrase reads the BIP-39 passphrase from the line after the phrase")


MAX_STDIN_CHARS = 64 * 1024
"""Far above a 24-word phrase or any passphrase: more on stdin is the wrong input, not read whole."""


def _bounded(text: str, what: str) -> str:
    if len(text) > MAX_STDIN_CHARS:
        raise fail(f"stdin holds more than {MAX_STDIN_CHARS} characters where {what} belongs: "
                   "pipe in the phrase alone; nothing was written")
    return text


def _stdin_line(what: str) -> str:
    """One line of stdin, which must be there: a missing passphrase would mean another wallet."""
    line = _bounded(sys.stdin.readline(MAX_STDIN_CHARS + 1), "the passphrase")
    if not line:
        raise fail(f"{what}, and stdin has no such line: nothing was written")
    passphrase = line.rstrip("\r\n")
    if not passphrase:
        raise fail(f"{what}, and that line is empty: omit --passphrase for a wallet without one")
    return passphrase


@wallet.command("list")
@json_option
@pass_app
@handles_errors
def list_wallets(app: AppContext) -> None:
    """List the wallets of this home with their first address (no password needed)."""
    store = keystore(app)
    rows: list[dict[str, Any]] = []
    loaded_files: dict[str, WalletFile] = {}
    for name in store.names():
        try:
            loaded = store.load(name)
            loaded_files[name] = loaded
            row: dict[str, Any] = {"name": name, "address": loaded.address(loaded.default_account, 0),
                                   "light_kdf": loaded.light_kdf, "kdf": loaded.kdf_label, "integrity": "ok",
                                   "watch_only": loaded.watch_only, "same_keys_as": []}
            try:
                store.load_verified(name)
            except WalletTampered as exc:
                row["integrity"] = exc.integrity
                row["integrity_error"] = str(exc)
            rows.append(row)
        except WalletError as exc:  # one damaged file must not hide the others
            rows.append({"name": name, "address": None, "error": str(exc)})

    reported: set[str] = set()
    for row in rows:
        name = row["name"]
        if name not in loaded_files:
            continue
        row["same_keys_as"] = [other for other in loaded_files
                               if other != name and loaded_files[name].shares_keys_with(loaded_files[other])]
        if row["same_keys_as"] and name not in reported:
            group = [name, *row["same_keys_as"]]
            reported.update(group)
            click.echo(f"warning: wallets {', '.join(repr(n) for n in group)} hold the same keys "
                       "(the same account xpub): one wallet under several names", err=True)

    def marks(row: dict[str, Any]) -> str:
        out = []
        if row.get("watch_only"):
            out.append("[watch-only]")
        if row.get("light_kdf"):
            out.append("[LIGHT KDF: tests and demos only]")
        if row.get("integrity") == "untagged":
            out.append(f"[untagged: run `posctl wallet verify {row['name']}`]")
        elif row.get("integrity") == "no-key":
            out.append(f"[unchecked: the keystore key is missing; run `posctl wallet verify {row['name']}`]")
        elif row.get("integrity") == "mismatch":
            out.append("[TAMPERED: public keys do not match the tag]")
        return ("  " + " ".join(out)) if out else ""

    def text(view: list[dict[str, Any]]) -> str:
        if not view:
            return f"No wallets in {app.wallets_dir}: create one with `posctl wallet new NAME`."
        width = max(len(row["name"]) for row in view)
        return "\n".join(
            f"{row['name']:<{width}}  {row['address'] or 'unreadable: ' + row['error']}{marks(row)}" for row in view
        )

    emit(app, rows, text)


@wallet.command("verify")
@click.argument("name")
@json_option
@pass_app
@handles_errors
def verify_wallet(app: AppContext, name: str) -> None:
    """Check wallet NAME's public keys against its secret (asks for the password) and tag the
    file, so it can be used as a recipient by name without the password.

    Wallets made before the tag existed need this once; any unlock (a send from it) also tags it."""
    if keystore(app).load(name).watch_only:
        raise WatchOnlyWallet(name, "be checked against a secret (its tag was written at import)")
    unlocked = unlock(app, name, why=f"verifying wallet '{name}' needs its secret")
    store = keystore(app)
    checked = store.load_verified(name)
    view = {"name": name, "address": unlocked.address(0, 0), "integrity": "ok", "file": str(checked.path),
            "light_kdf": checked.light_kdf}
    emit(app, view, lambda v: f"wallet {name}: public keys match the secret; {v['file']} is tagged "
                              f"(address {v['address']})")


def public_keys(app: AppContext, stored: WalletFile, account: int, *, verified: bool = False
                ) -> WalletFile | UnlockedWallet:
    """What derives ``account``'s addresses: the file, or the unlocked wallet for an account whose
    xpub is not stored (above 9); a watch-only wallet has only its own account. ``verified``: the
    file's keys only if they carry this home's tag (:meth:`Keystore.load_verified`), for keys
    handed to others — `wallet addresses` and `wallet export` printed an edited file's keys
    (someone else's receiving addresses) without a word."""
    if account in stored.accounts:
        if verified:
            keystore(app).load_verified(stored.name)
        return stored
    if stored.watch_only:
        stored.account_xpub(account)  # raises, naming the account it does hold
    return unlock(app, stored.name,
                  why=f"account {account}'s public keys are not stored in the clear; accounts 0-9 are")


def view_options(func: F) -> F:
    """``--account`` (default: the wallet's first account) and ``--json``, for read-only commands."""
    func = click.option(
        "--account", type=KEY_NUMBER, default=None,
        help="BIP-44 account number (m/44'/1'/ACCOUNT'); default 0, or a watch-only wallet's account.",
    )(func)
    return json_option(pass_app(handles_errors(func)))  # type: ignore[return-value]


@wallet.command("show")
@click.argument("name")
@click.option("--index", type=KEY_NUMBER, default=0, show_default=True,
              help="Address index inside the account (m/44'/1'/ACCOUNT'/0/INDEX).")
@view_options
def show(app: AppContext, name: str, account: int | None, index: int) -> None:
    """Keys and balances of wallet NAME: liquid, bonded, unbonding, nonce, pending txs.

    Needs no password, except for an account above 9 (its xpub is not stored in the clear).
    """
    store = keystore(app)
    stored = store.load(name)
    integrity = "ok"
    try:
        store.load_verified(name)
    except WalletTampered as exc:  # shown, since it is the user's own file, but never silently
        integrity = exc.integrity
        click.echo(f"warning: {exc}", err=True)
    account = stored.default_account if account is None else account
    keys = public_keys(app, stored, account)
    address = keys.address(account, index)
    data: dict[str, Any] = {
        "name": name,
        "account": account,
        "index": index,
        "path": key_path(account, index),
        "address": address,
        "public_key": keys.public_key(account, index).hex(),
        "xpub": keys.account_xpub(account),
        "light_kdf": stored.light_kdf,
        "kdf": stored.kdf_label,
        "integrity": integrity,
        "watch_only": stored.watch_only,
    }
    backend = open_chain(app)
    if backend is None:
        data.update(
            chain_initialized=False, balance=None, bonded=None, unbonding=None,
            nonce=None, pending=None, next_nonce=None, height=None,
        )
        emit(app, data, lambda v: render_keys_only(v, app))
        return
    view = backend.account(address)
    data.update(view)
    data["chain_initialized"] = True
    data["height"] = backend.status()["height"]
    emit(app, data, lambda v: render_account(v, name))


def render_keys_only(view: dict[str, Any], app: AppContext) -> str:
    return "\n".join([
        f"Wallet {view['name']} (account {view['account']})",
        f"  {'address':<12}{view['address']}",
        f"  {'public key':<12}{view['public_key']}",
        f"  {'xpub':<12}{view['xpub']}",
        f"  {'kdf':<12}{view['kdf']}",
        f"  {'chain':<12}not initialised in {app.home}: no balances yet "
        "(create one with `posctl chain init`)",
    ])


# ---- managing wallets: watch-only import, addresses, export, rename, passwd, delete ----------


@wallet.command("import-xpub")
@click.argument("name")
@click.argument("xpub")
@json_option
@pass_app
@handles_errors
def import_xpub(app: AppContext, name: str, xpub: str) -> None:
    """Add watch-only wallet NAME from an account XPUB (what `posctl wallet export` prints).

    It shows addresses and balances and can be a recipient by name; it holds no private key,
    so send, stake, unstake, propose and unjail refuse it. No password is involved.
    """
    store = keystore(app)
    refuse_existing(store, name)
    check_home_usable(app.home)
    with interrupts_reported_as(f"interrupted after watch-only wallet '{name}' was written: it is complete; "
                                f"`posctl wallet show {name}` shows it", when=lambda: store.exists(name)):
        imported = store.import_xpub(name, xpub)
        account = imported.default_account
        data = {
            "name": name,
            "account": account,
            "address": imported.address(account, 0),
            "path": key_path(account, 0),
            "file": str(imported.path),
            "watch_only": True,
        }
        warn_same_keys(store, name)
        emit(app, data, lambda v: "\n".join([
            f"Imported watch-only wallet '{name}' (account {account}) in {v['file']}",
            f"  address     {v['address']}  ({v['path']})",
            "It cannot sign: to send from it, recover the wallet from its recovery phrase.",
        ]))


@wallet.command("addresses")
@click.argument("name")
@click.option("--count", type=click.IntRange(1, MAX_ADDRESS_COUNT), default=10, show_default=True,
              help=f"How many addresses to list, from index 0 (at most {MAX_ADDRESS_COUNT}).")
@view_options
def addresses(app: AppContext, name: str, count: int, account: int | None) -> None:
    """List wallet NAME's first COUNT addresses (index, path, address), derived from the account xpub.

    Needs no password, except for an account above 9 (its xpub is not stored in the clear).
    """
    stored = keystore(app).load(name)
    account = stored.default_account if account is None else account
    keys = public_keys(app, stored, account, verified=True)
    rows = [{"index": index, "path": key_path(account, index), "address": keys.address(account, index)}
            for index in range(count)]
    data = {"name": name, "account": account, "xpub": keys.account_xpub(account),
            "watch_only": stored.watch_only, "addresses": rows}

    def text(view: dict[str, Any]) -> str:
        width = max(len(row["path"]) for row in rows)
        lines = [f"Wallet {name}, account {account}" + (" (watch-only)" if stored.watch_only else "")]
        lines += [f"  {row['index']:>4}  {row['path']:<{width}}  {row['address']}" for row in view["addresses"]]
        return "\n".join(lines)

    emit(app, data, text)


@wallet.command("export")
@click.argument("name")
@click.option("--phrase", "show_phrase", is_flag=True,
              help="Show the recovery phrase instead: asks for the password, then for the wallet name "
                   "typed back; refused unless stdin and stdout are a terminal.")
@click.option("--yes-show-phrase", "phrase_anywhere", is_flag=True,
              help="With --phrase: skip the typed name and allow stdout that is not a terminal "
                   "(a pipe or file then holds the phrase in the clear). The password is still needed.")
@view_options
def export(app: AppContext, name: str, show_phrase: bool, phrase_anywhere: bool, account: int | None) -> None:
    """Print wallet NAME's account xpub (public: it reveals every address, never a key).

    `posctl wallet import-xpub OTHER XPUB` on another machine makes a watch-only copy. With
    --phrase it prints the recovery phrase instead, which controls the funds: see its help.
    """
    if phrase_anywhere and not show_phrase:
        raise click.UsageError("--yes-show-phrase only goes with --phrase")
    store = keystore(app)
    stored = store.load(name)
    if show_phrase:
        export_phrase(app, stored, phrase_anywhere)
        return
    account = stored.default_account if account is None else account
    xpub = public_keys(app, stored, account, verified=True).account_xpub(account)
    data = {"name": name, "account": account, "path": f"m/44'/1'/{account}'", "xpub": xpub,
            "watch_only": stored.watch_only}
    emit(app, data, lambda v: v["xpub"])


def export_phrase(app: AppContext, stored: WalletFile, anywhere: bool) -> None:
    """The recovery phrase, only after the password and, unless ``anywhere``, the name typed
    back at a terminal. Never logged: it goes to stdout once and into no error message."""
    name = stored.name
    if stored.watch_only:
        raise WatchOnlyWallet(name, "show a recovery phrase")
    terminal = at_terminal() and sys.stdout.isatty()
    if not anywhere and not terminal:
        raise fail(
            "the recovery phrase is shown only at a terminal (stdin and stdout): run it in one, "
            "or add --yes-show-phrase to send it to a pipe or file on purpose; nothing was shown"
        )
    unlocked = unlock(app, name, why=f"showing wallet '{name}''s recovery phrase needs its secret")
    if not anywhere:
        click.echo("Anyone who sees the recovery phrase controls this wallet's tokens.", err=True)
        confirm_by_typing(name, "show its recovery phrase")
    if not sys.stdout.isatty():
        click.echo(f"warning: writing wallet '{name}''s recovery phrase to a pipe or file: keep it secret", err=True)
    phrase = unlocked.mnemonic()
    data = {"name": name, "mnemonic": phrase, "passphrase": unlocked.has_passphrase()}

    def text(view: dict[str, Any]) -> str:
        lines = [f"Recovery phrase of wallet '{name}' ({len(phrase.split())} words):", "", format_phrase(phrase)]
        if view["passphrase"]:
            lines += ["", "Recovery also needs this wallet's BIP-39 passphrase (not shown)."]
        return "\n".join(lines)

    emit(app, data, text)


@wallet.command("rename")
@click.argument("old")
@click.argument("new")
@json_option
@pass_app
@handles_errors
def rename(app: AppContext, old: str, new: str) -> None:
    """Rename wallet OLD to NEW, with its slashing-protection record; never over an existing NEW.

    Asks for the password (the name is sealed together with the secret); a watch-only wallet
    needs none.
    """
    store = keystore(app)
    wallet_file = lifecycle.check_rename(store, old, new)
    password = None
    if not wallet_file.watch_only:
        password = read_password(app, prompt=f"Password for wallet '{old}'",
                                 why="the name is sealed with the secret, so a rename re-seals it")
    try:
        renamed = lifecycle.rename_wallet(store, old, new, password)
        warn_light_wallet(renamed)
        data = {"old": old, "name": new, "file": str(renamed.path),
                "address": renamed.address(renamed.default_account, 0)}
        emit(app, data, lambda v: f"Renamed wallet '{old}' to '{new}' ({v['file']}); address {v['address']}")
    except (KeyboardInterrupt, click.Abort):
        _report_interrupted_rename(store, old, new)
        raise


def _report_interrupted_rename(store: Keystore, old: str, new: str) -> None:
    """A Ctrl-C inside a rename: say where it stopped (see :mod:`wallet.lifecycle` for the order);
    returns only if nothing was changed (the generic line is then true)."""
    if store.exists(new) and store.exists(old):
        raise fail(f"interrupted in the middle of the rename: wallets '{old}' and '{new}' both hold the keys now "
                   f"(and the slashing-protection record, if there was one); `posctl wallet delete {old}` finishes "
                   "the rename")
    if store.exists(new):
        raise fail(f"interrupted as the rename finished: the wallet is now '{new}' ({store.path(new)})")


@wallet.command("passwd")
@click.argument("name")
@click.option("--new-password-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Read the new password from this file (else {NEW_PASSWORD_ENV}, else typed twice).")
@json_option
@pass_app
@handles_errors
def passwd(app: AppContext, name: str, new_password_file: Path | None) -> None:
    """Change wallet NAME's password: the current one, then the new one twice.

    The file is rewritten atomically (a crash leaves the old file or the new one) with a fresh
    salt and the scrypt strength of POSCTL_KDF (strong unless it says light).
    """
    store = keystore(app)
    if store.load(name).watch_only:
        raise WatchOnlyWallet(name, "have a password")
    kdf = kdf_params()
    unlocked = unlock(app, name, why=f"changing wallet '{name}''s password needs the current one")
    new_password = read_new_password(new_password_file)
    before = store.path(name).read_bytes()
    # the file is replaced atomically: after an interruption it holds the old password or the new
    with interrupts_reported_as(f"interrupted after the password of wallet '{name}' was changed: the NEW "
                                "password opens it now", when=lambda: store.path(name).read_bytes() != before):
        changed = store.change_password(unlocked, new_password, kdf=kdf)
        warn_if_light_kdf()
        data = {"name": name, "file": str(changed.path), "kdf": changed.kdf_label}
        emit(app, data, lambda v: f"Changed the password of wallet '{name}' ({v['file']}, {v['kdf']})")


@wallet.command("delete")
@click.argument("name")
@click.option("--yes", "-y", "skip_confirmation", is_flag=True,
              help="Delete without typing the name back (needed when stdin is not a terminal).")
@json_option
@pass_app
@handles_errors
def delete(app: AppContext, name: str, skip_confirmation: bool) -> None:
    """Delete wallet NAME's file, after the name is typed back (or --yes).

    Only its recovery phrase can bring it back. Its slashing-protection record is kept, so a
    validator recovered under the same name still refuses to sign twice for a height.
    """
    store = keystore(app)
    path = store.path(name)
    if not path.exists():
        raise WalletNotFound(f"no wallet named '{name}' in {store.directory}: list them with `posctl wallet list`")
    try:
        loaded: WalletFile | None = store.load(name)
    except WalletError:
        loaded = None  # a damaged file can still be deleted
    twins = store.same_keys(name) if loaded is not None else []
    if not skip_confirmation:
        if not at_terminal():
            raise fail(f"deleting wallet '{name}' needs a confirmation: run it in a terminal and type the "
                       "name, or pass --yes; nothing was deleted")
        if loaded is not None:
            click.echo(f"Wallet '{name}': address {loaded.address(loaded.default_account, 0)}"
                       + (" (watch-only)" if loaded.watch_only else ""), err=True)
        if twins:
            click.echo(f"Its keys are also in wallet(s) {', '.join(twins)}.", err=True)
        elif loaded is None or not loaded.watch_only:
            click.echo("Only its recovery phrase can bring it back.", err=True)
        confirm_by_typing(name, "delete it")
    with interrupts_reported_as(f"interrupted after wallet '{name}' was deleted ({path})",
                                when=lambda: not path.exists()):
        store.delete(name)
        data = {"name": name, "file": str(path), "deleted": True, "same_keys_as": twins}
        emit(app, data, lambda v: f"Deleted wallet '{name}' ({v['file']})")


# ---- submitting commands ---------------------------------------------------------------------


class Submission:
    """What every submitting command does, in the order that asks for a password last."""

    def __init__(self, app: AppContext, name: str, account: int, index: int) -> None:
        self.app = app
        self.name = name
        self.account = account
        self.index = index
        self.wallet = keystore(app).load(name)  # unknown or damaged wallet: fail first
        if self.wallet.watch_only:
            raise WatchOnlyWallet(name)
        self.address = public_address(self.wallet, account, index)
        self.backend = app.backend()  # no chain: fail before the password
        self.status = self.backend.status()
        self.chain_id: str = self.status["chain_id"]
        self.params = Params.from_dict(self.status["params"])

    def sign_and_submit(self, build: Callable[[bytes, str, int], Transaction], what: str) -> None:
        known = self.address
        if known is not None:
            self.confirm(known)  # before the password, when the sender's address is public
        unlocked = unlock(self.app, self.name)
        self.address = unlocked.address(self.account, self.index)
        if known is None:
            self.confirm(self.address)
        self.before_signing(unlocked)
        nonce = self.app.nonce if self.app.nonce is not None else self.backend.account(self.address)["next_nonce"]
        tx = build(unlocked.private_key(self.account, self.index), self.chain_id, nonce)
        self.before_release(tx)
        if self.app.sign_only is not None:
            self.write_signed(tx, what)
            return

        def text(view: dict[str, Any]) -> str:
            return "\n".join([
                f"Submitted {what} from {self.name} ({self.address}), nonce {view['tx']['nonce']}.",
                f"tx {view['tx_id']}",
                "It is pending until the next block: `posctl chain forge`, or a running node, includes it.",
            ])

        with interrupts_reported_as(may_have_been_submitted(tx.id_hex)):
            emit(self.app, self.backend.submit(tx), text)

    def write_signed(self, tx: Transaction, what: str) -> None:
        """``--out FILE``: the signed tx, not submitted; never overwrites a file. ``--out -``
        writes it to stdout (one line, nothing else there) and the note to stderr."""
        path = self.app.sign_only
        if path is None:  # pragma: no cover - only called with --out
            return
        to_stdout = str(path) == "-"
        if to_stdout:
            click.echo(tx.encode().decode("ascii"))
        else:
            try:
                with open(path, "xb") as handle:
                    handle.write(tx.encode())
            except FileExistsError:
                raise fail(f"{path} already exists: choose another --out file (posctl never overwrites one)") from None
        view = {"tx_id": tx.id_hex, "tx": tx_view(tx), "file": str(path), "submitted": False}
        lines = [
            f"Signed {what} from {self.name} ({self.address}), nonce {tx.nonce}: NOT submitted.",
            f"tx {tx.id_hex} written to {'stdout' if to_stdout else path}",
            submit_hint(self.app.home, "-" if to_stdout else str(path)),
        ]
        if to_stdout:
            click.echo("\n".join(lines), err=True)
            return
        emit(self.app, view, lambda _v: "\n".join(lines))

    def confirm(self, sender: str) -> None:
        """A person's last look before signing; ``send`` asks at a terminal."""

    def before_signing(self, unlocked: UnlockedWallet) -> None:
        """A last check that needs the address; ``propose`` checks eligibility here."""

    def before_release(self, tx: Transaction) -> None:
        """Last look at the signed tx before it is written or submitted (slashing protection)."""


def submit_hint(home: Path, file: str) -> str:
    """How to broadcast a signed tx file: ``chain submit`` always works; ``curl`` names the
    running node's real address (from its record), or says that none runs."""
    from ledger.node.record import find_running_node

    source = "-" if file == "-" else shlex.quote(file)
    record = find_running_node(home)
    if record is not None:
        where = f"curl -s -X POST --data-binary @{source} {record.url}/txs (the node running on this home)"
    else:
        where = "POST it to a node's /txs once one runs (`posctl node run`; no node runs on this home now)"
    return f"Submit it with `posctl chain submit {source}`, or {where}"


def key_options(name: str, account: int, index: int) -> str:
    """How a suggested command names the key in use: ``NAME`` and, when not 0, ``--account`` and
    ``--index`` (a hint naming the wallet alone staked from another key)."""
    return name + (f" --account {account}" if account else "") + (f" --index {index}" if index else "")


def require_eligible(submission: Submission, address: str, height: int) -> None:
    """``propose`` only makes sense for the next height and for a validator the draw counts: the
    ledger's own rule (``check_can_propose``) decides, from the account's status."""
    view = submission.backend.account(address)
    try:
        check_can_propose(view["status"], view["bonded"], submission.params, height, submission.status["height"] + 1)
    except InvalidProposal as exc:
        who = key_options(submission.name, submission.account, submission.index)
        raise fail(f"wallet '{submission.name}' ({address}): {exc}".replace("NAME", who)) from None


class TransferSubmission(Submission):
    """A transfer shows what is about to be signed and asks, when a person is at the terminal."""

    def __init__(self, app: AppContext, name: str, account: int, index: int, to: str, amount: int,
                 ask: bool) -> None:
        super().__init__(app, name, account, index)  # the sender is checked before the recipient
        self.recipient, self.recipient_name = resolve_account(app, to, "recipient")
        self.amount = amount
        self.ask = ask

    def confirm(self, sender: str) -> None:
        if not self.ask or not at_terminal():
            return
        to = f"{self.recipient} (wallet {self.recipient_name})" if self.recipient_name else self.recipient
        outcome = f"written to {self.app.sign_only}, not submitted" if self.app.sign_only else "submitted"
        click.echo("\n".join([
            "About to sign a transfer:",
            f"  from      {sender} (wallet {self.name}, {key_path(self.account, self.index)})",
            f"  to        {to}",
            f"  amount    {self.amount}",
            f"  chain id  {self.chain_id}",
            f"  then      {outcome}",
        ]), err=True)
        if not click.confirm("Sign it?", default=False, err=True):
            raise fail("not confirmed: nothing was signed or sent")


@wallet.command("send")
@click.argument("name")
@click.argument("to")
@click.argument("amount", type=AMOUNT)
@click.option("--yes", "-y", "skip_confirmation", is_flag=True,
              help="Sign without showing the transfer and asking first (asked only at a terminal).")
@submitting
def send(app: AppContext, name: str, to: str, amount: int, skip_confirmation: bool, account: int, index: int) -> None:
    """Transfer AMOUNT liquid tokens from wallet NAME to TO (an address or a wallet name).

    At a terminal it shows sender, recipient, amount and chain id and asks before signing;
    --yes, or stdin that is not a terminal (a script), skips the question.
    """
    submission = TransferSubmission(app, name, account, index, to, amount, ask=not skip_confirmation)
    recipient, recipient_name = submission.recipient, submission.recipient_name
    shown = f"{recipient} ({recipient_name})" if recipient_name else recipient
    submission.sign_and_submit(
        lambda key, chain_id, nonce: signing.build_transfer(key, chain_id, nonce, recipient, amount),
        f"transfer of {amount} to {shown}",
    )


@wallet.command("stake")
@click.argument("name")
@click.argument("amount", type=AMOUNT)
@submitting
def stake(app: AppContext, name: str, amount: int, account: int, index: int) -> None:
    """Bond AMOUNT liquid tokens of wallet NAME as validator stake."""
    submission = Submission(app, name, account, index)
    submission.sign_and_submit(
        lambda key, chain_id, nonce: signing.build_stake(key, chain_id, nonce, amount),
        f"stake of {amount}",
    )


@wallet.command("unstake")
@click.argument("name")
@click.argument("amount", type=AMOUNT)
@submitting
def unstake(app: AppContext, name: str, amount: int, account: int, index: int) -> None:
    """Start unbonding AMOUNT of wallet NAME's bonded stake (liquid again after the lock-up)."""
    submission = Submission(app, name, account, index)
    submission.sign_and_submit(
        lambda key, chain_id, nonce: signing.build_unstake(key, chain_id, nonce, amount),
        f"unstake of {amount} (released after {submission.params.unbonding_blocks} blocks)",
    )


class Proposal(Submission):
    """Checks eligibility before the password when the address is public, else after unlocking;
    consults the wallet's slashing protection before a signed proposal leaves the process."""

    def __init__(self, app: AppContext, name: str, account: int, index: int, height: int | None,
                 allow_equivocation: bool) -> None:
        super().__init__(app, name, account, index)
        self.height = self.status["height"] + 1 if height is None else height
        self.allow_equivocation = allow_equivocation

    def check_eligible_early(self) -> None:
        if self.address is not None:
            require_eligible(self, self.address, self.height)

    def before_signing(self, unlocked: UnlockedWallet) -> None:
        if public_address(self.wallet, self.account, self.index) is None:
            require_eligible(self, unlocked.address(self.account, self.index), self.height)

    def before_release(self, tx: Transaction) -> None:
        if isinstance(tx, Bpm):
            guard = SlashingProtection(self.app.wallets_dir, self.name)
            guard.guard(tx, allow_equivocation=self.allow_equivocation)


@wallet.command("propose")
@click.argument("name")
@click.option("--bpm", "bpm", type=BPM_VALUE, required=True, help="Heart rate to propose (the chain's bpm_min..bpm_max).")
@click.option("--height", "height", type=click.IntRange(min=1), default=None,
              help="Block height to propose for (default: the next block; no other is accepted).")
@click.option("--allow-equivocation", is_flag=True,
              help="Sign even a second, different proposal for a height (it will be slashed: for the attack lab).")
@submitting
def propose(app: AppContext, name: str, bpm: int, height: int | None, allow_equivocation: bool,
            account: int, index: int) -> None:
    """Propose a BPM reading from validator wallet NAME for the next block, with its VRF proof:
    its entry into that block's lottery."""
    proposal = Proposal(app, name, account, index, height, allow_equivocation)
    check_bpm(bpm, proposal.params)
    proposal.check_eligible_early()
    seed = bytes.fromhex(proposal.status["next_seed"])
    proposal.sign_and_submit(
        lambda key, chain_id, nonce: signing.build_bpm(key, chain_id, nonce, bpm, proposal.height, seed),
        f"BPM {bpm} for height {proposal.height}",
    )


@wallet.command("unjail")
@click.argument("name")
@submitting
def unjail(app: AppContext, name: str, account: int, index: int) -> None:
    """Bring validator wallet NAME back into the draw after a jailing for missed turns."""
    submission = Submission(app, name, account, index)
    submission.sign_and_submit(
        lambda key, chain_id, nonce: signing.build_unjail(key, chain_id, nonce),
        "unjail",
    )
