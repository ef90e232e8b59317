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

import contextlib
import itertools
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import click

from cli import render
from cli.context import (INTEGER_TEXT, AppContext, check_home_usable, deferred_where_unsafe, drop_deferred_signal,
                         echo_error, echo_json_streaming, emit, fail, handles_errors, interrupts_reported_as,
                         json_option, may_have_been_submitted, pass_app, read_bounded, resolve_account)

MAX_TX_FILE_BYTES = 1024 * 1024
"""Far above any signed tx (the decoder's limit is 64 KiB); a larger file was named by mistake."""



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
    """Address → wallet name for the local wallets, to label output; unreadable wallets are skipped.
    Where two wallets hold one address (a watch-only copy of a wallet, a phrase recovered twice),
    the one that can sign names it, then the first in name order: a watch-only ``cold`` made from
    bob's xpub labelled bob's blocks and txs as cold's."""
    from wallet.errors import WalletError
    from wallet.keystore import Keystore

    keystore = Keystore(app.wallets_dir)
    names: dict[str, str] = {}
    watch_only: set[str] = set()
    try:
        wallet_list = keystore.names()
    except OSError:
        return names
    for name in wallet_list:
        try:
            wallet = keystore.load_verified(name)
            address = wallet.address(0, 0)
        except (WalletError, OSError):
            continue
        holder = names.get(address)
        if holder is None or (holder in watch_only and not wallet.watch_only):
            names[address] = name
        if wallet.watch_only:
            watch_only.add(name)
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
    from ledger.chain.genesis_build import PARALLEL_THRESHOLD, GenesisWorkers
    from ledger.chain.genesis_file import scan_genesis_file
    from ledger.chain.genesis_input import genesis_from_file, merge_genesis

    require_no_node(app.home, "create a chain")
    if chain_id is not None and params.get("chain_id", chain_id) != chain_id:
        raise click.UsageError("--chain-id and --param chain_id disagree: give one")
    # A genesis file is streamed (a million allocations never held at once): scanned first, so
    # everything but its allocations is checked before anything is written.
    scanned = scan_genesis_file(genesis_file) if genesis_file is not None else None
    count = (scanned.allocation_count if scanned is not None else 0) + len(allocs)
    resolve = lambda who: resolve_account(app, who, "genesis account")[0]  # noqa: E731
    created: Chain | None = None
    # Interrupted before the chain is whole, `Chain.create` removes what it wrote ("nothing was
    # changed" is true); from the moment it returns, the chain is there to stay.
    with interrupts_reported_as(f"interrupted after the chain was created in {app.home}: it is complete; "
                                "`posctl chain status` shows it", when=lambda: created is not None):
        # a large genesis shows a bar: its allocations are checked, then encoded and hashed
        with (_progress(2 * count, f"genesis of {count:,} allocations") if count >= PARALLEL_THRESHOLD
              else contextlib.nullcontext(None)) as bar, GenesisWorkers(bar.update if bar else None) as workers:
            if scanned is not None:
                build = genesis_from_file(scanned, resolve=resolve, chain_id=chain_id, params=params,
                                          allocations=allocs, bonds=bonds, workers=workers)
                config = build.rest
                created = Chain.create_from_file(app.home, build)
            else:
                config = merge_genesis({}, resolve=resolve, chain_id=chain_id, params=params, allocations=allocs,
                                       bonds=bonds, workers=workers)
                created = Chain.create(app.home, config, workers)
        _show_created(app, created, config, count)


def _show_created(app: AppContext, created: "Chain", config: Any, count: int) -> None:
    """Print the new chain's summary (with --json every allocation, streamed from the store)."""
    with created:
        genesis = created.block(0)
        totals = created.totals()
        view = {
            "chain_id": created.params.chain_id,
            "home": str(app.home),
            "height": 0,
            "genesis_hash": genesis.hash.hex(),
            "timestamp": config.timestamp,
            "params": created.params.to_dict(),
            "allocation_count": count,
            "bonds": dict(sorted(config.bonds.items())),
            "supply": totals.supply,
            "liquid": totals.liquid,
            "bonded": totals.bonded,
        }
        if app.json_output:  # every allocation, streamed from the stored genesis as it is printed
            echo_json_streaming(view, "allocations", created.genesis_allocations())
            return
        view["allocations"] = dict(itertools.islice(created.genesis_allocations(), render.INIT_ROWS))
    emit(app, view, lambda v: render.render_init(v, wallet_names(app)))


_NEGATIVE = re.compile(r"-[0-9]+")


@chain.command("show", context_settings={"ignore_unknown_options": True})
@click.argument("ref", required=False, metavar="[HEIGHT|HASH]")
@click.option("--last", type=click.IntRange(min=1), metavar="N", help="The last N blocks, newest first.")
@json_option
@pass_app
@handles_errors
def show(app: AppContext, ref: str | None, last: int | None) -> None:
    """Show a block (default: the latest): header, lottery odds and winner, transactions.

    HASH may be a unique prefix of 8 or more hex digits."""
    if ref is not None and ref.startswith("-"):
        if _NEGATIVE.fullmatch(ref):
            raise fail(f"no block at height {ref}: heights start at 0; for the newest blocks use --last N")
        raise click.NoSuchOption(ref)
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


@chain.command("account")
@click.argument("who", metavar="ADDRESS|WALLET")
@json_option
@pass_app
@handles_errors
def account(app: AppContext, who: str) -> None:
    """Any account: liquid, bonded, unbonding (with release heights), nonce and pending txs."""
    address, name = resolve_account(app, who)
    backend = app.backend()
    view = backend.account(address)
    if app.json_output:
        emit(app, view)
        return
    height = backend.status()["height"]
    emit(app, view, lambda v: render.render_account({**v, "height": height}, name or wallet_names(app).get(address)))


def _history_cursor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    from ledger.chain.results import parse_history_cursor

    if value is None:
        return None
    try:
        return parse_history_cursor(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@chain.command("history")
@click.argument("who", metavar="ADDRESS|WALLET")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, metavar="N",
              help="How many lines, newest first (at most 100).")
@click.option("--before", callback=_history_cursor, default=None,
              metavar="HEIGHT[:INDEX]", help="The next page: only txs included before this place (a full page "
              "ends with the command for the next).")
@json_option
@pass_app
@handles_errors
def history(app: AppContext, who: str, limit: int, before: tuple[int, int] | None) -> None:
    """The txs an address sent or received, newest first: pending ones, then each block's."""
    address, _ = resolve_account(app, who)
    backend = app.backend()
    rows = backend.history(address, limit, before)
    included_before = None
    if before is None and len(rows) >= limit and rows[-1]["status"] == "pending":
        # pending txs filled the page: the included ones start below the next block
        included_before = backend.status()["height"] + 1
    emit(app, rows, lambda v: render.render_history(address, v, wallet_names(app), limit, who, included_before))


@chain.command("mempool")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, metavar="N",
              help="How many pending txs to list, in arrival order (the count covers them all).")
@json_option
@pass_app
@handles_errors
def mempool(app: AppContext, limit: int) -> None:
    """The pending txs, in arrival order: id, kind, sender, nonce, size."""
    emit(app, app.backend().mempool(limit), lambda v: render.render_mempool(v, wallet_names(app)))


def read_signed_tx(path: Path) -> "Any":
    """A signed tx file as `wallet … --out FILE` writes it ('-' is stdin); a one-line error if not."""
    from ledger.consensus.transactions import Transaction
    from ledger.errors import LedgerError

    raw = read_bounded(path, MAX_TX_FILE_BYTES, "a signed transaction file", dash_is_stdin=True)
    try:
        return Transaction.decode(raw.strip())
    except LedgerError as exc:
        raise fail(f"{path} is not a signed transaction file (as `posctl wallet … --out FILE` writes): {exc}") from None


@chain.command("submit")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
                metavar="FILE...")
@json_option
@pass_app
@handles_errors
def submit(app: AppContext, files: tuple[Path, ...]) -> None:
    """Broadcast signed tx files (what `wallet … --out FILE` writes; '-' reads stdin), through a
    running node or directly. One line per file: its tx id, or why it was refused; exit 1 if any was."""
    from ledger.errors import LedgerError

    backend = None
    results: list[dict[str, Any]] = []
    for path in files:
        try:
            tx = read_signed_tx(path)
            backend = backend or app.backend()
            with interrupts_reported_as(_submit_interrupted(tx.id_hex, path, results)):
                results.append({"file": str(path), "tx_id": backend.submit(tx)["tx_id"]})
        except click.ClickException as exc:
            results.append({"file": str(path), "error": exc.format_message()})
        except LedgerError as exc:
            if backend is None:  # no chain to submit to: one error for the whole command
                raise
            results.append({"file": str(path), "error": f"{path}: {exc}"})
    for row in results:
        if "error" in row:
            echo_error(row["error"])  # one line each, whatever the file's name holds
    if app.json_output:
        emit(app, results)
    else:
        for row in results:
            if "tx_id" in row:
                click.echo(f"{row['file']}: {row['tx_id']}")
    if any("error" in row for row in results):
        sys.exit(1)


def _submit_interrupted(tx_id: str, path: Path, results: list[dict[str, Any]]) -> str:
    """What a Ctrl-C during ``chain submit`` of ``path`` means: this tx may be in, and the files
    before it were answered (their results are not printed yet, so they are named here)."""
    done = [row for row in results if "tx_id" in row]
    before = f"; accepted before it: {', '.join(row['file'] for row in done)}" if done else ""
    return f"{path}: {may_have_been_submitted(tx_id)}{before}"


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
    from cli.backend import DirectBackend

    backend = app.backend()
    if not isinstance(backend, DirectBackend):
        emit(app, backend.forge(), lambda v: render.render_forge(v, wallet_names(app)))
        return
    # a signal during rendering or while LevelDB closes (it may wait for a compaction) must not
    # be reported as "nothing was changed" either: the whole rest of the command is covered
    with _honest_interrupts(backend.chain):
        view = backend.chain.forge().to_view()
        emit(app, view, lambda v: render.render_forge(v, wallet_names(app)))
        app.close()


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
        raw = read_bounded(path, MAX_TX_FILE_BYTES, "a signed transaction file")
        try:
            proposals.append(Transaction.decode(raw.strip()))
        except LedgerError as exc:
            raise fail(f"{path} is not a signed transaction file: {exc}") from None
    evidence = make_evidence(*proposals)
    backend = app.backend()

    def text(v: dict[str, Any]) -> str:
        ev = v["evidence"]
        return "\n".join([
            f"Evidence {v['evidence_id']} accepted: {ev['validator']} signed two proposals for height {ev['height']}.",
            "The next block slashes it and tombstones it (see `posctl chain validators`).",
        ])

    with interrupts_reported_as(
        f"interrupted after evidence {evidence.id_hex} was sent: it may have been accepted; the next block's "
        "evidence count (`posctl chain show`) or `posctl chain validators` shows whether the validator was slashed"
    ):
        emit(app, backend.submit_evidence(evidence), text)


@chain.command("verify")
@click.option("--last", type=click.IntRange(min=1), metavar="N",
              help="Check only the newest N blocks (links, indexes, signatures, VRF proofs): fast, no replay.")
@json_option
@pass_app
@handles_errors
def verify(app: AppContext, last: int | None) -> None:
    """Replay the whole chain from genesis and check every block; exit 1 at the first bad height."""
    from cli.backend import require_no_node
    from ledger.chain.facade import Chain
    from ledger.errors import VerificationError

    require_no_node(app.home, "verify the chain (verify replays the database itself)")
    with Chain.open(app.home) as opened:
        total = opened.height
        try:
            if last is not None:
                report = opened.verify_last(last)
            elif sys.stderr.isatty():
                with click.progressbar(length=max(total, 1), label=f"replaying blocks 1..{total}",
                                       file=sys.stderr, show_pos=True) as bar:
                    report = opened.verify(lambda height, _top: bar.update(1))
            else:  # no bar when stderr is a file or pipe: an error stays the only line there
                report = opened.verify()
        except VerificationError as exc:
            raise fail(_verification_message(exc)) from None
    view = {"ok": True, "height": report.height, "blocks": report.blocks, "txs": report.txs,
            "seconds": round(report.seconds, 3), "address_index": report.address_index,
            "mode": "full" if last is None else "last"}
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


# ---- faults: repair, export, import, backup ----------------------------------------------------


class _Interrupted(BaseException):
    """SIGINT or SIGTERM during a direct forge; caught to say whether the block was committed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _honest_interrupts(chain_: Any) -> Iterator[None]:
    """Forge in this process, and if interrupted say truthfully whether the block committed.

    SIGINT and SIGTERM raise :class:`_Interrupted` inside the block; the commit is one LevelDB
    write in C, and a signal arriving during it is handled when it returns, so the height on
    disk, read afterwards, is the whole truth. Exit status 128 + the signal number."""
    import signal

    before = chain_.tip.height

    def handler(signum: int, frame: Any) -> None:
        if not deferred_where_unsafe(signum, frame):
            raise _Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Interrupted as exc:
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)  # the report below must not be cut short too
        name = signal.Signals(exc.signum).name
        try:
            height = chain_.committed_height()
        except Exception:  # closed, or the interrupt came while it was closing
            from ledger.chain.facade import Chain

            with Chain.open(chain_.home) as reopened:
                height = reopened.committed_height()
        if height > before:
            message = (f"interrupted by {name} after block {height} was committed: the chain is at height "
                       f"{height} (see `posctl chain show {height}`)")
        else:
            message = (f"interrupted by {name} before a block was committed: nothing was changed, pending txs "
                       "are still pending")
        error = fail(message)
        error.exit_code = 128 + exc.signum
        raise error from None
    finally:
        drop_deferred_signal()
        for signum, old in previous.items():
            signal.signal(signum, old)


@chain.command("repair")
@json_option
@pass_app
@handles_errors
def repair(app: AppContext) -> None:
    """Repair a damaged chain database: copy it aside, run LevelDB's repair, then verify it all.

    Exits 0 only when the repaired chain replays from genesis; says what was recovered
    (height, txs) and what was lost (pending txs)."""
    from cli.backend import require_no_node
    from ledger.chain.repair import repair_chain, repair_copies

    require_no_node(app.home, "repair the chain")
    if sys.stderr.isatty() and not app.json_output:
        click.echo("copying the chain aside, then repairing and verifying it...", err=True)
    earlier = repair_copies(app.home)
    try:
        report = repair_chain(app.home)
    except (KeyboardInterrupt, click.Abort):
        copies = sorted(repair_copies(app.home) - earlier)
        if not copies:  # interrupted before (or while) the copy was made: the database is untouched
            raise
        raise fail(f"interrupted during the repair: the database as it was before is kept at {copies[-1]}; "
                   "run `posctl chain repair` again (it starts from the database as it is now)") from None
    view = report.to_view()
    if app.json_output:
        emit(app, view)
    if not report.ok:
        where = ("the chain is back as it was before the repair (LevelDB's attempt was discarded)" if report.restored
                 else f"{'; '.join(report.notes)}: the original is kept at {report.backup}")
        raise fail(f"{report.error}; {where}, and repair cannot recover it: restore the chain from a backup (a "
                   "`chain backup` directory as --home, or `posctl chain import FILE` into a new --home)")
    if not app.json_output:
        lost = view["pending_lost"]
        lost_text = "unknown" if lost is None else str(lost)
        click.echo(
            f"repaired and verified: heights 0..{report.height} ({report.blocks} blocks, {report.txs} txs), "
            f"{report.pending} pending txs kept, {lost_text} pending txs lost; the original is kept at {report.backup}"
        )
        for note in report.notes:
            click.echo(f"  {note}")


def _progress(length: int, label: str) -> Any:
    """A progress bar on a terminal's stderr; nothing when stderr is a file or a pipe."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    return click.progressbar(length=max(length, 1), label=label, file=sys.stderr, show_pos=True)


@chain.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@json_option
@pass_app
@handles_errors
def export(app: AppContext, file: Path) -> None:
    """Write genesis and every block, canonical and streamed, to FILE ('-' for stdout)."""
    import os

    from cli.backend import require_no_node

    require_no_node(app.home, "export the chain (or use `posctl chain backup DIR`, which works while it runs)")
    to_stdout = str(file) == "-" or _is_stdout(file)
    target = Path(os.path.realpath(file))  # through a symlink: the link stays, its target is replaced
    problem = None if to_stdout else _not_replaceable_by_an_export(target)
    if problem is not None:
        raise fail(f"{file} {problem}: choose another file (an export replaces only an empty file or an earlier "
                   "export); nothing was written")
    before = None if to_stdout else _file_identity(target)
    with interrupts_reported_as(f"interrupted after the export was written to {file}: it is complete",
                                when=lambda: not to_stdout and _file_identity(target) != before):
        _export_to(app, file, target, to_stdout)


def _export_to(app: AppContext, file: Path, target: Path, to_stdout: bool) -> None:
    import os

    from ledger.chain.archive import export_chain
    from ledger.chain.facade import Chain
    from ledger.storage.files import fsync_directory

    with Chain.open(app.home) as opened:
        with _progress(opened.height + 1, f"exporting blocks 0..{opened.height}") as bar:
            step = None if bar is None else (lambda _h, _t: bar.update(1))
            if to_stdout:
                report = export_chain(opened, sys.stdout.buffer, step)
                sys.stdout.buffer.flush()
                return
            try:
                if target.exists() and not target.is_file():
                    # a device or a named pipe: stream into it; renaming a file over it would
                    # replace the device itself (as root, `chain export /dev/full` once did)
                    with open(target, "wb") as out:
                        report = export_chain(opened, out, step)
                else:
                    partial = target.with_name(target.name + ".partial")
                    try:
                        with open(partial, "wb") as out:
                            report = export_chain(opened, out, step)
                            out.flush()
                            os.fsync(out.fileno())
                        os.replace(partial, target)
                        with contextlib.suppress(OSError):  # the rename too, before "exported"
                            fsync_directory(target.parent)
                    except BaseException:
                        partial.unlink(missing_ok=True)
                        raise
            except OSError as exc:
                raise fail(f"cannot write the export to {file}: {exc.strerror or exc}") from None
    view = {"file": str(file), "height": report.height, "blocks": report.blocks, "txs": report.txs,
            "bytes": report.bytes}
    emit(app, view, lambda v: f"exported heights 0..{v['height']} ({v['blocks']} blocks, {v['txs']} txs, "
                              f"{v['bytes']} bytes) to {v['file']}")


def _not_replaceable_by_an_export(target: Path) -> str | None:
    """Why ``target`` must not be replaced by an export, or None: it may be if absent, not a
    regular file (streamed into), empty, or an earlier export. Why: an export given the path of
    a wallet file or of a file inside the chain's own database (`chain/CURRENT`) replaced it
    and said "exported" — the wallet gone, the chain unopenable."""
    import json

    from ledger.chain.archive import EXPORT_FORMAT

    import stat

    try:
        found = target.stat()
    except OSError:  # absent, or a path nothing can be written at (a name too long): the write says why
        return None
    if not stat.S_ISREG(found.st_mode) or found.st_size == 0:
        return None
    try:
        with open(target, "rb") as handle:
            first = handle.readline(4096)
    except OSError as exc:
        return f"exists and cannot be read to check that it is an earlier export ({exc.strerror or exc})"
    try:
        header = json.loads(first)
    except (ValueError, RecursionError):
        header = None
    if isinstance(header, dict) and header.get("format") == EXPORT_FORMAT:
        return None
    return "exists and is not a posctl chain export"


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, None if absent: a rename over it gives another inode."""
    import os

    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _is_stdout(path: Path) -> bool:
    """Whether ``path`` names this process's stdout (``/dev/stdout``, ``/proc/self/fd/1``)."""
    import os

    try:
        named, out = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return (named.st_dev, named.st_ino) == (out.st_dev, out.st_ino)


@chain.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@json_option
@pass_app
@handles_errors
def import_(app: AppContext, file: Path) -> None:
    """Replay an export FILE into a home with no chain, verifying every block (all or nothing)."""
    from cli.backend import require_no_node
    from ledger.chain.facade import Chain

    require_no_node(app.home, "import a chain")
    check_home_usable(app.home)  # fails before the file is read, creating nothing: the import makes the home
    try:
        handle = sys.stdin.buffer if str(file) == "-" else open(file, "rb")
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}: give the path of a file `posctl chain export` wrote") from None
    # the chain moves into the home only once the whole file verified; it was not there before
    with interrupts_reported_as(f"interrupted after the chain was imported and verified into {app.home}: "
                                "`posctl chain status` shows it", when=lambda: Chain.exists(app.home)):
        _import_from(app, file, handle)


def _import_from(app: AppContext, file: Path, handle: Any) -> None:
    from ledger.chain.archive import import_chain, read_header

    try:
        height = None
        if handle.seekable():
            height = read_header(handle)["height"]
            handle.seek(0)
        label = "importing blocks" if height is None else f"importing blocks 0..{height}"
        with _progress(height + 1 if height is not None else 0, label) as bar:
            step = None if bar is None else (lambda _h, _t: bar.update(1))
            report = import_chain(app.home, handle, step)
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    view = {"home": str(app.home), "height": report.height, "blocks": report.blocks, "txs": report.txs}
    emit(app, view, lambda v: f"imported and verified heights 0..{v['height']} ({v['blocks']} blocks, "
                              f"{v['txs']} txs) into {v['home']}")


@chain.command("backup")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@json_option
@pass_app
@handles_errors
def backup(app: AppContext, directory: Path) -> None:
    """Copy a consistent snapshot of the chain into DIRECTORY, a new home (through the node
    while one runs). Wallets are not copied: back up the wallets directory separately."""
    from cli.backend import DirectBackend
    from ledger.chain.facade import Chain

    target = directory.expanduser().resolve()
    backend = app.backend()
    if isinstance(backend, DirectBackend):  # the target must be new or empty, so a chain there is ours
        interrupted = interrupts_reported_as(f"interrupted after the backup was written to {target}: check it "
                                             f"with `posctl --home {target} chain verify`",
                                             when=lambda: Chain.exists(target))
    else:
        interrupted = interrupts_reported_as(f"interrupted while the node writes the backup to {target}: it goes "
                                             f"on without this command; `posctl --home {target} chain verify` "
                                             "checks it once it is there")
    with interrupted:
        view = backend.backup(str(target))
        emit(app, view, lambda v: f"backed up heights 0..{v['height']} (tip {v['tip'][:16]}, {v['keys']} keys) to "
                                  f"{v['backup']}: check it with `posctl --home {v['backup']} chain verify`")
