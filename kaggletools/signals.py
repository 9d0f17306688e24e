"""SIGTERM (what a scheduler or `kill` sends) becomes an exception like Ctrl-C's, so a run marks
itself interrupted and exits 143 instead of vanishing; SIGINT stays KeyboardInterrupt (exit 130)."""
from __future__ import annotations

import contextlib
import signal
import threading

from kaggletools.errors import Interrupted


@contextlib.contextmanager
def terminate_raises():
    """Within this block, SIGTERM raises Interrupted in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum, signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
