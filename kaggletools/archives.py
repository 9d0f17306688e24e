"""Safe, atomic, idempotent unpacking of Kaggle downloads: .zip, .tar(.gz/.bz2/.xz), .7z.

`extract(archive, target)` unpacks one archive into one folder; `extract_all(folder)` every
archive lying in a data folder, in place. Both check every member before writing anything
(no `..`, absolute paths, drive letters, devices, fifos, links out), unpack into a temporary
sibling `<name>.partial-<random>` renamed into place only on success (removed on failure; a
process killed outright can leave one: delete it), and record what they did, so that a
second call is a quick no-op. Whether a file is an archive goes by its name (`.npz`, `.xlsx`,
`.pt` files, zips inside, are left alone); the format to open it with by its first bytes,
else its name. Archives inside an archive (`train.zip` in Kaggle's all-files `<slug>.zip`, a
tar in Planet's `train-jpg.tar.7z`) are unpacked beside themselves, recursively, and those
inner copies deleted; the archive you gave is always kept. Inner `X.ext` becomes `X`.
"""
from __future__ import annotations

import gzip
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import uuid
import zipfile
from pathlib import Path

from tqdm import tqdm

MARKER = ".kaggletools-extracted"  # inside a folder made by extract(): the archive it holds
RECORD = ".kaggletools-unpacked.json"  # in a folder unpacked by extract_all(): what came from where
SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip", ".7z")
MAX_DEPTH = 4  # archives inside archives, at most this deep
_MALICIOUS = "the archive is malformed or malicious; re-download it from Kaggle"
_MAGIC = ((b"7z\xbc\xaf\x27\x1c", "7z"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"),
          (b"\x1f\x8b", "tar"), (b"BZh", "tar"), (b"\xfd7zXZ\x00", "tar"))  # tar: compressed, or "ustar" at 257
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class ArchiveError(RuntimeError):
    """An archive cannot be unpacked: unknown format, truncated or corrupt, or a name clash."""


class UnsafeArchiveError(ArchiveError, ValueError):
    """A member would land outside the target, or is a device, a fifo or a link out."""


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


# -- safety -----------------------------------------------------------------------------------
def _unsafe(label: str, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{label}: member {member!r} {why}; nothing was unpacked: {_MALICIOUS}")


def _absolute(path: str) -> bool:  # `/x`, `\\x`, `C:x` (a Windows drive), or a NUL byte
    return path.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", path)) or "\x00" in path


def _escapes(path: str) -> bool:  # absolute, or climbs out with `..` (either slash)
    return _absolute(path) or ".." in path.replace("\\", "/").split("/")


def _check_name(label: str, name: str) -> None:
    if _escapes(name):
        raise _unsafe(label, name, "would be written outside the target folder")


def _check_tar(label: str, members: list[tarfile.TarInfo]) -> None:
    """Names, member types, and links: a link must stay inside and nothing may go through one."""
    links: set[str] = set()
    for m in members:
        _check_name(label, m.name)
        name = posixpath.normpath(m.name.replace("\\", "/"))
        if m.isdev() or m.isfifo():
            raise _unsafe(label, m.name, "is a device file or a fifo")
        parents = name.split("/")[:-1]
        through = next((p for i in range(1, len(parents) + 1) if (p := "/".join(parents[:i])) in links), None)
        if through:
            raise _unsafe(label, m.name, f"would be written through the link {through!r}")
        if m.issym() or m.islnk():
            to = posixpath.join(posixpath.dirname(name), m.linkname) if m.issym() else m.linkname
            if _absolute(m.linkname) or posixpath.normpath(to.replace("\\", "/")).split("/")[0] == "..":
                raise _unsafe(label, m.name, f"links outside the target folder (to {m.linkname!r})")
            links.add(name)


# -- one archive into one folder --------------------------------------------------------------
def _unpack_zip(path: Path, dest: Path, progress: bool, label: str) -> None:
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        for info in infos:
            _check_name(label, info.filename)
        for info in tqdm(infos, desc=f"unpack {path.name}", unit="file", disable=not progress, leave=False):
            z.extract(info, dest)


def _unpack_tar(path: Path, dest: Path, progress: bool, label: str) -> None:
    with tarfile.open(path) as t:
        members = t.getmembers()
        _check_tar(label, members)
        for m in tqdm(members, desc=f"unpack {path.name}", unit="file", disable=not progress, leave=False):
            t.extract(m, dest, **_TAR_FILTER)


def _unpack_7z(path: Path, dest: Path, progress: bool, label: str) -> None:
    import py7zr
    from py7zr.callbacks import ExtractCallback

    class Bar(ExtractCallback):
        report_start_preparation = report_start = report_update = report_warning = report_postprocess = \
            lambda self, *args: None
        report_end = lambda self, *args: bar.update(1)  # noqa: E731

    with tqdm(desc=f"unpack {path.name}", unit="file", disable=not progress, leave=False) as bar:
        with py7zr.SevenZipFile(path) as z:
            for f in z.files:
                _check_name(label, f.filename)
                if f.is_symlink or f.is_socket or f.st_fmt not in (None, stat.S_IFREG, stat.S_IFDIR):
                    raise _unsafe(label, f.filename, "is a link, a device or a fifo (not allowed in 7z)")
            bar.total = len(z.files)
            z.extractall(dest, callback=Bar() if progress else None)


def _unpack(path: Path, dest: Path, progress: bool, label: str) -> None:
    """Unpack one archive into the folder `dest`; corrupt data -> ArchiveError. `label` names
    the archive in errors (`outer.zip > train.zip` for an inner one)."""
    reader = {"zip": _unpack_zip, "tar": _unpack_tar, "7z": _unpack_7z}[_format(path, label)]
    try:
        reader(path, dest, progress, label)
    except ArchiveError:
        raise
    except OSError as e:  # disk full, permissions...: not the archive's fault, except a bad gzip
        if not isinstance(e, gzip.BadGzipFile):
            raise
        raise _corrupt(label, e) from e
    except Exception as e:  # whatever the decoder raises on truncated or corrupt data
        raise _corrupt(label, e) from e


def _corrupt(label: str, e: Exception) -> ArchiveError:
    return ArchiveError(f"{label}: cannot unpack it, the file is truncated or corrupt ({type(e).__name__}: {e}); "
                        f"delete it and download it again")


# -- nested archives --------------------------------------------------------------------------
def _unpack_tree(path: Path, dest: Path, progress: bool, nested: bool = True, label: str = "", depth: int = 0):
    """Unpack `path` into `dest`; with `nested`, then every archive found in there beside
    itself (`a/train.zip` -> `a/train`, see `_collapse`), recursively, deleting those copies."""
    label = label or str(path)
    _unpack(path, dest, progress, label)
    found = sorted(Path(d) / f for d, _, files in os.walk(dest) for f in files
                   if _suffix(f) and not os.path.islink(os.path.join(d, f))) if nested else []
    for inner in found:
        inner_label = f"{label} > {inner.relative_to(dest).as_posix()}"
        if depth >= MAX_DEPTH:
            raise ArchiveError(f"{inner_label}: archives nested more than {MAX_DEPTH} deep; {_MALICIOUS}")
        out = inner.with_name(stem(inner.name))
        if _exists(out):
            raise ArchiveError(f"{inner_label}: cannot unpack it beside itself, {out.name!r} is already there")
        tmp = _temp_beside(out)
        try:
            _unpack_tree(inner, tmp, progress, True, inner_label, depth + 1)
            os.replace(_collapse(tmp, out.name), out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        inner.unlink()


def _collapse(folder: Path, name: str, dirs_only: bool = False) -> Path:
    """What unpacking into `folder` means for an archive called `name` (without suffixes):
    follow the chain of lone entries in `folder`; the deepest one called `name` is the result
    (`train/` in `train.zip`, `data/processed/train.json` in `train.json.7z`, the file in
    `train_v2.csv/train_v2.csv`), else `folder` itself. A `__MACOSX` folder beside it is dropped."""
    node, found = folder, folder
    while node.is_dir() and not node.is_symlink():
        entries = [e for e in node.iterdir() if e.name not in (MARKER, "__MACOSX")]
        if len(entries) != 1:
            break
        node = entries[0]
        if node.name == name and (node.is_dir() or not dirs_only):
            found = node
    return found


# -- files and folders ------------------------------------------------------------------------
def _temp_beside(path: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{path.name}.partial-", dir=path.parent))


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _install(src: Path, dest: Path) -> None:
    """Rename `src` to `dest`; an existing `dest` is renamed aside first and deleted after."""
    if not _exists(dest):
        os.replace(src, dest)
        return
    old = dest.with_name(f"{dest.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(dest, old)
    try:
        os.replace(src, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()


def _signature(archive: Path, **extra) -> dict:
    st = archive.stat()
    return {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, **extra}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


# -- public -----------------------------------------------------------------------------------
def extract(archive: str | Path, target: str | Path, *, nested: bool = True, overwrite: bool = False,
            progress: bool = True) -> Path:
    """Unpack `archive` into the folder `target` (created, parents too); return `target`.

    With `nested`, archives inside are unpacked beside themselves, their copies deleted. A lone
    top folder named like the target is not doubled (`train.zip` holding `train/x.jpg` into
    `train` gives `train/x.jpg`). A marker in the target holds the archive's name, size and
    mtime: the same archive again returns at once; a changed one (re-downloaded) replaces the
    folder. A target without the marker (not ours) raises ArchiveError unless `overwrite`."""
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
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(target)
    try:
        _unpack_tree(archive, tmp, progress, nested)
        result = _collapse(tmp, target.name, dirs_only=True)
        _write_json(result / MARKER, sig)
        _install(result, target)
    except OSError:
        if _read_json(target / MARKER) != sig:  # else another process just did the same
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def extract_all(folder: str | Path, *, progress: bool = True) -> list[Path]:
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
    again and replaces its own entries. Archives stay; inner copies are deleted.
    """
    folder = Path(folder)
    record = _read_json(folder / RECORD) or {}
    made: set[Path] = set()
    for archive in sorted(p for p in folder.iterdir() if is_archive(p)):
        entry = record.get(archive.name)
        if not (entry and entry.get("sig") == _signature(archive)
                and all(_exists(folder / n) for n in entry["outputs"] + entry["kept"])):
            entry = _unpack_into(folder, archive, record, progress)
        made.update(folder / n for n in entry["outputs"] + entry["kept"])
    return sorted(made)


def _unpack_into(folder: Path, archive: Path, record: dict, progress: bool) -> dict:
    """One archive of `extract_all`: unpack beside, place its entries, update the record."""
    sig, name = _signature(archive), stem(archive.name)
    previous = set((record.get(archive.name) or {}).get("outputs", []))
    tmp = _temp_beside(folder / name)
    try:
        _unpack_tree(archive, tmp, progress)
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
