"""Progress bars that suit where the output goes: tqdm's bar on a terminal; in a log file (output
not a terminal) one plain line at every tenth of the work, so no wall of carriage returns.
`enabled=False` (--quiet) shows nothing."""
from __future__ import annotations

import contextlib
import sys
import time

_SILENCED = [0]  # > 0 within `silenced()`: no bar and no line anywhere (--quiet)


@contextlib.contextmanager
def silenced(active: bool = True):
    """Within this block every bar and progress line is off (the command line's --quiet)."""
    _SILENCED[0] += int(active)
    try:
        yield
    finally:
        _SILENCED[0] -= int(active)


def is_silenced() -> bool:
    return _SILENCED[0] > 0


def bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
        leave: bool = False, bytes_: bool = False):
    """A progress bar over `iterable` (or updated by hand with `.update(n)`); `bytes_`: counts
    bytes, shown in KiB, MiB, ..."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    enabled = enabled and not is_silenced()
    if enabled and sys.stderr.isatty():
        from tqdm.auto import tqdm

        scale = {"unit_scale": True, "unit_divisor": 1024} if bytes_ else {}
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, **scale)
    return LineBar(iterable, total=total, desc=desc, unit=unit, enabled=enabled, bytes_=bytes_)


def printable(text, keep: str = "") -> str:
    """`text` with every control or invisible formatting character (escape sequences, carriage
    returns, backspaces, bidirectional overrides; newlines unless `keep` holds them) written as its
    escape (\\x1b, \\u202e), so text from outside (team names, server messages, file names) cannot
    move the cursor, recolour or rewrite the terminal."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " or c in keep else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def write(text: str, enabled: bool = True) -> None:
    """A line that does not break a bar on the terminal (control characters escaped, see printable)."""
    if not enabled or is_silenced():
        return
    text = printable(text, keep="\n")
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stdout)
    else:
        print(text, flush=True)


def changes(prefix: str, enabled: bool = True):
    """A function that prints `prefix: <status> (<n> s elapsed)` when the status it is given
    differs from the last one (a poll's status line: changes only, with the time waited)."""
    start, last = time.monotonic(), [None]

    def say(status) -> None:
        if status != last[0]:
            last[0] = status
            write(f"{prefix}: {status} ({time.monotonic() - start:.0f} s elapsed)", enabled)
    return say


class LineBar:
    """tqdm's interface, reporting on a new line at 10%, 20%, ... (at most one line every
    `every` seconds) and always at the end."""

    def __init__(self, iterable=None, *, total=None, desc="", unit="it", enabled=True, steps: int = 10,
                 every: float = 5.0, bytes_: bool = False):
        self.iterable, self.total, self.desc, self.unit, self.enabled = iterable, total, desc, unit, enabled
        self.bytes = bytes_
        self.n, self.steps, self.next_mark, self.postfix, self.every = 0, steps, 1, "", every
        self.start = self.last = time.perf_counter()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.enabled and self.total and self.n * self.steps >= self.next_mark * self.total:
            while self.n * self.steps >= self.next_mark * self.total:
                self.next_mark += 1
            if self.n >= self.total or time.perf_counter() - self.last >= self.every:
                self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        if self.enabled and not self.total and self.n:
            self._line()
        self.enabled = False

    def _line(self) -> None:
        self.last = time.perf_counter()
        seconds = self.last - self.start
        if self.bytes:
            done, unit = (f"{self.n / 2**20:.1f}/{self.total / 2**20:.1f}" if self.total
                          else f"{self.n / 2**20:.1f}"), "MiB"
        else:
            done, unit = (f"{self.n}/{self.total}" if self.total else f"{self.n}"), self.unit
        pct = f" {100 * self.n // self.total}%" if self.total else ""
        print(f"{self.desc}:{pct} {done} {unit} in {seconds:.1f} s {self.postfix}".rstrip(), file=sys.stderr,
              flush=True)
