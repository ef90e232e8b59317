"""A genesis file of any size, streamed: never parsed whole, its allocations never held at once.

A million allocations are a 54 MB file; parsed whole (text, the parser's pairs, the dict, the
sorted copy the canonical encoding needs) they took 450 MB. Here the file is read three times
as a stream (ijson, a C parser when its wheel has one):

1. :func:`scan_genesis_file` parses everything but the allocations into objects (they are small)
   and only counts and type-checks the allocations, so every field but the allocations is checked
   — with the messages of an in-memory genesis — before anything is written.
2. :meth:`GenesisFileBuild.allocation_records` streams the allocations in parts to the genesis
   workers, which check them as :func:`ledger.consensus.genesis.check_allocations` does and
   return their state entries, partial accumulator and address-index entries; the chain writes
   them in parts as they come. The database is the sort: its keys are ordered.
3. :meth:`GenesisFileBuild.config_records` walks the accounts just written, in address order,
   and writes and hashes the canonical configuration (which lists the allocations sorted) as it
   goes. At genesis an account's liquid balance is its allocation.

An address given twice cannot be caught in step 2 without holding every address: the database
holds one entry for both, so step 3 finds fewer accounts than were written, and only then is the
file read a fourth time, holding its addresses, to name the first one given twice. Any refusal
after the first write leaves the chain to :meth:`ledger.chain.facade.Chain.create_from_file` to
remove. The result is the chain the in-memory path builds from the same input (tested).
"""

from __future__ import annotations

import codecs
import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import ijson

from ledger import encoding
from ledger.chain.genesis_build import GenesisWorkers
from ledger.consensus import genesis, state
from ledger.consensus.blocks import Block
from ledger.consensus.genesis import GENESIS_TAG, GenesisConfig
from ledger.crypto.address import starts_like_address
from ledger.crypto.muhash import MuHash3072
from ledger.errors import InvalidGenesis
from ledger.params import MAX_AMOUNT
from ledger.storage import chaindb, schema
from ledger.storage.store import KeyValueStore

READ_BYTES = 64 * 1024

MAX_NESTING = 32
"""Deepest nesting of objects and arrays read from a genesis file; a real one has 3 levels.
Deeper is refused with a message rather than a RecursionError from :func:`_build`."""

ERROR_TEXT_CHARS = 160
"""The parser quotes the offending token in its message; a 5,000-digit number need not be
printed whole."""
PROGRESS_EVERY = 10_000

_FAST = ijson
"""The best parser ijson has here (yajl2_c from its wheels). It refuses integers beyond 64 bits,
which a genesis may hold (and must then be refused with the usual message): such a file is read
with ijson's pure-Python parser instead."""
_EXACT = ijson.get_backend("python")

Resolver = Callable[[str], str]
"""Turns what the user wrote for an account (a wallet name or a ``pos1…`` address) into an address."""

_ACCOUNTS = schema.STATE_PREFIX + state.ACCOUNT_STATE_PREFIX


class _Text:
    """A binary file whose bytes are checked to be UTF-8 as the parser reads them. A leading
    UTF-8 byte order mark (Windows editors write one) is skipped, as RFC 8259 allows: the parser
    refused it as "lexical error: invalid char in json text", which named nothing to fix."""

    def __init__(self, raw: BinaryIO, label: str) -> None:
        self._raw = raw
        self._label = label
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        if raw.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:
            raw.seek(0)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        try:
            self._decoder.decode(data, final=not data)
        except UnicodeDecodeError:
            raise InvalidGenesis(f"{self._label} is not UTF-8 text: write it as JSON") from None
        return data


class _Parts:
    """A file-like reader over stored parts (the canonical configuration, for ijson)."""

    def __init__(self, parts: Iterable[bytes]) -> None:
        self._parts = iter(parts)
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            part = next(self._parts, None)
            if part is None:
                break
            self._pending += part
        if size < 0:
            size = len(self._pending)
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


@dataclass
class ScannedGenesis:
    """What the first pass learned: the file's fields but its allocations, parsed, and the
    allocations counted (they stay in the file)."""

    path: Path
    fields: dict[str, Any]
    """The file's object, with ``allocations`` as ``{}`` when it is an object (else as given)."""
    label: str = ""
    """What messages call the file (default: ``genesis file PATH``)."""
    allocation_count: int = 0
    exact: bool = False
    """Holds an integer beyond 64 bits: read with the pure-Python parser."""


def scan_genesis_file(path: Path, label: str | None = None) -> ScannedGenesis:
    """Parse ``path`` but its allocations; count those, refusing any amount that is not a whole
    number. Refuses a file that is unreadable, not UTF-8, not JSON or not an object, and a key
    given twice in any object but the allocations (an account given twice there is caught as the
    allocations stream, see the module's doc)."""
    name = label or f"genesis file {path}"
    try:
        return _scan(path, name, _FAST, exact=False)
    except _TooLarge:
        return _scan(path, name, _EXACT, exact=True)


class _TooLarge(Exception):
    """The fast parser met an integer beyond 64 bits."""


def _scan(path: Path, label: str, backend: Any, exact: bool) -> ScannedGenesis:
    try:
        with open(path, "rb") as raw:
            events = backend.basic_parse(_Text(raw, label), use_float=True, buf_size=READ_BYTES)
            scanned = ScannedGenesis(path, {}, label, exact=exact)
            try:
                _scan_object(events, scanned)
                for _ in events:  # a second value after the object: the parser says what
                    pass
            except ijson.JSONError as exc:
                text = str(exc).splitlines()[0] if str(exc) else "it ends too early"
                if len(text) > ERROR_TEXT_CHARS:
                    text = text[:ERROR_TEXT_CHARS] + "…"
                if "integer overflow" in text and not exact:
                    raise _TooLarge() from None
                raise InvalidGenesis(f"{label} is not valid JSON: {text}") from None
            return scanned
    except OSError as exc:
        raise InvalidGenesis(f"cannot read {label}: {exc.strerror}") from None


def _scan_object(events: Iterator[tuple[str, Any]], scanned: ScannedGenesis) -> None:
    event, _ = next(events, ("end", None))
    if event == "end":
        raise ijson.IncompleteJSONError("the file is empty")
    if event != "start_map":
        raise InvalidGenesis(f"{scanned.label} must hold a JSON object with params, allocations and bonds")
    for event, key in events:
        if event == "end_map":
            return
        if key in scanned.fields:
            raise InvalidGenesis(f"{scanned.label} is ambiguous: duplicate field {key!r}")
        event, value = next(events)
        if key == "allocations" and event == "start_map":
            scanned.allocation_count = _scan_allocations(events, scanned.label)
            scanned.fields[key] = {}
        else:
            scanned.fields[key] = _build(event, value, events, scanned.label)


def _scan_allocations(events: Iterator[tuple[str, Any]], label: str) -> int:
    """Count the allocations, refusing an amount that is not an integer as the in-memory path
    does (its checks of addresses and ranges run in the second pass, on the workers)."""
    count = 0
    for event, who in events:
        if event == "end_map":
            return count
        event, amount = next(events)
        if event != "number" or type(amount) is not int:
            amount = _build(event, amount, events, label)
            raise InvalidGenesis(f"genesis allocations of {who}: {amount!r} is not a whole number of tokens")
        count += 1
    return count


def _build(event: str, value: Any, events: Iterator[tuple[str, Any]], label: str, depth: int = 1) -> Any:
    """The value an event starts, refusing a key given twice in any object."""
    if event in ("start_map", "start_array") and depth > MAX_NESTING:
        raise InvalidGenesis(f"{label} is nested too deeply (over {MAX_NESTING} levels): it is not a genesis file")
    if event == "start_map":
        built: dict[str, Any] = {}
        for event, key in events:
            if event == "end_map":
                return built
            if key in built:
                raise InvalidGenesis(f"{label} is ambiguous: duplicate field {key!r}")
            event, value = next(events)
            built[key] = _build(event, value, events, label, depth + 1)
        return built
    if event == "start_array":
        items: list[Any] = []
        for event, value in events:
            if event == "end_array":
                return items
            items.append(_build(event, value, events, label, depth + 1))
        return items
    return value


def _allocations(scanned: ScannedGenesis) -> Iterator[tuple[str, Any]]:
    """The file's allocations, (key as written, amount), in file order."""
    backend = _EXACT if scanned.exact else _FAST
    try:
        with open(scanned.path, "rb") as raw:
            yield from backend.kvitems(_Text(raw, scanned.label), "allocations", use_float=True, buf_size=READ_BYTES)
    except (OSError, ijson.JSONError) as exc:
        raise InvalidGenesis(f"{scanned.label} changed while it was read ({exc}): try again") from None


def stored_allocations(parts: Iterable[bytes]) -> Iterator[tuple[str, int]]:
    """The allocations of a stored canonical configuration, in address order, as they are read
    (``chain init`` shows the first of a million without decoding them all)."""
    yield from _FAST.kvitems(_Parts(parts), "allocations", use_float=True, buf_size=READ_BYTES)


PartResult = tuple[list[tuple[bytes, bytes]], bytes, int, list[tuple[str, int]], int]
"""(records to write, the part's MuHash, its supply, allocations of bonded addresses, liquid count)."""


def _file_part(bonded: frozenset[str], pairs: Sequence[tuple[Any, Any]]) -> PartResult:
    """One part of a file's allocations, on a worker: checked (the in-memory path's checks and
    messages), and for the accounts that are only liquid their state entries with their
    address-index entries, the part's accumulator and supply; the allocations of bonded
    addresses are returned as they are, for the reference path."""
    renamed = dict(genesis.check_allocations(pairs))
    checked = [(renamed.get(index, address), amount) for index, (address, amount) in enumerate(pairs)]
    held = [pair for pair in checked if pair[0] in bonded] if bonded else []
    liquid = [pair for pair in checked if pair[0] not in bonded] if held else checked
    entries, part_hash, supply = genesis.bulk_entries(liquid)
    records = [(schema.STATE_PREFIX + key, value) for key, value in entries]
    records += [chaindb.genesis_address_record(address, amount) for address, amount in liquid]
    return records, part_hash, supply, held, len(liquid)


@dataclass
class GenesisFileBuild:
    """A genesis whose allocations stream from a file. ``rest`` is the configuration without
    them (checked); ``extra`` the allocations given besides the file (options: who, amount)."""

    scanned: ScannedGenesis
    rest: GenesisConfig
    extra: Sequence[tuple[str, int]]
    resolve: Resolver
    workers: GenesisWorkers
    held: dict[str, int] = field(default_factory=dict)
    """Allocations of bonded addresses (few): they go through the reference path."""
    bulk: MuHash3072 = field(default_factory=MuHash3072)
    bulk_supply: int = 0
    liquid_written: int = 0
    block: Block | None = None
    muhash: MuHash3072 | None = None

    @property
    def allocation_count(self) -> int:
        return self.scanned.allocation_count + len(self.extra)

    def allocation_records(self) -> Iterator[tuple[bytes, bytes]]:
        """Pass two: the liquid-only accounts' state and address entries, as the workers finish
        each part; then the rest of the state (parameters, totals, bonded accounts, validators)."""
        work = functools.partial(_file_part, frozenset(self.rest.bonds))
        parts = self.workers.map_stream(work, self._parts(), self.allocation_count)
        for records, part_hash, supply, held, liquid in parts:
            yield from records
            self.bulk.combine(MuHash3072.from_bytes(part_hash))
            self.bulk_supply += supply
            self.liquid_written += liquid
            for address, amount in held:
                if address in self.held:
                    raise self._given_twice()
                self.held[address] = amount
        rest = self.rest
        if self.bulk_supply + sum(self.held.values()) + sum(rest.bonds.values()) >= MAX_AMOUNT:
            raise InvalidGenesis("genesis supply must stay below 2^63 tokens")
        entries, self.muhash = genesis.rest_entries(rest.params, self.held, rest.bonds, self.bulk, self.bulk_supply)
        yield from ((schema.STATE_PREFIX + key, value) for key, value in entries.items())
        for address, bond in rest.bonds.items():
            yield chaindb.genesis_address_record(address, self.held.get(address, 0) + bond)
        yield schema.ADDRESS_INDEX_KEY, b"1"

    def _parts(self) -> Iterator[list[tuple[str, Any]]]:
        part: list[tuple[str, Any]] = []
        size = self.workers.part
        for who, amount in itertools.chain(_allocations(self.scanned), self.extra):
            part.append((self._address(who), amount))
            if len(part) >= size:
                yield part
                part = []
        if part:
            yield part

    def _address(self, who: str) -> str:
        """An address as written (the workers check it), or the address of a wallet name."""
        return who if starts_like_address(who) else self.resolve(who)

    def config_records(self, store: KeyValueStore) -> Iterator[tuple[bytes, bytes]]:
        """Pass three, once the accounts are written: the canonical configuration in stored
        parts, hashed as it goes, then the genesis block. Refuses an address given twice."""
        if self.muhash is None:
            raise RuntimeError("config_records() before allocation_records() was consumed")
        head, tail = self.rest.allocations_frame()
        hasher = encoding.tagged_hasher(GENESIS_TAG)
        size = schema.GENESIS_PART_SIZE
        pending = bytearray(head)
        index = accounts = 0
        separator = b""
        for key, value in store.iterate(_ACCOUNTS):
            accounts += 1
            if accounts % PROGRESS_EVERY == 0:
                self.workers.advance(PROGRESS_EVERY)
            balance = genesis.liquid_balance(value)
            if balance:
                pending += b'%b"%b":%d' % (separator, key[len(_ACCOUNTS):], balance)
                separator = b","
            if len(pending) >= size:
                part = bytes(pending[:size])
                del pending[:size]
                hasher.update(part)
                yield schema.make_genesis_part_key(index), part
                index += 1
        self.workers.advance(accounts % PROGRESS_EVERY)
        if accounts != self.liquid_written + len(self.rest.bonds):
            raise self._given_twice()
        pending += tail
        for start in range(0, len(pending), size):
            part = bytes(pending[start:start + size])
            hasher.update(part)
            yield schema.make_genesis_part_key(index), part
            index += 1
        self.block = genesis.genesis_block(self.rest.timestamp, hasher.digest(), self.muhash)
        yield from chaindb.genesis_block_records(self.block)

    def _given_twice(self) -> InvalidGenesis:
        """The first account given twice, by a fourth read holding the addresses (a refusal only)."""
        seen: dict[str, str] = {}
        for who, _ in itertools.chain(_allocations(self.scanned), self.extra):
            address = self._address(who).lower()
            if address in seen:
                also = "" if seen[address] == who else f" (also as {seen[address]})"
                return InvalidGenesis(f"allocations: {who} is given twice{also}: give each account once")
            seen[address] = who
        return InvalidGenesis("allocations: an account is given twice: give each account once")

    def tip_record(self) -> dict[bytes, bytes | None]:
        """The tip naming the genesis block, written last (see ``Chain.initialise``)."""
        if self.block is None or self.muhash is None:
            raise RuntimeError("tip_record() before config_records() was consumed")
        return {schema.TIP_KEY: chaindb.encode_tip(self.block.header, self.muhash)}


__all__ = ["GenesisFileBuild", "ScannedGenesis", "scan_genesis_file", "stored_allocations"]
