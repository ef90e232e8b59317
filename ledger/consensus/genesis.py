"""The genesis configuration and the block of height 0 it defines.

Genesis commits to its whole configuration twice over: the parameters and balances are state
entries under the state root, and the header's ``seed`` field (there is no lottery at height 0)
carries the hash of the canonical configuration itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ledger import encoding
from ledger.crypto.address import parse_address
from ledger.consensus import state
from ledger.consensus import statehash
from ledger.consensus.blocks import ZERO_HASH, Block, BlockHeader, compute_evidence_root, compute_tx_root
from ledger.crypto.address import Address
from ledger.errors import EncodingError, InvalidAddress, InvalidGenesis
from ledger.crypto.muhash import MuHash3072
from ledger.params import MAX_AMOUNT, Params
from ledger.consensus.state import DictState, WorkingState

GENESIS_TAG = "posctl/genesis"

MAX_TIMESTAMP = 253_402_300_799
"""9999-12-31T23:59:59Z: the last second every tool can print as a date."""


def _check_amounts(amounts: Mapping[str, int], what: str) -> dict[Address, int]:
    checked: dict[Address, int] = {}
    for address, amount in amounts.items():
        try:
            canonical = parse_address(address)
        except InvalidAddress as exc:
            raise InvalidGenesis(f"{what}: {exc}") from None
        if type(amount) is not int or not 1 <= amount < MAX_AMOUNT:
            raise InvalidGenesis(f"{what} of {address}: {amount!r} is not a whole amount in [1, 2^63)")
        if canonical in checked:
            raise InvalidGenesis(f"{what} of {canonical} is given twice: give each account once")
        checked[canonical] = amount
    return checked


@dataclass(frozen=True)
class GenesisConfig:
    params: Params = field(default_factory=Params)
    allocations: Mapping[Address, int] = field(default_factory=dict)
    """Liquid balances at height 0."""
    bonds: Mapping[Address, int] = field(default_factory=dict)
    """Bonded stake at height 0: the first validators."""
    timestamp: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "allocations", _check_amounts(self.allocations, "allocation"))
        object.__setattr__(self, "bonds", _check_amounts(self.bonds, "bond"))
        if not any(amount >= self.params.min_stake for amount in self.bonds.values()):
            raise InvalidGenesis(
                f"genesis needs at least one validator bonded with min_stake ({self.params.min_stake}) "
                "or no block could ever be forged: add a bond"
            )
        if type(self.timestamp) is not int:
            raise InvalidGenesis(f"genesis timestamp {self.timestamp!r} must be a whole number of Unix seconds")
        if not 0 <= self.timestamp <= MAX_TIMESTAMP:
            raise InvalidGenesis(
                f"genesis timestamp {self.timestamp!r} is out of range: use Unix seconds, 0 to {MAX_TIMESTAMP} (year 9999)"
            )
        supply = sum(self.allocations.values()) + sum(self.bonds.values())
        if supply >= MAX_AMOUNT:
            raise InvalidGenesis("genesis supply must stay below 2^63 tokens")

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params.to_dict(),
            "allocations": dict(sorted(self.allocations.items())),
            "bonds": dict(sorted(self.bonds.items())),
            "timestamp": self.timestamp,
        }

    def encode(self) -> bytes:
        return encoding.encode(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any) -> "GenesisConfig":
        if not isinstance(obj, dict):
            raise InvalidGenesis("a genesis file must be a JSON object")
        unknown = sorted(set(obj) - {"params", "allocations", "bonds", "timestamp", "chain_id"})
        if unknown:
            raise InvalidGenesis(f"genesis has unknown field {unknown[0]!r}")
        if not isinstance(obj.get("params", {}), dict):
            raise InvalidGenesis("genesis field 'params' must be an object of name: value")
        params = dict(obj.get("params", {}))
        if "chain_id" in obj:
            params["chain_id"] = obj["chain_id"]
        for name in ("allocations", "bonds"):
            if not isinstance(obj.get(name, {}), dict):
                raise InvalidGenesis(f"genesis field {name!r} must map addresses to amounts")
        return cls(
            params=Params.from_dict(params),
            allocations=obj.get("allocations", {}),
            bonds=obj.get("bonds", {}),
            timestamp=obj.get("timestamp", 0),
        )

    @classmethod
    def decode(cls, data: bytes) -> "GenesisConfig":
        try:
            return cls.from_dict(encoding.decode(data))
        except EncodingError as exc:
            raise InvalidGenesis(f"genesis is not canonical: {exc}") from None


def build_genesis(config: GenesisConfig) -> tuple[Block, DictState, MuHash3072]:
    """The genesis block, its full state and the state accumulator."""
    working = WorkingState(lambda key: None)
    state.build_genesis_state(working, config.params, config.allocations, config.bonds)
    genesis_state = DictState()
    genesis_state.apply(working.changes()[1])
    muhash = statehash.hash_of_entries(genesis_state.entries.items())
    header = BlockHeader(
        height=0,
        prev_hash=ZERO_HASH,
        timestamp=config.timestamp,
        validator="",
        seed=encoding.tagged_hash(GENESIS_TAG, config.encode()),
        vrf_output=ZERO_HASH,
        tx_root=compute_tx_root([]),
        evidence_root=compute_evidence_root([]),
        state_root=muhash.digest(),
    )
    return Block(header=header), genesis_state, muhash
