"""The v2 lottery API (ledger/consensus/lottery.py): seeds, uniform draws, the fixed order and
the bounded trace, on their edge cases and errors.

Statistical properties of whole draws (shares, censorship, grinding, cost) live in
tests/test_draw_properties.py; this file checks each function against what it promises.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given, settings, strategies as st

from ledger.consensus import lottery
from ledger.consensus.lottery import TRACE_LIMIT, TraceEntry
from ledger.encoding import EncodingError
from ledger.errors import LedgerError, LotteryError
from tests.ledgerkit import CountingWeights


def seed_of(i: int) -> bytes:
    return hashlib.sha256(b"fixed-test-seed:%d" % i).digest()


def named(count: int, stake: int = 10) -> dict[str, int]:
    """``count`` validators ``v000``, ``v001``, … with equal stakes."""
    return {f"v{i:03d}": stake for i in range(count)}


weights_strategy = st.dictionaries(
    st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=6),
    st.integers(1, 10**15), min_size=1, max_size=25,
)
seed_strategy = st.binary(min_size=32, max_size=32)


# ---- the seed chain ------------------------------------------------------------------------


def test_genesis_seed_is_a_32_byte_function_of_the_genesis_hash():
    a = lottery.genesis_seed(bytes(32))
    assert len(a) == 32
    assert a == lottery.genesis_seed(bytes(32))
    assert a != lottery.genesis_seed(b"\x01" + bytes(31))
    # never the bare hash of its input: a genesis seed is tagged, like every other seed
    assert a != hashlib.sha256(bytes(32)).digest()


def test_compute_seed_depends_on_both_parent_seed_and_vrf_output():
    parent, beta = seed_of(1), seed_of(2)
    seed = lottery.compute_seed(parent, beta)
    assert len(seed) == 32
    assert seed == lottery.compute_seed(parent, beta)
    assert seed != lottery.compute_seed(seed_of(3), beta)
    assert seed != lottery.compute_seed(parent, seed_of(3))
    assert seed != lottery.compute_seed(beta, parent)  # the roles are not interchangeable


@pytest.mark.parametrize("parent, beta", [
    (bytes(31), bytes(32)), (bytes(32), bytes(33)), (b"", bytes(32)), (bytes(32), b""),
])
def test_compute_seed_refuses_anything_but_two_32_byte_values(parent, beta):
    with pytest.raises(LotteryError, match="32 bytes"):
        lottery.compute_seed(parent, beta)


def test_a_genesis_seed_and_a_chained_seed_never_collide_by_construction():
    """genesis_seed(h) hashes b"genesis" + h (39 bytes); compute_seed hashes 64 bytes."""
    assert lottery.genesis_seed(seed_of(1)) != lottery.compute_seed(seed_of(1), seed_of(1))


def test_vrf_alpha_binds_chain_height_and_seed():
    alpha = lottery.vrf_alpha("posctl-test", 5, seed_of(0))
    assert len(alpha) == 32
    assert alpha == lottery.vrf_alpha("posctl-test", 5, seed_of(0))
    others = {
        lottery.vrf_alpha("posctl-other", 5, seed_of(0)),
        lottery.vrf_alpha("posctl-test", 6, seed_of(0)),
        lottery.vrf_alpha("posctl-test", 5, seed_of(1)),
    }
    assert alpha not in others and len(others) == 3


@pytest.mark.parametrize("height", [0, -1])
def test_vrf_alpha_refuses_heights_below_one(height):
    with pytest.raises(LotteryError, match="from 1"):
        lottery.vrf_alpha("posctl-test", height, seed_of(0))


# ---- uniform_below -------------------------------------------------------------------------


def reference_candidates(seed: bytes, bound: int) -> Iterator[int]:
    """The candidates rejection sampling looks at, computed here from the documented rule:
    SHA-256(seed ‖ counter as 8 bytes), keeping the top ``bound.bit_length()`` bits."""
    for counter in itertools.count():
        digest = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        yield int.from_bytes(digest, "big") >> (256 - bound.bit_length())


@pytest.mark.parametrize("bound", [0, -1, -(2**70)])
def test_uniform_below_refuses_an_empty_range(bound):
    with pytest.raises(LotteryError, match="cannot draw below"):
        lottery.uniform_below(seed_of(0), bound)


def test_uniform_below_accepts_up_to_2_pow_256_minus_1_and_refuses_2_pow_256():
    assert 0 <= lottery.uniform_below(seed_of(0), 2**256 - 1) < 2**256 - 1
    with pytest.raises(LotteryError, match="too large"):
        lottery.uniform_below(seed_of(0), 2**256)


def test_uniform_below_one_is_always_zero():
    assert {lottery.uniform_below(seed_of(i), 1) for i in range(100)} == {0}


@pytest.mark.parametrize("bound", [1, 2, 3, 4, 5, 6, 7, 256, 257, 1000, 2**63 - 1, 2**64, 2**64 + 1, 10**20])
def test_uniform_below_returns_the_first_candidate_in_range_unchanged(bound):
    """Exact check of the rejection sampling, not a statistical one: for every seed of a fixed
    set the result is the first candidate below ``bound``, returned as is. Candidates are
    uniform over [0, 2^bits), so one kept only when below ``bound`` and never reduced (no
    modulo, no scaling) is uniform over [0, bound): every value has exactly one preimage."""
    retried = 0
    for i in range(300):
        seed = seed_of(i)
        candidates = reference_candidates(seed, bound)
        first = next(candidates)
        expected = first if first < bound else next(c for c in candidates if c < bound)
        assert lottery.uniform_below(seed, bound) == expected
        retried += first >= bound
    if 1 - bound / 2 ** bound.bit_length() > 0.1:
        # the retry path really ran where it matters: 3 rejects 1 candidate in 4, 257 and
        # 2^64 + 1 about half (2^63 - 1 only one in 2^63, so it is not asked of it)
        assert retried > 0


def test_uniform_below_is_unbiased_on_small_ranges_exactly_counted():
    """Over a fixed seed set, count every outcome for bound 3 and 5. Taking the candidate
    modulo the bound instead would give 0 twice the weight of 2 (bound 3, 2-bit candidates)
    and 0..2 twice the weight of 3..4 (bound 5, 3-bit candidates): the observed counts here
    are within a chi-square critical value at alpha = 0.001 of uniform, which the modulo
    version's expected skew (a third of the draws misplaced) would exceed many times over."""
    draws = 30_000
    for bound, critical in ((3, 13.82), (5, 18.47)):  # chi2 0.999 quantiles, 2 and 4 d.o.f.
        counts = [0] * bound
        modulo = [0] * bound
        for i in range(draws):
            seed = seed_of(i)
            counts[lottery.uniform_below(seed, bound)] += 1
            modulo[next(reference_candidates(seed, bound)) % bound] += 1
        expected = draws / bound
        chi2 = sum((c - expected) ** 2 / expected for c in counts)
        assert chi2 < critical, (bound, counts, chi2)
        modulo_chi2 = sum((c - expected) ** 2 / expected for c in modulo)
        assert modulo_chi2 > 10 * critical, (bound, modulo, modulo_chi2)  # the test can tell


@given(seed_strategy, st.integers(1, 2**256 - 1))
@settings(max_examples=300)
def test_uniform_below_stays_in_range(seed, bound):
    assert 0 <= lottery.uniform_below(seed, bound) < bound


def test_draw_seed_differs_per_position_and_per_seed():
    seeds = {lottery.draw_seed(seed_of(s), position) for s in range(5) for position in range(1, 50)}
    assert len(seeds) == 5 * 49
    assert all(len(s) == 32 for s in seeds)


# ---- cumulative_weights --------------------------------------------------------------------


def test_cumulative_weights_sorts_by_address_and_accumulates():
    addresses, totals = lottery.cumulative_weights({"c": 5, "a": 1, "b": 10})
    assert addresses == ["a", "b", "c"]
    assert totals == [1, 11, 16]
    assert lottery.cumulative_weights({"only": 7}) == (["only"], [7])


def test_cumulative_weights_refuses_an_empty_set():
    with pytest.raises(LotteryError, match="no eligible validators"):
        lottery.cumulative_weights({})


@pytest.mark.parametrize("bad", [0, -1, -(10**20), 1.0, 2.5, "5", None, True, False, 10**20 * 1.0])
def test_cumulative_weights_refuses_a_weight_that_is_not_a_positive_int_and_names_it(bad):
    with pytest.raises(LotteryError, match=r"weight of bad-one is .*positive integers"):
        lottery.cumulative_weights({"a": 5, "bad-one": bad, "z": 3})


def test_a_lottery_error_is_a_ledger_error():
    """So the CLI reports it as one line, never a traceback."""
    assert issubclass(LotteryError, LedgerError)


def test_total_weight_of_2_pow_256_cannot_be_drawn_from():
    with pytest.raises(LotteryError, match="too large"):
        next(lottery.draw_order(seed_of(0), {"a": 2**255, "b": 2**255}))
    assert next(lottery.draw_order(seed_of(0), {"a": 2**255, "b": 2**255 - 1})) in {"a", "b"}


# ---- draw_entries / draw_order -------------------------------------------------------------


@pytest.mark.parametrize("weights", [{}, {"a": 0}, {"a": 3, "b": -2}])
def test_draw_order_raises_on_bad_weights_at_first_use(weights):
    with pytest.raises(LotteryError):
        next(lottery.draw_order(seed_of(0), weights))


@given(weights_strategy, seed_strategy)
@settings(max_examples=200)
def test_draw_entries_are_the_documented_draws(weights, seed):
    """Each entry, recomputed here from the rule: r = uniform_below(draw_seed(seed, k), W_k);
    the drawn validator's range [lo, hi) among the undrawn, in address order, holds r."""
    undrawn = dict(sorted(weights.items()))
    for position, entry in enumerate(lottery.draw_entries(seed, weights), start=1):
        remaining = sum(undrawn.values())
        assert entry.position == position
        assert entry.remaining == remaining
        assert entry.r == lottery.uniform_below(lottery.draw_seed(seed, position), remaining)
        before = 0
        for address, stake in undrawn.items():
            if address == entry.address:
                break
            before += stake
        assert (entry.lo, entry.hi, entry.bonded) == (before, before + weights[entry.address], weights[entry.address])
        assert entry.lo <= entry.r < entry.hi
        assert entry.proposed is False
        del undrawn[entry.address]
    assert not undrawn


@given(weights_strategy, seed_strategy)
@settings(max_examples=200)
def test_draw_order_yields_every_address_exactly_once(weights, seed):
    order = list(lottery.draw_order(seed, weights))
    assert len(order) == len(weights)
    assert set(order) == set(weights)


@given(weights_strategy, seed_strategy, st.randoms(use_true_random=False))
@settings(max_examples=100)
def test_draw_order_does_not_depend_on_mapping_order(weights, seed, rnd):
    items = list(weights.items())
    rnd.shuffle(items)
    assert list(lottery.draw_order(seed, dict(items))) == list(lottery.draw_order(seed, weights))


def test_ranges_are_half_open_so_r_on_a_boundary_belongs_to_the_next_validator():
    """With unit stakes r is exactly the index of the drawn validator among the undrawn, in
    address order: r == lo, and r == 1 lands on the second address, never the first."""
    weights = named(7, stake=1)
    hits = set()
    for i in range(200):
        undrawn = sorted(weights)
        for entry in lottery.draw_entries(seed_of(i), weights):
            assert entry.address == undrawn[entry.r]
            assert (entry.lo, entry.hi) == (entry.r, entry.r + 1)
            hits.add((entry.position, entry.r))
            undrawn.remove(entry.address)
    assert (1, 1) in hits and (1, 6) in hits  # boundaries actually landed on


def test_draw_order_is_lazy():
    """Nothing is drawn before it is asked for, and each further address costs one lookup,
    not a pass over the set: a winner near the top of the order is found without drawing
    the other 9,995 validators."""
    weights = CountingWeights(named(10_000))
    order = lottery.draw_order(seed_of(0), weights)
    assert isinstance(order, Iterator)
    assert weights.lookups == 0  # nothing computed yet
    first = next(order)
    setup = weights.lookups
    assert setup <= 3 * 10_000  # a few passes to sort and sum the set, once
    next_four = list(itertools.islice(order, 4))
    assert weights.lookups - setup <= 4 * 2  # then each further draw touches one validator
    rest = list(order)
    assert len({first, *next_four, *rest}) == 10_000
    assert weights.lookups > setup + 9_000  # the rest really was drawn only on demand


def test_a_single_validator_is_the_whole_order_and_always_wins():
    for i in range(50):
        assert list(lottery.draw_order(seed_of(i), {"only": 7})) == ["only"]
        winner, trace = lottery.pick_validator(seed_of(i), {"only": 7}, {"only"})
        assert winner == "only"
        assert trace == [TraceEntry(1, "only", 7, trace[0].r, 0, 7, 7, True)]


def test_equal_stakes_tie_on_nothing_but_address_order():
    """Ties in stake are no special case: every one of 4 equal validators comes first about
    a quarter of the time over fixed seeds (chi-square, alpha = 0.001, 3 d.o.f.)."""
    weights = named(4)
    draws = 8000
    counts = dict.fromkeys(weights, 0)
    for i in range(draws):
        counts[next(lottery.draw_order(seed_of(i), weights))] += 1
    expected = draws / 4
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 16.27, counts


# ---- pick_validator ------------------------------------------------------------------------


def test_pick_validator_needs_an_eligible_proposer():
    weights = {"a": 5, "b": 7}
    for proposers in (set(), {"stranger"}, {"x": b"", "y": b""}):
        with pytest.raises(LotteryError, match="no proposal from an eligible validator"):
            lottery.pick_validator(seed_of(0), weights, proposers)


def test_pick_validator_refuses_bad_weights():
    with pytest.raises(LotteryError):
        lottery.pick_validator(seed_of(0), {"a": 0}, {"a"})
    with pytest.raises(LotteryError):
        lottery.pick_validator(seed_of(0), {}, {"a"})


@given(weights_strategy, seed_strategy, st.data())
@settings(max_examples=200)
def test_pick_validator_takes_the_first_proposer_of_the_order_and_ignores_strangers(weights, seed, data):
    proposers = data.draw(st.sets(st.sampled_from(sorted(weights)), min_size=1))
    strangers = {"stranger-" + a for a in proposers}  # not validators: never drawn, never win
    winner, trace = lottery.pick_validator(seed, weights, proposers | strangers)
    order = list(lottery.draw_order(seed, weights))
    assert winner == next(a for a in order if a in proposers)
    assert trace[-1].address == winner and trace[-1].proposed
    assert all(not entry.proposed for entry in trace[:-1])
    assert not {entry.address for entry in trace} & strangers
    # the same answer whether proposers come as a set, a frozenset or a mapping of VRF outputs
    as_mapping = dict.fromkeys(proposers | strangers, b"beta")
    assert lottery.pick_validator(seed, weights, as_mapping) == (winner, trace)
    assert lottery.pick_validator(seed, weights, frozenset(proposers)) == (winner, trace)


def order_of(seed: bytes, weights: dict[str, int]) -> list[str]:
    return list(lottery.draw_order(seed, weights))


@pytest.mark.parametrize("winner_position", [1, 2, TRACE_LIMIT - 1, TRACE_LIMIT, TRACE_LIMIT + 1,
                                             TRACE_LIMIT + 2, 100])
def test_trace_is_the_draws_up_to_the_winner_bounded_at_trace_limit(winner_position):
    """Up to TRACE_LIMIT draws are recorded in full; a winner drawn later is recorded alone
    after them, with its true position, so the trace never grows with the validator set."""
    weights = named(100)
    seed = seed_of(7)
    full = list(lottery.draw_entries(seed, weights))
    winner = full[winner_position - 1].address
    picked, trace = lottery.pick_validator(seed, weights, {winner})
    assert picked == winner
    recorded = min(winner_position, TRACE_LIMIT)
    assert len(trace) == recorded + (winner_position > TRACE_LIMIT)
    assert len(trace) <= TRACE_LIMIT + 1
    for got, drawn in zip(trace[:recorded], full):
        assert got.position == drawn.position and got.address == drawn.address
        assert (got.r, got.lo, got.hi, got.remaining, got.bonded) == (drawn.r, drawn.lo, drawn.hi, drawn.remaining,
                                                                       drawn.bonded)
    last = trace[-1]
    assert (last.position, last.address, last.proposed) == (winner_position, winner, True)
    assert [e.proposed for e in trace[:-1]] == [False] * (len(trace) - 1)


def test_a_winner_last_of_100_000_is_found_with_a_trace_of_trace_limit_plus_one():
    weights = {f"pos1{i:07d}": 1000 + i % 13 for i in range(100_000)}
    seed = seed_of(3)
    last = None
    for last in lottery.draw_order(seed, weights):
        pass
    winner, trace = lottery.pick_validator(seed, weights, {last})
    assert winner == last
    assert len(trace) == TRACE_LIMIT + 1
    assert trace[-1].position == 100_000 and trace[-1].remaining == trace[-1].bonded == weights[last]
    assert (trace[-1].lo, trace[-1].hi, trace[-1].r) == (0, weights[last], trace[-1].r)


# ---- TraceEntry ----------------------------------------------------------------------------


def test_trace_entry_round_trips_through_its_list_form():
    entry = TraceEntry(3, "pos1abc", 250, 17, 10, 260, 900, True)
    assert entry.to_list() == [3, "pos1abc", 250, 17, 10, 260, 900, 1]
    assert TraceEntry.from_list(entry.to_list()) == entry
    assert TraceEntry.from_list([1, "a", 1, 0, 0, 1, 1, 0]).proposed is False


@pytest.mark.parametrize("item", [
    None, "x", (1, "a", 1, 0, 0, 1, 1, 0), [1, "a", 1, 0, 0, 1, 1], [1, "a", 1, 0, 0, 1, 1, 0, 0],
    [1, "a", 1, 0, 0, 1, 1, 2], [1, "a", 1, 0, 0, 1, 1, True], [1, "a", 1, 0, 0, 1, 1, -1],
    ["1", "a", 1, 0, 0, 1, 1, 0], [1, 5, 1, 0, 0, 1, 1, 0], [1, "a", 1.0, 0, 0, 1, 1, 0],
    [1, "a", 1, None, 0, 1, 1, 0],
])
def test_trace_entry_from_list_refuses_malformed_items(item):
    with pytest.raises(EncodingError):
        TraceEntry.from_list(item)
