"""One function per benchmark figure. Each takes prepared inputs and returns plain numbers.

Timings use ``time.perf_counter``; "median of k" means k independent repetitions.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC
from Crypto.Signature import DSS

from bench.fixtures import GENESIS_TIMESTAMP, World
from ledger.consensus import lottery
from ledger.chain import views
from ledger.chain.facade import Chain
from ledger.chain.mempool import decode_submission
from ledger.consensus.transactions import Transaction


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


# ---- 1. verify ceiling ---------------------------------------------------------------------


def verify_ceiling(raw_txs: Sequence[bytes], count: int) -> float:
    """Raw pycryptodome verifications per second on this core, keys parsed beforehand."""
    keys: dict[bytes, ECC.EccKey] = {}
    work = []
    for raw in raw_txs[:count]:
        tx = Transaction.decode(raw)
        key = keys.get(tx.public_key)
        if key is None:
            key = keys[tx.public_key] = ECC.import_key(tx.public_key, curve_name="secp256k1")
        work.append((key, tx.signing_message(), tx.signature))
    started = time.perf_counter()
    for key, message, signature in work:
        DSS.new(key, "sec1").verify(SHA256.new(message), signature)
    return len(work) / (time.perf_counter() - started)


# ---- 2. admission --------------------------------------------------------------------------


def _check_admitted(results: list, what: str) -> None:
    refused = [r.error for r in results if r.error is not None]
    if refused:
        raise RuntimeError(f"{what}: {len(refused)} txs refused, first: {refused[0]}")


def admit_batched(chain: Chain, raw_txs: Sequence[bytes], batch: int) -> float:
    """Txs/s through decode + ``submit_many`` (one synced group commit per batch)."""
    started = time.perf_counter()
    for i in range(0, len(raw_txs), batch):
        txs = [decode_submission(raw) for raw in raw_txs[i:i + batch]]
        _check_admitted(chain.submit_many(txs), "admission")
    return len(raw_txs) / (time.perf_counter() - started)


def admit_single(chain: Chain, raw_txs: Sequence[bytes]) -> float:
    """Txs/s through decode + ``submit``: one synced write per tx."""
    started = time.perf_counter()
    for raw in raw_txs:
        chain.submit(decode_submission(raw))
    return len(raw_txs) / (time.perf_counter() - started)


# ---- 3. apply ------------------------------------------------------------------------------


def forge_blocks(chain: Chain, blocks: int, expect_txs: int) -> tuple[float, int]:
    """Forge ``blocks`` blocks of already admitted txs; returns (txs/s, txs applied)."""
    applied = 0
    elapsed = 0.0
    for _ in range(blocks):
        started = time.perf_counter()
        result = chain.forge(GENESIS_TIMESTAMP + chain.height + 1)
        elapsed += time.perf_counter() - started
        if result.block is None or result.evicted:
            raise RuntimeError(f"forge failed: {result.reason}; evicted {result.evicted[:1]}")
        if len(result.block.txs) != expect_txs:
            raise RuntimeError(f"block {result.block.height} has {len(result.block.txs)} txs, expected {expect_txs}")
        applied += len(result.block.txs)
    return applied / elapsed, applied


# ---- 4/5. open and show --------------------------------------------------------------------


def open_status_once_ms(home: Path) -> float:
    """ms of one ``Chain.open`` + ``status()`` (the close is not timed)."""
    started = time.perf_counter()
    chain = Chain.open(home)
    chain.status()
    elapsed = (time.perf_counter() - started) * 1e3
    chain.close()
    return elapsed


def show_samples_ms(home: Path, heights: Sequence[int], repeat: int) -> list[float]:
    """ms to fetch one block and render it as the CLI's JSON, cycling over ``heights``."""
    samples = []
    with Chain.open(home) as chain:
        for i in range(repeat):
            height = heights[i % len(heights)]
            started = time.perf_counter()
            json.dumps(views.block_view(chain.block(height)))
            samples.append((time.perf_counter() - started) * 1e3)
    return samples


def compare_small_large(small: Path, small_top: int, large: Path, large_top: int, rounds: int,
                        shows: int) -> dict[str, float]:
    """Open and show figures of both chains, measured in alternating rounds so both see the
    same machine load; medians of every sample."""
    opens: dict[str, list[float]] = {"small": [], "large": []}
    views_ms: dict[str, list[float]] = {"small": [], "large": []}
    homes = {"small": (small, small_top), "large": (large, large_top)}
    for _ in range(rounds):
        for name, (home, top) in homes.items():
            opens[name].append(open_status_once_ms(home))
            heights = list(range(max(top - 19, 1), top + 1))
            views_ms[name].extend(show_samples_ms(home, heights, shows))
    return {
        "open_ms_small": statistics.median(opens["small"]),
        "open_ms_large": statistics.median(opens["large"]),
        "show_ms_small": statistics.median(views_ms["small"]),
        "show_ms_large": statistics.median(views_ms["large"]),
    }


# ---- 6. lottery ----------------------------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def fake_addresses(count: int) -> list[str]:
    """Address-shaped strings (``pos1`` + 38 bech32 characters). The lottery treats addresses
    as opaque sorted strings, and real bech32 encoding costs ~50 µs each in pure Python."""
    out = []
    for i in range(count):
        digest = hashlib.sha256(i.to_bytes(8, "big")).digest()
        number = int.from_bytes(digest[:24], "big")
        chars = []
        for _ in range(38):
            number, rem = divmod(number, 32)
            chars.append(_CHARSET[rem])
        out.append("pos1" + "".join(chars))
    return out


def draw_ms(participants: int, repeat: int, total_stake: int = 10**15) -> float:
    """Median ms of one ``lottery.draw`` among ``participants`` weighing ~``total_stake``."""
    addresses = fake_addresses(participants)
    base = total_stake // participants
    weights = {address: base + (i % 97) for i, address in enumerate(addresses)}
    seeds = [lottery.compute_seed(hashlib.sha256(bytes([r])).digest(), r + 1) for r in range(repeat)]
    samples = []
    for seed in seeds:
        started = time.perf_counter()
        lottery.draw(seed, weights)
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


# ---- 7. verify -----------------------------------------------------------------------------


def verify_rate(home: Path) -> tuple[float, int, float]:
    """(txs/s, txs, seconds) of a full ``Chain.verify()`` replay, open excluded."""
    with Chain.open(home) as chain:
        started = time.perf_counter()
        report = chain.verify()
        seconds = time.perf_counter() - started
    return report.txs / seconds, report.txs, seconds


# ---- 8. CLI --------------------------------------------------------------------------------


def posctl_command() -> list[str]:
    script = Path(sys.executable).parent / "posctl"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cli.main"]


def cli_seconds(args: Sequence[str], repeat: int, cwd: Path) -> float:
    """Median wall seconds of ``posctl ARGS`` in a fresh process (exit status must be 0)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    command = posctl_command() + list(args)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return statistics.median(samples)


# ---- 9. peak memory ------------------------------------------------------------------------


def start_admission_child(tx_file: Path, home: Path, senders: int, batch: int) -> subprocess.Popen:
    """A fresh interpreter admitting every tx of ``tx_file``: its maxrss is its own peak."""
    command = [sys.executable, "-m", "bench.admit_child", str(tx_file), str(home), str(senders), str(batch)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)


def finish_admission_child(child: subprocess.Popen) -> dict:
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"admission child exited {child.returncode}: {err.decode()[-800:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


def write_tx_file(path: Path, raw_txs: Sequence[bytes]) -> None:
    """Canonical tx bytes are ASCII JSON without whitespace, so one per line is unambiguous."""
    with open(path, "wb") as handle:
        for raw in raw_txs:
            handle.write(raw + b"\n")


__all__ = [
    "World", "admit_batched", "admit_single", "cli_seconds", "draw_ms", "forge_blocks",
    "compare_small_large", "open_status_once_ms", "show_samples_ms", "verify_ceiling", "verify_rate",
]
