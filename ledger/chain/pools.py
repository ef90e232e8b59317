"""The worker processes that check signatures and build genesis, and how they end.

Every pool here spawns its workers (never forks: the parent holds LevelDB's threads). A worker
of :class:`concurrent.futures.ProcessPoolExecutor` waits on a pipe whose writing end it holds
itself, so when its parent is killed (``kill -9`` of the node, of ``chain init``, of ``verify``)
it never sees the end of its input and waits forever: idle processes of ~50 MB each that a user
has to find and kill. So each worker watches its parent and exits when the parent is gone.

A Ctrl-C at a terminal goes to the whole foreground process group, workers included. What it
means is the parent's to decide (a node finishes its commit, ``chain init`` removes what it
wrote), and it ends the pool itself; so workers ignore SIGINT. Left to Python's default, each
idle worker printed a ``KeyboardInterrupt`` traceback under the node's "node stopped", and a busy
one failed its task before the parent had decided anything. A worker can only ignore it once its
own code runs, after its interpreter has started and imported the parent's main module (tenths of
a second, more on a busy machine); a Ctrl-C in that window printed the import's traceback. So a
worker is started with SIGINT blocked (:class:`_QuietSpawnContext`), and unblocks it once it
ignores it: a Ctrl-C that arrived meanwhile is discarded.

Ending a pool: :func:`end_pool`. After an exception (a Ctrl-C unwinding, a refused genesis) the
caller does not wait for the workers: they finish the task in hand and exit in the background.
A stdlib pool whose orderly shutdown is itself interrupted (a second Ctrl-C while ``chain init``
cleans up) can leave its workers, its feeder thread and its manager thread waiting on each
other at interpreter exit; so the command line ends an interrupted command with ``os._exit``
once its own clean-up is done (``cli.main``), and :func:`kill_workers` first.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import multiprocessing.util
import os
import signal
import sys
import threading
import time

PARENT_CHECK_SECONDS = 0.5
"""How often a worker checks that its parent is alive: the longest an orphan outlives it."""


class _QuietSpawnProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that starts with SIGINT blocked (a new process inherits the signal
    mask of the thread that starts it); :func:`_exit_with_parent` unblocks it."""

    @staticmethod
    def _Popen(process_obj: multiprocessing.process.BaseProcess) -> object:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return multiprocessing.context.SpawnProcess._Popen(process_obj)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class _QuietSpawnContext(multiprocessing.context.SpawnContext):
    """multiprocessing's spawn context, whose processes start deaf to Ctrl-C (module docstring)."""

    Process = _QuietSpawnProcess


def spawn_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A process pool of ``workers`` spawned processes, each exiting once its parent is gone."""
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=_QuietSpawnContext(),
        initializer=_exit_with_parent, initargs=(os.getpid(),),
    )


def end_pool(pool: concurrent.futures.ProcessPoolExecutor, *, abandon: bool) -> None:
    """Shut ``pool`` down: wait until its workers have exited, or with ``abandon`` (the caller is
    unwinding from an exception: nothing it submitted is wanted) cancel what is queued and return
    at once, the workers ending in the background."""
    pool.shutdown(wait=not abandon, cancel_futures=True)


def kill_workers() -> None:
    """Kill every worker process of this process (before ``os._exit``: nobody waits for them)."""
    for child in multiprocessing.active_children():
        child.kill()


FINALIZER_WAIT_SECONDS = 2.0
"""The longest :func:`release_pool_resources` waits for another thread's finalizer (each one
unlinks a semaphore and writes a line to the resource tracker: microseconds)."""


def release_pool_resources() -> None:
    """Before ``os._exit``: unlink the pools' semaphores as a normal exit would (multiprocessing's
    finalizers of priority 0 and above, which join nothing). Skipped, multiprocessing's resource
    tracker prints a warning about leaked semaphores under the command's last line.

    The pool's manager thread, ending as its workers die, may be freeing the same semaphores at
    that moment (its queues are garbage once it ends): a finalizer it has begun is no longer in
    the registry for this thread to run, and exiting between its unlink and its unregister left
    the tracker to warn of a leaked semaphore it then failed to unlink. So wait (briefly, bounded)
    until no other thread is inside a finalizer."""
    multiprocessing.util._run_finalizers(0)
    deadline = time.monotonic() + FINALIZER_WAIT_SECONDS
    while _finalizing_elsewhere() and time.monotonic() < deadline:
        time.sleep(0.001)


def _finalizing_elsewhere() -> bool:
    """Whether a thread other than this one is running one of multiprocessing's finalizers."""
    finalizer = multiprocessing.util.Finalize.__call__.__code__
    here = threading.get_ident()
    for ident, frame in sys._current_frames().items():
        while ident != here and frame is not None:
            if frame.f_code is finalizer:
                return True
            frame = frame.f_back
    return False


def _exit_with_parent(parent: int) -> None:
    """In a worker: ignore SIGINT (the parent's to act on, above) and only then unblock it, and
    start a daemon thread that ends the process when it is no longer ``parent``'s child (an
    orphan is adopted by init or a subreaper, so its parent pid changes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)  # nothing to flush: a worker writes nothing; its parent's results are lost with it

    threading.Thread(target=watch, name="posctl-parent-watch", daemon=True).start()


__all__ = ["PARENT_CHECK_SECONDS", "end_pool", "kill_workers", "release_pool_resources", "spawn_pool"]
