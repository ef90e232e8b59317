"""The ledger state: typed readers and mutators over a working set of decoded entries.

Per address: liquid ``balance``, ``nonce``, ``bonded`` stake and ``unbonding`` entries
(amount, release height), and the validator's record: ``jailed`` (missed too many turns),
``tombstoned`` (slashed for equivocation, never eligible again), consecutive ``missed`` turns and
the total ``slashed``. Bonded and unbonding tokens cannot be spent; an unbonding entry becomes
liquid again in the block at its release height. Index entries make the common questions O(1)
or O(validators) instead of O(accounts): ``totals`` (supply by kind), ``validator:<addr>``
(who is or was a validator), ``release:<height>`` (who unbonds when) and ``evidence:<id>``
(evidence already used).

Nothing here does I/O. :class:`WorkingState` reads committed entries through a getter
(LevelDB when forging, a dict when replaying), keeps what it decoded, and at the end of a block
encodes each changed entry exactly once: that is what lets a block of 1,000 transactions touch
an account 1,000 times yet decode and encode it once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Protocol

from ledger import encoding
from ledger.crypto.address import Address
from ledger.errors import (
    BalanceOverflow,
    EncodingError,
    InsufficientBalance,
    InvalidBlock,
    InvalidProposal,
    InvalidTransaction,
)
from ledger.params import BPS, MAX_AMOUNT, Params

Getter = Callable[[bytes], "bytes | None"]
"""Reads one committed state entry by its relative key."""

PrefixReader = Callable[[bytes], Iterable[tuple[bytes, bytes]]]
"""Lists committed state entries under a relative key prefix, in key order."""

ACTIVE, JAILED, TOMBSTONED, BELOW_MIN_STAKE = "active", "jailed", "tombstoned", "below_min_stake"
"""A validator's status, as ``chain validators`` shows it."""


# State keys: what the state transition reads and writes, and what the state root hashes.
# The store places them under its own prefix (``ledger.storage.schema.make_state_key``).
PARAMS_STATE_KEY = b"params"
TOTALS_STATE_KEY = b"totals"
ACCOUNT_STATE_PREFIX = b"account:"
VALIDATOR_STATE_PREFIX = b"validator:"
RELEASE_STATE_PREFIX = b"release:"
EVIDENCE_STATE_PREFIX = b"evidence:"


def make_account_state_key(address: str) -> bytes:
    return ACCOUNT_STATE_PREFIX + address.encode("ascii")


def make_validator_state_key(address: str) -> bytes:
    return VALIDATOR_STATE_PREFIX + address.encode("ascii")


def make_release_state_key(height: int) -> bytes:
    return RELEASE_STATE_PREFIX + height.to_bytes(8, "big")


def make_evidence_state_key(evidence_id: bytes) -> bytes:
    return EVIDENCE_STATE_PREFIX + evidence_id


class KeyValueView(Protocol):
    """A mutable key-value view: what a replay keeps the whole state in."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


class DictState:
    """The whole state in a dict: genesis is built in one, and ``verify`` replays into one."""

    def __init__(self, entries: Mapping[bytes, bytes] | None = None) -> None:
        self.entries: dict[bytes, bytes] = dict(entries or {})
        self._validators = {key for key in self.entries if key.startswith(VALIDATOR_STATE_PREFIX)}

    def get(self, key: bytes) -> bytes | None:
        return self.entries.get(key)

    def items(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        """Entries under ``prefix`` in key order; the validator index is kept apart, so listing
        validators costs O(validators), not O(state)."""
        keys = self._validators if prefix.startswith(VALIDATOR_STATE_PREFIX) else self.entries
        return [(key, self.entries[key]) for key in sorted(k for k in keys if k.startswith(prefix))]

    def put(self, key: bytes, value: bytes) -> None:
        self.entries[key] = value
        if key.startswith(VALIDATOR_STATE_PREFIX):
            self._validators.add(key)

    def delete(self, key: bytes) -> None:
        self.entries.pop(key, None)
        self._validators.discard(key)

    def apply(self, writes: Mapping[bytes, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                self.delete(key)
            else:
                self.put(key, value)


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
    jailed: bool = False
    """Missed ``max_missed`` turns in a row: out of the draw until an ``unjail`` tx."""
    tombstoned: bool = False
    """Slashed for equivocation: out of the draw for good."""
    missed: int = 0
    """Consecutive turns as first drawn with no proposal in the block."""
    slashed: int = 0
    """Tokens taken by slashing, in total."""

    @property
    def unbonding_total(self) -> int:
        return sum(entry.amount for entry in self.unbonding)

    def is_empty(self) -> bool:
        return self == Account()

    def is_validator_record(self) -> bool:
        """Bonded, or with a validator history worth listing (jailed, tombstoned, slashed, missed)."""
        return self.bonded > 0 or self.jailed or self.tombstoned or self.slashed > 0 or self.missed > 0

    def to_dict(self) -> dict[str, object]:
        return {
            "balance": self.balance,
            "nonce": self.nonce,
            "bonded": self.bonded,
            "unbonding": [[e.amount, e.release_height] for e in self.unbonding],
            "jailed": int(self.jailed),
            "tombstoned": int(self.tombstoned),
            "missed": self.missed,
            "slashed": self.slashed,
        }

    @classmethod
    def from_dict(cls, obj: object) -> "Account":
        data = encoding.require_fields(
            obj, {"balance", "nonce", "bonded", "unbonding", "jailed", "tombstoned", "missed", "slashed"}, "account"
        )
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
        flags = {name: encoding.require_int(data[name], name) for name in ("jailed", "tombstoned")}
        if any(value not in (0, 1) for value in flags.values()):
            raise EncodingError("account fields 'jailed' and 'tombstoned' are 0 or 1")
        return cls(
            balance=encoding.require_int(data["balance"], "balance"),
            nonce=encoding.require_int(data["nonce"], "nonce"),
            bonded=encoding.require_int(data["bonded"], "bonded"),
            unbonding=tuple(unbonding),
            jailed=bool(flags["jailed"]),
            tombstoned=bool(flags["tombstoned"]),
            missed=encoding.require_int(data["missed"], "missed"),
            slashed=encoding.require_int(data["slashed"], "slashed"),
        )


ACCOUNT_CACHE = 4096
"""Decoded accounts kept by their stored bytes (a few MB at most)."""


@functools.lru_cache(maxsize=ACCOUNT_CACHE)
def decode_account(raw: bytes) -> Account:
    """The account stored as ``raw``; raises :class:`EncodingError` if it is not one.

    Cached by the bytes: an :class:`Account` is immutable, so one decoded object serves every
    reader of the same entry. Every block's draw reads each validator's account, unchanged since
    the block before, so the replay and the forger decoded the same bytes again block after block.
    """
    return Account.from_dict(encoding.decode_stored(raw))


@dataclass(frozen=True)
class Totals:
    """Supply by kind. ``issued`` = genesis allocations + genesis bonds + ``rewards``, and
    supply = ``issued`` − ``burned``, always (the invariant ``verify`` checks)."""

    liquid: int = 0
    bonded: int = 0
    unbonding: int = 0
    issued: int = 0
    rewards: int = 0
    burned: int = 0

    @property
    def supply(self) -> int:
        return self.liquid + self.bonded + self.unbonding

    def to_dict(self) -> dict[str, int]:
        return {"liquid": self.liquid, "bonded": self.bonded, "unbonding": self.unbonding, "issued": self.issued,
                "rewards": self.rewards, "burned": self.burned}


class WorkingState:
    """Decoded state entries over a read-only getter, with the changes of one block.

    Reads decode once and are kept; writes stay in memory until :meth:`changes` encodes them.
    The getter is never written through, so a refused block leaves storage untouched.
    """

    def __init__(self, base_get: Getter, base_items: PrefixReader | None = None) -> None:
        self._get = base_get
        self._items = base_items
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
        account = Account() if raw is None else decode_account(raw)
        self._accounts[address] = account
        return account

    def totals(self) -> Totals:
        if self._totals is None:
            raw = self._get(TOTALS_STATE_KEY)
            if raw is None:
                self._totals = Totals()
            else:
                data = encoding.require_fields(
                    encoding.decode_stored(raw),
                    {"liquid", "bonded", "unbonding", "issued", "rewards", "burned"}, "totals",
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

    def parent_validators(self) -> list[Address]:
        """Everyone in the committed validator index, in address order (not this block's changes)."""
        if self._items is None:
            raise InvalidBlock("this state view cannot list validators: it was built without a prefix reader")
        return [key[len(VALIDATOR_STATE_PREFIX):].decode("ascii") for key, _ in self._items(VALIDATOR_STATE_PREFIX)]

    def validators_now(self) -> set[Address]:
        """Everyone who may be a validator in the state as it stands: the committed index, and
        the accounts this block has changed (one may have staked for the first time)."""
        return set(self.parent_validators()) | self._dirty_accounts

    def evidence_height(self, evidence_id: bytes) -> int | None:
        """The height whose block used this evidence, if any block did."""
        key = make_evidence_state_key(evidence_id)
        if key in self._raw_writes:
            return encoding.decode_stored(self._raw_writes[key])
        raw = self._get(key)
        return None if raw is None else encoding.decode_stored(raw)

    # -- writes --------------------------------------------------------------------------------

    def set_evidence_used(self, evidence_id: bytes, height: int) -> None:
        self._raw_writes[make_evidence_state_key(evidence_id)] = encoding.encode(height)

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
            if account.is_validator_record():
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
    """Bonded at least ``min_stake``, not jailed, not tombstoned: only then is it in the draw."""
    return account.bonded >= params.min_stake and not account.jailed and not account.tombstoned


def get_validator_status(account: Account, params: Params) -> str:
    if account.tombstoned:
        return TOMBSTONED
    if account.jailed:
        return JAILED
    if account.bonded < params.min_stake:
        return BELOW_MIN_STAKE
    return ACTIVE


def check_can_propose(status: str, bonded: int, params: Params, height: int, next_height: int) -> None:
    """Why a proposal would be wasted or refused, before anything is signed: a height other than
    the next block's (a proposal is valid only in the block at its height), or a validator the
    draw does not count (jailed, tombstoned, or bonded below ``min_stake``)."""
    if height != next_height:
        raise InvalidProposal(
            f"height {height} is not the next block ({next_height}): a proposal is valid only in the "
            "block at its height"
        )
    if status == TOMBSTONED:
        raise InvalidProposal("this validator is tombstoned for equivocation: it can never propose again")
    if status == JAILED:
        raise InvalidProposal(
            f"this validator is jailed after missing {params.max_missed} turns in a row: "
            "send an unjail transaction (`posctl wallet unjail NAME`) first"
        )
    if status == BELOW_MIN_STAKE:
        raise InvalidProposal(
            f"this validator has {bonded} bonded, below min_stake {params.min_stake}: its proposal would "
            "not enter the draw; stake first (`posctl wallet stake NAME AMOUNT`) and wait for a block"
        )


def has_other_eligible_validator(view: WorkingState, address: Address, params: Params) -> bool:
    """Whether a validator other than ``address`` is eligible in the state as it stands (this
    block's changes so far included), i.e. would be in the next block's draw. O(validators +
    accounts this block changed); asked only when a change would take ``address`` out of the draw."""
    return any(other != address and is_eligible_validator(view.account(other), params)
               for other in view.validators_now())


def get_eligible_weights(view: WorkingState, params: Params) -> dict[Address, int]:
    """Every eligible validator of the committed (parent) state, weighted by bonded stake."""
    weights: dict[Address, int] = {}
    for address in view.parent_validators():
        account = view.account(address)
        if is_eligible_validator(account, params):
            weights[address] = account.bonded
    return weights


# ---- mutators ------------------------------------------------------------------------------
# Each checks everything before its first write, so a refusal changes nothing.


def _adjust_totals(view: WorkingState, **deltas: int) -> None:
    totals = view.totals()
    view.set_totals(replace(totals, **{k: getattr(totals, k) + v for k, v in deltas.items()}))


def _check_cap(value: int, what: str) -> None:
    if value >= MAX_AMOUNT:
        raise BalanceOverflow(f"{what} would reach 2^63 tokens, the most an account can hold")


def mint(view: WorkingState, address: Address, amount: int) -> None:
    """Create new liquid tokens: a genesis allocation."""
    account = view.account(address)
    _check_cap(account.balance + amount, "balance")
    view.set_account(address, replace(account, balance=account.balance + amount))
    _adjust_totals(view, liquid=amount, issued=amount)


def pay_reward(view: WorkingState, address: Address, amount: int) -> None:
    """Create the block reward: the only new supply after genesis."""
    mint(view, address, amount)
    _adjust_totals(view, rewards=amount)


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
    view.set_account(sender, Account(source.balance - amount, source.nonce, source.bonded, source.unbonding,
                                     source.jailed, source.tombstoned, source.missed, source.slashed))
    view.set_account(recipient, Account(target.balance + amount, target.nonce, target.bonded, target.unbonding,
                                        target.jailed, target.tombstoned, target.missed, target.slashed))


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


def check_keeps_a_validator(view: WorkingState, address: Address, bonded: int, amount: int, params: Params) -> None:
    """Refuse unstaking ``amount`` of ``bonded`` if it would take the last eligible validator out
    of the draw. A chain with no eligible validator can never forge another block (every block
    needs a proposal from one), so the stake, the unbonding entries and every tx still pending
    would be locked for good; so the last one keeps ``min_stake`` bonded. (Admission asks too,
    with the sender's pending stakes and unstakes counted in ``bonded``.)"""
    account = view.account(address)
    if (bonded - amount < params.min_stake and amount <= bonded
            and is_eligible_validator(replace(account, bonded=bonded), params)
            and not has_other_eligible_validator(view, address, params)):
        raise InvalidTransaction(
            f"unstaking {amount} would leave {address} with {bonded - amount} bonded, below min_stake "
            f"{params.min_stake}, and no other validator eligible: no block could ever be forged again; unstake "
            f"at most {bonded - params.min_stake} while no other validator has at least min_stake bonded"
        )


def unstake(view: WorkingState, address: Address, amount: int, release_height: int, params: Params) -> None:
    """An unstake transaction: :func:`begin_unbonding`, unless :func:`check_keeps_a_validator` refuses."""
    check_keeps_a_validator(view, address, view.account(address).bonded, amount, params)
    begin_unbonding(view, address, amount, release_height)


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
    view.set_account(address, Account(account.balance, account.nonce + 1, account.bonded, account.unbonding,
                                      account.jailed, account.tombstoned, account.missed, account.slashed))


@dataclass(frozen=True)
class Slashing:
    """What one piece of evidence cost its validator, and where the tokens went."""

    validator: Address
    from_bonded: int
    from_unbonding: int
    reward: int
    burned: int

    @property
    def total(self) -> int:
        return self.from_bonded + self.from_unbonding


def slash_validator(
    view: WorkingState, address: Address, infraction_height: int, height: int, reporter: Address, params: Params
) -> Slashing:
    """Take ``slash_fraction_bps`` of the bonded stake and of every unbonding entry begun at or
    after the infraction; pay ``whistleblower_bps`` of it to ``reporter`` (the block's validator)
    and burn the rest; tombstone the validator and start unbonding what remains of its bond.

    Entries begun before the infraction are not touched: that stake was already leaving when the
    validator misbehaved. Stake whose unbonding has finished is out of reach, which is why
    evidence ``unbonding_blocks`` or more blocks old is refused and why the lock-up exists at all.
    """
    account = view.account(address)
    fraction = params.slash_fraction_bps
    from_bonded = account.bonded * fraction // BPS
    from_unbonding = 0
    entries: list[Unbonding] = []
    for entry in account.unbonding:
        begun = entry.release_height - params.unbonding_blocks
        cut = entry.amount * fraction // BPS if begun >= infraction_height else 0
        from_unbonding += cut
        if entry.amount - cut > 0:
            entries.append(Unbonding(entry.amount - cut, entry.release_height))
    total = from_bonded + from_unbonding
    reward = total * params.whistleblower_bps // BPS
    view.set_account(address, replace(
        account, bonded=account.bonded - from_bonded, unbonding=tuple(entries),
        tombstoned=True, jailed=False, missed=0, slashed=account.slashed + total,
    ))
    _adjust_totals(view, bonded=-from_bonded, unbonding=-from_unbonding, burned=total - reward)
    if reward:
        receiver = view.account(reporter)
        _check_cap(receiver.balance + reward, "whistleblower balance")
        view.set_account(reporter, replace(receiver, balance=receiver.balance + reward))
        _adjust_totals(view, liquid=reward)
    remaining = view.account(address).bonded
    if remaining:
        begin_unbonding(view, address, remaining, height + params.unbonding_blocks)
    return Slashing(address, from_bonded, from_unbonding, reward, total - reward)


def record_missed_turn(view: WorkingState, address: Address, params: Params) -> bool:
    """Count a turn missed by the first-drawn validator; jail it at ``max_missed``, unless no other
    validator would be left eligible: jailed, it could never send its unjail (that needs a block,
    and a block needs an eligible validator), and the chain would stop for good. True if jailed now."""
    account = view.account(address)
    missed = account.missed + 1
    jailed = missed >= params.max_missed and has_other_eligible_validator(view, address, params)
    view.set_account(address, replace(account, missed=missed, jailed=account.jailed or jailed))
    return jailed and not account.jailed


def record_proposal(view: WorkingState, address: Address) -> None:
    """A validator whose proposal is in a block is live: its count of missed turns starts again."""
    account = view.account(address)
    if account.missed:
        view.set_account(address, replace(account, missed=0))


def check_unjail(address: Address, account: Account) -> None:
    """Why an unjail from ``account`` would be refused, if it would (admission asks too)."""
    if account.tombstoned:
        raise InvalidTransaction(f"{address} is tombstoned for equivocation and can never be unjailed")
    if not account.jailed:
        raise InvalidTransaction(f"{address} is not jailed: there is nothing to unjail")


def unjail(view: WorkingState, address: Address) -> None:
    """Back into the draw after a jailing for missed turns (never after a tombstoning)."""
    account = view.account(address)
    check_unjail(address, account)
    view.set_account(address, replace(account, jailed=False, missed=0))


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
