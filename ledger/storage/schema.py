"""Every LevelDB key layout, as ``make_*_key()`` functions under one versioned prefix.

Heights and sequence numbers are 8-byte big-endian so that LevelDB's byte order is their
numeric order. State keys are relative (``account:pos1…``); the state root hashes those, and
:func:`make_state_key` places them in the database (the relative keys live with the rules, in
:mod:`ledger.consensus.state`).
"""

from __future__ import annotations


SCHEMA_VERSION = 2
"""Bumped whenever a layout or a stored format changes; a database of another version is refused.
2: consensus v2 (VRF proposals, seed chain, draw traces, evidence, validator records)."""

SCHEMA_VERSION_KEY = b"posctl:schema-version"
"""Outside the versioned prefix, so any version of posctl can read it."""

PREFIX = b"v2:"

TIP_KEY = PREFIX + b"tip"
GENESIS_KEY = PREFIX + b"genesis"
"""The whole genesis configuration in one record: how databases made before the parts below
stored it (still read)."""
GENESIS_PART_PREFIX = PREFIX + b"genesis-part:"
"""The genesis configuration in parts of :data:`GENESIS_PART_SIZE` bytes, in order. LevelDB
stores a value in the same block as its neighbours, and reading any key reads (and checksums)
its whole block: one 50 MB record (a million allocations) made every read of the schema version
or of block 0 cost 50 MB. In parts, a neighbour's read costs at most one part."""
GENESIS_PART_SIZE = 64 * 1024
MEMPOOL_META_KEY = PREFIX + b"mempool-meta"

BLOCK_PREFIX = PREFIX + b"block:"
BLOCK_HASH_PREFIX = PREFIX + b"block-hash:"
TX_LOCATION_PREFIX = PREFIX + b"tx:"
STATE_PREFIX = PREFIX + b"state:"
MEMPOOL_PREFIX = PREFIX + b"mempool:"
MEMPOOL_ID_PREFIX = PREFIX + b"mempool-id:"
MEMPOOL_SENDER_PREFIX = PREFIX + b"mempool-sender:"
MEMPOOL_RECIPIENT_PREFIX = PREFIX + b"mempool-recipient:"
MEMPOOL_EVIDENCE_PREFIX = PREFIX + b"mempool-evidence:"
EVICTED_PREFIX = PREFIX + b"evicted:"
BLOCKS_WON_PREFIX = PREFIX + b"won:"
ADDRESS_TX_PREFIX = PREFIX + b"addr-tx:"
"""The address index: one entry per (address, height, tx index) an address took part in."""

ADDRESS_INDEX_KEY = PREFIX + b"addr-index"
"""Present when the address index covers every block: written with genesis (and never by a chain
made before the index existed, whose history is refused with what to do)."""

def encode_u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def decode_u64(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def make_genesis_part_key(index: int) -> bytes:
    return GENESIS_PART_PREFIX + encode_u64(index)


def make_block_key(height: int) -> bytes:
    return BLOCK_PREFIX + encode_u64(height)


def make_block_hash_key(block_hash: bytes) -> bytes:
    return BLOCK_HASH_PREFIX + block_hash


def make_tx_location_key(tx_id: bytes) -> bytes:
    return TX_LOCATION_PREFIX + tx_id


def make_state_key(state_key: bytes) -> bytes:
    return STATE_PREFIX + state_key


def make_mempool_key(seq: int) -> bytes:
    return MEMPOOL_PREFIX + encode_u64(seq)


def make_mempool_id_key(tx_id: bytes) -> bytes:
    return MEMPOOL_ID_PREFIX + tx_id


def make_mempool_sender_prefix(address: str) -> bytes:
    return MEMPOOL_SENDER_PREFIX + address.encode("ascii") + b":"


def make_mempool_sender_key(address: str, nonce: int) -> bytes:
    return make_mempool_sender_prefix(address) + encode_u64(nonce)


def make_mempool_recipient_prefix(address: str) -> bytes:
    return MEMPOOL_RECIPIENT_PREFIX + address.encode("ascii") + b":"


def make_mempool_recipient_key(address: str, seq: int) -> bytes:
    """A pending transfer to ``address``, by arrival: ``history`` lists incoming pending txs too."""
    return make_mempool_recipient_prefix(address) + encode_u64(seq)


def make_evicted_key(tx_id: bytes) -> bytes:
    return EVICTED_PREFIX + tx_id


def make_blocks_won_key(address: str) -> bytes:
    return BLOCKS_WON_PREFIX + address.encode("ascii")


def make_address_tx_prefix(address: str) -> bytes:
    """Every index entry of ``address``; a reverse scan of it yields the newest first."""
    return ADDRESS_TX_PREFIX + address.encode("ascii") + b":"


def make_address_tx_key(address: str, height: int, index: int) -> bytes:
    """Height then index, big-endian, so byte order is chain order within one address."""
    return make_address_tx_prefix(address) + encode_u64(height) + index.to_bytes(4, "big")


def split_address_tx_key(key: bytes) -> tuple[str, int, int]:
    """(address, height, index) of an address index key (inverse of :func:`make_address_tx_key`)."""
    body = key[len(ADDRESS_TX_PREFIX):]
    address, height, index = body[:-13], body[-12:-4], body[-4:]
    return address.decode("ascii", "replace"), decode_u64(height), int.from_bytes(index, "big")


def make_mempool_evidence_key(evidence_id: bytes) -> bytes:
    return MEMPOOL_EVIDENCE_PREFIX + evidence_id
