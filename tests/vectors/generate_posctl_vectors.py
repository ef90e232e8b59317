"""Regenerate posctl's own known answers: ``python -m tests.vectors.generate_posctl_vectors``.

Not run by the tests. The tests (``tests/test_known_answers.py``) rebuild the same scripted chain
with :func:`scripted_chain_record` and compare every value with the frozen file, so any change to
tx ids, block hashes, seeds, draws or state roots fails a test. Regenerate only on purpose (a
consensus format change), in a commit that says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger.chain.facade import Chain
from ledger.chain.views import block_view
from ledger.consensus.evidence import make_evidence
from ledger.storage.store import MemoryStore
from tests.ledgerkit import Key, make_config, make_key, make_proposal, make_tx

OUTPUT = Path(__file__).resolve().parent / "posctl_known_answers.json"
CHAIN_ID = "posctl-test"
"""``tests.ledgerkit.make_config``'s chain id."""

ALICE, BOB, CAROL, DAVE = (make_key(name) for name in ("kat-alice", "kat-bob", "kat-carol", "kat-dave"))
"""Fixed keys: ``make_key`` hashes its label."""

BASE_TIME = 1_700_000_000


def tx_id_record() -> dict[str, str]:
    """One tx of each kind from fixed keys, nonces and fields (the proposal over a fixed seed)."""
    seed = bytes(range(32))
    txs = {
        "transfer": make_tx(ALICE, 0, "transfer", chain_id=CHAIN_ID, to=BOB.address, amount=25),
        "stake": make_tx(ALICE, 1, "stake", chain_id=CHAIN_ID, amount=100),
        "unstake": make_tx(ALICE, 2, "unstake", chain_id=CHAIN_ID, amount=40),
        "bpm": make_proposal(ALICE, 3, 7, seed, 72, chain_id=CHAIN_ID),
        "unjail": make_tx(ALICE, 4, "unjail", chain_id=CHAIN_ID),
    }
    return {kind: tx.id_hex for kind, tx in txs.items()} | {"bpm_vrf_proof": txs["bpm"].vrf_proof.hex()}


def _propose(chain: Chain, key: Key, bpm: int) -> None:
    nonce = chain.account(key.address).next_nonce
    chain.submit(make_proposal(key, nonce, chain.height + 1, chain.next_seed, bpm, chain_id=CHAIN_ID))


def scripted_chain_record() -> dict[str, Any]:
    """Genesis and three blocks: every validator proposing, a subset proposing, and an
    equivocation caught and slashed. Returns what each block fixes."""
    config = make_config(
        {ALICE.address: 10_000, BOB.address: 1_000, CAROL.address: 1_000, DAVE.address: 1_000},
        {BOB.address: 300, CAROL.address: 200, DAVE.address: 100},
    )
    chain = Chain.initialise(MemoryStore(), config)
    blocks = [chain.block(0)]
    # Block 1: all three validators propose; alice pays bob and stakes.
    chain.submit(make_tx(ALICE, 0, "transfer", chain_id=CHAIN_ID, to=BOB.address, amount=250))
    chain.submit(make_tx(ALICE, 1, "stake", chain_id=CHAIN_ID, amount=500))
    for key, bpm in ((BOB, 61), (CAROL, 72), (DAVE, 83)):
        _propose(chain, key, bpm)
    blocks.append(_forge(chain, 1))
    # Block 2: two propose; dave starts unbonding part of its stake.
    chain.submit(make_tx(DAVE, chain.account(DAVE.address).next_nonce, "unstake", chain_id=CHAIN_ID, amount=50))
    for key, bpm in ((CAROL, 70), (DAVE, 90)):
        _propose(chain, key, bpm)
    blocks.append(_forge(chain, 2))
    # Block 3: carol signs two different proposals for height 3; the mempool refuses the second
    # and records the pair as evidence, which the block uses: carol is slashed and tombstoned.
    nonce = chain.account(CAROL.address).next_nonce
    first = make_proposal(CAROL, nonce, 3, chain.next_seed, 70, chain_id=CHAIN_ID)
    second = make_proposal(CAROL, nonce, 3, chain.next_seed, 71, chain_id=CHAIN_ID)
    chain.submit(first)
    chain.submit_evidence(make_evidence(first, second))
    for key, bpm in ((ALICE, 64), (BOB, 65)):
        _propose(chain, key, bpm)
    blocks.append(_forge(chain, 3))
    chain.verify()
    return {
        "genesis_hash": blocks[0].hash.hex(),
        "blocks": [
            {
                "height": block.height,
                "hash": block.hash.hex(),
                "seed": block.header.seed.hex(),
                "vrf_output": block.header.vrf_output.hex(),
                "validator": block.header.validator,
                "state_root": block.header.state_root.hex(),
                "tx_ids": [tx.id_hex for tx in block.txs],
                "evidence_ids": [item.id_hex for item in block.evidence],
                "lottery": block_view(block)["lottery"],
            }
            for block in blocks
        ],
        "totals": chain.totals().to_dict(),
        "next_seed": chain.next_seed.hex(),
    }


def _forge(chain: Chain, height: int) -> Any:
    result = chain.forge(timestamp=BASE_TIME + 10 * height)
    if result.block is None:
        raise SystemExit(f"the scripted chain made no block {height}: {result.reason}")
    return result.block


def build_record() -> dict[str, Any]:
    return {
        "about": "posctl's own known answers (consensus format 2); regenerate with "
                 "python -m tests.vectors.generate_posctl_vectors",
        "keys": {name: key.address for name, key in
                 (("alice", ALICE), ("bob", BOB), ("carol", CAROL), ("dave", DAVE))},
        "tx_ids": tx_id_record(),
        "chain": scripted_chain_record(),
    }


if __name__ == "__main__":
    OUTPUT.write_text(json.dumps(build_record(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}")
