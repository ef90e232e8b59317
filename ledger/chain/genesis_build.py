"""A large genesis on every core: its allocations checked, encoded and hashed in parts.

A million-account genesis costs about 25 µs an allocation on one core (address checksum,
account encoding, MuHash3072 element and multiplication): half a minute. Each allocation is
independent and the state accumulator is a product, so parts of the allocations go to worker
processes and their partial products are multiplied together (:mod:`ledger.consensus.genesis`
holds the rules of each part; this module only schedules them). Parts come back in order, so
the first bad allocation is still the one reported, and the state entries stream to the store
as they arrive instead of being held twice. A small genesis never starts the
workers: starting them costs more than it saves. Workers are spawned (the parent may hold
LevelDB's threads); if the pool cannot start or breaks, the parts run inline.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from ledger.consensus import genesis, statehash
from ledger.consensus.blocks import Block
from ledger.consensus.genesis import GenesisConfig
from ledger.crypto.muhash import MuHash3072
from ledger import encoding
from ledger.errors import EncodingError, InvalidGenesis
from ledger.params import Params
from ledger.chain.pools import end_pool, spawn_pool

PARALLEL_THRESHOLD = 20_000
"""Allocations from which the work is spread over worker processes."""

PART = 10_000
"""Allocations per part: large enough to amortise pickling, small enough to spread and report."""

Progress = Callable[[int], None]
"""Called with the number of allocations just finished (a phase counts each allocation once)."""

Result = TypeVar("Result")


class GenesisWorkers:
    """The worker processes of one genesis, shared by its phases (checking, then hashing) so
    they start once; a context manager that shuts them down."""

    def __init__(self, progress: Progress | None = None, workers: int | None = None,
                 parallel_from: int = PARALLEL_THRESHOLD, part: int = PART) -> None:
        self.progress = progress
        self.part = part
        self._parallel_from = parallel_from
        self._workers = workers or os.cpu_count() or 1
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._broken = False

    def __enter__(self) -> "GenesisWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            end_pool(pool, abandon=exc[0] is not None)

    def map_parts(self, function: Callable[[Sequence[Any]], Result], items: Sequence[Any]) -> Iterator[Result]:
        """``function`` of each part of ``items``, in order; on the workers once ``items`` is large."""
        parts = (items[start:start + self.part] for start in range(0, len(items), self.part))
        return self.map_stream(function, parts, len(items))

    def map_stream(self, function: Callable[[Sequence[Any]], Result], parts: Iterable[Sequence[Any]],
                   total: int) -> Iterator[Result]:
        """``function`` of each of ``parts`` (``total`` items in all), in order, pulling the parts
        only as workers free up (a genesis file streams its allocations through here): on the
        workers once ``total`` is large."""
        if self._broken or self._workers < 2 or total < self._parallel_from:
            for part in parts:
                yield function(part)
                self.advance(len(part))
            return
        if self._pool is None:
            self._pool = spawn_pool(self._workers)
        pending: deque[tuple[Sequence[Any], concurrent.futures.Future]] = deque()
        upcoming = iter(parts)
        for part in upcoming:
            pending.append((part, self._pool.submit(function, part)))
            if len(pending) >= 2 * self._workers + 1:
                break
        while pending:
            part, future = pending.popleft()
            try:
                result = future.result()
            except InvalidGenesis:
                raise
            except Exception:  # a worker could not start or died: this part, and the rest, here
                self._broken = True
                result = function(part)
            yield result
            self.advance(len(part))
            following = next(upcoming, None)
            if following is not None:
                if self._broken:
                    pending.append((following, _done(function(following))))
                else:
                    pending.append((following, self._pool.submit(function, following)))

    def advance(self, count: int) -> None:
        """Report ``count`` more allocations finished (to the progress callback, if any)."""
        if self.progress is not None:
            self.progress(count)


def _done(result: Any) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(result)
    return future


def checked_config(
    params: Params, allocations: Mapping[str, int], bonds: Mapping[str, int], timestamp: int,
    workers: GenesisWorkers | None = None,
) -> GenesisConfig:
    """A :class:`GenesisConfig` whose allocations were checked in parts (the constructor's checks,
    with its messages); bonds, parameters and timestamp are checked as the constructor does."""
    workers = workers or GenesisWorkers()
    items = list(allocations.items())
    renamed: dict[int, str] = {}
    for number, part_renamed in enumerate(workers.map_parts(genesis.check_allocations, items)):
        renamed.update((number * workers.part + index, address) for index, address in part_renamed)
    del items
    if not renamed:
        checked = allocations if isinstance(allocations, dict) else dict(allocations)
    else:  # some addresses were given in uppercase: two spellings of one account are refused
        checked = {}
        for index, (address, amount) in enumerate(allocations.items()):
            address = renamed.get(index, address)
            if address in checked:
                raise InvalidGenesis(f"allocation of {address} is given twice: give each account once")
            checked[address] = amount
    return GenesisConfig.from_checked_allocations(params, checked, bonds, timestamp)


def decode_config(data: bytes, workers: GenesisWorkers | None = None) -> GenesisConfig:
    """``GenesisConfig.decode`` with the allocations checked in parts on every core (a replay
    of a million-account chain starts here)."""
    try:
        obj = encoding.decode(data)
    except EncodingError as exc:
        raise InvalidGenesis(f"genesis is not canonical: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("allocations", {}), dict):
        return GenesisConfig.from_dict(obj)  # says what is wrong
    rest = GenesisConfig.from_dict({**obj, "allocations": {}})
    return checked_config(rest.params, obj.get("allocations", {}), rest.bonds, rest.timestamp, workers)


class GenesisBuild:
    """Genesis state in parts: :meth:`state_parts` yields every entry (computing the
    liquid-only accounts on the workers as it goes); afterwards :attr:`block`, :attr:`muhash`
    and :attr:`config_bytes` are set."""

    def __init__(self, config: GenesisConfig, workers: GenesisWorkers | None = None) -> None:
        self.config = config
        self.workers = workers or GenesisWorkers()
        self.config_bytes = config.encode()
        self.block: Block | None = None
        self.muhash: MuHash3072 | None = None

    def state_parts(self) -> Iterator[list[tuple[bytes, bytes]]]:
        """Every state entry, in parts: the liquid-only accounts as the workers finish them,
        then the parameters, totals and validators."""
        pairs, _ = genesis.split_allocations(self.config)
        bulk = MuHash3072()
        supply = 0
        for entries, part_hash, part_supply in self.workers.map_parts(genesis.bulk_entries, pairs):
            yield entries
            supply += part_supply
            bulk.combine(MuHash3072.from_bytes(part_hash))
        del pairs
        self.block, entries, self.muhash = genesis.assemble_genesis(self.config, self.config_bytes, bulk, supply)
        yield list(entries.items())

    def finished(self) -> tuple[bytes, Block, MuHash3072]:
        """(config bytes, block, accumulator) once :meth:`state_parts` has been consumed."""
        if self.block is None or self.muhash is None:
            raise RuntimeError("GenesisBuild.finished() before its state parts were consumed")
        return self.config_bytes, self.block, self.muhash


def _hash_part(entries: Sequence[tuple[bytes, bytes]]) -> bytes:
    return statehash.hash_of_entries(entries).to_bytes()


def hash_state(entries: Sequence[tuple[bytes, bytes]], workers: GenesisWorkers | None = None) -> MuHash3072:
    """``statehash.hash_of_entries`` in parts on every core: what ``verify`` recomputes from
    scratch over the whole replayed state at the end (a million accounts: seconds, not tens)."""
    with workers or GenesisWorkers() as pool:
        muhash = MuHash3072()
        for part in pool.map_parts(_hash_part, entries):
            muhash.combine(MuHash3072.from_bytes(part))
    return muhash


def build_state(config: GenesisConfig, workers: GenesisWorkers | None = None) -> tuple[Block, dict[bytes, bytes], MuHash3072]:
    """The genesis block, its whole state as a dict and its accumulator (what a replay starts from)."""
    build = GenesisBuild(config, workers)
    entries = {key: value for part in build.state_parts() for key, value in part}
    _, block, muhash = build.finished()
    return block, entries, muhash


__all__ = ["GenesisBuild", "GenesisWorkers", "PARALLEL_THRESHOLD", "build_state", "checked_config", "decode_config",
           "hash_state"]
