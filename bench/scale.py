"""Figures of scale: by genesis accounts (open, ``chain status``, ``chain init``) and by chain
length in small blocks (``verify``).

Each size gets its own chain in the bench's temp directory. Open and status are sampled in
alternating rounds over every size, so all sizes see the same machine load, and reported as
medians; genesis is timed as the whole ``posctl chain init`` process with its peak RSS.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bench.fixtures import CHAIN_ID, GENESIS_TIMESTAMP, VALIDATOR_BOND, World, propose_next, unsynced_writes
from bench.measures import posctl_command
from ledger.chain.facade import Chain
from ledger.crypto import bech32


def _addresses(span: tuple[int, int]) -> list[str]:
    start, end = span
    return [bech32.encode_address(hashlib.sha256(b"bench-account" + i.to_bytes(8, "big")).digest()[:20])
            for i in range(start, end)]


def write_genesis_file(path: Path, accounts: int, validator: str) -> None:
    """A genesis file of ``accounts`` allocations (distinct addresses, made on every core) and
    one bonded validator."""
    step = 20_000
    spans = [(start, min(start + step, accounts)) for start in range(0, accounts, step)]
    with concurrent.futures.ProcessPoolExecutor() as pool:
        addresses = [address for part in pool.map(_addresses, spans) for address in part]
    genesis = {
        "params": {"chain_id": CHAIN_ID}, "timestamp": GENESIS_TIMESTAMP,
        "allocations": {address: 1000 + i for i, address in enumerate(addresses)},
        "bonds": {validator: VALIDATOR_BOND},
    }
    path.write_text(json.dumps(genesis), encoding="utf-8")


@dataclass
class InitFigures:
    """One ``posctl chain init --genesis FILE`` run."""

    seconds: float
    peak_rss_mb: float
    """The largest peak RSS of the process and its workers (VmHWM): counts the pages of LevelDB's
    own tables that it maps read-only while compacting (page cache, reclaimed under pressure)."""
    peak_anon_mb: float
    """The process's largest anonymous RSS, sampled every 10 ms: the memory init needs."""


def init_from_file(home: Path, genesis_file: Path) -> InitFigures:
    """Time and memory of ``posctl chain init --genesis FILE`` in a fresh process.

    The peak RSS is read by GNU ``time`` when installed: a child's ``ru_maxrss`` also counts the
    memory of the (large) bench process it was forked from, before its ``exec``; ``time`` forks
    from a small process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    command = posctl_command() + ["--home", str(home), "chain", "init", "--genesis", str(genesis_file)]
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    report = home.parent / f"{home.name}.rss"
    if gnu_time is not None:
        command = [gnu_time, "-f", "%M", "-o", str(report)] + command
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = _AnonSampler(child.pid, through_time=gnu_time is not None)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    sampler.stop()
    err = child.stderr.read().decode() if child.stderr else ""
    if status != 0:
        raise RuntimeError(f"chain init exited with status {status}: {err[-500:]}")
    peak_mb = usage.ru_maxrss / 1024
    if gnu_time is not None:
        peak_mb = float(report.read_text().split()[-1]) / 1024
        report.unlink()
    # no sample (no /proc here): not a figure, and a ratio of NaN fails its target rather than pass
    return InitFigures(seconds, peak_mb, sampler.peak_kb / 1024 if sampler.peak_kb else float("nan"))


class _AnonSampler(threading.Thread):
    """Samples the anonymous RSS (``RssAnon``) of the posctl process: ``pid`` itself, or its
    child when ``pid`` is GNU ``time``."""

    def __init__(self, pid: int, through_time: bool) -> None:
        super().__init__(daemon=True)
        self.pid, self.through_time = pid, through_time
        self.peak_kb = 0
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join()

    def run(self) -> None:
        target: int | None = None if self.through_time else self.pid
        while not self._done.wait(0.01):
            try:
                if target is None:
                    children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
                    target = int(children[0]) if children else None
                    continue
                for line in Path(f"/proc/{target}/status").read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                continue


def open_ms(home: Path) -> float:
    """ms of one ``Chain.open`` (the close is not timed)."""
    started = time.perf_counter()
    chain = Chain.open(home)
    elapsed = (time.perf_counter() - started) * 1e3
    chain.close()
    return elapsed


def status_process_s(home: Path) -> float:
    """Wall seconds of ``posctl chain status`` in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    started = time.perf_counter()
    done = subprocess.run(posctl_command() + ["--home", str(home), "chain", "status"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError(f"chain status exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return time.perf_counter() - started


def compare_accounts(homes: dict[str, Path], rounds: int) -> dict[str, float]:
    """Medians of open (ms) and whole-process status (s) per size, in alternating rounds."""
    opens: dict[str, list[float]] = {name: [] for name in homes}
    statuses: dict[str, list[float]] = {name: [] for name in homes}
    for name, home in homes.items():  # one untimed status each: first reads are not steady state
        status_process_s(home)
    for _ in range(rounds):
        for name, home in homes.items():
            opens[name].append(open_ms(home))
            statuses[name].append(status_process_s(home))
    figures = {}
    for name in homes:
        figures[f"open_ms_{name}"] = statistics.median(opens[name])
        figures[f"status_s_{name}"] = statistics.median(statuses[name])
    return figures


def build_proposal_chain(world: World, home: Path, blocks: int) -> None:
    """``blocks`` blocks of one proposal each (unsynced commits: the fixture, not a figure)."""
    with world.create_chain(home, max_block_txs=1) as chain:
        unsynced_writes(chain)
        for _ in range(blocks):
            proposal = propose_next(chain, world.chain_validator, 60 + chain.height % 100)
            if any(r.error is not None for r in chain.submit_many([proposal])):
                raise RuntimeError("proposal chain: a proposal was refused")
            if chain.forge(GENESIS_TIMESTAMP + chain.height + 1).block is None:
                raise RuntimeError("proposal chain: forge produced no block")


def verify_blocks_per_s(home: Path) -> tuple[float, float]:
    """(blocks/s, seconds) of a whole ``Chain.verify()`` (open excluded)."""
    with Chain.open(home) as chain:
        started = time.perf_counter()
        report = chain.verify()
        seconds = time.perf_counter() - started
    return report.height / seconds, seconds


def size_label(count: int) -> str:
    return f"{count // 1_000_000}m" if count >= 1_000_000 and count % 1_000_000 == 0 else f"{count // 1000}k"


def run_scale(world: World, workdir: Path, accounts: Sequence[int], genesis_sizes: Sequence[int],
              verify_blocks: Sequence[int], rounds: int, log) -> dict[str, float]:
    figures: dict[str, float] = {}
    homes: dict[str, Path] = {}
    for count in sorted(set(accounts) | set(genesis_sizes)):
        name = size_label(count)
        genesis_file = workdir / f"genesis-{name}.json"
        started = time.perf_counter()
        write_genesis_file(genesis_file, count, world.chain_validator.address)
        log(f"genesis file of {count:,} accounts written in {time.perf_counter() - started:.1f}s")
        home = workdir / f"accounts-{name}"
        file_mb = genesis_file.stat().st_size / (1024 * 1024)
        init = init_from_file(home, genesis_file)
        genesis_file.unlink()
        if count in genesis_sizes:
            figures[f"genesis_s_{name}"], figures[f"genesis_rss_mb_{name}"] = init.seconds, init.peak_rss_mb
            figures[f"genesis_anon_mb_{name}"] = init.peak_anon_mb
            figures[f"genesis_file_mb_{name}"] = file_mb
            figures[f"genesis_memory_x_{name}"] = init.peak_anon_mb / file_mb
        log(f"chain init of {count:,} allocations ({file_mb:.0f} MB file): {init.seconds:.1f}s, peak RSS "
            f"{init.peak_rss_mb:.0f} MB, peak anonymous {init.peak_anon_mb:.0f} MB")
        if count in accounts:
            homes[name] = home
    figures.update(compare_accounts(homes, rounds))
    smallest, largest = size_label(min(accounts)), size_label(max(accounts))
    figures["open_ratio_accounts"] = figures[f"open_ms_{largest}"] / figures[f"open_ms_{smallest}"]
    figures["status_ratio_accounts"] = figures[f"status_s_{largest}"] / figures[f"status_s_{smallest}"]
    log(f"open {[round(figures[f'open_ms_{n}'], 2) for n in homes]} ms, "
        f"status {[round(figures[f'status_s_{n}'], 3) for n in homes]} s")
    for blocks in verify_blocks:
        name = size_label(blocks)
        home = workdir / f"blocks-{name}"
        started = time.perf_counter()
        build_proposal_chain(world, home, blocks)
        log(f"{blocks:,} one-proposal blocks built in {time.perf_counter() - started:.0f}s")
        figures[f"verify_blocks_per_s_{name}"], figures[f"verify_s_blocks_{name}"] = verify_blocks_per_s(home)
        log(f"verify {blocks:,} blocks: {figures[f'verify_blocks_per_s_{name}']:.0f} blocks/s")
    return figures
