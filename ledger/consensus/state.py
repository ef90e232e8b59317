"""The ledger state: typed readers and mutators over a working set of decoded entries.

Per address: liquid ``balance``, ``nonce``, ``bonded`` stake and ``unbonding`` entries
(amount, release height). Bonded and unbonding tokens cannot be spent; an unbonding entry
becomes liquid again in the block at its release height. Three index entries make the common
questions O(1) or O(validators) instead of O(accounts): ``totals`` (supply by kind),
``validator:<addr>`` (who has bonded stake) and ``release:<height>`` (who unbonds when).

Nothing here does I/O. :class:`WorkingState` reads committed entries through a getter
(LevelDB when forging, a dict when replaying), keeps what it decoded, and at the end of a block
encodes each changed entry exactly once: that is what lets a block of 1,000 transactions touch
an account 1,000 times yet decode and encode it once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Protocol

from ledger import encoding
from ledger.crypto.address import Address
from ledger.errors import EncodingError, InsufficientBalance, InvalidBlock
from ledger.params import MAX_AMOUNT, Params

Getter = Callable[[bytes], "bytes | None"]
"""Reads one committed state entry by its relative key."""


# State keys: what the state transition reads and writes, and what the state root hashes.
# The store places them under its own prefix (``ledger.storage.schema.make_state_key``).
PARAMS_STATE_KEY = b"params"
TOTALS_STATE_KEY = b"totals"
ACCOUNT_STATE_PREFIX = b"account:"
VALIDATOR_STATE_PREFIX = b"validator:"
RELEASE_STATE_PREFIX = b"release:"


def make_account_state_key(address: str) -> bytes:
    return ACCOUNT_STATE_PREFIX + address.encode("ascii")


def make_validator_state_key(address: str) -> bytes:
    return VALIDATOR_STATE_PREFIX + address.encode("ascii")


def make_release_state_key(height: int) -> bytes:
    return RELEASE_STATE_PREFIX + height.to_bytes(8, "big")


class KeyValueView(Protocol):
    """A mutable key-value view: what a replay keeps the whole state in."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


class DictState:
    """The whole state in a dict: genesis is built in one, and ``verify`` replays into one."""

    def __init__(self, entries: Mapping[bytes, bytes] | None = None) -> None:
        self.entries: dict[bytes, bytes] = dict(entries or {})

    def get(self, key: bytes) -> bytes | None:
        return self.entries.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.entries[key] = value

    def delete(self, key: bytes) -> None:
        self.entries.pop(key, None)

    def apply(self, writes: Mapping[bytes, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = value


@dataclass(frozen=True)
class Unbonding:
    amount: int
    release_height: int


@dataclass(frozen=True)
class Account:
    balance: int = 0
    nonce: int = 0
    bonded: int = 0
    unbonding: tuple[Unbonding, ...] = ()

    @property
    def unbonding_total(self) -> int:
        return sum(entry.amount for entry in self.unbonding)

    def is_empty(self) -> bool:
        return self == Account()

    def to_dict(self) -> dict[str, object]:
        return {
            "balance": self.balance,
            "nonce": self.nonce,
            "bonded": self.bonded,
            "unbonding": [[e.amount, e.release_height] for e in self.unbonding],
        }

    @classmethod
    def from_dict(cls, obj: object) -> "Account":
        data = encoding.require_fields(obj, {"balance", "nonce", "bonded", "unbonding"}, "account")
        entries = data["unbonding"]
        if not isinstance(entries, list):
            raise EncodingError("account field 'unbonding' must be a list")
        unbonding = []
        for item in entries:
            if not isinstance(item, list) or len(item) != 2:
                raise EncodingError("account unbonding entries are [amount, release_height]")
            unbonding.append(
                Unbonding(encoding.require_int(item[0], "amount"), encoding.require_int(item[1], "release_height"))
            )
        return cls(
            balance=encoding.require_int(data["balance"], "balance"),
            nonce=encoding.require_int(data["nonce"], "nonce"),
            bonded=encoding.require_int(data["bonded"], "bonded"),
            unbonding=tuple(unbonding),
        )


@dataclass(frozen=True)
class Totals:
    """Supply by kind. ``issued`` = genesis allocations + genesis bonds + rewards, always."""

    liquid: int = 0
    bonded: int = 0
    unbonding: int = 0
    issued: int = 0

    @property
    def supply(self) -> int:
        return self.liquid + self.bonded + self.unbonding

    def to_dict(self) -> dict[str, int]:
        return {"liquid": self.liquid, "bonded": self.bonded, "unbonding": self.unbonding, "issued": self.issued}


class WorkingState:
    """Decoded state entries over a read-only getter, with the changes of one block.

    Reads decode once and are kept; writes stay in memory until :meth:`changes` encodes them.
    The getter is never written through, so a refused block leaves storage untouched.
    """

    def __init__(self, base_get: Getter) -> None:
        self._get = base_get
        self._accounts: dict[Address, Account] = {}
        self._dirty_accounts: set[Address] = set()
        self._releases: dict[int, list[Address]] = {}
        self._dirty_releases: set[int] = set()
        self._totals: Totals | None = None
        self._params: Params | None = None
        self._raw_writes: dict[bytes, bytes] = {}

    # -- reads ---------------------------------------------------------------------------------

    def account(self, address: Address) -> Account:
        cached = self._accounts.get(address)
        if cached is not None:
            return cached
        raw = self._get(make_account_state_key(address))
        account = Account() if raw is None else Account.from_dict(encoding.decode_stored(raw))
        self._accounts[address] = account
        return account

    def totals(self) -> Totals:
        if self._totals is None:
            raw = self._get(TOTALS_STATE_KEY)
            if raw is None:
                self._totals = Totals()
            else:
                data = encoding.require_fields(
                    encoding.decode_stored(raw), {"liquid", "bonded", "unbonding", "issued"}, "totals"
                )
                self._totals = Totals(**{k: encoding.require_int(v, k) for k, v in data.items()})
        return self._totals

    def params(self) -> Params:
        if self._params is None:
            raw = self._get(PARAMS_STATE_KEY)
            if raw is None:
                raise InvalidBlock("state holds no chain parameters: not a posctl chain")
            self._params = Params.from_dict(encoding.decode_stored(raw))
        return self._params

    def releases(self, height: int) -> list[Address]:
        cached = self._releases.get(height)
        if cached is None:
            raw = self._get(make_release_state_key(height))
            cached = [] if raw is None else list(encoding.decode_stored(raw))
            self._releases[height] = cached
        return cached

    # -- writes --------------------------------------------------------------------------------

    def set_account(self, address: Address, account: Account) -> None:
        self._accounts[address] = account
        self._dirty_accounts.add(address)

    def set_totals(self, totals: Totals) -> None:
        self._totals = totals
        self._raw_writes[TOTALS_STATE_KEY] = b""  # marker: encoded in changes()

    def set_releases(self, height: int, addresses: list[Address]) -> None:
        self._releases[height] = addresses
        self._dirty_releases.add(height)

    def set_params(self, params: Params) -> None:
        self._params = params
        self._raw_writes[PARAMS_STATE_KEY] = encoding.encode(params.to_dict())

    # -- the block's effect --------------------------------------------------------------------

    def changes(self) -> tuple[dict[bytes, bytes | None], dict[bytes, bytes | None]]:
        """(originals, writes) of every entry this working set changed, encoded once each."""
        writes: dict[bytes, bytes | None] = {}
        for address in sorted(self._dirty_accounts):
            account = self._accounts[address]
            key = make_account_state_key(address)
            writes[key] = None if account.is_empty() else encoding.encode(account.to_dict())
            validator_key = make_validator_state_key(address)
            if account.bonded > 0:
                writes[validator_key] = b""
            elif self._get(validator_key) is not None:
                writes[validator_key] = None
        for height in sorted(self._dirty_releases):
            addresses = self._releases[height]
            key = make_release_state_key(height)
            writes[key] = encoding.encode(sorted(addresses)) if addresses else None
        for key, value in self._raw_writes.items():
            if key == TOTALS_STATE_KEY:
                writes[key] = encoding.encode(self.totals().to_dict())
            else:
                writes[key] = value
        originals = {key: self._get(key) for key in writes}
        for key in [k for k, v in writes.items() if v == originals[k]]:
            del writes[key]
            del originals[key]
        return originals, writes


# ---- readers -------------------------------------------------------------------------------


def get_account(view: WorkingState, address: Address) -> Account:
    return view.account(address)


def get_totals(view: WorkingState) -> Totals:
    return view.totals()


def get_params(view: WorkingState) -> Params:
    return view.params()


def is_eligible_validator(account: Account, params: Params) -> bool:
    """Bonded at least ``min_stake``: only then does a BPM proposal enter the lottery."""
    return account.bonded >= params.min_stake


# ---- mutators ------------------------------------------------------------------------------
# Each checks everything before its first write, so a refusal changes nothing.


def _adjust_totals(view: WorkingState, **deltas: int) -> None:
    totals = view.totals()
    view.set_totals(replace(totals, **{k: getattr(totals, k) + v for k, v in deltas.items()}))


def _check_cap(value: int, what: str) -> None:
    if value >= MAX_AMOUNT:
        raise InsufficientBalance(f"{what} would reach 2^63 tokens, the most an account can hold")


def mint(view: WorkingState, address: Address, amount: int) -> None:
    """Create new liquid tokens (genesis allocation or block reward)."""
    account = view.account(address)
    _check_cap(account.balance + amount, "balance")
    view.set_account(address, Account(account.balance + amount, account.nonce, account.bonded, account.unbonding))
    _adjust_totals(view, liquid=amount, issued=amount)


def mint_bonded(view: WorkingState, address: Address, amount: int) -> None:
    """Create new bonded tokens: a genesis bond, the stake the first validators start with."""
    account = view.account(address)
    _check_cap(account.bonded + amount, "bonded stake")
    view.set_account(address, replace(account, bonded=account.bonded + amount))
    _adjust_totals(view, bonded=amount, issued=amount)


def transfer(view: WorkingState, sender: Address, recipient: Address, amount: int) -> None:
    source = view.account(sender)
    if source.balance < amount:
        raise InsufficientBalance(f"{sender} has {source.balance} liquid tokens, cannot send {amount}")
    if sender == recipient:
        return
    target = view.account(recipient)
    _check_cap(target.balance + amount, "recipient balance")
    # Account(...) rather than dataclasses.replace: this is the hottest line of forging.
    view.set_account(sender, Account(source.balance - amount, source.nonce, source.bonded, source.unbonding))
    view.set_account(recipient, Account(target.balance + amount, target.nonce, target.bonded, target.unbonding))


def bond(view: WorkingState, address: Address, amount: int) -> None:
    """Move liquid tokens into bonded stake, the collateral that weighs in the lottery."""
    account = view.account(address)
    if account.balance < amount:
        raise InsufficientBalance(f"{address} has {account.balance} liquid tokens, cannot stake {amount}")
    _check_cap(account.bonded + amount, "bonded stake")
    view.set_account(address, replace(account, balance=account.balance - amount, bonded=account.bonded + amount))
    _adjust_totals(view, liquid=-amount, bonded=amount)


def begin_unbonding(view: WorkingState, address: Address, amount: int, release_height: int) -> None:
    """Move bonded stake into an unbonding entry, liquid again at ``release_height``."""
    account = view.account(address)
    if account.bonded < amount:
        raise InsufficientBalance(f"{address} has {account.bonded} bonded, cannot unstake {amount}")
    entries = account.unbonding + (Unbonding(amount, release_height),)
    view.set_account(address, replace(account, bonded=account.bonded - amount, unbonding=entries))
    waiting = view.releases(release_height)
    if address not in waiting:
        view.set_releases(release_height, waiting + [address])
    _adjust_totals(view, bonded=-amount, unbonding=amount)


def release_matured(view: WorkingState, height: int) -> int:
    """Return every unbonding entry due at ``height`` to its owner's liquid balance.

    Reads one index entry for the height, so the cost is the number of owners due, not the
    number of accounts. Returns the amount released.
    """
    released_total = 0
    due_owners = view.releases(height)
    for address in due_owners:
        account = view.account(address)
        due = sum(e.amount for e in account.unbonding if e.release_height <= height)
        remaining = tuple(e for e in account.unbonding if e.release_height > height)
        view.set_account(address, replace(account, balance=account.balance + due, unbonding=remaining))
        released_total += due
    if due_owners:
        view.set_releases(height, [])
    if released_total:
        _adjust_totals(view, unbonding=-released_total, liquid=released_total)
    return released_total


def increment_nonce(view: WorkingState, address: Address) -> None:
    account = view.account(address)
    view.set_account(address, Account(account.balance, account.nonce + 1, account.bonded, account.unbonding))


def build_genesis_state(
    view: WorkingState,
    params: Params,
    allocations: Mapping[Address, int],
    bonds: Mapping[Address, int],
) -> None:
    """Write the state of height 0: parameters, allocations and initial bonds."""
    view.set_params(params)
    view.set_totals(Totals())
    for address, amount in sorted(allocations.items()):
        mint(view, address, amount)
    for address, amount in sorted(bonds.items()):
        mint_bonded(view, address, amount)
