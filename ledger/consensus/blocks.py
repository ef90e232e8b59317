"""Blocks and headers: frozen data, canonical bytes, hashes and the stateless checks.

The block hash covers every header field, the validator included, so nobody can take a block
and claim its reward. The header commits to the transactions (``tx_root``), the evidence
(``evidence_root``), the lottery seed and the winner's VRF output (``seed``, ``vrf_output``: the
next seed is made from them) and the whole state after the block (``state_root``). The draw
trace travels with the block so that ``chain show`` can explain any old draw without replaying;
replay checks it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

from ledger import encoding
from ledger.crypto.address import Address
from ledger.encoding import Hash32
from ledger.errors import EncodingError
from ledger.consensus.evidence import Evidence
from ledger.consensus.lottery import TraceEntry
from ledger.consensus.transactions import Transaction

BLOCK_TAG = "posctl/block"
TX_ROOT_TAG = "posctl/tx-root"
EVIDENCE_ROOT_TAG = "posctl/evidence-root"
ZERO_HASH = bytes(32)

HEADER_FIELDS = {"height", "prev_hash", "timestamp", "validator", "seed", "vrf_output", "tx_root",
                 "evidence_root", "state_root"}


def compute_tx_root(tx_ids: Sequence[bytes]) -> Hash32:
    """Commitment to the ordered list of tx ids (a flat hash: posctl has no light clients yet)."""
    return encoding.tagged_hash(TX_ROOT_TAG, b"".join(tx_ids))


def compute_evidence_root(evidence_ids: Sequence[bytes]) -> Hash32:
    """Commitment to the ordered list of evidence ids."""
    return encoding.tagged_hash(EVIDENCE_ROOT_TAG, b"".join(evidence_ids))


@dataclass(frozen=True)
class BlockHeader:
    height: int
    prev_hash: Hash32
    timestamp: int
    validator: Address
    """Winner of the block's lottery; empty only in genesis, which has no lottery."""
    seed: Hash32
    """The lottery seed of this height (genesis: a commitment to its configuration)."""
    vrf_output: Hash32
    """beta of the validator's proposal: the next seed is made from it (genesis: zeros)."""
    tx_root: Hash32
    evidence_root: Hash32
    state_root: Hash32

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "prev_hash": self.prev_hash.hex(),
            "timestamp": self.timestamp,
            "validator": self.validator,
            "seed": self.seed.hex(),
            "vrf_output": self.vrf_output.hex(),
            "tx_root": self.tx_root.hex(),
            "evidence_root": self.evidence_root.hex(),
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
            vrf_output=encoding.hex_to_bytes(data["vrf_output"], "vrf_output", 32),
            tx_root=encoding.hex_to_bytes(data["tx_root"], "tx_root", 32),
            evidence_root=encoding.hex_to_bytes(data["evidence_root"], "evidence_root", 32),
            state_root=encoding.hex_to_bytes(data["state_root"], "state_root", 32),
        )


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[Transaction, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    trace: tuple[TraceEntry, ...] = ()
    """The draw as it happened (bounded: see ``lottery.TRACE_LIMIT``); empty in genesis."""

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
            "evidence": [item.to_dict() for item in self.evidence],
            "trace": [entry.to_list() for entry in self.trace],
        }

    def encode(self) -> bytes:
        """Canonical bytes of :meth:`to_dict`, reusing each tx's cached canonical bytes.

        Sorted keys put ``evidence``, ``header``, ``trace``, ``txs`` in that order; splicing
        the already-canonical parts gives exactly ``encoding.encode(self.to_dict())`` (a test
        checks it) without re-encoding a thousand transactions per block.
        """
        return b"".join((
            b'{"evidence":', encoding.encode([item.to_dict() for item in self.evidence]),
            b',"header":', encoding.encode(self.header.to_dict()),
            b',"trace":', encoding.encode([entry.to_list() for entry in self.trace]),
            b',"txs":[', b",".join(tx.encoded for tx in self.txs), b"]}",
        ))

    @classmethod
    def decode(cls, data: bytes) -> "Block":
        obj = encoding.require_fields(encoding.decode(data), {"header", "txs", "evidence", "trace"}, "block")
        for name in ("txs", "evidence", "trace"):
            if not isinstance(obj[name], list):
                raise EncodingError(f"block field {name!r} must be a list")
        return cls(
            header=BlockHeader.from_dict(obj["header"]),
            txs=tuple(Transaction.from_dict(tx) for tx in obj["txs"]),
            evidence=tuple(Evidence.from_dict(item) for item in obj["evidence"]),
            trace=tuple(TraceEntry.from_list(item) for item in obj["trace"]),
        )
