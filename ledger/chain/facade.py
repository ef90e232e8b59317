"""The chain facade: what the CLI and the node call, and the one place that commits blocks.

``Chain.open`` reads the tip record and nothing else, so opening costs the same at height 10
and at height 10 million. ``forge`` commits a block, its indexes, the state changes, the
mempool removals and the new tip in **one** synced atomic batch: after a crash the database
holds either all of the block or none of it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ledger import encoding
from ledger.crypto.address import parse_address
from ledger.storage import schema
from ledger.consensus import state
from ledger.consensus import statehash
from ledger.consensus.blocks import Block, BlockHeader
from ledger.errors import (
    ChainExists,
    DatabaseError,
    EncodingError,
    InvalidBlock,
    LedgerError,
    NotFound,
    VerificationError,
)
from ledger.chain.forger import Candidate, build_block
from ledger.consensus.genesis import GenesisConfig, build_genesis
from ledger.chain.mempool import Admission, Mempool
from ledger.crypto.muhash import MuHash3072
from ledger.chain.sigcheck import SignatureChecker
from ledger.params import Params
from ledger.consensus.state import DictState, WorkingState
from ledger.storage.store import KeyValueStore, LevelDBStore
from ledger.consensus.transactions import Transaction, TxId
from ledger.consensus.evidence import Evidence
from ledger.consensus.fork import next_seed, state_transition
from ledger.chain import views

CHAIN_DIRNAME = "chain"
"""The LevelDB directory inside a posctl home."""

ProgressCallback = Callable[[int, int], None]

_HEIGHT = re.compile(r"[0-9]{1,19}")
"""A height as typed: ASCII digits only (``str.isdigit`` also accepts '²' and '١')."""


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


@dataclass
class VerifyReport:
    height: int
    blocks: int
    txs: int
    seconds: float


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


def _parse_tip(raw: bytes) -> tuple[BlockHeader, MuHash3072]:
    data = encoding.require_fields(encoding.decode(raw), {"header", "muhash"}, "tip record")
    header = BlockHeader.from_dict(data["header"])
    muhash = MuHash3072.from_bytes(encoding.hex_to_bytes(data["muhash"], "muhash"))
    return header, muhash


def _tip_record(header: BlockHeader, muhash: MuHash3072) -> bytes:
    return encoding.encode({"header": header.to_dict(), "muhash": muhash.to_bytes().hex()})


class Chain:
    """One open chain. Not thread-safe: the node serialises calls with a lock."""

    def __init__(self, store: KeyValueStore, home: Path | None = None) -> None:
        self.store = store
        self.home = home
        raw_tip = store.get(schema.TIP_KEY)
        raw_genesis = store.get(schema.GENESIS_KEY)
        if raw_tip is None or raw_genesis is None:
            store.close()
            raise DatabaseError("the chain database has no tip: it was never initialised completely")
        try:
            self.tip, self._muhash = _parse_tip(raw_tip)
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
    def create(cls, home: Path, config: GenesisConfig) -> "Chain":
        """Write genesis into a new database; refuses to touch an existing chain.

        Genesis, schema version included, is one atomic batch: an ``init`` killed half-way
        leaves an empty database, which the next ``create`` simply fills.
        """
        ensure_home(home)
        store = LevelDBStore.open(home / CHAIN_DIRNAME, create=True)
        try:
            if store.get(schema.TIP_KEY) is not None:
                raise ChainExists(f"a chain already exists in {home}: use another --home, or remove it first")
            return cls.initialise(store, config, home)
        except BaseException:
            store.close()
            raise

    @classmethod
    def initialise(cls, store: KeyValueStore, config: GenesisConfig, home: Path | None = None) -> "Chain":
        """Write genesis into an empty store (any backend) in one atomic batch."""
        if store.get(schema.TIP_KEY) is not None:
            raise ChainExists("this database already holds a chain")
        block, genesis_state, muhash = build_genesis(config)
        changes: dict[bytes, bytes | None] = {
            schema.make_state_key(key): value for key, value in genesis_state.entries.items()
        }
        changes[schema.SCHEMA_VERSION_KEY] = str(schema.SCHEMA_VERSION).encode("ascii")
        changes[schema.GENESIS_KEY] = config.encode()
        changes[schema.make_block_key(0)] = block.encode()
        changes[schema.make_block_hash_key(block.hash)] = schema.encode_u64(0)
        changes[schema.TIP_KEY] = _tip_record(block.header, muhash)
        store.write(changes)
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
        return GenesisConfig.decode(self.store.get(schema.GENESIS_KEY) or b"")

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
        changes: dict[bytes, bytes | None] = {}
        for _, tx, reason in candidate.evicted:
            changes[schema.make_evicted_key(tx.tx_id)] = encoding.encode(
                {"reason": reason, "height": self.tip.height + 1, "tx": tx.to_dict()}
            )
        changes.update(self.mempool.removal_changes(removed))
        changes.update(dict.fromkeys(evidence_keys))
        block = candidate.block
        if block is not None and candidate.writes is not None and candidate.muhash is not None:
            height = block.height
            changes[schema.make_block_key(height)] = block.encode()
            changes[schema.make_block_hash_key(block.hash)] = schema.encode_u64(height)
            for index, tx in enumerate(block.txs):
                changes[schema.make_tx_location_key(tx.tx_id)] = schema.encode_u64(height) + index.to_bytes(4, "big")
            for key, value in candidate.writes.items():
                changes[schema.make_state_key(key)] = value
            won_key = schema.make_blocks_won_key(block.header.validator)
            won = self.store.get(won_key)
            changes[won_key] = schema.encode_u64((schema.decode_u64(won) if won else 0) + 1)
            changes[schema.TIP_KEY] = _tip_record(block.header, candidate.muhash)
        self.store.write(changes)
        self.mempool.after_commit(removed)
        if block is not None and candidate.muhash is not None:
            self.tip, self._muhash = block.header, candidate.muhash

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
        """A height (``12``) or a 64-hex-digit block hash."""
        text = ref.strip().lower()
        if _HEIGHT.fullmatch(text):
            return self.block(int(text))
        if len(text) == 64:
            try:
                return self.block_by_hash(bytes.fromhex(text))
            except ValueError:
                pass
        raise NotFound(f"{ref!r} is neither a block height nor a 64-hex-digit block hash")

    def last_blocks(self, count: int) -> Iterator[Block]:
        """The newest ``count`` blocks, newest first."""
        top = self.tip.height
        for height in range(top, max(top - count, -1), -1):
            yield self.block(height)

    def blocks(self, start: int, end: int) -> Iterator[Block]:
        for height in range(max(start, 0), min(end, self.tip.height) + 1):
            yield self.block(height)

    def tx(self, tx_id: TxId) -> dict[str, Any]:
        """Where a tx is: pending, included (with height), or evicted (with the reason)."""
        pending = self.mempool.get(tx_id)
        if pending is not None:
            return {"status": "pending", "tx": views.tx_view(pending)}
        location = self.store.get(schema.make_tx_location_key(tx_id))
        if location is not None:
            height, index = schema.decode_u64(location[:8]), int.from_bytes(location[8:], "big")
            block = self.block(height)
            return {
                "status": "included", "height": height, "index": index,
                "block_hash": block.hash.hex(), "tx": views.tx_view(block.txs[index]),
            }
        evicted = self.store.get(schema.make_evicted_key(tx_id))
        if evicted is not None:
            record = encoding.decode(evicted)
            return {
                "status": "evicted", "reason": record["reason"], "height": record["height"],
                "tx": views.tx_view(Transaction.from_dict(record["tx"])),
            }
        raise NotFound(f"no transaction {tx_id.hex()}: not pending, not in any block")

    def account(self, address: str) -> dict[str, Any]:
        address = parse_address(address)
        account = state.get_account(self._state_view(), address)
        pending = self.mempool.sender_pending(address).count
        return views.account_view(address, account, pending, self.params)

    def totals(self) -> state.Totals:
        return state.get_totals(self._state_view())

    def blocks_won(self, address: str) -> int:
        raw = self.store.get(schema.make_blocks_won_key(address))
        return schema.decode_u64(raw) if raw else 0

    def validators(self) -> list[dict[str, Any]]:
        """Everyone with bonded stake: O(validators), never a scan of all accounts."""
        view = self._state_view()
        rows = []
        for address in view.parent_validators():
            account = state.get_account(view, address)
            rows.append((address, account, state.is_eligible_validator(account, self.params)))
        total = sum(account.bonded for _, account, _ in rows)
        eligible_total = sum(account.bonded for _, account, ok in rows if ok)
        blocks = self.tip.height
        return [
            {
                "address": address,
                "bonded": account.bonded,
                "eligible": eligible,
                "status": state.get_validator_status(account, self.params),
                "missed": account.missed,
                "slashed": account.slashed,
                "share": account.bonded / total if total else 0.0,
                "expected_share": account.bonded / eligible_total if eligible and eligible_total else 0.0,
                "blocks_won": (won := self.blocks_won(address)),
                "actual_share": won / blocks if blocks else 0.0,
            }
            for address, account, eligible in sorted(rows, key=lambda r: (-r[1].bonded, r[0]))
        ]

    def status(self) -> dict[str, Any]:
        totals = self.totals()
        validators = self.validators()
        return {
            "chain_id": self.params.chain_id,
            "height": self.tip.height,
            "tip": self.tip.hash.hex(),
            "timestamp": self.tip.timestamp,
            "state_root": self.tip.state_root.hex(),
            "mempool": self.mempool.count,
            "validators": len(validators),
            "eligible_validators": sum(1 for v in validators if v["eligible"]),
            "supply": totals.supply,
            "liquid": totals.liquid,
            "bonded": totals.bonded,
            "unbonding": totals.unbonding,
            "issued": totals.issued,
            "rewards": totals.rewards,
            "burned": totals.burned,
            "evidence_pending": self.mempool.evidence_count(),
            "next_seed": self.next_seed.hex(),
            "params": self.params.to_dict(),
        }

    # ---- verification ----------------------------------------------------------------------

    def verify(self, progress: ProgressCallback | None = None) -> VerifyReport:
        """Replay from genesis: hashes, signatures, every draw and state root, then compare
        the replayed state with the stored one. Raises :class:`VerificationError` naming the
        first bad height or entry."""
        started = time.perf_counter()
        try:
            config = self.genesis
        except LedgerError as exc:
            raise VerificationError(f"genesis configuration is damaged: {exc}", 0) from None
        block0, replayed, muhash = build_genesis(config)
        replayed = DictState(replayed.entries)  # with its validator index
        stored0 = self._stored_block(0)
        if stored0.hash != block0.hash:
            raise VerificationError("height 0: stored genesis block does not match the genesis configuration", 0)
        parent = block0.header
        params = config.params
        tx_count = 0
        won: dict[str, int] = {}
        with SignatureChecker() as signatures:
            for height in range(1, self.tip.height + 1):
                block = self._stored_block(height)
                signatures.check(height, block.txs)
                try:
                    writes, muhash = state_transition(
                        replayed.get, replayed.items, muhash, block, parent, params, verify_signatures=False
                    )
                except LedgerError as exc:
                    signatures.finish()  # a bad signature at or below this height comes first
                    raise VerificationError(f"height {height}: {exc}", height) from None
                replayed.apply(writes)
                self._check_indexes(block)
                won[block.header.validator] = won.get(block.header.validator, 0) + 1
                tx_count += len(block.txs)
                parent = block.header
                if progress is not None:
                    progress(height, self.tip.height)
            signatures.finish()
        if parent.hash != self.tip.hash:
            raise VerificationError(f"height {parent.height}: the tip record does not name the last block", parent.height)
        if muhash.digest() != self._muhash.digest():
            raise VerificationError("the stored state accumulator differs from the replayed one", parent.height)
        self._compare_state(replayed)
        self._compare_blocks_won(won)
        return VerifyReport(self.tip.height, self.tip.height + 1, tx_count, time.perf_counter() - started)

    def _stored_block(self, height: int) -> Block:
        raw = self.store.get(schema.make_block_key(height))
        if raw is None:
            raise VerificationError(f"height {height}: block is missing", height)
        try:
            block = Block.decode(raw)
        except LedgerError as exc:
            raise VerificationError(f"height {height}: stored block is damaged: {exc}", height) from None
        if block.height != height:
            raise VerificationError(f"height {height}: stored block claims height {block.height}", height)
        indexed = self.store.get(schema.make_block_hash_key(block.hash))
        if indexed is None or schema.decode_u64(indexed) != height:
            raise VerificationError(f"height {height}: block hash index does not point at this block", height)
        return block

    def _check_indexes(self, block: Block) -> None:
        for index, tx in enumerate(block.txs):
            location = self.store.get(schema.make_tx_location_key(tx.tx_id))
            if location != schema.encode_u64(block.height) + index.to_bytes(4, "big"):
                raise VerificationError(f"height {block.height}: tx index entry of {tx.id_hex} is wrong", block.height)

    def _compare_blocks_won(self, replayed: dict[str, int]) -> None:
        """The blocks-won index behind ``validators`` must count exactly the replayed winners."""
        stored = {
            key[len(schema.BLOCKS_WON_PREFIX):].decode("ascii", "replace"): schema.decode_u64(value)
            for key, value in self.store.iterate(schema.BLOCKS_WON_PREFIX)
        }
        for address in sorted(set(stored) | set(replayed)):
            if stored.get(address, 0) != replayed.get(address, 0):
                raise VerificationError(
                    f"blocks-won index of {address} says {stored.get(address, 0)}, "
                    f"the chain says {replayed.get(address, 0)}", self.tip.height
                )

    def _compare_state(self, replayed: DictState) -> None:
        prefix = schema.STATE_PREFIX
        seen = 0
        for db_key, value in self.store.iterate(prefix):
            key = db_key[len(prefix):]
            expected = replayed.entries.get(key)
            if expected != value:
                what = "is not in the replayed state" if expected is None else "differs from the replayed value"
                raise VerificationError(
                    f"state entry {key.decode('ascii', 'replace')} {what}", self.tip.height
                )
            seen += 1
        if seen != len(replayed.entries):
            stored = {k[len(prefix):] for k, _ in self.store.iterate(prefix)}
            missing = sorted(set(replayed.entries) - stored)
            raise VerificationError(
                f"state entry {missing[0].decode('ascii', 'replace')} is missing from the database", self.tip.height
            )
        totals = WorkingState(replayed.get).totals()
        if totals.supply != totals.issued - totals.burned:
            raise VerificationError(
                f"supply {totals.supply} differs from issued {totals.issued} minus burned {totals.burned}",
                self.tip.height,
            )
        if statehash.hash_of_entries(replayed.entries.items()).digest() != self.tip.state_root:
            raise VerificationError("the tip's state root does not commit to the stored state", self.tip.height)


__all__ = ["Chain", "ForgeResult", "VerifyReport", "ensure_home", "Params"]
