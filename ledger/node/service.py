"""The long-running node: a forger on a timer and a local HTTP JSON API, over one open chain.

LevelDB admits one process, so while a node runs it owns the database and every other
``posctl`` command reaches the chain through this API (DESIGN.md, decision 12). The node
records its pid and address in ``$home/node.json`` so commands can find it; a record left by a
killed node names a dead pid (or nothing answers at its address) and is ignored.

:class:`Chain` is not thread-safe, and plyvel iterators and the mempool's caches must not be
shared between threads, so **one lock serialises every chain call**: submissions, reads and
forging alike. Submissions go through the admission pipeline (:mod:`ledger.chain.admission`):
signatures checked on every core, then one synced write per group under the lock; a submission
is acknowledged only after that write, so ``kill -9`` at any moment loses nothing a client was
told was accepted. The API is :mod:`ledger.node.api` (it sees the node only through its
``NodeService`` interface), served by :mod:`ledger.node.http_server`; privileged routes need the
cookie of :mod:`ledger.node.cookie`; how commands find a running node is :mod:`ledger.node.record`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence, TypeVar

from ledger.chain import views
from ledger.chain.admission import AdmissionPipeline
from ledger.chain.facade import Chain, ForgeResult
from ledger.chain.mempool import Admission
from ledger.chain.pools import kill_workers, release_pool_resources
from ledger.consensus.evidence import Evidence
from ledger.consensus.transactions import Transaction
from ledger.errors import ChainExists, DatabaseCorrupted, LedgerError, NodeError, NodeUnavailable, StorageFailure
from ledger.node import cookie
from ledger.node.api import DEFAULT_HOST, DEFAULT_PORT, NodeApi, build_app, format_address, is_loopback_host
from ledger.node.http_server import HttpLimits, HttpServer, bind_listener
from ledger.node.record import (
    NodeRecord,
    remove_node_record,
    write_node_record,
)
from ledger.node.signals import signals_to_thread

RoundHook = Callable[[Chain], None]
"""Run under the lock before each forge attempt (``--dev`` proposes a BPM reading with it)."""

LogFunction = Callable[[str], None]

T = TypeVar("T")

FAILURE_GRACE_SECONDS = 0.5
"""After a storage failure, how long the node keeps answering 503 before it exits."""


SERVING_GC_THRESHOLDS = (10_000, 20, 50)
"""Collector thresholds for a serving node (Python's defaults are 700, 10, 10)."""


def tune_garbage_collector() -> None:
    """Collection settings for the long-running node process, applied once it has started.

    Measured with 16 clients posting one tx each: Python's defaults ran about 740 young and 6 full
    collections per 12,000 requests, 0.55 s of the GIL in all, and each full collection walked the
    whole heap for ~55 ms (a pause every client in flight waits out). Nearly everything a request
    allocates is freed by reference counting, so young collections find little; everything loaded
    at start (modules, the chain's caches, the server) lives as long as the process. So: collect
    once, freeze what survives (full collections no longer walk it: ~55 → ~13 ms), and collect the
    young generation every 10,000 net allocations instead of 700 (single-tx POSTs +8% over five
    alternating pairs of runs, with less CPU per tx). Process-wide, hence called by the ``node run``
    command, not by :class:`Node`, which tests also run inside their own process.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)


def _timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _print_line(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


class Node:
    """One open chain served over HTTP and forged on a timer.

    ``start()`` binds and begins serving, then writes the node record; ``run()`` forges every
    ``interval`` seconds until SIGINT/SIGTERM (or :meth:`request_stop`), then :meth:`close`
    stops accepting, waits for the chain call in progress, closes the database and removes
    the record.
    """

    def __init__(
        self,
        chain: Chain,
        home: Path,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        interval: float = 5.0,
        round_hook: RoundHook | None = None,
        log: LogFunction | None = None,
        allow_remote: bool = False,
        limits: HttpLimits | None = None,
        admission_workers: int | None = None,
    ) -> None:
        if not interval > 0:
            raise NodeError(f"the forging interval must be positive, got {interval}")
        if not allow_remote and not is_loopback_host(host):
            raise NodeError(f"{host} is not a loopback address: binding it needs allow_remote")
        self.chain = chain
        self.home = Path(home)
        self.host = host
        self.port = port
        self.interval = interval
        self.round_hook = round_hook
        self.allow_remote = allow_remote
        self.lock = threading.Lock()
        self.closed = False
        self.limits = limits or HttpLimits()
        self.started = _utc_now()
        self.record: NodeRecord | None = None
        self._log_sink = log or _print_line
        self._log_lock = threading.Lock()
        self._stop = threading.Event()
        self.failure: LedgerError | None = None
        """The storage failure that stopped the node: calls get 503, then the node exits non-zero."""
        self._signals = 0
        self._server: HttpServer | None = None
        self._api: NodeApi | None = None
        self._cookie: str | None = None
        self._generation = 0
        """Bumped (under the lock) by every write, so a cached status view knows it is stale."""
        self._status: tuple[int, dict[str, Any]] | None = None
        self._admission_workers = admission_workers
        self.pipeline: AdmissionPipeline | None = None
        self._backup_targets: set[str] = set()
        """The directories of the backups copying from their snapshot now, outside the lock (see
        :meth:`backup`): a second backup into one of them is refused, not raced."""
        self._backups_changed = threading.Condition()
        self._backups_abandoned = False

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> None:
        """Bind, start the admission workers, write the cookie, serve in a background thread,
        and record pid and address in the home."""
        try:
            sock = bind_listener(self.host, self.port)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise NodeError(
                f"cannot listen on {format_address(self.host, self.port)}: {reason}: "
                "choose another address with --listen"
            ) from None
        self.port = sock.getsockname()[1]
        self.pipeline = AdmissionPipeline(self._commit_group, self._admission_workers)
        self.pipeline.warm_up()
        self._cookie = cookie.write_cookie(self.home)
        app, self._api = build_app(self)
        self._server = HttpServer(app, sock, self.limits, self.log)
        self._server.start()
        self.record = NodeRecord(pid=os.getpid(), address=self.address, url=self.url, started=self.started)
        write_node_record(self.home, self.record)

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "address": self.address,
            "url": self.url,
            "started": self.started,
            "home": str(self.home),
            "chain_id": self.chain.params.chain_id,
            "interval": self.interval,
            "signature_engine": self.pipeline.engine if self.pipeline is not None else None,
        }

    # ---- the NodeService interface the API uses ------------------------------------------------

    @contextlib.contextmanager
    def _chain(self, *, writes: bool = False) -> Iterator[Chain]:
        """The chain, under the lock, for one call. Refused (503) once the node is closing or a
        storage write has failed; a storage failure inside the call stops the node (fail-stop,
        DESIGN.md decision 19). ``writes`` marks the cached status stale."""
        with self.lock:
            if self.failure is not None:
                raise NodeUnavailable(f"the node is stopping after a storage failure: {self.failure}")
            if self.closed:
                raise NodeUnavailable("the node is shutting down: retry once it has stopped")
            try:
                yield self.chain
            except (StorageFailure, DatabaseCorrupted) as exc:
                self.storage_failed(exc)
                raise
            finally:
                if writes:
                    self._generation += 1

    def read(self, func: Callable[[Chain], T]) -> T:
        """Run ``func`` under the lock. Callers render views after it returns, so the lock is
        held for the database work only, not for building JSON."""
        with self._chain() as chain:
            return func(chain)

    def cached_status(self) -> dict[str, Any] | None:
        cached = self._status
        return cached[1] if cached is not None and cached[0] == self._generation else None

    def status(self) -> dict[str, Any]:
        with self._chain() as chain:
            view = views.status_view(chain.status())
            self._status = (self._generation, view)
            return view

    def admit(self, txs: Sequence[Transaction]) -> "Any":
        if self.pipeline is None:
            raise NodeUnavailable("the node is not serving yet: retry in a moment")
        return self.pipeline.submit(txs)

    def _commit_group(self, txs: Sequence[Transaction], verify: Callable[[Transaction], None]) -> list[Admission]:
        """The pipeline's commit stage: one synced write for the whole group, under the lock."""
        with self._chain(writes=True) as chain:
            return chain.submit_many(txs, verify)

    def submit_evidence(self, evidence: Evidence) -> bytes:
        with self._chain(writes=True) as chain:
            return chain.submit_evidence(evidence)

    def backup(self, directory: Path) -> dict[str, Any]:
        """A consistent copy of the chain into a new home ``directory`` (``chain backup``).

        Only the snapshot is taken under the lock; the copy reads the snapshot while the node
        goes on admitting and forging (under the lock, a million-account chain held every
        submission for seconds: 0.84 s at 200,000 accounts). A node stopping abandons copies in
        progress at their next batch and waits for them before it closes the database."""
        from ledger.chain.archive import backup_chain, backup_point, backup_target

        target = backup_target(directory)
        with self._chain() as chain:
            if target in self._backup_targets:  # its half copy would look like a killed one's
                raise ChainExists(f"a backup into {directory} is being written right now: wait for it to finish, "
                                  "or choose another directory")
            point = backup_point(chain)
            with self._backups_changed:
                self._backup_targets.add(target)
        try:
            return backup_chain(chain, directory, point, check=self._backup_may_go_on)
        except DatabaseCorrupted as exc:  # read from the chain's own files: damage, as under the lock
            self.storage_failed(exc)
            raise
        finally:
            with self._backups_changed:
                self._backup_targets.discard(target)
                self._backups_changed.notify_all()

    def _backup_may_go_on(self) -> None:
        if self._backups_abandoned or self.closed:
            raise NodeUnavailable("the node is stopping: the backup was abandoned and nothing of it kept; back up "
                                  "again once the node runs (or directly, once it has stopped)")

    def _wait_for_backups(self) -> None:
        """Abandon the copies in progress and wait until none reads the database any more (each
        stops at its next batch). Called with the lock held, so no new one can start."""
        self._backups_abandoned = True
        with self._backups_changed:
            self._backups_changed.wait_for(lambda: not self._backup_targets)

    def storage_failed(self, exc: LedgerError) -> None:
        """Fail-stop (DESIGN.md decision 19): record the first storage failure, log it once,
        and stop the node; the store itself already refuses every later write."""
        if self.failure is not None:
            return
        self.failure = exc
        self.log(f"storage failure, stopping the node: {exc}")
        self._stop.set()

    def authorised(self, authorization: str | None) -> bool:
        return self._cookie is not None and cookie.presents(authorization, self._cookie)

    def request_stop(self) -> None:
        self._stop.set()

    def stop_on_signals(self) -> ContextManager[None]:
        """While the block runs, SIGINT and SIGTERM stop this node (:meth:`_on_signal`).

        ``node run`` enters it before :meth:`start`: from the moment the node record names this
        process, ``posctl node stop`` may signal it, and a signal arriving before the handling is
        in place would kill the node outright, leaving its cookie and record behind. A signal
        that arrives before :meth:`run` makes it return at once. Main thread only.
        """
        return signals_to_thread(self._on_signal)

    def run(self) -> None:
        """Forge every ``interval`` seconds until asked to stop; then close everything."""
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.forge_once(quiet_errors=True)
                except Exception as exc:  # a bug or an I/O error: say so, keep the node up
                    self.log(f"forging failed: {type(exc).__name__}: {exc}")
        finally:
            if self.failure is not None:
                time.sleep(FAILURE_GRACE_SECONDS)  # let the 503s in flight reach their clients
            self.close()

    def _on_signal(self, signum: int) -> None:
        """First signal: stop after the call in progress. Second: exit as soon as the commit in
        progress is done, without waiting for HTTP connections to wind down. Runs in the signal
        watcher thread (:mod:`ledger.node.signals`), not in a handler."""
        name = signal.Signals(signum).name
        self._signals += 1
        if self._signals == 1:
            self.log(f"received {name}: stopping once the chain call in progress is done "
                     "(Ctrl-C again to exit as soon as the commit in progress is on disk)")
            self._stop.set()
            return
        self.log(f"received {name} again: exiting as soon as the commit in progress is on disk")
        threading.Thread(target=self._exit_after_commit, args=(128 + signum,), name="posctl-node-exit",
                         daemon=True).start()

    def _exit_after_commit(self, status: int) -> None:
        self._backups_abandoned = True
        with self.lock:  # held by any chain call in progress, a block commit included
            if not self.closed:
                self.closed = True
                self._wait_for_backups()
                self.chain.close()
            self._remove_cookie_and_record()
            self.log("node stopped (nothing was cut short: every commit is one atomic batch)")
            # As an interrupted command does (cli.main): without this the resource tracker warned
            # of the pools' "leaked semaphore objects" under the node's last line.
            kill_workers()
            release_pool_resources()
            os._exit(status)

    def _remove_cookie_and_record(self) -> None:
        """Drop the files that advertise this node (best effort: a stale one is detected anyway)."""
        if self._cookie is not None:
            try:
                cookie.remove_cookie(self.home, self._cookie)
            except OSError:
                pass
            self._cookie = None
        if self.record is not None:
            try:
                remove_node_record(self.home, self.record)
            except OSError:
                pass
            self.record = None

    def close(self) -> None:
        """Stop accepting, finish admissions in progress, close the DB, drop cookie and record."""
        self._backups_abandoned = True  # copies in progress stop at their next batch
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.pipeline is not None:
            self.pipeline.close()
        if self._api is not None:
            self._api.executor.shutdown(wait=True)
            self._api = None
        with self.lock:
            if not self.closed:
                self.closed = True
                self._wait_for_backups()
                self.chain.close()
        self._remove_cookie_and_record()

    # ---- forging ---------------------------------------------------------------------------

    def forge_once(self, *, quiet_errors: bool = False) -> ForgeResult:
        """One round: the hook (if any), then a forge attempt; logs the block and evictions."""
        try:
            with self._chain(writes=True) as chain:
                if self.round_hook is not None:
                    try:
                        self.round_hook(chain)
                    except Exception as exc:  # a failed proposal must not stop the forger
                        self.log(f"round hook failed: {type(exc).__name__}: {exc}")
                result = chain.forge()
        except (StorageFailure, DatabaseCorrupted) as exc:
            if not quiet_errors:
                raise
            return ForgeResult(block=None, reason=str(exc), evicted=[])
        except LedgerError as exc:
            if not quiet_errors:
                raise
            self.log(f"forging failed: {exc}")
            return ForgeResult(block=None, reason=str(exc), evicted=[])
        self._log_result(result)
        return result

    def _log_result(self, result: ForgeResult) -> None:
        height = result.block.height if result.block is not None else self.chain.tip.height + 1
        for tx_id, reason in result.evicted:
            self.log(f"evicted tx {tx_id} at height {height}: {reason}")
        block = result.block
        if block is not None:
            self.log(
                f"block {block.height} validator {block.header.validator} "
                f"drawn {len(block.trace)} txs {len(block.txs)} evidence {len(block.evidence)} hash {block.hash.hex()[:16]}"
            )

    def log(self, message: str) -> None:
        with self._log_lock:
            self._log_sink(f"{_timestamp()} {message}")
