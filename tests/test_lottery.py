import hashlib
import math

import pytest
from hypothesis import given, settings, strategies as st

from ledger.consensus import lottery
from ledger.errors import LotteryError


def seed_of(i: int) -> bytes:
    return hashlib.sha256(b"fixed-test-seed:%d" % i).digest()


def test_seed_is_a_function_of_prev_hash_and_height():
    a = lottery.compute_seed(bytes(32), 1)
    assert a == lottery.compute_seed(bytes(32), 1)
    assert a != lottery.compute_seed(bytes(32), 2)
    assert a != lottery.compute_seed(b"\x01" + bytes(31), 1)


def test_empty_and_non_positive_weights_raise_a_ledger_error():
    with pytest.raises(LotteryError, match="no participants"):
        lottery.draw(seed_of(0), {})
    with pytest.raises(LotteryError, match="positive"):
        lottery.draw(seed_of(0), {"a": 5, "b": 0})
    with pytest.raises(LotteryError, match="positive"):
        lottery.draw(seed_of(0), {"a": -1})


def test_single_participant_always_wins():
    assert all(lottery.draw(seed_of(i), {"only": 7}) == "only" for i in range(50))


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(1, 10**15), min_size=1, max_size=30), st.binary(min_size=32, max_size=32))
@settings(max_examples=200)
def test_draw_is_independent_of_mapping_order(weights, seed):
    reordered = dict(reversed(list(weights.items())))
    assert lottery.draw(seed, weights) == lottery.draw(seed, reordered)
    assert lottery.draw(seed, weights) in weights


def test_uniform_below_stays_in_range_for_awkward_bounds():
    for bound in [1, 2, 3, 2**63 - 1, 2**64 + 1, 10**15 * 100_000]:
        for i in range(20):
            assert 0 <= lottery.uniform_below(seed_of(i), bound) < bound


def test_winner_frequencies_match_bonded_shares():
    """Chi-square goodness of fit, fixed seeds so the test is deterministic."""
    weights = {"a": 100, "b": 300, "c": 600, "d": 1000}
    total = sum(weights.values())
    draws = 20_000
    counts = dict.fromkeys(weights, 0)
    for i in range(draws):
        counts[lottery.draw(seed_of(i), weights)] += 1
    chi2 = sum((counts[k] - draws * w / total) ** 2 / (draws * w / total) for k, w in weights.items())
    # 3 degrees of freedom: the 99.9% critical value is 16.27.
    assert chi2 < 16.27, (counts, chi2)


def test_huge_stakes_cost_like_small_ones_and_stay_proportional():
    weights = {"whale": 10**15, "minnow": 10**15 // 4}
    wins = sum(lottery.draw(seed_of(i), weights) == "whale" for i in range(4000))
    assert abs(wins / 4000 - 0.8) < 0.03
    addresses, totals = lottery.cumulative_weights({str(i): 10**15 for i in range(1000)})
    assert len(totals) == 1000 and totals[-1] == 10**18


def test_no_modulo_bias_for_a_bound_just_above_a_power_of_two():
    """bound = 2^8 + 1: reducing a 9-bit sample modulo 257 would make 255 and 256 half as
    likely as the rest; rejection sampling keeps every value equally likely."""
    bound = 2**8 + 1
    draws = 60_000
    counts = [0] * bound
    for i in range(draws):
        counts[lottery.uniform_below(seed_of(i), bound)] += 1
    expected = draws / bound
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 340  # 256 degrees of freedom: 99.9% critical value about 330.8
    top = counts[255] + counts[256]
    assert math.isclose(top / draws, 2 / bound, rel_tol=0.2)
