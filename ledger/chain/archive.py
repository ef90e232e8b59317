"""Export, import and backup: moving a chain between homes without trusting the copy.

An export file is canonical JSON, one document per line, streamed (memory stays flat at any
height), as geth's ``export``/``import``::

    {"chain_id": …, "format": "posctl-chain-export", "height": N, "schema": 2, "version": 1}
    <the genesis configuration, canonical>
    <block 0> … <block N>, each in its canonical encoding
    {"blocks": N+1, "end": "posctl-chain-export", "tip": "<hash of block N>"}

The last line makes a truncated file detectable. Import replays every block with the full
state transition (signatures, VRF proofs, draws, state roots) into a scratch chain inside the
target home and moves it into place only when the whole file verified: a failed import leaves
the home as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from ledger import encoding
from ledger.chain.facade import CHAIN_DIRNAME, CREATING_ELSEWHERE, IMPORT_SCRATCH, Chain, home_made_for
from ledger.chain.genesis_build import GenesisWorkers
from ledger.chain.genesis_file import scan_genesis_file
from ledger.chain.genesis_input import genesis_from_file
from ledger.consensus.blocks import Block
from ledger.errors import ChainExists, EncodingError, InvalidBlock, InvalidExport, InvalidGenesis, LedgerError
from ledger.storage import schema
from ledger.storage.files import holding_directory, partial_name, publish_directory
from ledger.storage.store import refuse_a_file_as_database

EXPORT_FORMAT = "posctl-chain-export"
EXPORT_VERSION = 1

GENESIS_COPY_BYTES = 1024 * 1024
"""Bytes of the genesis line copied at a time to the scratch file it is streamed from."""

Progress = Callable[[int, int], None]


@dataclass
class ExportReport:
    height: int
    blocks: int
    txs: int
    bytes: int


def export_chain(chain: Chain, out: IO[bytes], progress: Progress | None = None) -> ExportReport:
    """Stream the header, genesis, every block and the end line to ``out``."""
    top = chain.height
    written = 0

    def line(data: bytes) -> None:
        nonlocal written
        out.write(data + b"\n")
        written += len(data) + 1

    line(encoding.encode({"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "schema": schema.SCHEMA_VERSION,
                          "chain_id": chain.params.chain_id, "height": top}))
    # The genesis configuration as stored, canonical (verify checks it against the genesis hash,
    # import streams it): 50 MB at a million accounts, a part at a time, not decoded and encoded.
    for part in chain.genesis_config_parts():
        out.write(part)
        written += len(part)
    line(b"")
    txs = 0
    tip_hash = b""
    for height in range(top + 1):
        block = chain.block(height)
        line(block.encode())
        txs += len(block.txs)
        tip_hash = block.hash
        if progress is not None:
            progress(height, top)
    line(encoding.encode({"end": EXPORT_FORMAT, "blocks": top + 1, "tip": tip_hash.hex()}))
    return ExportReport(height=top, blocks=top + 1, txs=txs, bytes=written)


def _read_json_line(handle: IO[bytes], what: str, number: int) -> Any:
    raw = handle.readline()
    if not raw or not raw.endswith(b"\n"):
        raise InvalidExport(f"the export file ends at line {number}, in or before {what}: it is truncated; "
                            "export it again")
    try:
        return encoding.decode(raw.rstrip(b"\n"))
    except EncodingError as exc:
        raise InvalidExport(f"line {number} ({what}) is not canonical JSON: {exc}") from None


def read_header(handle: IO[bytes]) -> dict[str, Any]:
    header = _read_json_line(handle, "the header", 1)
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise InvalidExport("this is not a posctl chain export (no posctl-chain-export header on line 1)")
    if header.get("version") != EXPORT_VERSION or header.get("schema") != schema.SCHEMA_VERSION:
        raise InvalidExport(
            f"this export is format {header.get('version')}, chain schema {header.get('schema')}; this posctl "
            f"reads format {EXPORT_VERSION}, schema {schema.SCHEMA_VERSION}: use a matching posctl"
        )
    if not isinstance(header.get("height"), int) or header["height"] < 0:
        raise InvalidExport("the export header has no valid height")
    return header


def import_chain(home: Path, handle: IO[bytes], progress: Progress | None = None) -> ExportReport:
    """Replay an export into ``home``, which must hold no chain; all or nothing (a home made for
    it goes again if it fails)."""
    with home_made_for(home), holding_directory(home, CREATING_ELSEWHERE.format(home=home)):  # its scratch, the move
        return _import_alone(home, handle, progress)


def _import_alone(home: Path, handle: IO[bytes], progress: Progress | None) -> ExportReport:
    target = home / CHAIN_DIRNAME
    refuse_a_file_as_database(target)
    if target.exists() and any(target.iterdir()):
        raise ChainExists(f"{target} is not empty: import into a new --home (import never merges into a chain)")
    header = read_header(handle)
    top = header["height"]
    scratch_home = home / IMPORT_SCRATCH
    shutil.rmtree(scratch_home, ignore_errors=True)  # a previous import that was interrupted
    txs = 0
    try:
        with _genesis_chain(handle, scratch_home) as chain:
            for height in range(top + 1):
                block = _read_block(handle, height, top)
                if height == 0:  # the chain's own genesis, just built from line 2 on every core
                    if block.hash != chain.block(0).hash:
                        raise InvalidExport("block 0 does not match the genesis configuration on line 2")
                else:
                    try:
                        chain.import_block(block)
                    except (InvalidBlock, LedgerError) as exc:
                        if isinstance(exc, InvalidExport):
                            raise
                        raise InvalidExport(f"block {height} does not verify: {exc}") from None
                txs += len(block.txs)
                if progress is not None:
                    progress(height, top)
            end = _read_json_line(handle, "the end line", top + 4)
            if not _is_end_line(end) or end.get("tip") != chain.tip.hash.hex() or end.get("blocks") != top + 1:
                raise InvalidExport("the end line does not match the imported blocks: the file was edited or cut")
            _refuse_data_after_the_end(handle, top + 5)
            chain.check_recent_blocks()
        if target.exists():
            target.rmdir()  # empty, checked above
        publish_directory(scratch_home / CHAIN_DIRNAME, target)  # durable before "imported" is said
    finally:
        shutil.rmtree(scratch_home, ignore_errors=True)
    return ExportReport(height=top, blocks=top + 1, txs=txs, bytes=0)


def _read_block(handle: IO[bytes], height: int, top: int) -> Block:
    """Block ``height`` from its line, or an error naming what the line holds instead: the end
    line of a file with fewer blocks than its header announces was reported as a malformed block,
    and the next block (one deleted or moved) as a block that "does not verify"."""
    raw = handle.readline()
    if not raw or not raw.endswith(b"\n"):
        raise InvalidExport(f"the export file ends {_where_cut(height, raw)} of {top}: it is truncated; "
                            "export it again")
    line = height + 3  # after the header and the genesis line
    try:
        block = Block.decode(raw.rstrip(b"\n"))
    except LedgerError as exc:
        if _is_end_line(_decoded_or_none(raw)):
            raise InvalidExport(f"the export file ends (its end line is line {line}) before block {height} of the "
                                f"{top + 1} blocks (heights 0..{top}) its header announces: the file was edited or "
                                "cut; export it again") from None
        raise InvalidExport(f"block {height} (line {line}) is malformed: {exc}") from None
    if block.height != height:
        raise InvalidExport(f"line {line} holds block {block.height} where block {height} was expected: a block is "
                            "missing or out of order (the file was edited); export it again")
    return block


def _decoded_or_none(raw: bytes) -> Any:
    """The canonical JSON of one line, None if it is not."""
    try:
        return encoding.decode(raw.rstrip(b"\n"))
    except EncodingError:
        return None


def _is_end_line(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("end") == EXPORT_FORMAT


def _refuse_data_after_the_end(handle: IO[bytes], line: int) -> None:
    """Nothing may follow the end line (``line`` is where something does): it was ignored, so
    `cat a.export b.export` imported ``a`` alone and said nothing of ``b``."""
    if handle.read(1):
        raise InvalidExport(f"data after the end line (line {line}): the file is not one export as `posctl chain "
                            "export` wrote it (exports joined, or lines added); import each export into its own --home")


def _where_cut(height: int, raw: bytes) -> str:
    """Where a file that ends at block ``height`` (``raw``, the part of its line there is) was cut:
    one cut before block 0 ends after the genesis line (it said "after block -1")."""
    if raw:
        return f"inside block {height}"
    return "after the genesis line, before block 0" if height == 0 else f"after block {height - 1}"


def _genesis_chain(handle: IO[bytes], scratch_home: Path) -> Chain:
    """The scratch chain of line 2's genesis, streamed as ``chain init --genesis`` streams a file
    (:mod:`ledger.chain.genesis_file`): the line is copied to a scratch file a part at a time, so
    a million-account genesis (50 MB) is never held whole, and checked on every core."""
    scratch_home.mkdir(mode=0o700, parents=True)
    path = scratch_home / "genesis.json"
    with open(path, "wb") as copy:
        while True:
            part = handle.readline(GENESIS_COPY_BYTES)
            copy.write(part)
            if part.endswith(b"\n"):
                break
            if not part:
                raise InvalidExport("the export file ends at line 2, in or before the genesis: it is truncated; "
                                    "export it again")
    try:
        scanned = scan_genesis_file(path, label="the genesis line")
        with GenesisWorkers() as workers:
            build = genesis_from_file(scanned, resolve=_address_only, workers=workers)
            chain = Chain.create_from_file(scratch_home, build)
    except InvalidGenesis as exc:
        raise InvalidExport(f"line 2 (genesis) is not a valid genesis configuration: {exc}") from None
    path.unlink()
    return chain


def _address_only(who: str) -> str:
    """An export names every account by its address: a name there is not one."""
    raise InvalidGenesis(f"{who!r} is not an address (an export names accounts by address)")


@dataclass(frozen=True)
class BackupPoint:
    """What a backup copies, fixed in one moment: a LevelDB snapshot and the tip it holds. A node
    takes it under its lock and copies from it without the lock (see :func:`backup_chain`)."""

    snapshot: Any
    height: int
    tip: str


def backup_point(chain: Chain) -> BackupPoint:
    take = getattr(chain.store, "snapshot", None)
    if take is None:
        raise LedgerError("this chain is not stored in LevelDB: nothing to back up")
    return BackupPoint(take(), chain.height, chain.tip.hash.hex())


def backup_target(directory: Path) -> str:
    """The real path a backup into ``directory`` writes to (a node refuses a second backup into
    one being written). A path no directory can have is refused here with one line, as the
    caller's input: a NUL byte, which JSON can carry, answered 500 "embedded null byte"."""
    with _refused_as_unusable(directory):
        return os.path.realpath(directory)


@contextlib.contextmanager
def _refused_as_unusable(directory: Path) -> Iterator[None]:
    """What the OS says of a backup path it cannot use (a name too long, a NUL byte, no
    permission) as one line to act on: a node answered 500 and logged an internal error for it."""
    try:
        yield
    except ValueError:  # the os functions' refusal of a NUL byte
        raise LedgerError(f"cannot create backup directory {str(directory)!r}: a path cannot hold a NUL byte: "
                          "choose another") from None
    except OSError as exc:
        raise LedgerError(f"cannot create backup directory {directory}: {exc.strerror or exc}: choose another") from None


def _prepare_backup_directory(chain: Chain, directory: Path) -> bool:
    """Check that ``directory`` may take a backup and create it; True if it was created."""
    database = getattr(chain.store, "path", None)
    if database is not None and Path(backup_target(directory)).is_relative_to(os.path.realpath(database)):
        raise ChainExists(f"{directory} is inside the chain's own database ({database}): a copy there would sit "
                          "among the files it copies; choose a directory outside it")
    partial = partial_name(directory / CHAIN_DIRNAME)
    if directory.is_dir() and {entry.name for entry in directory.iterdir()} == {partial.name}:
        shutil.rmtree(partial, ignore_errors=True)  # all a backup killed here left: never a backup
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ChainExists(f"{directory} exists and is not an empty directory: choose a new backup directory")
    created = not directory.exists()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return created


def backup_chain(chain: Chain, directory: Path, point: BackupPoint | None = None,
                 check: Callable[[], None] | None = None) -> dict[str, Any]:
    """A consistent copy of ``chain`` as a new home at ``directory`` (its ``chain`` subdirectory):
    ``posctl --home DIRECTORY chain verify`` checks it, and it serves as a home as it is.

    With ``point`` (taken by :func:`backup_point`) the copy is of that moment and reads only its
    snapshot, so a node need not hold its lock meanwhile: a copy of a large chain took seconds
    during which the node admitted nothing. ``check`` is called between batches and raises to
    abandon the copy (a node stopping). The snapshot is released in every case."""
    taken = point or backup_point(chain)
    try:
        return _backup(chain, Path(directory), taken, check)
    finally:
        taken.snapshot.close()


def _backup(chain: Chain, directory: Path, point: BackupPoint, check: Callable[[], None] | None) -> dict[str, Any]:
    with _refused_as_unusable(directory):
        created = _prepare_backup_directory(chain, directory)
    partial = partial_name(directory / CHAIN_DIRNAME)
    # A half-written copy must not pass for a backup, even after a kill -9: a LevelDB copy cut
    # short opens, tip and all (keys are copied in order, the tip before the tx index). So the
    # copy is made under another name and renamed into place once whole.
    try:
        keys = chain.store.backup_to(partial, shown_as=directory, snapshot=point.snapshot,  # type: ignore[attr-defined]
                                     check=check)
        publish_directory(partial, directory / CHAIN_DIRNAME)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return {"backup": str(directory), "height": point.height, "tip": point.tip, "keys": keys}


__all__ = ["BackupPoint", "ExportReport", "InvalidExport", "backup_chain", "backup_point", "backup_target", "export_chain",
           "import_chain", "read_header"]
