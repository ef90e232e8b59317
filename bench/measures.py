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

from bench.fixtures import CHAIN_ID, GENESIS_TIMESTAMP, World, propose_next, validators_genesis
from ledger.crypto import ecvrf
from tests.ledgerkit import Key, make_key
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


def forge_blocks(chain: Chain, blocks: int, expect_txs: int, proposer: Key) -> tuple[float, int]:
    """Forge ``blocks`` blocks of already admitted txs; returns (txs/s, txs applied).

    Before each block ``proposer`` submits its proposal for it (not timed: a v2 proposal can
    only be made once the previous block has fixed the seed); the forger keeps room for it.
    """
    applied = 0
    elapsed = 0.0
    for _ in range(blocks):
        _check_admitted(chain.submit_many([propose_next(chain, proposer)]), "proposal")
        started = time.perf_counter()
        result = chain.forge(GENESIS_TIMESTAMP + chain.height + 1)
        elapsed += time.perf_counter() - started
        if result.block is None or result.evicted:
            raise RuntimeError(f"forge failed: {result.reason}; evicted {result.evicted[:1]}")
        if len(result.block.txs) != expect_txs:
            raise RuntimeError(f"block {result.block.height} has {len(result.block.txs)} txs, expected {expect_txs}")
        applied += len(result.block.txs)
    return applied / elapsed, applied


def forge_with_proposals(home: Path, validators: Sequence[Key], blocks: int) -> dict[str, float]:
    """Median ms to forge (synced commit) a block holding one proposal from each of
    ``validators``, and median ms to admit those proposals (VRF proofs checked) beforehand.

    Proving is not timed here: each validator proves on its own machine.
    """
    forge_ms: list[float] = []
    admit_ms: list[float] = []
    with Chain.create(home, validators_genesis(validators)) as chain:
        for _ in range(blocks):
            txs = [propose_next(chain, key) for key in validators]
            started = time.perf_counter()
            _check_admitted(chain.submit_many(txs), "proposals")
            admit_ms.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            result = chain.forge(GENESIS_TIMESTAMP + chain.height + 1)
            forge_ms.append((time.perf_counter() - started) * 1e3)
            if result.block is None or len(result.block.txs) != len(validators) or result.evicted:
                raise RuntimeError(f"forge with {len(validators)} proposals failed: {result.reason} {result.evicted[:1]}")
    return {"forge_ms_100_proposals": statistics.median(forge_ms),
            "admit_ms_100_proposals": statistics.median(admit_ms)}


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


def draw_weights(participants: int, total_stake: int = 10**15) -> dict[str, int]:
    """``participants`` address-shaped validators weighing about ``total_stake`` together."""
    base = max(total_stake // participants, 1)
    return {address: base + (i % 97) for i, address in enumerate(fake_addresses(participants))}


def draw_ms(participants: int, repeat: int, worst: bool = False) -> float:
    """Median ms of one block's draw (``lottery.pick_validator``) among ``participants``.

    Typical: every validator proposes, so the first drawn wins. ``worst``: only the validator
    drawn last proposes (everyone else censored or offline), so the whole order is drawn.
    The order is found before the clock starts; the proposer set is built outside it too.
    """
    weights = draw_weights(participants)
    seeds = [hashlib.sha256(b"bench-draw:%d" % r).digest() for r in range(repeat)]
    everyone = frozenset(weights)
    samples = []
    for seed in seeds:
        if worst:
            *_, last = lottery.draw_order(seed, weights)
            proposers: frozenset[str] = frozenset([last])
        else:
            proposers = everyone
        started = time.perf_counter()
        winner, _ = lottery.pick_validator(seed, weights, proposers)
        samples.append((time.perf_counter() - started) * 1e3)
        if worst and winner != last:
            raise RuntimeError("worst-case draw: the only proposer did not win")
    return statistics.median(samples)


def vrf_ms(repeat: int) -> dict[str, float]:
    """Median ms of one ECVRF prove and one verify of a proposal's proof (``ledger.crypto.ecvrf``),
    over distinct heights so no input repeats."""
    key = make_key("bench-vrf")
    seed = hashlib.sha256(b"bench-vrf-seed").digest()
    alphas = [lottery.vrf_alpha(CHAIN_ID, height, seed) for height in range(1, repeat + 1)]
    prove, verify, proofs = [], [], []
    for alpha in alphas:
        started = time.perf_counter()
        proofs.append(ecvrf.prove(key.private, alpha))
        prove.append((time.perf_counter() - started) * 1e3)
    for alpha, proof in zip(alphas, proofs):
        started = time.perf_counter()
        ecvrf.verify(key.public, alpha, proof)
        verify.append((time.perf_counter() - started) * 1e3)
    return {"vrf_prove_ms": statistics.median(prove), "vrf_verify_ms": statistics.median(verify)}


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
    "World", "admit_batched", "admit_single", "cli_seconds", "draw_ms", "forge_blocks", "forge_with_proposals",
    "vrf_ms",
    "compare_small_large", "open_status_once_ms", "show_samples_ms", "verify_ceiling", "verify_rate",
]
