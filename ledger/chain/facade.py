"""The chain facade: what the CLI and the node call, and the one place that commits blocks.

``Chain.open`` reads the tip record and the parameters and nothing else, so opening costs the
same at height 10 and at height 10 million, with ten genesis accounts or a million. ``forge`` commits a block, its indexes, the state changes, the
mempool removals and the new tip in **one** synced atomic batch: after a crash the database
holds either all of the block or none of it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ledger.crypto.address import parse_address
from ledger.storage import chaindb, schema
from ledger.consensus import state
from ledger.consensus.blocks import Block
from ledger.errors import (
    AddressIndexMissing,
    AmbiguousReference,
    ChainExists,
    DatabaseCorrupted,
    DatabaseError,
    EncodingError,
    InvalidBlock,
    InvalidReference,
    NotFound,
    VerificationError,
)
from ledger.chain.forger import Candidate, build_block
from ledger.consensus.genesis import GenesisConfig
from ledger.chain.genesis_build import GenesisBuild, GenesisWorkers
from ledger.chain.genesis_file import GenesisFileBuild, stored_allocations
from ledger.chain.mempool import Admission, Mempool
from ledger.params import Params
from ledger.consensus.state import WorkingState
from ledger.storage.files import holding_directory, remove_directory, sweep_removal
from ledger.storage.store import REPAIR_HINT, KeyValueStore, LevelDBStore, holds_leveldb_files
from ledger.consensus.transactions import Transaction, TxId
from ledger.consensus.evidence import Evidence
from ledger.consensus.fork import next_seed, state_transition
from ledger.chain.verify import ProgressCallback, VerifyReport, check_recent_blocks, verify_chain, verify_recent
from ledger.chain import views
from ledger.chain.results import (
    AccountInfo,
    ChainStatus,
    HistoryEntry,
    MempoolInfo,
    PendingTx,
    TxStatus,
    ValidatorRow,
)

CHAIN_DIRNAME = "chain"
"""The LevelDB directory inside a posctl home."""

GENESIS_PART_BYTES = 4 * 1024 * 1024
"""Bytes of genesis entries written per part: LevelDB's write buffer, so a part costs no more
than one memtable (a million accounts: 94 MB of anonymous memory at the peak with 4 MB parts,
134 MB with 16 MB parts; 2 MB parts gain 10 MB and cost a second)."""


_HEIGHT = re.compile(r"[0-9]{1,19}")
"""A height as typed: ASCII digits only (``str.isdigit`` also accepts '²' and '١')."""

_HEX = re.compile(r"[0-9a-f]+")

MIN_HASH_PREFIX = 8
"""Hex digits a block hash prefix needs: fewer would match many blocks on a long chain."""

AMBIGUOUS_SHOWN = 3
"""Matching hashes an ambiguous prefix's error names (the scan stops after one more)."""

INDEX_MISSING_HINT = (
    "this chain was created before posctl kept an address index, so it has no history: rebuild it "
    "with `posctl chain export FILE` and `posctl --home NEW_HOME chain import FILE` (import indexes every block)"
)


@dataclass
class ForgeResult:
    """A new block, or why there is none; plus every tx evicted on the way, with its reason."""

    block: Block | None
    reason: str | None
    evicted: list[tuple[str, str]]

    def to_view(self) -> dict[str, Any]:
        if self.block is None:
            return {"forged": False, "reason": self.reason, "evicted": self._evicted_view()}
        out = views.block_view(self.block)
        out["forged"] = True
        out["evicted"] = self._evicted_view()
        return out

    def _evicted_view(self) -> list[dict[str, str]]:
        return [{"id": tx_id, "reason": reason} for tx_id, reason in self.evicted]


def ensure_home(home: Path) -> None:
    """Create the home directory 0700, turning OS errors into one actionable message."""
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create home directory {home}: {exc.strerror}: choose another with --home"
        ) from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise DatabaseError(f"home directory {home} is not writable: choose another with --home")


@contextlib.contextmanager
def home_made_for(home: Path) -> Iterator[None]:
    """:func:`ensure_home` for the block inside, and if that fails (refused, interrupted) the
    directories made for it removed again: a refused `chain import` left its home (and the
    home's missing parents) behind, empty. Only directories that were missing, innermost first,
    and only while empty (``rmdir``): never one that was there before, nor one another process
    put a file in."""
    missing = [directory for directory in (home, *home.parents) if not directory.exists()]
    try:
        ensure_home(home)
        yield
    except BaseException:
        for directory in missing:
            try:
                directory.rmdir()
            except OSError:  # not empty, or gone: its parents are not ours to remove either
                break
        raise


def _delete_everything(store: KeyValueStore, part: int = 50_000) -> None:
    """Delete every entry, a part at a time (an unfinished million-account genesis), in one pass:
    the scan reads a snapshot, and starting it again after each part would step over every
    deletion made so far."""
    keys: list[bytes] = []
    for key, _ in store.iterate(b""):
        keys.append(key)
        if len(keys) >= part:
            store.write(dict.fromkeys(keys))
            keys = []
    if keys:
        store.write(dict.fromkeys(keys))


IMPORT_SCRATCH = ".import-in-progress"
"""A scratch home inside the target home of `chain import`; the imported chain is renamed into
place from it. Only a killed import leaves it behind: the next import or `chain init` (which
hold the home, so no import is running) deletes it."""

CREATING_ELSEWHERE = ("another posctl command is creating a chain in {home} right now (`chain init` or `chain "
                      "import`): wait for it to finish, then see `posctl chain status`")


class Chain:
    """One open chain. Not thread-safe: the node serialises calls with a lock."""

    def __init__(self, store: KeyValueStore, home: Path | None = None) -> None:
        self.store = store
        self.home = home
        # The tip and the parameters are all opening needs. Both are small records written by
        # genesis (the parameters as the ``params`` state entry, which the state root
        # commits to), so opening never touches the genesis record, whose allocations grow with
        # the chain's accounts (50 MB at a million): it stays for ``verify`` and ``chain show 0``.
        raw_tip = store.get(schema.TIP_KEY)
        if raw_tip is None:
            damaged = store.get(schema.make_block_key(1)) is not None
            store.close()
            if damaged:
                raise DatabaseCorrupted(f"the chain database has blocks but no tip record: it is damaged: {REPAIR_HINT}")
            raise DatabaseError("the chain database has no tip: it was never initialised completely "
                                "(an interrupted `posctl chain init`?): run `posctl chain init` again, it starts over")
        try:
            self.tip, self._muhash = chaindb.decode_tip(raw_tip)
            self.params = state.get_params(self._state_view())
        except (EncodingError, InvalidBlock) as exc:
            store.close()
            raise DatabaseError(f"the chain database is damaged (tip record): {exc}") from None
        self.mempool = Mempool(store, self.params, lambda: self.tip)

    # ---- lifecycle -------------------------------------------------------------------------

    @staticmethod
    def exists(home: Path) -> bool:
        return (home / CHAIN_DIRNAME / "CURRENT").exists()

    @classmethod
    def open(cls, home: Path) -> "Chain":
        return cls(LevelDBStore.open(home / CHAIN_DIRNAME), home)

    @classmethod
    def create(cls, home: Path, config: GenesisConfig, workers: GenesisWorkers | None = None) -> "Chain":
        """Write genesis into a new database; refuses to touch an existing chain.

        An ``init`` killed half-way leaves genesis entries without a tip: this starts over,
        deleting them first, so a second try with another genesis inherits nothing. A database
        with blocks but no tip is damaged, not unfinished, and is refused.
        """
        return cls._create(home, lambda store: cls.initialise(store, config, home, workers))

    @classmethod
    def create_from_file(cls, home: Path, build: GenesisFileBuild) -> "Chain":
        """:meth:`create` for a genesis streamed from its file (:mod:`ledger.chain.genesis_file`),
        which may still refuse an allocation after the first parts are written: the database is
        then removed again (or, if it was there before, left empty), and nothing else changed."""
        return cls._create(home, lambda store: cls._initialise_from_file(store, build, home))

    @classmethod
    def _create(cls, home: Path, initialise: Callable[[KeyValueStore], "Chain"]) -> "Chain":
        # a refused genesis (an allocation refused in a file's second pass) leaves no home behind
        with home_made_for(home), holding_directory(home, CREATING_ELSEWHERE.format(home=home)):
            return cls._create_alone(home, initialise)

    @classmethod
    def _create_alone(cls, home: Path, initialise: Callable[[KeyValueStore], "Chain"]) -> "Chain":
        """:meth:`_create` once no other process is creating a chain in ``home``: whether the
        directory was there before is then known, and only a directory made here is removed."""
        path = home / CHAIN_DIRNAME
        sweep_removal(path)  # what a killed clean-up of an earlier try left aside
        shutil.rmtree(home / IMPORT_SCRATCH, ignore_errors=True)  # a killed import's scratch
        existed = path.exists()
        if path.is_dir() and not (path / "CURRENT").exists() and not holds_leveldb_files(path):
            leftovers = sorted(entry.name for entry in path.iterdir() if entry.name not in ("LOCK", "LOG", "LOG.old"))
            if leftovers:
                raise ChainExists(
                    f"{path} is not empty (it holds {leftovers[0]}) and is not a chain: move its files "
                    "aside, or use another --home"
                )
        try:
            store = LevelDBStore.open(path, create=True)
        except BaseException:  # interrupted while LevelDB made its files: a new directory goes too
            if not existed:
                remove_directory(path)
            raise
        try:
            if store.get(schema.TIP_KEY) is not None:
                raise ChainExists(f"a chain already exists in {home}: use another --home, or remove it first")
            if store.get(schema.make_block_key(1)) is not None:
                raise ChainExists(
                    f"the chain in {home} has blocks but no tip record: it is damaged, not unfinished; "
                    "see `posctl chain repair`, or use another --home"
                )
            _delete_everything(store)  # an unfinished genesis, if any
        except BaseException:
            store.close()
            if not existed:  # (only an interruption gets here with a new directory)
                remove_directory(path)
            raise
        try:
            return initialise(store)
        except BaseException:  # a refused (or interrupted) genesis leaves nothing of itself
            if existed and store.failure is None:
                _delete_everything(store)
                store.compact()
            store.close()
            if not existed:
                remove_directory(path)
            raise

    @classmethod
    def initialise(cls, store: KeyValueStore, config: GenesisConfig, home: Path | None = None,
                   workers: GenesisWorkers | None = None) -> "Chain":
        """Write genesis into an empty store (any backend), its state entries streamed into the
        store as the workers compute them (:mod:`ledger.chain.genesis_build`), in parts of
        :data:`GENESIS_PART_BYTES`: the store holds one part at a time, not the whole genesis
        (a million accounts: 950 MB at the peak as one batch). The tip is written last, after
        the parts are settled on disk; a database without one was never initialised completely,
        and :meth:`create` starts it over."""
        if store.get(schema.TIP_KEY) is not None:
            raise ChainExists("this database already holds a chain")
        build = GenesisBuild(config, workers)
        addresses = chaindb.genesis_address_records(config.allocations, config.bonds)
        store.write_stream(chaindb.genesis_records(build.state_parts(), build.finished, addresses),
                           part_bytes=GENESIS_PART_BYTES)
        return cls._seal_genesis(store, chaindb.genesis_tip_record(build.finished), home)

    @classmethod
    def _initialise_from_file(cls, store: KeyValueStore, build: GenesisFileBuild, home: Path | None) -> "Chain":
        """Genesis from a file in three streamed passes (:mod:`ledger.chain.genesis_file`): the
        accounts, then — read back in address order — the canonical configuration and the block."""
        store.write_stream(itertools.chain([chaindb.schema_version_record()], build.allocation_records()),
                           part_bytes=GENESIS_PART_BYTES)
        store.write_stream(build.config_records(store), part_bytes=GENESIS_PART_BYTES)
        return cls._seal_genesis(store, build.tip_record(), home)

    @classmethod
    def _seal_genesis(cls, store: KeyValueStore, tip: dict[bytes, bytes | None], home: Path | None) -> "Chain":
        # Every part settled in sorted, synced tables before the tip can say they are whole. A
        # whole compaction (4–5 s at a million accounts), so that no open finds work pending:
        # LevelDB compacts at open whatever is over its level sizes, and each short command began
        # again, giving up at its close, and found the tip moved into a large table's index.
        store.compact()
        # Then the tip, with what opening reads written again (same bytes; the mempool counters,
        # empty), in a write of its own, flushed: a small table, searched first, holds all that
        # opening reads, and the first command replays no log.
        opened = (schema.SCHEMA_VERSION_KEY, schema.make_state_key(state.PARAMS_STATE_KEY))
        last: dict[bytes, bytes | None] = {key: store.get(key) for key in opened}
        last[schema.MEMPOOL_META_KEY] = Mempool.meta_record(0, 0, 0)
        last.update(tip)
        store.write(last)
        store.flush()
        return cls(store, home)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Chain":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- state access ----------------------------------------------------------------------

    def _state_get(self, key: bytes) -> bytes | None:
        return self.store.get(schema.make_state_key(key))

    def _state_items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        start = len(schema.STATE_PREFIX)
        return ((key[start:], value) for key, value in self.store.iterate(schema.make_state_key(prefix)))

    def _state_view(self) -> WorkingState:
        """A fresh read view of the committed state (never written back)."""
        return WorkingState(self._state_get, self._state_items)

    @property
    def next_seed(self) -> bytes:
        """The seed of the next block: what a proposal for it proves its VRF over."""
        return next_seed(self.tip)

    @property
    def height(self) -> int:
        return self.tip.height

    @property
    def genesis(self) -> GenesisConfig:
        return GenesisConfig.decode(chaindb.read_genesis_config(self.store) or b"")

    def genesis_config_parts(self) -> Iterator[bytes]:
        """The canonical genesis configuration's stored bytes, a part at a time, in order."""
        return chaindb.genesis_config_parts(self.store)

    def genesis_allocations(self) -> Iterator[tuple[str, int]]:
        """The genesis allocations in address order, read from the stored configuration as they
        are needed: the first of a million come without decoding the other 50 MB."""
        return stored_allocations(self.genesis_config_parts())

    # ---- transactions ----------------------------------------------------------------------

    def submit(self, tx: Transaction) -> TxId:
        """Admit a signed tx; returns its id once it is durably pending."""
        return self.mempool.submit(tx)

    def submit_many(self, txs: Sequence[Transaction],
                    verify: Callable[[Transaction], None] | None = None) -> list[Admission]:
        """Admit a group with one synced write; ``verify`` replaces the inline signature check
        when the caller has already checked them (the admission pipeline's workers)."""
        if verify is None:
            return self.mempool.submit_many(txs)
        return self.mempool.submit_many(txs, verify)

    def submit_evidence(self, evidence: Evidence) -> bytes:
        """Admit evidence of equivocation for the next block; returns its id once durable."""
        return self.mempool.submit_evidence(evidence)

    # ---- forging ---------------------------------------------------------------------------

    def forge(self, timestamp: int | None = None) -> ForgeResult:
        """Forge and commit the next block from the mempool, or say why not."""
        now = int(time.time()) if timestamp is None else timestamp
        candidate = build_block(
            self._state_get, self._state_items, self.tip, self._muhash, self.params,
            self.mempool.pending(), now, self.mempool.verified, self.mempool.pending_evidence(),
        )
        self._commit(candidate)
        evicted = [(tx.id_hex, reason) for _, tx, reason in candidate.evicted]
        evicted += [(item.id_hex, reason) for _, item, reason in candidate.evicted_evidence]
        return ForgeResult(block=candidate.block, reason=candidate.reason, evicted=evicted)

    def _commit(self, candidate: Candidate) -> None:
        """One synced batch: block, indexes, state, mempool removals, evictions and tip."""
        removed = [(seq, tx) for seq, tx, _ in candidate.evicted] + list(candidate.included)
        evidence_keys = [key for key, _ in candidate.included_evidence] + [
            key for key, _, _ in candidate.evicted_evidence
        ]
        if candidate.block is None and not removed and not evidence_keys:
            return
        changes = chaindb.eviction_changes(
            chaindb.EvictedRecord(reason, self.tip.height + 1, tx) for _, tx, reason in candidate.evicted
        )
        changes.update(self.mempool.removal_changes(removed))
        changes.update(dict.fromkeys(evidence_keys))
        block = candidate.block
        if block is not None and candidate.writes is not None and candidate.muhash is not None:
            won = self.blocks_won(block.header.validator)
            changes.update(chaindb.block_changes(block, candidate.writes, candidate.muhash, won))
        self.store.write(changes)
        self.mempool.after_commit(removed)
        if block is not None and candidate.muhash is not None:
            self.tip, self._muhash = block.header, candidate.muhash

    def import_block(self, block: Block) -> None:
        """Append a block made elsewhere (``chain import``), checked as ``verify`` checks it:
        signatures, VRF proofs, the draw and the state root; committed as one synced batch."""
        expected = self.tip.height + 1
        if block.height != expected:
            raise InvalidBlock(f"block {block.height} is out of order: the next block is {expected}")
        writes, muhash = state_transition(
            self._state_get, self._state_items, self._muhash, block, self.tip, self.params, verify_signatures=True
        )
        won = self.blocks_won(block.header.validator)
        self.store.write(chaindb.block_changes(block, writes, muhash, won))
        self.tip, self._muhash = block.header, muhash

    def committed_height(self) -> int:
        """The height the database holds now, read from disk: after an interrupt, this says
        whether the block being forged was committed (the in-memory tip may lag it)."""
        raw = self.store.get(schema.TIP_KEY)
        return self.tip.height if raw is None else chaindb.decode_tip(raw)[0].height

    def check_recent_blocks(self, count: int = 6) -> None:
        """Re-read the newest ``count`` blocks with checksums, as Bitcoin Core's ``-checkblocks``
        does at start-up: each decodes, is indexed by its hash, links to its parent, and the tip
        record names the newest. Damage is reported before anything is built on top of it."""
        try:
            check_recent_blocks(self.store, self.tip, count)
        except VerificationError as exc:
            raise DatabaseCorrupted(
                f"the chain database at {self.store_path()} is damaged: {exc}: run `posctl chain repair` "
                "(it copies the chain directory aside first)"
            ) from None

    def store_path(self) -> str:
        path = getattr(self.store, "path", None)
        return str(path) if path is not None else "(memory)"

    # ---- reading ---------------------------------------------------------------------------

    def block(self, height: int) -> Block:
        if height < 0 or height > self.tip.height:
            raise NotFound(f"no block at height {height}: the chain's height is {self.tip.height}")
        raw = self.store.get(schema.make_block_key(height))
        if raw is None:
            raise DatabaseError(f"block {height} is missing from the database: run `posctl chain verify`")
        return Block.decode(raw)

    def block_by_hash(self, block_hash: bytes) -> Block:
        raw = self.store.get(schema.make_block_hash_key(block_hash))
        if raw is None:
            raise NotFound(f"no block with hash {block_hash.hex()}")
        return self.block(schema.decode_u64(raw))

    def block_by_ref(self, ref: str) -> Block:
        """A height (``12``), a 64-hex-digit block hash, or a unique prefix of one (8+ digits).

        All digits is a height up to 19 digits (a hash prefix that happens to be all digits needs
        20 or more, or the full hash)."""
        text = ref.strip().lower()
        if _HEIGHT.fullmatch(text):
            return self.block(int(text))
        if len(text) == 64 and _HEX.fullmatch(text):
            return self.block_by_hash(bytes.fromhex(text))
        if MIN_HASH_PREFIX <= len(text) < 64 and _HEX.fullmatch(text):
            return self.block_by_hash_prefix(text)
        raise not_a_block_ref(ref)

    def block_by_hash_prefix(self, prefix: str) -> Block:
        """The one block whose hash starts with ``prefix`` (lowercase hex): a LevelDB prefix scan
        over the hash index, O(matches) and stopped after one more than it names."""
        whole = prefix[: len(prefix) - len(prefix) % 2]
        odd = prefix[len(whole):]
        matches: list[tuple[bytes, bytes]] = []
        for key, value in self.store.iterate(schema.make_block_hash_key(bytes.fromhex(whole))):
            block_hash = key[len(schema.BLOCK_HASH_PREFIX):]
            if odd and not block_hash.hex().startswith(prefix):
                continue
            matches.append((block_hash, value))
            if len(matches) > AMBIGUOUS_SHOWN:
                break
        if not matches:
            raise NotFound(f"no block hash starts with {prefix}")
        if len(matches) > 1:
            shown = ", ".join(h.hex()[:16] for h, _ in matches[:AMBIGUOUS_SHOWN])
            more = " and more" if len(matches) > AMBIGUOUS_SHOWN else ""
            raise AmbiguousReference(
                f"block hash prefix {prefix} is ambiguous: it matches {shown}{more}: give more digits"
            )
        return self.block(schema.decode_u64(matches[0][1]))

    def last_blocks(self, count: int) -> Iterator[Block]:
        """The newest ``count`` blocks, newest first."""
        top = self.tip.height
        for height in range(top, max(top - count, -1), -1):
            yield self.block(height)

    def blocks(self, start: int, end: int) -> Iterator[Block]:
        for height in range(max(start, 0), min(end, self.tip.height) + 1):
            yield self.block(height)

    def tx(self, tx_id: TxId) -> TxStatus:
        """Where a tx is: pending, included (with height), or evicted (with the reason)."""
        pending = self.mempool.get(tx_id)
        if pending is not None:
            return TxStatus("pending", pending)
        raw_location = self.store.get(schema.make_tx_location_key(tx_id))
        if raw_location is not None:
            location = chaindb.decode_tx_location(raw_location)
            block = self.block(location.height)
            return TxStatus("included", block.txs[location.index], location.height, location.index, block.hash)
        raw_evicted = self.store.get(schema.make_evicted_key(tx_id))
        if raw_evicted is not None:
            record = chaindb.decode_evicted(raw_evicted)
            return TxStatus("evicted", record.tx, height=record.height, reason=record.reason)
        raise NotFound(f"no transaction {tx_id.hex()}: not pending, not in any block")

    def account(self, address: str) -> AccountInfo:
        address = parse_address(address)
        account = state.get_account(self._state_view(), address)
        return AccountInfo(
            address=address, balance=account.balance, bonded=account.bonded, unbonding=account.unbonding,
            nonce=account.nonce, pending=self.mempool.sender_pending(address).count,
            status=state.get_validator_status(account, self.params), missed=account.missed,
            slashed=account.slashed,
        )

    def history(self, address: str, limit: int = 20, before: tuple[int, int] | None = None) -> list[HistoryEntry]:
        """The newest ``limit`` txs ``address`` sent or received: its pending txs first (newest
        arrival first), then the included ones from the address index, newest first. With
        ``before`` (height, index), the next page: the included txs before that position only
        (pending ones are always on the first page). O(limit) index reads; never a scan of blocks
        or of the mempool."""
        address = parse_address(address)
        if limit < 1:
            return []
        if self.store.get(schema.ADDRESS_INDEX_KEY) is None:
            raise AddressIndexMissing(INDEX_MISSING_HINT)
        out = [] if before is not None else [
            _pending_entry(tx, address) for _, tx in itertools.islice(self.mempool.address_txs(address), limit)
        ]
        below = None if before is None else schema.make_address_tx_key(address, *before)
        entries = self.store.iterate(schema.make_address_tx_prefix(address), reverse=True, below=below)
        for key, value in itertools.islice(entries, limit - len(out)):
            _, height, index = schema.split_address_tx_key(key)
            try:
                entry = chaindb.decode_address_entry(value)
            except EncodingError as exc:
                raise DatabaseCorrupted(
                    f"the address index entry of {address} at height {height} is damaged ({exc}): run `posctl chain verify`"
                ) from None
            out.append(HistoryEntry(
                tx_id=entry.tx_id, height=height, index=index, kind=entry.kind,
                direction="sent" if entry.direction == chaindb.SENT else "received",
                counterparty=entry.counterparty, amount=entry.amount, status="included",
            ))
        return out

    def pending_txs(self, limit: int) -> MempoolInfo:
        """The mempool's count and size, and its first ``limit`` txs in arrival order."""
        txs = tuple(
            PendingTx(tx.tx_id, tx.kind, tx.sender, tx.nonce, len(tx.encoded))
            for _, tx in itertools.islice(self.mempool.pending(), max(limit, 0))
        )
        return MempoolInfo(count=self.mempool.count, bytes=self.mempool.bytes, txs=txs)

    def totals(self) -> state.Totals:
        return state.get_totals(self._state_view())

    def blocks_won(self, address: str) -> int:
        return chaindb.decode_count(self.store.get(schema.make_blocks_won_key(address)))

    def validators(self) -> list[ValidatorRow]:
        """Every validator, bonded or with a validator history: O(validators), never a scan of all accounts."""
        view = self._state_view()
        rows = []
        for address in view.parent_validators():
            account = state.get_account(view, address)
            rows.append((address, account, state.is_eligible_validator(account, self.params)))
        total = sum(account.bonded for _, account, _ in rows)
        eligible_total = sum(account.bonded for _, account, ok in rows if ok)
        blocks = self.tip.height
        return [
            ValidatorRow(
                address=address,
                bonded=account.bonded,
                eligible=eligible,
                status=state.get_validator_status(account, self.params),
                missed=account.missed,
                slashed=account.slashed,
                share=account.bonded / total if total else 0.0,
                expected_share=account.bonded / eligible_total if eligible and eligible_total else 0.0,
                blocks_won=(won := self.blocks_won(address)),
                actual_share=won / blocks if blocks else 0.0,
            )
            for address, account, eligible in sorted(rows, key=lambda r: (-r[1].bonded, r[0]))
        ]

    def status(self) -> ChainStatus:
        validators = self.validators()
        return ChainStatus(
            chain_id=self.params.chain_id,
            height=self.tip.height,
            tip=self.tip.hash,
            timestamp=self.tip.timestamp,
            state_root=self.tip.state_root,
            mempool=self.mempool.count,
            validators=len(validators),
            eligible_validators=sum(1 for v in validators if v.eligible),
            totals=self.totals(),
            evidence_pending=self.mempool.evidence_count(),
            next_seed=self.next_seed,
            params=self.params,
        )

    # ---- verification ----------------------------------------------------------------------

    def verify(self, progress: ProgressCallback | None = None) -> VerifyReport:
        """Replay from genesis and compare with what is stored (:mod:`ledger.chain.verify`)."""
        return verify_chain(self.store, self.tip, self._muhash, progress)

    def verify_last(self, count: int) -> VerifyReport:
        """Check only the newest ``count`` blocks, without replaying state (``chain verify --last``)."""
        return verify_recent(self.store, self.tip, self.params, count)


def not_a_block_ref(ref: str) -> InvalidReference:
    """The refusal of a block reference that is neither a height nor a hash (or a prefix of one)."""
    return InvalidReference(
        f"{ref!r} is neither a block height nor a block hash (64 hex digits, or a unique prefix of "
        f"{MIN_HASH_PREFIX} or more)"
    )


def _pending_entry(tx: Transaction, address: str) -> HistoryEntry:
    """A pending tx as a history line: the same fields its index entry will have once included."""
    entry = next(entry for who, entry in chaindb.tx_address_entries(tx) if who == address)
    return HistoryEntry(
        tx_id=tx.tx_id, height=None, index=None, kind=tx.kind,
        direction="sent" if entry.direction == chaindb.SENT else "received",
        counterparty=entry.counterparty, amount=entry.amount, status="pending",
    )


__all__ = ["Chain", "ForgeResult", "VerifyReport", "ensure_home", "home_made_for", "not_a_block_ref", "Params"]
