"""Attacks on who wins a block: grind, exclude, split, declare.

Each function runs the attack twice: against :mod:`cli.lab.naive` (the tutorial's and v1's rules)
and against a throwaway posctl chain (:class:`cli.lab.testnet.LabChain`), where the forger is
:func:`ledger.chain.forger.build_block`, the draw :func:`ledger.consensus.lottery.pick_validator`
and every block is accepted only through :func:`ledger.consensus.fork.state_transition`.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from typing import Iterator

from cli.lab import naive, stats
from cli.lab.result import Meter, Outcome, Progress, Side, decide_verdict
from cli.lab.testnet import GENESIS_TIMESTAMP, lab_chain
from ledger.consensus import lottery
from ledger.consensus.fork import next_seed
from ledger.consensus.transactions import Transaction

NAIVE_SCALE = 10
"""The naive model signs and proves nothing, so it runs this many times more blocks than the
posctl chain for the same time, and its intervals are correspondingly tighter."""

GRIND_BONDS = {"attacker": 100, "honest": 900}
GRIND_TRIES = 20
"""Headers the grinder tries per block it assembles (other timestamps)."""

EXCLUDE_BONDS = {"favoured": 100, "v1": 300, "v2": 300, "v3": 300}

SPLIT_PARTS = 3
SPLIT_BONDS = {"part1": 100, "part2": 100, "part3": 100, "honest": 700}

DECLARED_CLAIM = 10**9
"""What the attacker claims to hold; it really holds :data:`DECLARE_REAL`."""
DECLARE_REAL = 100
DECLARE_HONEST = {"honest1": 300, "honest2": 300, "honest3": 300}


def _naive_genesis(name: str, seed: int) -> naive.NaiveHeader:
    """A naive genesis header per scenario and seed, so each seed gives another run."""
    return naive.NaiveHeader(0, hashlib.sha256(f"posctl-lab:{name}:{seed}".encode()).digest(),
                             GENESIS_TIMESTAMP, "")


def _share(wins: int, trials: int) -> tuple[float, tuple[float, float]]:
    return wins / trials, stats.wilson(wins, trials)


# ---- grind ---------------------------------------------------------------------------------


def run_grind(blocks: int, seed: int, progress: Progress) -> Outcome:
    stakes = dict(GRIND_BONDS)
    total = sum(stakes.values())
    p = stakes["attacker"] / total
    k = GRIND_TRIES
    naive_blocks = blocks * NAIVE_SCALE
    meter = Meter(naive_blocks + blocks * NAIVE_SCALE, progress)

    # Naive: whoever wins block h assembles it; the attacker tries k timestamps for the one
    # whose hash makes it win h+1 under v1's seed.
    parent = _naive_genesis("grind", seed)
    wins = assembled = chained = 0
    previous = ""
    for height in range(1, naive_blocks + 1):
        winner = naive.v1_draw(naive.v1_seed(parent.hash, height), stakes)
        if winner == "attacker":
            wins += 1
            if previous == "attacker":
                chained += 1
        chosen = naive.NaiveHeader(height, parent.hash, GENESIS_TIMESTAMP + 30 * height, winner)
        if winner == "attacker":
            assembled += height < naive_blocks  # the last block's successor is never drawn
            for attempt in range(k):
                header = naive.NaiveHeader(height, parent.hash, GENESIS_TIMESTAMP + 30 * height + attempt, winner)
                if naive.v1_draw(naive.v1_seed(header.hash, height + 1), stakes) == "attacker":
                    chosen = header
                    break
        previous, parent = winner, chosen
        if height % 50 == 0:
            meter.advance(50)
    next_win = 1 - (1 - p) ** k
    naive_predicted = p / (p + (1 - p) ** k)
    autocorrelation = 1 - p - (1 - p) ** k
    naive_share = wins / naive_blocks
    naive_side = Side(f"v1 seed = SHA-256(prev_hash | height), {naive_blocks} blocks", naive_share,
                      naive_predicted, stats.markov_wilson(naive_share, naive_blocks, autocorrelation), naive_blocks)

    # posctl: every validator proposes; when the attacker is the block's winner it assembles
    # the block k times (k timestamps) and keeps one that makes it first drawn next, if any.
    chain, keys = lab_chain(seed, GRIND_BONDS)
    attacker = keys["attacker"].address
    posctl_wins = ground = 0
    distinct_seeds: set[int] = set()
    for _ in range(blocks):
        txs = [chain.propose(key) for key in keys.values()]
        if chain.first_drawn() == attacker:
            ground += 1
            weights = chain.eligible_weights()  # bonds do not change in this run
            seen: set[bytes] = set()
            chosen = None
            for attempt in range(k):
                candidate = chain.build(txs, timestamp=GENESIS_TIMESTAMP + 30 * (chain.height + 1) + attempt)
                if candidate.block is None:
                    raise RuntimeError(candidate.reason)
                following = next_seed(candidate.block.header)
                seen.add(following)
                if chosen is None or next(lottery.draw_order(following, weights)) == attacker:
                    chosen = candidate
            distinct_seeds.add(len(seen))
            chain.commit(chosen.block)  # type: ignore[union-attr]
        else:
            chain.forge(txs)
        if chain.tip.validator == attacker:
            posctl_wins += 1
        meter.advance(NAIVE_SCALE)
    share, interval = _share(posctl_wins, blocks)
    posctl_side = Side(f"posctl seed from the parent's seed and VRF output, {blocks} blocks", share, p,
                       interval, blocks)
    next_lo, next_hi = stats.wilson(chained, max(assembled, 1)) if assembled else (0.0, 1.0)
    details = [
        f"attacker stake share p = {p:.2f}; {k} tries per block it assembles",
        f"naive next-block win after an attacker-assembled block: {chained}/{assembled} = "
        f"{chained / max(assembled, 1):.3f} (formula 1-(1-p)^k = {next_win:.3f}; 95% [{next_lo:.3f}, {next_hi:.3f}])",
        f"naive long-run share formula p / (p + (1-p)^k) = {naive_predicted:.3f}; interval widened for the "
        f"runs of wins (lag-1 autocorrelation {autocorrelation:.3f})",
        f"posctl: the attacker assembled {ground} blocks, {k} timestamps each; distinct next seeds per "
        f"block: {sorted(distinct_seeds) or [1]} (the timestamp never enters the seed)",
    ]
    return Outcome(
        scenario="grind",
        attack=(f"A forger holding {p:.0%} of the stake re-rolls every block it assembles {k} times "
                "(other timestamps) to win the next block too."),
        measure="attacker's share of blocks",
        naive=naive_side,
        posctl=posctl_side,
        defence=("ledger.consensus.fork.next_seed: seed(h) = compute_seed(seed(h-1), VRF output of h-1) "
                 "(ledger.consensus.lottery.compute_seed, ledger.crypto.ecvrf.prove); nothing the forger "
                 "chooses enters it, and fork.validate_header refuses any other seed"),
        verdict=decide_verdict(naive_side, posctl_side),
        details=details,
        chains=[chain],
    )


# ---- exclude -------------------------------------------------------------------------------


def _omissions(losers: list[str]) -> Iterator[tuple[str, ...]]:
    """Every non-empty set of losing proposals, smallest first: what the forger tries leaving out."""
    for size in range(1, len(losers) + 1):
        yield from itertools.combinations(losers, size)


def run_exclude(blocks: int, seed: int, progress: Progress) -> Outcome:
    stakes = dict(EXCLUDE_BONDS)
    total = sum(stakes.values())
    p = stakes["favoured"] / total
    naive_blocks = blocks * NAIVE_SCALE
    meter = Meter(naive_blocks + blocks * NAIVE_SCALE, progress)
    chain, keys = lab_chain(seed, EXCLUDE_BONDS)
    favoured = keys["favoured"].address
    by_address = {keys[label].address: stake for label, stake in stakes.items()}

    # Naive: v1 draws among the proposals in the block. When the favourite loses, the forger
    # tries leaving out losing proposals (never the winner's: that one could be noticed) and
    # keeps the first omission that re-draws the block for its favourite. The validators have
    # the posctl run's addresses, since the draw's ranges follow address order.
    parent = _naive_genesis("exclude", seed)
    naive_wins = naive_rerolls = 0
    for height in range(1, naive_blocks + 1):
        seed_h = naive.v1_seed(parent.hash, height)
        winner = naive.v1_draw(seed_h, by_address)
        left_out: tuple[str, ...] = ()
        if winner != favoured:
            losers = sorted(a for a in by_address if a not in (favoured, winner))
            for omission in _omissions(losers):
                rest = {a: w for a, w in by_address.items() if a not in omission}
                if naive.v1_draw(seed_h, rest) == favoured:
                    winner, left_out = favoured, omission
                    naive_rerolls += 1
                    break
        naive_wins += winner == favoured
        parent = naive.NaiveHeader(height, parent.hash, GENESIS_TIMESTAMP + 30 * height, winner,
                                   tuple(sorted(set(by_address) - set(left_out))))
        if height % 50 == 0:
            meter.advance(50)
    share, interval = _share(naive_wins, naive_blocks)
    naive_side = Side(f"v1 draw among the block's proposers, {naive_blocks} blocks", share, None, interval,
                      naive_blocks)

    # posctl: the same forger with the real draw (pick_validator over the parent's eligible
    # validators). It tries the same omissions; it also works out what leaving out the winner's
    # own proposal would have given (the hand-over), without doing it.
    weights = chain.eligible_weights()
    handover_formula = p + sum((w / total) * (stakes["favoured"] / (total - w))
                               for label, w in stakes.items() if label != "favoured")
    posctl_wins = changed = tried = handover_wins = 0
    for _ in range(blocks):
        txs = [chain.propose(key) for key in keys.values()]
        proposers = {tx.sender for tx in txs}
        winner, _ = lottery.pick_validator(chain.next_seed, weights, proposers)
        chosen: list[Transaction] = list(txs)
        if winner != favoured:
            losers = sorted(proposers - {favoured, winner})
            for omission in _omissions(losers):
                tried += 1
                if lottery.pick_validator(chain.next_seed, weights, proposers - set(omission))[0] != winner:
                    changed += 1
                    chosen = [tx for tx in txs if tx.sender not in omission]
                    break
            handover_wins += lottery.pick_validator(chain.next_seed, weights, proposers - {winner})[0] == favoured
        chain.forge(chosen)
        posctl_wins += chain.tip.validator == favoured
        meter.advance(NAIVE_SCALE)
    share, interval = _share(posctl_wins, blocks)
    posctl_side = Side(f"posctl fixed-order draw over all eligible validators, {blocks} blocks", share, p,
                       interval, blocks)
    handover_share = (posctl_wins + handover_wins) / blocks
    lo, hi = stats.wilson(posctl_wins + handover_wins, blocks)
    details = [
        f"favoured validator's stake share p = {p:.2f}; {len(stakes)} validators, all proposing every block",
        f"naive: leaving out losing proposals re-drew the block for the favourite {naive_rerolls} times "
        f"in {naive_blocks} blocks",
        f"posctl: {tried} omissions of losing proposals tried, {changed} changed the winner "
        "(pick_validator's order is fixed by the seed before the block is assembled)",
        f"posctl: leaving out the winner's own proposal would hand the block down the order, to the favourite "
        f"when it is d2: share {handover_share:.3f} (95% [{lo:.3f}, {hi:.3f}]; formula p + sum_j p_j*p/(1-p_j) "
        f"= {handover_formula:.3f}); every such hand-over shows in the draw trace as d1 passed over and "
        "counts a missed turn for it (fork.record_liveness)",
    ]
    return Outcome(
        scenario="exclude",
        attack=(f"The forger leaves losing proposals out of a block, an omission nobody can see, whenever "
                f"that re-draws the block for its favourite (holding {p:.0%} of the stake)."),
        measure="favoured validator's share of blocks",
        naive=naive_side,
        posctl=posctl_side,
        defence=("ledger.consensus.lottery.pick_validator: the seed fixes an order over every eligible "
                 "validator of the parent state before the block is assembled; leaving a proposal out can "
                 "only hand the block down that order, visibly (the trace, fork.record_liveness)"),
        verdict=decide_verdict(naive_side, posctl_side),
        details=details,
        chains=[chain],
    )


# ---- split ---------------------------------------------------------------------------------


def run_split(blocks: int, seed: int, progress: Progress) -> Outcome:
    stakes = dict(SPLIT_BONDS)
    total = sum(stakes.values())
    parts = [label for label in stakes if label.startswith("part")]
    p = sum(stakes[label] for label in parts) / total
    naive_blocks = blocks * NAIVE_SCALE
    meter = Meter(naive_blocks + blocks * NAIVE_SCALE, progress)

    parent = _naive_genesis("split", seed)
    naive_wins = 0
    for height in range(1, naive_blocks + 1):
        winner = naive.v1_draw(naive.v1_seed(parent.hash, height), stakes)
        naive_wins += winner in parts
        parent = naive.NaiveHeader(height, parent.hash, GENESIS_TIMESTAMP + 30 * height, winner)
        if height % 50 == 0:
            meter.advance(50)
    share, interval = _share(naive_wins, naive_blocks)
    naive_side = Side(f"v1 stake-weighted draw, {naive_blocks} blocks", share, p, interval, naive_blocks)

    chain, keys = lab_chain(seed, SPLIT_BONDS)
    part_addresses = {keys[label].address: label for label in parts}
    won = dict.fromkeys(parts, 0)
    for _ in range(blocks):
        chain.forge([chain.propose(key) for key in keys.values()])
        label = part_addresses.get(chain.tip.validator)
        if label is not None:
            won[label] += 1
        meter.advance(NAIVE_SCALE)
    posctl_wins = sum(won.values())
    share, interval = _share(posctl_wins, blocks)
    posctl_side = Side(f"posctl draw weighted by bonded stake, {blocks} blocks", share, p, interval, blocks)
    verdict = decide_verdict(naive_side, posctl_side)
    details = [
        f"one holder with {p:.0%} of the stake split over {SPLIT_PARTS} addresses of "
        f"{stakes[parts[0]]} tokens each",
        "posctl blocks per part: " + ", ".join(f"{label} {won[label]}" for label in parts)
        + f" (each expected {stakes[parts[0]] / total:.2f} of {blocks})",
        "weight is stake, not addresses: n addresses holding s/n each win exactly what one holding s wins; "
        f"parts below min_stake ({chain.params.min_stake} on the lab chain, 100 by default) leave the draw",
    ]
    return Outcome(
        scenario="split",
        attack=f"One holder of {p:.0%} of the stake splits it over {SPLIT_PARTS} addresses (a sybil) to win more often.",
        measure="holder's total share of blocks",
        naive=naive_side,
        posctl=posctl_side,
        defence=("ledger.consensus.lottery.draw_entries: each validator's range is its bonded stake, so "
                 "splitting moves no probability; state.get_eligible_weights drops parts below min_stake"),
        verdict=verdict,
        details=details,
        chains=[chain],
    )


# ---- declare -------------------------------------------------------------------------------


def run_declare(blocks: int, seed: int, progress: Progress) -> Outcome:
    naive_blocks = blocks * NAIVE_SCALE
    meter = Meter(naive_blocks + blocks * NAIVE_SCALE, progress)
    declared = {"attacker": DECLARED_CLAIM, **DECLARE_HONEST}
    rng = random.Random(f"posctl-lab:declare:{seed}")
    naive_wins = 0
    for height in range(1, naive_blocks + 1):
        naive_wins += naive.tutorial_pick(rng, declared) == "attacker"
        if height % 50 == 0:
            meter.advance(50)
    honest_total = sum(DECLARE_HONEST.values())
    share, interval = _share(naive_wins, naive_blocks)
    naive_side = Side(f"tutorial lottery pool, one entry per declared token, {naive_blocks} blocks", share,
                      DECLARED_CLAIM / (DECLARED_CLAIM + honest_total), interval, naive_blocks)

    chain, keys = lab_chain(seed, DECLARE_HONEST, {"attacker": DECLARE_REAL})
    attacker = keys["attacker"]
    claim = chain.sign(attacker, "stake", nonce=0, amount=DECLARED_CLAIM)
    real = chain.sign(attacker, "stake", nonce=0, amount=DECLARE_REAL)
    first = chain.forge([claim, real] + [chain.propose(keys[label]) for label in DECLARE_HONEST])
    refusal = next((reason for tx_id, _, reason in [(t.tx_id, t, r) for _, t, r in first.evicted]
                    if tx_id == claim.tx_id), "not refused")
    p = DECLARE_REAL / (DECLARE_REAL + honest_total)
    posctl_wins = 0
    seen_weights: set[int] = set()
    for _ in range(blocks):
        chain.forge([chain.propose(key) for key in keys.values()])
        posctl_wins += chain.tip.validator == attacker.address
        block = chain.blocks[-1]
        seen_weights.update(entry.bonded for entry in block.trace if entry.address == attacker.address)
        meter.advance(NAIVE_SCALE)
    share, interval = _share(posctl_wins, blocks)
    posctl_side = Side(f"posctl draw over bonded stake in the state, {blocks} blocks", share, p, interval, blocks)
    details = [
        f"the attacker claims {DECLARED_CLAIM:,} tokens and holds {DECLARE_REAL}; three honest validators hold "
        f"{honest_total} between them",
        f"posctl: its `stake {DECLARED_CLAIM}` was evicted by the forger: {refusal}",
        f"posctl: the attacker's weight in every draw trace: {sorted(seen_weights) or ['never drawn']} "
        "(its bonded stake, read from the state)",
    ]
    return Outcome(
        scenario="declare",
        attack=f"A validator declares {DECLARED_CLAIM:,} tokens of stake while holding {DECLARE_REAL}.",
        measure="attacker's share of blocks",
        naive=naive_side,
        posctl=posctl_side,
        defence=("ledger.consensus.state.get_eligible_weights: the draw's weights are bonded balances in the "
                 "state; the only way in is a stake tx, and ledger.consensus.state.bond refuses more than the "
                 "liquid balance (InsufficientBalance)"),
        verdict=decide_verdict(naive_side, posctl_side),
        details=details,
        chains=[chain],
    )
