"""Small file helpers shared by data folders and samples: link (or copy) sources, copy side files."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_sources(data_dir: Path, out_dir: Path, sources) -> None:
    """Hard-link (or copy, across file systems) each relative `source` from data_dir into out_dir."""
    for source in sources:
        src, dst = Path(data_dir) / str(source), Path(out_dir) / str(source)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def copy_if_exists(data_dir: Path, out_dir: Path, *names: str) -> None:
    """Copy small side files (sample submissions, label files) when present."""
    for name in names:
        if (Path(data_dir) / name).is_file():
            shutil.copy2(Path(data_dir) / name, Path(out_dir) / name)


def write_filtered_csv(path: Path, out: Path, column: str, keep) -> None:
    """Copy a CSV keeping only the rows whose `column` is in `keep` (text kept verbatim)."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df[df[column].isin(set(map(str, keep)))].to_csv(out, index=False)


def bring(paths, data_dir: Path) -> None:
    """Bring archives or folders obtained elsewhere into `data_dir`: files hard-linked (or copied),
    folders linked. Bringing the same path again is a no-op; a different file of the same name
    is refused."""
    data_dir = Path(data_dir)
    for source in map(Path, paths):
        if not source.exists():
            raise FileNotFoundError(f"{source}: no such file or folder to add")
        target = data_dir / source.name
        if target.exists() or target.is_symlink():
            if _same(source, target):
                continue
            raise FileExistsError(f"{target} already exists and is not {source}; remove it or add a different path")
        data_dir.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            target.symlink_to(source.resolve(), target_is_directory=True)
            continue
        try:
            os.link(source, target)
        except OSError:
            partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
            shutil.copy2(source, partial)
            os.replace(partial, target)


def _same(source: Path, target: Path) -> bool:
    try:
        if os.path.samefile(source, target):
            return True
    except OSError:
        return False
    if source.is_file() and target.is_file() and not target.is_symlink():
        s, t = source.stat(), target.stat()
        return s.st_size == t.st_size and int(s.st_mtime) == int(t.st_mtime)  # an earlier copy (copy2)
    return False


def alive(pid: int) -> bool:
    """Whether process `pid` runs (ours, or another user's), so that its leftovers (partial
    files named after it) are not ours to remove; a pid that is no process id counts as gone."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or never a process id
        return False
    except OSError:  # PermissionError: someone else's process
        return True
    return True


def remove_dead_partials(folder: Path, pattern: str) -> list[Path]:
    """Delete the files matching `pattern` in `folder` whose name carries `.partial-<pid>` of a
    process that no longer runs (a killed write); never a running process's, nor anything else."""
    removed = []
    for path in Path(folder).glob(pattern):
        pid = path.name.rsplit(".partial-", 1)[-1].split(".")[0]
        if pid.isdigit() and not alive(int(pid)) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
