"""The stake-weighted lottery: a seed nobody can re-roll, and a draw nobody can re-draw.

The tutorial put one entry per staked token into a pool and picked one with the clock as seed;
v1 seeded with the parent hash and drew among the block's proposers, so whoever assembled the
block could re-roll it (another timestamp, another tx set) or re-draw it (leave a proposal out).

v2 fixes both (DESIGN.md, decisions 15-16):

* **Seed.** Block 1's seed is ``genesis_seed(genesis hash)``; block h's seed is
  ``compute_seed(seed(h-1), beta(h-1))``, where beta is the VRF output of block h-1's validator.
  Nothing the forger chooses enters it, and a VRF output is unique per key and input.
* **Order.** The seed fixes an order over *every eligible validator of the parent state*:
  draw k picks r uniform in [0, W_k) (W_k: the stake not yet drawn) by rejection sampling, and
  the validator whose range holds r (bisection over cumulative stake in address order) is next.
  Nobody is drawn twice. The block's validator is the first in that order whose proposal is in
  the block, so leaving a proposal out only hands the block down an order fixed in advance.

Among any set of proposers each wins with probability stake / their total stake (successive
sampling without replacement). Cost: O(n log n) to sort, O(log n) per draw after the first,
whatever the size of the stakes.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import operator
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from ledger import encoding
from ledger.errors import LotteryError

SEED_TAG = "posctl/seed"
"""Domain tag of the seed chain."""

ALPHA_TAG = "posctl/vrf-alpha"
"""Domain tag of the VRF input a proposal proves over."""

DRAW_TAG = "posctl/draw"
"""Domain tag of the per-draw randomness derived from a seed."""

MAX_TOTAL_WEIGHT_BITS = 256
"""One SHA-256 output feeds each rejection-sampling attempt, so W must stay below 2^256."""

TRACE_LIMIT = 32
"""Draws a block records in full; a winner further down is recorded alone after them."""


@dataclass(frozen=True)
class TraceEntry:
    """One draw of the order: who was drawn, how, and whether it had proposed."""

    position: int
    """1 for the first validator drawn (d1), 2 for the next, …"""
    address: str
    bonded: int
    r: int
    """The uniform draw in [0, remaining) that landed in this validator's range."""
    lo: int
    hi: int
    """This validator's range [lo, hi) among the stake not yet drawn, in address order."""
    remaining: int
    """Total stake not yet drawn before this draw (W_k)."""
    proposed: bool

    def to_list(self) -> list[object]:
        """Compact canonical form stored in the block (booleans as 0/1: integers only)."""
        return [self.position, self.address, self.bonded, self.r, self.lo, self.hi, self.remaining,
                int(self.proposed)]

    @classmethod
    def from_list(cls, item: object) -> "TraceEntry":
        if not isinstance(item, list) or len(item) != 8:
            raise encoding.EncodingError(
                "a draw trace entry is [position, address, bonded, r, lo, hi, remaining, proposed]"
            )
        position, address, bonded, r, lo, hi, remaining, proposed = item
        flag = encoding.require_int(proposed, "proposed")
        if flag not in (0, 1):
            raise encoding.EncodingError("trace field 'proposed' is 0 or 1")
        return cls(
            position=encoding.require_int(position, "position"),
            address=encoding.require_str(address, "address"),
            bonded=encoding.require_int(bonded, "bonded"),
            r=encoding.require_int(r, "r"),
            lo=encoding.require_int(lo, "lo"),
            hi=encoding.require_int(hi, "hi"),
            remaining=encoding.require_int(remaining, "remaining"),
            proposed=bool(flag),
        )


# ---- the seed chain ------------------------------------------------------------------------


def genesis_seed(genesis_hash: bytes) -> bytes:
    """The seed of block 1: fixed by genesis, before any validator could influence it."""
    return encoding.tagged_hash(SEED_TAG, b"genesis" + bytes(genesis_hash))


def compute_seed(parent_seed: bytes, vrf_output: bytes) -> bytes:
    """The seed of block h from block h-1's seed and its validator's VRF output (beta)."""
    if len(parent_seed) != 32 or len(vrf_output) != 32:
        raise LotteryError("a seed and a VRF output are 32 bytes each")
    return encoding.tagged_hash(SEED_TAG, bytes(parent_seed) + bytes(vrf_output))


def vrf_alpha(chain_id: str, height: int, seed: bytes) -> bytes:
    """What a proposal for ``height`` proves over: the chain, the height and that height's seed."""
    if height < 1:
        raise LotteryError(f"proposals are for heights from 1, got {height}")
    return encoding.tagged_hash(
        ALPHA_TAG, chain_id.encode("ascii") + b"\0" + height.to_bytes(8, "big") + bytes(seed)
    )


# ---- the draw ------------------------------------------------------------------------------


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


def draw_seed(seed: bytes, position: int) -> bytes:
    """The randomness of draw number ``position`` (1-based) of an order."""
    return encoding.tagged_hash(DRAW_TAG, bytes(seed) + position.to_bytes(8, "big"))


def cumulative_weights(weights: Mapping[str, int]) -> tuple[list[str], list[int]]:
    """Validators in address order with their running totals; rejects non-positive weights.

    Written with C-level helpers (``sorted``, ``itemgetter``, ``accumulate``): with 100,000
    validators a Python-level loop here would cost more than the sort itself.
    """
    if not weights:
        raise LotteryError("no eligible validators: a lottery needs at least one positive weight")
    values = weights.values()
    if set(map(type, values)) != {int} or min(values) <= 0:
        bad = next(a for a, w in weights.items() if type(w) is not int or w <= 0)
        raise LotteryError(f"weight of {bad} is {weights[bad]!r}: weights must be positive integers")
    addresses = sorted(weights)
    stakes = operator.itemgetter(*addresses)(weights) if len(addresses) > 1 else (weights[addresses[0]],)
    return addresses, list(itertools.accumulate(stakes))


class _Remaining:
    """Stake not yet drawn, as a Fenwick tree over address order: remove and find in O(log n).

    Built only when a second draw is needed; the first draw bisects the plain cumulative list.
    """

    def __init__(self, totals: Sequence[int]) -> None:
        size = len(totals)
        self.size = size
        self.tree = [0] * (size + 1)
        for i in range(1, size + 1):  # tree[i] = sum of weights (i - lowbit(i), i]
            low = i - (i & -i)
            self.tree[i] = totals[i - 1] - (totals[low - 1] if low else 0)
        self.top = 1 << size.bit_length()

    def prefix(self, count: int) -> int:
        """Sum of the first ``count`` weights."""
        total = 0
        while count > 0:
            total += self.tree[count]
            count -= count & -count
        return total

    def remove(self, index: int, weight: int) -> None:
        i = index + 1
        while i <= self.size:
            self.tree[i] -= weight
            i += i & -i

    def find(self, r: int) -> int:
        """The index whose range among the remaining weights holds ``r``."""
        pos, step = 0, self.top
        while step:
            nxt = pos + step
            if nxt <= self.size and self.tree[nxt] <= r:
                pos = nxt
                r -= self.tree[nxt]
            step >>= 1
        return pos


def draw_entries(seed: bytes, weights: Mapping[str, int]) -> Iterator[TraceEntry]:
    """The fixed order of ``seed`` over ``weights``, lazily, with how each draw was made.

    ``proposed`` is left False: :func:`pick_validator` fills it in.
    """
    addresses, totals = cumulative_weights(weights)
    remaining = totals[-1]
    r = uniform_below(draw_seed(seed, 1), remaining)
    index = bisect.bisect_right(totals, r)
    lo = totals[index - 1] if index else 0
    stake = totals[index] - lo
    yield TraceEntry(1, addresses[index], stake, r, lo, lo + stake, remaining, False)
    if len(addresses) == 1:
        return
    tree = _Remaining(totals)
    for position in range(2, len(addresses) + 1):
        tree.remove(index, stake)
        remaining -= stake
        r = uniform_below(draw_seed(seed, position), remaining)
        index = tree.find(r)
        lo = tree.prefix(index)
        stake = weights[addresses[index]]
        yield TraceEntry(position, addresses[index], stake, r, lo, lo + stake, remaining, False)


def draw_order(seed: bytes, weights: Mapping[str, int]) -> Iterator[str]:
    """The fixed order, lazily, each address once: d1, d2, …"""
    return (entry.address for entry in draw_entries(seed, weights))


def pick_validator(
    seed: bytes, weights: Mapping[str, int], proposers: "set[str] | frozenset[str] | Mapping[str, object]"
) -> tuple[str, list[TraceEntry]]:
    """The first validator of the order that proposed, and the bounded trace of the draw.

    The trace holds the first :data:`TRACE_LIMIT` draws and, if the winner came later, the
    winner's entry after them. Raises :class:`LotteryError` when no eligible validator proposed.
    """
    if not any(address in weights for address in proposers):
        raise LotteryError("no proposal from an eligible validator: nobody can win this block")
    trace: list[TraceEntry] = []
    for entry in draw_entries(seed, weights):
        proposed = entry.address in proposers
        if proposed or entry.position <= TRACE_LIMIT:
            trace.append(TraceEntry(entry.position, entry.address, entry.bonded, entry.r, entry.lo, entry.hi,
                                    entry.remaining, proposed))
        if proposed:
            return entry.address, trace
    raise LotteryError("unreachable: a proposer is always drawn")  # pragma: no cover
