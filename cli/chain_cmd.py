"""``posctl chain``: create, inspect, forge and verify the chain.

Thin commands: they parse, ask the backend (the database directly, or a running node), and
hand the JSON-ready view to :mod:`cli.render`. ``init`` and ``verify`` need the database
itself; everything else works through a node as well.

Usage errors exit 2 (``--alloc`` not ``WHO=AMOUNT``, an amount that is not a whole number in
[1, 2^63), an unknown ``--param`` name or a non-integer value); everything the ledger or the
wallet refuses (an unknown wallet, a bad address checksum, parameters that break a chain rule)
exits 1 with one ``error: …`` line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cli import render
from cli.context import INTEGER_TEXT, AppContext, emit, fail, handles_errors, json_option, pass_app, resolve_account



# ---- parsing ---------------------------------------------------------------------------------


def _split_pair(value: str, param_hint: str, shape: str) -> tuple[str, str]:
    left, sep, right = value.partition("=")
    if not sep or not left.strip() or not right.strip():
        raise click.BadParameter(f"{value!r} is not {shape}", param_hint=param_hint)
    return left.strip(), right.strip()


def _parse_amounts(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[str, int]]:
    """``WHO=AMOUNT`` pairs; the amount must be a whole number of tokens in [1, 2^63)."""
    from ledger.errors import LedgerError
    from ledger.consensus.transactions import check_amount

    hint = param.opts[0] if param.opts else f"--{param.name}"
    parsed = []
    for value in values:
        who, text = _split_pair(value, hint, "WHO=AMOUNT (a wallet name or pos1 address, '=', a whole number)")
        if not INTEGER_TEXT.fullmatch(text):
            raise click.BadParameter(f"{value!r}: amount {text!r} is not a whole number of tokens", param_hint=hint)
        amount = int(text, 10)
        try:
            check_amount(amount, f"amount of {who}")
        except LedgerError as exc:
            raise click.BadParameter(f"{value!r}: {exc}", param_hint=hint) from None
        parsed.append((who, amount))
    return parsed


def _parse_params(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` chain parameters; the names are the ledger's own (``ledger.params.Params``)."""
    from ledger.params import Params

    known = Params.names()
    parsed: dict[str, Any] = {}
    for value in values:
        key, text = _split_pair(value, "--param", "KEY=VALUE")
        if key not in known:
            raise click.BadParameter(
                f"unknown parameter {key!r}: known parameters are {', '.join(known)}", param_hint="--param"
            )
        if key == "chain_id":
            parsed[key] = text
            continue
        if not INTEGER_TEXT.fullmatch(text):
            raise click.BadParameter(f"{key}={text!r}: the value must be a whole number", param_hint="--param")
        parsed[key] = int(text, 10)
    return parsed


def wallet_names(app: AppContext) -> dict[str, str]:
    """Address → wallet name for the local wallets, to label output; unreadable wallets are skipped."""
    from wallet.errors import WalletError
    from wallet.keystore import Keystore

    keystore = Keystore(app.wallets_dir)
    names: dict[str, str] = {}
    try:
        wallet_list = keystore.names()
    except OSError:
        return names
    for name in wallet_list:
        try:
            names[keystore.load(name).address(0, 0)] = name
        except (WalletError, OSError):
            continue
    return names


# ---- the group -------------------------------------------------------------------------------


@click.group()
def chain() -> None:
    """Create, inspect, forge and verify the chain."""


@chain.command("init")
@click.option("--chain-id", help="Chain id, e.g. posctl-local-1 (lowercase letters, digits, '-'); default: posctl-<random>.")
@click.option("--alloc", "allocs", multiple=True, callback=_parse_amounts, metavar="WHO=AMOUNT",
              help="Liquid genesis balance for a wallet name or pos1 address (repeatable).")
@click.option("--bond", "bonds", multiple=True, callback=_parse_amounts, metavar="WHO=AMOUNT",
              help="Bonded genesis stake, in addition to --alloc (repeatable; at least one needed).")
@click.option("--param", "params", multiple=True, callback=_parse_params, metavar="KEY=VALUE",
              help="Chain parameter: min_stake, unbonding_blocks, block_reward, max_block_txs, bpm_min, bpm_max, ...")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON genesis file {params, allocations, bonds[, timestamp]}; options add to it.")
@json_option
@pass_app
@handles_errors
def init(app: AppContext, chain_id: str | None, allocs: list[tuple[str, int]], bonds: list[tuple[str, int]],
         params: dict[str, Any], genesis_file: Path | None) -> None:
    """Create a new chain in the home directory (refuses to overwrite one)."""
    from cli.backend import require_no_node
    from ledger.chain.facade import Chain
    from ledger.chain.genesis_input import merge_genesis, read_genesis_file

    require_no_node(app.home, "create a chain")
    if chain_id is not None and params.get("chain_id", chain_id) != chain_id:
        raise click.UsageError("--chain-id and --param chain_id disagree: give one")
    base = read_genesis_file(genesis_file) if genesis_file is not None else {}
    config = merge_genesis(
        base, resolve=lambda who: resolve_account(app, who, "genesis account")[0], chain_id=chain_id, params=params,
        allocations=allocs, bonds=bonds,
    )

    with Chain.create(app.home, config) as created:
        genesis = created.block(0)
        totals = created.totals()
        view = {
            "chain_id": created.params.chain_id,
            "home": str(app.home),
            "height": 0,
            "genesis_hash": genesis.hash.hex(),
            "timestamp": config.timestamp,
            "params": created.params.to_dict(),
            "allocations": dict(sorted(config.allocations.items())),
            "bonds": dict(sorted(config.bonds.items())),
            "supply": totals.supply,
            "liquid": totals.liquid,
            "bonded": totals.bonded,
        }
    emit(app, view, lambda v: render.render_init(v, wallet_names(app)))


@chain.command("show")
@click.argument("ref", required=False, metavar="[HEIGHT|HASH]")
@click.option("--last", type=click.IntRange(min=1), metavar="N", help="The last N blocks, newest first.")
@json_option
@pass_app
@handles_errors
def show(app: AppContext, ref: str | None, last: int | None) -> None:
    """Show a block (default: the latest): header, lottery odds and winner, transactions."""
    if ref is not None and last is not None:
        raise click.UsageError("give either a HEIGHT|HASH or --last N, not both")
    backend = app.backend()
    if last is not None:
        blocks = backend.blocks_last(last)
        emit(app, blocks, lambda v: render.render_blocks(v, wallet_names(app)))
    else:
        block = backend.block(ref)
        emit(app, block, lambda v: render.render_block(v, wallet_names(app)))


@chain.command("tx")
@click.argument("tx_id", metavar="TXID")
@json_option
@pass_app
@handles_errors
def tx(app: AppContext, tx_id: str) -> None:
    """Where a transaction is (pending, or included at a height) and its fields."""
    from cli.backend import parse_tx_id

    parse_tx_id(tx_id)  # a malformed id is refused before any database is opened
    view = app.backend().tx(tx_id)
    emit(app, view, lambda v: render.render_tx(v, wallet_names(app)))


@chain.command("status")
@json_option
@pass_app
@handles_errors
def status(app: AppContext) -> None:
    """Chain id, height, tip, mempool size, validators, supply and total bonded."""
    emit(app, app.backend().status(), render.render_status)


@chain.command("validators")
@json_option
@pass_app
@handles_errors
def validators(app: AppContext) -> None:
    """Bonded stake, share, blocks won, and expected versus actual share of each validator."""
    backend = app.backend()
    rows = backend.validators()
    height = None if app.json_output else backend.status()["height"]
    emit(app, rows, lambda v: render.render_validators(v, wallet_names(app), height))


@chain.command("forge")
@json_option
@pass_app
@handles_errors
def forge(app: AppContext) -> None:
    """Forge one block now from the pending txs, or say why there is none (exit 0 either way)."""
    emit(app, app.backend().forge(), lambda v: render.render_forge(v, wallet_names(app)))


@chain.command("evidence")
@click.argument("file_a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("file_b", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@pass_app
@handles_errors
def evidence(app: AppContext, file_a: Path, file_b: Path) -> None:
    """Report equivocation: two signed proposals of one validator for one height, as
    `posctl wallet propose --out FILE` writes them. The next block slashes and tombstones it."""
    from ledger.consensus.evidence import make_evidence
    from ledger.consensus.transactions import Transaction
    from ledger.errors import LedgerError

    proposals = []
    for path in (file_a, file_b):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise fail(f"cannot read {path}: {exc.strerror}") from None
        try:
            proposals.append(Transaction.decode(raw.strip()))
        except LedgerError as exc:
            raise fail(f"{path} is not a signed transaction file: {exc}") from None
    view = app.backend().submit_evidence(make_evidence(*proposals))

    def text(v: dict[str, Any]) -> str:
        ev = v["evidence"]
        return "\n".join([
            f"Evidence {v['evidence_id']} accepted: {ev['validator']} signed two proposals for height {ev['height']}.",
            "The next block slashes it and tombstones it (see `posctl chain validators`).",
        ])

    emit(app, view, text)


@chain.command("verify")
@json_option
@pass_app
@handles_errors
def verify(app: AppContext) -> None:
    """Replay the whole chain from genesis and check every block; exit 1 at the first bad height."""
    from cli.backend import require_no_node
    from ledger.chain.facade import Chain
    from ledger.errors import VerificationError

    require_no_node(app.home, "verify the chain (verify replays the database itself)")
    with Chain.open(app.home) as opened:
        total = opened.height
        try:
            if sys.stderr.isatty():
                with click.progressbar(length=max(total, 1), label=f"replaying blocks 1..{total}",
                                       file=sys.stderr, show_pos=True) as bar:
                    report = opened.verify(lambda height, _top: bar.update(1))
            else:  # no bar when stderr is a file or pipe: an error stays the only line there
                report = opened.verify()
        except VerificationError as exc:
            raise fail(_verification_message(exc)) from None
    view = {"ok": True, "height": report.height, "blocks": report.blocks, "txs": report.txs,
            "seconds": round(report.seconds, 3)}
    emit(app, view, render.render_verify)


def _verification_message(exc: "Exception") -> str:
    """One line naming the first bad height (the ledger's message minus a repeated prefix)."""
    message = str(exc)
    height = getattr(exc, "height", None)
    if height is None:
        return f"chain verification failed: {message}"
    prefix = f"height {height}: "
    if message.startswith(prefix):
        message = message[len(prefix):]
    return f"chain verification failed at height {height}: {message}"
