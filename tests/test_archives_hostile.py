"""kaggletools.unpack.archives against hostile archives: paths out, links, bombs, disk full, leftovers.

Every archive is generated in tmp_path; each attack aims at tmp_path/outside, and each test
checks that nothing but the expected output changed anywhere under tmp_path."""
from __future__ import annotations

import errno
import io
import os
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

from kaggletools.unpack import writer as unpack_writer
from kaggletools.unpack.archives import (ArchiveBudgetError, ArchiveError, UnpackBudget, UnsafeArchiveError, extract,
                                  extract_all)

MiB = 2**20
SMALL = UnpackBudget(max_bytes=MiB, ratio_floor=64 * 1024, max_ratio=1000, max_members=1000, max_depth=4)
ZEROS = bytes(4 * MiB)


# -- builders and checks ----------------------------------------------------------------------
def F(name, data=b"x"):  # noqa: N802 - tar members: file, symlink, hard link, folder, fifo
    return name, tarfile.REGTYPE, data


def S(name, target):  # noqa: N802
    return name, tarfile.SYMTYPE, target


def H(name, target):  # noqa: N802
    return name, tarfile.LNKTYPE, target


def D(name):  # noqa: N802
    return name, tarfile.DIRTYPE, b""


def make_tar(path: Path, *members, mode: str = "w") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as t:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = str(data)
                t.addfile(info)
            else:
                info.size = len(data) if kind == tarfile.REGTYPE else 0
                t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def make_zip(path: Path, entries: dict, links: dict | None = None, modes: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name, mode in {**{n: stat.S_IFLNK | 0o777 for n in links or {}}, **(modes or {})}.items():
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr = 3, mode << 16
            z.writestr(info, (links or {}).get(name, ""))
    return path


def make_7z(path: Path, entries: dict, links: dict | None = None) -> Path:
    """`links`: member name -> link target, stored as real 7z symbolic links."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with py7zr.SevenZipFile(path, "w") as z, pytest.MonkeyPatch.context() as mp:
        mp.setattr(py7zr.py7zr, "readlink", os.readlink)  # py7zr's wants the target to exist
        for i, (name, target) in enumerate((links or {}).items()):  # first: py7zr looks for them
            src = path.parent / f".src{i}"
            os.symlink(target, src)
            z.write(src, name)
            src.unlink()
        for name, data in entries.items():
            z.writestr(data, name)
    return path


def zip_bytes(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def snapshot(root: Path) -> dict:
    """Every path under `root`, not following links: kind and content."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            mode = os.lstat(p).st_mode
            out[os.path.relpath(p, root)] = (os.readlink(p) if stat.S_ISLNK(mode) else None if stat.S_ISDIR(mode)
                                             else Path(p).read_bytes())
    return out


@pytest.fixture
def box(tmp_path):
    """tmp_path/box for the archive, and tmp_path/outside with a file every attack aims at."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"keep me")
    (tmp_path / "box").mkdir()
    return tmp_path / "box"


def no_links(root: Path) -> bool:
    return not any(os.path.islink(os.path.join(d, n)) for d, dirs, files in os.walk(root) for n in dirs + files)


def counting_writes(monkeypatch) -> list[int]:
    """Record the size of every os.write."""
    real, sizes = os.write, []

    def write(fd, data):
        n = real(fd, data)
        sizes.append(n)
        return n

    monkeypatch.setattr(os, "write", write)
    return sizes


def fails_cleanly(tmp_path: Path, src: Path, error=UnsafeArchiveError, match: str = "", how: str = "extract",
                  **kwargs) -> ArchiveError:
    """Unpack `src` (into box/out, or extract_all of its folder); it must raise `error`, name the
    archive, and leave everything under tmp_path as it was."""
    before = snapshot(tmp_path)
    with pytest.raises(error, match=match) as err:
        if how == "extract":
            extract(src, src.parent / "out", progress=False, **kwargs)
        else:
            extract_all(src.parent, progress=False, **kwargs)
    assert src.name in str(err.value) and "truncated or corrupt" not in str(err.value)
    assert snapshot(tmp_path) == before
    return err.value


# -- paths out --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "a\\..\\..\\evil", "\\evil", "C:\\evil", "C:evil",
                                  "ABSOLUTE"])
@pytest.mark.parametrize("kind", ["zip", "tar", "7z"])
def test_zip_slip_names_are_rejected(tmp_path, box, kind, name):
    name = str(tmp_path / "outside" / "evil") if name == "ABSOLUTE" else name
    if kind == "zip":
        src = make_zip(box / "evil.zip", {"ok.txt": b"", name: b"x"})
    elif kind == "tar":
        src = make_tar(box / "evil.tar", F("ok.txt"), F(name))
    else:
        with py7zr.SevenZipFile(box / "evil.7z", "w") as z:
            z.writestr(b"", "ok.txt")
            z._writestr(b"x", name)  # no name check
        src = box / "evil.7z"
    err = fails_cleanly(tmp_path, src, match="outside the target folder.*nothing was unpacked")
    assert isinstance(err, ValueError)


def test_devices_in_zip_and_tar_are_rejected(tmp_path, box):
    fails_cleanly(tmp_path, make_zip(box / "dev.zip", {"ok": b""}, modes={"dev": stat.S_IFCHR | 0o644}),
                  match="device")
    fails_cleanly(tmp_path, make_tar(box / "dev.tar", F("ok"), ("fifo", tarfile.FIFOTYPE, b"")), match="fifo")



def test_a_zip_folder_given_by_its_mode_bits_alone(tmp_path, box):
    """Some zip writers mark a folder by its Unix mode only (no trailing slash)."""
    src = make_zip(box / "dirs.zip", {"d/a.txt": b"a"}, modes={"e": stat.S_IFDIR | 0o755})
    out = extract(src, box / "out", progress=False)
    assert (out / "e").is_dir() and (out / "d" / "a.txt").read_bytes() == b"a"

# -- links ------------------------------------------------------------------------------------
LINK_ATTACKS = {
    "symlink-out-then-write": lambda o: [S("a", "../outside"), F("a/pwned")],
    "symlink-absolute-then-write": lambda o: [S("a", str(o)), F("a/pwned")],
    "symlink-out-alone": lambda o: [F("ok"), S("link", "../../outside/secret")],
    "symlink-absolute-file": lambda o: [F("ok"), S("link", str(o / "secret"))],
    "chain-dot-dotdot": lambda o: [S("a", "."), S("a/b", ".."), F("a/b/b/../x")],
    "chain-deep": lambda o: [D("d"), S("d/l1", ".."), S("d/l2", "l1/.."), S("x", "d/l2/outside/secret"),
                             F("x", b"overwritten")],
    "chain-of-links": lambda o: [S("l1", "l2"), S("l2", "../outside/secret")],
    "link-to-link-to-file": lambda o: [F("f"), S("l1", "f"), S("l2", "l1")],
    "text-normalised-escape": lambda o: [D("sub"), S("sub/up", "../.."), S("esc", "sub/up/outside/secret")],
    "hardlink-out": lambda o: [F("ok"), H("h", "../outside/secret")],
    "hardlink-absolute": lambda o: [F("ok"), H("h", str(o / "secret"))],
    "hardlink-out-then-overwrite": lambda o: [H("h", "../outside/secret"), F("h", b"overwritten")],
    "hardlink-through-symlink": lambda o: [S("s", "../outside"), H("h", "s/secret")],
    "hardlink-through-inner-symlink": lambda o: [F("sub/f"), S("s", "sub"), H("h", "s/f")],
    "symlink-to-folder": lambda o: [F("train/a.jpg"), S("alias", "train")],
    "symlink-to-root": lambda o: [F("ok"), S("here", ".")],
    "symlink-to-nothing": lambda o: [F("ok"), S("dangling", "missing.jpg")],
    "symlink-replaced-by-file": lambda o: [S("x", "../outside/secret"), F("x", b"overwritten")],
    "folder-then-symlink": lambda o: [F("a/b"), S("a", "../outside")],
}


@pytest.mark.parametrize("case", sorted(LINK_ATTACKS))
def test_link_attacks_are_rejected(tmp_path, box, case):
    src = make_tar(box / "evil.tar", *LINK_ATTACKS[case](tmp_path / "outside"))
    err = fails_cleanly(tmp_path, src, match="nothing was unpacked")
    assert isinstance(err, UnsafeArchiveError), err
    assert (tmp_path / "outside" / "secret").read_bytes() == b"keep me"


@pytest.mark.parametrize("target", ["ELSEWHERE", "..", ".", "../outside"])
def test_lone_top_link_cannot_become_the_data_folder(tmp_path, box, target):
    target = str(tmp_path / "outside") if target == "ELSEWHERE" else target
    fails_cleanly(tmp_path, make_tar(box / "train.tar", S("train", target)), match=r"'train' is a symbolic link to",
                  how="extract_all")
    fails_cleanly(tmp_path, make_tar(box / "train.tar", S("train", target), F("train/x.jpg")), how="extract_all",
                  match=r"'train/x\.jpg' would be written through the link 'train'")


def test_link_in_a_lone_top_folder_cannot_leave_it(tmp_path, box):
    src = make_tar(box / "train.tar", D("train"), S("train/sub", "../.."), F("train/sub/outside/secret", b"pwned"))
    fails_cleanly(tmp_path, src, how="extract_all", match="through the link 'train/sub'")
    src = make_tar(box / "train.tar", D("train"), S("train/up", "../../outside/secret"))
    fails_cleanly(tmp_path, src, how="extract_all", match="outside the target folder")


@pytest.mark.parametrize("kind", ["tar", "zip", "7z"])
def test_links_to_files_inside_become_copies(tmp_path, box, kind):
    if kind == "tar":
        src = make_tar(box / "train.tar", F("train/a.jpg", b"A" * 10), S("train/b.jpg", "a.jpg"),
                       S("train/sub/c.jpg", "../a.jpg"), H("train/d.jpg", "train/a.jpg"), S("train/e.jpg", "./a.jpg"))
    elif kind == "zip":
        src = make_zip(box / "train.zip", {"train/a.jpg": b"A" * 10},
                       links={"train/b.jpg": "a.jpg", "train/sub/c.jpg": "../a.jpg"})
    else:
        src = make_7z(box / "train.7z", {"train/a.jpg": b"A" * 10},
                      links={"train/b.jpg": "a.jpg", "train/sub/c.jpg": "../a.jpg"})
        with py7zr.SevenZipFile(src) as z:
            assert sum(f.is_symlink for f in z.files) == 2
    assert extract_all(box, progress=False) == [box / "train"] and src.is_file()
    out = box / "train"
    copies = [p for p in out.rglob("*.jpg") if p.name != "a.jpg"]
    assert len(copies) == {"tar": 4}.get(kind, 2)
    for p in copies:
        assert not p.is_symlink() and os.lstat(p).st_nlink == 1 and p.read_bytes() == b"A" * 10
    assert no_links(tmp_path)


@pytest.mark.parametrize("target", ["../outside/secret", "ABSOLUTE", "..", "missing"])
def test_7z_and_zip_links_out_are_rejected(tmp_path, box, target):
    target = str(tmp_path / "outside" / "secret") if target == "ABSOLUTE" else target
    fails_cleanly(tmp_path, make_7z(box / "evil.7z", {"ok": b""}, links={"link": target}), match="link to")
    fails_cleanly(tmp_path, make_zip(box / "evil.zip", {"ok": b""}, links={"link": target}), match="link to")


def test_7z_write_through_a_link_is_rejected(tmp_path, box):
    src = make_7z(box / "evil.7z", {"a/pwned": b"x"}, links={"a": "../outside"})
    fails_cleanly(tmp_path, src, match="(through the link 'a'|both a file and a folder)")


def test_malicious_archive_inside_an_archive(tmp_path, box):
    evil = make_tar(tmp_path / "evil.tar", S("x", "../../outside/secret"), F("ok"))
    (box / "comp.zip").write_bytes(zip_bytes({"a.csv": b"1", "train.tar": evil.read_bytes()}))
    evil.unlink()
    fails_cleanly(tmp_path, box / "comp.zip", match=r"comp\.zip > train\.tar: member 'x' is a symbolic link",
                  how="extract_all")



@pytest.mark.parametrize("name", ["..tar.gz", "..zip", "...tar", "..7z.zip"])
def test_archive_names_that_leave_no_folder_name(tmp_path, box, name):
    """`..zip` would unpack into `.`: beside the data folder, not in it; refused, before anything is written."""
    (box / name).write_bytes(zip_bytes({"a.csv": b"1", "b.csv": b"2"}))
    fails_cleanly(tmp_path, box / name, match="leaves no folder name", how="extract_all")
    (box / name).unlink()
    inner = make_tar(tmp_path / "inner.tar", F("x"))
    (box / "comp.zip").write_bytes(zip_bytes({"ok.csv": b"1", name: inner.read_bytes()}))
    inner.unlink()
    err = fails_cleanly(tmp_path, box / "comp.zip", match="leaves no folder name", how="extract_all")
    assert f"comp.zip > {name}" in str(err)

# -- clashes and names ------------------------------------------------------------------------
@pytest.mark.parametrize("members", [[F("a"), F("a/b")], [F("a/b"), F("a")], [D("a"), F("a")], [F("a"), D("a")]])
def test_file_and_folder_of_the_same_name(tmp_path, box, members):
    err = fails_cleanly(tmp_path, make_tar(box / "clash.tar", *members), ArchiveError,
                        match="both a file and a folder named 'a'.*rename one")
    assert not isinstance(err, UnsafeArchiveError)
    fails_cleanly(tmp_path, make_zip(box / "clash.zip", {"a": b"1", "a/b": b"2"}), ArchiveError, match="both a file")


def test_names_as_tar_writes_them_from_dot(tmp_path, box):
    make_tar(box / "train.tar", D("./"), D("./train/"), F("./train/a.jpg", b"A"), F("./train//./b.jpg", b"B"))
    assert extract_all(box, progress=False) == [box / "train"]
    assert sorted(os.listdir(box / "train")) == ["a.jpg", "b.jpg"]


def test_folders_too_deep_are_rejected(tmp_path, box):
    fails_cleanly(tmp_path, make_tar(box / "deep.tar", F("ok"), F("d/" * 300 + "x")), match="folders deep")


def test_duplicate_files_last_one_wins(tmp_path, box):
    src = make_tar(box / "dup.tar", F("a", b"first"), F("a", b"second"))
    assert (extract(src, box / "out", progress=False) / "a").read_bytes() == b"second"


@pytest.mark.parametrize("kind", ["zip", "tar", "7z"])
def test_name_too_long_is_one_clear_error(tmp_path, box, kind):
    name = "d/" + "n" * 300 + ".jpg"
    src = {"zip": lambda: make_zip(box / "long.zip", {"ok": b"", name: b"x"}),
           "tar": lambda: make_tar(box / "long.tar", F("ok"), F(name)),
           "7z": lambda: make_7z(box / "long.7z", {"ok": b"", name: b"x"})}[kind]()
    err = fails_cleanly(tmp_path, src, ArchiveError, match="too long for this file system")
    assert name in str(err) and not isinstance(err, UnsafeArchiveError)


# -- bombs ------------------------------------------------------------------------------------
def budget_error(tmp_path, src, match, how="extract", budget=SMALL) -> ArchiveError:
    err = fails_cleanly(tmp_path, src, ArchiveBudgetError, match=match, how=how, budget=budget)
    assert "budget=UnpackBudget(" in str(err) and "KAGGLETOOLS_UNPACK_" in str(err)
    return err


@pytest.mark.parametrize("kind", ["tgz", "zip", "7z"])
def test_zeros_bomb_is_stopped_within_the_budget(tmp_path, box, monkeypatch, kind):
    src = {"tgz": lambda: make_tar(box / "bomb.tar.gz", F("zeros.bin", ZEROS), mode="w:gz"),
           "zip": lambda: make_zip(box / "bomb.zip", {"zeros.bin": ZEROS}),
           "7z": lambda: make_7z(box / "bomb.7z", {"zeros.bin": ZEROS})}[kind]()
    sizes = counting_writes(monkeypatch)
    err = budget_error(tmp_path, src, r"member 'zeros\.bin': .*more than 1\.0 MiB unpacked in all")
    assert sum(sizes) <= MiB and "KAGGLETOOLS_UNPACK_MAX_BYTES" in str(err)


@pytest.mark.parametrize("kind", ["zip", "7z"])
def test_bomb_is_stopped_while_writing_even_when_headers_are_not_checked(tmp_path, box, monkeypatch, kind):
    src = make_zip(box / "bomb.zip", {"zeros.bin": ZEROS}) if kind == "zip" else make_7z(box / "bomb.7z",
                                                                                         {"zeros.bin": ZEROS})
    monkeypatch.setattr(unpack_writer.Writer, "expect", lambda self, members: None)
    sizes = counting_writes(monkeypatch)
    err = budget_error(tmp_path, src, "more than 1.0 MiB unpacked in all")
    assert "headers say" not in str(err) and sum(sizes) <= MiB


def patch_zip_sizes(path: Path, size: int) -> None:
    """Make every local and central header of a zip declare `size` bytes uncompressed."""
    data = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(sig)
        while at >= 0:
            data[at + offset:at + offset + 4] = struct.pack("<I", size)
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))


def test_zip_whose_headers_understate_sizes(tmp_path, box, monkeypatch):
    src = make_zip(box / "liar.zip", {"a.bin": ZEROS, "b.bin": ZEROS})
    patch_zip_sizes(src, 1000)
    assert [i.file_size for i in zipfile.ZipFile(src).infolist()] == [1000, 1000]
    sizes = counting_writes(monkeypatch)
    before = snapshot(tmp_path)
    with pytest.raises(ArchiveError, match=r"liar\.zip"):
        extract(src, box / "out", progress=False, budget=SMALL)
    assert sum(sizes) <= MiB and snapshot(tmp_path) == before


def test_zip_whose_headers_overstate_sizes_fails_fast(tmp_path, box, monkeypatch):
    src = make_zip(box / "liar.zip", {"a.bin": b"small"})
    patch_zip_sizes(src, 2**31)
    sizes = counting_writes(monkeypatch)
    budget_error(tmp_path, src, "its headers say more than")
    assert sizes == []


def test_compression_ratio_limit(tmp_path, box):
    src = make_zip(box / "dense.zip", {"zeros.bin": ZEROS})
    budget = UnpackBudget(max_bytes=100 * MiB, ratio_floor=64 * 1024, max_ratio=20)
    budget_error(tmp_path, src, r"compression ratio over 20:1", budget=budget)
    with pytest.MonkeyPatch.context() as mp:  # and while writing, whatever the headers say
        mp.setattr(unpack_writer.Writer, "expect", lambda self, members: None)
        err = budget_error(tmp_path, src, r"compression ratio over 20:1", budget=budget)
    assert "KAGGLETOOLS_UNPACK_MAX_RATIO" in str(err)


def test_nested_42_style_bomb(tmp_path, box):
    leaf = zip_bytes({"zeros.bin": bytes(MiB // 2)})
    level1 = zip_bytes({f"l{i}.zip": leaf for i in range(4)})
    (box / "42.zip").write_bytes(zip_bytes({f"m{i}.zip": level1 for i in range(4)}))
    err = budget_error(tmp_path, box / "42.zip", r"42\.zip > m0\.zip > l\d\.zip: member 'zeros\.bin'")
    assert "unpacked in all" in str(err)


def test_nesting_beyond_the_depth_limit(tmp_path, box):
    data = zip_bytes({"x.txt": b"x"})
    for i in range(3):
        data = zip_bytes({f"level{i}.zip": data})
    (box / "deep.zip").write_bytes(data)
    budget = UnpackBudget(max_bytes=MiB, max_depth=2)
    err = budget_error(tmp_path, box / "deep.zip", "nested more than 2 deep", budget=budget)
    assert "deep.zip > level2.zip > level1.zip > level0.zip" in str(err)
    assert extract(box / "deep.zip", box / "out", progress=False, budget=UnpackBudget(max_bytes=MiB)).is_dir()


def test_member_count_limit(tmp_path, box):
    members = [F(f"f{i}", b"") for i in range(30)]
    budget = UnpackBudget(max_bytes=MiB, max_members=20)
    budget_error(tmp_path, make_tar(box / "many.tar", *members), "more than 20 members", budget=budget)
    budget_error(tmp_path, make_zip(box / "many.zip", {f"f{i}": b"" for i in range(30)}),
                 "its headers say more than 20 members", budget=budget)


def test_tar_header_size_fails_fast(tmp_path, box, monkeypatch):
    src = make_tar(box / "big.tar.gz", F("zeros.bin", bytes(2 * MiB)), mode="w:gz")
    sizes = counting_writes(monkeypatch)
    budget_error(tmp_path, src, r"member 'zeros\.bin': its headers say more than 1\.0 MiB")
    assert sizes == []


def test_hard_link_copies_count_against_the_budget(tmp_path, box):
    src = make_tar(box / "links.tar", F("a", bytes(200_000)), *[H(f"h{i}", "a") for i in range(10)])
    budget_error(tmp_path, src, r"member 'h\d': .*unpacked in all")


def test_budget_from_the_environment(tmp_path, box, monkeypatch):
    src = make_tar(box / "bomb.tar.gz", F("zeros.bin", ZEROS), mode="w:gz")
    monkeypatch.setenv("KAGGLETOOLS_UNPACK_MAX_BYTES", "1M")
    assert UnpackBudget.from_env().max_bytes == MiB
    budget_error(tmp_path, src, "more than 1.0 MiB", budget=None)
    monkeypatch.setenv("KAGGLETOOLS_UNPACK_MAX_BYTES", "lots")
    with pytest.raises(ArchiveError, match="KAGGLETOOLS_UNPACK_MAX_BYTES='lots' is not a number"):
        extract(src, box / "out", progress=False)
    monkeypatch.delenv("KAGGLETOOLS_UNPACK_MAX_BYTES")
    assert (extract(src, box / "out", progress=False) / "zeros.bin").stat().st_size == len(ZEROS)


def test_default_budget_follows_free_disk_space(tmp_path, box, monkeypatch):
    from kaggletools.unpack import budget as unpack_budget

    usage = unpack_budget.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(unpack_budget.shutil, "disk_usage", lambda p: usage._replace(free=3 * MiB))
    assert UnpackBudget().for_folder(tmp_path).max_bytes == 3 * MiB - 3 * MiB // 10
    src = make_tar(box / "bomb.tar.gz", F("zeros.bin", ZEROS), mode="w:gz")
    budget_error(tmp_path, src, "free disk space", budget=None)


# -- disk full --------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize("kind", ["zip", "tgz", "7z"])
def test_disk_full_is_one_clear_error(tmp_path, box, monkeypatch, kind, code):
    data = os.urandom(300_000)
    src = {"tgz": lambda: make_tar(box / "data.tar.gz", F("a.bin", data), F("b.bin", data), mode="w:gz"),
           "zip": lambda: make_zip(box / "data.zip", {"a.bin": data, "b.bin": data}),
           "7z": lambda: make_7z(box / "data.7z", {"a.bin": data, "b.bin": data})}[kind]()
    real, written = os.write, []

    def write(fd, chunk):
        if sum(written) + len(chunk) > 400_000:
            raise OSError(code, os.strerror(code))
        written.append(real(fd, chunk))
        return written[-1]

    monkeypatch.setattr(os, "write", write)
    for how in ("extract", "extract_all"):
        err = fails_cleanly(tmp_path, src, ArchiveError, match=r"cannot write member 'b\.bin'.*(disk|quota)", how=how)
        assert not isinstance(err, (UnsafeArchiveError, ArchiveBudgetError))
        written.clear()


# -- leftovers and progress -------------------------------------------------------------------
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_a_killed_extraction_are_removed(tmp_path):
    folder = tmp_path / "comp"
    make_zip(folder / "train.zip", {"train/a.jpg": b"A"})
    dead, alive = dead_pid(), os.getppid()
    stale = [folder / f"train.partial-{dead}-0123abcd", folder / f"train.old-{dead}-89abcdef"]
    for p in stale:
        (p / "train").mkdir(parents=True)
        (p / "train" / "half.jpg").write_bytes(b"half")
    (folder / f".kaggletools-unpacked.json.partial-{dead}-00000000").write_text("{")
    busy, foreign = folder / f"train.partial-{alive}-0123abcd", folder / "train.partial-k2j3h4l5"
    users = folder / f"notes.partial-{dead}-0123abcd"  # named after nothing extract_all makes here
    for p in (busy, foreign, users):
        p.mkdir()
    assert extract_all(folder, progress=False) == [folder / "train"]
    assert sorted(os.listdir(folder)) == sorted([".kaggletools-unpacked.json", "train", "train.zip", busy.name,
                                                 foreign.name, users.name])
    assert sorted(os.listdir(folder / "train")) == ["a.jpg"]


def test_extract_removes_leftovers_beside_the_target(tmp_path):
    src = make_zip(tmp_path / "data.zip", {"a.txt": b"a"})
    dead, alive = dead_pid(), os.getppid()
    stale = [tmp_path / f"out.partial-{dead}-0123abcd", tmp_path / f"out.old-{dead}-89abcdef"]
    kept = [tmp_path / f"out.partial-{alive}-0123abcd", tmp_path / "out.partial-k2j3h4l5", tmp_path / "notes-1-2",
            tmp_path / f"other.partial-{dead}-0123abcd",  # not what this target's extraction makes
            tmp_path / f"out.partial-{dead}-2019",  # a user's folder that only looks alike
            tmp_path / "photos.partial-4000000-2019"]
    for p in stale + kept:
        p.mkdir()
    (tmp_path / "thesis.old-99999-final").write_text("mine")
    extract(src, tmp_path / "out", progress=False)
    assert sorted(os.listdir(tmp_path)) == sorted(["data.zip", "out", "thesis.old-99999-final"] + [p.name for p in kept])


def test_quiet_means_no_output(tmp_path, capfd):
    folder = tmp_path / "comp"
    make_zip(folder / "train.zip", {"train/a.jpg": b"A"})
    make_tar(folder / "test.tar.gz", F("test/1.jpg"), mode="w:gz")
    make_7z(folder / "extra.7z", {"x.csv": b"1"})
    extract_all(folder, progress=False)
    extract(folder / "train.zip", tmp_path / "out", progress=False)
    assert capfd.readouterr() == ("", "")
