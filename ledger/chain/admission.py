"""The admission pipeline: submissions verified on every core, then group-committed.

Checking a signature is most of what admitting a tx costs, and one synced LevelDB write costs
as much as hundreds of checks, so admitting txs one at a time leaves cores idle and the disk
busy. The pipeline has two stages that overlap:

1. **verify** — a collector thread takes every submission waiting (one tx or a batch, from any
   number of clients), splits their signatures across a process pool (one worker per core,
   spawned: the parent holds LevelDB's threads) and moves on to the next arrivals;
2. **commit** — a committer thread takes every group whose checks are done and admits them all
   through ``commit`` (the node's :meth:`Chain.submit_many` under its lock) with **one** synced
   write; only then is each submission's future resolved.

So a tx is acknowledged only when it is on disk, exactly as before, and ``kill -9`` at any moment
loses nothing acknowledged; what changes is that one write carries everything admitted while the
previous write was in flight (group commit), and both cores check signatures. Each tx still gets
its own answer: the signature verdict is used in its place among the mempool's rules, so the
first rule broken is reported, as with :meth:`Mempool.check`. If the pool cannot start or breaks,
signatures are checked in the collector thread: slower, never skipped.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from ledger.chain import sigcheck
from ledger.chain.mempool import Admission
from ledger.chain.pools import end_pool, spawn_pool
from ledger.consensus.transactions import Transaction
from ledger.errors import InvalidSignature, NodeUnavailable

CommitFunction = Callable[[Sequence[Transaction], Callable[[Transaction], None]], list[Admission]]
"""Admit txs in one synced write, checking signatures with the given function."""

MAX_GROUP_TXS = 4096
"""The most txs one verify round or one commit takes; more wait for the next."""

INLINE_BELOW = {"coincurve": 64}
"""By engine: a group of fewer signatures than this is checked in the collector thread. A round
trip to a worker (pickling, two pipes, two thread hand-offs) costs more than libsecp256k1's ~30 us
a check, so small groups — single-tx POSTs — only waited on it; pure Python's ~220 us is worth
sending at any size."""

MAX_IN_FLIGHT_PER_WORKER = 2
"""Verify tasks outstanding per worker; arrivals meanwhile gather into the next, larger task."""


@dataclass
class _Job:
    txs: list[Transaction]
    future: "concurrent.futures.Future[list[Admission]]"


@dataclass
class _Group:
    jobs: list[_Job]
    checks: list["concurrent.futures.Future[list[str | None]]"]
    spans: list[tuple[int, int]]
    """(start, end) of each check task in the group's tx list."""


def _checked_here(items: list[sigcheck.Item]) -> "concurrent.futures.Future[list[str | None]]":
    """The verdicts of ``items``, checked in this thread, as a done future like a worker's."""
    done: concurrent.futures.Future[list[str | None]] = concurrent.futures.Future()
    done.set_result(sigcheck.verdicts(items))
    return done


class AdmissionPipeline:
    """Verify on a process pool, commit in groups; :meth:`submit` returns a future per request."""

    def __init__(self, commit: CommitFunction, workers: int | None = None) -> None:
        self._commit = commit
        self._workers = max(0, os.cpu_count() or 1) if workers is None else workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        if self._workers >= 1:
            try:
                self._pool = spawn_pool(self._workers)
            except (OSError, ValueError):
                self._pool = None
        self._incoming: "queue.SimpleQueue[_Job | None]" = queue.SimpleQueue()
        self._verified: "queue.SimpleQueue[_Group | None]" = queue.SimpleQueue()
        self._slots = threading.Semaphore(max(1, self._workers) * MAX_IN_FLIGHT_PER_WORKER)
        self._closed = False
        self._close_lock = threading.Lock()
        self.engine = "inline"
        self._collector = threading.Thread(target=self._collect_loop, name="posctl-admission-verify", daemon=True)
        self._committer = threading.Thread(target=self._commit_loop, name="posctl-admission-commit", daemon=True)
        self._collector.start()
        self._committer.start()

    def warm_up(self) -> None:
        """Start every worker now, so the first clients do not wait for processes to spawn."""
        if self._pool is None:
            self.engine = sigcheck.warm_up()
            return
        try:
            engines = [self._pool.submit(sigcheck.warm_up) for _ in range(self._workers)]
            self.engine = engines[0].result(timeout=60)
            for future in engines[1:]:
                future.result(timeout=60)
        except Exception:  # the pool cannot start here: check inline
            self._pool = None
            self.engine = sigcheck.warm_up()

    def submit(self, txs: Sequence[Transaction]) -> "concurrent.futures.Future[list[Admission]]":
        """Queue txs for admission; the future resolves once they are durable (or refused)."""
        future: concurrent.futures.Future[list[Admission]] = concurrent.futures.Future()
        with self._close_lock:
            if self._closed:
                future.set_exception(NodeUnavailable("the node is shutting down: retry once it has stopped"))
                return future
            self._incoming.put(_Job(list(txs), future))
        return future

    def admit(self, txs: Sequence[Transaction]) -> list[Admission]:
        """:meth:`submit` and wait."""
        return self.submit(txs).result()

    def close(self) -> None:
        """Finish what was submitted, then stop the threads and the pool."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._incoming.put(None)
        self._collector.join()
        self._committer.join()
        if self._pool is not None:
            end_pool(self._pool, abandon=False)

    # ---- stage 1: verify -------------------------------------------------------------------

    def _collect_loop(self) -> None:
        stopping = False
        while not stopping:
            job = self._incoming.get()
            if job is None:
                break
            jobs = [job]
            count = len(job.txs)
            while count < MAX_GROUP_TXS:
                try:
                    more = self._incoming.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                jobs.append(more)
                count += len(more.txs)
            self._verified.put(self._start_checks(jobs))
        self._verified.put(None)

    def _start_checks(self, jobs: list[_Job]) -> _Group:
        items = [(tx.public_key, tx.signing_message(), tx.signature) for job in jobs for tx in job.txs]
        if len(items) < INLINE_BELOW.get(self.engine, 0):
            return _Group(jobs, [_checked_here(items)], [(0, len(items))])
        parts = max(1, min(self._workers, len(items)))
        size = -(-len(items) // parts) if items else 0
        checks: list[concurrent.futures.Future[list[str | None]]] = []
        spans: list[tuple[int, int]] = []
        for start in range(0, len(items), max(1, size)):
            chunk = items[start:start + size]
            spans.append((start, start + len(chunk)))
            checks.append(self._check(chunk))
        return _Group(jobs, checks, spans)

    def _check(self, chunk: list[sigcheck.Item]) -> "concurrent.futures.Future[list[str | None]]":
        pool = self._pool
        if pool is not None:
            self._slots.acquire()
            try:
                future = pool.submit(sigcheck.verdicts, chunk)
            except Exception:  # a broken or closed pool: check here from now on
                self._slots.release()
                self._pool = None
            else:
                future.add_done_callback(lambda _f: self._slots.release())
                return future
        return _checked_here(chunk)

    # ---- stage 2: commit -------------------------------------------------------------------

    def _commit_loop(self) -> None:
        while True:
            group = self._verified.get()
            if group is None:
                return
            groups = [group]
            last = False
            size = sum(len(job.txs) for job in group.jobs)
            while size < MAX_GROUP_TXS:
                try:
                    more = self._verified.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    last = True
                    break
                groups.append(more)
                size += sum(len(job.txs) for job in more.jobs)
            self._commit_groups(groups)
            if last:
                return

    def _verdicts(self, group: _Group) -> list[str | None]:
        out: list[str | None] = []
        for (start, end), check in zip(group.spans, group.checks):
            try:
                out.extend(check.result())
            except Exception:  # the worker died: check this chunk here instead
                txs = [tx for job in group.jobs for tx in job.txs][start:end]
                out.extend(sigcheck.verdicts([(tx.public_key, tx.signing_message(), tx.signature) for tx in txs]))
        return out

    def _commit_groups(self, groups: list[_Group]) -> None:
        jobs: list[_Job] = []
        verdicts: dict[int, str | None] = {}
        """By the identity of each tx object, alive in ``everything`` until the commit returns:
        the commit is handed these very objects, and anything else counts as unchecked."""
        for group in groups:
            txs = [tx for job in group.jobs for tx in job.txs]
            for tx, verdict in zip(txs, self._verdicts(group)):
                verdicts[id(tx)] = verdict
            jobs.extend(group.jobs)

        def verify(tx: Transaction) -> None:
            reason = verdicts.get(id(tx), "signature was not checked")
            if reason is not None:
                raise InvalidSignature(reason)

        everything = [tx for job in jobs for tx in job.txs]
        try:
            results = self._commit(everything, verify) if everything else []
        except BaseException as exc:  # the write failed: nobody in this group is acknowledged
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        offset = 0
        for job in jobs:
            job.future.set_result(results[offset:offset + len(job.txs)])
            offset += len(job.txs)
