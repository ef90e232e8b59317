"""The 95% intervals the lab prints beside each measurement.

* :func:`wilson` — the Wilson score interval for a share (successes out of independent
  trials). Unlike the textbook ``p ± 1.96·sqrt(p(1-p)/n)`` it stays inside [0, 1] and does not
  collapse to a point at 0/n or n/n, which the lab's refusal counts often are.
* :func:`markov_wilson` — the same for a share measured along a two-state Markov chain (the
  naive grinder, whose wins come in runs): the Wilson interval over the *effective* number of
  trials ``n·(1-λ)/(1+λ)``, λ the chain's lag-1 autocorrelation. A plain Wilson interval there
  would be about three times too narrow.
* :func:`negative_binomial_range` — where the number of blocks until the m-th success of
  probability p falls, 2.5% to 97.5% (the offline validator's blocks until jailing).
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal distribution."""


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``successes / trials``."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    lo, hi = _wilson(successes / trials, float(trials), z)
    # Exact ends: rounding must not move the bound of 0/n or n/n off 0 or 1.
    return (0.0 if successes == 0 else lo), (1.0 if successes == trials else hi)


def _wilson(share: float, n: float, z: float) -> tuple[float, float]:
    z2 = z * z
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def markov_wilson(share: float, trials: int, autocorrelation: float, z: float = Z95) -> tuple[float, float]:
    """Wilson interval of a share measured over ``trials`` correlated steps of a Markov chain."""
    if trials < 1 or not 0.0 <= share <= 1.0:
        raise ValueError(f"need a share in [0, 1] and trials >= 1, got {share} over {trials}")
    if not -1.0 < autocorrelation < 1.0:
        raise ValueError(f"autocorrelation must be in (-1, 1), got {autocorrelation}")
    effective = max(1.0, trials * (1 - autocorrelation) / (1 + autocorrelation))
    return _wilson(share, effective, z)


def negative_binomial_range(successes: int, p: float, cap: int, tail: float = 0.025) -> tuple[int, int]:
    """The ``tail`` and ``1 - tail`` quantiles of T = trials until the ``successes``-th success,
    T capped at ``cap`` (a run that stops at ``cap`` trials reports ``cap``)."""
    if successes < 1 or not 0.0 < p <= 1.0 or cap < 1:
        raise ValueError("need successes >= 1, 0 < p <= 1 and cap >= 1")
    low = high = cap
    cumulative = 0.0
    for t in range(successes, cap):
        cumulative += math.comb(t - 1, successes - 1) * p**successes * (1 - p) ** (t - successes)
        if low == cap and cumulative >= tail:
            low = t
        if cumulative >= 1 - tail:
            high = t
            break
    return low, high


NEGLIGIBLE_MASS = 1e-12
"""Probability left in T's tail at which the capped mean stops summing (see below)."""


def negative_binomial_capped_mean(successes: int, p: float, cap: int) -> float:
    """E[min(T, cap)] for T = trials until the ``successes``-th success of probability ``p``.

    The sum stops once all but :data:`NEGLIGIBLE_MASS` of T's probability is counted: without the
    stop, ``posctl lab run offline --blocks 100000000`` summed 10^8 terms — minutes — for a run
    that jails the validator within some twenty blocks. The remainder counted at ``cap`` bounds
    the answer from above, and so does E[T] = m/p; the smaller is within E[T; T > t] of the
    truth, t the last term summed (about t × 1e-12).
    """
    if successes < 1 or not 0.0 < p <= 1.0 or cap < 1:
        raise ValueError("need successes >= 1, 0 < p <= 1 and cap >= 1")
    mean = 0.0
    below = 0.0
    for t in range(successes, cap):
        mass = math.comb(t - 1, successes - 1) * p**successes * (1 - p) ** (t - successes)
        mean += t * mass
        below += mass
        if below >= 1 - NEGLIGIBLE_MASS:
            break
    return min(successes / p, mean + cap * max(0.0, 1 - below))
