"""A writable stand-in for a read-only data folder (a Kaggle notebook's /kaggle/input/<slug>, a
read-only mount): a folder in the work root holding a link to each entry of the read-only one,
beside which archives are unpacked. Made once and brought up to date on each call, so what was
unpacked is reused next time."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

NOTE = ".kaggletools-mirror.json"  # in a mirror: the folder it stands in for


def location(source: Path, work: Path) -> Path:
    """Where the mirror of `source` lives under `work` (its name, and a hash of its full path)."""
    source = Path(source).absolute()
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:8]
    return Path(work) / f"{source.name or 'data'}-{digest}"


def mirror(source: Path, work: Path) -> Path:
    """The mirror of the folder `source` under `work`, made or brought up to date: a link for each
    of `source`'s entries that the mirror lacks; links of ours whose target is gone removed."""
    source = Path(source).absolute()
    target = location(source, work)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror}; {source} is read-only and its work folder {target} cannot be made: "
                               "choose a writable one with --work DIR (or $KAGGLETOOLS_WORK)", e.filename) from None
    for entry in source.iterdir():
        link = target / entry.name
        if entry.name == NOTE:  # the mirror's own note, never the source's
            continue
        if not link.exists() and not link.is_symlink():
            try:
                os.symlink(entry, link, target_is_directory=entry.is_dir())
            except FileExistsError:  # another process (a torchrun rank) made it meanwhile
                pass
    for link in target.iterdir():
        if link.is_symlink() and not link.exists() and str(os.readlink(link)).startswith(str(source) + os.sep):
            link.unlink()
    note = target / NOTE
    if not note.is_file() or note.is_symlink():
        tmp = note.with_name(note.name + f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"mirror_of": str(source)}, indent=2) + "\n")
        os.replace(tmp, note)
    return target
