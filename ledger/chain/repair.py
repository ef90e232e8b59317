"""``posctl chain repair``: copy the chain aside, run LevelDB's repair, then verify everything.

LevelDB's repair rebuilds the MANIFEST from whatever tables and log records still read back;
it can drop damaged blocks of a table, so a repaired database is trusted only after a full
replay from genesis. The untouched original is kept next to the chain directory, so a repair
that goes wrong loses nothing that was there before; and a repair that does not verify puts the
original back under the chain's name. Its result opened where the original did not (a rebuilt
MANIFEST no longer lists a lost table), so left in place it passed for a chain: `chain status`
showed the old height and `chain forge` built on a chain missing blocks, which only a full
`chain verify` noticed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import encoding
from ledger.chain.facade import CHAIN_DIRNAME, Chain, ProgressCallback
from ledger.errors import (ChainNotInitialized, DatabaseCorrupted, DatabaseError, DatabaseLocked, LedgerError,
                           VerificationError)
from ledger.storage import schema
from ledger.storage.files import PARTIAL_SUFFIX, copy_directory, publish_directory, remove_directory
from ledger.chain.mempool import rebuild_records
from ledger.storage.store import (REPAIR_HINT, LevelDBStore, holding_database, holds_leveldb_files, read_raw,
                                  repair_database)


@dataclass
class RepairReport:
    """What a repair kept and what it lost; ``ok`` only when the repaired chain verifies."""

    backup: str
    """Where the original is kept; after a failed repair it is back under the chain's name."""
    ok: bool
    height: int | None = None
    blocks: int | None = None
    txs: int | None = None
    pending: int | None = None
    height_before: int | None = None
    pending_before: int | None = None
    error: str | None = None
    restored: bool = False
    """After a failed repair: the original is back under the chain's name."""
    notes: list[str] = field(default_factory=list)

    def to_view(self) -> dict[str, Any]:
        lost = None
        if self.pending_before is not None and self.pending is not None:
            lost = max(self.pending_before - self.pending, 0)
        return {
            "ok": self.ok, "backup": self.backup, "height": self.height, "blocks": self.blocks,
            "txs": self.txs, "pending": self.pending, "height_before": self.height_before,
            "pending_before": self.pending_before, "pending_lost": lost, "error": self.error,
            "restored": self.restored, "notes": self.notes,
        }


BACKUP_PREFIX = "chain.before-repair-"


def backup_dir_name(now: float | None = None) -> str:
    return BACKUP_PREFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def repair_copies(home: Path) -> set[Path]:
    """The copies earlier repairs set aside in ``home`` (each a whole database)."""
    return {entry for entry in home.glob(BACKUP_PREFIX + "*") if entry.is_dir()}


def _copy_aside(path: Path) -> Path:
    target = path.parent / backup_dir_name()
    suffix = 1
    while target.exists():
        target = path.parent / f"{backup_dir_name()}-{suffix}"
        suffix += 1
    for leftover in path.parent.glob(f".{BACKUP_PREFIX}*{PARTIAL_SUFFIX}"):  # a killed repair's part of a copy
        shutil.rmtree(leftover, ignore_errors=True)
    try:  # built aside and renamed: a copy that carries this name is whole, even after a kill -9
        copy_directory(path, target)
    except BaseException as exc:  # a full disk, or an interruption: no half copy stays behind
        if not isinstance(exc, OSError):
            raise
        raise DatabaseError(
            f"cannot copy {path} aside before repairing it ({exc.strerror or exc}): free some space "
            "and run `posctl chain repair` again; nothing was changed"
        ) from None
    return target


def _read_before(path: Path) -> tuple[int | None, int | None]:
    """The tip height and pending count the damaged database shows, if it reads back with every
    check on; unknown otherwise (what a relaxed read shows has already lost the damaged records:
    it counted a tx dropped with a damaged log record as never there, "0 pending txs lost")."""
    height = pending = None
    raw = read_raw(path, (schema.TIP_KEY, schema.MEMPOOL_META_KEY))
    if raw is None:
        return None, None
    raw_tip, raw_meta = raw[schema.TIP_KEY], raw[schema.MEMPOOL_META_KEY]
    try:
        if raw_tip is not None:
            height = int(encoding.decode(raw_tip)["header"]["height"])
        if raw_meta is not None:
            pending = int(encoding.decode(raw_meta)["count"])
    except (LedgerError, KeyError, TypeError, ValueError):
        pass
    return height, pending


def _put_back(path: Path, original: Path) -> None:
    """A repair that did not verify: LevelDB's attempt is deleted and the original goes back
    under the chain's name (its copy renamed: one step), so every command refuses the damaged
    chain as before instead of using the attempt."""
    with holding_database(path):
        remove_directory(path)
        publish_directory(original, path)


def _rebuild_mempool(path: Path) -> list[str]:
    """The pool's records rebuilt from the txs that survived whole (:func:`rebuild_records`),
    before anything reads them: a damaged counter ended the repair in a traceback."""
    store = LevelDBStore.open(path)
    try:
        _, dropped = rebuild_records(store)
    finally:
        store.close()
    return [f"{dropped} damaged pending tx record(s) dropped"] if dropped else []


def repair_chain(home: Path, progress: ProgressCallback | None = None) -> RepairReport:
    """Copy aside, repair, verify. Raises when nothing could be attempted, and
    :class:`DatabaseLocked` when another process holds the database (before the copy, or
    having slipped in between two steps)."""
    path = home / CHAIN_DIRNAME
    if not path.is_dir() or not holds_leveldb_files(path):
        raise ChainNotInitialized(f"no chain database at {path}: nothing to repair")
    with holding_database(path):  # copied and repaired with no other process inside
        backup = _copy_aside(path)
    report = RepairReport(backup=str(backup), ok=False)
    report.height_before, report.pending_before = _read_before(path)  # (opens it: not under the hold)
    try:
        with holding_database(path):
            repair_database(path)
        report.notes += _rebuild_mempool(path)
        with Chain.open(home) as chain:
            report.pending = chain.mempool.count
            result = chain.verify(progress)
            report.height, report.blocks, report.txs = result.height, result.blocks, result.txs
            report.ok = True
    except DatabaseLocked:  # another process took the database between two steps: not damage
        raise
    except VerificationError as exc:
        report.error = f"the repaired chain does not verify ({exc}): the damaged files held part of it"
    except (ChainNotInitialized, DatabaseCorrupted) as exc:
        cause = str(exc).replace(f": {REPAIR_HINT}, or move it aside", "").replace(f": {REPAIR_HINT}", "")
        report.error = f"LevelDB's repair recovered no usable chain ({cause}): the damaged files held its records"
    except LedgerError as exc:
        report.error = f"LevelDB's repair did not recover a usable chain: {exc}"
    if not report.ok:
        try:
            _put_back(path, backup)
            report.restored = True
        except (OSError, LedgerError) as exc:  # the original stays whole at its copy's name
            report.notes.append(f"the original could not be put back ({getattr(exc, 'strerror', None) or exc})")
    return report


__all__ = ["BACKUP_PREFIX", "RepairReport", "backup_dir_name", "repair_chain", "repair_copies"]
