"""Attacks on what a signature means: replay on another chain, and the high-S twin.

The naive side is :mod:`cli.lab.naive`'s ledger (no chain id in what is signed, pycryptodome's
verify, ids over the signed bytes). The defended side signs real posctl transactions and
puts each attack through the two gates a transaction meets: admission
(:func:`ledger.consensus.transactions.validate_transaction`, what the mempool runs) and, for a
forger that skips admission, the block rules (:func:`ledger.consensus.fork.state_transition`).
"""

from __future__ import annotations

import dataclasses
import random

from cli.lab import naive, stats
from cli.lab.result import Meter, Outcome, Progress, Side, decide_verdict
from cli.lab.testnet import LAB_CHAIN_ID, LabChain, lab_chain
from ledger.consensus.transactions import Transaction, validate_transaction, verify_signature
from ledger.crypto import secp256k1
from ledger.errors import InvalidBlock, InvalidSignature, WrongChain

VICTIM_BALANCE = 1_000
VALIDATOR_BOND = 1_000
CHAIN_A, CHAIN_B = f"{LAB_CHAIN_ID}-a", f"{LAB_CHAIN_ID}-b"


def _victims(trials: int) -> list[str]:
    """One fresh account per trial, so every replayed transfer carries its sender's next nonce
    on the other chain too and only the rule under test can refuse it."""
    return [f"victim{i}" for i in range(trials)]


def _forced_block_refusal(chain: LabChain, proposal: Transaction, tx: Transaction) -> str | None:
    """Have the forger take ``tx`` without admission checks; return why ``state_transition``
    refused the block, or None if the block was accepted (committed)."""
    candidate = chain.build([proposal, tx], trust=[tx.tx_id])
    if candidate.block is None or tx not in candidate.block.txs:
        reasons = [reason for _, evicted, reason in candidate.evicted if evicted.tx_id == tx.tx_id]
        return f"the forger itself evicted it: {reasons[0] if reasons else candidate.reason}"
    try:
        chain.commit(candidate.block)
    except InvalidBlock as exc:
        return str(exc)
    return None


def _first_line_of(refusals: list[str]) -> str:
    return refusals[0] if refusals else "none"


# ---- replay --------------------------------------------------------------------------------


def run_replay(trials: int, seed: int, progress: Progress) -> Outcome:
    meter = Meter(2 * trials, progress)
    rng = random.Random(f"posctl-lab:replay:{seed}")
    labels = _victims(trials)
    allocations = dict.fromkeys(labels, VICTIM_BALANCE)
    chain_a, keys = lab_chain(seed, {"validator": VALIDATOR_BOND}, allocations, chain_id=CHAIN_A)
    chain_b, _ = lab_chain(seed, {"validator": VALIDATOR_BOND}, allocations, chain_id=CHAIN_B)
    thief_address = keys["validator"].address
    amounts = [rng.randint(1, VICTIM_BALANCE) for _ in labels]

    # Naive: the same two ledgers, signatures over bodies without a chain id.
    naive_a = naive.NaiveLedger({keys[label].address: VICTIM_BALANCE for label in labels})
    naive_b = naive.NaiveLedger({keys[label].address: VICTIM_BALANCE for label in labels})
    naive_accepted = 0
    for label, amount in zip(labels, amounts):
        key = keys[label]
        body = naive.naive_body(key.public, 0, thief_address, amount)
        signature = naive.naive_sign(key.private, body)
        naive_a.apply_transfer(key.address, key.public, 0, thief_address, amount, signature)
        naive_accepted += naive_b.apply_transfer(key.address, key.public, 0, thief_address, amount, signature)
        meter.advance()
    lo, hi = stats.wilson(naive_accepted, trials)
    naive_side = Side(f"signed body without a chain id, {trials} transfers", naive_accepted / trials, 1.0,
                      (lo, hi), trials)

    # posctl: each victim pays on chain A (a real block); the thief replays it on chain B.
    transfers = [chain_a.sign(keys[label], "transfer", to=thief_address, amount=amount)
                 for label, amount in zip(labels, amounts)]
    chain_a.forge([chain_a.propose(keys["validator"]), *transfers])
    applied_on_a = len(chain_a.blocks[-1].txs) - 1
    proposal_b = chain_b.propose(keys["validator"])
    admitted = accepted_in_block = 0
    admission_refusals: list[str] = []
    block_refusals: list[str] = []
    for tx in transfers:
        try:
            validate_transaction(tx, chain_b.params)
            admitted += 1
        except WrongChain as exc:
            admission_refusals.append(f"{type(exc).__name__}: {exc}")
        refusal = _forced_block_refusal(chain_b, proposal_b, tx)
        if refusal is None:
            accepted_in_block += 1
        else:
            block_refusals.append(refusal)
        meter.advance()
    accepted = max(admitted, accepted_in_block)
    lo, hi = stats.wilson(accepted, trials)
    posctl_side = Side(f"posctl transactions sign their chain_id, {trials} transfers", accepted / trials, 0.0,
                       (lo, hi), trials)
    details = [
        f"{trials} transfers signed for chain {CHAIN_A!r}; {applied_on_a} applied there in block 1",
        f"naive: {naive_accepted} of {trials} replayed on the other chain were accepted and paid again",
        f"posctl admission on {CHAIN_B!r}: {len(admission_refusals)} of {trials} refused, e.g. "
        f"{_first_line_of(admission_refusals)}",
        f"posctl block rules: a forger skipping admission got {accepted_in_block} of {trials} in; "
        f"state_transition refused the rest, e.g. {_first_line_of(block_refusals)}",
    ]
    return Outcome(
        scenario="replay",
        attack="A transfer signed for one chain is replayed on another chain where its sender also holds funds.",
        measure="share of replayed transfers accepted",
        naive=naive_side,
        posctl=posctl_side,
        defence=("ledger.consensus.transactions.check_stateless: the signed body carries chain_id and a tx "
                 "for another chain is refused (WrongChain) at admission and in fork.apply_block"),
        verdict=decide_verdict(naive_side, posctl_side),
        details=details,
        chains=[chain_a, chain_b],
    )


# ---- malleate ------------------------------------------------------------------------------


def high_s_twin(signature: bytes) -> bytes:
    """(r, n - s): the other valid ECDSA signature of the same message by the same key."""
    r, s = signature[:32], int.from_bytes(signature[32:], "big")
    return r + (secp256k1.SECP256K1_ORDER - s).to_bytes(32, "big")


def run_malleate(trials: int, seed: int, progress: Progress) -> Outcome:
    meter = Meter(2 * trials, progress)
    rng = random.Random(f"posctl-lab:malleate:{seed}")
    labels = _victims(trials)
    chain, keys = lab_chain(seed, {"validator": VALIDATOR_BOND}, dict.fromkeys(labels, VICTIM_BALANCE))
    payee = keys["validator"].address
    amounts = [rng.randint(1, VICTIM_BALANCE) for _ in labels]

    # Naive: the twin verifies (pycryptodome accepts high-S) and, the id covering the
    # signature, is a second transaction for the same payment.
    second_ids = 0
    for label, amount in zip(labels, amounts):
        key = keys[label]
        body = naive.naive_body(key.public, 0, payee, amount)
        signature = naive.naive_sign(key.private, body)
        twin = high_s_twin(signature)
        second_ids += naive.naive_verify(key.public, body, twin) and (
            naive.naive_tx_id(body, twin) != naive.naive_tx_id(body, signature))
        meter.advance()
    lo, hi = stats.wilson(second_ids, trials)
    naive_side = Side(f"ECDSA without the low-S rule, id over the signed bytes, {trials} transfers",
                      second_ids / trials, 1.0, (lo, hi), trials)

    # posctl: the twin of each real signed transfer, through admission and the block rules.
    proposal = chain.propose(keys["validator"])
    originals: list[Transaction] = []
    admitted = accepted_in_block = same_id = 0
    admission_refusals: list[str] = []
    block_refusals: list[str] = []
    for label, amount in zip(labels, amounts):
        tx = chain.sign(keys[label], "transfer", to=payee, amount=amount)
        twin = dataclasses.replace(tx, signature=high_s_twin(tx.signature))
        originals.append(tx)
        same_id += twin.tx_id == tx.tx_id
        try:
            verify_signature(twin)
            admitted += 1
        except InvalidSignature as exc:
            admission_refusals.append(f"{type(exc).__name__}: {exc}")
        refusal = _forced_block_refusal(chain, proposal, twin)
        if refusal is None:
            accepted_in_block += 1
        else:
            block_refusals.append(refusal)
        meter.advance()
    chain.forge([proposal, *originals])
    paid = len(chain.blocks[-1].txs) - 1
    accepted = max(admitted, accepted_in_block)
    lo, hi = stats.wilson(accepted, trials)
    posctl_side = Side(f"posctl low-S signatures, id over the unsigned body, {trials} transfers",
                       accepted / trials, 0.0, (lo, hi), trials)
    details = [
        f"naive: {second_ids} of {trials} high-S twins verified under a second tx id (same payment, new id)",
        f"posctl: {len(admission_refusals)} of {trials} twins refused by verify_signature, e.g. "
        f"{_first_line_of(admission_refusals)}",
        f"posctl block rules: a forger skipping admission got {accepted_in_block} twins in; state_transition "
        f"refused the rest, e.g. {_first_line_of(block_refusals)}",
        f"posctl: {same_id} of {trials} twins have the same tx id as the original anyway (the id covers the "
        f"unsigned body); the {paid} originals were then paid once, in block {chain.height}",
    ]
    return Outcome(
        scenario="malleate",
        attack="Anyone flips a valid signature (r, s) into its high-S twin (r, n-s) to give the same payment a second id.",
        measure="share of twins accepted as a valid transaction",
        naive=naive_side,
        posctl=posctl_side,
        defence=("ledger.crypto.secp256k1.verify refuses s > n/2 (low-S check; sign() normalises to low-S), "
                 "and ledger.consensus.transactions.Transaction.tx_id hashes the unsigned body"),
        verdict=decide_verdict(naive_side, posctl_side),
        details=details,
        chains=[chain],
    )
