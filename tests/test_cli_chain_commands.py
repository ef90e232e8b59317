"""``posctl chain account|history|submit|mempool``, hash prefixes, ``verify --last`` and the
address index behind ``history``: through CliRunner, through real ``posctl`` processes, directly
and through a running node (the same output both ways), on real LevelDB in ``tmp_path``.

Damage is made the way a disk or a person would make it: keys deleted, added or rewritten in the
LevelDB database itself, between commands.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result

from cli.main import posctl as posctl_group
from cli.node_backend import NodeBackend
from ledger.chain.facade import Chain
from ledger.consensus.blocks import Block
from ledger.consensus.transactions import Transaction, sign_transaction
from ledger.errors import AddressIndexMissing, EncodingError
from ledger.storage import chaindb, schema
from ledger.storage.store import LevelDBStore
from tests import ledgerkit
from tests.ledgerkit import Key, make_key, make_proposal
from tests.test_node import NodeProcess, clean_env, make_home, posctl, proposal, request, signed

CHAIN_ID = "posctl-cmdtest"
HISTORY_KEYS = {"tx_id", "height", "index", "kind", "direction", "counterparty", "amount", "status"}
"""What the explorer reads from ``GET /accounts/{address}/history``: exactly these keys."""


# ---- helpers -----------------------------------------------------------------------------------


def make_tx(key: Key, nonce: int, kind: str, **fields: Any) -> Transaction:
    return ledgerkit.make_tx(key, nonce, kind, chain_id=CHAIN_ID, **fields)


def run(home: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(posctl_group, ["--home", str(home), *args], input=stdin)


def ok(home: Path, *args: str) -> Result:
    result = run(home, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def as_json(home: Path, *args: str) -> Any:
    return json.loads(ok(home, *args, "--json").stdout)


def error_line(result: Result | subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one ``error: …`` line of a refused command: nothing on stdout, no traceback."""
    status = result.exit_code if isinstance(result, Result) else result.returncode
    assert status == code, (status, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.stdout == ""
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[-1]


def submit(home: Path, *txs: Transaction) -> list[str]:
    with Chain.open(home) as chain:
        return [chain.submit(tx).hex() for tx in txs]


def next_proposal(home: Path, key: Key, nonce: int, bpm: int = 70) -> Transaction:
    with Chain.open(home) as chain:
        height, seed = chain.height + 1, chain.next_seed
    return make_proposal(key, nonce, height, seed, bpm, chain_id=CHAIN_ID)


def forge(home: Path) -> dict[str, Any]:
    view = as_json(home, "chain", "forge")
    assert view["forged"] is True, view
    return view


def snapshot(home: Path) -> dict[bytes, bytes]:
    """Every key of the database: "nothing changed" is compared on this."""
    store = LevelDBStore.open(home / "chain")
    try:
        return dict(store.iterate(b""))
    finally:
        store.close()


def write_raw(home: Path, changes: dict[bytes, bytes | None]) -> None:
    store = LevelDBStore.open(home / "chain")
    try:
        store.write(changes)
    finally:
        store.close()


@pytest.fixture
def keys() -> list[Key]:
    return [make_key(f"cli-cmd-{i}") for i in range(4)]


@pytest.fixture
def home(tmp_path: Path, keys: list[Key]) -> Path:
    """A chain: a (validator, 1000 + 300 bonded), b (1000), c (500); d is never funded."""
    home = tmp_path / "home"
    a, b, c, _ = keys
    ok(home, "chain", "init", "--chain-id", CHAIN_ID, "--alloc", f"{a.address}=1000", "--alloc", f"{b.address}=1000",
       "--alloc", f"{c.address}=500", "--bond", f"{a.address}=300", "--param", "unbonding_blocks=2")
    return home


@pytest.fixture
def busy(home: Path, keys: list[Key]) -> Path:
    """Two blocks: block 1 has a→b 5, b→c 7, c→c 1 (to itself), c stakes 20; block 2 has b→c 9
    and c unstakes 5; then c→a 2, a→c 4 and c→b 3 wait in the mempool, in that order."""
    a, b, c, _ = keys
    submit(home, next_proposal(home, a, 0), make_tx(a, 1, "transfer", to=b.address, amount=5),
           make_tx(b, 0, "transfer", to=c.address, amount=7), make_tx(c, 0, "transfer", to=c.address, amount=1),
           make_tx(c, 1, "stake", amount=20))
    forge(home)
    submit(home, next_proposal(home, a, 2), make_tx(b, 1, "transfer", to=c.address, amount=9),
           make_tx(c, 2, "unstake", amount=5))
    forge(home)
    submit(home, make_tx(c, 3, "transfer", to=a.address, amount=2), make_tx(a, 3, "transfer", to=c.address, amount=4),
           make_tx(c, 4, "transfer", to=b.address, amount=3))
    return home


def expected_history(home: Path, address: str) -> list[dict[str, Any]]:
    """What history must say, worked out from the blocks themselves (not from the index)."""
    rows: list[dict[str, Any]] = []
    with Chain.open(home) as chain:
        genesis = chain.genesis
        total = genesis.allocations.get(address, 0) + genesis.bonds.get(address, 0)
        if total:
            rows.append({"tx_id": None, "height": 0, "index": 0, "kind": "genesis", "direction": "received",
                         "counterparty": None, "amount": total, "status": "included"})
        for height in range(1, chain.height + 1):
            for index, tx in enumerate(chain.block(height).txs):
                to = getattr(tx, "to", None)
                if tx.sender != address and to != address:
                    continue
                sent = tx.sender == address
                rows.append({
                    "tx_id": tx.id_hex, "height": height, "index": index, "kind": tx.kind,
                    "direction": "sent" if sent else "received",
                    "counterparty": (to if sent else tx.sender) if tx.kind == "transfer" else None,
                    "amount": getattr(tx, "amount", None), "status": "included",
                })
        pending = [(seq, tx) for seq, tx in chain.mempool.pending()
                   if address in (tx.sender, getattr(tx, "to", None))]
    rows.reverse()
    pending_rows = []
    for _, tx in sorted(pending, key=lambda item: -item[0]):
        sent = tx.sender == address
        to = getattr(tx, "to", None)
        pending_rows.append({
            "tx_id": tx.id_hex, "height": None, "index": None, "kind": tx.kind,
            "direction": "sent" if sent else "received", "counterparty": to if sent else tx.sender,
            "amount": getattr(tx, "amount", None), "status": "pending",
        })
    return pending_rows + rows


# ---- the address index and history -------------------------------------------------------------


def test_history_lists_what_the_blocks_hold_newest_first(busy: Path, keys: list[Key]) -> None:
    a, b, c, _ = keys
    for key in (a, b, c):
        expected = expected_history(busy, key.address)
        assert as_json(busy, "chain", "history", key.address, "--limit", "100") == expected
    rows = as_json(busy, "chain", "history", c.address)
    assert [(r["status"], r["kind"], r["direction"], r["amount"]) for r in rows] == [
        ("pending", "transfer", "sent", 3), ("pending", "transfer", "received", 4), ("pending", "transfer", "sent", 2),
        ("included", "unstake", "sent", 5), ("included", "transfer", "received", 9),
        ("included", "stake", "sent", 20), ("included", "transfer", "sent", 1),
        ("included", "transfer", "received", 7), ("included", "genesis", "received", 500),
    ]
    assert rows[6]["counterparty"] == c.address  # a transfer to oneself: one line, sent
    assert rows[7]["counterparty"] == b.address and rows[4]["counterparty"] == b.address
    assert rows[1]["counterparty"] == a.address
    assert all(set(row) == HISTORY_KEYS for row in rows)


def test_history_limit_takes_the_newest(busy: Path, keys: list[Key]) -> None:
    c = keys[2]
    everything = as_json(busy, "chain", "history", c.address, "--limit", "100")
    for limit in (1, 2, 3, 5):
        assert as_json(busy, "chain", "history", c.address, "--limit", str(limit)) == everything[:limit]
    text = ok(busy, "chain", "history", c.address, "--limit", "3").stdout
    lines = text.splitlines()
    assert lines[0].startswith(f"History of {c.address}") and "(3 shown)" in lines[0]
    assert lines[2].split()[:4] == ["pending", "transfer", "sent", "3"]
    assert lines[3].split()[:4] == ["pending", "transfer", "received", "4"]
    assert lines[4].split()[:4] == ["pending", "transfer", "sent", "2"]
    assert everything[2]["tx_id"] in lines[4]


def test_history_pages_by_following_each_full_page_hint(busy: Path, keys: list[Key]) -> None:
    """A full page ends with the command for the next; following them lists every line once, in
    order, including a page that starts in the middle of a block (block 2 holds two of c's txs)."""
    c = keys[2]
    everything = as_json(busy, "chain", "history", c.address, "--limit", "100")
    assert [r["height"] for r in everything[3:5]] == [2, 2]  # the first page ends between these
    seen: list[dict[str, Any]] = []
    args = ["chain", "history", c.address, "--limit", "4"]
    for _ in range(10):
        text = ok(busy, *args).stdout
        seen += as_json(busy, *args)
        hint = [line for line in text.splitlines() if line.startswith("Older: ")]
        if not hint:
            break
        command = hint[0].removeprefix("Older: posctl ").split()
        assert command[:3] == ["chain", "history", c.address] and "--before" in command
        args = command
    assert seen == everything
    assert as_json(busy, "chain", "history", c.address, "--before", "2") == everything[5:]  # below height 2
    assert as_json(busy, "chain", "history", c.address, "--before", "1:0", "--limit", "1") == everything[-1:]
    assert as_json(busy, "chain", "history", c.address, "--before", "0") == []
    for bad in ("x", "1:", ":1", "-1", "1:2:3", "99999999999999999999"):
        assert "history position" in error_line(run(busy, "chain", "history", c.address, "--before", bad), 2)


def test_a_page_filled_by_pending_txs_leads_to_the_included_ones(busy: Path, keys: list[Key]) -> None:
    """c has three pending txs: a page of two is all pending, and it ended with no hint at all (a
    running validator always has a proposal pending, so its history could not be paged past
    it). It now names where the included txs start: below the next block."""
    c = keys[2]
    everything = as_json(busy, "chain", "history", c.address, "--limit", "100")
    lines = ok(busy, "chain", "history", c.address, "--limit", "2").stdout.splitlines()
    assert lines[-1] == f"Included: posctl chain history {c.address} --before 3 --limit 2"  # the tip is block 2
    seen = as_json(busy, "chain", "history", c.address, "--limit", "2")
    args = lines[-1].removeprefix("Included: posctl ").split()
    for _ in range(10):
        seen += as_json(busy, *args)
        hint = [line for line in ok(busy, *args).stdout.splitlines() if line.startswith("Older: ")]
        if not hint:
            break
        args = hint[0].removeprefix("Older: posctl ").split()
    assert [row["status"] for row in everything[:4]] == ["pending"] * 3 + ["included"]
    assert seen == everything[:2] + everything[3:]  # the first page's two pending, then every included one
    assert ok(busy, "chain", "history", c.address, "--limit", "3").stdout.splitlines()[-1].startswith("Included: ")
    assert ok(busy, "chain", "history", c.address, "--limit", "4").stdout.splitlines()[-1].startswith("Older: ")


def test_history_of_an_address_nobody_used_is_empty(busy: Path, keys: list[Key]) -> None:
    d = keys[3]
    assert as_json(busy, "chain", "history", d.address) == []
    assert ok(busy, "chain", "history", d.address).stdout == f"No transactions sent or received by {d.address}.\n"


def test_index_entries_are_written_in_the_block_batch(busy: Path, keys: list[Key]) -> None:
    """One entry per (address, height, tx index): the sender, and a transfer's recipient."""
    a, b, c, _ = keys
    data = snapshot(busy)
    entries = {schema.split_address_tx_key(k) for k in data if k.startswith(schema.ADDRESS_TX_PREFIX)}
    with Chain.open(busy) as chain:
        expected = {(addr, 0, 0) for addr in (a.address, b.address, c.address)}
        for height in (1, 2):
            for index, tx in enumerate(chain.block(height).txs):
                expected.add((tx.sender, height, index))
                if tx.kind == "transfer":
                    expected.add((tx.to, height, index))  # type: ignore[attr-defined]
    assert entries == expected
    assert data[schema.ADDRESS_INDEX_KEY] == b"1"


def test_pending_transfers_are_indexed_by_recipient_until_they_leave(busy: Path, keys: list[Key]) -> None:
    a, b, c, _ = keys
    recipients = {k for k in snapshot(busy) if k.startswith(schema.MEMPOOL_RECIPIENT_PREFIX)}
    assert {k[len(schema.MEMPOOL_RECIPIENT_PREFIX):].split(b":")[0].decode() for k in recipients} == {
        a.address, b.address, c.address}
    forge_with(busy, a, 4)
    assert not any(k.startswith(schema.MEMPOOL_RECIPIENT_PREFIX) for k in snapshot(busy))
    assert [r["status"] for r in as_json(busy, "chain", "history", c.address)][:3] == ["included"] * 3


def _index_key(home: Path, address: str, height: int) -> bytes:
    prefix = schema.make_address_tx_prefix(address) + schema.encode_u64(height)
    return next(k for k in snapshot(home) if k.startswith(prefix))


@pytest.mark.parametrize("damage", ["deleted", "extra", "rewritten", "extra-future"])
def test_verify_checks_the_index_exactly(busy: Path, keys: list[Key], damage: str) -> None:
    c = keys[2]
    assert "chain verified" in ok(busy, "chain", "verify").stdout
    key = _index_key(busy, c.address, 1)
    if damage == "deleted":
        write_raw(busy, {key: None})
        fragment = f"height 1: address index entry of {c.address}"
    elif damage == "extra":
        write_raw(busy, {schema.make_address_tx_key(keys[3].address, 1, 2): snapshot(busy)[key]})
        fragment = f"address index entry of {keys[3].address} at height 1 (tx 2) belongs to no transaction"
    elif damage == "extra-future":
        write_raw(busy, {schema.make_address_tx_key(c.address, 99, 0): snapshot(busy)[key]})
        fragment = f"address index entry of {c.address} at height 99 (tx 0) belongs to no transaction"
    else:
        stored = chaindb.decode_address_entry(snapshot(busy)[key])
        write_raw(busy, {key: chaindb.encode_address_entry(dataclasses.replace(stored, amount=(stored.amount or 0) + 1000))})
        fragment = f"height 1: address index entry of {c.address}"
    line = error_line(run(busy, "chain", "verify"))
    assert fragment in line, line


def test_a_damaged_index_entry_is_one_line(busy: Path, keys: list[Key]) -> None:
    c = keys[2]
    key = _index_key(busy, c.address, 2)
    write_raw(busy, {key: snapshot(busy)[key][:-3]})
    line = error_line(run(busy, "chain", "history", c.address, "--limit", "100"))
    assert f"address index entry of {c.address} at height 2 is damaged" in line and "chain verify" in line
    assert "at height 2: address index entry" in error_line(run(busy, "chain", "verify"))


def test_index_entries_read_back_as_written() -> None:
    a, b = make_key("entry-a").address, make_key("entry-b").address
    for entry in (chaindb.AddressEntry("transfer", "received", bytes(range(32)), a, 2**63 - 1),
                  chaindb.AddressEntry("transfer", "sent", b"\xff" * 32, b, 1),
                  chaindb.AddressEntry("stake", "sent", bytes(32), amount=5),
                  chaindb.AddressEntry("bpm", "sent", bytes(32)),
                  chaindb.AddressEntry("genesis", "received", amount=10)):
        assert chaindb.decode_address_entry(chaindb.encode_address_entry(entry)) == entry
    raw = chaindb.encode_address_entry(chaindb.AddressEntry("stake", "sent", bytes(32), amount=5))
    for damaged in (raw[:-1], raw + b"x", b"", b"\x40\x00", raw[:2]):
        with pytest.raises(EncodingError):
            chaindb.decode_address_entry(damaged)


def test_verify_last_checks_the_index_of_its_blocks(busy: Path, keys: list[Key]) -> None:
    c = keys[2]
    assert "last 1 blocks verified: heights 2..2" in ok(busy, "chain", "verify", "--last", "1").stdout
    write_raw(busy, {_index_key(busy, c.address, 2): None})
    assert "address index entry" in error_line(run(busy, "chain", "verify", "--last", "1"))
    write_raw(busy, {_index_key(busy, c.address, 0): None})  # genesis: only a check down to 0 sees it
    assert "at height 0: address index entry" in error_line(run(busy, "chain", "verify", "--last", "3"))


def test_a_chain_without_the_index_says_how_to_get_one(busy: Path, keys: list[Key], tmp_path: Path) -> None:
    """A chain made before the index existed: no marker, no entries. History refuses with the
    remedy, verify still passes and says so, and the remedy (export, import) really works."""
    c = keys[2]
    write_raw(busy, {k: None for k in snapshot(busy) if k.startswith(schema.ADDRESS_TX_PREFIX)}
              | {schema.ADDRESS_INDEX_KEY: None})
    before = snapshot(busy)
    line = error_line(run(busy, "chain", "history", c.address))
    assert "before posctl kept an address index" in line and "chain export" in line and "chain import" in line
    assert snapshot(busy) == before
    with Chain.open(busy) as chain, pytest.raises(AddressIndexMissing):
        chain.history(c.address)
    assert "no address index" in ok(busy, "chain", "verify").stdout
    assert as_json(busy, "chain", "verify")["address_index"] is False
    export = tmp_path / "chain.export"
    ok(busy, "chain", "export", str(export))
    rebuilt = tmp_path / "rebuilt"
    ok(rebuilt, "chain", "import", str(export))
    rows = as_json(rebuilt, "chain", "history", c.address, "--limit", "100")
    assert [r for r in expected_history(busy, c.address) if r["status"] == "included"] == rows
    assert as_json(rebuilt, "chain", "verify")["address_index"] is True


# ---- account ------------------------------------------------------------------------------------


def test_account_of_any_address(busy: Path, keys: list[Key]) -> None:
    a, b, c, d = keys
    forge_with(busy, a, 4)  # c's unstake at height 2 releases at 4: still unbonding at 3
    view = as_json(busy, "chain", "account", c.address)
    assert view["address"] == c.address
    assert view["bonded"] == 15 and view["unbonding"] == [{"amount": 5, "release_height": 4}]
    assert view["balance"] == 500 + 7 + 1 - 1 + 9 - 20 - 2 + 4 - 3
    assert view["nonce"] == 5 and view["pending"] == 0
    text = ok(busy, "chain", "account", c.address).stdout
    assert text.startswith("Account\n")
    assert "bonded      15 staked" in text
    assert "5  released at height 4 (in 1 blocks)" in text
    assert "nonce       5 txs included" in text
    empty = as_json(busy, "chain", "account", d.address)
    assert (empty["balance"], empty["bonded"], empty["nonce"], empty["unbonding"]) == (0, 0, 0, [])


def forge_with(home: Path, validator: Key, nonce: int) -> None:
    submit(home, next_proposal(home, validator, nonce))
    forge(home)


def test_account_by_wallet_name_and_pending_count(home: Path, keys: list[Key]) -> None:
    from wallet.keystore import Keystore
    from wallet.wallet_file import ScryptParams

    wallet, _ = Keystore(home / "wallets").create("carol", "pw", kdf=ScryptParams.light(), words=12)
    address = wallet.address(0, 0)
    submit(home, make_tx(keys[1], 0, "transfer", to=address, amount=40))
    forge_with(home, keys[0], 0)
    submit(home, make_tx(keys[1], 1, "transfer", to=address, amount=1))
    view = as_json(home, "chain", "account", "carol")
    assert view["address"] == address and view["balance"] == 40
    assert as_json(home, "chain", "account", keys[1].address)["pending"] == 1
    assert ok(home, "chain", "account", "carol").stdout.startswith("Wallet carol\n")
    first = as_json(home, "chain", "history", "carol")[0]
    assert (first["status"], first["direction"], first["counterparty"], first["amount"]) == (
        "pending", "received", keys[1].address, 1)


@pytest.mark.parametrize("command", ["account", "history"])
def test_unknown_accounts_are_one_line_and_change_nothing(busy: Path, keys: list[Key], command: str) -> None:
    before = snapshot(busy)
    a = keys[0].address
    typo = a[:-1] + ("q" if a[-1] != "q" else "p")
    assert "neither a pos1… address nor a wallet" in error_line(run(busy, "chain", command, "nobody"))
    assert "checksum" in error_line(run(busy, "chain", command, typo)).lower()
    assert "pos1x" in error_line(run(busy, "chain", command, "pos1x"))
    assert snapshot(busy) == before


def test_history_limit_is_checked(busy: Path, keys: list[Key]) -> None:
    for bad in ("0", "101", "x"):
        assert "--limit" in error_line(run(busy, "chain", "history", keys[0].address, "--limit", bad), 2)


# ---- mempool ------------------------------------------------------------------------------------


def test_mempool_lists_pending_txs_in_arrival_order(busy: Path, keys: list[Key]) -> None:
    c = keys[2]
    view = as_json(busy, "chain", "mempool")
    with Chain.open(busy) as chain:
        pending = [tx for _, tx in chain.mempool.pending()]
    assert view["count"] == 3 and view["bytes"] == sum(len(tx.encode()) for tx in pending)
    assert view["txs"] == [{"id": tx.id_hex, "kind": tx.kind, "sender": tx.sender, "nonce": tx.nonce,
                            "size": len(tx.encode())} for tx in pending]
    assert [(tx["sender"], tx["nonce"]) for tx in view["txs"]] == [(c.address, 3), (keys[0].address, 3), (c.address, 4)]
    assert as_json(busy, "chain", "mempool", "--limit", "1")["txs"] == view["txs"][:1]
    text = ok(busy, "chain", "mempool", "--limit", "1").stdout.splitlines()
    assert text[0] == f"Mempool: 3 pending tx(s), {view['bytes']} bytes (the first 1 listed; --limit N for more)"
    assert text[2].split() == [pending[0].id_hex, "transfer", c.address, "3", str(len(pending[0].encode()))]


def test_empty_mempool(home: Path) -> None:
    assert as_json(home, "chain", "mempool") == {"count": 0, "bytes": 0, "txs": []}
    assert ok(home, "chain", "mempool").stdout == "Mempool: 0 pending tx(s), 0 bytes\n"


# ---- submit -------------------------------------------------------------------------------------


def test_submit_broadcasts_files_and_reports_each(home: Path, keys: list[Key], tmp_path: Path) -> None:
    a, b, c, _ = keys
    good = [make_tx(b, 0, "transfer", to=c.address, amount=3), make_tx(b, 1, "stake", amount=10)]
    files = []
    for i, tx in enumerate(good):
        files.append(tmp_path / f"tx{i}.json")
        files[-1].write_bytes(tx.encode())  # as `wallet … --out FILE` writes it: no newline
    result = ok(home, "chain", "submit", *map(str, files))
    assert result.stdout == "".join(f"{f}: {tx.id_hex}\n" for f, tx in zip(files, good))
    assert result.stderr == ""
    assert [tx["id"] for tx in as_json(home, "chain", "mempool")["txs"]] == [tx.id_hex for tx in good]
    assert json.loads(ok(home, "chain", "tx", good[1].id_hex, "--json").stdout)["status"] == "pending"


def test_submit_json(home: Path, keys: list[Key], tmp_path: Path) -> None:
    tx = make_tx(keys[1], 0, "transfer", to=keys[2].address, amount=3)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_bytes(tx.encode())
    bad.write_text("{}")
    result = run(home, "chain", "submit", str(good), str(bad), "--json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert rows[0] == {"file": str(good), "tx_id": tx.id_hex}
    assert set(rows[1]) == {"file", "error"} and rows[1]["file"] == str(bad)
    assert result.stderr == f"error: {rows[1]['error']}\n"


def test_submit_reads_stdin(home: Path, keys: list[Key]) -> None:
    tx = make_tx(keys[1], 0, "transfer", to=keys[2].address, amount=3)
    result = run(home, "chain", "submit", "-", stdin=tx.encode().decode() + "\n")
    assert result.exit_code == 0 and result.stdout == f"-: {tx.id_hex}\n"


def test_submit_bad_files_one_line_each_exit_1(home: Path, keys: list[Key], tmp_path: Path) -> None:
    b, c = keys[1], keys[2]
    good = tmp_path / "good.json"
    tx = make_tx(b, 0, "transfer", to=c.address, amount=3)
    good.write_bytes(tx.encode())
    not_json = tmp_path / "two\nlines.txt"  # a file name's line break must not make a second line
    not_json.write_text("hello\n")
    unsigned = tmp_path / "unsigned.json"
    body = dataclasses.replace(tx, signature=b"").to_dict()
    unsigned.write_text(json.dumps(body, sort_keys=True, separators=(",", ":")))
    stale = tmp_path / "stale.json"
    stale.write_bytes(make_tx(c, 5, "transfer", to=b.address, amount=1).encode())  # nonce gap
    missing = tmp_path / "missing.json"
    before = snapshot(home)
    result = run(home, "chain", "submit", str(not_json), str(unsigned), str(stale), str(missing), str(good))
    assert result.exit_code == 1
    assert result.stdout == f"{good}: {tx.id_hex}\n"  # the good one still went through
    lines = result.stderr.splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines), result.stderr
    assert lines[0].startswith(f"error: {str(not_json).replace(chr(10), ' ')} is not a signed transaction file")
    assert lines[1].startswith(f"error: {unsigned} is not a signed transaction file") and "signature" in lines[1]
    assert lines[2].startswith(f"error: {stale}: ") and "nonce" in lines[2]
    assert lines[3].startswith(f"error: cannot read {missing}")
    assert "Traceback" not in result.stderr
    after = snapshot(home)
    assert {k for k in set(after) ^ set(before)} <= {k for k in after if k.startswith(schema.PREFIX + b"mempool")}
    assert as_json(home, "chain", "mempool")["count"] == 1
    # only bad files: nothing changes at all
    before = snapshot(home)
    assert "not a signed transaction" in error_line(run(home, "chain", "submit", str(not_json)))
    assert snapshot(home) == before


def test_submit_without_a_chain_is_one_line(tmp_path: Path, keys: list[Key]) -> None:
    path = tmp_path / "tx.json"
    path.write_bytes(make_tx(keys[0], 0, "stake", amount=1).encode())
    assert "chain init" in error_line(run(tmp_path / "nothing", "chain", "submit", str(path)))
    assert not (tmp_path / "nothing" / "chain").exists()


# ---- show: hash prefixes, -1, the draw in JSON --------------------------------------------------


def hash_prefix(block_hash: str, at_least: int = 8) -> str:
    """The shortest prefix of ``block_hash`` of ``at_least`` digits that is not all decimal digits:
    all-digit text up to 19 digits is a height, by design."""
    length = at_least
    while block_hash[:length].isdigit():
        length += 1
    return block_hash[:length]


def test_show_accepts_a_unique_hash_prefix(busy: Path) -> None:
    block = as_json(busy, "chain", "show", "2")
    short = hash_prefix(block["hash"])
    for prefix in (short, hash_prefix(block["hash"], len(short) + 1), short.upper(), block["hash"][:63]):
        assert as_json(busy, "chain", "show", prefix) == block
    assert ok(busy, "chain", "show", short).stdout == ok(busy, "chain", "show", "2").stdout


def test_show_unknown_short_and_ambiguous_prefixes(busy: Path) -> None:
    hashes = [as_json(busy, "chain", "show", str(h))["hash"] for h in range(3)]
    unknown = next(p for p in (c * 8 for c in "abcdef") if not any(h.startswith(p) for h in hashes))
    before = snapshot(busy)
    assert f"no block hash starts with {unknown}" in error_line(run(busy, "chain", "show", unknown))
    seven = hashes[1][:7]
    expected = "no block at height" if seven.isdigit() else "unique prefix of 8 or more"
    assert expected in error_line(run(busy, "chain", "show", seven))
    assert snapshot(busy) == before
    # Two block hashes sharing 8 hex digits would take ~2^32 blocks to find; a second hash-index
    # entry that differs from block 1's hash in the last byte stands in for such a block.
    real = bytes.fromhex(hashes[1])
    twin = real[:-1] + bytes([real[-1] ^ 1])
    write_raw(busy, {schema.make_block_hash_key(twin): schema.encode_u64(0)})
    before = snapshot(busy)
    for prefix in (hash_prefix(hashes[1]), hashes[1][:63]):
        line = error_line(run(busy, "chain", "show", prefix))
        assert f"block hash prefix {prefix} is ambiguous: it matches" in line and "give more digits" in line
        assert hashes[1][:16] in line and twin.hex()[:16] in line
    assert snapshot(busy) == before
    assert as_json(busy, "chain", "show", hashes[1])["height"] == 1  # the whole hash is never ambiguous


def test_show_negative_height_is_posctls_own_error(busy: Path) -> None:
    line = error_line(run(busy, "chain", "show", "-1"))
    assert line == "error: no block at height -1: heights start at 0; for the newest blocks use --last N"
    assert "No such option" in error_line(run(busy, "chain", "show", "--nope"), 2)
    assert "No such option" not in line


def test_show_json_has_the_draw_that_the_text_shows(busy: Path) -> None:
    view = as_json(busy, "chain", "show", "2")
    trace = view["lottery"]["trace"]
    assert trace and all({"r", "range", "address", "bonded", "remaining", "proposed"} <= set(e) for e in trace)
    text = ok(busy, "chain", "show", "2").stdout
    for entry in trace:
        assert str(entry["r"]) in text and f"[{entry['range'][0]}, {entry['range'][1]})" in text
        assert entry["range"][0] <= entry["r"] < entry["range"][1]


# ---- verify --last ------------------------------------------------------------------------------


def _rewrite_block(home: Path, height: int, change: Any) -> None:
    raw = snapshot(home)[schema.make_block_key(height)]
    write_raw(home, {schema.make_block_key(height): change(Block.decode(raw)).encode()})


def _forge_signature(key: Key, tx: Transaction) -> Transaction:
    """The same tx with a valid signature over *another* message: the id (and the tx root) stay,
    only a signature check can tell."""
    other = sign_transaction(dataclasses.replace(tx, nonce=tx.nonce + 1000), key.private)
    return dataclasses.replace(tx, signature=other.signature)


def test_verify_last_checks_only_the_newest_blocks(busy: Path, keys: list[Key]) -> None:
    a, b = keys[0], keys[1]
    forge_with(busy, a, 4)
    view = as_json(busy, "chain", "verify", "--last", "2")
    assert (view["ok"], view["height"], view["blocks"], view["mode"]) == (True, 3, 2, "last")
    assert as_json(busy, "chain", "verify", "--last", "99")["blocks"] == 4
    # a forged signature in block 1: --last 2 does not look there, the full replay does
    _rewrite_block(busy, 1, lambda block: dataclasses.replace(
        block, txs=tuple(_forge_signature(b, tx) if tx.sender == b.address else tx for tx in block.txs)))
    assert "last 2 blocks verified: heights 2..3" in ok(busy, "chain", "verify", "--last", "2").stdout
    assert "at height 1" in error_line(run(busy, "chain", "verify", "--last", "3"))
    assert "at height 1" in error_line(run(busy, "chain", "verify"))


def test_verify_last_catches_a_forged_proposal_signature(busy: Path, keys: list[Key]) -> None:
    a = keys[0]
    _rewrite_block(busy, 2, lambda block: dataclasses.replace(
        block, txs=tuple(_forge_signature(a, tx) if tx.kind == "bpm" else tx for tx in block.txs)))
    line = error_line(run(busy, "chain", "verify", "--last", "1"))
    assert "at height 2" in line and "signature" in line


def test_verify_last_catches_an_edited_header(busy: Path) -> None:
    _rewrite_block(busy, 2, lambda block: dataclasses.replace(
        block, header=dataclasses.replace(block.header, timestamp=block.header.timestamp + 1)))
    assert "at height 2" in error_line(run(busy, "chain", "verify", "--last", "1"))


def test_verify_last_usage(busy: Path) -> None:
    assert "--last" in error_line(run(busy, "chain", "verify", "--last", "0"), 2)


# ---- through a running node: the same output, the API routes -------------------------------------


@pytest.fixture
def node_on() -> Iterator[Any]:
    started: list[NodeProcess] = []

    def start(home: Path) -> NodeProcess:
        node = NodeProcess(home, None, 3600)
        started.append(node)
        return node.wait_ready()

    yield start
    for node in started:
        node.kill()


def _node_chain(tmp_path: Path, node_on: Any) -> tuple[Any, NodeProcess, NodeBackend]:
    setup = make_home(tmp_path)
    node = node_on(setup.home)
    backend = NodeBackend(node.url, home=setup.home)
    alice, bob, carol = setup.users
    backend.submit(proposal(node.port, setup.validator, 0, 75))
    backend.submit(signed(alice, 0, "transfer", to=bob.address, amount=5))
    backend.submit(signed(bob, 0, "transfer", to=carol.address, amount=2))
    assert backend.forge()["forged"] is True
    backend.submit(signed(alice, 1, "stake", amount=50))
    backend.submit(signed(alice, 2, "transfer", to=carol.address, amount=1))
    return setup, node, backend


def test_same_output_directly_and_through_the_node(tmp_path: Path, node_on: Any) -> None:
    setup, node, backend = _node_chain(tmp_path, node_on)
    alice, bob, carol = setup.users
    block = backend.block("1")
    not_a_tx = tmp_path / "notes.txt"
    not_a_tx.write_text("not a tx")
    duplicate = tmp_path / "dup.json"
    duplicate.write_bytes(signed(alice, 1, "stake", amount=50).encode())
    unknown = next(p for p in (c * 8 for c in "abcdef") if not block["hash"].startswith(p))
    commands = [
        ("chain", "account", alice.address), ("chain", "account", alice.address, "--json"),
        ("chain", "account", carol.address),
        ("chain", "history", alice.address), ("chain", "history", alice.address, "--json"),
        ("chain", "history", bob.address, "--limit", "2", "--json"), ("chain", "history", carol.address),
        ("chain", "mempool"), ("chain", "mempool", "--json"), ("chain", "mempool", "--limit", "1"),
        ("chain", "show", hash_prefix(block["hash"])), ("chain", "show", hash_prefix(block["hash"], 10), "--json"),
    ]
    refusals = [
        ("chain", "account", "nobody"), ("chain", "history", "pos1qqqqqq"), ("chain", "show", unknown),
        ("chain", "show", "-1"), ("chain", "submit", str(not_a_tx)), ("chain", "submit", str(duplicate)),
    ]
    via_node = [posctl(setup.home, *cmd) for cmd in commands + refusals]
    assert node.stop() == 0
    via_direct = [posctl(setup.home, *cmd) for cmd in commands + refusals]
    for cmd, a, b in zip(commands + refusals, via_node, via_direct):
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), cmd
    for cmd, result in zip(commands, via_node):
        assert result.returncode == 0 and result.stderr == "", (cmd, result.stderr)
    for cmd, result in zip(refusals, via_node[len(commands):]):
        error_line(result)
    history = json.loads(via_node[4].stdout)
    assert [row["status"] for row in history[:2]] == ["pending", "pending"] and history[-1]["kind"] == "genesis"
    assert json.loads(via_node[8].stdout)["count"] == 2
    assert "already pending" in via_node[-1].stderr


def test_submit_through_the_node_then_directly(tmp_path: Path, node_on: Any) -> None:
    setup, node, _ = _node_chain(tmp_path, node_on)
    bob, carol = setup.users[1], setup.users[2]
    first, second = (signed(bob, 1, "transfer", to=carol.address, amount=1),
                     signed(bob, 2, "transfer", to=carol.address, amount=1))
    paths = [tmp_path / "first.json", tmp_path / "second.json"]
    for path, tx in zip(paths, (first, second)):
        path.write_bytes(tx.encode())
    through = posctl(setup.home, "chain", "submit", str(paths[0]))
    assert (through.returncode, through.stdout, through.stderr) == (0, f"{paths[0]}: {first.id_hex}\n", "")
    assert request(node.port, "GET", f"/txs/{first.id_hex}")[1]["status"] == "pending"
    assert node.stop() == 0
    direct = posctl(setup.home, "chain", "submit", str(paths[1]))
    assert (direct.returncode, direct.stdout) == (0, f"{paths[1]}: {second.id_hex}\n")
    with Chain.open(setup.home) as chain:
        assert chain.tx(first.tx_id).status == chain.tx(second.tx_id).status == "pending"


def test_api_history_and_mempool_routes(tmp_path: Path, node_on: Any) -> None:
    setup, node, _ = _node_chain(tmp_path, node_on)
    alice = setup.users[0]
    status, rows = request(node.port, "GET", f"/accounts/{alice.address}/history?limit=3")
    assert status == 200 and len(rows) == 3 and all(set(row) == HISTORY_KEYS for row in rows)
    assert [r["status"] for r in rows] == ["pending", "pending", "included"]
    status, everything = request(node.port, "GET", f"/accounts/{alice.address}/history")
    assert status == 200 and everything[:3] == rows and everything[-1]["kind"] == "genesis"
    included = [row for row in everything if row["status"] == "included"]
    last = included[1]
    status, page = request(node.port, "GET", f"/accounts/{alice.address}/history?before={last['height']}:{last['index']}")
    assert status == 200 and page == included[2:]
    for query in ("limit=0", "limit=101", "limit=x", "limit=1&limit=2", "after=3", "before=x", "before=1:",
                  "before=1&before=2", "before=-1"):
        status, body = request(node.port, "GET", f"/accounts/{alice.address}/history?{query}")
        assert status == 400 and body["error"] and body["type"], (query, body)
    status, body = request(node.port, "GET", "/accounts/pos1nope/history")
    assert status == 400 and body["type"] == "InvalidAddress"
    status, pool = request(node.port, "GET", "/mempool?limit=1")
    assert status == 200 and pool["count"] == 2 and len(pool["txs"]) == 1
    assert set(pool["txs"][0]) == {"id", "kind", "sender", "nonce", "size"}
    assert request(node.port, "GET", "/mempool?limit=1001")[0] == 400
    assert request(node.port, "GET", "/")[1]["routes"].count("GET /mempool") == 1
    block = request(node.port, "GET", "/blocks/1")[1]
    assert request(node.port, "GET", f"/blocks/{hash_prefix(block['hash'])}") == (200, block)
    status, body = request(node.port, "GET", "/blocks/abcdefabcdef")
    assert status == 404 and body["type"] == "NotFound" and "no block hash starts with" in body["error"]


# ---- wallet --out -: stdout, and a hint naming the real node ---------------------------------


def _wallet_env(home: Path) -> dict[str, str]:
    env = clean_env()
    env.update({"POSCTL_HOME": str(home), "POSCTL_PASSWORD": "pw", "POSCTL_KDF": "light"})
    return env


def _posctl_env(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])


def test_out_dash_writes_the_tx_to_stdout_and_names_the_node(tmp_path: Path, node_on: Any) -> None:
    home = tmp_path / "w"
    env = _wallet_env(home)
    assert _posctl_env(env, "wallet", "new", "alice", "--words", "12").returncode == 0
    bob = make_key("out-dash-bob").address
    assert _posctl_env(env, "chain", "init", "--chain-id", "out-dash", "--alloc", "alice=1000",
                       "--bond", "alice=500").returncode == 0
    offline = _posctl_env(env, "wallet", "send", "alice", bob, "5", "--out", "-")
    assert offline.returncode == 0, offline.stderr
    tx = Transaction.decode(offline.stdout.strip().encode())
    assert offline.stdout == tx.encode().decode() + "\n" and tx.amount == 5  # type: ignore[attr-defined]
    assert "posctl chain submit -" in offline.stderr and "no node runs on this home" in offline.stderr
    node = node_on(home)
    online = _posctl_env(env, "wallet", "send", "alice", bob, "6", "--out", "-")
    assert online.returncode == 0 and f"curl -s -X POST --data-binary @- {node.url}/txs" in online.stderr
    piped = _posctl_env(env, "chain", "submit", "-", stdin=online.stdout)
    sent = Transaction.decode(online.stdout.strip().encode())
    assert (piped.returncode, piped.stdout) == (0, f"-: {sent.id_hex}\n"), piped.stderr
    assert request(node.port, "GET", f"/txs/{sent.id_hex}")[1]["status"] == "pending"
    saved = tmp_path / "tx.json"
    to_file = _posctl_env(env, "wallet", "send", "alice", bob, "7", "--out", str(saved))
    assert to_file.returncode == 0 and f"posctl chain submit {saved}" in to_file.stdout
    assert f"--data-binary @{saved} {node.url}/txs" in to_file.stdout
    assert os.path.getsize(saved) == len(Transaction.decode(saved.read_bytes()).encode())
