"""Writing the wallet's files (wallet files, slashing-protection records) so a crash at any
moment leaves the old file or the new one, never a mix, and never one readable by others.

A temp file in the same directory (created 0600 by ``mkstemp``), written, fsynced, then renamed
over the target (or hard-linked, when overwriting is not allowed, so that even a race cannot
replace an existing file), then the directory is fsynced. An abandoned temp file is a hidden
``.NAME.*.tmp`` that listings ignore.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from wallet.errors import WalletExists

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def write_atomically(path: Path, data: bytes, *, overwrite: bool) -> None:
    """temp file (0600) -> write -> fsync -> rename/link -> fsync directory."""
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=directory)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            _link_without_overwrite(temp, path)
        fsync_directory(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _link_without_overwrite(temp: Path, path: Path) -> None:
    """Publish ``temp`` as ``path`` only if ``path`` does not exist, atomically where possible."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise WalletExists(
            f"wallet file {path} appeared while saving; it was left untouched"
        ) from None
    except OSError:
        # Filesystems without hard links: check then rename (a narrow race, still never a mix).
        if path.exists():
            raise WalletExists(f"wallet file {path} already exists; it was left untouched") from None
        os.replace(temp, path)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
