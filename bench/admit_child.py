"""Child process for the peak-memory figure: admit every tx of a file into a fresh chain.

Run as ``python -m bench.admit_child TX_FILE HOME SENDERS BATCH``; prints one JSON line. Being
its own process, its peak RSS is that of admitting those txs and nothing else.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from bench.fixtures import make_world
from ledger.chain.mempool import decode_submission


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _peak_mb() -> float:
    """This process's own peak RSS (VmHWM). ``ru_maxrss`` is not enough on its own: Linux
    carries it over from the forking parent, so a child started by a 100 MB parent reports at
    least 100 MB. VmHWM belongs to the new address space made by exec."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return _maxrss_mb()


def main(argv: list[str]) -> int:
    tx_file, home, senders, batch = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    chain = make_world(senders).create_chain(home)
    baseline = _peak_mb()
    admitted = 0
    started = time.perf_counter()
    with open(tx_file, "rb") as handle:
        while True:
            lines = [handle.readline() for _ in range(batch)]
            txs = [decode_submission(line.rstrip(b"\n")) for line in lines if line]
            if not txs:
                break
            results = chain.submit_many(txs)
            refused = [r.error for r in results if r.error is not None]
            if refused:
                raise SystemExit(f"{len(refused)} txs refused, first: {refused[0]}")
            admitted += len(txs)
    seconds = time.perf_counter() - started
    pending = chain.mempool.count
    chain.close()
    print(json.dumps({
        "peak_rss_mb": round(_peak_mb(), 1), "ru_maxrss_mb": round(_maxrss_mb(), 1), "baseline_rss_mb": round(baseline, 1),
        "admitted": admitted, "pending": pending, "seconds": round(seconds, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
