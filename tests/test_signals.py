"""SIGINT/SIGTERM reach a watcher thread, so a signal can never deadlock the main thread.

Each test runs a small child process: signals are process-wide and the test runner has its own
SIGINT handler. The stress test is the bug this module fixes: with ``Event.set`` called from a
plain signal handler, a main thread looping on ``Event.wait`` hung within a few hundred signals
(the handler landed while ``wait`` held the event's lock); through :func:`signals_to_thread`
every round must stop.
"""

from __future__ import annotations

import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_child(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_each_signal_calls_back_in_the_watcher_thread_and_the_old_handlers_come_back() -> None:
    child = run_child("""
        import os, signal, threading, time
        from ledger.node.signals import signals_to_thread

        seen = []
        done = threading.Event()
        def on_signal(signum):
            seen.append((signal.Signals(signum).name, threading.current_thread().name))
            if len(seen) == 2:
                done.set()

        def previous(signum, frame):
            print("previous handler", signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, previous)
        with signals_to_thread(on_signal):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            print("both seen", done.wait(10))
        print(seen)
        print("wakeup fd restored", signal.set_wakeup_fd(-1) == -1)
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(500):
                time.sleep(0.01)
            print("no KeyboardInterrupt")
        except KeyboardInterrupt:
            print("KeyboardInterrupt again")
    """)
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines() == [
        "both seen True",
        "[('SIGINT', 'posctl-signals'), ('SIGTERM', 'posctl-signals')]",
        "wakeup fd restored True",
        "previous handler SIGTERM",
        "KeyboardInterrupt again",
    ]


def test_a_signal_during_event_wait_always_stops_the_loop() -> None:
    """1,000 rounds of: the child waits on an event in short slices (as ``node run`` and
    ``validator run`` do), this process sends SIGINT at a random moment, the child must stop.
    Sent from outside, as Ctrl-C is: with the old handler in place of ``signals_to_thread`` this
    test failed at round 186 (and a script doing the same hung at rounds 2 and 22)."""
    rounds = 1000
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import threading
        from ledger.node.signals import signals_to_thread

        for _ in range({rounds}):
            stop = threading.Event()
            with signals_to_thread(lambda _signum: stop.set()):
                print("ready", flush=True)
                while not stop.wait(0.0005):
                    pass
            print("stopped", flush=True)
    """)], cwd=ROOT, stdout=subprocess.PIPE, bufsize=0)  # unbuffered: select() sees every line
    assert child.stdout is not None

    def next_line(timeout: float) -> bytes | None:
        readable, _, _ = select.select([child.stdout], [], [], timeout)
        return child.stdout.readline().strip() if readable else None  # type: ignore[union-attr]

    try:
        for number in range(rounds):
            assert next_line(30) == b"ready", f"round {number}: the child did not start waiting"
            time.sleep(random.uniform(0, 0.002))
            child.send_signal(signal.SIGINT)
            assert next_line(10) == b"stopped", f"round {number}: SIGINT did not stop the wait (deadlock)"
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_ctrl_c_inside_a_finalizer_reaches_the_command_once_the_finalizer_is_done() -> None:
    """One-shot commands (`cli.context.signals_unwind_once`): a Ctrl-C landing in a ``__del__``
    (pycryptodome frees its native memory there) was raised inside it, where Python prints
    "Exception ignored in … KeyboardInterrupt" and goes on: 2 of 60 demos interrupted at random
    moments finished with exit 0 and that traceback. Now it is delivered again after the
    finalizer and unwinds the command as usual; the finalizer runs to its end."""
    result = run_child("""
        import gc, os, signal, sys
        from cli.context import signals_unwind_once

        class Native:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C lands as memory is freed
                for _ in range(1000):  # Python code after it, in the finalizer
                    pass
                print("finalizer finished", flush=True)

        with signals_unwind_once():
            try:
                Native()  # freed at once
                for _ in range(10_000_000):
                    pass
                print("the Ctrl-C was lost", flush=True)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
    """)
    assert result.stdout.splitlines() == ["finalizer finished", "interrupted"], (result.stdout, result.stderr)
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_ctrl_c_deferred_as_a_command_ends_does_not_outlive_it() -> None:
    """A Ctrl-C deferred out of a finalizer (above) is sent again 2 ms later; if the command ends
    within those milliseconds, the handlers it restored must not receive it: Python's default
    raised a ``KeyboardInterrupt`` in whatever ran next (the interpreter's exit, a caller's code).
    The command that finished reports as finished."""
    result = run_child("""
        import os, signal, time
        from cli.context import signals_unwind_once

        class Native:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C lands as the command's last object is freed

        with signals_unwind_once():
            Native()
        time.sleep(0.1)  # after the command: its handlers are gone
        print("finished", flush=True)
    """)
    assert result.stdout.splitlines() == ["finished"], (result.stdout, result.stderr)
    assert result.returncode == 0 and "KeyboardInterrupt" not in result.stderr, result.stderr
