"""Helpers for the fault tests: real tmpfs mounts, a real CLI and node in subprocesses, damaged files.

Nothing here fakes a fault: a full disk is a 4 MiB tmpfs filled by a real file, a read-only
home is a real read-only mount, damage is bytes changed in LevelDB's own files.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ledger.consensus.transactions import Transaction
from tests.test_node import request

ROOT = Path(__file__).resolve().parent.parent

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="mounting a small tmpfs (a real full disk, a real read-only mount) needs root; CI runs as root"
)


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_") or k == "POSCTL_MIN_FREE_MB"}
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        out.pop(name, None)
    out.update(extra)
    return out


def posctl(home: Path, *args: str, timeout: float = 60.0, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--home", str(home), *args],
        cwd=ROOT, env=env(**extra_env), capture_output=True, text=True, timeout=timeout,
    )


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``path``, unmounted (lazily, if still busy) afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill_disk(directory: Path, leave: int = 0) -> Path:
    """Write a filler file until ``directory``'s file system has ``leave`` bytes free (or none)."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb") as handle:
        while True:
            stat = os.statvfs(directory)
            free = stat.f_bavail * stat.f_frsize
            if free <= leave:
                break
            try:
                handle.write(chunk[: max(min(len(chunk), free - leave), 4096)])
                handle.flush()
            except OSError:
                break
    return filler


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Node:
    """``posctl node run`` in a subprocess, its output in a log file outside the (small) home."""

    def __init__(self, home: Path, log_dir: Path, interval: float = 3600.0, **extra_env: str) -> None:
        self.home = home
        self.port = free_port()
        self.log_path = log_dir / f"node-{self.port}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--home", str(home), "node", "run",
             "--listen", f"127.0.0.1:{self.port}", "--interval", str(interval)],
            cwd=ROOT, env=env(**extra_env), stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited {self.proc.returncode}:\n{self.output()}")
            try:
                if request(self.port, "GET", "/status", timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"node did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text()

    def submit(self, tx: Transaction) -> tuple[int, Any]:
        return request(self.port, "POST", "/txs", tx.encode())

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: …`` line a failing command prints, checked to be alone."""
    no_traceback(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
