"""What a commit writes: genesis and each block as one batch of keys, with the records' codecs.

The facade decides *when* to commit; this module decides *what bytes* a commit writes and how
those records read back, so every stored format sits next to :mod:`ledger.storage.schema`'s
keys and nowhere else. Nothing here writes: callers hand the returned changes to
``KeyValueStore.write`` as one synced atomic batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from ledger import encoding
from ledger.consensus.blocks import Block, BlockHeader
from ledger.consensus.transactions import Stake, Transaction, Transfer, Unstake
from ledger.crypto.muhash import MuHash3072
from ledger.errors import EncodingError
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


SENT, RECEIVED = "sent", "received"
"""An address index entry's direction: the address signed the tx, or a transfer paid it."""

GENESIS_KIND = "genesis"
"""The kind of the height-0 entry of every address that genesis funded or bonded."""


@dataclass(frozen=True)
class AddressEntry:
    """What an address index entry records about one tx, so that a history page reads one entry
    per line and never a whole block. Key: (address, height, tx index)."""

    kind: str
    direction: str
    tx_id: bytes | None = None
    """None only for a genesis entry."""
    counterparty: str | None = None
    """The other side of a transfer (for a transfer to oneself: oneself)."""
    amount: int | None = None
    """Tokens moved (transfer, stake, unstake; at genesis the allocation plus the bond)."""


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


_HAS_ID, _HAS_AMOUNT, _HAS_COUNTERPARTY, _RECEIVED = 1, 2, 4, 8
"""Flag bits of an address index entry's first byte."""


def encode_address_entry(entry: AddressEntry) -> bytes:
    """Compact bytes: flags, kind (length-prefixed), then the tx id (32), the amount (8, big-endian)
    and the counterparty (length-prefixed ASCII) when present, so a cut entry never reads back. Binary rather than JSON: a block of
    1000 transfers writes 2000 of these in its batch."""
    flags = (_HAS_ID if entry.tx_id is not None else 0) | (_HAS_AMOUNT if entry.amount is not None else 0) \
        | (_HAS_COUNTERPARTY if entry.counterparty is not None else 0) | (_RECEIVED if entry.direction == RECEIVED else 0)
    kind = entry.kind.encode("ascii")
    parts = [bytes([flags, len(kind)]), kind]
    if entry.tx_id is not None:
        parts.append(entry.tx_id)
    if entry.amount is not None:
        parts.append(entry.amount.to_bytes(8, "big"))
    if entry.counterparty is not None:
        counterparty = entry.counterparty.encode("ascii")
        parts += [bytes([len(counterparty)]), counterparty]
    return b"".join(parts)


def decode_address_entry(raw: bytes) -> AddressEntry:
    """Raises ``EncodingError`` for a damaged entry."""
    if len(raw) < 2 or raw[0] > 15 or len(raw) < 2 + raw[1]:
        raise EncodingError("address index entry is truncated or has unknown flags")
    flags, end = raw[0], 2 + raw[1]
    kind = raw[2:end].decode("ascii", "replace")
    tx_id = amount = counterparty = None
    if flags & _HAS_ID:
        tx_id, end = raw[end:end + 32], end + 32
    if flags & _HAS_AMOUNT:
        amount, end = int.from_bytes(raw[end:end + 8], "big"), end + 8
    if flags & _HAS_COUNTERPARTY and end < len(raw):
        size, end = raw[end], end + 1
        counterparty, end = raw[end:end + size].decode("ascii", "replace"), end + size
    elif flags & _HAS_COUNTERPARTY:
        end += 1
    if end != len(raw) or (tx_id is not None and len(tx_id) != 32) or counterparty == "":
        raise EncodingError("address index entry has the wrong length for its fields")
    return AddressEntry(kind, RECEIVED if flags & _RECEIVED else SENT, tx_id, counterparty, amount)


def tx_address_entries(tx: Transaction) -> list[tuple[str, AddressEntry]]:
    """The index entries one tx makes: its sender's, and a transfer's recipient's (unless the
    recipient is the sender: one entry per address and position)."""
    sender = tx.sender
    match tx:
        case Transfer(to=to, amount=amount):
            entries = [(sender, AddressEntry(tx.kind, SENT, tx.tx_id, to, amount))]
            if to != sender:
                entries.append((to, AddressEntry(tx.kind, RECEIVED, tx.tx_id, sender, amount)))
            return entries
        case Stake(amount=amount) | Unstake(amount=amount):
            return [(sender, AddressEntry(tx.kind, SENT, tx.tx_id, amount=amount))]
        case _:
            return [(sender, AddressEntry(tx.kind, SENT, tx.tx_id))]


def address_index_changes(height: int, txs: Sequence[Transaction]) -> Changes:
    """The address index entries of a block's txs: O(1) per tx."""
    changes: Changes = {}
    for index, tx in enumerate(txs):
        for address, entry in tx_address_entries(tx):
            changes[schema.make_address_tx_key(address, height, index)] = encode_address_entry(entry)
    return changes


def genesis_address_records(allocations: Mapping[str, int], bonds: Mapping[str, int]) -> Iterator[tuple[bytes, bytes]]:
    """One height-0 entry per address genesis gave tokens to (liquid plus bonded), streamed: a
    million allocations are never copied into a second mapping."""
    for address, amount in allocations.items():
        yield genesis_address_record(address, amount + bonds.get(address, 0))
    for address, amount in bonds.items():
        if address not in allocations:
            yield genesis_address_record(address, amount)


def genesis_address_record(address: str, amount: int) -> tuple[bytes, bytes]:
    """The height-0 entry of an address genesis gave ``amount`` tokens (liquid plus bonded)."""
    return schema.make_address_tx_key(address, 0, 0), encode_address_entry(AddressEntry(GENESIS_KIND, RECEIVED, amount=amount))


def genesis_address_changes(allocations: Mapping[str, int], bonds: Mapping[str, int]) -> Changes:
    """:func:`genesis_address_records` as a mapping, for verify to compare with."""
    return dict(genesis_address_records(allocations, bonds))


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
    parts = list(genesis_config_parts(store))
    return b"".join(parts) if parts else None


def genesis_config_parts(store: KeyValueStore) -> Iterator[bytes]:
    """The canonical genesis configuration's bytes a part at a time, in order (a million
    allocations are 50 MB: a reader that streams them never holds them whole)."""
    whole = store.get(schema.GENESIS_KEY)
    if whole is not None:
        yield whole
        return
    for _, value in store.iterate(schema.GENESIS_PART_PREFIX):
        yield value


def genesis_block_records(block: Block) -> list[tuple[bytes, bytes]]:
    """The genesis block and its hash's index entry."""
    return [(schema.make_block_key(0), block.encode()), (schema.make_block_hash_key(block.hash), schema.encode_u64(0))]


# ---- the batches -------------------------------------------------------------------------------


def genesis_records(
    state_parts: Iterable[Iterable[tuple[bytes, bytes]]], finished: Callable[[], tuple[bytes, Block, MuHash3072]],
    address_records: Iterable[tuple[bytes, bytes]],
) -> Iterator[tuple[bytes, bytes]]:
    """Genesis but its tip, as one stream for ``KeyValueStore.write_stream``: the state entries
    part by part as they are computed, the address index's height-0 entries
    (:func:`genesis_address_records`) and the marker saying the index is complete, then
    (``finished`` gives config bytes, block and accumulator once the parts are consumed) the
    records that name them. A million-account genesis never holds its entries twice. The tip
    (:func:`genesis_tip_record`) is written after all of it, on its own: a chain without one was
    never initialised completely."""
    yield schema_version_record()  # first: a part of genesis on disk is then a posctl chain that
    # was never finished, not a foreign database
    prefix = schema.STATE_PREFIX
    for part in state_parts:
        yield from [(prefix + key, value) for key, value in part]
    yield from address_records
    yield schema.ADDRESS_INDEX_KEY, b"1"
    config_bytes, block, muhash = finished()
    yield from genesis_config_records(config_bytes)
    yield from genesis_block_records(block)


def schema_version_record() -> tuple[bytes, bytes]:
    """The schema version: the first record genesis writes."""
    return schema.SCHEMA_VERSION_KEY, str(schema.SCHEMA_VERSION).encode("ascii")


def genesis_tip_record(finished: Callable[[], tuple[bytes, Block, MuHash3072]]) -> Changes:
    """The tip naming the genesis block: written last, it says the genesis before it is whole."""
    _, block, muhash = finished()
    return {schema.TIP_KEY: encode_tip(block.header, muhash)}


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
    changes.update(address_index_changes(height, block.txs))
    for key, value in state_writes.items():
        changes[schema.make_state_key(key)] = value
    changes[schema.make_blocks_won_key(block.header.validator)] = schema.encode_u64(blocks_won_before + 1)
    changes[schema.TIP_KEY] = encode_tip(block.header, muhash)
    return changes


def eviction_changes(records: Iterable[EvictedRecord]) -> Changes:
    return {schema.make_evicted_key(record.tx.tx_id): encode_evicted(record) for record in records}


__all__ = [
    "AddressEntry", "Changes", "EvictedRecord", "GENESIS_KIND", "RECEIVED", "SENT", "address_index_changes",
    "decode_address_entry", "encode_address_entry", "genesis_address_changes", "genesis_address_records", "tx_address_entries", "TxLocation", "block_changes", "decode_count", "decode_evicted",
    "decode_tip", "decode_tx_location", "encode_tip", "encode_tx_location", "eviction_changes",
    "genesis_address_record", "genesis_block_records", "genesis_config_parts", "genesis_config_records", "genesis_records", "genesis_tip_record", "read_genesis_config", "schema_version_record",
]
