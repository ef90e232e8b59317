"""Storage: the only module that imports plyvel.

A key-value store with two backends — LevelDB for real use, a dict for fast property tests —
behind one small interface (py-evm's ``eth/db`` shape). Every multi-key write goes through
:meth:`Store.write`, which LevelDB applies as one ``write_batch(transaction=True, sync=True)``:
on return the whole batch is on disk, and a crash before that leaves none of it.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from pathlib import Path
from typing import Iterator, Mapping

try:
    import plyvel
except ImportError:  # Python 3.13+: plyvel 1.5 ships no wheels there; plyvel-next is its fork that does
    import plyvel_next as plyvel  # type: ignore[no-redef]

from ledger.storage import schema
from ledger.errors import ChainNotInitialized, DatabaseError, DatabaseLocked

LOCK_WAIT_SECONDS = 3.0
"""How long opening waits for another process's short hold on the database."""

LOCK_RETRY_SECONDS = 0.05

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

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        raise NotImplementedError

    def write(self, changes: Changes) -> None:
        raise NotImplementedError

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


class MemoryStore(KeyValueStore):
    """A dict with sorted iteration: same semantics as LevelDB, no durability."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        start = bisect.bisect_left(self._keys, prefix)
        keys = []
        for key in self._keys[start:]:
            if not key.startswith(prefix):
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


class LevelDBStore(KeyValueStore):
    """One LevelDB database with paranoid checks; held by one process at a time."""

    def __init__(self, db: "plyvel.DB", path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    def open(cls, path: Path, *, create: bool = False, lock_wait: float = LOCK_WAIT_SECONDS) -> "LevelDBStore":
        """Open (or with ``create``, make) the database; nothing is replayed, so this is O(1).

        LevelDB admits one process. Another posctl command holding it for a moment is waited
        for, up to ``lock_wait`` seconds; a holder that stays (a node) is reported.
        """
        if path.exists() and not path.is_dir():
            raise DatabaseError(f"{path} is a file, not a chain database directory: move it aside")
        if not create and not (path / "CURRENT").exists():
            raise ChainNotInitialized(
                f"no chain at {path.parent}: run `posctl chain init` first (or pass --home)"
            )
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        deadline = time.monotonic() + lock_wait
        while True:
            try:
                db = plyvel.DB(str(path), create_if_missing=create, paranoid_checks=True)
                break
            except plyvel.IOError as exc:
                text = _message(exc)
                if "lock" not in text.lower() and "temporarily unavailable" not in text.lower():
                    raise DatabaseError(f"cannot open the chain database at {path}: {text}") from None
                if time.monotonic() >= deadline:
                    raise DatabaseLocked(
                        f"the chain database at {path} is in use by another process (another posctl "
                        "command, or a running `posctl node run`): retry when it is done, or stop the node"
                    ) from None
                time.sleep(LOCK_RETRY_SECONDS)
            except plyvel.CorruptionError as exc:
                raise DatabaseError(
                    f"the chain database at {path} is corrupted ({_message(exc)}): "
                    "restore it from a backup, or move it aside and create the chain again"
                ) from None
            except plyvel.Error as exc:
                raise DatabaseError(f"cannot open the chain database at {path}: {_message(exc)}") from None
        store = cls(db, path)
        try:
            store._check_schema_version(create)
        except Exception:
            db.close()
            raise
        return store

    def _check_schema_version(self, create: bool) -> None:
        """Refuse a database of another schema version. An empty database is a chain whose
        ``init`` never committed (the version key is part of the genesis batch)."""
        raw = self._db.get(schema.SCHEMA_VERSION_KEY)
        expected = str(schema.SCHEMA_VERSION).encode("ascii")
        if raw is None:
            if next(self._db.iterator(include_value=False), None) is None:
                if create:
                    return
                raise ChainNotInitialized(
                    f"the chain database at {self.path} is empty (an interrupted `posctl chain init`?): "
                    "run `posctl chain init` again"
                )
            raise DatabaseError(f"{self.path} is not a posctl chain database (no schema version)")
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

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        with self._db.iterator(prefix=prefix, reverse=reverse) as iterator:
            yield from iterator

    def write(self, changes: Changes) -> None:
        with self._db.write_batch(transaction=True, sync=True) as batch:
            for key, value in changes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
