"""Downloading a competition's files over the official client (`kaggle_api.download`), so that a
failure leaves nothing that looks complete: folders it made are removed when empty, files it
created or changed are removed, and a zip that arrived cut short or corrupt is refused at once
(the client would otherwise keep it as "a more recently modified local copy" on the next run)."""
from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass
from datetime import datetime
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaggletools.kaggle.credentials import KaggleError, KaggleNetworkError, KaggleNotFoundError
from kaggletools.kaggle.client import calling, client

if TYPE_CHECKING:  # pragma: no cover
    from kaggle.api.kaggle_api_extended import KaggleApi


@dataclass(frozen=True)
class RemoteFile:
    """One data file of a competition."""

    name: str
    size: int
    created: datetime | None = None

    def __str__(self) -> str:
        return f"{self.name}  ({_human(self.size)})"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def list_files(slug: str, api: "KaggleApi | None" = None) -> list[RemoteFile]:
    """The competition's data files (all pages): name, size in bytes, creation date."""
    api = api or client()
    out: list[RemoteFile] = []
    token: str | None = None
    seen: set[str] = set()
    with calling(api, "listing files", slug):
        for _ in range(10_000):
            resp = api.competition_list_files(slug, page_token=token, page_size=20)
            for f in resp.files or []:
                out.append(RemoteFile(f.name or f.ref, int(f.total_bytes or 0), f.creation_date))
            token = resp.next_page_token
            if not token or token in seen:
                break
            seen.add(token)
    return out



def download(slug: str, dest: str | Path, file: str | None = None, force: bool = False,
             quiet: bool = False, api: "KaggleApi | None" = None) -> Path:
    """Download all files (-> ``<dest>/<slug>.zip``, not unzipped) or one `file` (-> ``<dest>/<name>``).
    An up-to-date local copy is kept unless `force`. The client's progress bar shows unless `quiet`.
    `dest` is created only when something is written; a failure leaves no empty folder behind,
    and no file of this call (a cut or corrupt download is removed)."""
    dest = Path(dest)
    made = _first_missing(dest)
    before = _files(dest)
    entries = set(os.listdir(dest)) if dest.is_dir() else set()
    try:
        path = _download(slug, dest, file, force, quiet, api)
        if _files(dest).get(path.name) != before.get(path.name):  # new or changed by this call
            _check_zip(path)  # a page saved as <slug>.zip is no zip
            _not_a_page(path)
        return path
    except BaseException:
        for name, stamp in _files(dest).items():  # what this call wrote, complete or not
            if before.get(name) != stamp:
                (dest / name).unlink(missing_ok=True)
        for name in (set(os.listdir(dest)) if dest.is_dir() else set()) - entries:  # folders it made
            if (dest / name).is_dir() and not (dest / name).is_symlink():
                shutil.rmtree(dest / name, ignore_errors=True)
        _remove_empty(dest, made)
        raise


def _download(slug: str, dest: Path, file: str | None, force: bool, quiet: bool, api: Any) -> Path:
    api = api or client()
    try:
        with calling(api, f"downloading {file or 'all files'}", slug, file, show=not quiet):
            if file is None:
                api.competition_download_files(slug, path=str(dest), force=force, quiet=quiet)
            else:
                api.competition_download_file(slug, file, path=str(dest), force=force, quiet=quiet)
    except KaggleNotFoundError as e:
        if file is None:
            raise
        try:  # which one is missing: the competition or the file?
            names = [f.name for f in list_files(slug, api=api)]
        except KaggleError:
            raise e from None
        shown = ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")
        raise KaggleNotFoundError(f"File '{file}' not found in competition '{slug}'. "
                                  f"Files there: {shown or '(none)'}.") from None
    except ValueError as e:  # size check after a cut download
        raise KaggleNetworkError(f"Download of {file or slug + '.zip'} was incomplete ({e}); retry.") from e
    path = dest / (f"{slug}.zip" if file is None else Path(file).name)
    if not path.exists():
        stem = f"{slug}." if file is None else Path(file).name
        found = sorted((p for p in dest.glob(f"{stem}*") if p.is_file()), key=lambda p: p.stat().st_mtime) \
            if dest.is_dir() else []
        if not found:
            raise KaggleNetworkError(f"The Kaggle client reported success but {path} is missing (a web page from a "
                                     "proxy or maintenance instead of the file?); nothing was kept: retry later")
        path = found[-1]
    return path


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """{name: (size, mtime_ns)} of the files directly in `folder`."""
    if not folder.is_dir():
        return {}
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


def _not_a_page(path: Path) -> None:
    """A web page (a proxy's, a login wall, maintenance) saved in place of the file is an error."""
    if path.suffix.lower() in (".html", ".htm"):
        return
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        raise KaggleNetworkError(f"Kaggle sent a web page instead of {path.name} (a proxy, a login wall or "
                                 "maintenance?); it was removed: retry later, and check HTTPS_PROXY if you use a "
                                 "proxy.")


def _check_zip(path: Path) -> None:
    """A downloaded .zip must be a whole zip (the client checks no checksum); else an error."""
    if path.suffix.lower() != ".zip":
        return
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:  # zlib: flipped bytes
        bad = f"{type(e).__name__}: {e}"
    if bad:
        raise KaggleNetworkError(f"{path} arrived cut short or corrupt ({str(bad)[:100]}); it was removed: run the "
                                 "command again")


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of `folder`'s path that does not exist yet (None: it exists)."""
    top, p = None, folder.absolute()
    while not p.exists() and p != p.parent:
        top, p = p, p.parent
    return top


def _remove_empty(dest: Path, made: Path | None) -> None:
    """Remove the folders this call created, as long as they are empty."""
    p = dest.absolute()
    while made is not None:
        try:
            p.rmdir()
        except OSError:
            break
        if p == made:
            break
        p = p.parent
