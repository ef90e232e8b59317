"""Blocks and headers: frozen data, canonical bytes, hashes and the stateless checks.

The block hash covers every header field, the validator included, so nobody can take a block
and claim its reward. The header commits to the transactions (``tx_root``) and to the whole
state after the block (``state_root``). The lottery's participants travel with the block so
that ``chain show`` can explain any old draw without replaying; replay checks them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

from ledger import encoding
from ledger.crypto.address import Address
from ledger.encoding import Hash32
from ledger.errors import EncodingError
from ledger.consensus.transactions import Transaction

BLOCK_TAG = "posctl/block"
TX_ROOT_TAG = "posctl/tx-root"
ZERO_HASH = bytes(32)

HEADER_FIELDS = {"height", "prev_hash", "timestamp", "validator", "seed", "tx_root", "state_root"}


def compute_tx_root(tx_ids: Sequence[bytes]) -> Hash32:
    """Commitment to the ordered list of tx ids (a flat hash: posctl has no light clients yet)."""
    return encoding.tagged_hash(TX_ROOT_TAG, b"".join(tx_ids))


@dataclass(frozen=True)
class BlockHeader:
    height: int
    prev_hash: Hash32
    timestamp: int
    validator: Address
    """Winner of the block's lottery; empty only in genesis, which has no lottery."""
    seed: Hash32
    tx_root: Hash32
    state_root: Hash32

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "prev_hash": self.prev_hash.hex(),
            "timestamp": self.timestamp,
            "validator": self.validator,
            "seed": self.seed.hex(),
            "tx_root": self.tx_root.hex(),
            "state_root": self.state_root.hex(),
        }

    @functools.cached_property
    def hash(self) -> Hash32:
        return encoding.tagged_hash(BLOCK_TAG, encoding.encode(self.to_dict()))

    @classmethod
    def from_dict(cls, obj: Any) -> "BlockHeader":
        data = encoding.require_fields(obj, HEADER_FIELDS, "block header")
        return cls(
            height=encoding.require_int(data["height"], "height"),
            prev_hash=encoding.hex_to_bytes(data["prev_hash"], "prev_hash", 32),
            timestamp=encoding.require_int(data["timestamp"], "timestamp"),
            validator=encoding.require_str(data["validator"], "validator"),
            seed=encoding.hex_to_bytes(data["seed"], "seed", 32),
            tx_root=encoding.hex_to_bytes(data["tx_root"], "tx_root", 32),
            state_root=encoding.hex_to_bytes(data["state_root"], "state_root", 32),
        )


Participants = tuple[tuple[Address, int], ...]
"""(address, bonded stake in the parent state), in address order."""


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[Transaction, ...] = ()
    participants: Participants = ()

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def hash(self) -> Hash32:
        return self.header.hash

    def to_dict(self) -> dict[str, Any]:
        return {
            "header": self.header.to_dict(),
            "txs": [tx.to_dict() for tx in self.txs],
            "participants": [[address, stake] for address, stake in self.participants],
        }

    def encode(self) -> bytes:
        """Canonical bytes of :meth:`to_dict`, reusing each tx's cached canonical bytes.

        Sorted keys put ``header``, ``participants``, ``txs`` in that order; splicing the
        already-canonical parts gives exactly ``encoding.encode(self.to_dict())`` (a test checks
        it) without re-encoding a thousand transactions per block.
        """
        participants = encoding.encode([[address, stake] for address, stake in self.participants])
        return b"".join((
            b'{"header":', encoding.encode(self.header.to_dict()),
            b',"participants":', participants,
            b',"txs":[', b",".join(tx.encoded for tx in self.txs), b"]}",
        ))

    @classmethod
    def decode(cls, data: bytes) -> "Block":
        obj = encoding.require_fields(encoding.decode(data), {"header", "txs", "participants"}, "block")
        if not isinstance(obj["txs"], list) or not isinstance(obj["participants"], list):
            raise EncodingError("block fields 'txs' and 'participants' must be lists")
        participants = []
        for item in obj["participants"]:
            if not isinstance(item, list) or len(item) != 2:
                raise EncodingError("block participants are [address, bonded] pairs")
            participants.append(
                (encoding.require_str(item[0], "participant"), encoding.require_int(item[1], "bonded"))
            )
        return cls(
            header=BlockHeader.from_dict(obj["header"]),
            txs=tuple(Transaction.from_dict(tx) for tx in obj["txs"]),
            participants=tuple(participants),
        )
