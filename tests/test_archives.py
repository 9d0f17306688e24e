"""kaggletools.unpack.archives: formats, nested Kaggle layouts, safety, corruption, atomicity, idempotence.
Every archive is generated in tmp_path."""
from __future__ import annotations

import errno
import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

import py7zr
import pytest

from kaggletools.unpack import archives
from kaggletools.unpack.archives import ArchiveError, UnsafeArchiveError, extract, extract_all, is_archive

JPG = b"\xff\xd8\xff\xe0fake-jpeg"


# -- builders ---------------------------------------------------------------------------------
def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_bytes(entries: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_7z(path: Path, entries: dict[str, bytes], check_names: bool = True) -> Path:
    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in entries.items():
            (z.writestr if check_names else z._writestr)(data, name)  # _writestr: no name check
    return path


def write(path: Path, kind: str, entries: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "7z":
        return write_7z(path, entries)
    path.write_bytes(zip_bytes(entries) if kind == "zip" else tar_bytes(entries, {"tar": "w", "tgz": "w:gz"}[kind]))
    return path


def tar_with(path: Path, *infos: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as t:
        t.addfile(tarfile.TarInfo("ok.txt"), io.BytesIO(b""))
        for info in infos:
            t.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return path


def member(name: str, kind=tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size
    return info


def tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for folders), markers left out."""
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*")) if not p.name.startswith(".kaggletools")}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


EXT = {"zip": ".zip", "tar": ".tar", "tgz": ".tar.gz", "7z": ".7z"}


# -- formats ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["zip", "tar", "tgz", "7z"])
def test_round_trip(tmp_path, kind):
    src = write(tmp_path / f"data{EXT[kind]}", kind, {"a.txt": b"alpha", "sub/b.bin": bytes(range(256))})
    target = extract(src, tmp_path / "out", progress=False)
    assert target == tmp_path / "out"
    assert tree(target) == {"a.txt": b"alpha", "sub": None, "sub/b.bin": bytes(range(256))}
    assert (target / archives.MARKER).is_file() and src.is_file()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["tgz", "7z"])
def test_progress_bar(tmp_path, kind):
    src = write(tmp_path / f"data.{kind}", kind, {"a.txt": b"alpha", "b.txt": b"beta"})
    assert tree(extract(src, tmp_path / "out", progress=True)) == {"a.txt": b"alpha", "b.txt": b"beta"}


def test_format_comes_from_content_not_name(tmp_path):
    src = write_7z(tmp_path / "misnamed.zip", {"a.txt": b"really 7z"})
    assert (extract(src, tmp_path / "out", progress=False) / "a.txt").read_bytes() == b"really 7z"


def test_unknown_format_is_a_clear_error(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(ArchiveError, match=r"notes\.txt: unknown archive format"):
        extract(notes, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_is_archive_goes_by_name(tmp_path):
    for name in ("a.zip", "b.tar.gz", "c.tgz", "d.tar", "e.7z", "train-jpg.tar.7z", "F.ZIP"):
        (tmp_path / name).write_bytes(b"")
        assert is_archive(tmp_path / name), name
    for name in ("weights.npz", "model.pt", "train.csv", "zip", ".7z"):
        (tmp_path / name).write_bytes(zip_bytes({"x": b"y"}))
        assert not is_archive(tmp_path / name), name
    (tmp_path / "folder.zip").mkdir()
    assert not is_archive(tmp_path / "folder.zip") and not is_archive(tmp_path / "missing.zip")
    assert archives.stem("train-jpg.tar.7z") == "train-jpg" and archives.stem("train_v2.csv.zip") == "train_v2.csv"


# -- Kaggle layouts ---------------------------------------------------------------------------
def all_files_zip(folder: Path, slug: str = "dogs-vs-cats-redux-kernels-edition") -> Path:
    train = zip_bytes({"train/cat.0.jpg": JPG, "train/dog.0.jpg": JPG + b"d"})
    test = zip_bytes({"test/1.jpg": JPG + b"1"})
    path = folder / f"{slug}.zip"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes({"train.zip": train, "test.zip": test, "sample_submission.csv": b"id,label\n1,0.5\n"}))
    return path


DOGS = {"sample_submission.csv": b"id,label\n1,0.5\n", "test": None, "test/1.jpg": JPG + b"1",
        "train": None, "train/cat.0.jpg": JPG, "train/dog.0.jpg": JPG + b"d"}


def test_extract_all_merges_the_all_files_download(tmp_path):
    folder = tmp_path / "dogs-vs-cats-redux-kernels-edition"
    src = all_files_zip(folder)
    made = extract_all(folder, progress=False)
    assert made == [folder / "sample_submission.csv", folder / "test", folder / "train"]
    assert tree(folder) == {src.name: src.read_bytes(), **DOGS}  # inner zips gone, outer kept
    assert leftovers(folder) == []


def test_all_files_download_is_recognised_in_any_folder(tmp_path):
    all_files_zip(tmp_path / "mydata")
    extract_all(tmp_path / "mydata", progress=False)  # holds sample_submission.csv: merged
    assert (tmp_path / "mydata" / "train" / "cat.0.jpg").is_file()


def test_extract_unpacks_nested_zips_without_doubling(tmp_path):
    target = extract(all_files_zip(tmp_path), tmp_path / "out", progress=False)
    assert tree(target) == DOGS


def test_nested_flat_zip_gets_a_folder_named_after_it(tmp_path):
    src = tmp_path / "bundle.zip"
    src.write_bytes(zip_bytes({"train.zip": zip_bytes({"cat.0.jpg": JPG, "dog.0.jpg": JPG})}))
    target = extract(src, tmp_path / "out", progress=False)
    assert tree(target) == {"train": None, "train/cat.0.jpg": JPG, "train/dog.0.jpg": JPG}


def test_extract_does_not_double_the_target_name(tmp_path):
    src = write(tmp_path / "train.zip", "zip", {"train/cat.0.jpg": JPG, "train/dog.0.jpg": JPG})
    assert tree(extract(src, tmp_path / "train", progress=False)) == {"cat.0.jpg": JPG, "dog.0.jpg": JPG}


def test_macosx_folder_does_not_prevent_collapsing(tmp_path):
    write(tmp_path / "train.zip", "zip", {"train/cat.0.jpg": JPG, "__MACOSX/train/._cat.0.jpg": b""})
    assert extract_all(tmp_path, progress=False) == [tmp_path / "train"]
    assert tree(tmp_path / "train") == {"cat.0.jpg": JPG} and not (tmp_path / "__MACOSX").exists()


def test_planet_tar_inside_7z(tmp_path):
    folder = tmp_path / "planet"
    tar = tar_bytes({"train-jpg/train_0.jpg": JPG, "train-jpg/train_1.jpg": JPG + b"1"})
    write_7z(folder.mkdir() or folder / "train-jpg.tar.7z", {"train-jpg.tar": tar})
    assert extract_all(folder, progress=False) == [folder / "train-jpg"]
    assert tree(folder / "train-jpg") == {"train_0.jpg": JPG, "train_1.jpg": JPG + b"1"}
    assert not (folder / "train-jpg.tar").exists() and (folder / "train-jpg.tar.7z").is_file()


def test_iceberg_json_deep_inside_7z(tmp_path):
    folder = tmp_path / "iceberg"
    write_7z(folder.mkdir() or folder / "train.json.7z", {"data/processed/train.json": b"[]"})
    assert extract_all(folder, progress=False) == [folder / "train.json"]
    assert (folder / "train.json").read_bytes() == b"[]"


@pytest.mark.parametrize("inner", ["train_v2.csv", "train_v2.csv/train_v2.csv"])
def test_single_file_zip_becomes_the_file(tmp_path, inner):
    folder = tmp_path / "planet"
    write(folder / "train_v2.csv.zip", "zip", {inner: b"image_name,tags\n"})
    assert extract_all(folder, progress=False) == [folder / "train_v2.csv"]
    assert (folder / "train_v2.csv").read_bytes() == b"image_name,tags\n"
    assert leftovers(folder) == []


def test_extract_of_a_single_file_zip_puts_the_file_in_the_target(tmp_path):
    src = write(tmp_path / "train_v2.csv.zip", "zip", {"train_v2.csv": b"a,b\n"})
    assert tree(extract(src, tmp_path / "out", progress=False)) == {"train_v2.csv": b"a,b\n"}


# -- safety -----------------------------------------------------------------------------------
UNSAFE = {
    "zip-dotdot": lambda p: write(p / "evil.zip", "zip", {"ok.txt": b"", "../evil": b"x"}),
    "zip-absolute": lambda p: write(p / "evil.zip", "zip", {"ok.txt": b"", "/tmp/evil": b"x"}),
    "zip-drive": lambda p: write(p / "evil.zip", "zip", {"ok.txt": b"", "C:\\evil": b"x"}),
    "zip-backslash": lambda p: write(p / "evil.zip", "zip", {"ok.txt": b"", "a\\..\\..\\evil": b"x"}),
    "tar-dotdot": lambda p: tar_with(p / "evil.tar", member("../evil", size=1)),
    "tar-absolute": lambda p: tar_with(p / "evil.tar", member("/tmp/evil", size=1)),
    "tar-symlink-out": lambda p: tar_with(p / "evil.tar", member("link", tarfile.SYMTYPE, "../../outside")),
    "tar-symlink-abs": lambda p: tar_with(p / "evil.tar", member("link", tarfile.SYMTYPE, "/etc/passwd")),
    "tar-hardlink-out": lambda p: tar_with(p / "evil.tar", member("link", tarfile.LNKTYPE, "../outside")),
    "tar-through-link": lambda p: tar_with(p / "evil.tar", member("sub/up", tarfile.SYMTYPE, ".."),
                                           member("sub/up/up2", tarfile.SYMTYPE, "..")),
    "tar-device": lambda p: tar_with(p / "evil.tar", member("dev", tarfile.CHRTYPE)),
    "tar-fifo": lambda p: tar_with(p / "evil.tar", member("fifo", tarfile.FIFOTYPE)),
    "tgz-dotdot": lambda p: write(p / "evil.tgz", "tgz", {"ok.txt": b"", "a/../../evil": b"x"}),
    "7z-dotdot": lambda p: write_7z(p / "evil.7z", {"ok.txt": b"", "../evil": b"x"}, check_names=False),
    "7z-absolute": lambda p: write_7z(p / "evil.7z", {"ok.txt": b"", "/tmp/evil": b"x"}, check_names=False),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_member_is_rejected_before_writing(tmp_path, case):
    box = tmp_path / "box"
    box.mkdir()
    src = UNSAFE[case](box)
    with pytest.raises(UnsafeArchiveError, match="malformed or malicious; re-download it") as err:
        extract(src, box / "out", progress=False)
    assert src.name in str(err.value) and isinstance(err.value, ValueError)
    assert sorted(os.listdir(box)) == [src.name] and sorted(os.listdir(tmp_path)) == ["box"]


def test_unsafe_nested_archive_leaves_the_folder_as_it_was(tmp_path):
    folder = tmp_path / "comp"
    folder.mkdir()
    src = folder / "comp.zip"
    src.write_bytes(zip_bytes({"train.zip": zip_bytes({"../../evil": b"x"}), "a.csv": b""}))
    with pytest.raises(UnsafeArchiveError, match=r"comp\.zip > train\.zip: member '\.\./\.\./evil'"):
        extract_all(folder, progress=False)
    assert os.listdir(folder) == ["comp.zip"] and sorted(os.listdir(tmp_path)) == ["comp"]


def test_links_inside_the_target_are_fine(tmp_path):
    src = tar_with(tmp_path / "links.tar", member("a/b.txt", size=3), member("a/sym", tarfile.SYMTYPE, "b.txt"),
                   member("c/up", tarfile.SYMTYPE, "../a/b.txt"), member("hard", tarfile.LNKTYPE, "a/b.txt"))
    target = extract(src, tmp_path / "out", progress=False)
    assert all((target / p).read_bytes() == b"xxx" for p in ("a/sym", "c/up", "hard"))


def test_writing_through_a_link_is_rejected(tmp_path):
    src = UNSAFE["tar-through-link"](tmp_path)
    with pytest.raises(UnsafeArchiveError, match="'sub/up/up2' would be written through the link 'sub/up'"):
        extract(src, tmp_path / "out", progress=False)


# -- corruption and atomicity -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["zip", "tgz", "7z"])
def test_truncated_archive_names_the_file(tmp_path, kind):
    src = write(tmp_path / f"big{EXT[kind]}", kind, {"a.bin": os.urandom(100_000), "b.bin": os.urandom(100_000)})
    src.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    with pytest.raises(ArchiveError, match="truncated or corrupt.*delete it and download it again") as err:
        extract(src, tmp_path / "out", progress=False)
    assert str(src) in str(err.value) and not isinstance(err.value, UnsafeArchiveError)
    assert sorted(os.listdir(tmp_path)) == [src.name]


def test_html_page_saved_as_zip(tmp_path):
    src = tmp_path / "train.zip"
    src.write_text("<html>Please sign in</html>")
    with pytest.raises(ArchiveError, match=r"train\.zip: cannot unpack it"):
        extract_all(tmp_path, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["train.zip"]


def test_corrupt_inner_archive_fails_the_whole_folder(tmp_path):
    folder = tmp_path / "comp"
    folder.mkdir()
    (folder / "comp.zip").write_bytes(zip_bytes({"a.csv": b"x", "train.zip": zip_bytes({"a": os.urandom(999)})[:500]}))
    with pytest.raises(ArchiveError, match=r"comp\.zip > train\.zip: cannot unpack it"):
        extract_all(folder, progress=False)
    assert os.listdir(folder) == ["comp.zip"]


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    src = write(tmp_path / "data.zip", "zip", {"a.txt": b"a", "b.txt": b"b"})
    real, calls = os.write, []

    def write_then_fail(fd, data):
        calls.append(fd)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write_then_fail)
    with pytest.raises(ArchiveError, match=r"data\.zip: cannot write member 'b\.txt'.*the disk is full") as err:
        extract(src, tmp_path / "out", progress=False)
    assert not isinstance(err.value, UnsafeArchiveError) and len(calls) == 2
    assert sorted(os.listdir(tmp_path)) == ["data.zip"]


def test_nesting_too_deep_is_rejected(tmp_path):
    data = zip_bytes({"x.txt": b"x"})
    for i in range(archives.MAX_DEPTH + 1):
        data = zip_bytes({f"level{i}.zip": data})
    (tmp_path / "deep.zip").write_bytes(data)
    with pytest.raises(ArchiveError, match="nested more than"):
        extract(tmp_path / "deep.zip", tmp_path / "out", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["deep.zip"]


# -- idempotence and other people's folders ---------------------------------------------------
def forbid_unpacking(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("unpacked again")

    monkeypatch.setattr(archives, "_unpack", fail)


def test_extract_twice_is_a_no_op(tmp_path, monkeypatch):
    src = write(tmp_path / "data.zip", "zip", {"a.txt": b"a"})
    target = extract(src, tmp_path / "out", progress=False)
    stamp = (target.stat().st_mtime_ns, (target / "a.txt").stat().st_mtime_ns)
    forbid_unpacking(monkeypatch)
    assert extract(src, target, progress=False) == target
    assert (target.stat().st_mtime_ns, (target / "a.txt").stat().st_mtime_ns) == stamp


def test_extract_all_twice_is_a_no_op(tmp_path, monkeypatch):
    folder = tmp_path / "dogs-vs-cats-redux-kernels-edition"
    all_files_zip(folder)
    first = extract_all(folder, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    forbid_unpacking(monkeypatch)
    assert extract_all(folder, progress=False) == first
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamps


def test_changed_archive_replaces_its_own_output(tmp_path):
    src = write(tmp_path / "data.zip", "zip", {"a.txt": b"old"})
    target = extract(src, tmp_path / "out", progress=False)
    write(src, "zip", {"a.txt": b"new", "b.txt": b"b"})
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert tree(extract(src, target, progress=False)) == {"a.txt": b"new", "b.txt": b"b"}
    assert leftovers(tmp_path) == []


def test_user_folder_is_not_clobbered(tmp_path):
    src = write(tmp_path / "data.zip", "zip", {"a.txt": b"a"})
    mine = tmp_path / "out"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ArchiveError, match="not unpacked by kaggletools.*overwrite=True"):
        extract(src, mine, progress=False)
    assert tree(mine) == {"notes.txt": b"mine"} and leftovers(tmp_path) == []
    extract(src, mine, overwrite=True, progress=False)
    assert tree(mine) == {"a.txt": b"a"}


def test_extract_all_leaves_existing_entries_alone(tmp_path, monkeypatch):
    folder = tmp_path / "comp"
    write(folder / "train.zip", "zip", {"train/cat.0.jpg": JPG})
    write(folder / "test.zip", "zip", {"test/1.jpg": JPG})
    (folder / "train").mkdir()
    (folder / "train" / "mine.jpg").write_bytes(b"mine")
    assert extract_all(folder, progress=False) == [folder / "test", folder / "train"]
    assert tree(folder / "train") == {"mine.jpg": b"mine"} and (folder / "test" / "1.jpg").is_file()
    forbid_unpacking(monkeypatch)
    extract_all(folder, progress=False)  # recorded: not unpacked again


def test_extract_all_unpacks_again_what_was_deleted(tmp_path):
    folder = tmp_path / "comp"
    write(folder / "train.zip", "zip", {"train/cat.0.jpg": JPG})
    extract_all(folder, progress=False)
    (folder / "train" / "cat.0.jpg").unlink()
    (folder / "train").rmdir()
    extract_all(folder, progress=False)
    assert (folder / "train" / "cat.0.jpg").read_bytes() == JPG


def test_nested_false_keeps_inner_archives(tmp_path):
    target = extract(all_files_zip(tmp_path), tmp_path / "out", nested=False, progress=False)
    assert sorted(os.listdir(target)) == [archives.MARKER, "sample_submission.csv", "test.zip", "train.zip"]


def test_redownloaded_bundle_replaces_only_its_own_entries(tmp_path):
    folder = tmp_path / "comp"
    src = all_files_zip(folder, slug="comp")
    (folder / "notes.txt").write_text("mine")
    extract_all(folder, progress=False)
    src.write_bytes(zip_bytes({"train.zip": zip_bytes({"train/new.jpg": JPG}), "notes.txt": b"theirs"}))
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    extract_all(folder, progress=False)
    assert tree(folder / "train") == {"new.jpg": JPG} and (folder / "notes.txt").read_text() == "mine"
    assert (folder / "test" / "1.jpg").is_file() and leftovers(folder) == []
