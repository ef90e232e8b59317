"""posctl's command line: a thin shell that parses, calls the library and renders."""

from __future__ import annotations

import signal
from typing import Any


def main(argv: list[str] | None = None) -> Any:
    """The ``posctl`` executable's entry point (``cli.main.main`` once the commands are imported).

    Importing click and the root group takes ~50 ms, before any handler of ours exists; Python's
    default would turn a Ctrl-C there into a ``KeyboardInterrupt`` traceback. During that window
    SIGINT keeps its default action instead, so the process ends quietly, as a C program does —
    nothing has been done yet. From the first line of the command on, Ctrl-C is the command's.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    import cli.main as command_line

    signal.signal(signal.SIGINT, previous)
    command_line.HARD_EXIT_ON_INTERRUPT = True  # a process of its own (see cli.main._leave)
    return command_line.main(argv)
