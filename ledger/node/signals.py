"""SIGINT and SIGTERM handled in a thread of their own, never in the middle of the main thread.

A Python signal handler runs in the main thread between two bytecodes, wherever that thread is.
Our long-running commands (``node run``, ``validator run``) wait in ``threading.Event.wait``, and
were stopped by calling ``Event.set`` from the handler — but ``Event.wait`` holds the event's lock
for a few bytecodes on its way in and out, and a handler arriving there blocks on that lock
forever: the process ignores every later Ctrl-C and SIGTERM and must be killed. (Reproduced: a
loop waiting 0.5 ms at a time hung within a few hundred SIGINTs; a ``validator run`` in CI once
did not exit within 20 s of Ctrl-C.) A handler that logs can likewise land inside a ``print`` of
the main thread and raise "reentrant call".

So the handler installed here does nothing. The C-level handler writes the signal's number to
the fd given to :func:`signal.set_wakeup_fd` (async-signal-safe), and a watcher thread reading
that fd calls ``on_signal`` like any other code: it may take locks, log and set events.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_END = 0
"""Written by :func:`signals_to_thread` on exit to end its watcher (no signal has number 0)."""


def _ignore(_signum: int, _frame: Any) -> None:
    """The Python-level handler: the watcher thread does the work."""


@contextlib.contextmanager
def signals_to_thread(on_signal: Callable[[int], None],
                      signums: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Inside the block, each of ``signums`` calls ``on_signal(signum)`` in a watcher thread.

    Main thread only (as :func:`signal.signal` is). On exit the previous handlers and wakeup fd
    come back, and the watcher ends after handling every signal that arrived before.
    """
    wanted = {int(signum) for signum in signums}
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block; a full pipe drops bytes

    def watch() -> None:
        while True:
            data = os.read(read_end, 64)
            for number in data:
                if number == _END:
                    return
                if number in wanted:
                    on_signal(number)
            if not data:
                return

    watcher = threading.Thread(target=watch, name="posctl-signals", daemon=True)
    watcher.start()
    previous_handlers = {signum: signal.signal(signum, _ignore) for signum in signums}
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        try:
            os.write(write_end, bytes([_END]))
        except BlockingIOError:  # a pipe full of signal numbers: closing ends the watcher too
            pass
        os.close(write_end)
        watcher.join()
        os.close(read_end)


__all__ = ["STOP_SIGNALS", "signals_to_thread"]
