"""Safe, atomic, idempotent unpacking of Kaggle downloads: .zip, .tar(.gz/.bz2/.xz), .7z.

`extract(archive, target)` unpacks one archive into one folder; `extract_all(folder)` every
archive lying in a data folder, in place. Every member is written by us (`unpack_writer`):
nothing lands outside the target (no `..`, absolute paths, drive letters, devices, fifos), no
link is ever made (a link to a file of the archive becomes a copy of it; any other is refused),
and an `UnpackBudget` stops archive bombs while writing. Unpacking goes into a temporary
sibling `<name>.partial-<pid>-<random>` renamed into place only on success (removed on
failure; one left by a killed process is removed by the next call), and what was done is
recorded, so that a second call is a quick no-op. Whether a file is an archive goes by its name
(`.npz`, `.xlsx`, `.pt` files, zips inside, are left alone); the format to open it with by its
first bytes, else its name. Archives inside an archive (`train.zip` in Kaggle's all-files
`<slug>.zip`, a tar in Planet's `train-jpg.tar.7z`) are unpacked beside themselves,
recursively, and those inner copies deleted; the archive you gave is always kept. Inner `X.ext`
becomes `X`.
"""
from __future__ import annotations

import errno
import gzip
import json
import os
import re
import secrets
import shutil
import stat
from pathlib import Path

from kaggletools.unpack.budget import ENV, ArchiveBudgetError, ArchiveError, Tally, UnpackBudget, UnsafeArchiveError
from kaggletools.unpack.writer import FIXES, MALICIOUS, Writer, unpack_7z, unpack_tar, unpack_zip
from kaggletools.io import files

__all__ = ["extract", "extract_all", "stem", "is_archive", "ArchiveError", "UnsafeArchiveError",
           "ArchiveBudgetError", "UnpackBudget", "MARKER", "RECORD", "SUFFIXES", "MAX_DEPTH", "ENV"]

MARKER = ".kaggletools-extracted"  # inside a folder made by extract(): the archive it holds
RECORD = ".kaggletools-unpacked.json"  # in a folder unpacked by extract_all(): what came from where
SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip", ".7z")
MAX_DEPTH = UnpackBudget.max_depth  # archives inside archives, at most this deep (by default)
_MAGIC = ((b"7z\xbc\xaf\x27\x1c", "7z"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"),
          (b"\x1f\x8b", "tar"), (b"BZh", "tar"), (b"\xfd7zXZ\x00", "tar"))  # tar: compressed, or "ustar" at 257
_LEFTOVER = re.compile(r"(.+)\.(?:partial|old)-(\d+)-[0-9a-f]{8}")  # what a killed run may leave (_sibling)


# -- names ------------------------------------------------------------------------------------
def _suffix(name: str) -> str | None:
    low = name.lower()
    return next((s for s in SUFFIXES if low.endswith(s) and len(low) > len(s)), None)


def stem(name: str) -> str:
    """The name without its archive suffixes: `train-jpg.tar.7z` -> `train-jpg`,
    `train_v2.csv.zip` -> `train_v2.csv`."""
    while suffix := _suffix(name):
        name = name[: -len(suffix)]
    return name


def _folder_name(name: str, label: str) -> str:
    """stem(name) as the name of the folder an archive unpacks into; refused when it names no
    folder of its own (`..zip`, `..tar.gz`)."""
    out = stem(name)
    if out in ("", ".", ".."):
        raise UnsafeArchiveError(f"{label}: the name {name!r} leaves no folder name to unpack it into "
                                 f"({out!r}); rename it")
    return out


def is_archive(path: str | Path) -> bool:
    """True for an existing file whose name ends in an archive suffix (see `SUFFIXES`)."""
    path = Path(path)
    return _suffix(path.name) is not None and path.is_file()


def _format(path: Path, label: str) -> str:
    """'zip', 'tar' or '7z', from the first bytes, else from the name."""
    with open(path, "rb") as f:
        head = f.read(265)
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), "tar" if head[257:262] == b"ustar" else None)
    suffix = _suffix(path.name)
    kind = kind or (suffix and {".zip": "zip", ".7z": "7z"}.get(suffix, "tar"))
    if kind:
        return kind
    raise ArchiveError(f"{label}: unknown archive format (neither its content nor its name says zip, tar, "
                       f"tar.gz/.tgz/.tar.bz2/.tar.xz or 7z); check that this is the file you meant")


# -- one archive into one folder --------------------------------------------------------------
def _unpack(path: Path, dest: Path, progress: bool, label: str, tally: Tally) -> None:
    """Unpack one archive into the empty folder `dest`; corrupt data -> ArchiveError. `label`
    names the archive in errors (`outer.zip > train.zip` for an inner one)."""
    reader = {"zip": unpack_zip, "tar": unpack_tar, "7z": unpack_7z}[_format(path, label)]
    writer = Writer(dest, label, tally, path.stat().st_size)
    try:
        reader(path, writer, progress)
        writer.finish()
    except ArchiveError:
        raise
    except OSError as e:  # reading: a bad gzip or a bad offset is the archive's fault, a full disk is not
        if isinstance(e, gzip.BadGzipFile) or e.errno not in (*FIXES, errno.EIO):
            raise _corrupt(label, e) from e
        raise ArchiveError(f"{label}: cannot unpack it ({e}): {FIXES.get(e.errno, 'check the disk')}") from e
    except Exception as e:  # whatever the decoder raises on truncated or corrupt data
        raise _corrupt(label, e) from e
    finally:
        writer.close_all()


def _corrupt(label: str, e: Exception) -> ArchiveError:
    return ArchiveError(f"{label}: cannot unpack it, the file is truncated or corrupt ({type(e).__name__}: {e}); "
                        f"delete it and download it again")


# -- nested archives --------------------------------------------------------------------------
def _unpack_tree(path: Path, dest: Path, progress: bool, nested: bool, tally: Tally, label: str = "",
                 depth: int = 0) -> None:
    """Unpack `path` into `dest`; with `nested`, then every archive found in there beside
    itself (`a/train.zip` -> `a/train`, see `_collapse`), recursively, deleting those copies."""
    label = label or str(path)
    _unpack(path, dest, progress, label, tally)
    found = sorted(Path(d) / f for d, _, files in os.walk(dest) for f in files if _suffix(f)) if nested else []
    for inner in found:
        inner_label = f"{label} > {inner.relative_to(dest).as_posix()}"
        if depth >= tally.budget.max_depth:
            raise ArchiveBudgetError(
                f"{inner_label}: archives nested more than {tally.budget.max_depth} deep; stopped, nothing was "
                f"unpacked: {MALICIOUS} (or raise {ENV['max_depth']} / budget=UnpackBudget(max_depth=...))")
        out = inner.with_name(_folder_name(inner.name, inner_label))
        if _exists(out):
            raise ArchiveError(f"{inner_label}: cannot unpack it beside itself, {out.name!r} is already there")
        tmp = _temp_beside(out)
        try:
            _unpack_tree(inner, tmp, progress, True, tally, inner_label, depth + 1)
            os.replace(_collapse(tmp, out.name), out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        size = inner.stat().st_size
        inner.unlink()
        tally.release(size)


def _collapse(folder: Path, name: str, dirs_only: bool = False) -> Path:
    """What unpacking into `folder` means for an archive called `name` (without suffixes):
    follow the chain of lone entries in `folder`; the deepest one called `name` is the result
    (`train/` in `train.zip`, `data/processed/train.json` in `train.json.7z`, the file in
    `train_v2.csv/train_v2.csv`), else `folder` itself. A `__MACOSX` folder beside it is dropped.
    Only real folders and files count: lstat, never a link followed."""
    node, found = folder, folder
    while _mode(node, stat.S_ISDIR):
        entries = [e for e in node.iterdir() if e.name not in (MARKER, "__MACOSX")]
        if len(entries) != 1:
            break
        node = entries[0]
        if node.name == name and (_mode(node, stat.S_ISDIR) or (not dirs_only and _mode(node, stat.S_ISREG))):
            found = node
    return found


# -- files and folders ------------------------------------------------------------------------
def _mode(path: Path, test) -> bool:
    """`test` (stat.S_ISDIR, S_ISREG) on the path itself, never on what a link points to."""
    try:
        return test(os.lstat(path).st_mode)
    except OSError:
        return False


def _sibling(path: Path, kind: str) -> Path:
    """`<name>.partial-<pid>-<random>` (or `.old-`) beside `path`, short enough for any name."""
    return path.with_name(f"{path.name[:200]}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _temp_beside(path: Path) -> Path:
    tmp = _sibling(path, "partial")
    os.mkdir(tmp, 0o700)
    return tmp


def _remove_leftovers(folder: Path, bases: set[str]) -> None:
    """Remove what a killed extraction left in `folder`: `<base>.partial-<pid>-<random>` (and
    `.old-`) of one of `bases` (names it unpacks into), made by `_sibling`, whose process is gone.
    Anything else, however alike, is the user's."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = _LEFTOVER.fullmatch(name)
        if m and m.group(1) in bases and not files.alive(int(m.group(2))):
            path = folder / name
            shutil.rmtree(path, ignore_errors=True) if _mode(path, stat.S_ISDIR) else path.unlink(missing_ok=True)


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _install(src: Path, dest: Path) -> None:
    """Rename `src` to `dest`; an existing `dest` is renamed aside first and deleted after."""
    if not _exists(dest):
        os.replace(src, dest)
        return
    old = _sibling(dest, "old")
    os.replace(dest, old)
    try:
        os.replace(src, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old) if _mode(old, stat.S_ISDIR) else old.unlink()


def _placing(archive: Path, where: Path, e: OSError) -> ArchiveError:
    fix = FIXES.get(e.errno, "check the folder and the disk")
    return ArchiveError(f"{archive}: cannot put what it holds into {where} ({e.strerror or e}); nothing was "
                        f"changed: {fix}")


def _signature(archive: Path, **extra) -> dict:
    st = archive.stat()
    return {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, **extra}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    tmp = _sibling(path, "partial")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _tally(budget: UnpackBudget | None, folder: Path) -> Tally:
    return Tally((budget or UnpackBudget.from_env()).for_folder(folder))


# -- public -----------------------------------------------------------------------------------
def extract(archive: str | Path, target: str | Path, *, nested: bool = True, overwrite: bool = False,
            progress: bool = True, budget: UnpackBudget | None = None) -> Path:
    """Unpack `archive` into the folder `target` (created, parents too); return `target`.

    With `nested`, archives inside are unpacked beside themselves, their copies deleted. A lone
    top folder named like the target is not doubled (`train.zip` holding `train/x.jpg` into
    `train` gives `train/x.jpg`). A marker in the target holds the archive's name, size and
    mtime: the same archive again returns at once; a changed one (re-downloaded) replaces the
    folder. A target without the marker (not ours) raises ArchiveError unless `overwrite`.
    `budget`: the limits against bombs (None: `UnpackBudget.from_env()`); past one,
    ArchiveBudgetError and nothing changed. No bar unless `progress`."""
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: no such archive")
    sig = _signature(archive, nested=nested)
    if _exists(target):
        old = _read_json(target / MARKER)
        if old == sig:
            return target
        if old is None and not overwrite:
            raise ArchiveError(f"{target} already exists and was not unpacked by kaggletools (no {MARKER} in it); "
                               f"remove it, choose another target, or pass overwrite=True")
        if archive.resolve().is_relative_to(target.resolve()):
            raise ArchiveError(f"{archive}: cannot unpack it over the folder that holds it; use extract_all")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(target.parent, {target.name[:200]})
        tmp = _temp_beside(target)
    except OSError as e:
        raise _placing(archive, target, e) from e
    try:
        _unpack_tree(archive, tmp, progress, nested, _tally(budget, target.parent))
        result = _collapse(tmp, target.name, dirs_only=True)
        _write_json(result / MARKER, sig)
        _install(result, target)
    except OSError as e:
        if _read_json(target / MARKER) != sig:  # else another process just did the same
            raise _placing(archive, target, e) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def extract_all(folder: str | Path, *, progress: bool = True, budget: UnpackBudget | None = None) -> list[Path]:
    """Unpack every archive lying directly in `folder` into `folder`; return the paths made
    (by this call or an earlier one), sorted.

    Each archive is unpacked into a temporary sibling, archives inside it too (see `extract`),
    then placed:
    - Kaggle's all-files download (named like the folder, i.e. `<slug>.zip` in `<slug>/`, or
      holding a `sample_submission*` file) is merged: `dogs-vs-cats-redux-kernels-edition.zip`
      gives `folder/train/...`, `folder/test/...`, `folder/sample_submission.csv`;
    - any other `X.ext` becomes `folder/X`: a folder (`train.zip` -> `train/`, not
      `train/train/`), or a file when it held just that (`train_v2.csv.zip` ->
      `train_v2.csv`, also from `train_v2.csv/train_v2.csv`; `train.json.7z` holding
      `data/processed/train.json` -> `train.json`).
    Each entry is moved in by a rename. Entries already there and not made from this archive
    (by you, or from another archive) are left alone. `folder/.kaggletools-unpacked.json`
    records each archive's size, mtime and entries: an archive already unpacked, whose
    entries are all still there, is skipped (no reading at all); a changed one is unpacked
    again and replaces its own entries. Archives stay; inner copies are deleted. `budget`
    (each archive with those inside it) and `progress`: as for `extract`.
    """
    folder = Path(folder)
    record = _read_json(folder / RECORD) or {}
    _remove_leftovers(folder, _own_names(folder, record))
    made: set[Path] = set()
    for archive in sorted(p for p in folder.iterdir() if is_archive(p)):
        entry = record.get(archive.name)
        if not (entry and entry.get("sig") == _signature(archive)
                and all(_exists(folder / n) for n in entry["outputs"] + entry["kept"])):
            try:
                entry = _unpack_into(folder, archive, record, progress, budget)
            except OSError as e:
                raise _placing(archive, folder, e) from e
        made.update(folder / n for n in entry["outputs"] + entry["kept"])
    return sorted(made)


def _own_names(folder: Path, record: dict) -> set[str]:
    """The names extract_all writes in `folder` (what its leftovers are named after): the
    record, the archives' stems and the entries recorded as theirs."""
    names = {RECORD} | ({stem(p.name) for p in folder.iterdir() if is_archive(p)} if folder.is_dir() else set())
    for entry in record.values():
        if isinstance(entry, dict):
            names.update(n for n in entry.get("outputs", []) + entry.get("kept", []) if isinstance(n, str))
    return {n[:200] for n in names}


def _unpack_into(folder: Path, archive: Path, record: dict, progress: bool, budget: UnpackBudget | None) -> dict:
    """One archive of `extract_all`: unpack beside, place its entries, update the record."""
    sig, name = _signature(archive), _folder_name(archive.name, str(archive))
    previous = set((record.get(archive.name) or {}).get("outputs", []))
    tmp = _temp_beside(folder / name)
    try:
        _unpack_tree(archive, tmp, progress, True, _tally(budget, folder))
        lone = _collapse(tmp, name)
        if lone != tmp:
            entries = {name: lone}
        elif name == folder.name or any(e.name.lower().replace("_", "").startswith("samplesubmission")
                                        for e in tmp.iterdir()):
            entries = {e.name: e for e in tmp.iterdir()}
        else:
            entries = {name: tmp}
        outputs, kept = [], []
        for n, src in sorted(entries.items()):
            if _exists(folder / n) and n not in previous:
                kept.append(n)
                continue
            _install(src, folder / n)
            outputs.append(n)
        record[archive.name] = {"sig": sig, "outputs": outputs, "kept": kept}
        _write_json(folder / RECORD, record)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record[archive.name]
