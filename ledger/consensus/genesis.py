"""The genesis configuration and the block of height 0 it defines.

Genesis commits to its whole configuration twice over: the parameters and balances are state
entries under the state root, and the header's ``seed`` field (there is no lottery at height 0)
carries the hash of the canonical configuration itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

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
from ledger.consensus.transactions import largest_proposal_size

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
        self._check_rest()

    def _check_rest(self) -> None:
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
        largest = largest_proposal_size(self.params)
        if self.params.max_tx_bytes < largest:
            raise InvalidGenesis(
                f"max_tx_bytes {self.params.max_tx_bytes} is below the size of a proposal on this chain (up to "
                f"{largest} bytes): no validator could propose, so no block could ever be forged; use at least {largest}"
            )
        supply = sum(self.allocations.values()) + sum(self.bonds.values())
        if supply >= MAX_AMOUNT:
            raise InvalidGenesis("genesis supply must stay below 2^63 tokens")

    @classmethod
    def from_checked_allocations(
        cls, params: Params, allocations: dict[Address, int], bonds: Mapping[str, int], timestamp: int
    ) -> "GenesisConfig":
        """A configuration whose allocations were already checked, one by one, by
        :func:`check_allocations` (the chain layer runs it on every core for a large genesis):
        canonical addresses, whole amounts in range, each account once. Everything else is
        checked here as in the constructor."""
        config = object.__new__(cls)
        object.__setattr__(config, "params", params)
        object.__setattr__(config, "allocations", allocations)
        object.__setattr__(config, "bonds", bonds)
        object.__setattr__(config, "timestamp", timestamp)
        config._check_rest()
        return config

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params.to_dict(),
            "allocations": dict(sorted(self.allocations.items())),
            "bonds": dict(sorted(self.bonds.items())),
            "timestamp": self.timestamp,
        }

    def encode(self) -> bytes:
        """The canonical bytes of :meth:`to_dict`, built without the intermediate dict.

        At a million allocations the generic encoder's walk and sort of a million-entry dict
        costs seconds; every allocation is already a checked lowercase address and an int, so
        their canonical text is spliced into the encoding of the rest. Identical bytes (tested).
        """
        head, tail = self.allocations_frame()
        allocations = self.allocations
        body = ",".join([f'"{address}":{allocations[address]}' for address in sorted(allocations)])
        return b"".join((head, body.encode("ascii"), tail))

    def allocations_frame(self) -> tuple[bytes, bytes]:
        """The canonical encoding without its allocations, split where they go: the canonical
        bytes are ``head``, the sorted ``"address":amount`` entries joined by commas, ``tail``
        (a genesis streamed from a file writes and hashes them as they come)."""
        rest = encoding.encode({**self._dict_without_allocations(), "allocations": {}})
        head, tail = rest.split(b'{"allocations":{}', 1)
        return head + b'{"allocations":{', b"}" + tail

    def _dict_without_allocations(self) -> dict[str, Any]:
        return {"params": self.params.to_dict(), "bonds": dict(sorted(self.bonds.items())), "timestamp": self.timestamp}

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
    """The genesis block, its full state and the state accumulator, in one pass on one core.

    The reference: :func:`bulk_entries` and :func:`assemble_genesis` split the same work so that
    the chain layer can spread a large genesis over every core, and must give the same block."""
    working = WorkingState(lambda key: None)
    state.build_genesis_state(working, config.params, config.allocations, config.bonds)
    genesis_state = DictState()
    genesis_state.apply(working.changes()[1])
    muhash = statehash.hash_of_entries(genesis_state.entries.items())
    return _genesis_block(config, config.encode(), muhash), genesis_state, muhash


def config_hash(config_bytes: bytes) -> bytes:
    """The hash of the canonical configuration, carried in the genesis header's ``seed``."""
    return encoding.tagged_hash(GENESIS_TAG, config_bytes)


def _genesis_block(config: GenesisConfig, config_bytes: bytes, muhash: MuHash3072) -> Block:
    return genesis_block(config.timestamp, config_hash(config_bytes), muhash)


def genesis_block(timestamp: int, config_digest: bytes, muhash: MuHash3072) -> Block:
    """The block of height 0, from the hash of its canonical configuration (:func:`config_hash`,
    or the same hash computed as the configuration streams) and its state accumulator."""
    header = BlockHeader(
        height=0,
        prev_hash=ZERO_HASH,
        timestamp=timestamp,
        validator="",
        seed=config_digest,
        vrf_output=ZERO_HASH,
        tx_root=compute_tx_root([]),
        evidence_root=compute_evidence_root([]),
        state_root=muhash.digest(),
    )
    return Block(header=header)


# ---- a large genesis, in parts -----------------------------------------------------------------
# Nearly every allocation is an account holding only a liquid balance: its state entry depends on
# nothing else, and the state accumulator is a product, so such accounts can be checked, encoded
# and hashed in any number of parts, anywhere, and the partial products multiplied together.
# Accounts that are also bonded, the parameters and the totals are few, and go through the
# reference path.


def check_allocations(pairs: Sequence[tuple[Any, Any]]) -> list[tuple[int, Address]]:
    """Check a part of the allocations as the constructor does; returns (index, canonical
    address) for each one given in another form (uppercase), the rest being canonical already.
    Raises :class:`InvalidGenesis` for the first bad one, with the constructor's message."""
    renamed: list[tuple[int, Address]] = []
    for index, (address, amount) in enumerate(pairs):
        try:
            canonical = parse_address(address)
        except InvalidAddress as exc:
            raise InvalidGenesis(f"allocation: {exc}") from None
        if type(amount) is not int or not 1 <= amount < MAX_AMOUNT:
            raise InvalidGenesis(f"allocation of {address}: {amount!r} is not a whole amount in [1, 2^63)")
        if canonical is not address:
            renamed.append((index, canonical))
    return renamed


def _liquid_account_template() -> tuple[bytes, bytes]:
    """The canonical encoding of an account holding only a liquid balance, split around the
    balance: derived from the real encoder, so it cannot drift from it."""
    marker = 987654321987654321
    encoded = encoding.encode(state.Account(balance=marker).to_dict())
    head, tail = encoded.split(str(marker).encode("ascii"))
    return head, tail


_LIQUID_HEAD, _LIQUID_TAIL = _liquid_account_template()


def liquid_account_value(amount: int) -> bytes:
    """``encoding.encode(Account(balance=amount).to_dict())``, without the generic walk."""
    return b"%b%d%b" % (_LIQUID_HEAD, amount, _LIQUID_TAIL)


def bulk_entries(pairs: Sequence[tuple[Address, int]]) -> tuple[list[tuple[bytes, bytes]], bytes, int]:
    """One part of the state: the entries of liquid-only accounts (checked allocations of
    unbonded addresses), the MuHash of those entries (:meth:`MuHash3072.to_bytes`) and their
    supply."""
    entries = [(state.make_account_state_key(address), liquid_account_value(amount)) for address, amount in pairs]
    muhash = MuHash3072()
    muhash.insert_many(statehash.state_entry(key, value) for key, value in entries)
    return entries, muhash.to_bytes(), sum(amount for _, amount in pairs)


def split_allocations(config: GenesisConfig) -> tuple[list[tuple[Address, int]], dict[Address, int]]:
    """(the liquid-only accounts' allocations, in any order; the allocations of bonded addresses)."""
    bonded = config.bonds
    allocations = config.allocations
    if not any(address in allocations for address in bonded):
        return list(allocations.items()), {}
    return ([item for item in allocations.items() if item[0] not in bonded],
            {a: n for a, n in allocations.items() if a in bonded})


def assemble_genesis(
    config: GenesisConfig, config_bytes: bytes, bulk_muhash: MuHash3072, bulk_supply: int
) -> tuple[Block, dict[bytes, bytes], MuHash3072]:
    """The genesis block from the liquid-only accounts' accumulator and supply, plus the other
    entries (parameters, totals, bonded accounts, the validator index) built by the reference
    path; returns those other entries and the whole state's accumulator."""
    _, small = split_allocations(config)
    entries, muhash = rest_entries(config.params, small, config.bonds, bulk_muhash, bulk_supply)
    return _genesis_block(config, config_bytes, muhash), entries, muhash


def rest_entries(
    params: Params, small: Mapping[Address, int], bonds: Mapping[Address, int], bulk_muhash: MuHash3072, bulk_supply: int
) -> tuple[dict[bytes, bytes], MuHash3072]:
    """The state entries besides the liquid-only accounts (parameters, totals counting
    ``bulk_supply``, the bonded accounts with their allocations ``small``, the validator index)
    by the reference path, and the whole state's accumulator (theirs times ``bulk_muhash``)."""
    working = WorkingState(lambda key: None)
    state.build_genesis_state(working, params, small, bonds)
    totals = working.totals()
    working.set_totals(replace(totals, liquid=totals.liquid + bulk_supply, issued=totals.issued + bulk_supply))
    entries = {key: value for key, value in working.changes()[1].items() if value is not None}
    muhash = statehash.hash_of_entries(entries.items())
    muhash.combine(bulk_muhash)
    return entries, muhash


def liquid_balance(value: bytes) -> int:
    """The liquid balance of an encoded genesis account: read from :func:`liquid_account_value`'s
    frame when it is one, else decoded. At genesis an account's balance is its allocation."""
    if value.startswith(_LIQUID_HEAD) and value.endswith(_LIQUID_TAIL):
        digits = value[len(_LIQUID_HEAD):len(value) - len(_LIQUID_TAIL)]
        if digits.isdigit():
            return int(digits)
    return state.decode_account(value).balance
