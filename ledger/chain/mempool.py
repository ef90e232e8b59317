"""Pending transactions: admission checks, and persistence before acknowledgement.

A tx the user was told was accepted must survive ``kill -9``: :meth:`Mempool.submit` returns
only after a synced LevelDB write. Admission rejects, each with its own error: undecodable
bytes, a wrong chain id, a bad signature, a nonce that is too low, already used by a pending
tx, or leaves a gap, an amount above what the sender can spend counting its pending txs, a
duplicate (pending or in a block), a full mempool; for a proposal, a height other than the next
block's, a VRF proof that does not verify, or a second, different proposal for the same height
(equivocation: refused, and recorded as evidence). Evidence waits here too, until a block uses it.

Arrival order is a sequence number in the key, so the forger reads pending txs in arrival
order with one iterator; each sender's txs arrive in nonce order because gaps are refused.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Iterable, Iterator, Sequence, TypeVar

from ledger import encoding
from ledger.storage import schema
from ledger.crypto.address import Address
from ledger.errors import (
    DatabaseCorrupted,
    DuplicateEvidence,
    DuplicateTransaction,
    Equivocation,
    InvalidProposal,
    EncodingError,
    InsufficientBalance,
    InvalidParams,
    InvalidTransaction,
    LedgerError,
    MempoolFull,
    NonceMismatch,
)
from ledger.params import Params
from ledger.consensus.state import WorkingState, check_keeps_a_validator, check_unjail, is_eligible_validator
from ledger.storage.store import REPAIR_HINT, KeyValueStore
from ledger.consensus.blocks import BlockHeader
from ledger.consensus.evidence import Evidence, check_evidence, check_evidence_form, make_evidence
from ledger.consensus.fork import check_proposal, next_seed
from ledger.consensus.transactions import (
    Bpm,
    Stake,
    Transaction,
    Transfer,
    TxId,
    Unjail,
    Unstake,
    check_stateless,
    verify_signature,
)


MAX_MEMPOOL_MB_ENV = "POSCTL_MAX_MEMPOOL_MB"
DEFAULT_MAX_MEMPOOL_MB = 300
"""The pool's cap in bytes of canonical tx encodings, as Bitcoin Core's ``-maxmempool`` (300 MB);
the count cap (``max_mempool_txs``) still applies on top."""

CACHE_ENTRIES = 20_000
"""Decoded txs (about 1.9 KB each) and verified ids kept in memory: node memory stays bounded
however full the pool is; what falls out is read (or checked) again from the database."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A dict that forgets its oldest entries beyond ``limit`` (insertion order)."""

    def __init__(self, limit: int = CACHE_ENTRIES) -> None:
        self.limit = limit
        self._data: dict[K, V] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        while len(self._data) > self.limit:
            del self._data[next(iter(self._data))]

    def update(self, items: dict[K, V]) -> None:
        for key, value in items.items():
            self.put(key, value)

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._data.pop(key, default)

    def add(self, key: K) -> None:
        """Set-like use (``verified``): remember ``key``."""
        self.put(key, None)  # type: ignore[arg-type]

    def discard(self, key: K) -> None:
        self.pop(key)


def max_mempool_bytes() -> int:
    """``POSCTL_MAX_MEMPOOL_MB`` (default 300) in bytes; a bad value is refused at start."""
    text = os.environ.get(MAX_MEMPOOL_MB_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_MEMPOOL_MB * 1024 * 1024
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidParams(f"{MAX_MEMPOOL_MB_ENV}={text!r} is not a positive number of megabytes: set e.g. 300")
    return int(value * 1024 * 1024)


@dataclass
class SenderPending:
    """What a sender's pending txs commit it to, on top of its account state."""

    count: int = 0
    liquid_spend: int = 0
    stake: int = 0
    unstake: int = 0
    proposals: int = 0
    proposal_ids: dict[int, TxId] = field(default_factory=dict)
    """Pending proposals by height: a second, different one for a height is equivocation."""
    unjails: int = 0

    def add(self, tx: Transaction) -> None:
        self.count += 1
        match tx:
            case Transfer(amount=amount):
                self.liquid_spend += amount
            case Stake(amount=amount):
                self.liquid_spend += amount
                self.stake += amount
            case Unstake(amount=amount):
                self.unstake += amount
            case Bpm(height=height):
                self.proposals += 1
                self.proposal_ids.setdefault(height, tx.tx_id)
            case Unjail():
                self.unjails += 1

    def copy(self) -> "SenderPending":
        return SenderPending(self.count, self.liquid_spend, self.stake, self.unstake, self.proposals,
                             dict(self.proposal_ids), self.unjails)


@dataclass(frozen=True)
class Admission:
    """The result of submitting one tx of a batch: its id, or why it was refused."""

    tx_id: TxId | None
    error: LedgerError | None = None


class Mempool:
    """The persisted pool of pending txs, with small in-memory caches rebuilt lazily."""

    def __init__(self, store: KeyValueStore, params: Params, tip: Callable[[], BlockHeader]) -> None:
        self._store = store
        self._params = params
        self._tip = tip
        """The chain's current tip: proposals are admitted for the height after it only."""
        meta = store.get(schema.MEMPOOL_META_KEY)
        data = _decode_meta(meta) if meta else {"count": 0, "next_seq": 0, "bytes": 0}
        self.count: int = data["count"]
        self._next_seq: int = data["next_seq"]
        self.bytes: int = data["bytes"] if "bytes" in data else self._count_bytes()
        """Bytes of the pending txs' canonical encodings (older metas lack it: counted once)."""
        self.max_bytes = max_mempool_bytes()
        self._senders: dict[Address, SenderPending] = {}
        self.verified: BoundedCache[TxId, None] = BoundedCache()
        """Ids this process validated at admission (stateless rules and signature), the newest
        ``CACHE_ENTRIES``: the forger checks the others again."""
        self._decoded: BoundedCache[int, Transaction] = BoundedCache()
        """Pending txs already decoded in this process, by sequence, the newest ``CACHE_ENTRIES``."""

    def _count_bytes(self) -> int:
        return sum(len(value) for _, value in self._store.iterate(schema.MEMPOOL_PREFIX))

    def _state_get(self, key: bytes) -> bytes | None:
        return self._store.get(schema.make_state_key(key))

    def _state_items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        start = len(schema.STATE_PREFIX)
        return ((key[start:], value) for key, value in self._store.iterate(schema.make_state_key(prefix)))

    def state_view(self) -> WorkingState:
        """A read view of the committed state (never written back)."""
        return WorkingState(self._state_get, self._state_items)

    # ---- reading ---------------------------------------------------------------------------

    def pending(self) -> Iterator[tuple[int, Transaction]]:
        """(sequence, tx) in arrival order."""
        for key, value in self._store.iterate(schema.MEMPOOL_PREFIX):
            seq = schema.decode_u64(key[len(schema.MEMPOOL_PREFIX):])
            tx = self._decoded.get(seq)
            if tx is None:
                tx = Transaction.decode(value)
                self._decoded.put(seq, tx)
            yield seq, tx

    def get(self, tx_id: TxId) -> Transaction | None:
        seq = self._store.get(schema.make_mempool_id_key(tx_id))
        if seq is None:
            return None
        raw = self._store.get(schema.MEMPOOL_PREFIX + seq)
        return None if raw is None else Transaction.decode(raw)

    def address_txs(self, address: Address) -> Iterator[tuple[int, Transaction]]:
        """(sequence, tx) of the pending txs ``address`` sent or will receive (transfers), newest
        arrival first: O(those txs), from the sender and recipient indexes, never a pool scan.

        Both lists are already newest first (a sender's nonces arrive in order: gaps are
        refused), so they are merged as they are read."""
        sent = self._sent_with_seq(address)
        received = (
            (schema.decode_u64(key[-8:]), tx_id)
            for key, tx_id in self._store.iterate(schema.make_mempool_recipient_prefix(address), reverse=True)
        )
        for seq, tx_id in heapq.merge(sent, received, key=lambda item: -item[0]):
            tx = self.get(tx_id)
            if tx is not None:
                yield seq, tx

    def _sent_with_seq(self, address: Address) -> Iterator[tuple[int, TxId]]:
        for _, tx_id in self._store.iterate(schema.make_mempool_sender_prefix(address), reverse=True):
            seq = self._store.get(schema.make_mempool_id_key(tx_id))
            if seq is not None:
                yield schema.decode_u64(seq), tx_id

    def sender_pending(self, address: Address) -> SenderPending:
        cached = self._senders.get(address)
        if cached is not None:
            return cached
        pending = SenderPending()
        for _, tx_id in self._store.iterate(schema.make_mempool_sender_prefix(address)):
            tx = self.get(tx_id)
            if tx is not None:
                pending.add(tx)
        self._senders[address] = pending
        return pending

    # ---- admission -------------------------------------------------------------------------

    def check(self, tx: Transaction, extra: SenderPending | None = None, queued: int = 0,
              queued_bytes: int = 0, verify: Callable[[Transaction], None] = verify_signature,
              view: WorkingState | None = None) -> None:
        """Every admission rule; raises the specific error of the first one broken.

        ``verify`` checks the signature in its place among the rules; the admission pipeline
        passes the verdict of its worker processes instead of checking a second time. ``view``
        reads the committed state (one per batch, so an account is decoded once per batch).

        ``queued`` counts txs admitted earlier in the same batch. A full pool still takes one
        pending ``bpm`` per eligible validator: otherwise a pool filled with anyone's txs would
        leave no proposal to forge the block that drains it.
        """
        size = self.count + queued
        full_bytes = self.bytes + queued_bytes + len(tx.encoded) > self.max_bytes
        full = size >= self._params.max_mempool_txs or full_bytes
        limit = (f"{_size_text(self.bytes + queued_bytes)} of txs and this one needs {_size_text(len(tx.encoded))}: "
                 f"its cap is {_size_text(self.max_bytes)} ({MAX_MEMPOOL_MB_ENV})"
                 if full_bytes else f"{size} txs, its limit")
        if full and not isinstance(tx, Bpm):
            raise MempoolFull(f"the mempool holds {limit}: forge a block and retry")
        check_stateless(tx, self._params)
        sender = tx.sender
        reader = view or self.state_view()
        account = reader.account(sender)
        pending = extra or self.sender_pending(sender)
        expected = account.nonce + pending.count
        # A tx already pending or in a block has used a nonce below ``expected`` (nonces are
        # consecutive, and included ones are below the account's), so a tx at or above it needs
        # neither lookup: two reads saved for every tx admitted, the same refusals for the rest.
        if tx.nonce < expected:
            tx_id = tx.tx_id
            if self._store.get(schema.make_mempool_id_key(tx_id)) is not None:
                raise DuplicateTransaction(f"tx {tx_id.hex()} is already pending")
            if self._store.get(schema.make_tx_location_key(tx_id)) is not None:
                raise DuplicateTransaction(f"tx {tx_id.hex()} is already in a block")
        verify(tx)
        if full and (pending.proposals or not is_eligible_validator(account, self._params)):
            raise MempoolFull(f"the mempool holds {limit}: forge a block and retry")
        if isinstance(tx, Bpm):
            self._check_proposal(tx, pending)
        if tx.nonce < account.nonce:
            raise NonceMismatch(
                f"nonce {tx.nonce} is too low: {sender} has already used nonces below {account.nonce}"
            )
        if tx.nonce < expected:
            raise NonceMismatch(f"nonce {tx.nonce} is already used by a pending tx of {sender}: next is {expected}")
        if tx.nonce > expected:
            raise NonceMismatch(f"nonce {tx.nonce} leaves a gap: the next nonce of {sender} is {expected}")
        match tx:
            case Transfer(amount=amount) | Stake(amount=amount):
                spendable = account.balance - pending.liquid_spend
                if amount > spendable:
                    raise InsufficientBalance(
                        f"{tx.kind} of {amount} is above the spendable balance of {sender}: "
                        f"{spendable} ({account.balance} liquid, {pending.liquid_spend} in pending txs)"
                    )
            case Unstake(amount=amount):
                unstakeable = account.bonded + pending.stake - pending.unstake
                if amount > unstakeable:
                    raise InsufficientBalance(
                        f"unstake of {amount} is above the bonded stake of {sender}: {unstakeable} "
                        f"({account.bonded} bonded, {pending.stake} in pending stakes, "
                        f"{pending.unstake} in pending unstakes)"
                    )
                check_keeps_a_validator(reader, sender, unstakeable, amount, self._params)
            case Unjail():
                # Refused here, not only in a block: evicted there, it took the sender's later txs
                # with it (their nonces then left a gap), a proposal among them, which the wallet
                # had recorded as signed for its height: a lone validator could never propose again.
                check_unjail(sender, account)
                if pending.unjails:
                    raise InvalidTransaction(f"an unjail from {sender} is already pending: one is enough")

    def _check_proposal(self, tx: Bpm, pending: SenderPending) -> None:
        """A proposal is for the next block only, with a VRF proof over that height's seed; a
        second, different proposal for a height already proposed is equivocation, recorded as
        evidence before it is refused."""
        tip = self._tip()
        height = tip.height + 1
        if tx.height != height:
            raise InvalidProposal(
                f"the proposal is for height {tx.height}, but the next block is {height}: "
                "propose again for the next height"
            )
        check_proposal(tx, height, next_seed(tip), self._params)
        earlier_id = pending.proposal_ids.get(tx.height)
        earlier = None if earlier_id is None else self.get(earlier_id)
        if earlier is not None and earlier.tx_id != tx.tx_id:
            evidence = make_evidence(earlier, tx)
            try:
                self.submit_evidence(evidence)
            except DuplicateEvidence:
                pass  # already recorded: still refuse the proposal
            raise Equivocation(
                f"{tx.sender} already has a different proposal pending for height {tx.height}: "
                f"that is equivocation, recorded as evidence {evidence.id_hex}"
            )

    # ---- evidence --------------------------------------------------------------------------

    def submit_evidence(self, evidence: Evidence) -> bytes:
        """Admit evidence for the next block (synced write); returns its id."""
        key = schema.make_mempool_evidence_key(evidence.evidence_id)
        if self._store.get(key) is not None:
            raise DuplicateEvidence(f"evidence {evidence.id_hex} is already pending")
        check_evidence_form(evidence, self._params)
        check_evidence(self.state_view(), evidence, self._tip().height + 1, self._params)
        self._store.write({key: evidence.encode()})
        return evidence.evidence_id

    def pending_evidence(self) -> Iterator[tuple[bytes, Evidence]]:
        """(key, evidence) in id order."""
        for key, value in self._store.iterate(schema.MEMPOOL_EVIDENCE_PREFIX):
            yield key, Evidence.decode(value)

    def evidence_count(self) -> int:
        return sum(1 for _ in self._store.iterate(schema.MEMPOOL_EVIDENCE_PREFIX))

    def submit(self, tx: Transaction) -> TxId:
        """Admit one tx; returns only once it is durably stored."""
        result = self.submit_many([tx])[0]
        if result.error is not None:
            raise result.error
        return result.tx_id  # type: ignore[return-value]

    def submit_many(self, txs: Sequence[Transaction],
                    verify: Callable[[Transaction], None] = verify_signature) -> list[Admission]:
        """Admit several txs with one synced write (group commit); each gets its own result.

        ``verify`` is as for :meth:`check`."""
        results: list[Admission] = []
        changes: dict[bytes, bytes | None] = {}
        touched: dict[Address, SenderPending] = {}
        added: list[TxId] = []
        added_ids: set[TxId] = set()
        admitted: dict[int, Transaction] = {}
        added_bytes = 0
        view = self.state_view()  # committed state: unchanged until this batch's one write
        for tx in txs:
            sender = tx.sender if _has_valid_key(tx) else None
            pending = None
            if sender is not None:
                base = touched.get(sender) or self.sender_pending(sender)
                pending = base.copy()
            try:
                if tx.tx_id in added_ids:
                    raise DuplicateTransaction(f"tx {tx.id_hex} is already pending")
                self.check(tx, pending, queued=len(added), queued_bytes=added_bytes, verify=verify, view=view)
            except LedgerError as exc:
                results.append(Admission(None, exc))
                continue
            if pending is None or sender is None:  # pragma: no cover - check() refused it
                continue
            pending.add(tx)
            touched[sender] = pending
            seq = self._next_seq + len(added)
            changes.update(_entry_records(seq, tx))
            added.append(tx.tx_id)
            added_ids.add(tx.tx_id)
            added_bytes += len(tx.encoded)
            admitted[seq] = tx
            results.append(Admission(tx.tx_id))
        if added:
            changes[schema.MEMPOOL_META_KEY] = self._meta(
                self.count + len(added), self._next_seq + len(added), self.bytes + added_bytes
            )
            self._store.write(changes)
            self.count += len(added)
            self._next_seq += len(added)
            self.bytes += added_bytes
            self._senders.update(touched)
            for tx_id in added:
                self.verified.add(tx_id)
            self._decoded.update(admitted)
        return results

    @staticmethod
    def meta_record(count: int, next_seq: int, size: int) -> bytes:
        """The stored counters (written empty right after genesis: see ``Chain.initialise``)."""
        return encoding.encode({"count": count, "next_seq": next_seq, "bytes": size})

    _meta = meta_record

    # ---- removal (inside a block's batch) --------------------------------------------------

    def removal_changes(self, removed: Iterable[tuple[int, Transaction]]) -> dict[bytes, bytes | None]:
        """Deletes for txs leaving the pool, to go into the block's single atomic batch."""
        changes: dict[bytes, bytes | None] = {}
        n = size = 0
        for seq, tx in removed:
            changes.update(dict.fromkeys(_entry_records(seq, tx)))
            n += 1
            size += len(tx.encoded)
        changes[schema.MEMPOOL_META_KEY] = self._meta(self.count - n, self._next_seq, max(self.bytes - size, 0))
        return changes

    def after_commit(self, removed: Sequence[tuple[int, Transaction]]) -> None:
        """Bring the caches in line once the batch with ``removal_changes`` is on disk."""
        self.count -= len(removed)
        self.bytes = max(self.bytes - sum(len(tx.encoded) for _, tx in removed), 0)
        self._senders.clear()
        for seq, tx in removed:
            self.verified.discard(tx.tx_id)
            self._decoded.pop(seq, None)


def _entry_records(seq: int, tx: Transaction) -> dict[bytes, bytes]:
    """The records one pending tx is kept as: the tx by arrival, and its indexes by id, by its
    sender's nonce and (a transfer to another) by recipient. Admission writes them, a block
    deletes them, a repair rebuilds them."""
    records = {
        schema.make_mempool_key(seq): tx.encode(),
        schema.make_mempool_id_key(tx.tx_id): schema.encode_u64(seq),
        schema.make_mempool_sender_key(tx.sender, tx.nonce): tx.tx_id,
    }
    if isinstance(tx, Transfer) and tx.to != tx.sender:
        records[schema.make_mempool_recipient_key(tx.to, seq)] = tx.tx_id
    return records


def _decode_meta(raw: bytes) -> dict[str, int]:
    """The pool's counters, or :class:`DatabaseCorrupted`: a damaged record ended every command
    in a ``KeyError`` traceback."""
    try:
        data = encoding.decode_stored(raw)
        if not isinstance(data, dict) or not {"count", "next_seq"} <= data.keys() \
                or not all(type(value) is int and value >= 0 for value in data.values()):
            raise EncodingError(f"fields {sorted(data) if isinstance(data, dict) else data!r}")
    except EncodingError as exc:
        raise DatabaseCorrupted(f"the mempool's counters are damaged ({exc}): {REPAIR_HINT}") from None
    return data


def rebuild_records(store: KeyValueStore) -> tuple[int, int]:
    """After LevelDB's repair, which reads its logs without checksums (a damaged record can come
    back as altered bytes: seen, a counter named ``co/nt``): keep each pending tx whose record
    decodes to its own canonical bytes with a good signature, and rebuild every index and the
    counters from those alone. Returns (kept, dropped)."""
    kept: dict[int, Transaction] = {}
    changes: dict[bytes, bytes | None] = {}
    dropped = 0
    for prefix in (schema.MEMPOOL_ID_PREFIX, schema.MEMPOOL_SENDER_PREFIX, schema.MEMPOOL_RECIPIENT_PREFIX):
        changes.update(dict.fromkeys(key for key, _ in store.iterate(prefix)))
    for key, value in store.iterate(schema.MEMPOOL_PREFIX):
        try:
            tx = Transaction.decode(value)
            if tx.encode() != value or len(key) != len(schema.MEMPOOL_PREFIX) + 8:
                raise EncodingError("not canonical")
            verify_signature(tx)
        except LedgerError:
            changes[key] = None
            dropped += 1
            continue
        kept[schema.decode_u64(key[len(schema.MEMPOOL_PREFIX):])] = tx
    for seq, tx in kept.items():
        changes.update(_entry_records(seq, tx))
    changes[schema.MEMPOOL_META_KEY] = Mempool.meta_record(
        len(kept), max(kept, default=-1) + 1, sum(len(tx.encoded) for tx in kept.values()))
    store.write(changes)
    return len(kept), dropped


def _size_text(size: int) -> str:
    """Bytes as a person reads them: exact below a MiB (a small test cap must not read "0.0 MB")."""
    return f"{size / (1024 * 1024):.1f} MB" if size >= 1024 * 1024 else f"{size} bytes"


def _has_valid_key(tx: Transaction) -> bool:
    try:
        tx.sender
    except LedgerError:
        return False
    return True


def decode_submission(data: bytes) -> Transaction:
    """Bytes from a client → a tx, with undecodable input reported as an invalid tx."""
    try:
        return Transaction.decode(data)
    except EncodingError as exc:
        raise InvalidTransaction(f"undecodable transaction: {exc}") from None


def decode_submitted_value(obj: object) -> Transaction:
    """One parsed item of a submitted batch → a tx, as :func:`decode_submission` of its bytes."""
    try:
        return Transaction.from_json_value(obj)
    except EncodingError as exc:
        raise InvalidTransaction(f"undecodable transaction: {exc}") from None


__all__ = ["Admission", "Mempool", "SenderPending", "decode_submission", "decode_submitted_value"]
