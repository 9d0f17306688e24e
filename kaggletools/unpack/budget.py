"""What unpacking may write, and the errors it raises: a guard against archive bombs.

`UnpackBudget` holds the limits of one extraction (an archive and every archive inside it);
`Tally` counts against them WHILE writing, so that a header that lies about sizes cannot get
past it. Every limit can be raised with an environment variable or a `budget=` argument.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

MiB, GiB = 2**20, 2**30
ENV = {"max_bytes": "KAGGLETOOLS_UNPACK_MAX_BYTES", "max_ratio": "KAGGLETOOLS_UNPACK_MAX_RATIO",
       "ratio_floor": "KAGGLETOOLS_UNPACK_RATIO_FLOOR", "max_members": "KAGGLETOOLS_UNPACK_MAX_MEMBERS",
       "max_depth": "KAGGLETOOLS_UNPACK_MAX_DEPTH"}
_UNITS = {"": 1, "k": 2**10, "m": MiB, "g": GiB, "t": 2**40}


class ArchiveError(RuntimeError):
    """An archive cannot be unpacked: unknown format, truncated or corrupt, a name clash, a disk
    full, or a limit passed."""


class UnsafeArchiveError(ArchiveError, ValueError):
    """A member would land outside the target, or is a device, a fifo or a link that cannot be
    made a copy of a file in the archive."""


class ArchiveBudgetError(ArchiveError):
    """Unpacking would pass a limit of its `UnpackBudget`: an archive bomb, or a limit too low."""


@dataclass(frozen=True)
class UnpackBudget:
    """Limits of one extraction, the archives inside it included. Defaults, each overridden by
    its environment variable (see `ENV`; sizes take K, M, G, T suffixes, e.g. `50G`):

    - max_bytes: bytes on disk at once (written, less inner archives already unpacked and
      deleted); None: the free space of the target's file system less 10% of it (at most 1 GiB).
    - max_ratio: bytes written from an archive / its size, checked past `ratio_floor` bytes
      (200: Kaggle's JPEGs are about 1:1, CSV and JSON 3-20:1; a zip bomb 1000:1 and more).
    - ratio_floor: 64 MiB.
    - max_members: 2,000,000 members (files, folders, links) in all.
    - max_depth: 4 archives inside archives.
    """
    max_bytes: int | None = None
    max_ratio: float = 200.0
    ratio_floor: int = 64 * MiB
    max_members: int = 2_000_000
    max_depth: int = 4

    @classmethod
    def from_env(cls, environ: dict | None = None) -> UnpackBudget:
        """The defaults, with those set in the environment (`ENV`) instead."""
        environ = os.environ if environ is None else environ
        values = {field: _parse(var, environ[var], field)
                  for field, var in ENV.items() if environ.get(var, "").strip()}
        return cls(**values)

    def for_folder(self, folder: Path) -> UnpackBudget:
        """This budget, `max_bytes` filled in from the free space where `folder` is."""
        if self.max_bytes is not None:
            return self
        free = shutil.disk_usage(folder).free
        return dataclasses.replace(self, max_bytes=max(0, free - min(GiB, free // 10)))


def _parse(var: str, text: str, field: str) -> int | float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise ArchiveError(f"{var}={text!r} is not a number; set it to e.g. "
                           f"{'500' if field == 'max_ratio' else '50G' if field == 'max_bytes' else '10'}, or unset it")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    return value if field == "max_ratio" else int(value)


def _size(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB" if n >= MiB else f"{int(n)} bytes"


def over(label: str, member: str, what: str, field: str) -> ArchiveBudgetError:
    """The error for passing the limit `field`: what, where, and how to raise it."""
    return ArchiveBudgetError(
        f"{label}: member {member!r}: {what}; stopped, nothing was unpacked. An archive bomb, or a genuine "
        f"archive beyond the limit: then raise it with the environment variable {ENV[field]} "
        f"or budget=UnpackBudget({field}=...)")


class Tally:
    """What one extraction has written so far, checked against its budget."""

    def __init__(self, budget: UnpackBudget):
        assert budget.max_bytes is not None, "use UnpackBudget.for_folder() first"
        self.budget, self.bytes, self.members = budget, 0, 0

    def check(self, label: str, member: str, *, members: int = 0, nbytes: int = 0, written: int = 0,
              size: int = 0, declared: bool = False) -> None:
        """Raise ArchiveBudgetError if `members` more members and `nbytes` more bytes would pass a
        limit, or `written` bytes from an archive of `size` bytes on disk."""
        b, says = self.budget, "its headers say " if declared else ""
        if self.members + members > b.max_members:
            raise over(label, member, f"{says}more than {b.max_members:,} members in all", "max_members")
        if self.bytes + nbytes > b.max_bytes:
            raise over(label, member, f"{says}more than {_size(b.max_bytes)} unpacked in all (by default the free "
                                      f"disk space less a margin: free some, or unpack elsewhere)", "max_bytes")
        if written > b.ratio_floor and written > b.max_ratio * max(size, 1):
            raise over(label, member, f"{says}{_size(written)} from {_size(size)}, a compression ratio over "
                                      f"{b.max_ratio:g}:1", "max_ratio")

    def add(self, label: str, member: str, nbytes: int, written: int, size: int) -> None:
        """Count `nbytes` about to be written (`written` from this archive so far, them included)."""
        self.check(label, member, nbytes=nbytes, written=written, size=size)
        self.bytes += nbytes

    def member(self, label: str, member: str) -> None:
        """Count one member about to be made."""
        self.check(label, member, members=1)
        self.members += 1

    def release(self, nbytes: int) -> None:
        """An inner archive of `nbytes` was deleted after unpacking: its bytes are free again."""
        self.bytes = max(0, self.bytes - nbytes)
