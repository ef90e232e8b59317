"""Directory steps that a crash cannot leave half done.

Why
    A database directory is many files. Deleting one with ``shutil.rmtree`` removes them one at
    a time, so a ``kill -9`` or a power cut in the middle leaves a directory under the chain's
    own name that is neither a chain nor empty (seen: one without its MANIFEST, which the next
    ``chain init`` refused as damaged). Publishing one (an import, a backup) by writing it in
    place has the mirror fault: a copy cut short sits where a whole one is expected, and a
    LevelDB copy cut short still opens. So a directory is only ever renamed into or out of its
    name — one atomic step — and the rename is synced (the parent directory's entry, as for
    the wallet files) before anyone is told it happened. What a crash leaves under the side
    name is swept by the next attempt.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Iterator

from ledger.errors import DatabaseLocked

REMOVING_SUFFIX = ".removing"
"""The side name of a directory being deleted: ``.NAME.removing`` beside it."""


def fsync_directory(directory: Path) -> None:
    """Make the entries of ``directory`` (a file or directory just renamed into it) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def removal_leftover(path: Path) -> Path:
    """Where :func:`remove_directory` puts ``path`` while it deletes it."""
    return path.with_name(f".{path.name}{REMOVING_SUFFIX}")


def remove_directory(path: Path) -> None:
    """Delete ``path`` so that at every moment it is either whole under its name or gone: it is
    renamed aside first, then deleted there. Never raises for what is already gone; a leftover
    from an earlier, interrupted removal is deleted first (see :func:`sweep_removal`)."""
    aside = removal_leftover(path)
    sweep_removal(path)
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    except OSError:  # no rename here (another file system under the name?): delete in place
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        fsync_directory(path.parent)
    shutil.rmtree(aside, ignore_errors=True)


def sweep_removal(path: Path) -> None:
    """Finish deleting what an interrupted :func:`remove_directory` of ``path`` left aside."""
    shutil.rmtree(removal_leftover(path), ignore_errors=True)


PARTIAL_SUFFIX = ".partial"
"""The side name of a directory being copied: ``.NAME.partial`` beside its final name."""


def partial_name(target: Path) -> Path:
    """Where :func:`copy_directory` builds ``target`` until the copy is whole."""
    return target.with_name(f".{target.name}{PARTIAL_SUFFIX}")


def copy_directory(source: Path, target: Path) -> None:
    """Copy ``source`` to the new ``target``: every file synced, built under
    :func:`partial_name` and renamed into place, so ``target`` is never a part of a copy — not
    even after a kill -9 or a power cut, before which a plain ``copytree`` may not have reached
    the disk at all. On any exception the part is removed again."""
    partial = partial_name(target)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(source, partial, copy_function=_copy_synced)
        fsync_directory(partial)
        publish_directory(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _copy_synced(source: str, target: str) -> str:
    copied = shutil.copy2(source, target)
    fd = os.open(copied, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return copied


def publish_directory(source: Path, target: Path) -> None:
    """Move the finished directory ``source`` to ``target`` (absent or empty) in one step, and
    sync the move: only then may the caller say it is there."""
    os.replace(source, target)
    fsync_directory(target.parent)


@contextlib.contextmanager
def holding_directory(directory: Path, busy: str) -> Iterator[None]:
    """Within, this process alone holds ``directory`` (an ``flock`` on the directory itself, so
    no lock file is left behind); another holder makes it raise :class:`DatabaseLocked` with
    ``busy`` at once. Why: LevelDB's own lock orders the writers of one database, not the
    steps around it — of two ``chain init`` racing in one home, the second waited for the
    first's lock, found its finished chain, and deleted the directory it believed it had made."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseLocked(busy) from None
        yield
    finally:
        os.close(fd)  # releases the lock


__all__ = ["copy_directory", "fsync_directory", "holding_directory", "partial_name", "publish_directory", "removal_leftover", "remove_directory", "sweep_removal"]
