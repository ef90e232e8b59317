"""Scale: opening reads no allocation, the parallel genesis equals the one-shot one, and the
fast address check agrees with BIP-173's decoder."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Iterator

import pytest

from ledger.chain.facade import CHAIN_DIRNAME, Chain
from ledger.consensus.genesis import GenesisConfig
from ledger.consensus.state import ACCOUNT_STATE_PREFIX
from ledger.crypto import bech32
from ledger.errors import InvalidAddress
from ledger.params import Params
from ledger.storage import schema
from ledger.storage.store import Changes, KeyValueStore, LevelDBStore
from tests.ledgerkit import make_key
from tests.test_pools import wait_gone

V = make_key("scale-validator")


def addresses(count: int, label: bytes = b"scale") -> list[str]:
    return [bech32.encode_address(hashlib.sha256(label + i.to_bytes(8, "big")).digest()[:20]) for i in range(count)]


def scale_config(count: int) -> GenesisConfig:
    allocations = {address: 1000 + i for i, address in enumerate(addresses(count))}
    return GenesisConfig(params=Params(chain_id="posctl-scale"), allocations=allocations,
                         bonds={V.address: 10**9}, timestamp=1_700_000_000)


class CountingStore(KeyValueStore):
    """A real LevelDB store that counts every byte read through it (keys and values)."""

    def __init__(self, inner: KeyValueStore) -> None:
        self.inner = inner
        self.bytes_read = 0
        self.keys_read: list[bytes] = []

    def _count(self, key: bytes, value: bytes | None) -> None:
        self.bytes_read += len(key) + len(value or b"")
        self.keys_read.append(key)

    def get(self, key: bytes) -> bytes | None:
        value = self.inner.get(key)
        self._count(key, value)
        return value

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.inner.iterate(prefix, reverse=reverse):
            self._count(key, value)
            yield key, value

    def write(self, changes: Changes) -> None:
        self.inner.write(changes)

    def close(self) -> None:
        self.inner.close()


def _reads_on_open(home: Path) -> tuple[int, list[bytes], int, list[bytes]]:
    store = CountingStore(LevelDBStore.open(home / CHAIN_DIRNAME))
    with Chain(store, home) as chain:
        opened, opened_keys = store.bytes_read, list(store.keys_read)
        chain.status()
        return opened, opened_keys, store.bytes_read - opened, store.keys_read[len(opened_keys):]


def test_opening_reads_no_allocation_whatever_the_genesis_size(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    Chain.create(small, scale_config(1000)).close()
    Chain.create(large, scale_config(100_000)).close()
    small_open, small_keys, small_status, small_status_keys = _reads_on_open(small)
    large_open, large_keys, large_status, large_status_keys = _reads_on_open(large)
    assert large_open == small_open, (small_keys, large_keys)
    assert small_open < 2000  # the tip (with its 384-byte accumulator), the parameters, the mempool meta
    # status reads the totals, whose numbers have more digits at 100k accounts: a few bytes
    assert abs(large_status - small_status) < 64, (small_status_keys, large_status_keys)
    for key in large_keys + large_status_keys:
        assert key != schema.GENESIS_KEY and not key.startswith(schema.GENESIS_PART_PREFIX)
        assert not key.startswith(schema.make_state_key(ACCOUNT_STATE_PREFIX)) or V.address.encode() in key
    with Chain.open(large) as chain:  # the allocations are still there for whoever asks
        assert len(chain.genesis.allocations) == 100_000


def test_fast_address_check_agrees_with_the_decoder():
    rnd = random.Random(16)
    for _ in range(2000):
        address = bech32.encode_address(rnd.randbytes(20))
        assert bech32.is_canonical_address(address)
        position = rnd.randrange(len(address))
        typo = address[:position] + rnd.choice(bech32.CHARSET + "1bioQP ") + address[position + 1:]
        try:
            bech32.decode_address(typo)
            valid = True
        except InvalidAddress:
            valid = False
        assert bech32.is_canonical_address(typo) == (valid and typo.islower()), typo
    assert not bech32.is_canonical_address(address.upper())  # valid, but left to the decoder


# ---- genesis in parts on every core equals the one-shot genesis ---------------------------------


def _mixed_allocations(count: int) -> tuple[dict[str, int], dict[str, int]]:
    """Allocations with the awkward cases: some in uppercase, some also bonded."""
    listed = addresses(count, b"mixed")
    allocations = {address.upper() if i % 97 == 0 else address: 1 + i * 7919 % 10**12 for i, address in enumerate(listed)}
    bonds = {listed[5]: 10**6, listed[6]: 500, V.address: 10**9}
    return allocations, bonds


def test_parallel_genesis_equals_the_one_shot_genesis(tmp_path):
    from ledger.chain.genesis_build import GenesisBuild, GenesisWorkers, checked_config
    from ledger.consensus.genesis import build_genesis

    allocations, bonds = _mixed_allocations(5000)
    params = Params(chain_id="posctl-scale")
    reference = GenesisConfig(params=params, allocations=allocations, bonds=bonds, timestamp=1_700_000_000)
    block, state, muhash = build_genesis(reference)
    done: list[int] = []
    with GenesisWorkers(done.append, workers=2, parallel_from=1000, part=700) as workers:
        config = checked_config(params, allocations, bonds, 1_700_000_000, workers)
        assert config == reference
        assert config.encode() == reference.encode() == __import__("ledger").encoding.encode(reference.to_dict())
        build = GenesisBuild(config, workers)
        entries = {key: value for part in build.state_parts() for key, value in part}
        _, parallel_block, parallel_muhash = build.finished()
    # each phase reported every allocation it handled (bonded accounts take the reference path)
    assert sum(done) == 5000 + sum(1 for address in config.allocations if address not in bonds)
    assert entries == state.entries
    assert parallel_block.hash == block.hash
    assert parallel_block.header.state_root == block.header.state_root == parallel_muhash.digest() == muhash.digest()

    # written through the streamed batch, the chain opens with that genesis and verifies
    home = tmp_path / "home"
    with GenesisWorkers(workers=2, parallel_from=1000, part=700) as workers:
        Chain.create(home, config, workers).close()
    with Chain.open(home) as chain:
        assert chain.block(0).hash == block.hash
        assert chain.totals().supply == sum(allocations.values()) + sum(bonds.values())
        chain.verify()


def test_parallel_genesis_reports_the_first_bad_allocation_and_duplicates():
    from ledger.chain.genesis_build import GenesisWorkers, checked_config
    from ledger.errors import InvalidGenesis

    allocations, bonds = _mixed_allocations(3000)
    listed = list(allocations)
    params = Params(chain_id="posctl-scale")
    for bad, message in [({listed[2500]: 0}, r"\[1, 2\^63\)"), ({listed[1700][:-1] + "q": 5}, "allocation")]:
        broken = {**allocations, **bad}
        with GenesisWorkers(workers=2, parallel_from=1000, part=700) as workers:
            with pytest.raises(InvalidGenesis, match=message):
                checked_config(params, broken, bonds, 0, workers)
    twice = {**allocations, listed[1].upper() if listed[1].islower() else listed[1].lower(): 9}
    with GenesisWorkers(workers=2, parallel_from=1000, part=700) as workers:
        with pytest.raises(InvalidGenesis, match="given twice"):
            checked_config(params, twice, bonds, 0, workers)


def test_muhash_in_parts_equals_one_by_one():
    from ledger.crypto.muhash import MuHash3072

    items = [b"entry-%d" % i for i in range(300)]
    one_by_one = MuHash3072()
    for item in items:
        one_by_one.insert(item)
    one_by_one.remove(items[7])
    parts = []
    for start, use_gmp in ((0, True), (100, False), (200, True)):
        part = MuHash3072()
        part.insert_many(items[start:start + 100], use_gmp=use_gmp)
        parts.append(part)
    combined = MuHash3072()
    for part in reversed(parts):  # a product: any order
        combined.combine(part)
    combined.remove(items[7])
    assert combined.digest() == one_by_one.digest()
    assert combined.to_bytes() == one_by_one.to_bytes()


def test_genesis_in_parts_and_the_older_single_record_both_read(tmp_path):
    config = scale_config(3000)  # ~160 KB of configuration: three parts
    home = tmp_path / "home"
    Chain.create(home, config).close()
    store = LevelDBStore.open(home / CHAIN_DIRNAME)
    parts = list(store.iterate(schema.GENESIS_PART_PREFIX))
    assert len(parts) == 3 and all(len(value) <= schema.GENESIS_PART_SIZE for _, value in parts)
    assert store.get(schema.GENESIS_KEY) is None
    # a database made before the parts holds one record: rewrite it so, and it still reads and verifies
    changes: dict[bytes, bytes | None] = {key: None for key, _ in parts}
    changes[schema.GENESIS_KEY] = config.encode()
    store.write(changes)
    with Chain(store, home) as chain:
        assert chain.genesis == config
        chain.verify()


# ---- verify reading ahead, VRF proofs checked on the workers --------------------------------------


def _proposal_chain(home: Path, blocks: int) -> None:
    from tests.ledgerkit import make_chain, propose

    with make_chain(home, {V.address: 1000}, {V.address: 500}) as chain:
        for _ in range(blocks):
            assert all(r.error is None for r in chain.submit_many([propose(chain, V)]))
            assert chain.forge().block is not None


@pytest.fixture
def read_ahead(monkeypatch):
    """Read ahead and check proofs on the workers from a few blocks on, in small batches."""
    from ledger.chain import sigcheck

    monkeypatch.setattr(sigcheck, "PROOF_THRESHOLD", dict.fromkeys(sigcheck.PROOF_THRESHOLD, 4))
    monkeypatch.setattr(sigcheck, "PROOF_BATCH", 3)
    monkeypatch.setattr(sigcheck, "PROOF_AHEAD", 2)


def test_verify_reading_ahead_names_the_first_bad_height(tmp_path, read_ahead):
    import json

    from ledger.errors import VerificationError

    home = tmp_path / "home"
    _proposal_chain(home, 14)
    with Chain.open(home) as chain:
        assert chain.verify().blocks == 15
    store = LevelDBStore.open(home / CHAIN_DIRNAME)
    # block 7's proposal carries block 6's proof: it decodes, and does not verify for height 7
    block6, block7 = (json.loads(store.get(schema.make_block_key(h))) for h in (6, 7))
    original7 = json.dumps(block7, sort_keys=True, separators=(",", ":")).encode()
    block7["txs"][0]["vrf_proof"] = block6["txs"][0]["vrf_proof"]
    store.write({schema.make_block_key(7): json.dumps(block7, sort_keys=True, separators=(",", ":")).encode()})
    store.close()
    with Chain.open(home) as chain:
        with pytest.raises(VerificationError, match=r"height 7") as info:
            chain.verify()
        assert info.value.height == 7
    # a block missing further on (read ahead first) does not hide the earlier bad height
    store = LevelDBStore.open(home / CHAIN_DIRNAME)
    store.write({schema.make_block_key(11): None})
    store.close()
    with Chain.open(home) as chain:
        with pytest.raises(VerificationError) as info:
            chain.verify()
        assert info.value.height == 7
    # with block 7 restored, the missing block is the first bad height
    store = LevelDBStore.open(home / CHAIN_DIRNAME)
    store.write({schema.make_block_key(7): original7})
    store.close()
    with Chain.open(home) as chain:
        with pytest.raises(VerificationError, match="height 11: block is missing") as info:
            chain.verify()
        assert info.value.height == 11


def test_chain_init_from_a_large_genesis_file_equals_the_one_shot_genesis(tmp_path):
    """The real command on a file above the parallel threshold: workers, parts, the streamed
    batch; the same genesis hash and state root as the one-shot reference, one line per bad input."""
    import json
    import os
    import subprocess
    import sys

    from ledger.chain.genesis_build import PARALLEL_THRESHOLD
    from ledger.consensus.genesis import build_genesis

    allocations, bonds = _mixed_allocations(PARALLEL_THRESHOLD + 5000)
    genesis = {"params": {"chain_id": "posctl-scale"}, "timestamp": 1_700_000_000,
               "allocations": allocations, "bonds": bonds}
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(genesis), encoding="utf-8")
    script = Path(sys.executable).parent / "posctl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}

    def init(home: Path, file: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, "--home", str(home), "chain", "init", "--genesis", str(file), "--json"],
                              capture_output=True, text=True, env=env, timeout=300)

    done = init(tmp_path / "home", path)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    block, _, _ = build_genesis(GenesisConfig.from_dict(genesis))
    assert view["genesis_hash"] == block.hash.hex()
    assert len(view["allocations"]) == len(allocations)
    with Chain.open(tmp_path / "home") as chain:
        assert chain.tip.state_root == block.header.state_root

    # a bad allocation deep in the file: one line, exit 1, no chain directory left behind
    listed = list(allocations)
    genesis["allocations"] = {**allocations, listed[-3]: 0}
    path.write_text(json.dumps(genesis), encoding="utf-8")
    bad = init(tmp_path / "bad", path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ") and "[1, 2^63)" in bad.stderr
    assert not (tmp_path / "bad" / "chain").exists()


def children_of(pid: int) -> list[int]:
    """The processes ``pid``'s threads started (its workers), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # a thread that ended meanwhile
            continue
    return found


def test_init_killed_half_way_is_started_over_by_the_next_init(tmp_path):
    """Genesis is written in parts with the tip last: ``kill -9`` once the first part is on disk
    leaves entries without a tip. Commands then say the chain was never initialised completely,
    and the next ``chain init`` — with another genesis — deletes them first: nothing of the first
    file is left, and ``verify`` passes."""
    import itertools
    import json
    import os
    import signal
    import subprocess
    import sys
    import time


    big = {address: 1000 + i for i, address in enumerate(addresses(200_000, b"killed-init"))}
    small = {address: 7 for address in addresses(30, b"second-init")}
    for name, allocations in (("big", big), ("small", small)):
        (tmp_path / f"{name}.json").write_text(json.dumps({
            "params": {"chain_id": "posctl-killed"}, "timestamp": 1_700_000_000,
            "allocations": allocations, "bonds": {V.address: 10**9}}), encoding="utf-8")
    script = Path(sys.executable).parent / "posctl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    home = tmp_path / "home"

    def posctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, "--home", str(home), *args], capture_output=True, text=True,
                              env=env, timeout=300)

    init = subprocess.Popen([*command, "--home", str(home), "chain", "init", "--genesis", str(tmp_path / "big.json")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chain_dir = home / CHAIN_DIRNAME
    logs: set[str] = set()
    deadline = time.monotonic() + 120
    while init.poll() is None and time.monotonic() < deadline:
        names = {f.name for f in chain_dir.glob("*")} if chain_dir.is_dir() else set()
        logs |= {name for name in names if name.endswith(".log")}
        # A part (GENESIS_PART_BYTES) overfills LevelDB's memtable, so the write after it starts
        # a new log and the full one becomes a table: either sign means the first part is in
        # whole (its log's size alone does not: a killed write leaves a torn record, dropped).
        if len(logs) >= 2 or any(name.endswith(".ldb") for name in names):
            workers = children_of(init.pid)
            init.send_signal(signal.SIGKILL)  # the tip comes seconds later
            break
        time.sleep(0.002)
    assert init.wait(timeout=30) == -signal.SIGKILL, "init finished before it could be killed half-way"
    assert workers and wait_gone(workers, 5.0) == []  # its genesis workers (and tracker) end with it
    store = LevelDBStore.open(chain_dir)
    try:  # half a genesis: entries, no tip
        assert store.get(schema.TIP_KEY) is None
        assert sum(1 for _ in itertools.islice(store.iterate(schema.STATE_PREFIX), 1000)) == 1000
    finally:
        store.close()

    status = posctl("chain", "status")
    assert status.returncode == 1 and "never initialised completely" in status.stderr
    assert len(status.stderr.strip().splitlines()) == 1
    again = posctl("chain", "init", "--genesis", str(tmp_path / "small.json"))
    assert again.returncode == 0, again.stderr
    assert posctl("chain", "verify").returncode == 0
    with Chain.open(home) as chain:
        assert chain.genesis.allocations == small
        store = chain.store
        leftovers = [a for a in list(big)[:: len(big) // 50] if store.get(schema.make_state_key(
            ACCOUNT_STATE_PREFIX + a.encode())) is not None]
        assert leftovers == []
        assert chain.account(next(iter(small))).balance == 7


def test_init_refuses_a_database_with_blocks_but_no_tip(tmp_path):
    """That is a damaged chain, not an unfinished genesis: nothing is deleted, and opening it says
    to repair it rather than to run init again."""
    from ledger.errors import ChainExists, DatabaseCorrupted

    home = tmp_path / "home"
    with Chain.create(home, scale_config(3)) as chain:
        store = chain.store
        store.write({schema.make_block_key(1): b"{}", schema.TIP_KEY: None})
        kept = sum(1 for _ in store.iterate(b""))
    with pytest.raises(ChainExists, match="blocks but no tip"):
        Chain.create(home, scale_config(5))
    with pytest.raises(DatabaseCorrupted, match="blocks but no tip record: it is damaged: run `posctl chain repair`"):
        Chain.open(home)
    store = LevelDBStore.open(home / CHAIN_DIRNAME)
    try:
        assert sum(1 for _ in store.iterate(b"")) == kept
    finally:
        store.close()
