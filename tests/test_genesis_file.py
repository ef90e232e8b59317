"""A genesis file streamed into the chain (three passes over the file, the database as the sort)
builds byte for byte the chain the in-memory path builds, and refuses what it refuses — leaving
no chain behind, even when the refusal comes after the first parts were written."""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any, Sequence

import pytest

from ledger.chain import facade
from ledger.chain.facade import CHAIN_DIRNAME, Chain
from ledger.chain.genesis_build import GenesisWorkers
from ledger.chain.genesis_file import scan_genesis_file
from ledger.chain.genesis_input import genesis_from_file, merge_genesis
from ledger.crypto.address import parse_address
from ledger.errors import InvalidGenesis
from ledger.storage import schema
from tests.ledgerkit import make_key
from tests.test_scale import V, addresses

ALICE = make_key("file-alice")
NAMES = {"alice": ALICE.address, "val": V.address}


def by_name(who: str) -> str:
    """As the CLI resolves: an address (in either case) stands for itself, else a wallet name."""
    if who.lower().startswith("pos1"):
        return parse_address(who)
    if who not in NAMES:
        raise InvalidGenesis(f"no wallet named {who!r}")
    return NAMES[who]


def workers() -> GenesisWorkers:
    """Real worker processes from a thousand allocations, in parts of 700: a few thousand
    allocations take the parallel path, several parts each way."""
    return GenesisWorkers(workers=2, parallel_from=1000, part=700)


def mixed_file(count: int) -> dict[str, Any]:
    """A genesis file with the awkward cases: uppercase addresses, a wallet name, allocations to
    bonded addresses (one of them named), a bond-only address, a chain id at the top level."""
    listed = addresses(count, b"file")
    allocations: dict[str, int] = {address.upper() if i % 97 == 0 else address: 1 + i * 7919 % 10**12
                                   for i, address in enumerate(listed)}
    allocations["alice"] = 77
    return {
        "chain_id": "posctl-file",
        "params": {"min_stake": 50},
        "timestamp": 1_700_000_000,
        "allocations": allocations,
        "bonds": {listed[5]: 10**6, "val": 10**9, addresses(1, b"bond-only")[0]: 500},
    }


def write(path: Path, document: dict[str, Any] | str) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


Amounts = Sequence[tuple[str, int]]


def streamed(home: Path, path: Path, *, extra: Amounts = (), bonds: Amounts = ()) -> Chain:
    with workers() as pool:
        build = genesis_from_file(scan_genesis_file(path), resolve=by_name, workers=pool, allocations=extra, bonds=bonds)
        return Chain.create_from_file(home, build)


def in_memory(home: Path, path: Path, *, extra: Amounts = (), bonds: Amounts = ()) -> Chain:
    config = merge_genesis(json.loads(path.read_text()), resolve=by_name, allocations=extra, bonds=bonds)
    return Chain.create(home, config)


def everything(chain: Chain) -> dict[bytes, bytes]:
    return dict(chain.store.iterate(b""))


@pytest.mark.parametrize("count", [40, 3000])
def test_a_streamed_genesis_is_the_chain_the_in_memory_path_builds(tmp_path: Path, count: int) -> None:
    path = write(tmp_path / "genesis.json", mixed_file(count))
    extra = [(addresses(1, b"option")[0], 12), ("POS1" + addresses(1, b"upper-option")[0][4:].upper(), 13)]
    with streamed(tmp_path / "streamed", path, extra=extra, bonds=[("alice", 300)]) as chain, \
            in_memory(tmp_path / "memory", path, extra=extra, bonds=[("alice", 300)]) as reference:
        assert chain.block(0).hash == reference.block(0).hash
        assert chain.tip.state_root == reference.tip.state_root
        assert everything(chain) == everything(reference)  # every record, the address index included
        config = reference.genesis
        assert list(chain.genesis_allocations()) == sorted(config.allocations.items())
        assert len(config.allocations) == count + 3
        chain.verify()


def test_the_allocations_may_come_before_the_bonds_and_parameters(tmp_path: Path) -> None:
    document = mixed_file(50)
    reordered = {key: document[key] for key in ("allocations", "bonds", "timestamp", "params", "chain_id")}
    with streamed(tmp_path / "a", write(tmp_path / "a.json", document)) as first, \
            streamed(tmp_path / "b", write(tmp_path / "b.json", reordered)) as second:
        assert first.block(0).hash == second.block(0).hash


def test_a_byte_order_mark_before_the_json_is_skipped(tmp_path: Path) -> None:
    """Notepad saves UTF-8 with a byte order mark; the parser refused such a file as "lexical
    error: invalid char in json text". It is the same genesis as the file without it."""
    plain = write(tmp_path / "plain.json", mixed_file(50))
    marked = tmp_path / "marked.json"
    marked.write_bytes(codecs.BOM_UTF8 + plain.read_bytes())
    with streamed(tmp_path / "a", plain) as first, streamed(tmp_path / "b", marked) as second:
        assert first.block(0).hash == second.block(0).hash


def test_a_genesis_without_allocations_streams_too(tmp_path: Path) -> None:
    path = write(tmp_path / "g.json", {"chain_id": "posctl-file", "timestamp": 5, "bonds": {"val": 1000}})
    with streamed(tmp_path / "s", path) as chain, in_memory(tmp_path / "m", path) as reference:
        assert everything(chain) == everything(reference)
        assert list(chain.genesis_allocations()) == []


def _refused(tmp_path: Path, document: dict[str, Any] | str, message: str, *,
             extra: Sequence[tuple[str, int]] = ()) -> None:
    path = write(tmp_path / "g.json", document)
    home = tmp_path / "new" / "home"
    with pytest.raises(InvalidGenesis, match=message):
        streamed(home, path, extra=extra)
    assert not (tmp_path / "new").exists()  # nothing written is left behind, not even the home made for it


@pytest.mark.parametrize("late, message", [
    (lambda listed: {listed[2500][:-1] + ("q" if listed[2500][-1] != "q" else "p"): 5}, "allocation: .*checksum"),
    (lambda listed: {listed[2600]: 2**63}, r"allocation of .*: 9223372036854775808 is not a whole amount in \[1, 2\^63\)"),
    (lambda listed: {listed[2700]: 0}, r"not a whole amount in \[1, 2\^63\)"),
    (lambda listed: {"nobody": 5}, "no wallet named 'nobody'"),
])
def test_an_allocation_refused_after_parts_were_written_leaves_no_chain(tmp_path: Path, late, message: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(facade, "GENESIS_PART_BYTES", 16 * 1024)  # parts on disk before the bad one
    document = mixed_file(3000)
    listed = list(document["allocations"])
    document["allocations"].update(late(listed))
    _refused(tmp_path, document, message)


def test_an_account_given_twice_is_named_whatever_its_spelling(tmp_path: Path) -> None:
    document = mixed_file(3000)
    listed = addresses(3000, b"file")
    upper = dict(document, allocations={**document["allocations"], listed[2900].upper(): 4})
    _refused(tmp_path, upper, f"allocations: {listed[2900].upper()} is given twice .also as {listed[2900]}.")
    text = json.dumps(document)
    twice = text.replace('"allocations": {', f'"allocations": {{"{listed[1]}": 3, ', 1)
    _refused(tmp_path, twice, f"allocations: {listed[1]} is given twice: give each account once")
    named = dict(document, allocations={**document["allocations"], ALICE.address: 4})
    _refused(tmp_path, named, f"allocations: {ALICE.address} is given twice .also as alice.")
    bonded = text.replace('"allocations": {', f'"allocations": {{"{listed[5]}": 3, ', 1)
    _refused(tmp_path, bonded, f"allocations: {listed[5]} is given twice: give each account once")
    _refused(tmp_path, document, f"allocations: {listed[7]} is given twice", extra=[(listed[7], 1)])


@pytest.mark.parametrize("content, message", [
    (b"", "not valid JSON"),
    (b'{"bonds": {"a": 1}} x', "not valid JSON: parse error: trailing garbage"),
    (b'{"allocations": {"pos1x": 1', "not valid JSON"),
    (b"[1]", "must hold a JSON object"),
    (b'{"params": {"min_stake": 1, "min_stake": 2}}', "ambiguous: duplicate field 'min_stake'"),
    (b'{"bonds": {}, "bonds": {}}', "ambiguous: duplicate field 'bonds'"),
    (b'{"allocations": {"a": 1.5}}', "allocations of a: 1.5 is not a whole number"),
    (b'{"allocations": {"a": true}}', "allocations of a: True is not a whole number"),
    (b'{"allocations": {"a": {"b": [1]}}}', r"allocations of a: \{'b': \[1\]\} is not a whole number"),
    (b'{"allocations": [1]}', "'allocations' must map"),
    (b'{"allocations": {}, "surprise": 1}', "unknown field 'surprise'"),
    (b'{"bonds": {"val": 1000}, "timestamp": 99999999999999999999}', "timestamp 99999999999999999999 is out of range"),
    (b'\xff{}', "not UTF-8"),
    (b'{"params": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", r"nested too deeply \(over 32 levels\)"),
    (b'{"allocations": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", r"nested too deeply \(over 32 levels\)"),
    (b'{"params": {"min_stake": ' + b"9" * 5000 + b"}}", r"not valid JSON: .{1,160}…$"),
])
def test_a_malformed_file_is_refused_before_anything_is_written(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(content)
    home = tmp_path / "home"
    with pytest.raises(InvalidGenesis, match=message):
        streamed(home, path)
    assert not (home / CHAIN_DIRNAME).exists()


def test_an_amount_beyond_64_bits_gets_the_range_message(tmp_path: Path) -> None:
    """The C parser stops at 64-bit integers; such a file is read exactly and refused as the
    in-memory path refuses it."""
    document = mixed_file(10)
    document["allocations"][addresses(1, b"huge")[0]] = 10**30
    _refused(tmp_path, document, r"10{30} is not a whole amount in \[1, 2\^63\)")


def test_an_unfinished_chain_refused_again_is_left_empty_not_removed(tmp_path: Path) -> None:
    """A directory that held an unfinished genesis before is not removed by a refusal (it was
    not this init's to remove), but what this init wrote is gone."""
    home = tmp_path / "home"
    with streamed(home, write(tmp_path / "ok.json", mixed_file(20))):
        pass
    with LevelDB(home) as store:
        store.write({schema.TIP_KEY: None})  # as if killed before its tip
    document = mixed_file(3000)
    document["allocations"][addresses(1, b"late")[0]] = 0
    with pytest.raises(InvalidGenesis):
        streamed(home, write(tmp_path / "bad.json", document))
    with LevelDB(home) as store:
        assert list(store.iterate(b"")) == []


class LevelDB:
    def __init__(self, home: Path) -> None:
        from ledger.storage.store import LevelDBStore
        self.store = LevelDBStore.open(home / CHAIN_DIRNAME, create=True)  # (an empty one too)

    def __enter__(self):
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()
