"""SIGTERM (what a scheduler or `kill` sends) becomes an exception like Ctrl-C's, so a run marks
itself interrupted and exits 143 instead of vanishing; SIGINT stays KeyboardInterrupt (exit 130).
`deferred` holds both back while a checkpoint is written, so an interrupt never costs the epoch
that just ended."""
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


@contextlib.contextmanager
def deferred():
    """SIGINT and SIGTERM that arrive within this block take effect when it ends (delivered again
    to the handlers in place before it), so what the block writes is written whole."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for s in dict.fromkeys(received):
            signal.raise_signal(s)


def interrupt_in(error: BaseException) -> BaseException | None:
    """The KeyboardInterrupt or Interrupted behind `error` (its cause or context, however deep;
    e.g. Ctrl-C inside an import that Python wraps in a RuntimeError), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (KeyboardInterrupt, Interrupted)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
