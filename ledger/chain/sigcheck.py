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
import multiprocessing
import os
from collections import deque
from typing import Sequence

from ledger.crypto import secp256k1
from ledger.errors import InvalidSignature, VerificationError
from ledger.consensus.transactions import Transaction

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


class SignatureChecker:
    """Checks signatures inline at first, then in a process pool once the replay is long."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or os.cpu_count() or 1
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._pending: deque[tuple[int, list[Transaction], int, concurrent.futures.Future]] = deque()
        self._seen = 0
        self._broken = False

    def __enter__(self) -> "SignatureChecker":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def check(self, height: int, txs: Sequence[Transaction]) -> None:
        """Check (or schedule the check of) the signatures of block ``height``."""
        self._seen += len(txs)
        if self._broken or (self._pool is None and (self._seen < PARALLEL_THRESHOLD or self._workers < 2)):
            self._raise_if_bad(height, list(txs), 0, first_invalid(self._items(txs)))
            return
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self._workers, mp_context=multiprocessing.get_context("spawn")
            )
        for start in range(0, len(txs), CHUNK):
            chunk = list(txs[start:start + CHUNK])
            future = self._pool.submit(first_invalid, self._items(chunk))
            self._pending.append((height, chunk, start, future))
            while len(self._pending) > MAX_IN_FLIGHT:
                self._collect_one()

    def finish(self) -> None:
        """Wait for every scheduled check; raises for the lowest bad height."""
        while self._pending:
            self._collect_one()

    def _collect_one(self) -> None:
        height, chunk, offset, future = self._pending.popleft()
        try:
            result = future.result()
        except Exception:  # a worker could not start or died: check this chunk here instead
            self._broken = True
            result = first_invalid(self._items(chunk))
        self._raise_if_bad(height, chunk, offset, result)

    @staticmethod
    def _items(txs: Sequence[Transaction]) -> list[Item]:
        return [(tx.public_key, tx.signing_message(), tx.signature) for tx in txs]

    @staticmethod
    def _raise_if_bad(height: int, chunk: list[Transaction], offset: int, bad: tuple[int, str] | None) -> None:
        if bad is not None:
            index, reason = bad
            tx = chunk[index]
            raise VerificationError(
                f"height {height}: tx {offset + index} ({tx.id_hex}): {reason}", height
            )


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
