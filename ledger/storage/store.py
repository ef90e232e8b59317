"""Storage: the only module that imports plyvel.

A key-value store with two backends — LevelDB for real use, a dict for fast property tests —
behind one small interface (py-evm's ``eth/db`` shape). Every multi-key write goes through
:meth:`Store.write`, which LevelDB applies as one ``write_batch(transaction=True, sync=True)``:
on return the whole batch is on disk, and a crash before that leaves none of it.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

try:
    import plyvel
except ImportError:  # Python 3.13+: plyvel 1.5 ships no wheels there; plyvel-next is its fork that does
    import plyvel_next as plyvel  # type: ignore[no-redef]

from ledger.storage import schema
from ledger.errors import (
    BackupFailed,
    ChainNotInitialized,
    DatabaseCorrupted,
    DatabaseError,
    DatabaseLocked,
    DatabaseUnwritable,
    DiskFull,
    StorageFailure,
    WriteFailed,
)

LOCK_WAIT_SECONDS = 3.0
"""How long opening waits for another process's short hold on the database."""

LOCK_RETRY_SECONDS = 0.05

T = TypeVar("T")

Changes = Mapping[bytes, "bytes | None"]
"""Writes to apply together: a value to put, or ``None`` to delete."""


def _message(exc: Exception) -> str:
    """plyvel puts LevelDB's status in bytes; show it as text."""
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


class Batch:
    """Writes collected before one atomic commit; reads see them first (read-your-writes)."""

    def __init__(self, store: "KeyValueStore") -> None:
        self._store = store
        self.changes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.changes:
            return self.changes[key]
        return self._store.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.changes[key] = value

    def delete(self, key: bytes) -> None:
        self.changes[key] = None

    def update(self, changes: Changes) -> None:
        self.changes.update(changes)


class KeyValueStore:
    """The interface both backends implement."""

    def get(self, key: bytes) -> bytes | None:
        raise NotImplementedError

    def iterate(self, prefix: bytes, *, reverse: bool = False, below: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with ``prefix``, in key order (``reverse``: descending), and
        with ``below``, only keys less than it: a page of an index starts where the last ended."""
        raise NotImplementedError

    def write(self, changes: Changes) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Settle what was written into synced tables now, without compacting them (a no-op
        without a log to settle)."""

    def compact(self) -> None:
        """Settle what was written into sorted, non-overlapping tables now (a no-op without
        tables)."""

    def write_stream(self, items: Iterable[tuple[bytes, bytes]], *, part_bytes: int | None = None) -> None:
        """Put every (key, value) of ``items``, consuming them as they come (a genesis of a
        million entries is not collected twice).

        Without ``part_bytes``: one synced atomic batch, and an exception from ``items`` writes
        nothing. With it: parts of about that many bytes, each committed unsynced as it fills —
        the store never holds more than one part, but a failure or a kill leaves the parts before
        it. The caller then calls :meth:`flush` (which settles them into synced tables) and
        writes last a record saying the whole is there (genesis: its tip)."""
        self.write(dict(items))

    def close(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def atomic_batch(self) -> Iterator[Batch]:
        """Collect writes; commit them as one synced batch only if the block exits cleanly."""
        batch = Batch(self)
        yield batch
        if batch.changes:
            self.write(batch.changes)

    def last(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        for item in self.iterate(prefix, reverse=True):
            return item
        return None


def prefix_end(prefix: bytes) -> bytes | None:
    """The least key above every key that starts with ``prefix`` (None if there is none)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class MemoryStore(KeyValueStore):
    """A dict with sorted iteration: same semantics as LevelDB, no durability."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, prefix: bytes, *, reverse: bool = False, below: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        start = bisect.bisect_left(self._keys, prefix)
        keys = []
        for key in self._keys[start:]:
            if not key.startswith(prefix) or (below is not None and key >= below):
                break
            keys.append(key)
        for key in reversed(keys) if reverse else keys:
            yield key, self._data[key]

    def write(self, changes: Changes) -> None:
        for key, value in changes.items():
            if value is None:
                if key in self._data:
                    del self._data[key]
                    self._keys.pop(bisect.bisect_left(self._keys, key))
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = value

    def close(self) -> None:
        pass


MIN_FREE_MB_ENV = "POSCTL_MIN_FREE_MB"
DEFAULT_MIN_FREE_MB = 50
"""Writes stop while the chain's file system has less free space than this (Bitcoin Core keeps
a similar margin): LevelDB needs room to compact, and a write refused before it starts leaves
nothing torn behind."""

REPAIR_HINT = "run `posctl chain repair` (it copies the chain directory aside first)"

_LEVELDB_FILE = re.compile(r"^(CURRENT|MANIFEST-[0-9]+|[0-9]+\.(ldb|sst|log))$")
"""Names LevelDB gives its files; LOCK and LOG alone do not make a database."""


def min_free_bytes() -> int:
    """The free-space floor from ``POSCTL_MIN_FREE_MB`` (default 50); 0 turns it off."""
    text = os.environ.get(MIN_FREE_MB_ENV, "").strip()
    if not text:
        return DEFAULT_MIN_FREE_MB * 1024 * 1024
    try:
        value = float(text)
    except ValueError:
        raise DatabaseError(
            f"{MIN_FREE_MB_ENV}={text!r} is not a number of megabytes: set it to e.g. 50 (0 turns the check off)"
        ) from None
    if value < 0:
        raise DatabaseError(f"{MIN_FREE_MB_ENV}={text!r} is negative: set it to 0 or more")
    return int(value * 1024 * 1024)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s file system."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def refuse_a_file_as_database(path: Path) -> None:
    """A file where the chain database directory ``path`` should be, in one line to act on: every
    command that opens or creates the chain says the same (an import printed a bare "Not a
    directory")."""
    if path.exists() and not path.is_dir():
        raise DatabaseError(f"{path} is a file, not a chain database directory: move it aside")


def holds_leveldb_files(path: Path) -> bool:
    """True if ``path`` is a directory with any LevelDB data file in it (even without CURRENT)."""
    try:
        return any(_LEVELDB_FILE.match(entry.name) for entry in os.scandir(path))
    except OSError:
        return False


def _classify(path: Path, text: str, action: str) -> DatabaseError:
    """A LevelDB status on ``path`` → the error naming its real cause and what to do."""
    lower = text.lower()
    if "no space left" in lower or "disk quota" in lower:
        return DiskFull(
            f"the disk holding {path} is full ({action} failed: {text}): free some space, then "
            "start again; nothing acknowledged is lost"
        )
    if "read-only file system" in lower:
        return DatabaseUnwritable(
            f"the chain database at {path} is on a read-only file system ({text}): LevelDB must write "
            "even to read; remount it read-write, or copy the home elsewhere and pass --home"
        )
    if "permission denied" in lower or "operation not permitted" in lower:
        return DatabaseUnwritable(
            f"no permission to use the chain database at {path} ({text}): run posctl as the "
            "home's owner, or fix the permissions of its files"
        )
    if "corruption" in lower or "checksum" in lower or "bad magic" in lower or "missing files" in lower \
            or "no such file" in lower or "not an sstable" in lower or "bad block" in lower \
            or _short_table(lower):
        return DatabaseCorrupted(f"the chain database at {path} is damaged ({text}): {REPAIR_HINT}")
    return DatabaseError(f"{action} failed on the chain database at {path}: {text}")


def _short_table(lower: str) -> bool:
    """LevelDB reading past the end of a table file cut short: ``IO error: …/000048.ldb: Invalid
    argument`` (it was reported as a plain read failure, with no remedy)."""
    return "invalid argument" in lower and (".ldb" in lower or ".sst" in lower)


def _read_for_backup(iterator: Iterator[tuple[bytes, bytes]], path: Path) -> Iterator[tuple[bytes, bytes]]:
    """The snapshot's entries; a failure to read them is this chain's (damage), reported as such."""
    while True:
        try:
            entry = next(iterator)
        except StopIteration:
            return
        except plyvel.Error as exc:
            raise _classify(path, _message(exc), "reading for the backup") from None
        yield entry


def _backup_failed(target: Path, text: str) -> BackupFailed:
    """A LevelDB status writing the copy at ``target`` → what went wrong there and what to do.
    Never a :class:`StorageFailure`: those stop a node, and the chain's own disk is fine."""
    cause = _classify(target, text, "writing the backup")
    if isinstance(cause, DiskFull):
        reason = "its disk is full"
    elif isinstance(cause, DatabaseUnwritable):
        reason = "it cannot be written there (read-only, or no permission)"
    else:
        reason = "LevelDB refused to write it"
    return BackupFailed(f"cannot write the backup at {target}: {reason} ({text}): free some space there or choose "
                        "another directory; the chain itself is unaffected")


def _is_lock_contention(text: str) -> bool:
    """Only a lock another process holds is waited for; a read-only or forbidden LOCK file is
    not contention (matching the word "lock" took a read-only home for a busy one)."""
    lower = text.lower()
    return "temporarily unavailable" in lower or "already held by process" in lower


IN_USE = ("the chain database at {path} is in use by another process (another posctl command, or a running "
          "`posctl node run`): retry when it is done, or stop the node")


@contextlib.contextmanager
def holding_database(path: Path, lock_wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Within, no other process can open the database at ``path``, which is not opened here (it
    may be too damaged to open): LevelDB's own lock (a POSIX record lock on ``LOCK``) is taken
    directly. Why: LevelDB's repair takes no lock, so `chain repair` beside a running command
    moved that command's live log into ``lost/`` under it, and copied a database being written.
    Waits ``lock_wait`` seconds for a short hold, as :meth:`LevelDBStore.open` does. Closing
    any handle of ``LOCK`` in this process releases the lock: do not open the database within."""
    fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        def attempt() -> bool | None:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                return None  # held by another process
            return True

        _waiting_while_locked(path, lock_wait, attempt)
        yield
    finally:
        os.close(fd)  # and with it the lock


def database_lock_holders(path: Path) -> set[int]:
    """The pids holding LevelDB's lock on the database at ``path`` (a POSIX record lock on
    ``LOCK``), read from Linux's ``/proc/locks``; empty where it cannot be read. For telling a
    node that holds its chain but does not answer from a record a dead node left."""
    try:
        lock = os.stat(path / "LOCK")
        table = Path("/proc/locks").read_text()
    except OSError:
        return set()
    holders = set()
    for line in table.splitlines():  # "1: POSIX  ADVISORY  WRITE 1234 08:02:131 0 EOF"
        fields = line.split()
        if len(fields) < 6 or fields[1] != "POSIX":  # ("->" lines are processes waiting)
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if int(inode) == lock.st_ino and os.makedev(int(major, 16), int(minor, 16)) == lock.st_dev:
                holders.add(int(fields[4]))
        except ValueError:
            continue
    return holders


def _waiting_while_locked(path: Path, lock_wait: float, attempt: Callable[[], T | None]) -> T:
    """``attempt()`` until it returns something (None: another process holds the database),
    for up to ``lock_wait`` seconds; then :class:`DatabaseLocked`."""
    deadline = time.monotonic() + lock_wait
    while True:
        got = attempt()
        if got is not None:
            return got
        if time.monotonic() >= deadline:
            raise DatabaseLocked(IN_USE.format(path=path))
        time.sleep(LOCK_RETRY_SECONDS)


def repair_database(path: Path) -> None:
    """LevelDB's own repair: rebuild the MANIFEST from every readable table and log record."""
    try:
        # paranoid: tables are read with checksums, so damaged blocks are dropped, not kept
        plyvel.repair_db(str(path), paranoid_checks=True)
    except plyvel.Error as exc:
        raise _classify(path, _message(exc), "repair") from None


def read_raw(path: Path, keys: Iterable[bytes]) -> dict[bytes, bytes | None] | None:
    """``keys`` from a database that may be damaged (repair's "before" counts), every check on;
    None if it does not read back so. A relaxed open silently drops a damaged log record, and
    what it shows then is the database after the loss."""
    try:
        db = plyvel.DB(str(path), paranoid_checks=True)
    except plyvel.Error:
        return None
    try:
        return {key: db.get(key, verify_checksums=True) for key in keys}
    except plyvel.Error:
        return None
    finally:
        db.close()


class LevelDBStore(KeyValueStore):
    """One LevelDB database with paranoid checks; held by one process at a time.

    Fail-stop: after any failed write (or a write refused for lack of space) every later write
    raises the same :class:`StorageFailure` without touching the disk. A failed LevelDB append can
    leave a torn record at the end of its log; LevelDB drops it at the next open, but only if
    nothing is appended after it — the node kept writing once and lost 60 acknowledged txs.
    Reads verify block checksums, so flipped bytes surface as :class:`DatabaseCorrupted`
    instead of as data.
    """

    def __init__(self, db: "plyvel.DB", path: Path) -> None:
        self._db = db
        self.path = path
        self.failure: StorageFailure | None = None
        self._min_free = min_free_bytes()

    @classmethod
    def open(cls, path: Path, *, create: bool = False, lock_wait: float = LOCK_WAIT_SECONDS) -> "LevelDBStore":
        """Open (or with ``create``, make) the database; nothing is replayed, so this is O(1).

        LevelDB admits one process. Another posctl command holding it for a moment is waited
        for, up to ``lock_wait`` seconds; a holder that stays (a node) is reported.
        """
        refuse_a_file_as_database(path)
        if not (path / "CURRENT").exists():
            if holds_leveldb_files(path):
                raise DatabaseCorrupted(
                    f"the chain database at {path} holds LevelDB files but no CURRENT file: {REPAIR_HINT}"
                )
            if not create:
                raise ChainNotInitialized(
                    f"no chain at {path.parent}: run `posctl chain init` first (or pass --home)"
                )
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        def attempt() -> Any:
            try:
                return plyvel.DB(str(path), create_if_missing=create, paranoid_checks=True)
            except plyvel.IOError as exc:
                text = _message(exc)
                if not _is_lock_contention(text):
                    raise _classify(path, text, "opening") from None
                return None  # held by another process
            except plyvel.Error as exc:
                raise _classify(path, _message(exc), "opening") from None

        db = _waiting_while_locked(path, lock_wait, attempt)
        store = cls(db, path)
        try:
            store._check_schema_version(create)
        except Exception:
            db.close()
            raise
        return store

    def _check_schema_version(self, create: bool) -> None:
        """Refuse a database of another schema version. An empty database is a chain whose
        ``init`` never wrote anything (the version key is the first thing genesis writes)."""
        raw = self.get(schema.SCHEMA_VERSION_KEY)
        expected = str(schema.SCHEMA_VERSION).encode("ascii")
        if raw is None:
            if self.is_empty():
                if create:
                    return
                raise ChainNotInitialized(
                    f"the chain database at {self.path} is empty (an interrupted `posctl chain init`?): "
                    "run `posctl chain init` again"
                )
            raise DatabaseCorrupted(
                f"the chain database at {self.path} has no schema version (not a posctl chain, or damaged): "
                f"{REPAIR_HINT}, or move it aside"
            )
        if raw == b"1":
            raise DatabaseError(
                f"the chain at {self.path} was made by posctl v1 (format 1: no VRF proposals, no "
                f"slashing); this posctl runs format {schema.SCHEMA_VERSION}: start a new chain with "
                "`posctl chain init` in another --home (or move this one aside)"
            )
        if raw != expected:
            raise DatabaseError(
                f"the chain database at {self.path} has schema version {raw.decode(errors='replace')}, "
                f"this posctl reads version {schema.SCHEMA_VERSION}: use a matching posctl"
            )

    def is_empty(self) -> bool:
        try:
            return next(self._db.iterator(include_value=False, verify_checksums=True), None) is None
        except plyvel.Error as exc:
            raise _classify(self.path, _message(exc), "reading") from None

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._db.get(key, verify_checksums=True)
        except plyvel.Error as exc:
            raise _classify(self.path, _message(exc), "reading") from None

    def iterate(self, prefix: bytes, *, reverse: bool = False, below: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        try:
            if below is None:
                iterator = self._db.iterator(prefix=prefix, reverse=reverse, verify_checksums=True)
            else:  # plyvel takes a prefix or a range, not both: the range the prefix spans, cut at below
                end = prefix_end(prefix)
                stop = below if end is None else min(below, end)
                iterator = self._db.iterator(start=prefix, stop=stop, reverse=reverse, verify_checksums=True)
            with iterator:
                yield from iterator
        except plyvel.Error as exc:
            raise _classify(self.path, _message(exc), "reading") from None

    def write(self, changes: Changes) -> None:
        """One synced atomic batch; any failure stops every later write (see the class doc)."""
        if self.failure is not None:
            raise type(self.failure)(str(self.failure))
        self._check_free_space(sum(len(key) + len(value or b"") for key, value in changes.items()))
        try:
            with self._db.write_batch(transaction=True, sync=True) as batch:
                for key, value in changes.items():
                    if value is None:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
        except plyvel.Error as exc:
            cause = _classify(self.path, _message(exc), "writing")
            failure = cause if isinstance(cause, StorageFailure) else WriteFailed(str(cause))
            self._fail(failure)

    def _check_free_space(self, size: int) -> None:
        """Refuse (fail-stop) a write that would take the disk below the free-space floor."""
        if self._min_free:
            try:
                free = free_bytes(self.path)
            except OSError as exc:
                free = None
                self._fail(WriteFailed(f"cannot check free space on {self.path}: {exc.strerror}: check the disk"))
            if free is not None and free < self._min_free + size:
                self._fail(DiskFull(
                    f"the disk holding {self.path} has {free // (1024 * 1024)} MB free, below the "
                    f"{self._min_free // (1024 * 1024)} MB floor ({MIN_FREE_MB_ENV}): free some space, then "
                    "start again; nothing acknowledged is lost"
                ))

    def write_stream(self, items: Iterable[tuple[bytes, bytes]], *, part_bytes: int | None = None) -> None:
        """As :meth:`KeyValueStore.write_stream`; fail-stop as :meth:`write`, free space checked
        for each part."""
        if self.failure is not None:
            raise type(self.failure)(str(self.failure))
        self._check_free_space(0)
        limit = part_bytes if part_bytes is not None else float("inf")
        stream = iter(items)
        try:
            while True:
                size = 0
                with self._db.write_batch(transaction=True, sync=part_bytes is None) as batch:
                    for key, value in stream:
                        batch.put(key, value)
                        size += len(key) + len(value)
                        if size >= limit:
                            break
                    self._check_free_space(size)  # raising here discards this part
                if size < limit:
                    break
        except plyvel.Error as exc:
            cause = _classify(self.path, _message(exc), "writing")
            failure = cause if isinstance(cause, StorageFailure) else WriteFailed(str(cause))
            self._fail(failure)

    def flush(self) -> None:
        """As :meth:`KeyValueStore.flush`: LevelDB writes its write buffer to a synced table and
        names it in its synced manifest, and compacts nothing — the range given lies beyond every
        key (posctl's keys start with ASCII prefixes), so no table overlaps it. Unsynced writes
        before it are then on disk even if the machine loses power."""
        beyond = b"\xff" * 32
        try:
            self._db.compact_range(start=beyond, stop=beyond)
        except plyvel.Error as exc:
            raise _classify(self.path, _message(exc), "flushing") from None

    def compact(self) -> None:
        """Flush the write buffer (see :meth:`flush`) and compact every table into sorted,
        non-overlapping ones."""
        try:
            # Between the first and the last key: plyvel's compact_range() without bounds
            # compacts the empty key's range, which is only a flush (see flush()).
            first = next(self._db.iterator(include_value=False), None)
            if first is None:
                return
            last = next(self._db.iterator(reverse=True, include_value=False))
            self._db.compact_range(start=first, stop=last)
        except plyvel.Error as exc:
            raise _classify(self.path, _message(exc), "compacting") from None

    def tables_by_level(self) -> list[int]:
        """How many tables LevelDB holds at each level (level 0 first): what a compaction left."""
        try:
            return [int(self._db.get_property(b"leveldb.num-files-at-level%d" % level) or 0) for level in range(7)]
        except plyvel.Error as exc:
            raise _classify(self.path, _message(exc), "reading") from None

    def _fail(self, failure: StorageFailure) -> None:
        self.failure = failure
        raise failure

    def snapshot(self) -> Any:
        """A LevelDB snapshot: this moment's contents, readable while writes go on."""
        return self._db.snapshot()

    def backup_to(self, target: Path, batch_keys: int = 4096, *, shown_as: Path | None = None,
                  snapshot: Any = None, check: Callable[[], None] | None = None) -> int:
        """Copy a consistent snapshot into a new database at ``target``; returns the key count.

        A LevelDB snapshot pins one point in time (``snapshot``, taken earlier by
        :meth:`snapshot`, or one taken now), so writes that land meanwhile (a running node's)
        are simply not in the copy; the copy is written in synced batches, and ``check`` is
        called before each (it raises to abandon the copy). A failure to write the copy is
        :class:`BackupFailed` (naming ``shown_as`` if given), never this store's
        :class:`StorageFailure`: that would stop a node whose own disk is fine. The snapshot
        is released in every case.
        """
        try:
            copy = plyvel.DB(str(target), create_if_missing=True, error_if_exists=True)
        except plyvel.Error as exc:
            raise _backup_failed(shown_as or target, _message(exc)) from None
        count = 0
        snapshot = snapshot if snapshot is not None else self._db.snapshot()
        try:
            if check is not None:
                check()
            pending = copy.write_batch(sync=True)
            with snapshot.iterator(verify_checksums=True) as iterator:
                for key, value in _read_for_backup(iterator, self.path):
                    pending.put(key, value)
                    count += 1
                    if count % batch_keys == 0:
                        if check is not None:
                            check()
                        pending.write()
                        pending = copy.write_batch(sync=True)
            pending.write()
        except plyvel.Error as exc:  # the copy's writes: a failure of the backup, not of this chain
            raise _backup_failed(shown_as or target, _message(exc)) from None
        finally:
            copy.close()
            snapshot.close()
        return count

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
