"""``python -m bench [--json FILE] [--quick] [--scale-only | --http-only]``: what posctl costs, on
real LevelDB in a temp dir.

Prints a table (name, value, unit, target, met?) and optionally writes the figures as JSON.
The default run is the full one (about seven minutes on a 2-core machine, most of it the scale
fixtures: a million-account genesis, a 100,000-block chain; the HTTP figures against a node
subprocess take about a minute); ``--quick`` is a smaller smoke run whose figures are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench import fixtures, http, measures, scale


@dataclass(frozen=True)
class Sizes:
    senders: int = 200
    main_blocks: int = 20
    """Blocks of 1,000 txs (999 transfers and a proposal) admitted, forged and verified."""
    child_txs: int = 50_000
    """Transfers the peak-memory child admits (the first ones are the main blocks' too)."""
    long_blocks: int = 10_000
    """Each block of the long chain needs its own ECVRF proof, made once its parent exists."""
    small_blocks: int = 100
    ceiling_verifies: int = 3000
    single_submits: int = 500
    batch: int = 1000
    opens: int = 15
    """Alternating rounds of small/large open+status (each round: one open of each)."""
    shows: int = 40
    """Block fetch+render samples per chain per round (cycling over its top 20 heights)."""
    cli_repeat: int = 5
    validators: int = 100
    """Proposals per block for the many-proposals forge figure."""
    proposal_blocks: int = 5
    vrf_repeat: int = 100
    scale_accounts: tuple[int, ...] = (1000, 100_000, 1_000_000)
    """Genesis accounts of the chains opened and asked for ``chain status``."""
    genesis_sizes: tuple[int, ...] = (100_000, 1_000_000)
    """Allocations of the timed ``chain init`` runs."""
    verify_blocks: tuple[int, ...] = (1000, 100_000)
    """Lengths of the one-proposal-block chains verified."""
    scale_rounds: int = 7
    http_single_txs: int = 4000
    """Txs posted one per request in each HTTP admission config per 4 clients (at least this many:
    4,000 from 1 or 4 clients, 16,000 from 16; :func:`bench.http.single_run_txs`)."""
    http_batch_txs: int = 20_000
    """Txs posted in batches of 100 in each HTTP admission config."""
    status_clients: int = 200
    status_requests: int = 10
    """``GET /status`` requests per client in the latency figure."""


FULL = Sizes()
QUICK = Sizes(main_blocks=4, child_txs=5000, long_blocks=1000, ceiling_verifies=1000, single_submits=100,
              opens=7, shows=20, cli_repeat=3, proposal_blocks=2, vrf_repeat=30,
              scale_accounts=(1000, 100_000), genesis_sizes=(100_000,), verify_blocks=(1000, 5000), scale_rounds=3,
              http_single_txs=1000, http_batch_txs=4000, status_requests=3)
"""--quick: no million-account chain (accounts 1k/100k, genesis 100k only) and 1k/5k-block verify."""


@dataclass(frozen=True)
class Row:
    key: str
    unit: str
    target: str = ""
    check: Callable[[dict[str, float]], bool] | None = None


ROWS = [
    Row("verify_ceiling_per_s", "verif/s"),
    Row("admission_per_s", "txs/s", ">= 70% of ceiling",
        lambda f: f["admission_per_s"] >= 0.7 * f["verify_ceiling_per_s"]),
    Row("admission_single_per_s", "txs/s", "(one fsync per tx)"),
    Row("apply_per_s", "txs/s", ">= 20000", lambda f: f["apply_per_s"] >= 20_000),
    Row("open_ms_small", "ms"),
    Row("open_ms_large", "ms", "<= 1.5x small", lambda f: f["open_ms_large"] <= 1.5 * f["open_ms_small"]),
    Row("show_ms_small", "ms"),
    Row("show_ms_large", "ms", "<= 1.5x small", lambda f: f["show_ms_large"] <= 1.5 * f["show_ms_small"]),
    Row("draw_ms_10", "ms"),
    Row("draw_ms_1k", "ms"),
    Row("draw_ms_100k", "ms", "< 100", lambda f: f["draw_ms_100k"] < 100),
    Row("draw_ms_100k_worst", "ms", "(winner drawn last)"),
    Row("vrf_prove_ms", "ms", "(per proposal)"),
    Row("vrf_verify_ms", "ms", "(per proposal)"),
    Row("forge_ms_100_proposals", "ms", "(synced commit)"),
    Row("verify_txs_per_s", "txs/s", ">= 80% of ceiling",
        lambda f: f["verify_txs_per_s"] >= 0.8 * f["verify_ceiling_per_s"]),
    Row("cli_help_s", "s", "< 0.3", lambda f: f["cli_help_s"] < 0.3),
    Row("cli_status_s", "s"),
    Row("peak_rss_mb_admit_50k", "MB", "(child VmHWM)"),
    # scale (issue 16): by genesis accounts, and by chain length in one-proposal blocks
    Row("open_ms_1k", "ms", "(1k accounts)"),
    Row("open_ms_100k", "ms", "(100k accounts)"),
    Row("open_ms_1m", "ms", "(1M accounts)"),
    Row("open_ratio_accounts", "x", "<= 1.5 largest/1k", lambda f: f["open_ratio_accounts"] <= 1.5),
    Row("status_s_1k", "s", "(process, 1k acc.)"),
    Row("status_s_100k", "s", "(100k accounts)"),
    Row("status_s_1m", "s", "(1M accounts)"),
    Row("status_ratio_accounts", "x", "<= 1.2 largest/1k", lambda f: f["status_ratio_accounts"] <= 1.2),
    Row("genesis_s_100k", "s", "(chain init)"),
    Row("genesis_s_1m", "s", "<= 25", lambda f: f["genesis_s_1m"] <= 25),
    Row("genesis_rss_mb_100k", "MB", "(peak RSS)"),
    Row("genesis_rss_mb_1m", "MB", "(peak RSS)"),
    Row("genesis_anon_mb_1m", "MB", "(peak anonymous)"),
    Row("genesis_memory_x_1m", "x", "< 3 file size", lambda f: f["genesis_memory_x_1m"] < 3),
    Row("verify_blocks_per_s_1k", "blocks/s", ">= 2000", lambda f: f["verify_blocks_per_s_1k"] >= 2000),
    Row("verify_blocks_per_s_5k", "blocks/s", ">= 2000 (--quick)", lambda f: f["verify_blocks_per_s_5k"] >= 2000),
    Row("verify_blocks_per_s_100k", "blocks/s", ">= 2000", lambda f: f["verify_blocks_per_s_100k"] >= 2000),
    # HTTP (issue 14): a real node subprocess, keep-alive clients, each engine; the ceiling is pycryptodome's
    *(Row(key, unit, target, check) for key, unit, target, check in http.table_rows()),
]
"""The table, in order; every key is also a JSON key."""

INFO_ROWS = [
    ("verify_ceiling_min_per_s", "verif/s", "lowest of the 3 ceiling samples (the median is above)"),
    ("verify_ceiling_max_per_s", "verif/s", "highest of the 3 ceiling samples"),
    ("sign_s", "s", "pre-signing every transfer (not a target)"),
    ("admit_ms_100_proposals", "ms", "admitting 100 proposals (VRF proofs checked; group commit)"),
    ("forge_ms_synced_1tx", "ms", "median synced forge of a 1-proposal block (100-block chain)"),
    ("long_build_s", "s", "building the long chain (prove, admit, forge per block; unsynced)"),
    ("long_build_ms_per_block", "ms", "per block of the long chain build"),
    ("long_height", "", "height of the long chain"),
    ("open_ms_first_small", "ms", "first open of the small chain after building it (log recovery)"),
    ("open_ms_first_large", "ms", "first open of the long chain after building it (log recovery)"),
    ("verify_s", "s", "verify() wall time"),
    ("verify_txs", "", "txs replayed by verify()"),
    ("admit_child_txs", "", "txs admitted by the peak-memory child"),
    ("admit_child_baseline_rss_mb", "MB", "child peak RSS (VmHWM) before admitting"),
    ("admit_child_per_s", "txs/s", "child admission rate (ran alongside the long build)"),
    ("genesis_file_mb_1m", "MB", "size of the 1M-allocation genesis file"),
    ("genesis_anon_mb_100k", "MB", "chain init of 100k: peak anonymous memory (sampled)"),
    ("verify_s_blocks_1k", "s", "verify() wall time, 1k one-proposal blocks"),
    ("verify_s_blocks_5k", "s", "verify() wall time, 5k one-proposal blocks"),
    ("verify_s_blocks_100k", "s", "verify() wall time, 100k one-proposal blocks"),
    *http.info_rows(),
]


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_scale(sizes: Sizes, workdir: Path, world: fixtures.World) -> dict[str, float]:
    return scale.run_scale(world, workdir, sizes.scale_accounts, sizes.genesis_sizes, sizes.verify_blocks,
                           sizes.scale_rounds, _log)


def run_http(sizes: Sizes, workdir: Path, world: fixtures.World, transfers: list[bytes]) -> dict[str, float]:
    return http.run_http(world, transfers, sizes.http_single_txs, sizes.http_batch_txs, sizes.status_clients,
                         sizes.status_requests, _log, workdir)


def run_http_only(sizes: Sizes, workdir: Path) -> dict[str, float]:
    """The HTTP figures alone, with the verify ceiling sampled before, between and after them."""
    world = fixtures.make_world(sizes.senders)
    most = max(http.single_run_txs(sizes.http_single_txs, max(http.CLIENT_COUNTS)), sizes.http_batch_txs)
    count = most * 11 // 10 + sizes.senders
    transfers = fixtures.sign_all(fixtures.transfer_specs(world, count))
    ceiling = [measures.verify_ceiling(transfers, sizes.ceiling_verifies)]
    figures = run_http(sizes, workdir, world, transfers)
    ceiling.append(measures.verify_ceiling(transfers, sizes.ceiling_verifies))
    ceiling.append(measures.verify_ceiling(transfers, sizes.ceiling_verifies))
    figures["verify_ceiling_per_s"] = sorted(ceiling)[1]
    figures["verify_ceiling_min_per_s"], figures["verify_ceiling_max_per_s"] = min(ceiling), max(ceiling)
    _log(f"verify ceiling samples {[round(c) for c in ceiling]}")
    http.add_ratios(figures)
    return figures


def run(sizes: Sizes, workdir: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    world = fixtures.make_world(sizes.senders)

    # ---- pre-sign every transfer (not timed as a figure). Proposals are made when their
    # block is next: each proves over the seed its parent fixes ----
    started = time.perf_counter()
    main_count = sizes.main_blocks * 999
    transfers = fixtures.sign_all(fixtures.transfer_specs(world, max(main_count, sizes.child_txs)))
    main = transfers[:main_count]
    figures["sign_s"] = time.perf_counter() - started
    _log(f"signed {len(transfers)} transfers in {figures['sign_s']:.1f}s")

    # ---- 1. verify ceiling: sampled next to admission and next to verify(), so the ratio
    # targets compare figures taken under the same machine load; the median is reported ----
    ceiling = [measures.verify_ceiling(main, sizes.ceiling_verifies)]
    _log(f"verify ceiling {ceiling[-1]:.0f}/s")

    # ---- 2. admission, batched then single ----
    admit_home = workdir / "admit"
    chain = world.create_chain(admit_home, max_block_txs=1000)
    figures["admission_per_s"] = measures.admit_batched(chain, main, sizes.batch)
    _log(f"admission {figures['admission_per_s']:.0f}/s ({len(main)} txs, batches of {sizes.batch})")
    with world.create_chain(workdir / "single") as single:
        figures["admission_single_per_s"] = measures.admit_single(single, main[:sizes.single_submits])
    _log(f"single admission {figures['admission_single_per_s']:.0f}/s")

    # ---- 3. apply: forge the admitted txs in blocks of 1,000 ----
    figures["apply_per_s"], _ = measures.forge_blocks(chain, sizes.main_blocks, 1000, world.validator)
    chain.close()
    _log(f"apply {figures['apply_per_s']:.0f}/s")

    # ---- 7. verify the 1,000-tx-block chain ----
    ceiling.append(measures.verify_ceiling(main, sizes.ceiling_verifies))
    rate, txs, seconds = measures.verify_rate(admit_home)
    figures["verify_txs_per_s"], figures["verify_txs"], figures["verify_s"] = rate, txs, seconds
    _log(f"verify {rate:.0f} txs/s ({txs} txs, {seconds:.1f}s)")
    ceiling.append(measures.verify_ceiling(main, sizes.ceiling_verifies))
    figures["verify_ceiling_per_s"] = sorted(ceiling)[1]
    figures["verify_ceiling_min_per_s"], figures["verify_ceiling_max_per_s"] = min(ceiling), max(ceiling)
    _log(f"verify ceiling samples {[round(c) for c in ceiling]}")

    # ---- 6. lottery draws ----
    figures["draw_ms_10"] = measures.draw_ms(10, 200)
    figures["draw_ms_1k"] = measures.draw_ms(1000, 50)
    figures["draw_ms_100k"] = measures.draw_ms(100_000, 5)
    figures["draw_ms_100k_worst"] = measures.draw_ms(100_000, 3, worst=True)
    _log(f"draw 100k {figures['draw_ms_100k']:.1f} ms, winner last {figures['draw_ms_100k_worst']:.0f} ms")

    # ---- 10. ECVRF per proposal, and a block of 100 proposals ----
    figures.update(measures.vrf_ms(sizes.vrf_repeat))
    _log(f"ECVRF prove {figures['vrf_prove_ms']:.2f} ms, verify {figures['vrf_verify_ms']:.2f} ms")
    figures.update(measures.forge_with_proposals(workdir / "proposals", fixtures.validator_set(sizes.validators),
                                                 sizes.proposal_blocks))
    _log(f"forge with {sizes.validators} proposals {figures['forge_ms_100_proposals']:.1f} ms")

    # ---- 4/5 small: a 100-block chain forged with synced commits ----
    small_home = workdir / "small"
    with world.create_chain(small_home, max_block_txs=1) as small:
        samples = []
        for _ in range(sizes.small_blocks):
            measures._check_admitted(small.submit_many([fixtures.propose_next(small, world.chain_validator)]), "small")
            t0 = time.perf_counter()
            if small.forge(fixtures.GENESIS_TIMESTAMP + small.height + 1).block is None:
                raise RuntimeError("small chain: forge produced no block")
            samples.append((time.perf_counter() - t0) * 1e3)
        figures["forge_ms_synced_1tx"] = sorted(samples)[len(samples) // 2]
        small_height = small.height
    figures["open_ms_first_small"] = measures.open_status_once_ms(small_home)

    # ---- 9. peak memory child, run while the long chain is built ----
    tx_file = workdir / "admit50k.txs"
    measures.write_tx_file(tx_file, transfers[:sizes.child_txs])
    child = measures.start_admission_child(tx_file, workdir / "rss", sizes.senders, sizes.batch)

    # ---- 4/5 large: the long chain, one proposal per block, each proved over its parent's seed ----
    long_home = workdir / "long"
    started = time.perf_counter()
    with world.create_chain(long_home, max_block_txs=1) as long_chain:
        fixtures.unsynced_writes(long_chain)
        for _ in range(sizes.long_blocks):
            proposal = fixtures.propose_next(long_chain, world.chain_validator, 60 + long_chain.height % 100)
            measures._check_admitted(long_chain.submit_many([proposal]), "long chain")
            if long_chain.forge(fixtures.GENESIS_TIMESTAMP + long_chain.height + 1).block is None:
                raise RuntimeError("long chain: forge produced no block")
            if long_chain.height % 2000 == 0:
                _log(f"long chain at {long_chain.height}")
        long_height = long_chain.height
    figures["long_build_s"] = time.perf_counter() - started
    figures["long_build_ms_per_block"] = figures["long_build_s"] * 1e3 / max(long_height, 1)
    figures["long_height"] = long_height
    _log(f"long chain h={long_height} built in {figures['long_build_s']:.1f}s")

    result = measures.finish_admission_child(child)
    figures["peak_rss_mb_admit_50k"] = result["peak_rss_mb"]
    figures["admit_child_txs"] = result["admitted"]
    figures["admit_child_baseline_rss_mb"] = result["baseline_rss_mb"]
    figures["admit_child_per_s"] = result["admitted"] / result["seconds"]
    tx_file.unlink()
    _log(f"admission child: {result}")

    figures["open_ms_first_large"] = measures.open_status_once_ms(long_home)
    figures.update(measures.compare_small_large(small_home, small_height, long_home, long_height,
                                                sizes.opens, sizes.shows))
    _log(f"open small {figures['open_ms_small']:.2f} ms / large {figures['open_ms_large']:.2f} ms; "
         f"show small {figures['show_ms_small']:.3f} ms / large {figures['show_ms_large']:.3f} ms")

    # ---- 8. CLI in fresh processes ----
    repo = Path(__file__).resolve().parent.parent
    figures["cli_help_s"] = measures.cli_seconds(["--help"], sizes.cli_repeat, repo)
    figures["cli_status_s"] = measures.cli_seconds(["--home", str(long_home), "chain", "status"], sizes.cli_repeat, repo)

    # ---- 11. scale: genesis accounts and chain length ----
    figures.update(run_scale(sizes, workdir, world))

    # ---- 12. HTTP: a real node subprocess; ratios to the ceiling sampled above ----
    figures.update(run_http(sizes, workdir, world, transfers))
    http.add_ratios(figures)
    return figures


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def render_table(figures: dict[str, float]) -> str:
    width = max([26] + [len(key) for key in figures])
    lines = [f"{'name':<{width}} {'value':>12} {'unit':<8} {'target':<20} met?", "-" * (width + 48)]
    for row in ROWS:
        if row.key not in figures:
            continue  # a size this run skips (--quick, --scale-only, --http-only)
        met = "" if row.check is None else ("yes" if row.check(figures) else "NO")
        lines.append(f"{row.key:<{width}} {_fmt(figures[row.key]):>12} {row.unit:<8} {row.target:<20} {met}")
    lines.append("")
    for key, unit, note in INFO_ROWS:
        if key in figures:
            lines.append(f"{key:<{width}} {_fmt(figures[key]):>12} {unit:<8} {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--quick", action="store_true", help="smaller smoke run (figures indicative only)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory with the chains")
    parser.add_argument("--scale-only", action="store_true",
                        help="only the scale figures (genesis accounts, verify by chain length)")
    parser.add_argument("--http-only", action="store_true",
                        help="only the HTTP figures (admission through a node subprocess, status latency)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="posctl-bench-"))
    started = time.perf_counter()
    try:
        if args.scale_only:
            figures = run_scale(sizes, workdir, fixtures.make_world(sizes.senders))
        elif args.http_only:
            figures = run_http_only(sizes, workdir)
        else:
            figures = run(sizes, workdir)
    finally:
        if args.keep:
            _log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    load_after = os.getloadavg()
    print(render_table(figures))
    print(f"\n{'quick' if args.quick else 'full'}{' scale-only' if args.scale_only else ''}{' http-only' if args.http_only else ''} run, {total:.0f}s on {os.cpu_count()} cores; "
          f"1-min load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    if args.json:
        out: dict[str, Any] = {row.key: round(figures[row.key], 3) for row in ROWS if row.key in figures}
        out.update({key: round(figures[key], 3) for key, _, _ in INFO_ROWS if key in figures})
        out.update({key: round(value, 3) for key, value in figures.items() if key.startswith("http_") and key not in out})
        out["targets_met"] = {row.key: row.check(figures) for row in ROWS
                              if row.check is not None and row.key in figures}
        out["run"] = {"quick": args.quick, "seconds": round(total, 1), "cores": os.cpu_count(),
                      "load_before": round(load_before[0], 2), "load_after": round(load_after[0], 2)}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
