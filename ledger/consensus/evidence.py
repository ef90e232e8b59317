"""Evidence of equivocation: two different signed proposals from one validator for one height.

Anyone can submit it (``posctl chain evidence A B``, ``POST /evidence``), the mempool records the
first conflicting pair it sees by itself, and the forger puts pending evidence in the block body.
Applying it slashes the validator (:func:`ledger.consensus.state.slash_validator`) and
tombstones it. A pair is stored with its proposals in tx-id order, so the same equivocation has
one encoding and one id, and can be used once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ledger import encoding
from ledger.consensus.state import WorkingState
from ledger.consensus.transactions import Bpm, Transaction, verify_signature
from ledger.errors import (
    DuplicateEvidence,
    EncodingError,
    EvidenceMismatch,
    EvidenceTooOld,
    InvalidEvidence,
    InvalidSignature,
    ValidatorTombstoned,
    WrongChain,
)
from ledger.params import Params

EVIDENCE_TAG = "posctl/evidence"
"""Domain tag of evidence ids."""


@dataclass(frozen=True)
class Evidence:
    """Two proposals, ``first.tx_id < second.tx_id``: build with :func:`make_evidence`."""

    first: Bpm
    second: Bpm

    @functools.cached_property
    def evidence_id(self) -> bytes:
        return encoding.tagged_hash(EVIDENCE_TAG, self.first.tx_id + self.second.tx_id)

    @property
    def id_hex(self) -> str:
        return self.evidence_id.hex()

    @property
    def validator(self) -> str:
        return self.first.sender

    @property
    def height(self) -> int:
        """The height both proposals were signed for: the infraction height."""
        return self.first.height

    def to_dict(self) -> dict[str, Any]:
        return {"first": self.first.to_dict(), "second": self.second.to_dict()}

    def encode(self) -> bytes:
        return encoding.encode(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any) -> "Evidence":
        data = encoding.require_fields(obj, {"first", "second"}, "evidence")
        first, second = Transaction.from_dict(data["first"]), Transaction.from_dict(data["second"])
        evidence = make_evidence(first, second)
        if evidence.first is not first:
            raise EncodingError("evidence proposals must be in tx-id order (first < second)")
        return evidence

    @classmethod
    def decode(cls, data: bytes) -> "Evidence":
        return cls.from_dict(encoding.decode(data))


def make_evidence(a: Transaction, b: Transaction) -> Evidence:
    """The evidence of two proposals, in canonical order; refuses what could never be evidence."""
    if not isinstance(a, Bpm) or not isinstance(b, Bpm):
        raise InvalidEvidence("evidence is two bpm proposals; a transfer, stake, unstake or unjail proves nothing")
    if a.tx_id == b.tx_id:
        raise EvidenceMismatch("the two proposals are the same transaction: equivocation needs two different ones")
    first, second = (a, b) if a.tx_id < b.tx_id else (b, a)
    return Evidence(first, second)


def check_evidence_form(evidence: Evidence, params: Params) -> None:
    """Every rule that needs no state: one chain, one validator, one height, two good signatures."""
    for proposal in (evidence.first, evidence.second):
        if proposal.chain_id != params.chain_id:
            raise WrongChain(f"evidence proposal is for chain {proposal.chain_id!r}, this chain is {params.chain_id!r}")
    if evidence.first.public_key != evidence.second.public_key:
        raise EvidenceMismatch(
            f"the proposals come from two different validators ({evidence.first.sender} and "
            f"{evidence.second.sender}): that is no equivocation"
        )
    if evidence.first.height != evidence.second.height:
        raise EvidenceMismatch(
            f"the proposals are for two different heights ({evidence.first.height} and "
            f"{evidence.second.height}): a validator may propose once per height"
        )
    for proposal in (evidence.first, evidence.second):
        try:
            verify_signature(proposal)
        except InvalidSignature as exc:
            raise InvalidEvidence(f"proposal {proposal.id_hex} is not signed by its validator: {exc}") from None


def check_evidence(view: WorkingState, evidence: Evidence, height: int, params: Params) -> None:
    """The stateful rules for using ``evidence`` in block ``height`` (form checked already)."""
    used = view.evidence_height(evidence.evidence_id)
    if used is not None:
        raise DuplicateEvidence(f"evidence {evidence.id_hex} was already used in block {used}")
    # Stake unbonded in the infraction's block h is released at the start of block
    # h + unbonding_blocks, before evidence applies: from then on it is out of reach.
    if height - evidence.height >= params.unbonding_blocks:
        raise EvidenceTooOld(
            f"the equivocation at height {evidence.height} is {height - evidence.height} blocks old at height "
            f"{height}: evidence must come within unbonding_blocks ({params.unbonding_blocks}), while the stake "
            "unbonded since the infraction is still locked"
        )
    if view.account(evidence.validator).tombstoned:
        raise ValidatorTombstoned(f"{evidence.validator} is already tombstoned: a validator is slashed once")
