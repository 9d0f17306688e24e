"""Array items: a JSON list of records converted once into a float32 .npy beside the data.

Some competitions ship their inputs as numbers, not pictures (the iceberg's radar bands: a 1 GB
JSON list of records). This module turns such a file into what the shared layer reads as easily
as JPEGs, and knows nothing about any one competition:

- `iter_json_list` streams the records of a `[{...}, {...}, ...]` file with bounded memory
  (`json.JSONDecoder.raw_decode` over a sliding text buffer): one record and one chunk of text
  in memory at a time, whatever the file's size.
- `convert_json` / `ensure_json` write `<name>.npy` (N x item shape, float32), `<name>.meta.csv`
  (one row of scalars per record) and `<name>.stamp.json` (the source file's size and mtime).
  Every file is written under a temporary name and renamed; the stamp goes last and is the
  commit mark, so an interrupted or failed conversion leaves nothing a later run could use.
  A later run whose stamp still matches the source reads the cache only.
- Items point into the array with a `source` string `"<relative npy path>?<stamp token>#<index>"`;
  `read_item` returns one item. The token changes when the source file does, so any cache keyed
  on the sources (kaggletools.data.cache) rebuilds.

A competition supplies `parse(record) -> (array, row)` that checks one record and raises
`RecordError` with a plain message; the messages that reach the user name the file, the record's
index and id, and the fix.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import pandas as pd

from kaggletools.errors import CompetitionError

FORMAT_VERSION = 1
HEADER_BYTES = 128            # fixed .npy header size, rewritten in place once N is known
CHUNK_CHARS = 1 << 20         # characters read per step of the sliding buffer
MAX_RECORD_CHARS = 64 << 20   # a "record" longer than this is a broken file, not a record
_WS = re.compile(r"[ \t\n\r]*")
_TAIL = 64                    # a decode error this close to the buffer's end may be a cut-off record
_EOF_TAIL = 5                 # ... and this close to the file's end is one ("-26.", "tru", "nul")

Parse = Callable[[dict], "tuple[np.ndarray, dict]"]


class ArrayFileError(CompetitionError):
    """A broken array source file; the message names the file, the record and the fix."""


class RecordError(ValueError):
    """Raised by a competition's `parse` for one bad record (the caller adds file and index)."""


# -- reading a JSON list, bounded memory --------------------------------------------------------
def iter_json_list(path: Path, chunk_chars: int = CHUNK_CHARS,
                   max_record_chars: int = MAX_RECORD_CHARS) -> Iterator[tuple[int, object]]:
    """Yield (index, value) for each element of the JSON list in `path`, one at a time.

    Memory holds one chunk of text plus the element being decoded. Raises ArrayFileError for a
    file that is not a JSON list, invalid JSON (with the element's index and the character
    offset) or a truncated file.
    """
    path = Path(path)
    decoder = json.JSONDecoder()
    fix = "download or extract it again"
    try:
        f = open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise ArrayFileError(f"{path}: cannot open ({e.strerror or e})") from None
    with f:
        buf, pos, offset, eof = "", 0, 0, False

        def fill() -> None:
            nonlocal buf, pos, offset, eof
            try:
                chunk = f.read(chunk_chars)
            except UnicodeDecodeError as e:
                raise ArrayFileError(f"{path}: not UTF-8 text near character {offset + len(buf)} ({e.reason}); "
                                     f"is it the right file? {fix}") from None
            if not chunk:
                eof = True
            offset += pos
            buf, pos = buf[pos:] + chunk, 0

        def skip_ws() -> str:
            """Move past whitespace; the next character, or '' at the end of the file."""
            nonlocal pos
            while True:
                pos = _WS.match(buf, pos).end()
                if pos < len(buf) or eof:
                    return buf[pos] if pos < len(buf) else ""
                fill()

        first = skip_ws()
        if first == "":
            raise ArrayFileError(f"{path}: the file is empty; expected a JSON list of records [{{...}}, ...]; {fix}")
        if first != "[":
            hint = " (one record alone: wrap it in [ ])" if first == "{" else ""
            raise ArrayFileError(f"{path}: expected a JSON list of records [{{...}}, ...], found {first!r} at "
                                 f"the start{hint}")
        pos += 1
        index = 0
        if skip_ws() == "]":
            pos += 1
        else:
            while True:
                if skip_ws() == "":
                    where = f"after record {index - 1}" if index else "right after the opening '['"
                    raise _truncated(path, f"{where}, before the list is closed", offset + pos)
                while True:  # decode one element, reading more text while it is cut off
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as e:
                        unterminated = e.msg.startswith("Unterminated string")
                        cut = e.pos >= len(buf) - _TAIL or unterminated
                        if eof and (e.pos >= len(buf) - _EOF_TAIL or unterminated):
                            raise _truncated(path, f"in the middle of record {index}", offset + e.pos) from None
                        if eof or not cut or len(buf) - pos > max_record_chars:
                            raise ArrayFileError(f"{path}: invalid JSON in record {index} at character "
                                                 f"{offset + e.pos}: {e.msg}; {fix}") from None
                        fill()
                pos = end
                yield index, value
                index += 1
                nxt = skip_ws()
                if nxt == ",":
                    pos += 1
                    continue
                if nxt == "]":
                    pos += 1
                    break
                if nxt == "":
                    raise _truncated(path, f"after record {index - 1}, before the list is closed", offset + pos)
                raise ArrayFileError(f"{path}: invalid JSON after record {index - 1} at character {offset + pos}: "
                                     f"expected ',' or ']', found {nxt!r}; {fix}")
        if skip_ws() != "":
            raise ArrayFileError(f"{path}: unexpected text after the end of the list at character {offset + pos}; "
                                 f"{fix}")


def _truncated(path: Path, where: str, at: int) -> ArrayFileError:
    return ArrayFileError(f"{path}: the file ends {where} (character {at}): it is truncated; download or "
                          f"extract it again")


# -- checking one record's values -----------------------------------------------------------------
def field(record: dict, key: str, required: str = "") -> object:
    """record[key], or RecordError naming the missing field (and `required`, the full list)."""
    if key not in record:
        need = f"; every record needs {required}" if required else ""
        raise RecordError(f"missing field {key!r}{need}")
    return record[key]


def numbers(record: dict, key: str, length: int, required: str = "") -> np.ndarray:
    """record[key] as a float32 vector of exactly `length` finite numbers, else RecordError."""
    value = field(record, key, required)
    if not isinstance(value, list):
        raise RecordError(f"{key!r} is a {type(value).__name__}, expected a list of {length} numbers")
    if len(value) != length:
        raise RecordError(f"{key!r} has {len(value)} values, expected {length}")
    try:
        a = np.array(value)  # all numbers: a float/int vector; anything else: text, object or ragged
    except (ValueError, OverflowError):
        a = np.array([], dtype=object)
    if a.ndim != 1 or a.dtype.kind not in "fiu":
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise RecordError(f"{key!r} value {i} is {v!r}, not a number")
        raise RecordError(f"{key!r} is not a flat list of numbers")
    a = a.astype(np.float32)
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RecordError(f"{key!r} value {i} is {value[i]!r}, not a finite number")
    return a


# -- converting a JSON list to .npy + meta, atomically -----------------------------------------
@dataclass
class ArrayTable:
    """A converted file: the .npy path (N x item shape), one meta row per item, the stamp token."""

    path: Path
    meta: pd.DataFrame
    token: str

    @property
    def array(self) -> np.ndarray:
        return open_array(self.path)[0]

    def sources(self, relative_to: Path) -> list[str]:
        rel = self.path.relative_to(relative_to).as_posix()
        return [item_source(rel, self.token, i) for i in range(len(self.meta))]


def paths(out_dir: Path, name: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {"npy": out_dir / f"{name}.npy", "meta": out_dir / f"{name}.meta.csv",
            "stamp": out_dir / f"{name}.stamp.json"}


def stamp_of(source: Path, item_shape: tuple[int, ...], version: str) -> dict:
    """What the cache is keyed on: the source's name, size and mtime, the item shape, the parser's version."""
    st = Path(source).stat()
    return {"format": FORMAT_VERSION, "parser": version, "source": Path(source).name, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "shape": list(item_shape)}


def _token(stamp: dict) -> str:
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]


def ensure_json(source: Path, out_dir: Path, name: str, parse: Parse, item_shape: tuple[int, ...], *,
                version: str = "1", id_column: str = "id", progress: bool = False) -> ArrayTable:
    """The converted table of `source`: read from `out_dir` when its stamp matches the source's
    size and mtime, else converted now (once)."""
    p = paths(out_dir, name)
    want = stamp_of(source, item_shape, version)
    try:
        have = json.loads(p["stamp"].read_text())
    except (OSError, ValueError):
        have = None
    if have is not None and {k: v for k, v in have.items() if k != "items"} == want \
            and p["npy"].is_file() and p["meta"].is_file():
        meta = _read_meta(p["meta"], id_column)
        if len(meta) == have.get("items"):
            return ArrayTable(p["npy"], meta, _token(want))
    return convert_json(source, out_dir, name, parse, item_shape, version=version, id_column=id_column,
                        progress=progress)


def convert_json(source: Path, out_dir: Path, name: str, parse: Parse, item_shape: tuple[int, ...], *,
                 version: str = "1", id_column: str = "id", progress: bool = False) -> ArrayTable:
    """Stream the records of `source` through `parse` into `<out_dir>/<name>.npy` (float32, N x
    item_shape), `<name>.meta.csv` and `<name>.stamp.json`; atomic, bounded memory.

    `parse(record)` returns (array of item_shape, dict of scalars including `id_column`) or
    raises RecordError. Ids must be unique. On any error nothing is left behind.
    """
    source, out_dir = Path(source), Path(out_dir)
    stamp = stamp_of(source, item_shape, version)
    p = paths(out_dir, name)
    made_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = {k: v.with_name(f".{v.name}.partial-{os.getpid()}") for k, v in p.items()}
    rows: list[dict] = []
    seen: dict[str, int] = {}
    try:
        with open(tmp["npy"], "wb") as out:
            out.write(_npy_header((0, *item_shape)))
            bar = _progress(progress, source)
            for i, record in iter_json_list(source):
                row = _parse_one(source, i, record, parse, item_shape, id_column, out)
                key = str(row[id_column])
                if key in seen:
                    raise ArrayFileError(f"{source}: id {key!r} appears twice, records {seen[key]} and {i}; "
                                         f"ids must be unique: remove the duplicate record")
                seen[key] = i
                rows.append(row)
                bar.update(1)
            bar.close()
            if not rows:
                raise ArrayFileError(f"{source}: holds no records (an empty list); download or extract it again")
            out.seek(0)
            out.write(_npy_header((len(rows), *item_shape)))
            out.flush()
            os.fsync(out.fileno())
        pd.DataFrame(rows).to_csv(tmp["meta"], index=False)
        tmp["stamp"].write_text(json.dumps({**stamp, "items": len(rows)}, indent=1))
        for k in ("npy", "meta", "stamp"):  # the stamp last: it marks a finished conversion
            os.replace(tmp[k], p[k])
    except BaseException:
        for t in tmp.values():
            t.unlink(missing_ok=True)
        if made_dir:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        raise
    return ArrayTable(p["npy"], _read_meta(p["meta"], id_column), _token(stamp))


def _parse_one(source: Path, i: int, record, parse: Parse, item_shape, id_column: str, out) -> dict:
    rid = record.get(id_column) if isinstance(record, dict) else None
    where = f"{source}: record {i}" + (f" (id {rid!r})" if rid is not None else "")
    if not isinstance(record, dict):
        raise ArrayFileError(f"{where}: is {_short(record)}, not a JSON object {{...}}; "
                             f"fix or remove this record, or download and extract the file again")
    try:
        array, row = parse(record)
    except RecordError as e:
        raise ArrayFileError(f"{where}: {e}; fix or remove this record, or download and extract the file again") \
            from None
    array = np.ascontiguousarray(array, dtype="<f4")
    if array.shape != tuple(item_shape):
        raise ArrayFileError(f"{where}: parsed to shape {array.shape}, expected {tuple(item_shape)}")
    out.write(array.tobytes())
    return row


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _progress(enabled: bool, source: Path):
    from kaggletools import progress

    return progress.bar(desc=f"convert {Path(source).name}", unit="rec", enabled=enabled)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header for little-endian float32 C order, padded to HEADER_BYTES."""
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % "".join(f"{n}, " for n in shape)
    body = text.ljust(HEADER_BYTES - 10 - 1) + "\n"
    if len(body) != HEADER_BYTES - 10:
        raise ValueError(f"shape {shape} too large for the fixed .npy header")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


def _read_meta(path: Path, id_column: str) -> pd.DataFrame:
    return pd.read_csv(path, dtype={id_column: str}, keep_default_na=False, na_values=[""])


# -- items pointing into an array -----------------------------------------------------------------
def item_source(rel_path: str, token: str, index: int) -> str:
    """The `source` of item `index` of the array at `rel_path` (relative to the data folder)."""
    return f"{rel_path}?{token}#{index}"


class Source(NamedTuple):
    """An array item's source: the .npy file (relative), the conversion's token, the row."""

    path: str
    token: str
    index: int


def parse_source(source: str) -> Source:
    rest, _, index = str(source).rpartition("#")
    rel, _, token = rest.rpartition("?")
    if not rel or not index.isdigit():
        raise CompetitionError(f"{source!r} is not an array item source '<file.npy>?<token>#<index>'")
    return Source(rel, token, int(index))


def read_item(data_dir: Path, source: str) -> np.ndarray:
    """One item of an array file, as float32 (a copy, safe to modify)."""
    rel, token, index = parse_source(source)
    path = Path(data_dir) / rel
    array, current = open_array(path)
    if token != current:
        raise CompetitionError(f"{path}: rebuilt since its items were listed (item {source!r}); list the "
                               f"items again (re-run the command)")
    return np.array(array[index], dtype=np.float32)


def open_array(path: Path) -> tuple[np.ndarray, str]:
    """The read-only memory map of a converted .npy and its stamp token (cached per file version)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise CompetitionError(f"{path}: no such converted array; run `prepare` for this data folder") from None
    return _open(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _open(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, str]:
    stamp_path = Path(path).with_name(Path(path).name.removesuffix(".npy") + ".stamp.json")
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        raise CompetitionError(f"{path}: its stamp {stamp_path.name} is missing or unreadable; run `prepare` "
                               f"again") from None
    stamp.pop("items", None)
    return np.load(path, mmap_mode="r"), _token(stamp)


# -- writing a JSON list, bounded memory ---------------------------------------------------------
def write_json_list(path: Path, records: Iterable[dict]) -> Path:
    """Write records as a JSON list, one at a time, atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("[")
            for i, record in enumerate(records):
                f.write((", " if i else "") + json.dumps(record))
            f.write("]")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
