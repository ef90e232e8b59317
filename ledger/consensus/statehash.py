"""The incremental state commitment behind each header's ``state_root``.

A MuHash3072 over the set of (key, value) state entries, as Bitcoin Core's coin-statistics
index commits to the UTXO set: a block that touches k entries costs k removals and k
insertions, whatever the size of the state, and the result does not depend on the order.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from ledger.crypto.muhash import MuHash3072


def state_entry(key: bytes, value: bytes) -> bytes:
    """Length-prefixed so that no (key, value) pair can collide with another split."""
    return len(key).to_bytes(4, "big") + key + value


def hash_of_entries(entries: Iterable[tuple[bytes, bytes]]) -> MuHash3072:
    """From scratch: used at genesis and by ``verify`` to check the stored state whole."""
    muhash = MuHash3072()
    muhash.insert_many(state_entry(key, value) for key, value in entries)
    return muhash


def apply_changes(
    muhash: MuHash3072,
    originals: Mapping[bytes, bytes | None],
    writes: Mapping[bytes, bytes | None],
) -> MuHash3072:
    """A new accumulator: each touched key's old entry out, its new entry in."""
    updated = muhash.copy()
    for key, new_value in writes.items():
        old_value = originals.get(key)
        if old_value == new_value:
            continue
        if old_value is not None:
            updated.remove(state_entry(key, old_value))
        if new_value is not None:
            updated.insert(state_entry(key, new_value))
    return updated
