"""Worker processes end with their parent: ``kill -9`` of a node, an init or a verify leaves no
idle workers behind (a stdlib pool's workers would wait on their input pipe forever); and a
Ctrl-C, which a terminal sends to every process of the foreground group, is left to the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PARENT = textwrap.dedent("""
    import os, sys, time
    from ledger.chain.pools import spawn_pool
    if __name__ == "__main__":
        pool = spawn_pool(2)
        pids = set()
        while len(pids) < 2:  # until both workers have started and answered
            pids |= {future.result() for future in [pool.submit(os.getpid) for _ in range(8)]}
        print(" ".join(map(str, sorted(pids))), flush=True)
        time.sleep(120)
""")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    root = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)})
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        assert parent.wait(timeout=10) == -signal.SIGKILL
        assert wait_gone(workers, 5.0) == []
    finally:
        parent.kill()
        parent.wait()


def test_a_ctrl_c_to_the_process_group_is_left_to_the_parent(tmp_path: Path) -> None:
    """SIGINT to the whole group, as a terminal's Ctrl-C: the workers neither die nor print a
    ``KeyboardInterrupt`` traceback, and the pool still answers; the parent alone acts on it."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from ledger.chain.pools import spawn_pool
        if __name__ == "__main__":
            pool = spawn_pool(2)
            pids = set()
            while len(pids) < 2:
                pids |= {future.result() for future in [pool.submit(os.getpid) for _ in range(8)]}
            print(" ".join(map(str, sorted(pids))), flush=True)
            try:
                time.sleep(120)
            except KeyboardInterrupt:
                print("interrupted; the pool answers from", pool.submit(os.getpid).result(), flush=True)
                sys.stdin.readline()  # the test looks at the workers meanwhile
                pool.shutdown()
    """))
    root = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)},
                              start_new_session=True)
    try:
        assert parent.stdin is not None and parent.stdout is not None
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        os.killpg(parent.pid, signal.SIGINT)
        answered = parent.stdout.readline()
        assert answered.startswith("interrupted; the pool answers from "), answered
        assert int(answered.split()[-1]) in workers
        time.sleep(0.3)  # a worker that took the SIGINT would be gone by now
        assert [pid for pid in workers if not alive(pid)] == []
        parent.stdin.write("\n")
        parent.stdin.flush()
        _, err = parent.communicate(timeout=30)
        assert parent.returncode == 0, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        assert wait_gone(workers, 5.0) == []
    finally:
        parent.kill()
        parent.wait()
