"""The ledger state as plain functions over a key-value view: readers and mutators.

Per address: liquid ``balance``, ``nonce``, ``bonded`` stake and ``unbonding`` entries
(amount, release height). Bonded and unbonding tokens cannot be spent; an unbonding entry
becomes liquid again in the block at its release height. Three index entries make the common
questions O(1) or O(validators) instead of O(accounts): ``totals`` (supply by kind),
``validator:<addr>`` (who has bonded stake) and ``release:<height>`` (who unbonds when).

Nothing here does I/O: the view is any object with ``get``/``put``/``delete`` —
:class:`StateOverlay` over committed storage when forging, a plain dict when replaying.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Protocol

from ledger import encoding, schema
from ledger.crypto import Address
from ledger.errors import EncodingError, InsufficientBalance, InvalidBlock, LedgerError
from ledger.params import MAX_AMOUNT, Params


class StateView(Protocol):
    """What the state transition needs from storage: three operations, no iteration."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


class StateOverlay:
    """Pending writes over a read-only base; the base never changes until a commit.

    Records each touched key's original value, so the state root can be updated from exactly
    the entries a block touched.
    """

    def __init__(self, base_get: Callable[[bytes], bytes | None]) -> None:
        self._base_get = base_get
        self.writes: dict[bytes, bytes | None] = {}
        self.originals: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._base_get(key)

    def _remember(self, key: bytes) -> None:
        if key not in self.originals:
            self.originals[key] = self._base_get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._remember(key)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self._remember(key)
        self.writes[key] = None


class ReadOnlyView:
    """A view over a getter that refuses writes: admission and the lottery only read."""

    def __init__(self, base_get: Callable[[bytes], bytes | None]) -> None:
        self.get = base_get

    def put(self, key: bytes, value: bytes) -> None:
        raise LedgerError("this state view is read-only")

    def delete(self, key: bytes) -> None:
        raise LedgerError("this state view is read-only")


class DictState:
    """The whole state in a dict: used for genesis and for replaying the chain in ``verify``."""

    def __init__(self, entries: Mapping[bytes, bytes] | None = None) -> None:
        self.entries: dict[bytes, bytes] = dict(entries or {})

    def get(self, key: bytes) -> bytes | None:
        return self.entries.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.entries[key] = value

    def delete(self, key: bytes) -> None:
        self.entries.pop(key, None)


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


# ---- readers -------------------------------------------------------------------------------


def get_account(view: StateView, address: Address) -> Account:
    raw = view.get(schema.make_account_state_key(address))
    if raw is None:
        return Account()
    return Account.from_dict(encoding.decode(raw))


def get_params(view: StateView) -> Params:
    raw = view.get(schema.PARAMS_STATE_KEY)
    if raw is None:
        raise InvalidBlock("state holds no chain parameters: not a posctl chain")
    return Params.from_dict(encoding.decode(raw))


def get_totals(view: StateView) -> Totals:
    raw = view.get(schema.TOTALS_STATE_KEY)
    if raw is None:
        return Totals()
    data = encoding.require_fields(encoding.decode(raw), {"liquid", "bonded", "unbonding", "issued"}, "totals")
    return Totals(**{k: encoding.require_int(v, k) for k, v in data.items()})


def get_release_addresses(view: StateView, height: int) -> list[Address]:
    raw = view.get(schema.make_release_state_key(height))
    return [] if raw is None else list(encoding.decode(raw))


def is_eligible_validator(account: Account, params: Params) -> bool:
    """Bonded at least ``min_stake``: only then does a BPM proposal enter the lottery."""
    return account.bonded >= params.min_stake


# ---- mutators ------------------------------------------------------------------------------


def set_account(view: StateView, address: Address, account: Account) -> None:
    key = schema.make_account_state_key(address)
    if account.is_empty():
        view.delete(key)
    else:
        view.put(key, encoding.encode(account.to_dict()))
    validator_key = schema.make_validator_state_key(address)
    if account.bonded > 0:
        view.put(validator_key, b"")
    elif view.get(validator_key) is not None:
        view.delete(validator_key)


def set_params(view: StateView, params: Params) -> None:
    view.put(schema.PARAMS_STATE_KEY, encoding.encode(params.to_dict()))


def set_totals(view: StateView, totals: Totals) -> None:
    view.put(schema.TOTALS_STATE_KEY, encoding.encode(totals.__dict__))


def _adjust_totals(view: StateView, **deltas: int) -> None:
    totals = get_totals(view)
    set_totals(view, replace(totals, **{k: getattr(totals, k) + v for k, v in deltas.items()}))


def _check_cap(value: int, what: str) -> None:
    if value >= MAX_AMOUNT:
        raise InsufficientBalance(f"{what} would reach 2^63 tokens, the most an account can hold")


def mint(view: StateView, address: Address, amount: int) -> None:
    """Create new liquid tokens (genesis allocation or block reward)."""
    account = get_account(view, address)
    _check_cap(account.balance + amount, "balance")
    set_account(view, address, replace(account, balance=account.balance + amount))
    _adjust_totals(view, liquid=amount, issued=amount)


def mint_bonded(view: StateView, address: Address, amount: int) -> None:
    """Create new bonded tokens: a genesis bond, the stake the first validators start with."""
    account = get_account(view, address)
    _check_cap(account.bonded + amount, "bonded stake")
    set_account(view, address, replace(account, bonded=account.bonded + amount))
    _adjust_totals(view, bonded=amount, issued=amount)


def transfer(view: StateView, sender: Address, recipient: Address, amount: int) -> None:
    """Move liquid tokens; every check happens before the first write, so a refusal changes nothing."""
    source = get_account(view, sender)
    if source.balance < amount:
        raise InsufficientBalance(
            f"{sender} has {source.balance} liquid tokens, cannot send {amount}"
        )
    if sender == recipient:
        return
    target = get_account(view, recipient)
    _check_cap(target.balance + amount, "recipient balance")
    set_account(view, sender, replace(source, balance=source.balance - amount))
    set_account(view, recipient, replace(target, balance=target.balance + amount))


def bond(view: StateView, address: Address, amount: int) -> None:
    """Move liquid tokens into bonded stake, the collateral that weighs in the lottery."""
    account = get_account(view, address)
    if account.balance < amount:
        raise InsufficientBalance(
            f"{address} has {account.balance} liquid tokens, cannot stake {amount}"
        )
    _check_cap(account.bonded + amount, "bonded stake")
    set_account(view, address, replace(account, balance=account.balance - amount, bonded=account.bonded + amount))
    _adjust_totals(view, liquid=-amount, bonded=amount)


def begin_unbonding(view: StateView, address: Address, amount: int, release_height: int) -> None:
    """Move bonded stake into an unbonding entry, liquid again at ``release_height``."""
    account = get_account(view, address)
    if account.bonded < amount:
        raise InsufficientBalance(f"{address} has {account.bonded} bonded, cannot unstake {amount}")
    entries = account.unbonding + (Unbonding(amount, release_height),)
    set_account(view, address, replace(account, bonded=account.bonded - amount, unbonding=entries))
    key = schema.make_release_state_key(release_height)
    waiting = get_release_addresses(view, release_height)
    if address not in waiting:
        waiting.append(address)
        view.put(key, encoding.encode(sorted(waiting)))
    _adjust_totals(view, bonded=-amount, unbonding=amount)


def release_matured(view: StateView, height: int) -> int:
    """Return every unbonding entry due at ``height`` to its owner's liquid balance.

    Reads one index entry for the height, so the cost is the number of owners due, not the
    number of accounts. Returns the amount released.
    """
    released_total = 0
    for address in get_release_addresses(view, height):
        account = get_account(view, address)
        due = sum(e.amount for e in account.unbonding if e.release_height <= height)
        remaining = tuple(e for e in account.unbonding if e.release_height > height)
        set_account(view, address, replace(account, balance=account.balance + due, unbonding=remaining))
        released_total += due
    if released_total or view.get(schema.make_release_state_key(height)) is not None:
        view.delete(schema.make_release_state_key(height))
    if released_total:
        _adjust_totals(view, unbonding=-released_total, liquid=released_total)
    return released_total


def increment_nonce(view: StateView, address: Address) -> None:
    account = get_account(view, address)
    set_account(view, address, replace(account, nonce=account.nonce + 1))


def build_genesis_state(
    view: StateView,
    params: Params,
    allocations: Mapping[Address, int],
    bonds: Mapping[Address, int],
) -> None:
    """Write the state of height 0: parameters, allocations and initial bonds."""
    set_params(view, params)
    set_totals(view, Totals())
    for address, amount in sorted(allocations.items()):
        mint(view, address, amount)
    for address, amount in sorted(bonds.items()):
        mint_bonded(view, address, amount)


def bonded_addresses(keys: Iterable[bytes]) -> list[Address]:
    """Addresses from ``validator:`` state keys, for storage that can list a prefix."""
    prefix = schema.VALIDATOR_STATE_PREFIX
    return [key[len(prefix):].decode("ascii") for key in keys if key.startswith(prefix)]


