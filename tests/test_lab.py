"""The attack lab (``posctl lab``, issue 11): its figures, its honesty and its command line.

What is checked, and why it could fail:

* for fixed seeds every scenario's measured figures lie in the 95% interval it prints, and that
  interval holds the formula's value where there is one — a 95% interval misses about one seed
  in twenty, so these seeds are fixed, and a broken simulation or formula moves far outside;
* the defended side is posctl's code, not a copy: a profiler (``sys.setprofile``, which only
  watches) sees ``ledger.consensus.fork.state_transition`` and the scenario's rule run, and every
  block the lab committed replays from genesis through the real ``state_transition`` to the same
  state root, its seed is ``fork.next_seed`` of its parent and its VRF output is what
  ``ledger.crypto.ecvrf.verify`` returns for the winner's proof;
* ``--json`` has exactly the fields the issue documents, with their types, the same seed gives
  the same document, and the command line (the installed ``posctl``, in a subprocess) lists the
  nine scenarios, runs one and refuses bad input in one line.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from cli.lab.result import Outcome
from cli.lab.scenarios import SCENARIOS, run_scenario
from cli.lab.testnet import LabChain
from cli.lab_cmd import SCENARIO_NAMES
from ledger.consensus import evidence, fork, lottery, state, transactions
from ledger.consensus.genesis import build_genesis
from ledger.consensus.state import DictState
from ledger.consensus.transactions import Bpm
from ledger.crypto import ecvrf, secp256k1
from ledger.errors import WrongChain

POSCTL = shutil.which("posctl", path=str(Path(sys.executable).parent)) or "posctl"

SMALL = {"grind": 100, "exclude": 100, "split": 100, "declare": 100, "replay": 30, "malleate": 30,
         "equivocate": 20, "after-unbonding": 60, "offline": 200}
"""Blocks (or trials) per scenario for the in-process tests: about a second each."""

SEEDS = (2, 4)
"""The fixed seeds of the interval tests. A 95% interval misses about one seed in twenty; at
these sizes seed 1 is such a miss for grind's next-block figure (0.831, interval [0.791, 0.865],
formula 0.878), which is why it is not used here. Over 40 other seeds of 2,000 naive blocks the
next-block win was 32,390/36,793 = 0.880 against the formula's 0.878."""

TINY = {"grind": 10, "exclude": 10, "split": 10, "declare": 10, "replay": 3, "malleate": 3, "equivocate": 3,
        "after-unbonding": 6, "offline": 200}
"""Even smaller, for the profiled runs (offline stops at the jailing, well before 200)."""

EXPECTED_VERDICT = {name: "defended" for name in SCENARIOS} | {"split": "no gain in either"}

RULES: dict[str, tuple[Callable[..., Any], ...]] = {
    "grind": (fork.next_seed, lottery.compute_seed, fork.validate_header, lottery.draw_order),
    "exclude": (lottery.pick_validator, fork.record_liveness),
    "split": (lottery.draw_entries, state.get_eligible_weights),
    "declare": (state.get_eligible_weights, state.bond),
    "replay": (transactions.validate_transaction, transactions.check_stateless),
    "malleate": (transactions.verify_signature, secp256k1.verify),
    "equivocate": (evidence.check_evidence_form, evidence.check_evidence, fork.apply_evidence, state.slash_validator),
    "after-unbonding": (evidence.check_evidence, state.slash_validator),
    "offline": (fork.record_liveness, state.record_missed_turn, state.unjail),
}
"""For each scenario, the real functions its defended side must be seen running."""

EVERY_RUN = (fork.state_transition, fork.apply_block, lottery.pick_validator, ecvrf.prove, ecvrf.verify)
"""Every scenario forges and accepts at least one real block."""


def posctl(*args: str, timeout: float = 120.0, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``posctl`` in a subprocess, stderr not a terminal."""
    prefix = ["--home", str(home)] if home is not None else []
    return subprocess.run([POSCTL, *prefix, *args], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")})


@pytest.fixture(scope="module")
def small_runs() -> dict[tuple[str, int], Outcome]:
    """Each scenario at SMALL size for each of SEEDS, run once for the module."""
    return {(name, seed): run_scenario(name, SMALL[name], seed) for seed in SEEDS for name in SCENARIOS}


# ---- the figures -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_measured_figures_lie_in_their_intervals(small_runs: dict[tuple[str, int], Outcome], name: str,
                                                 seed: int) -> None:
    outcome = small_runs[(name, seed)]
    for side in (outcome.naive, outcome.posctl):
        lo, hi = side.interval
        assert 0.0 <= lo <= hi <= 1.0, side
        assert lo <= side.measured <= hi, side
        if side.predicted is not None:
            assert lo <= side.predicted <= hi, f"{name} {side.label}: formula {side.predicted} outside {side.interval}"
    assert outcome.verdict == EXPECTED_VERDICT[name], outcome.to_json()


def test_the_formulas_are_the_issues(small_runs: dict[tuple[str, int], Outcome]) -> None:
    """The predictions are the formulas of issue 11, not numbers fitted to the runs."""
    p, k = 0.1, 20
    grind = small_runs[("grind", SEEDS[0])]
    assert grind.naive.predicted == pytest.approx(p / (p + (1 - p) ** k))
    assert grind.posctl.predicted == pytest.approx(p)
    assert f"{1 - (1 - p) ** k:.3f}" in " ".join(grind.details)  # next-block win 1-(1-p)^k
    split = small_runs[("split", SEEDS[0])]
    assert split.naive.predicted == split.posctl.predicted == pytest.approx(0.3)
    assert small_runs[("exclude", SEEDS[0])].naive.predicted is None
    assert small_runs[("declare", SEEDS[0])].posctl.predicted == pytest.approx(100 / 1000)
    assert small_runs[("after-unbonding", SEEDS[0])].posctl.predicted == pytest.approx(9 / 20)  # unbonding_blocks 10


def test_the_attacks_work_against_the_naive_rules(small_runs: dict[tuple[str, int], Outcome]) -> None:
    """Not just 'posctl is in its interval': the naive side really is beaten, by a margin."""
    for seed in SEEDS:
        runs = {name: small_runs[(name, seed)] for name in SCENARIOS}
        assert runs["grind"].naive.interval[0] > 2 * runs["grind"].posctl.predicted
        assert runs["exclude"].naive.interval[0] > runs["exclude"].posctl.interval[1]
        assert runs["declare"].naive.measured > 0.99 and runs["declare"].posctl.measured < 0.3
        assert runs["replay"].naive.measured == runs["malleate"].naive.measured == 1.0
        assert runs["replay"].posctl.measured == runs["malleate"].posctl.measured == 0.0
        assert runs["equivocate"].naive.measured == 0.0 and runs["equivocate"].posctl.measured == 1.0
        assert runs["offline"].posctl.measured < runs["offline"].naive.measured == 1.0


def test_defaults_for_one_scenario() -> None:
    """One scenario with its defaults, as `posctl lab run offline` runs it."""
    outcome = run_scenario("offline")
    assert outcome.blocks == SCENARIOS["offline"].default_blocks
    assert outcome.posctl.holds(outcome.posctl.measured) and outcome.posctl.holds(outcome.posctl.predicted or -1)
    assert any("jailed at height" in line for line in outcome.details)
    assert any("jailed=False" in line for line in outcome.details)  # and unjailed


# ---- the defended side is posctl's code ------------------------------------------------------


def _calls_while(run: Callable[[], Outcome]) -> tuple[Outcome, dict[Any, int]]:
    """Run ``run`` and count the calls of every Python code object, by watching only."""
    counts: dict[Any, int] = {}

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event == "call":
            counts[frame.f_code] = counts.get(frame.f_code, 0) + 1

    sys.setprofile(profile)
    try:
        outcome = run()
    finally:
        sys.setprofile(None)
    return outcome, counts


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_defended_side_runs_the_real_rules(name: str) -> None:
    outcome, counts = _calls_while(lambda: run_scenario(name, TINY[name], 3))
    missing = [f"{f.__module__}.{f.__qualname__}" for f in EVERY_RUN + RULES[name] if counts.get(f.__code__, 0) == 0]
    assert missing == []
    committed = sum(len(chain.blocks) - 1 for chain in outcome.chains)
    assert committed >= 1
    assert counts[fork.state_transition.__code__] >= committed


def replay_from_genesis(chain: LabChain) -> None:
    """Check ``chain`` block by block with posctl's own code, starting from its genesis config."""
    genesis, genesis_state, muhash = build_genesis(chain.config)
    assert genesis.hash == chain.blocks[0].hash
    store = DictState(genesis_state.entries)
    parent = genesis.header
    for block in chain.blocks[1:]:
        header = block.header
        assert header.prev_hash == parent.hash
        assert header.seed == fork.next_seed(parent)
        proposal = next(tx for tx in block.txs
                        if isinstance(tx, Bpm) and tx.sender == header.validator and tx.height == header.height)
        alpha = lottery.vrf_alpha(chain.params.chain_id, header.height, header.seed)
        assert ecvrf.verify(proposal.public_key, alpha, proposal.vrf_proof) == header.vrf_output
        writes, muhash = fork.state_transition(store.get, store.items, muhash, block, parent, chain.params)
        store.apply(writes)
        parent = header
    assert parent.hash == chain.tip.hash
    assert muhash.digest() == chain.tip.state_root


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_lab_chain_replays_through_state_transition(small_runs: dict[tuple[str, int], Outcome],
                                                          name: str) -> None:
    outcome = small_runs[(name, SEEDS[0])]
    assert outcome.chains
    for chain in outcome.chains:
        replay_from_genesis(chain)


def test_replay_refusals_are_posctls_wrong_chain(small_runs: dict[tuple[str, int], Outcome]) -> None:
    outcome = small_runs[("replay", SEEDS[0])]
    chain_a, chain_b = outcome.chains
    transfer = next(tx for tx in chain_a.blocks[1].txs if tx.kind == "transfer")
    with pytest.raises(WrongChain) as refused:
        transactions.validate_transaction(transfer, chain_b.params)
    assert f"WrongChain: {refused.value}" in " ".join(outcome.details)


def test_equivocators_are_slashed_and_tombstoned_in_the_state(small_runs: dict[tuple[str, int], Outcome]) -> None:
    outcome = small_runs[("equivocate", SEEDS[0])]
    (chain,) = outcome.chains
    evidence_block = chain.blocks[2]
    assert len(evidence_block.evidence) == SMALL["equivocate"]
    for item in evidence_block.evidence:
        account = chain.account(item.validator)
        assert account.tombstoned and account.slashed > 0


# ---- the documents ---------------------------------------------------------------------------


def resolve(dotted: str) -> Any:
    """The object a dotted name in a defence line names: a module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise LookupError(dotted)


def check_document(doc: Any, name: str) -> None:
    assert isinstance(doc, dict) and set(doc) == {"scenario", "naive", "posctl", "defence", "verdict"}
    assert doc["scenario"] == name
    for side in ("naive", "posctl"):
        figure = doc[side]
        assert set(figure) == {"measured", "predicted", "interval"}
        assert isinstance(figure["measured"], float) and 0.0 <= figure["measured"] <= 1.0
        assert figure["predicted"] is None or isinstance(figure["predicted"], float)
        lo, hi = figure["interval"]
        assert isinstance(lo, float) and isinstance(hi, float) and 0.0 <= lo <= hi <= 1.0
    assert doc["verdict"] in {"defended", "reduced", "no gain in either", "inconclusive"}
    names = re.findall(r"\bledger(?:\.\w+)+", doc["defence"])
    assert names, doc["defence"]
    for dotted in names:
        found = resolve(dotted)
        assert callable(found) or isinstance(found, (property, functools.cached_property)), dotted


def test_json_documents_in_process(small_runs: dict[tuple[str, int], Outcome]) -> None:
    for name in SCENARIOS:
        doc = json.loads(json.dumps(small_runs[(name, SEEDS[0])].to_json()))
        check_document(doc, name)


def test_same_seed_same_document_other_seed_other_figures() -> None:
    for name in SCENARIOS:
        first = run_scenario(name, TINY[name], 7).to_json()
        assert run_scenario(name, TINY[name], 7).to_json() == first
    assert run_scenario("grind", 40, 7).to_json() != run_scenario("grind", 40, 8).to_json()


# ---- the command line ------------------------------------------------------------------------


def test_list_names_all_nine() -> None:
    result = posctl("lab", "list")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()[:9]]
    assert listed == list(SCENARIO_NAMES) == list(SCENARIOS) and len(listed) == 9


def test_run_prints_every_part(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = posctl("lab", "run", "grind", "--blocks", "30", "--seed", "4", home=home)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar: stderr is not a terminal
    lines = result.stdout.splitlines()
    assert lines[0].startswith("grind: A forger holding 10% of the stake re-rolls")
    expected = run_scenario("grind", 30, 4)
    naive_line = next(line for line in lines if line.startswith("  naive "))
    posctl_line = next(line for line in lines if line.startswith("  posctl "))
    for line, side in ((naive_line, expected.naive), (posctl_line, expected.posctl)):
        lo, hi = side.interval
        assert f"{side.measured:.3f}  predicted {side.predicted:.3f}  95% [{lo:.3f}, {hi:.3f}]" in line
    assert "  defence  ledger.consensus.fork.next_seed" in result.stdout
    assert f"  verdict  {expected.verdict}" in lines
    assert not home.exists()  # a run leaves nothing behind


def test_run_json_subprocess_is_deterministic() -> None:
    first = posctl("lab", "run", "malleate", "--blocks", "5", "--seed", "9", "--json")
    second = posctl("lab", "run", "malleate", "--blocks", "5", "--seed", "9", "--json")
    assert first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    check_document(doc, "malleate")
    assert doc == run_scenario("malleate", 5, 9).to_json()


def test_all_prints_the_table_and_one_json_list() -> None:
    table = posctl("lab", "all", "--blocks", "3")
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split()[:4] == ["scenario", "naive", "posctl", "verdict"]
    assert [row.split()[0] for row in rows[1:10]] == list(SCENARIO_NAMES)
    docs = json.loads(posctl("lab", "all", "--blocks", "3", "--json").stdout)
    assert [doc["scenario"] for doc in docs] == list(SCENARIO_NAMES)
    for doc in docs:
        check_document(doc, doc["scenario"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "nope"], "unknown scenario 'nope'"),
        (["run"], "Missing argument 'NAME'"),
        (["run", "grind", "--blocks", "0"], "--blocks"),
        (["run", "grind", "--blocks", "-5"], "--blocks"),
        (["run", "grind", "--blocks", "many"], "--blocks"),
        (["run", "grind", "--seed", "-1"], "--seed"),
        (["all", "--blocks", "0"], "--blocks"),
        (["run", "grind", "--blocks", "100001"], "100001 is not in the range 1<=x<=100000"),
    ],
)
def test_bad_input_is_one_line(args: list[str], says: str) -> None:
    result = posctl("lab", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert says in result.stderr and "Traceback" not in result.stderr


def test_the_offline_expectation_does_not_sum_the_whole_run() -> None:
    """E[min(T, cap)] of the negative binomial: exact against rational arithmetic where the cap
    bites, the uncapped mean m/p where it cannot; and a cap of 10^12 blocks returns (the sum
    once ran to the cap: ``lab run offline --blocks 100000000`` did not finish in minutes)."""
    from fractions import Fraction

    from cli.lab.stats import negative_binomial_capped_mean

    def exact(m: int, p: Fraction, cap: int) -> Fraction:
        masses = {t: math.comb(t - 1, m - 1) * p**m * (1 - p) ** (t - m) for t in range(m, cap)}
        return sum(t * mass for t, mass in masses.items()) + cap * (1 - sum(masses.values()))

    for m, p, cap in [(10, Fraction(1, 2), 15), (10, Fraction(1, 2), 25), (3, Fraction(1, 10), 40), (1, Fraction(1), 5)]:
        assert negative_binomial_capped_mean(m, float(p), cap) == pytest.approx(float(exact(m, p, cap)), rel=1e-12)
    assert negative_binomial_capped_mean(10, 0.5, 10**12) == pytest.approx(20.0, rel=1e-9)
    assert negative_binomial_capped_mean(10, 0.01, 10**12) == pytest.approx(1000.0, rel=1e-9)


def test_offline_with_a_huge_block_count_stops_when_the_validator_is_jailed() -> None:
    result = posctl("lab", "run", "offline", "--blocks", "100000", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "jailed at height 15 after 10 missed turns" in result.stdout  # as with the default (seed 1)
    assert "posctl, 100000 blocks" in result.stdout


def test_progress_bar_only_on_a_terminal() -> None:
    """stderr on a pseudo-terminal: the bar is drawn there; stdout (a pipe) gets only the report."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([POSCTL, "lab", "run", "offline", "--blocks", "50"], stdout=subprocess.PIPE,
                                   stderr=terminal, text=True)
        os.close(terminal)
        seen = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the terminal closed: the process is done
                    break
                if not chunk:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
        out, _ = process.communicate(timeout=120)
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert b"lab offline" in seen and b"100%" in seen
    assert out.startswith("offline: ") and "lab offline" not in out


def test_the_side_figures_in_the_details_hold_their_formulas(small_runs: dict[tuple[str, int], Outcome]) -> None:
    """grind's next-block win 1-(1-p)^k and exclude's hand-over share are printed with their own
    interval; each interval holds its formula (and the measured value)."""
    for seed in SEEDS:
        grind = " ".join(small_runs[("grind", seed)].details)
        found = re.search(r"= ([0-9.]+) \(formula 1-\(1-p\)\^k = ([0-9.]+); 95% \[([0-9.]+), ([0-9.]+)\]\)", grind)
        assert found, grind
        measured, formula, lo, hi = map(float, found.groups())
        assert formula == round(1 - 0.9**20, 3) and lo <= measured <= hi and lo <= formula <= hi
        exclude = " ".join(small_runs[("exclude", seed)].details)
        found = re.search(r"share ([0-9.]+) \(95% \[([0-9.]+), ([0-9.]+)\]; formula .* = ([0-9.]+)\)", exclude)
        assert found, exclude
        measured, lo, hi, formula = map(float, found.groups())
        assert lo <= measured <= hi and lo <= formula <= hi
        assert re.search(r"\d+ omissions of losing proposals tried, 0 changed the winner", exclude)
