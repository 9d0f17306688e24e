"""The data folder a step works in: the one given when it can be written; else (a Kaggle
notebook's /kaggle/input/<slug>, any read-only mount) its mirror in the work folder, where what
is packed is unpacked once and reused (kaggletools.io.mirror)."""
from __future__ import annotations

from pathlib import Path

from kaggletools import progress
from kaggletools.errors import CompetitionError
from kaggletools.io import mirror, places
from kaggletools.unpack import archives


def writable_folder(data_dir: Path, work: Path | None = None) -> Path:
    """`data_dir` when it can be written (or does not exist yet); else its mirror under `work`
    (default places.work_root())."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir() or places.writable(data_dir):
        return data_dir
    return mirror.mirror(data_dir, Path(work) if work else places.work_root())


def data_folder(competition, data_dir: Path, work: Path | None = None, quiet: bool = False) -> Path:
    """The folder to read `data_dir`'s items from: itself when writable (as it is: `prepare`
    unpacks it); a read-only one's mirror, unpacked by the competition's `prepare` when the
    read-only folder holds archives (a folder already unpacked, like a partial Planet download
    of images, is read as it is, through the mirror's links)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CompetitionError(f"{data_dir}: no such data folder; give the competition's data folder with --data "
                               "(on Kaggle: /kaggle/input/<competition slug>)")
    folder = writable_folder(data_dir, work)
    if folder != data_dir and any(archives.is_archive(p) for p in data_dir.iterdir()):
        with progress.silenced(quiet):
            competition.prepare(folder)
    return folder


def prepare(competition, data_dir: Path, add: list[Path] | None = None, quiet: bool = False,
            work: Path | None = None) -> Path:
    """Unpack what was downloaded into `data_dir` (or, read-only, its mirror under `work`), after
    bringing in `add` (archives or folders obtained elsewhere); returns the folder to use."""
    from kaggletools.io import files as file_tools

    data_dir = writable_folder(Path(data_dir), work)
    if add:
        file_tools.bring(add, data_dir)
    if not data_dir.is_dir():
        raise CompetitionError(f"{data_dir}: no such folder; run `download` first or give --data")
    with progress.silenced(quiet):
        competition.prepare(data_dir)
    return data_dir
