"""Verify: replay the whole chain from its genesis and compare with what is stored.

A replay trusts nothing in the database: every block is decoded from its stored bytes, its
signatures are checked on all cores, and it goes through the same ``state_transition`` as a
new block would; then the indexes (tx locations, blocks won), the state entries, the supply
identity and the tip's state root are compared with the replayed ones. The first difference
names its height.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ledger.chain.sigcheck import SignatureChecker
from ledger.consensus.blocks import Block, BlockHeader
from ledger.consensus.blocks import compute_evidence_root, compute_tx_root
from ledger.consensus.fork import check_proposals, state_transition, validate_header
from ledger.consensus.genesis import GenesisConfig
from ledger.chain.genesis_build import build_state, decode_config, hash_state
from ledger.consensus.state import DictState, WorkingState
from ledger.crypto.muhash import MuHash3072
from ledger.params import Params
from ledger.errors import LedgerError, VerificationError
from ledger.storage import chaindb, schema
from ledger.storage.store import KeyValueStore

ProgressCallback = Callable[[int, int], None]
"""Called with (height replayed, tip height) after each block."""

BLOCK_CACHE = 256
"""Blocks whose index entries are kept while naming an extra address index entry."""


@dataclass
class VerifyReport:
    height: int
    blocks: int
    txs: int
    seconds: float
    address_index: bool = True
    """False for a chain made before the address index existed: there was none to check."""


def verify_chain(
    store: KeyValueStore, tip: BlockHeader, muhash: MuHash3072, progress: ProgressCallback | None = None
) -> VerifyReport:
    """Replay from genesis up to ``tip``: hashes, signatures, every draw and state root, then the
    stored state, indexes and accumulator. Raises :class:`VerificationError` naming the first
    bad height or entry."""
    started = time.perf_counter()
    try:
        config = decode_config(chaindb.read_genesis_config(store) or b"")
    except LedgerError as exc:
        raise VerificationError(f"genesis configuration is damaged: {exc}", 0) from None
    block0, genesis_entries, replayed_muhash = build_state(config)
    replayed = DictState(genesis_entries)  # with its validator index
    del genesis_entries
    if _stored_block(store, 0).hash != block0.hash:
        raise VerificationError("height 0: stored genesis block does not match the genesis configuration", 0)
    parent = block0.header
    tx_count = 0
    won: dict[str, int] = {}
    indexed = has_address_index(store)
    index_entries = 0
    if indexed:
        index_entries += _check_address_entries(
            store, 0, chaindb.genesis_address_records(config.allocations, config.bonds)
        )
    with SignatureChecker() as signatures:
        # blocks read ahead, their proposals' VRF proofs checked on the workers meanwhile
        read = lambda height: _stored_block(store, height)  # noqa: E731
        for height, block, vrf_outputs in signatures.blocks(read, 1, tip.height, config.params.chain_id):
            signatures.check(height, block.txs)
            try:
                writes, replayed_muhash = state_transition(
                    replayed.get, replayed.items, replayed_muhash, block, parent, config.params,
                    verify_signatures=False, vrf_outputs=vrf_outputs,
                )
            except LedgerError as exc:
                signatures.finish()  # a bad signature at or below this height comes first
                raise VerificationError(f"height {height}: {exc}", height) from None
            replayed.apply(writes)
            _check_tx_index(store, block)
            if indexed:
                index_entries += _check_address_entries(store, height, chaindb.address_index_changes(height, block.txs).items())
            won[block.header.validator] = won.get(block.header.validator, 0) + 1
            tx_count += len(block.txs)
            parent = block.header
            if progress is not None:
                progress(height, tip.height)
        signatures.finish()
    if parent.hash != tip.hash:
        raise VerificationError(f"height {parent.height}: the tip record does not name the last block", parent.height)
    if replayed_muhash.digest() != muhash.digest():
        raise VerificationError("the stored state accumulator differs from the replayed one", parent.height)
    _compare_state(store, replayed, tip)
    _compare_blocks_won(store, won, tip.height)
    if indexed:
        _check_no_extra_address_entries(store, config, index_entries, tip.height)
    return VerifyReport(tip.height, tip.height + 1, tx_count, time.perf_counter() - started, indexed)


def has_address_index(store: KeyValueStore) -> bool:
    """Whether this chain keeps the address index (a chain made before it existed does not)."""
    return store.get(schema.ADDRESS_INDEX_KEY) is not None


def _check_address_entries(store: KeyValueStore, height: int, expected: Iterable[tuple[bytes, bytes]]) -> int:
    """Every entry the block at ``height`` makes is stored, byte for byte; returns their count.
    Streamed: a million-account genesis is checked without a mapping of its entries."""
    count = 0
    for key, value in expected:
        stored = store.get(key)
        if stored != value:
            address, _, index = schema.split_address_tx_key(key)
            raise VerificationError(
                f"height {height}: address index entry of {address} (tx {index}) is "
                f"{'missing' if stored is None else 'wrong'}", height
            )
        count += 1
    return count


def _check_no_extra_address_entries(store: KeyValueStore, config: GenesisConfig, expected: int, height: int) -> None:
    """Every expected entry is present (checked block by block), so equal counts mean nothing
    extra. Only when the counts differ are the stored entries matched against their blocks, to
    name the first entry no block made."""
    stored = sum(1 for _ in store.iterate(schema.ADDRESS_TX_PREFIX))
    if stored == expected:
        return
    genesis = chaindb.genesis_address_changes(config.allocations, config.bonds)
    made: dict[int, chaindb.Changes] = {0: genesis}
    for key, _ in store.iterate(schema.ADDRESS_TX_PREFIX):
        address, at, index = schema.split_address_tx_key(key)
        if at not in made:
            if len(made) > BLOCK_CACHE:
                made = {0: genesis}
            raw = store.get(schema.make_block_key(at)) if 0 < at <= height else None
            made[at] = chaindb.address_index_changes(at, Block.decode(raw).txs) if raw is not None else {}
        if key not in made[at]:
            raise VerificationError(
                f"address index entry of {address} at height {at} (tx {index}) belongs to no transaction", height
            )
    raise VerificationError(f"the address index holds {stored} entries, the chain makes {expected}", height)


def verify_recent(store: KeyValueStore, tip: BlockHeader, params: Params, count: int) -> VerifyReport:
    """Check only the newest ``count`` blocks, cheaply (bitcoin-cli ``verifychain`` depth): each
    decodes, is indexed (hash, txs, addresses), links to its parent, follows the parent's seed,
    commits to its txs and evidence, carries good signatures and VRF proofs, and was won by a
    proposer its trace names. What needs the parent *state* (the draw's weights, balances, the
    state root) is left to the full replay."""
    started = time.perf_counter()
    check_recent_blocks(store, tip, count)
    low = max(tip.height - count + 1, 0)
    indexed = has_address_index(store)
    tx_count = 0
    with SignatureChecker() as signatures:
        for height in range(low, tip.height + 1):
            block = _stored_block(store, height)
            tx_count += len(block.txs)
            if height == 0:
                if indexed:
                    _check_address_entries(store, 0, _genesis_address_records(store))
                continue
            if indexed:
                _check_address_entries(store, height, chaindb.address_index_changes(height, block.txs).items())
            parent = _stored_block(store, height - 1).header
            signatures.check(height, block.txs)
            try:
                _check_block_alone(block, parent, params)
            except LedgerError as exc:
                signatures.finish()
                raise VerificationError(f"height {height}: {exc}", height) from None
        signatures.finish()
    return VerifyReport(tip.height, tip.height - low + 1, tx_count, time.perf_counter() - started, indexed)


def _genesis_address_records(store: KeyValueStore) -> Iterator[tuple[bytes, bytes]]:
    try:
        config = decode_config(chaindb.read_genesis_config(store) or b"")
    except LedgerError as exc:
        raise VerificationError(f"genesis configuration is damaged: {exc}", 0) from None
    return chaindb.genesis_address_records(config.allocations, config.bonds)


def _check_block_alone(block: Block, parent: BlockHeader, params: Params) -> None:
    """The rules of a block that its parent header alone can check."""
    header = block.header
    validate_header(header, parent)
    if header.tx_root != compute_tx_root([tx.tx_id for tx in block.txs]):
        raise VerificationError("tx_root does not match its transactions", block.height)
    if header.evidence_root != compute_evidence_root([item.evidence_id for item in block.evidence]):
        raise VerificationError("evidence_root does not match its evidence", block.height)
    outputs = check_proposals(block.txs, block.height, header.seed, params)
    winners = [entry.address for entry in block.trace if entry.proposed]
    if not winners or winners[0] != header.validator:
        raise VerificationError(f"the draw trace does not name validator {header.validator} as the winner", block.height)
    if header.vrf_output != outputs.get(header.validator):
        raise VerificationError("vrf_output is not the VRF output of the winner's proposal", block.height)


def check_recent_blocks(store: KeyValueStore, tip: BlockHeader, count: int) -> None:
    """Re-read the newest ``count`` blocks (as Bitcoin Core's ``-checkblocks`` does at start-up):
    each decodes, is indexed by its hash and its txs, links to its parent, and the tip record
    names the newest. Cheap enough for every start; raises :class:`VerificationError`."""
    child: Block | None = None
    for height in range(tip.height, max(tip.height - count, -1), -1):
        block = _stored_block(store, height)
        if child is None and block.hash != tip.hash:
            raise VerificationError(f"height {height}: the tip record does not name this block", height)
        if child is not None and child.header.prev_hash != block.hash:
            raise VerificationError(f"height {child.height}: its parent hash does not match block {height}", height)
        _check_tx_index(store, block)
        child = block


def _stored_block(store: KeyValueStore, height: int) -> Block:
    raw = store.get(schema.make_block_key(height))
    if raw is None:
        raise VerificationError(f"height {height}: block is missing", height)
    try:
        block = Block.decode(raw)
    except LedgerError as exc:
        raise VerificationError(f"height {height}: stored block is damaged: {exc}", height) from None
    if block.height != height:
        raise VerificationError(f"height {height}: stored block claims height {block.height}", height)
    indexed = store.get(schema.make_block_hash_key(block.hash))
    if indexed is None or schema.decode_u64(indexed) != height:
        raise VerificationError(f"height {height}: block hash index does not point at this block", height)
    return block


def _check_tx_index(store: KeyValueStore, block: Block) -> None:
    for index, tx in enumerate(block.txs):
        expected = chaindb.encode_tx_location(chaindb.TxLocation(block.height, index))
        if store.get(schema.make_tx_location_key(tx.tx_id)) != expected:
            raise VerificationError(f"height {block.height}: tx index entry of {tx.id_hex} is wrong", block.height)


def _compare_blocks_won(store: KeyValueStore, replayed: dict[str, int], height: int) -> None:
    """The blocks-won index behind ``validators`` must count exactly the replayed winners."""
    stored = {
        key[len(schema.BLOCKS_WON_PREFIX):].decode("ascii", "replace"): schema.decode_u64(value)
        for key, value in store.iterate(schema.BLOCKS_WON_PREFIX)
    }
    for address in sorted(set(stored) | set(replayed)):
        if stored.get(address, 0) != replayed.get(address, 0):
            raise VerificationError(
                f"blocks-won index of {address} says {stored.get(address, 0)}, "
                f"the chain says {replayed.get(address, 0)}", height
            )


def _compare_state(store: KeyValueStore, replayed: DictState, tip: BlockHeader) -> None:
    prefix = schema.STATE_PREFIX
    seen = 0
    for db_key, value in store.iterate(prefix):
        key = db_key[len(prefix):]
        expected = replayed.entries.get(key)
        if expected != value:
            what = "is not in the replayed state" if expected is None else "differs from the replayed value"
            raise VerificationError(f"state entry {key.decode('ascii', 'replace')} {what}", tip.height)
        seen += 1
    if seen != len(replayed.entries):
        stored = {k[len(prefix):] for k, _ in store.iterate(prefix)}
        missing = sorted(set(replayed.entries) - stored)
        raise VerificationError(
            f"state entry {missing[0].decode('ascii', 'replace')} is missing from the database", tip.height
        )
    totals = WorkingState(replayed.get).totals()
    if totals.supply != totals.issued - totals.burned:
        raise VerificationError(
            f"supply {totals.supply} differs from issued {totals.issued} minus burned {totals.burned}", tip.height
        )
    if hash_state(list(replayed.entries.items())).digest() != tip.state_root:
        raise VerificationError("the tip's state root does not commit to the stored state", tip.height)


__all__ = ["ProgressCallback", "VerifyReport", "has_address_index", "verify_chain", "verify_recent"]
