"""The stake-weighted lottery that picks each block's validator — pure, so anyone can redo it.

The tutorial put one entry per staked token into a pool and picked one at random with the
clock as seed: memory grew with total stake and nobody could check the draw. Here the seed
comes from the chain (``compute_seed``), the draw is a uniform integer in [0, W) found by
rejection sampling (no modulo bias), and the winner is located by bisection in the cumulative
weights: O(n log n) in participants, and a stake of 10^15 costs what a stake of 10 costs.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import operator
from typing import Mapping

from ledger import encoding
from ledger.errors import LotteryError

SEED_TAG = "posctl/lottery-seed"
"""Domain tag of the per-block seed."""

MAX_TOTAL_WEIGHT_BITS = 256
"""One SHA-256 output feeds each rejection-sampling attempt, so W must stay below 2^256."""


def compute_seed(prev_hash: bytes, height: int) -> bytes:
    """The lottery seed of block ``height``: fixed by its parent, known to everyone."""
    if height < 0:
        raise LotteryError(f"height {height} is negative")
    return encoding.tagged_hash(SEED_TAG, bytes(prev_hash) + height.to_bytes(8, "big"))


def uniform_below(seed: bytes, bound: int) -> int:
    """A uniform integer in [0, bound) from the seed: hash, keep ``bound.bit_length()`` bits,
    retry with the next counter if the candidate is too large (fewer than 2 tries on average)."""
    if bound < 1:
        raise LotteryError(f"cannot draw below {bound}")
    bits = bound.bit_length()
    if bits > MAX_TOTAL_WEIGHT_BITS:
        raise LotteryError("total weight is too large to draw from (2^256 or more)")
    shift = MAX_TOTAL_WEIGHT_BITS - bits
    for counter in itertools.count():
        digest = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        candidate = int.from_bytes(digest, "big") >> shift
        if candidate < bound:
            return candidate
    raise LotteryError("unreachable")  # pragma: no cover - itertools.count never ends


def cumulative_weights(weights: Mapping[str, int]) -> tuple[list[str], list[int]]:
    """Participants in address order with their running totals; rejects non-positive weights.

    Written with C-level helpers (``sorted``, ``itemgetter``, ``map``, ``accumulate``): with
    100,000 participants a Python-level loop here would cost more than the sort itself.
    """
    if not weights:
        raise LotteryError("no participants: a lottery needs at least one positive weight")
    values = weights.values()  # checked in the mapping's own order: memory-friendly
    if set(map(type, values)) != {int} or min(values) <= 0:
        bad = next(a for a, w in weights.items() if type(w) is not int or w <= 0)
        raise LotteryError(f"weight of {bad} is {weights[bad]!r}: weights must be positive integers")
    addresses = sorted(weights)
    stakes = operator.itemgetter(*addresses)(weights) if len(addresses) > 1 else (weights[addresses[0]],)
    return addresses, list(itertools.accumulate(stakes))


def draw(seed: bytes, weights: Mapping[str, int]) -> str:
    """The winning address: chance of each participant = its weight / total weight."""
    addresses, totals = cumulative_weights(weights)
    ticket = uniform_below(seed, totals[-1])
    return addresses[bisect.bisect_right(totals, ticket)]
