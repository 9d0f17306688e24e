"""Writing one archive's members into an empty folder safely, on any Python >= 3.10.

Nothing here lets a library write a file or make a link: every member is read as a stream
(zip: `ZipFile.open`, tar: `TarFile.extractfile`, 7z: py7zr's writer factory) and written by
`Writer`, which makes folders with `os.mkdir` and files with `os.open(O_EXCL | O_NOFOLLOW)`,
and never a symbolic or hard link. A link member is resolved when the archive is done, one
component at a time against the archive's own members, where it ends up: one to a regular file
of the archive becomes a copy of it; one out, to a folder, to nothing or through another link
is refused. Every byte and member is counted against the `Tally` before it is written.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import tarfile
import zipfile
from pathlib import Path


from kaggletools.unpack.budget import ArchiveError, Tally, UnsafeArchiveError

CHUNK = 1 << 20
LINK_MAX = 4096  # longest link target read from a zip or 7z
DEPTH_MAX = 200  # folders inside folders in one member's name (deeper breaks tools that recurse)
MALICIOUS = "the archive is malformed or malicious; re-download it from Kaggle"
FILE, DIR, LINK = "file", "folder", "link"
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
FIXES = {errno.ENOSPC: "the disk is full: free space on it, or unpack onto a bigger disk",
         errno.EDQUOT: "your disk quota is used up: free some of it, or unpack elsewhere",
         errno.ENAMETOOLONG: "a name is too long for this file system: unpack it by hand where names may be longer",
         errno.EACCES: "no permission to write there: check the folder's permissions",
         errno.EPERM: "no permission to write there: check the folder's permissions",
         errno.EROFS: "the file system is read-only: unpack elsewhere"}


def bar(progress: bool, desc: str, total: int | None = None):
    """A progress bar, none unless `progress` (and not under --quiet; see kaggletools.progress)."""
    from kaggletools import progress as bars

    return bars.bar(total=total, desc=desc, unit="file", enabled=progress)


def _outside(name: str) -> bool:  # absolute (`/x`, `\x`, `C:x`), a NUL byte, or `..` (either slash)
    return (name.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", name)) or "\x00" in name
            or ".." in name.replace("\\", "/").split("/"))


class Writer:
    """Makes the members of one archive (named `label` in errors, `size` bytes on disk) in the
    empty folder `root`, counted by `tally`. Call `finish()` after the last member."""

    def __init__(self, root: Path, label: str, tally: Tally, size: int):
        self.root, self.label, self.tally, self.size = os.path.abspath(root), label, tally, size
        self.kinds: dict[str, str] = {}  # name -> FILE, DIR or LINK
        self.links: dict[str, tuple[str, str | None, bool]] = {}  # name -> (member, target, hard)
        self.written = 0
        self.fds: set[int] = set()

    # -- errors ---------------------------------------------------------------------------------
    def unsafe(self, member: str, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.label}: member {member!r} {why}; nothing was unpacked: {MALICIOUS}")

    def clash(self, member: str, name: str) -> ArchiveError:
        return ArchiveError(f"{self.label}: member {member!r}: the archive holds both a file and a folder named "
                            f"{name!r}, which cannot both be unpacked; nothing was unpacked: re-download it, "
                            f"or unpack it by hand and rename one")

    def failed(self, member: str, e: OSError) -> ArchiveError:
        fix = FIXES.get(e.errno, "check the target folder and the disk")
        return ArchiveError(f"{self.label}: cannot write member {member!r} ({e.strerror or e}); "
                            f"nothing was unpacked: {fix}")

    # -- members --------------------------------------------------------------------------------
    def name(self, member: str) -> str | None:
        """The member's path relative to `root` (None for the root itself); unsafe ones raise."""
        if _outside(member):
            raise self.unsafe(member, "would be written outside the target folder")
        parts = [p for p in member.split("/") if p not in ("", ".")]
        if len(parts) > DEPTH_MAX:
            raise self.unsafe(member, f"is more than {DEPTH_MAX} folders deep")
        return "/".join(parts) or None

    def expect(self, members: list[tuple[str, int]]) -> None:
        """Check (member, declared size) pairs before writing anything: names, count, sizes."""
        total = 0
        for i, (member, size) in enumerate(members, 1):
            self.name(member)
            total += max(size or 0, 0)
            self.tally.check(self.label, member, members=i, nbytes=total, written=self.written + total,
                             size=self.size, declared=True)

    def folder(self, member: str) -> None:
        self.tally.member(self.label, member)
        name = self.name(member)
        if name is not None:
            self._parents(name + "/", member)

    def file(self, member: str, src) -> None:
        """Write the member from the readable `src`."""
        fd = self.create(member)
        try:
            while chunk := src.read(CHUNK):
                self.write(fd, member, chunk)
        finally:
            self.close(fd)

    def create(self, member: str) -> int:
        """Open a new file for the member; write to it with `write`, then `close` it."""
        self.tally.member(self.label, member)
        name = self._new(member, FILE)
        try:
            fd = os.open(os.path.join(self.root, name), _NEW, 0o666)
        except OSError as e:
            raise self.failed(member, e) from e
        self.fds.add(fd)
        return fd

    def write(self, fd: int, member: str, data: bytes) -> None:
        self.tally.add(self.label, member, len(data), self.written + len(data), self.size)
        self.written += len(data)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except OSError as e:
                raise self.failed(member, e) from e

    def close(self, fd: int) -> None:
        if fd in self.fds:
            self.fds.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self.fds):
            self.close(fd)

    def link(self, member: str, target: str | None, hard: bool = False) -> None:
        """A symbolic (or `hard`) link to `target`; None: the target comes later (`set_target`)."""
        self.tally.member(self.label, member)
        self.links[self._new(member, LINK, target)] = (member, target, hard)

    def set_target(self, member: str, target: str) -> None:
        name = self.name(member)
        self.links[name] = (member, target, self.links[name][2])

    def finish(self) -> None:
        """Make each link a copy of the file it points to, or refuse it (all checked first)."""
        sources = {name: self._resolve(name, member, target or "", hard)
                   for name, (member, target, hard) in self.links.items()}
        for name, source in sources.items():
            member = self.links.pop(name)[0]
            self.kinds[name] = FILE
            try:
                src = os.open(os.path.join(self.root, source), _READ)
                self.fds.add(src)
                dst = os.open(os.path.join(self.root, name), _NEW, 0o666)
                self.fds.add(dst)
            except OSError as e:
                raise self.failed(member, e) from e
            try:
                while chunk := os.read(src, CHUNK):
                    self.write(dst, member, chunk)
            finally:
                self.close(src)
                self.close(dst)

    # -- inside ---------------------------------------------------------------------------------
    def _new(self, member: str, kind: str, target: str | None = None) -> str:
        """Register a file or link at the member's name. A second file of a name replaces the
        first (tar appends); a link and anything else of the same name is refused."""
        name = self.name(member)
        if name is None:
            raise self.unsafe(member, "has no file name")
        old = self.kinds.get(name)
        if old == LINK:
            raise self.unsafe(member, f"would replace the link {name!r} (to {self.links[name][1]!r})")
        if old is not None and kind == LINK:
            raise self.unsafe(member, f"is a link to {target!r}, and the archive also has a {old} of that name")
        if old == DIR:
            raise self.clash(member, name)
        self._parents(name, member)
        if old == FILE:
            try:
                os.unlink(os.path.join(self.root, name))
            except OSError as e:
                raise self.failed(member, e) from e
        self.kinds[name] = kind
        return name

    def _parents(self, name: str, member: str) -> None:
        """Make the folders above `name` (all of it if it ends in `/`), checking each with lstat."""
        parts = name.rstrip("/").split("/")
        for i in range(1, len(parts) + name.endswith("/")):
            path = "/".join(parts[:i])
            kind = self.kinds.get(path)
            if kind == DIR:
                continue
            if kind == LINK:
                raise self.unsafe(member, f"would be written through the link {path!r}")
            if kind == FILE:
                raise self.clash(member, path)
            full = os.path.join(self.root, path)
            try:
                os.mkdir(full)
            except FileExistsError:
                pass
            except OSError as e:
                raise self.failed(member, e) from e
            if not stat.S_ISDIR(os.lstat(full).st_mode):
                raise self.clash(member, path)
            self.kinds[path] = DIR

    def _resolve(self, name: str, member: str, target: str, hard: bool) -> str:
        """The regular file of the archive that the link `name` points to, judged where it ends up."""
        what = f"is a {'hard' if hard else 'symbolic'} link to {target!r}"
        if not target or target.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", target) or "\x00" in target:
            raise self.unsafe(member, f"{what}, outside the target folder")
        parts = [] if hard else name.split("/")[:-1]  # a hard link's target is a member's name
        for part in target.split("/"):
            here = "/".join(parts)
            if parts and self.kinds.get(here) != DIR:
                raise self.unsafe(member, f"{what}, through {here!r} that is not a folder")
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise self.unsafe(member, f"{what}, outside the target folder")
                parts.pop()
                continue
            parts.append(part)
            kind = self.kinds.get("/".join(parts))
            if kind == LINK:
                raise self.unsafe(member, f"{what}, through another link {'/'.join(parts)!r}")
            if kind is None:
                raise self.unsafe(member, f"{what}, to nothing in the archive")
        if not parts or self.kinds.get("/".join(parts)) != FILE:
            raise self.unsafe(member, f"{what}, a folder (only links to files are unpacked, as copies)")
        return "/".join(parts)


# -- formats ------------------------------------------------------------------------------------
def unpack_zip(path: Path, w: Writer, progress: bool) -> None:
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        w.expect([(i.filename, i.file_size) for i in infos])
        with bar(progress, f"unpack {path.name}", len(infos)) as b:
            for info in infos:
                fmt = stat.S_IFMT(info.external_attr >> 16)
                if info.is_dir() or (fmt == stat.S_IFDIR and info.file_size == 0):  # a folder by its mode bits
                    w.folder(info.filename)
                elif fmt == stat.S_IFLNK:
                    if info.file_size > LINK_MAX:
                        raise w.unsafe(info.filename, "is a link with a target too long")
                    with z.open(info) as f:
                        w.link(info.filename, f.read(LINK_MAX + 1).decode("utf-8", "surrogateescape"))
                elif fmt not in (0, stat.S_IFREG):
                    raise w.unsafe(info.filename, "is a device file, a fifo or a socket")
                else:
                    with z.open(info) as f:
                        w.file(info.filename, f)
                b.update(1)


def unpack_tar(path: Path, w: Writer, progress: bool) -> None:
    with tarfile.open(path) as t, bar(progress, f"unpack {path.name}") as b:
        while (m := t.next()) is not None:
            if m.isdir():
                w.folder(m.name)
            elif m.issym() or m.islnk():
                w.link(m.name, m.linkname, hard=m.islnk())
            elif m.isdev() or m.isfifo():
                raise w.unsafe(m.name, "is a device file or a fifo")
            else:
                w.tally.check(w.label, m.name, nbytes=m.size, declared=True)  # fail fast, counted again
                w.file(m.name, t.extractfile(m))
            t.members.clear()  # streamed: keep no list of millions of members
            b.update(1)


def unpack_7z(path: Path, w: Writer, progress: bool) -> None:
    import py7zr
    from py7zr.io import Py7zIO, WriterFactory

    class Out(Py7zIO):
        """One member: a file written by `w`, or a link's target kept in memory."""

        def __init__(self, member: str, is_link: bool):
            self.member, self.target, self.n = member, b"" if is_link else None, 0
            self.fd = None if is_link else w.create(member)

        def write(self, s):
            self.n += len(s)
            if self.fd is not None:
                w.write(self.fd, self.member, bytes(s))
            elif self.n > LINK_MAX:
                raise w.unsafe(self.member, "is a link with a target too long")
            else:
                self.target += bytes(s)
            return len(s)

        def close(self):
            if self.fd is None:
                w.set_target(self.member, self.target.decode("utf-8", "surrogateescape"))
            else:
                w.close(self.fd)
            b.update(1)

        read = lambda self, size=None: b""  # noqa: E731
        seek = lambda self, offset, whence=0: 0  # noqa: E731
        flush = lambda self: None  # noqa: E731
        size = lambda self: self.n  # noqa: E731
        seekable = lambda self: False  # noqa: E731

    class Factory(WriterFactory):
        def create(self, filename: str) -> Py7zIO:
            name = Path(filename).relative_to(w.root).as_posix()
            if name not in wanted:
                raise ArchiveError(f"{w.label}: py7zr asked for an unknown member {name!r}; {MALICIOUS}")
            return Out(*wanted.pop(name))

    with open(path, "rb") as fp, py7zr.SevenZipFile(fp) as z:  # a file object: one thread
        files = list(z.files)
        w.expect([(f.filename, 0 if f.is_directory else f.uncompressed or 0) for f in files])
        wanted: dict[str, tuple[str, bool]] = {}
        for f in files:
            if f.is_directory:
                w.folder(f.filename)
            elif f.is_socket or getattr(f, "st_fmt", None) not in (None, stat.S_IFREG, stat.S_IFLNK):
                raise w.unsafe(f.filename, "is a device file, a fifo or a socket")
            elif w.name(f.filename) in wanted:
                raise ArchiveError(f"{w.label}: member {f.filename!r} is in it twice; {MALICIOUS}")
            else:
                is_link = f.is_symlink or f.is_junction
                wanted[w.name(f.filename)] = (f.filename, is_link)
                if is_link:
                    w.link(f.filename, None)
        with bar(progress, f"unpack {path.name}", len(files)) as b:
            z.extractall(w.root, factory=Factory())
        for name, (member, _) in wanted.items():  # never asked for: py7zr skipped them
            raise ArchiveError(f"{w.label}: member {member!r} was not unpacked; {MALICIOUS}")
