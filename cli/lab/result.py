"""What a scenario run hands back: one figure per side, the rule that decides, and a verdict.

The CLI renders it (text or ``--json``); tests read the same object, including the throwaway
chains the defended side ran on, so they can replay those chains independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

Progress = Callable[[float], None]
"""Called with the fraction of the run done so far, from 0.0 to 1.0."""


class Meter:
    """Counts work units (blocks, trials) against a total and reports the fraction done."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.progress = progress

    def advance(self, units: int = 1) -> None:
        self.done = min(self.total, self.done + units)
        self.progress(self.done / self.total)

DEFENDED, REDUCED, NO_GAIN, INCONCLUSIVE = "defended", "reduced", "no gain in either", "inconclusive"
"""Verdicts, decided from the measured intervals (see :func:`decide_verdict`)."""


@dataclass(frozen=True)
class Side:
    """One side's figure: measured, the formula's prediction (None if there is none), 95% interval."""

    label: str
    """How this side was run, e.g. ``v1 seed = H(prev_hash | height), 3000 blocks``."""
    measured: float
    predicted: float | None
    interval: tuple[float, float]
    trials: int
    """Blocks or trials behind ``measured``."""

    def to_json(self) -> dict[str, Any]:
        """The side as ``--json`` documents it: ``measured``, ``predicted``, ``interval``."""
        return {
            "measured": round(float(self.measured), 6),
            "predicted": None if self.predicted is None else round(float(self.predicted), 6),
            "interval": [round(float(self.interval[0]), 6), round(float(self.interval[1]), 6)],
        }

    def holds(self, value: float) -> bool:
        """Whether ``value`` lies in this side's interval."""
        return self.interval[0] <= value <= self.interval[1]


@dataclass
class Outcome:
    """A finished scenario."""

    scenario: str
    attack: str
    """The attack in one sentence."""
    measure: str
    """What the figures are, e.g. ``attacker's share of blocks``."""
    naive: Side
    posctl: Side
    defence: str
    """The rule that makes the difference, naming its module and function."""
    verdict: str
    details: list[str] = field(default_factory=list)
    """Extra lines worth reading: balances before and after, refusal messages, sub-measurements."""
    seed: int = 0
    blocks: int = 0
    unit: str = "blocks"
    """What ``blocks`` counts: ``blocks`` or ``trials``."""
    chains: list[Any] = field(default_factory=list, repr=False)
    """The :class:`cli.lab.testnet.LabChain` objects the defended side ran on (not rendered)."""

    def to_json(self) -> dict[str, Any]:
        """The one document ``posctl lab run --json`` prints, with exactly the fields issue 11
        documents; the attack sentence, the models and the details are for the text output."""
        return {
            "scenario": self.scenario,
            "naive": self.naive.to_json(),
            "posctl": self.posctl.to_json(),
            "defence": self.defence,
            "verdict": self.verdict,
        }


def decide_verdict(naive: Side, posctl: Side, target: float | None = None) -> str:
    """Judge from the intervals, against ``target`` (by default posctl's own prediction: what the
    defended rules say should happen):

    ``defended`` when posctl's interval holds the target and the naive one does not;
    ``no gain in either`` when both hold it; ``reduced`` when the two sides differ clearly but
    posctl misses the target; otherwise ``inconclusive`` (run more blocks).
    """
    if target is None:
        target = posctl.predicted if posctl.predicted is not None else posctl.measured
    naive_ok, posctl_ok = naive.holds(target), posctl.holds(target)
    if posctl_ok and not naive_ok:
        return DEFENDED
    if posctl_ok and naive_ok:
        return NO_GAIN
    if posctl.interval[1] < naive.interval[0] or posctl.interval[0] > naive.interval[1]:
        return REDUCED
    return INCONCLUSIVE
