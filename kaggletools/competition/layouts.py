"""Where competitions keep their items, as functions a competition module calls from `items`:
image folders (`<folder>/<id>.jpg`), label files that must match them one to one, class-per-folder
layouts (`train/<class>/<file>`), and unlabelled test folders. Errors name the file and the fix."""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools.errors import CompetitionError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def _natural(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def stem(name: str) -> str:
    """Path(name).stem for an image file name (it has a suffix), without building a Path: listing a
    folder of 40,000 images spent most of its time in pathlib."""
    return os.path.splitext(name)[0]


def image_files(data_dir: Path, folder: str) -> dict[str, str]:
    """{stem: source relative to data_dir} for the images in `data_dir/folder`, naturally sorted.

    One extra level of nesting is accepted (an archive that unpacked `train-jpg/train-jpg/x.jpg`):
    when the folder holds no images but exactly one sub-folder, that sub-folder is used. Hidden
    files (e.g. macOS `._x.jpg`) are ignored.
    """
    base = Path(data_dir) / folder
    for rel in (Path(folder), None):
        if rel is None:
            subs = [e for e in _entries(base) if e.is_dir() and not e.name.startswith(".")]
            if len(subs) != 1:
                return {}
            rel = Path(folder) / subs[0].name
        found = [e.name for e in _entries(Path(data_dir) / rel)
                 if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file()]
        if found:
            found.sort(key=_natural)
            prefix = "" if rel == Path(".") else rel.as_posix() + "/"  # (rel / n).as_posix(), without a Path each
            return {stem(n): prefix + n for n in found}
    return {}


def has_images(data_dir: Path, folder: str) -> bool:
    return bool(image_files(data_dir, folder))


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def match_labels(labels: pd.DataFrame, files: dict[str, str], label_path: Path, folder: Path,
                 skip_unlabelled: bool = False) -> pd.DataFrame:
    """`labels` (a table with an `id` column) with a `source` column from `files` ({id: source},
    as `image_files` gives), after checking that label rows and image files correspond one to
    one. Both directions are errors: a labelled image missing on disk cannot be trained on, and
    an image without a label row means the label file and the images come from different
    versions or folders (silently dropping them would hide that), unless `skip_unlabelled` (train
    and test images share the folder). `label_path` and `folder` name the files in messages."""
    ids = labels["id"]
    missing = ids[~ids.isin(files.keys())]
    if len(missing):
        raise CompetitionError(f"{label_path} names {len(missing)} image(s) not found in {folder}, e.g. "
                               f"{list(missing[:5])}; unpack the complete image archive again (`prepare`), or "
                               "use the label file that belongs to these images")
    extra = pd.Index(list(files)).difference(pd.Index(ids))
    if len(extra) and not skip_unlabelled:
        raise CompetitionError(f"{folder} holds {len(extra)} image(s) without a row in {label_path}, e.g. "
                               f"{list(extra[:5])}; remove them from the folder, or use the label file that "
                               "belongs to these images")
    table = labels.copy()
    table.insert(1, "source", ids.map(files).to_numpy())
    return table


def read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A label CSV as text, with the `columns` it must have."""
    path = Path(path)
    if not path.is_file():
        raise CompetitionError(f"{path}: label file not found; download it and run `prepare`")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        check_header(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise CompetitionError(f"{path}: cannot read as CSV ({e}); download the label file again") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CompetitionError(f"{path}: missing column(s) {missing}; columns are {list(df.columns)}; the file "
                               f"must have the header {','.join(columns)}")
    return df


def check_header(path: Path) -> None:
    """A CSV whose header names a column twice is an error (pandas would rename the second `x.1`
    and read the first as if nothing were wrong)."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    seen = [c.strip() for c in header]
    twice = sorted({c for c in seen if seen.count(c) > 1})
    if twice:
        raise CompetitionError(f"{path}: the header names {twice} more than once ({','.join(header)}); each column "
                               "needs a name of its own: download the file again or fix its first line")


def labelled_by_csv(data_dir: Path, csv_name: str, folder: str, id_column: str, label_column: str,
                    skip_unlabelled: bool = False) -> pd.DataFrame:
    """Items of an image folder labelled by a CSV `id_column,label_column`: columns id, source,
    label. The CSV's ids are the images' names without their suffix (`<folder>/<id>.jpg`) or, when
    every id ends in an image suffix, the whole file names (`<folder>/<id>`). Label rows and images
    must match one to one, unless `skip_unlabelled` (test images in the same folder). `sample`
    cuts the CSV to the rows it keeps."""
    path = Path(data_dir) / csv_name
    df = read_csv(path, (id_column, label_column))
    ids = df[id_column].str.strip()
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise CompetitionError(f"{path}: {len(dup)} duplicate id(s), e.g. {list(dup[:5])}; each image needs one row")
    labels = pd.DataFrame({"id": ids.to_numpy(), "label": df[label_column].str.strip().to_numpy()})
    return _with_images(labels, data_dir, csv_name, folder, id_column, skip_unlabelled)


def listed(data_dir: Path, csv_name: str, folder: str, id_column: str) -> pd.DataFrame:
    """Test items listed by a CSV (a `test.csv`, or the sample submission) in its order: columns
    id, source. Ids as for `labelled_by_csv`; every listed image must be in `folder`."""
    path = Path(data_dir) / csv_name
    ids = read_csv(path, (id_column,))[id_column].str.strip()
    files = _keyed_like(ids, image_files(data_dir, folder))
    missing = ids[~ids.isin(files.keys())]
    if len(missing):
        raise CompetitionError(f"{path} lists {len(missing)} image(s) not found in {Path(data_dir) / folder}, e.g. "
                               f"{list(missing[:5])}; unpack the complete image archive again (`prepare`)")
    table = pd.DataFrame({"id": ids.to_numpy(), "source": ids.map(files).to_numpy()})
    table.attrs.update({"source": str(path), "labels": {"file": csv_name, "id_column": id_column}})
    return table


def labelled_by_tags(data_dir: Path, csv_name: str, folder: str, id_column: str, tags_column: str,
                     classes, skip_unlabelled: bool = False) -> pd.DataFrame:
    """Multi-label items of an image folder labelled by a CSV `id_column,tags_column` with
    space-separated tags (Planet's `image_name,tags`): columns id, source and one 0/1 column per
    class. Ids and `skip_unlabelled` as for `labelled_by_csv`; unknown tags and duplicate ids are
    errors naming the file."""
    labels = read_labels(Path(data_dir) / csv_name, classes, id_column, tags_column)
    return _with_images(labels, data_dir, csv_name, folder, id_column, skip_unlabelled)


def labelled_by_columns(data_dir: Path, csv_name: str, folder: str, id_column: str, classes,
                        skip_unlabelled: bool = False) -> pd.DataFrame:
    """Items of an image folder labelled by a CSV with one 0/1 column per class (`id_column`, then
    the classes): columns id, source and the class columns (text; the task checks them). Ids and
    `skip_unlabelled` as for `labelled_by_csv`; duplicate ids are errors naming the file."""
    path = Path(data_dir) / csv_name
    df = read_csv(path, (id_column, *classes))
    ids = df[id_column].str.strip()
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise CompetitionError(f"{path}: {len(dup)} duplicate id(s), e.g. {list(dup[:5])}; each image needs one row")
    labels = pd.DataFrame({"id": ids.to_numpy()})
    for c in classes:
        labels[c] = df[c].str.strip().to_numpy()
    return _with_images(labels, data_dir, csv_name, folder, id_column, skip_unlabelled)


def _with_images(labels: pd.DataFrame, data_dir: Path, csv_name: str, folder: str, id_column: str,
                 skip_unlabelled: bool = False) -> pd.DataFrame:
    """The rows of a label CSV matched to the images of `folder` (see `match_labels`), marked
    for `sample` to cut the CSV."""
    files = image_files(data_dir, folder)
    if not files:
        raise CompetitionError(f"{Path(data_dir) / folder}: no images; download and `prepare` the data")
    path = Path(data_dir) / csv_name
    table = match_labels(labels, _keyed_like(labels["id"], files), path, Path(data_dir) / folder, skip_unlabelled)
    table.attrs.update({"source": str(path), "labels": {"file": csv_name, "id_column": id_column}})
    return table


def _keyed_like(ids: pd.Series, files: dict[str, str]) -> dict[str, str]:
    """`files` ({stem: source}) keyed by whole file names when every id ends in an image suffix."""
    if len(ids) and ids.str.lower().str.endswith(IMAGE_SUFFIXES).all():
        return {Path(source).name: source for source in files.values()}
    return files


def labelled_by_folder(data_dir: Path, folder: str, classes) -> pd.DataFrame:
    """Items of a `<folder>/<class>/<file>` layout: columns id (the file name), source, label.
    A sub-folder that is not a class is an error naming it."""
    base = Path(data_dir) / folder
    subs = sorted(e.name for e in _entries(base) if e.is_dir() and not e.name.startswith("."))
    if not subs:
        raise CompetitionError(f"{base}: no class folders; download and `prepare` the data, or point --data at a "
                               f"folder holding {folder}/<class>/<image>")
    unknown = [s for s in subs if s not in set(classes)]
    if unknown:
        raise CompetitionError(f"{base}: folder(s) {unknown[:5]} are not classes of this competition; known: "
                               f"{', '.join(classes)}; rename or remove them")
    rows = [(name, f"{folder}/{cls}/{name}", cls) for cls in subs for name in sorted(_images(base / cls))]
    if not rows:
        raise CompetitionError(f"{base}: the class folders hold no images")
    table = pd.DataFrame(rows, columns=["id", "source", "label"])
    table.attrs["source"] = str(base)
    return table


def unlabelled(data_dir: Path, folder: str, keep_suffix: bool = False) -> pd.DataFrame:
    """Test items of `<folder>/<file>`: id (the stem, or the whole file name), source."""
    files = sorted(_images(Path(data_dir) / folder), key=_natural)
    return pd.DataFrame({"id": [n if keep_suffix else stem(n) for n in files],
                         "source": [f"{folder}/{n}" for n in files]})


def _images(folder: Path) -> list[str]:
    return [e.name for e in _entries(folder) if e.is_file() and not e.name.startswith(".")
            and e.name.lower().endswith(IMAGE_SUFFIXES)]


# -- tag label files (multi-label) ------------------------------------------------------------
def tags_matrix(tags: pd.Series, classes) -> tuple[np.ndarray, Counter]:
    """(n, k) 0/1 float32 targets from space-separated tags, and a count of unknown tags."""
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(tags), len(index)), np.float32)
    unknown: Counter = Counter()
    for row, text in enumerate(tags.fillna("").astype(str)):
        for tag in text.split():
            if tag in index:
                y[row, index[tag]] = 1.0
            else:
                unknown[tag] += 1
    return y, unknown


def read_labels(path: Path, classes, id_column: str, tags_column: str = "tags") -> pd.DataFrame:
    """The label file as an item table: `id` and one 0/1 float column per class.

    Raises CompetitionError naming the file and the fix for a missing or unreadable file, missing
    columns, unknown tags and duplicate ids.
    """
    path = Path(path)
    if not path.is_file():
        raise CompetitionError(f"{path}: label file not found; download it and run `prepare` (a zipped "
                               f"{path.name}.zip is unpacked by prepare)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        check_header(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise CompetitionError(f"{path}: cannot read as CSV ({e}); download the label file again") from None
    missing = [c for c in (id_column, tags_column) if c not in df.columns]
    if missing:
        raise CompetitionError(f"{path}: missing column(s) {missing}; columns are {list(df.columns)}. The label "
                               f"file must have a header `{id_column},{tags_column}` with space-separated tags; "
                               "download the original file again")
    y, unknown = tags_matrix(df[tags_column], classes)
    if unknown:
        listed = ", ".join(f"{t!r} ({n} rows)" for t, n in unknown.most_common(5))
        raise CompetitionError(f"{path}: {sum(unknown.values())} unknown tag(s): {listed}. Known tags: "
                               f"{', '.join(classes)}. Fix the spelling in the file, or use the official label "
                               "file of this competition")
    ids = df[id_column].str.strip()
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise CompetitionError(f"{path}: {len(dup)} duplicate {id_column}(s), e.g. {list(dup[:5])}; each image "
                               "must have one row")
    table = pd.DataFrame({"id": ids.to_numpy()})
    for i, c in enumerate(classes):
        table[c] = y[:, i]
    return table
