"""The lab's scenarios by name: what ``posctl lab list`` shows and ``posctl lab run`` runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cli.lab import lottery_attacks, penalty_attacks, signature_attacks
from cli.lab.result import Outcome, Progress

Runner = Callable[[int, int, Progress], Outcome]

DEFAULT_SEED = 1


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    """One line for ``lab list``."""
    default_blocks: int
    """Blocks (or trials) with the defaults: sized to finish well under 30 s on 2 cores."""
    unit: str
    """What ``--blocks`` counts for this scenario: ``blocks`` or ``trials``."""
    runner: Runner


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("grind", "re-roll the next block's seed by trying many timestamps", 500, "blocks",
                 lottery_attacks.run_grind),
        Scenario("exclude", "leave losing proposals out to re-draw the block for a favourite", 500, "blocks",
                 lottery_attacks.run_exclude),
        Scenario("split", "split one stake over several addresses (a sybil)", 500, "blocks",
                 lottery_attacks.run_split),
        Scenario("declare", "claim 10^9 tokens of stake you do not have", 500, "blocks",
                 lottery_attacks.run_declare),
        Scenario("replay", "replay a transfer signed for one chain on another", 200, "trials",
                 signature_attacks.run_replay),
        Scenario("malleate", "flip a signature to its high-S twin for a second tx id", 200, "trials",
                 signature_attacks.run_malleate),
        Scenario("equivocate", "sign two proposals for one height, past the wallet's protection", 100, "trials",
                 penalty_attacks.run_equivocate),
        Scenario("after-unbonding", "equivocate, unbond at once, hope the evidence comes too late", 200, "trials",
                 penalty_attacks.run_after_unbonding),
        Scenario("offline", "a bonded validator stops proposing: jailed, then unjailed", 200, "blocks",
                 penalty_attacks.run_offline),
    )
}


def _no_progress(_fraction: float) -> None:
    """The default progress callback: report nothing."""


def run_scenario(name: str, blocks: int | None = None, seed: int = DEFAULT_SEED,
                 progress: Progress = _no_progress) -> Outcome:
    """Run one scenario; ``blocks`` None means its default. Raises KeyError for an unknown name
    and ValueError for fewer than one block."""
    scenario = SCENARIOS[name]
    count = scenario.default_blocks if blocks is None else blocks
    if count < 1:
        raise ValueError(f"--blocks must be at least 1, got {count}")
    outcome = scenario.runner(count, seed, progress)
    progress(1.0)  # a run may end before its estimate (offline stops once jailed): the bar still fills
    outcome.seed = seed
    outcome.blocks = count
    outcome.unit = scenario.unit
    return outcome
