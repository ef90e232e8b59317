"""``posctl lab``: the classic proof-of-stake attacks, run against the naive rules and posctl's.

Thin commands: :mod:`cli.lab` runs the experiments and returns :class:`cli.lab.result.Outcome`
objects; this module parses, shows a progress bar when stderr is a terminal, and renders text
or one JSON document. Usage errors (an unknown scenario, ``--blocks 0``) exit 2 with one line.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator

import click

from cli.context import AppContext, emit, handles_errors, json_option, pass_app

if TYPE_CHECKING:
    from cli.lab.result import Outcome, Side

SCENARIO_NAMES = ("grind", "exclude", "split", "declare", "replay", "malleate", "equivocate",
                  "after-unbonding", "offline")
"""Listed here too so that ``--help`` and argument checks need not import the lab."""

BAR_STEPS = 1000

MAX_BLOCKS = 100_000
"""The lab's chains live in memory (~5 KB a block: grind's 10,000 blocks took 67 s and 89 MB
here), so a count far above this is a typo that would run for hours and exhaust memory."""

blocks_option = click.option(
    "--blocks", type=click.IntRange(min=1, max=MAX_BLOCKS), default=None, metavar="N",
    help="Blocks to forge on each side (trials for replay, malleate, equivocate, after-unbonding), "
         f"at most {MAX_BLOCKS:,}; default: the scenario's own, sized to finish in seconds.",
)
seed_option = click.option(
    "--seed", type=click.IntRange(min=0), default=1, show_default=True, metavar="S",
    help="Seed of every key, draw and choice in the run: the same seed gives the same figures.",
)


@click.group("lab")
def lab() -> None:
    """Run the classic PoS attacks against the naive rules and against posctl's, measured.

    Each run prints the attack in one sentence, what the naive rules (the tutorial's and v1's)
    give, what posctl gives (measured, formula, 95% interval) and the rule that decides.
    """


def _progress(label: str) -> Iterator[Callable[[float], None]]:
    """A progress callback: a bar on a terminal, nothing when stderr is a file or a pipe."""
    if not sys.stderr.isatty():
        yield lambda _fraction: None
        return
    with click.progressbar(length=BAR_STEPS, label=label, file=sys.stderr) as bar:
        shown = [0]

        def update(fraction: float) -> None:
            target = int(fraction * BAR_STEPS)
            if target > shown[0]:
                bar.update(target - shown[0])
                shown[0] = target

        yield update


def _run(name: str, blocks: int | None, seed: int) -> Outcome:
    from cli.lab.scenarios import run_scenario

    for progress in _progress(f"lab {name}"):
        return run_scenario(name, blocks, seed, progress)
    return None  # pragma: no cover - _progress always yields once


@lab.command("list")
@json_option
@pass_app
def list_scenarios(app: AppContext) -> None:
    """Name every scenario with one line each."""
    from cli.lab.scenarios import SCENARIOS

    rows = [{"name": s.name, "summary": s.summary, "default_blocks": s.default_blocks, "unit": s.unit}
            for s in SCENARIOS.values()]
    emit(app, rows, _render_list)


def _scenario_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Refuse an unknown name in one line (``click.Choice`` would list every name over many)."""
    if value not in SCENARIO_NAMES:
        raise click.BadParameter(f"unknown scenario {value!r}: choose one of {', '.join(SCENARIO_NAMES)}")
    return value


def _complete_scenario(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    return [name for name in SCENARIO_NAMES if name.startswith(incomplete)]


@lab.command("run")
@click.argument("name", metavar="NAME", callback=_scenario_name, shell_complete=_complete_scenario)
@blocks_option
@seed_option
@json_option
@pass_app
@handles_errors
def run(app: AppContext, name: str, blocks: int | None, seed: int) -> None:
    """Run one scenario (see `posctl lab list`)."""
    outcome = _run(name, blocks, seed)
    emit(app, outcome.to_json(), lambda _doc: _render_outcome(outcome))


@lab.command("all")
@blocks_option
@seed_option
@json_option
@pass_app
@handles_errors
def run_all(app: AppContext, blocks: int | None, seed: int) -> None:
    """Run every scenario with the same seed and print a summary table (--json: a list of the
    documents `lab run --json` prints)."""
    outcomes = [_run(name, blocks, seed) for name in SCENARIO_NAMES]
    emit(app, [outcome.to_json() for outcome in outcomes], lambda _docs: _render_table(outcomes, seed))


# ---- rendering -------------------------------------------------------------------------------


def _render_list(rows: list[dict[str, Any]]) -> str:
    width = max(len(row["name"]) for row in rows)
    lines = [f"{row['name']:<{width}}  {row['summary']} (default {row['default_blocks']} {row['unit']})"
             for row in rows]
    return "\n".join(lines + ["", "run one: posctl lab run NAME [--blocks N] [--seed S] [--json]"])


def _figure(side: Side, digits: int = 3) -> str:
    predicted = "none" if side.predicted is None else f"{side.predicted:.{digits}f}"
    lo, hi = side.interval
    return f"{side.measured:.{digits}f}  predicted {predicted}  95% [{lo:.{digits}f}, {hi:.{digits}f}]"


def _render_outcome(outcome: Outcome) -> str:
    lines = [
        f"{outcome.scenario}: {outcome.attack}",
        f"  measure  {outcome.measure} (seed {outcome.seed}, {outcome.blocks} {outcome.unit})",
        f"  naive    {_figure(outcome.naive)}",
        f"           {outcome.naive.label}",
        f"  posctl   {_figure(outcome.posctl)}",
        f"           {outcome.posctl.label}",
        f"  defence  {outcome.defence}",
        f"  verdict  {outcome.verdict}",
    ]
    lines += [f"  - {detail}" for detail in outcome.details]
    return "\n".join(lines)


def _cell(side: Side) -> str:
    lo, hi = side.interval
    predicted = "  -  " if side.predicted is None else f"{side.predicted:.3f}"
    return f"{side.measured:.3f} ({predicted}) [{lo:.2f}, {hi:.2f}]"


def _render_table(outcomes: list[Outcome], seed: int) -> str:
    rows = [(o.scenario, _cell(o.naive), _cell(o.posctl), o.verdict, o.measure) for o in outcomes]
    header = ("scenario", "naive", "posctl", "verdict", "measure")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(4)]
    lines = ["  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(header[:4])) + "  " + header[4]]
    lines += ["  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows]
    lines += ["", f"figures: measured (predicted) [95% interval]; seed {seed}; "
                  "details: posctl lab run NAME"]
    return "\n".join(lines)
