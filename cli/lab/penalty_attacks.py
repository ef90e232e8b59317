"""Misbehaving validators: equivocation, equivocation reported too late, going offline.

The naive rules (the tutorial's and v1's) have no evidence, no slashing, no lock-up that
evidence could reach and no liveness record, so their side of each scenario is short: nothing
happens. The defended side runs posctl's evidence and liveness rules on a throwaway chain
(:class:`cli.lab.testnet.LabChain`): ``ledger.consensus.evidence.check_evidence_form`` and
``check_evidence``, ``ledger.consensus.state.slash_validator``, ``fork.record_liveness`` and
``state.unjail``, all reached through ``build_block`` and ``state_transition``.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from cli.lab import stats
from cli.lab.result import Meter, Outcome, Progress, Side, decide_verdict
from cli.lab.testnet import LabChain, LabKey, lab_chain
from ledger.consensus.evidence import Evidence, check_evidence, make_evidence
from ledger.consensus.state import Account
from ledger.consensus.transactions import Bpm, Transaction
from ledger.errors import EvidenceTooOld, InvalidEvidence
from wallet.protection import SlashingProtection, WouldEquivocate

HONEST_BOND = 5_000
OFFENDER_BOND = 1_000
PROTECTION_WALLET = "lab"
"""The wallet name the offenders' slashing-protection record is kept under (in a temporary dir)."""

OFFLINE_BONDS = {"online": 500, "offline": 500}
OFFLINE_MAX_MISSED = 10
"""The lab chain jails after 10 missed turns (the default is 100) to keep the run short."""
UNJAIL_BLOCKS = 20
"""Blocks run after the unjail, both validators online, to show the validator back in the draw."""


def _offenders(count: int) -> list[str]:
    return [f"offender{i}" for i in range(count)]


def _balances(account: Account) -> str:
    unbonding = sum(entry.amount for entry in account.unbonding)
    flags = " tombstoned" if account.tombstoned else (" jailed" if account.jailed else "")
    return (f"liquid {account.balance}, bonded {account.bonded}, unbonding {unbonding}, "
            f"slashed {account.slashed}{flags}")


def _equivocate(chain: LabChain, key: LabKey, guard: SlashingProtection) -> tuple[Bpm, Evidence, bool]:
    """Sign two proposals for the next height through the wallet's slashing protection,
    forcing the second past it; returns the first, the evidence and whether it refused."""
    first = chain.propose(key, bpm=72)
    second = chain.propose(key, bpm=73, nonce=first.nonce)
    guard.guard(first)
    refused = False
    try:
        guard.guard(second)
    except WouldEquivocate:
        refused = True
    guard.guard(second, allow_equivocation=True)
    return first, make_evidence(first, second), refused


# ---- equivocate ----------------------------------------------------------------------------


def run_equivocate(trials: int, seed: int, progress: Progress) -> Outcome:
    meter = Meter(trials + 2, progress)
    labels = _offenders(trials)
    chain, keys = lab_chain(seed, {"honest": HONEST_BOND, **dict.fromkeys(labels, OFFENDER_BOND)})
    honest = keys["honest"]
    proposals = [chain.propose(honest)]
    evidence: list[Evidence] = []
    refused = 0
    with tempfile.TemporaryDirectory(prefix="posctl-lab-") as wallets:
        guard = SlashingProtection(Path(wallets), PROTECTION_WALLET)
        for label in labels:
            first, item, was_refused = _equivocate(chain, keys[label], guard)
            proposals.append(first)
            evidence.append(item)
            refused += was_refused
            meter.advance()
    chain.forge(proposals)  # block 1 carries each offender's first proposal
    meter.advance()
    before = {label: chain.account(keys[label].address) for label in labels}
    totals_before = chain.totals()
    report = chain.forge([chain.propose(honest)], evidence=evidence)  # block 2 carries the evidence
    meter.advance()
    after = {label: chain.account(keys[label].address) for label in labels}
    totals_after = chain.totals()
    punished = sum(1 for label in labels if after[label].tombstoned and after[label].slashed > 0)
    reporter = chain.tip.validator
    again = "accepted"
    try:
        check_evidence(chain.view(), evidence[0], chain.height + 1, chain.params)
    except InvalidEvidence as exc:
        again = f"{type(exc).__name__}: {exc}"

    naive_side = Side(f"no evidence rule: both proposals simply enter the pool, {trials} validators", 0.0, 0.0,
                      stats.wilson(0, trials), trials)
    posctl_side = Side(f"posctl evidence in block {chain.height}, {trials} validators", punished / trials, 1.0,
                       stats.wilson(punished, trials), trials)
    sample = labels[0]
    details = [
        f"wallet slashing protection (wallet/protection.py) refused {refused} of {trials} second proposals "
        "(WouldEquivocate); each was forced with allow_equivocation",
        f"{sample} before: {_balances(before[sample])}",
        f"{sample} after:  {_balances(after[sample])}",
        f"burned {totals_after.burned - totals_before.burned}; the block's validator {reporter[:14]}… earned "
        f"the whistleblower share; evicted evidence: {len(report.evicted_evidence)}",
        f"the same evidence again: {again}",
    ]
    return Outcome(
        scenario="equivocate",
        attack=("A validator signs two different proposals for one height, forcing its wallet's slashing "
                "protection with allow_equivocation."),
        measure="share of equivocating validators punished",
        naive=naive_side,
        posctl=posctl_side,
        defence=("ledger.consensus.evidence.check_evidence_form + check_evidence, then "
                 "ledger.consensus.state.slash_validator (via fork.apply_evidence): "
                 f"{chain.params.slash_fraction_bps / 100:g}% slashed, "
                 f"{chain.params.whistleblower_bps / 100:g}% of it to the reporter, the rest burned, tombstoned"),
        verdict=decide_verdict(naive_side, posctl_side),
        details=details,
        chains=[chain],
    )


# ---- after-unbonding -----------------------------------------------------------------------


def run_after_unbonding(trials: int, seed: int, progress: Progress) -> Outcome:
    rng = random.Random(f"posctl-lab:after-unbonding:{seed}")
    labels = _offenders(trials)
    chain, keys = lab_chain(seed, {"honest": HONEST_BOND, **dict.fromkeys(labels, OFFENDER_BOND)})
    window = chain.params.unbonding_blocks
    delays = {label: rng.randint(1, 2 * window) for label in labels}
    meter = Meter(2 * window + 1, progress)
    honest = keys["honest"]
    getaway = keys["honest"].address

    # Block 1: every offender equivocates (its first proposal is in the block).
    proposals = [chain.propose(honest)]
    evidence: dict[str, Evidence] = {}
    with tempfile.TemporaryDirectory(prefix="posctl-lab-") as wallets:
        guard = SlashingProtection(Path(wallets), PROTECTION_WALLET)
        for label in labels:
            first, item, _ = _equivocate(chain, keys[label], guard)
            proposals.append(first)
            evidence[label] = item
    chain.forge(proposals)
    infraction = chain.height
    meter.advance()
    release = infraction + 1 + window  # the unstakes below are in block infraction + 1
    refusals: dict[str, str] = {}
    moved: dict[str, int] = {}
    while chain.height < infraction + 2 * window:
        height = chain.height + 1
        txs: list[Transaction] = [chain.propose(honest)]
        if height == infraction + 1:  # every offender unstakes everything at once
            txs += [chain.sign(keys[label], "unstake", amount=OFFENDER_BOND) for label in labels]
        if height == release:  # the unbonded stake is liquid from this block on: it leaves
            for label in labels:
                amount = chain.account(keys[label].address).unbonding_total
                moved[label] = amount
                txs.append(chain.sign(keys[label], "transfer", to=getaway, amount=amount))
        due = [label for label in labels if infraction + delays[label] == height]
        for label in due:
            try:
                check_evidence(chain.view(), evidence[label], height, chain.params)
            except EvidenceTooOld as exc:
                refusals[label] = f"{type(exc).__name__}: {exc}"
        chain.forge(txs, evidence=[evidence[label] for label in due])
        meter.advance()
    accounts = {label: chain.account(keys[label].address) for label in labels}
    punished = {label for label in labels if accounts[label].slashed > 0}
    # check_evidence takes evidence fewer than unbonding_blocks blocks old: delays 1..window-1.
    in_window = {label for label in labels if delays[label] < window}
    late = sorted((label for label in labels if label not in in_window), key=lambda l: delays[l])
    early = sorted(in_window, key=lambda l: delays[l])

    naive_side = Side(f"no lock-up and no evidence: the stake leaves at once, {trials} validators", 0.0, 0.0,
                      stats.wilson(0, trials), trials)
    posctl_side = Side(f"posctl, evidence {1}..{2 * window} blocks late (uniform), {trials} validators",
                       len(punished) / trials, (window - 1) / (2 * window), stats.wilson(len(punished), trials),
                       trials)
    details = [
        f"unbonding_blocks = {window}: every offender equivocated at height {infraction} and unstaked at "
        f"height {infraction + 1}; the stake was liquid at height {release} and moved away at once",
        f"punished: {len(punished)} of {trials}; exactly those reported fewer than {window} blocks late "
        f"(P = {window - 1}/{2 * window}): {punished == in_window}; refused as too old: {len(refusals)}",
    ]
    if early:
        label = early[-1]
        details.append(f"{label}, reported {delays[label]} blocks late: {_balances(accounts[label])} "
                       f"(slashed from its unbonding entry)")
    if late:
        label = late[0]
        details.append(f"{label}, reported {delays[label]} blocks late: refused, {refusals.get(label, 'not checked')}")
        details.append(f"{label} afterwards: {_balances(accounts[label])}; {moved.get(label, 0)} tokens already "
                       "moved on")
    return Outcome(
        scenario="after-unbonding",
        attack=("A validator equivocates, unstakes everything at once and hopes the evidence arrives after "
                "its stake has unbonded."),
        measure="share of equivocations punished (evidence 1 to 2 x unbonding_blocks late)",
        naive=naive_side,
        posctl=posctl_side,
        defence=("ledger.consensus.evidence.check_evidence refuses evidence unbonding_blocks or more blocks old "
                 "(EvidenceTooOld), and ledger.consensus.state.slash_validator also cuts unbonding entries begun "
                 "after the infraction: the lock-up keeps the stake in reach exactly as long as evidence is valid"),
        verdict=decide_verdict(naive_side, posctl_side),
        details=details,
        chains=[chain],
    )


# ---- offline -------------------------------------------------------------------------------


def run_offline(blocks: int, seed: int, progress: Progress) -> Outcome:
    meter = Meter(blocks + UNJAIL_BLOCKS + 1, progress)
    chain, keys = lab_chain(seed, OFFLINE_BONDS, max_missed=OFFLINE_MAX_MISSED)
    online, offline = keys["online"], keys["offline"]
    weights = chain.eligible_weights()
    p = weights[offline.address] / sum(weights.values())
    in_draw = 0
    while in_draw < blocks and offline.address in chain.eligible_weights():
        chain.forge([chain.propose(online)])
        in_draw += 1
        meter.advance()
    account = chain.account(offline.address)
    jailed_at = chain.height if account.jailed else None
    details = [
        f"the offline validator holds {p:.0%} of the eligible stake; max_missed = {OFFLINE_MAX_MISSED} on the lab "
        "chain (100 by default)",
        f"posctl: jailed at height {jailed_at} after {account.missed} missed turns as first drawn; "
        f"then: {_balances(account)}" if jailed_at else f"posctl: not jailed within {blocks} blocks",
    ]
    if jailed_at is not None:
        chain.forge([chain.propose(online), chain.sign(offline, "unjail")])
        meter.advance()
        back = chain.account(offline.address)
        wins = 0
        for _ in range(UNJAIL_BLOCKS):
            chain.forge([chain.propose(online), chain.propose(offline)])
            wins += chain.tip.validator == offline.address
            meter.advance()
        details.append(f"unjail tx in block {jailed_at + 1}: jailed={back.jailed}, missed={back.missed}; back "
                       f"online it won {wins} of the next {UNJAIL_BLOCKS} blocks (expected {p * UNJAIL_BLOCKS:.0f})")
    expected = stats.negative_binomial_capped_mean(OFFLINE_MAX_MISSED, p, blocks) / blocks
    low, high = stats.negative_binomial_range(OFFLINE_MAX_MISSED, p, blocks)
    naive_side = Side(f"no liveness rule: an absent validator stays a validator, {blocks} blocks", 1.0, 1.0,
                      stats.wilson(blocks, blocks), blocks)
    posctl_side = Side(f"posctl, {blocks} blocks (interval: negative binomial 2.5-97.5%)", in_draw / blocks,
                       expected, (low / blocks, high / blocks), blocks)
    return Outcome(
        scenario="offline",
        attack="A bonded validator stops proposing but keeps its place in the validator set.",
        measure="share of the run's blocks the offline validator stays in the draw",
        naive=naive_side,
        posctl=posctl_side,
        defence=("ledger.consensus.fork.record_liveness counts a missed turn whenever the first-drawn validator has "
                 "no proposal in the block; ledger.consensus.state.record_missed_turn jails at max_missed; "
                 "state.unjail (an unjail tx) brings it back"),
        verdict=decide_verdict(naive_side, posctl_side),
        details=details,
        chains=[chain],
    )
