"""Durability, crash safety, tamper detection and the database's own guard rails."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ledger import encoding
from ledger.storage import schema
from ledger.consensus import state
from ledger.chain import views
from ledger.chain.facade import Chain
from ledger.errors import ChainNotInitialized, DatabaseError, DatabaseLocked, VerificationError
from ledger.storage.store import LevelDBStore
from tests.ledgerkit import make_chain, make_key, make_tx, propose

REPO = Path(__file__).resolve().parent.parent
A, B, V = make_key("a"), make_key("b"), make_key("v")


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def build_small_chain(home: Path, blocks: int = 3) -> Chain:
    chain = make_chain(home, {A.address: 1_000, B.address: 1_000}, {V.address: 500})
    for n in range(blocks):
        chain.submit(propose(chain, V, 60 + n, nonce=n))
        chain.submit(make_tx(A, n, "transfer", to=B.address, amount=1 + n))
        chain.forge()
    chain.submit(make_tx(B, 0, "stake", amount=100))  # left pending
    return chain


def test_reopen_in_a_new_process_sees_the_same_tip_state_and_mempool(tmp_path):
    home = tmp_path / "home"
    chain = build_small_chain(home)
    expected = {"status": views.status_view(chain.status()), "a": views.account_view(chain.account(A.address)),
                "b": views.account_view(chain.account(B.address))}
    chain.close()
    result = run_python(
        """
        import json, sys
        from pathlib import Path
        from ledger.chain import views
        from ledger.chain.facade import Chain
        with Chain.open(Path(sys.argv[1])) as chain:
            print(json.dumps({"status": views.status_view(chain.status()),
                              "a": views.account_view(chain.account(sys.argv[2])),
                              "b": views.account_view(chain.account(sys.argv[3]))}))
        """,
        str(home), A.address, B.address,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
    assert expected["status"]["mempool"] == 1 and expected["b"]["pending"] == 1


CRASH_WORKER = """
import sys, time
from pathlib import Path
from ledger.chain import views
from ledger.chain.facade import Chain
from tests.ledgerkit import make_key, make_tx, propose
home, round_no = Path(sys.argv[1]), int(sys.argv[2])
A, B, V = make_key("a"), make_key("b"), make_key("v")
chain = Chain.open(home)
print("ready", flush=True)
i = 0
while True:
    txs = [make_tx(A, chain.account(A.address).next_nonce, "transfer", to=B.address, amount=1)]
    if chain.mempool.sender_pending(V.address).proposals == 0:
        txs.append(propose(chain, V, 70))
    for tx in txs:
        tx_id = chain.submit(tx)
        print(tx_id.hex(), flush=True)  # acknowledged: submit returned
    i += 1
    if i % 3 == 0:
        chain.forge()
"""


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path):
    home = tmp_path / "home"
    make_chain(home, {A.address: 1_000_000}, {V.address: 500}).close()
    rng = random.Random(1234)
    acknowledged: list[str] = []
    for round_no in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASH_WORKER, str(home), str(round_no)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err
        acknowledged += [line for line in out.split() if len(line) == 64]
        with Chain.open(home) as chain:
            chain.verify()
            for tx_id in acknowledged:
                assert chain.tx(bytes.fromhex(tx_id)).status in ("pending", "included")
    assert len(acknowledged) > 20


def test_tampered_block_balance_and_bond_are_named_by_verify(tmp_path):
    home = tmp_path / "home"
    build_small_chain(home).close()

    def tamper(mutate) -> VerificationError:
        store = LevelDBStore.open(home / "chain")
        original = {k: v for k, v in store.iterate(b"")}
        mutate(store)
        store.close()
        chain = Chain.open(home)
        try:
            with pytest.raises(VerificationError) as info:
                chain.verify()
        finally:
            chain.close()
        restore = LevelDBStore.open(home / "chain")
        current = {k for k, _ in restore.iterate(b"")}
        restore.write({**{k: None for k in current - set(original)}, **original})
        restore.close()
        return info.value

    def edit_block(store: LevelDBStore) -> None:
        raw = store.get(schema.make_block_key(2))
        store.write({schema.make_block_key(2): raw.replace(b'"bpm":61', b'"bpm":62')})

    error = tamper(edit_block)
    assert error.height == 2 and "height 2" in str(error)

    key = schema.make_state_key(state.make_account_state_key(B.address))

    def edit_balance(store: LevelDBStore) -> None:
        account = state.Account.from_dict(encoding.decode(store.get(key)))
        store.write({key: encoding.encode(dataclasses.replace(account, balance=account.balance + 1).to_dict())})

    error = tamper(edit_balance)
    assert f"account:{B.address}" in str(error)

    vkey = schema.make_state_key(state.make_account_state_key(V.address))

    def edit_bond(store: LevelDBStore) -> None:
        account = state.Account.from_dict(encoding.decode(store.get(vkey)))
        store.write({vkey: encoding.encode(dataclasses.replace(account, bonded=10**6).to_dict())})

    error = tamper(edit_bond)
    assert f"account:{V.address}" in str(error)

    won_key = schema.make_blocks_won_key(V.address)

    def edit_blocks_won(store: LevelDBStore) -> None:
        store.write({won_key: schema.encode_u64(99)})

    error = tamper(edit_blocks_won)
    assert f"blocks-won index of {V.address} says 99, the chain says 3" in str(error)

    with Chain.open(home) as chain:  # restored: verifies again
        chain.verify()


def test_opening_does_not_replay_the_chain(tmp_path):
    """A missing old block does not stop the chain opening (nothing is replayed at start-up);
    verify finds it."""
    home = tmp_path / "home"
    build_small_chain(home).close()
    store = LevelDBStore.open(home / "chain")
    store.write({schema.make_block_key(1): None})
    store.close()
    with Chain.open(home) as chain:
        assert chain.status().height == 3
        with pytest.raises(VerificationError, match="height 1: block is missing"):
            chain.verify()


def hold_database(home: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that opens the chain, says so, holds it for ``seconds``, then closes it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from ledger.chain.facade import Chain;"
         " c = Chain.open(Path(sys.argv[1])); print('held', flush=True); time.sleep(float(sys.argv[2])); c.close()",
         str(home), str(seconds)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_database_in_use_by_another_process(tmp_path):
    home = tmp_path / "home"
    make_chain(home, {A.address: 1}, {V.address: 500}).close()
    holder = hold_database(home, seconds=60)
    try:
        with pytest.raises(DatabaseLocked, match="in use by another process"):
            Chain.open(home)
    finally:
        holder.kill()
        holder.wait()


def test_unknown_schema_version_and_missing_chain(tmp_path):
    home = tmp_path / "home"
    with pytest.raises(ChainNotInitialized, match="posctl chain init"):
        Chain.open(home)
    make_chain(home, {A.address: 1}, {V.address: 500}).close()
    store = LevelDBStore.open(home / "chain")
    store.write({schema.SCHEMA_VERSION_KEY: b"99"})
    store.close()
    with pytest.raises(DatabaseError, match="schema version 99"):
        Chain.open(home)


def test_chain_create_refuses_an_existing_chain(tmp_path):
    from ledger.errors import ChainExists

    home = tmp_path / "home"
    make_chain(home, {A.address: 1}, {V.address: 500}).close()
    with pytest.raises(ChainExists, match="already exists"):
        make_chain(home, {A.address: 1}, {V.address: 500})


def test_home_directory_and_files_are_private(tmp_path):
    home = tmp_path / "home"
    make_chain(home, {A.address: 1}, {V.address: 500}).close()
    assert os.stat(home).st_mode & 0o777 == 0o700


def test_an_interrupted_init_leaves_a_home_that_init_can_complete(tmp_path):
    """Genesis, schema version included, is one batch: a crash before it leaves an empty database."""
    home = tmp_path / "home"
    home.mkdir()
    LevelDBStore.open(home / "chain", create=True).close()  # what a kill before the batch leaves
    with pytest.raises(ChainNotInitialized, match="interrupted `posctl chain init`"):
        Chain.open(home)
    make_chain(home, {A.address: 1}, {V.address: 500}).close()
    with Chain.open(home) as chain:
        assert chain.height == 0
        chain.verify()


def test_a_short_hold_by_another_process_is_waited_for(tmp_path):
    """Two posctl commands started together: the second waits for the first instead of failing."""
    home = tmp_path / "home"
    make_chain(home, {A.address: 1}, {V.address: 500}).close()
    holder = hold_database(home, seconds=0.7)
    try:
        started = time.monotonic()
        with Chain.open(home) as chain:
            assert chain.height == 0
        assert time.monotonic() - started >= 0.3  # it really had to wait
    finally:
        holder.wait(timeout=30)


def test_a_chain_path_that_is_a_file_is_named(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "chain").write_text("not a database")
    with pytest.raises(DatabaseError, match="is a file, not a chain database directory"):
        Chain.open(home)
