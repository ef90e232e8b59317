"""Signature checks for ``verify()`` spread over every core.

Checking signatures is most of a replay's cost and each check is independent, so while the main
process applies block h, worker processes check the signatures of the blocks it has already
read. Results are collected in height order, so the first bad height is still the one reported.
Short replays never start the workers: a process pool costs more to start than it saves there.
Workers are spawned (not forked: the parent holds LevelDB's threads), and if the pool cannot
start or breaks, the checks run inline — slower, never skipped.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections import deque
from typing import Callable, Iterator, Sequence

from ledger.consensus.blocks import Block
from ledger.consensus.lottery import vrf_alpha
from ledger.consensus.transactions import Bpm, Transaction
from ledger.crypto import ecvrf, secp256k1
from ledger.errors import InvalidProof, InvalidSignature, LedgerError, VerificationError
from ledger.chain.pools import end_pool, spawn_pool

PARALLEL_THRESHOLD = 2000
"""Signatures seen before the pool starts; below this, checking inline is faster."""

CHUNK = 500
"""Signatures per task: large enough to amortise pickling, small enough to spread."""

MAX_IN_FLIGHT = 16
"""Tasks outstanding at once, so memory stays bounded however long the chain."""

Item = tuple[bytes, bytes, bytes]


def first_invalid(items: Sequence[Item]) -> tuple[int, str] | None:
    """(index, reason) of the first signature that does not verify, or ``None``."""
    for index, (public_key, message, signature) in enumerate(items):
        try:
            secp256k1.verify(public_key, message, signature)
        except InvalidSignature as exc:
            return index, str(exc)
    return None


PROOF_THRESHOLD = {"pycryptodome": 300, "coincurve": 2000}
"""Blocks from which a replay checks VRF proofs on the workers, ahead of the block it applies,
by signature engine. Spawning the workers costs about 120 ms on the critical path; measured on
2 cores (one-proposal blocks), the pool pays from a few hundred blocks when a proof and a
signature cost 0.64 ms in pure Python, but only from about 2,000 when libsecp256k1 brings them to
0.16 ms (1k blocks: 2,000/s inline against 1,770/s with the pool; 4k: 1,900 against 2,460)."""

PROOF_BATCH = 32
"""Blocks whose proposals make one task."""

PROOF_AHEAD = 8
"""Tasks in flight: how far the replay reads ahead (blocks are read in order, once)."""

ProofItem = tuple[bytes, bytes, bytes, bytes]
"""(tx id, public key, alpha, proof) of one proposal."""


def proof_outputs(items: Sequence[ProofItem]) -> list[tuple[bytes, bytes]]:
    """(tx id, VRF output) of each proposal whose proof verifies; a bad one is left out, and the
    replay verifies it inline, which says why it is bad at the right height."""
    out = []
    for tx_id, public_key, alpha, proof in items:
        try:
            out.append((tx_id, ecvrf.verify(public_key, alpha, proof)))
        except (InvalidProof, LedgerError):
            pass
    return out


def _proof_items(chain_id: str, block: Block) -> list[ProofItem]:
    items = []
    for tx in block.txs:
        if isinstance(tx, Bpm) and tx.height == block.height:
            items.append((tx.tx_id, tx.public_key, vrf_alpha(chain_id, tx.height, block.header.seed), tx.vrf_proof))
    return items


Where = tuple[int, int, Transaction]
"""(height, index in its block, tx) of a scheduled signature, to name it if it is bad."""


class SignatureChecker:
    """Checks signatures inline at first, then in a process pool once the replay is long.

    Signatures are sent to the pool in chunks of :data:`CHUNK` gathered across blocks: a chain
    of small blocks otherwise paid a task (pickling, a pipe round trip, a future) per block,
    more than its one signature costs to check."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or os.cpu_count() or 1
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._pending: deque[tuple[list[Where], list[Item], concurrent.futures.Future]] = deque()
        self._gathered: list[Where] = []
        self._gathered_items: list[Item] = []
        self._seen = 0
        self._broken = False

    def __enter__(self) -> "SignatureChecker":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            end_pool(pool, abandon=exc[0] is not None)

    def check(self, height: int, txs: Sequence[Transaction]) -> None:
        """Check (or schedule the check of) the signatures of block ``height``."""
        self._seen += len(txs)
        if self._broken or (self._pool is None and (self._seen < PARALLEL_THRESHOLD or self._workers < 2)):
            where = [(height, index, tx) for index, tx in enumerate(txs)]
            self._raise_if_bad(where, first_invalid(self._items(txs)))
            return
        self._start_pool()
        for index, tx in enumerate(txs):
            self._gathered.append((height, index, tx))
            self._gathered_items.append((tx.public_key, tx.signing_message(), tx.signature))
            if len(self._gathered) >= CHUNK:
                self._submit()

    def blocks(
        self, read: Callable[[int], Block], first: int, last: int, chain_id: str
    ) -> Iterator[tuple[int, Block, dict[bytes, bytes] | None]]:
        """(height, block, its proposals' VRF outputs) for ``first..last`` in order.

        On a long replay the blocks are read ahead and their proposals' proofs verified on the
        workers (each over its block's header seed, which the replay then checks is the seed the
        parent fixes), so the outputs come with the block; otherwise the outputs are ``None``
        and the replay verifies the proofs itself. An error reading a block is raised when the
        replay reaches that height, never earlier, so an earlier bad height is still reported first.
        """
        if self._workers < 2 or last - first + 1 < PROOF_THRESHOLD[secp256k1.engine()]:
            for height in range(first, last + 1):
                yield height, read(height), None
            return
        self._start_pool()
        batches: deque[tuple[list[tuple[int, Block | None]], Exception | None, concurrent.futures.Future | None]] = deque()
        next_height = first
        while next_height <= last or batches:
            while next_height <= last and len(batches) < PROOF_AHEAD:
                batch: list[tuple[int, Block | None]] = []
                failure: Exception | None = None
                items: list[ProofItem] = []
                for height in range(next_height, min(next_height + PROOF_BATCH, last + 1)):
                    try:
                        block = read(height)
                    except VerificationError as exc:
                        failure = exc
                        break
                    batch.append((height, block))
                    items += _proof_items(chain_id, block)
                next_height = last + 1 if failure is not None else next_height + PROOF_BATCH
                batches.append((batch, failure, self._submit_proofs(items)))
            batch, failure, future = batches.popleft()
            outputs = self._proof_results(future)
            for height, block in batch:
                yield height, block, outputs
            if failure is not None:
                raise failure

    def _start_pool(self) -> None:
        if self._pool is None:
            self._pool = spawn_pool(self._workers)

    def _submit_proofs(self, items: list[ProofItem]) -> concurrent.futures.Future | None:
        if not items or self._broken or self._pool is None:
            return None
        try:
            return self._pool.submit(proof_outputs, items)
        except Exception:  # the pool broke: the replay verifies the proofs itself
            self._broken = True
            return None

    def _proof_results(self, future: concurrent.futures.Future | None) -> dict[bytes, bytes] | None:
        if future is None:
            return None
        try:
            return dict(future.result())
        except Exception:  # a worker could not start or died: the replay verifies the proofs itself
            self._broken = True
            return None

    def finish(self) -> None:
        """Wait for every scheduled check; raises for the lowest bad height."""
        if self._gathered:
            self._submit()
        while self._pending:
            self._collect_one()

    def _submit(self) -> None:
        where, items = self._gathered, self._gathered_items
        self._gathered, self._gathered_items = [], []
        if self._broken or self._pool is None:
            self._raise_if_bad(where, first_invalid(items))
            return
        try:
            future = self._pool.submit(first_invalid, items)
        except Exception:  # the pool broke (a worker could not start or died): check here instead
            self._broken = True
            self._raise_if_bad(where, first_invalid(items))
            return
        self._pending.append((where, items, future))
        while len(self._pending) > MAX_IN_FLIGHT:
            self._collect_one()

    def _collect_one(self) -> None:
        where, items, future = self._pending.popleft()
        try:
            result = future.result()
        except Exception:  # a worker could not start or died: check this chunk here instead
            self._broken = True
            result = first_invalid(items)
        self._raise_if_bad(where, result)

    @staticmethod
    def _items(txs: Sequence[Transaction]) -> list[Item]:
        return [(tx.public_key, tx.signing_message(), tx.signature) for tx in txs]

    @staticmethod
    def _raise_if_bad(where: Sequence[Where], bad: tuple[int, str] | None) -> None:
        if bad is not None:
            index, reason = bad
            height, position, tx = where[index]
            raise VerificationError(f"height {height}: tx {position} ({tx.id_hex}): {reason}", height)


def verdicts(items: Sequence[Item]) -> list[str | None]:
    """For each signature, ``None`` if it verifies, else why not (run in the admission workers)."""
    out: list[str | None] = []
    for public_key, message, signature in items:
        try:
            secp256k1.verify(public_key, message, signature)
        except InvalidSignature as exc:
            out.append(str(exc))
        else:
            out.append(None)
    return out


def warm_up() -> str:
    """Import everything a worker needs before the first real task; returns the engine in use."""
    return secp256k1.engine()
