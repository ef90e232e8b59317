"""What a commit writes: genesis and each block as one batch of keys, with the records' codecs.

The facade decides *when* to commit; this module decides *what bytes* a commit writes and how
those records read back, so every stored format sits next to :mod:`ledger.storage.schema`'s
keys and nowhere else. Nothing here writes: callers hand the returned changes to
``KeyValueStore.write`` as one synced atomic batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

from ledger import encoding
from ledger.consensus.blocks import Block, BlockHeader
from ledger.consensus.transactions import Transaction
from ledger.crypto.muhash import MuHash3072
from ledger.storage import schema
from ledger.storage.store import KeyValueStore

Changes = dict[bytes, "bytes | None"]
"""Database key → new value, or None to delete."""


@dataclass(frozen=True)
class TxLocation:
    """Where an included tx sits: the block's height and its index among the block's txs."""

    height: int
    index: int


@dataclass(frozen=True)
class EvictedRecord:
    """A tx the forger dropped, and why, at the height it was dropped."""

    reason: str
    height: int
    tx: Transaction


# ---- record codecs -----------------------------------------------------------------------------


def encode_tip(header: BlockHeader, muhash: MuHash3072) -> bytes:
    return encoding.encode({"header": header.to_dict(), "muhash": muhash.to_bytes().hex()})


def decode_tip(raw: bytes) -> tuple[BlockHeader, MuHash3072]:
    """The tip's header and state accumulator. Raises ``EncodingError``/``InvalidBlock`` if damaged."""
    data = encoding.require_fields(encoding.decode(raw), {"header", "muhash"}, "tip record")
    header = BlockHeader.from_dict(data["header"])
    muhash = MuHash3072.from_bytes(encoding.hex_to_bytes(data["muhash"], "muhash"))
    return header, muhash


def encode_tx_location(location: TxLocation) -> bytes:
    return schema.encode_u64(location.height) + location.index.to_bytes(4, "big")


def decode_tx_location(raw: bytes) -> TxLocation:
    return TxLocation(schema.decode_u64(raw[:8]), int.from_bytes(raw[8:], "big"))


def encode_evicted(record: EvictedRecord) -> bytes:
    return encoding.encode({"reason": record.reason, "height": record.height, "tx": record.tx.to_dict()})


def decode_evicted(raw: bytes) -> EvictedRecord:
    data = encoding.require_fields(encoding.decode(raw), {"reason", "height", "tx"}, "eviction record")
    return EvictedRecord(data["reason"], data["height"], Transaction.from_dict(data["tx"]))


def decode_count(raw: bytes | None) -> int:
    """A stored counter (blocks won), 0 when absent."""
    return schema.decode_u64(raw) if raw else 0


def genesis_config_records(config_bytes: bytes) -> list[tuple[bytes, bytes]]:
    """The canonical genesis configuration as records of at most ``GENESIS_PART_SIZE`` bytes."""
    size = schema.GENESIS_PART_SIZE
    return [
        (schema.make_genesis_part_key(index), config_bytes[start:start + size])
        for index, start in enumerate(range(0, max(len(config_bytes), 1), size))
    ]


def read_genesis_config(store: KeyValueStore) -> bytes | None:
    """The canonical genesis configuration's bytes, from its parts (or, in a database made
    before them, its single record); ``None`` if there is none. Whether the bytes are whole is
    for their decoding and the genesis hash to say (``verify`` checks both)."""
    whole = store.get(schema.GENESIS_KEY)
    if whole is not None:
        return whole
    parts = [value for _, value in store.iterate(schema.GENESIS_PART_PREFIX)]
    return b"".join(parts) if parts else None


# ---- the batches -------------------------------------------------------------------------------


def genesis_changes(
    config_bytes: bytes, block: Block, state_entries: Mapping[bytes, bytes], muhash: MuHash3072
) -> Changes:
    """Genesis in one batch, schema version included: an ``init`` killed half-way leaves an
    empty database, never half a chain."""
    changes: Changes = {schema.make_state_key(key): value for key, value in state_entries.items()}
    changes[schema.SCHEMA_VERSION_KEY] = str(schema.SCHEMA_VERSION).encode("ascii")
    changes.update(genesis_config_records(config_bytes))
    changes[schema.make_block_key(0)] = block.encode()
    changes[schema.make_block_hash_key(block.hash)] = schema.encode_u64(0)
    changes[schema.TIP_KEY] = encode_tip(block.header, muhash)
    return changes


def genesis_records(
    state_parts: Iterable[Iterable[tuple[bytes, bytes]]], finished: Callable[[], tuple[bytes, Block, MuHash3072]]
) -> Iterator[tuple[bytes, bytes]]:
    """:func:`genesis_changes` as a stream, for ``KeyValueStore.write_stream``: the state entries
    part by part as they are computed, then (``finished`` gives config bytes, block and
    accumulator once the parts are consumed) the records that name them. A million-account
    genesis then never holds its entries twice before the one atomic batch."""
    prefix = schema.STATE_PREFIX
    for part in state_parts:
        yield from [(prefix + key, value) for key, value in part]
    config_bytes, block, muhash = finished()
    yield schema.SCHEMA_VERSION_KEY, str(schema.SCHEMA_VERSION).encode("ascii")
    yield from genesis_config_records(config_bytes)
    yield schema.make_block_key(0), block.encode()
    yield schema.make_block_hash_key(block.hash), schema.encode_u64(0)
    yield schema.TIP_KEY, encode_tip(block.header, muhash)


def block_changes(
    block: Block, state_writes: Mapping[bytes, bytes | None], muhash: MuHash3072, blocks_won_before: int
) -> Changes:
    """A block, its hash and tx indexes, its state changes, the winner's count and the new tip."""
    height = block.height
    changes: Changes = {
        schema.make_block_key(height): block.encode(),
        schema.make_block_hash_key(block.hash): schema.encode_u64(height),
    }
    for index, tx in enumerate(block.txs):
        changes[schema.make_tx_location_key(tx.tx_id)] = encode_tx_location(TxLocation(height, index))
    for key, value in state_writes.items():
        changes[schema.make_state_key(key)] = value
    changes[schema.make_blocks_won_key(block.header.validator)] = schema.encode_u64(blocks_won_before + 1)
    changes[schema.TIP_KEY] = encode_tip(block.header, muhash)
    return changes


def eviction_changes(records: Iterable[EvictedRecord]) -> Changes:
    return {schema.make_evicted_key(record.tx.tx_id): encode_evicted(record) for record in records}


__all__ = [
    "Changes", "EvictedRecord", "TxLocation", "block_changes", "decode_count", "decode_evicted",
    "decode_tip", "decode_tx_location", "encode_tip", "encode_tx_location", "eviction_changes",
    "genesis_changes", "genesis_config_records", "genesis_records", "read_genesis_config",
]
