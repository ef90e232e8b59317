"""Chain parameters: their defaults in one place, fixed for a chain's life in its genesis state."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ledger.errors import InvalidParams

MAX_AMOUNT = 2**63
"""Exclusive upper bound of every amount: an amount is an integer in [1, 2^63)."""

CHAIN_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
"""Chain ids are short lowercase names such as ``posctl-local-1``: easy to type, hard to confuse."""

DEFAULT_CHAIN_ID = "posctl-local-1"

BPS = 10_000
"""Basis points in a whole: 500 bps = 5%."""

MAX_BLOCK_REWARD = MAX_AMOUNT // 10**9
"""About 9.2 billion: a validator winning a billion blocks in a row still cannot reach the 2^63
an account can hold. Above it a chain could reach a block that pays a reward nobody can hold,
and no block could be forged after it."""


@dataclass(frozen=True)
class Params:
    """Every tunable rule of a chain.

    Stored in the genesis state, so the state root commits to them and nobody can change them
    for a running chain.
    """

    chain_id: str = DEFAULT_CHAIN_ID
    min_stake: int = 100
    """Bonded stake a validator needs for its BPM proposals to enter the lottery."""
    unbonding_blocks: int = 10
    """Blocks between an unstake and the moment its tokens are liquid again (at least 1)."""
    block_reward: int = 10
    """New tokens paid to each block's validator: the only source of supply after genesis."""
    max_block_txs: int = 1000
    bpm_min: int = 20
    bpm_max: int = 250
    max_tx_bytes: int = 4096
    """A signed transaction's encoded size limit; a real tx is about 400 bytes."""
    max_mempool_txs: int = 100_000
    slash_fraction_bps: int = 500
    """Share of an equivocating validator's bonded and recently unbonding stake taken, in basis points."""
    whistleblower_bps: int = 1000
    """Share of the slashed tokens paid to the block's validator that included the evidence; the rest is burned."""
    max_missed: int = 100
    """Consecutive turns as first drawn without a proposal after which a validator is jailed."""

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, str) or not CHAIN_ID_PATTERN.fullmatch(self.chain_id):
            raise InvalidParams(
                f"chain id {self.chain_id!r} is not valid: use 1-48 lowercase letters, digits and '-'"
            )
        for field in dataclasses.fields(self):
            if field.name == "chain_id":
                continue
            value = getattr(self, field.name)
            if type(value) is not int:
                raise InvalidParams(f"parameter {field.name} must be an integer, got {value!r}")
            if not 0 <= value < MAX_AMOUNT:
                raise InvalidParams(f"parameter {field.name}={value} is out of range [0, 2^63)")
        # unbonding_blocks >= 1: an entry due at the current height would be released by a
        # block start that has already passed, and stay locked for ever.
        for name in ("min_stake", "unbonding_blocks", "max_block_txs", "bpm_min", "max_tx_bytes", "max_mempool_txs"):
            if getattr(self, name) < 1:
                raise InvalidParams(f"parameter {name} must be at least 1")
        for name in ("slash_fraction_bps", "whistleblower_bps"):
            if getattr(self, name) > BPS:
                raise InvalidParams(f"parameter {name}={getattr(self, name)} is above {BPS} (100%)")
        if self.block_reward > MAX_BLOCK_REWARD:
            raise InvalidParams(
                f"parameter block_reward={self.block_reward} is above {MAX_BLOCK_REWARD}: a validator's balance "
                "could overflow 2^63 and stop the chain"
            )
        if self.max_missed < 1:
            raise InvalidParams("parameter max_missed must be at least 1")
        if self.bpm_min > self.bpm_max:
            raise InvalidParams(f"bpm_min ({self.bpm_min}) is above bpm_max ({self.bpm_max})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Params":
        if not isinstance(data, Mapping):
            raise InvalidParams("chain parameters must be an object of name: value")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParams(
                f"unknown parameter {unknown[0]!r}: known parameters are {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]
