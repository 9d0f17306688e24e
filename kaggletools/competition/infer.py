"""A competition without a module, inferred from its data folder (as fastai's `from_folder`,
`from_csv`, `from_df` read it): after the safe unpacking, the training images (class folders, or a
folder labelled by a CSV of id and label, of id and space-separated tags, or of one 0/1 column
per class; ids with or without the file suffix), the task, the classes in order, the test images
and, from `sample_submission.csv`, the submission format. An ambiguous folder is refused in one
line naming the file and the flag (kaggletools.options.Inference) that settles it."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

import kaggletools.competition.layouts as layouts
from kaggletools.competition.inferred import Spec
from kaggletools.errors import CompetitionError
from kaggletools.options import Inference

DEPTH = 3                         # how deep folders are searched (imgs/train/c0)
SKIP = ("__MACOSX",)
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")  # reaches folder names, generated code, Kaggle ids


def infer(slug: str, data_dir: Path, given: Inference = Inference(), group_by: str = "",
          need_test: bool = False) -> Spec:
    """The Spec of the competition in `data_dir` (unpacked first); `need_test`: refuse a folder
    without test images (the verbs that predict)."""
    from kaggletools.unpack import archives

    if not SLUG.match(str(slug)):
        raise CompetitionError(f"{str(slug)[:60]!r} is not a competition slug (letters, digits, '-', '_', '.', as "
                               "in kaggle.com/competitions/<slug>); choose one like my-competition")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CompetitionError(f"{data_dir}: no such folder; give --data the folder of the competition's download")
    archives.extract_all(data_dir)
    sample = _sample(data_dir)
    header = list(layouts.read_csv(data_dir / sample, ()).columns) if sample else []
    train, by_folder = _train_folder(data_dir, given.images)
    found = _labels(data_dir, train, by_folder, given, sample, header, group_by)
    spec = Spec(slug=slug, train=train, suffix=_suffix(data_dir / train, by_folder), **found)
    spec = _format(spec, given, sample, header, data_dir)
    spec = _test(spec, data_dir, given.test, need_test)
    spec = _companions(spec, data_dir, sample)
    if group_by and group_by != "none" and not spec.group_column:
        spec = _groups(spec, data_dir, group_by, sample)
    return spec


# -- files and folders ---------------------------------------------------------------------------
def _rel(data_dir: Path, path: Path) -> str:
    return path.relative_to(data_dir).as_posix()


def _folders(data_dir: Path) -> list[Path]:
    """Every folder below data_dir, DEPTH deep, in name order; hidden ones, __MACOSX and samples
    (`kaggletools sample` writes <data>/sample-<n>/, a data folder of its own) left out."""
    from kaggletools.data.items import SAMPLE_MARKER

    out, level = [], [data_dir]
    for _ in range(DEPTH):  # scandir's is_dir needs no stat per file: a folder of 40,000 images is one listing
        level = sorted(parent / e.name for parent in level for e in layouts._entries(parent)
                       if e.is_dir() and not e.name.startswith(".") and e.name not in SKIP
                       and not (parent / e.name / SAMPLE_MARKER).is_file())
        out += level
    return out


def _images_in(folder: Path) -> list[str]:
    return layouts._images(folder)


def _class_folders(folder: Path) -> list[Path]:
    """The sub-folders holding images directly, when there are at least two and no loose images."""
    if _images_in(folder):
        return []
    subs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".") and d.name not in SKIP]
    full = [d for d in subs if _images_in(d)]
    return full if len(full) >= 2 and len(full) == len(subs) else []


def _holding(folder: Path) -> tuple[Path, bool] | None:
    """(the folder with the images, whether they are class folders), looking through one level
    of nesting (`train/train/...`, as some archives unpack); None: no images."""
    for _ in range(2):
        if _images_in(folder):
            return folder, False
        if _class_folders(folder):
            return folder, True
        subs = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in SKIP]
        if len(subs) != 1:
            return None
        folder = subs[0]
    return None


def _train_folder(data_dir: Path, images: str) -> tuple[str, bool]:
    if images:
        held = _holding(data_dir / images)
        if held is None:
            raise CompetitionError(f"--images {images}: {data_dir / images} holds no images and no class folders "
                                   "of images")
        return _rel(data_dir, held[0]), held[1]
    named = [d for d in _folders(data_dir) if "train" in d.name.lower()]
    named = [d for d in named if not any(o != d and o in d.parents for o in named)]  # the outermost
    held = [h for h in (_holding(d) for d in named) if h is not None]
    if not held:
        candidates = [d for d in _folders(data_dir) if d.parent == data_dir and not _is_test(d.name)]
        held = [h for h in (_holding(d) for d in candidates) if h is not None]
    held = list(dict.fromkeys(held))
    if len(held) > 1:
        shown = ", ".join(_rel(data_dir, h[0]) for h in held)
        raise CompetitionError(f"{data_dir}: several folders could hold the training images ({shown}); give "
                               "--images DIR")
    if not held:
        raise CompetitionError(f"{data_dir}: no training images found (a train/ folder of images or of one folder "
                               "per class, zipped or not); give --images DIR")
    return _rel(data_dir, held[0][0]), held[0][1]


def _suffix(folder: Path, by_folder: bool) -> str:
    """The most common image suffix of the training images."""
    from collections import Counter

    names = [n for d in _class_folders(folder) for n in _images_in(d)] if by_folder else _images_in(folder)
    if not names and not by_folder:
        names = [n for d in folder.iterdir() if d.is_dir() for n in _images_in(d)]
    counts = Counter(os.path.splitext(n)[1].lower() for n in names)
    return counts.most_common(1)[0][0] if counts else ".jpg"


def _is_test(name: str) -> bool:
    return name.lower().startswith("test")


def _sample(data_dir: Path) -> str:
    found = sorted(p.name for p in data_dir.iterdir() if p.is_file() and p.suffix.lower() == ".csv"
                   and re.sub(r"[^a-z]", "", p.name.lower()).startswith("samplesubmission"))
    if len(found) > 1:
        raise CompetitionError(f"{data_dir}: several sample submissions ({', '.join(found)}); keep the one that "
                               "belongs to this competition")
    return found[0] if found else ""


def _csvs(data_dir: Path, sample: str) -> list[Path]:
    """The CSVs beside the download (one level down too), the sample submission left out."""
    found = [p for p in data_dir.glob("*.csv") if p.name != sample]
    found += [p for d in data_dir.iterdir() if d.is_dir() and not d.name.startswith(".") for p in d.glob("*.csv")]
    return sorted(p for p in found if p.is_file())


def _read(path: Path) -> pd.DataFrame:
    return layouts.read_csv(path, ())


def _id_columns(df: pd.DataFrame, names: set[str]) -> list[str]:
    """Columns of df whose values are (nearly) all different and mostly name an image (file name
    or stem): a 0/1 label column never passes, even beside images named 0.jpg, 1.jpg, ..."""
    out = []
    for column in df.columns:
        values = df[column].astype(str).str.strip()
        if len(values) and values.nunique() >= 0.9 * len(values) and values.isin(names).mean() >= 0.5:
            out.append(column)
    return out


# -- labels ------------------------------------------------------------------------------------
def _labels(data_dir, train, by_folder, given, sample, header, group_by) -> dict:
    """layout, task, classes and the label file's columns."""
    if by_folder and not given.labels:
        classes = tuple(sorted((d.name for d in _class_folders(data_dir / train)), key=layouts._natural))
        task = given.task or "multiclass"
        if task != "multiclass":
            raise CompetitionError(f"{data_dir / train}: one folder per class means one class per image; "
                                   f"--task {task} needs a label CSV (--labels FILE)")
        return {"layout": "folders", "task": task, "classes": _ordered(classes, given, data_dir / train)}
    names = _image_names(data_dir / train)
    path, id_column = _label_file(data_dir, train, names, given, sample)
    df = _read(path)
    rest = [c for c in df.columns if c != id_column and c != group_by]
    found = {"labels": _rel(data_dir, path), "id_column": id_column}
    if given.label_column:
        if given.label_column not in rest:
            raise CompetitionError(f"{path}: --label-column {given.label_column} is not a column; columns: "
                                   f"{_shown(df.columns, ', ')}")
        rest = [given.label_column]
    values = {c: df[c].astype(str).str.strip() for c in rest}
    binary = [c for c in rest if values[c].isin(["0", "1", "0.0", "1.0"]).all()]
    if len(rest) > 1 and len(binary) == len(rest):  # one 0/1 column per class
        y = pd.DataFrame(values).astype(float)
        task = given.task or ("multiclass" if (y.sum(axis=1) == 1).all() else "multilabel")
        return {**found, "layout": "columns", "task": task, "classes": _ordered(tuple(rest), given, path)}
    if len(rest) > 1:
        hint = header[1] if len(header) == 2 and header[1] in rest else ""
        if not hint:
            raise CompetitionError(f"{path}: which column holds the labels, {_shown(rest, ' or ')}? give "
                                   "--label-column COLUMN")
        rest = [hint]
    if not rest:
        raise CompetitionError(f"{path}: no column beside {id_column} to hold the labels; give --labels FILE")
    column = rest[0]
    found["label_column"] = column
    task = given.task or _task(values[column])
    if task == "binary":
        if not values[column].isin(["0", "1", "0.0", "1.0"]).all():
            raise CompetitionError(f"{path}: --task binary needs 0/1 labels in {column}")
        positive = given.classes or (header[1] if len(header) == 2 and header[1] != header[0] else column)
        return {**found, "layout": "csv", "task": task, "classes": (positive,)}
    if task == "multilabel":
        tags = sorted({t for v in values[column] for t in v.split()}, key=layouts._natural)
        return {**found, "layout": "tags", "task": task, "classes": _ordered(tuple(tags), given, path)}
    classes = tuple(sorted(set(values[column]) - {""}, key=layouts._natural))
    return {**found, "layout": "csv", "task": task, "classes": _ordered(classes, given, path)}


def _shown(names, sep: str, most: int = 8) -> str:
    """Column names for a message: the first `most` (a file of thousands of columns stays one line)."""
    names = [repr(n)[1:-1] for n in names]
    return sep.join(names[:most]) + (f" ... ({len(names)} columns)" if len(names) > most else "")


def _image_names(folder: Path) -> set[str]:
    names = set(_images_in(folder))
    if not names:  # one level of nesting, as layouts.image_files accepts
        names = {n for d in folder.iterdir() if d.is_dir() for n in _images_in(d)}
    return names | {layouts.stem(n) for n in names}


def _label_file(data_dir, train, names, given, sample) -> tuple[Path, str]:
    if given.labels:
        path = data_dir / given.labels
        if not path.is_file():
            raise CompetitionError(f"--labels {given.labels}: {path} is not a file")
        candidates = {path: _id_columns(_read(path), names)}
    else:
        candidates = {p: c for p in _csvs(data_dir, sample)  # a test list (ids alone) labels nothing
                      if len((df := _read(p)).columns) > 1 and (c := _id_columns(df, names))}
        if len(candidates) > 1:
            shown = " and ".join(_rel(data_dir, p) for p in candidates)
            raise CompetitionError(f"{data_dir}: two candidate label files, {shown}, name the images of {train}/; "
                                   "give --labels FILE")
    if given.labels and not candidates[path] and not given.id_column:
        raise CompetitionError(f"{path}: no column names the images of {train}/ (their file names or stems); give "
                               "--id-column COLUMN")
    if not candidates:
        raise CompetitionError(f"{data_dir}: no CSV names the images of {train}/, and they are not in class folders; "
                               "give --labels FILE (and --id-column COLUMN)")
    path, columns = next(iter(candidates.items()))
    if given.id_column:
        if given.id_column not in _read(path).columns:
            raise CompetitionError(f"{path}: --id-column {given.id_column} is not a column")
        return path, given.id_column
    if len(columns) > 1:
        raise CompetitionError(f"{path}: columns {' and '.join(columns)} both name the images; give "
                               "--id-column COLUMN")
    return path, columns[0]


def _task(values: pd.Series) -> str:
    """binary for 0/1, multilabel for space-separated tags (fewer distinct tags than distinct
    rows: combinations, not names with spaces), else multiclass."""
    if values.isin(["0", "1", "0.0", "1.0"]).all():
        return "binary"
    spaced = values.str.contains(" ").any()
    tokens = {t for v in values for t in v.split()}
    return "multilabel" if spaced and len(tokens) < values.nunique() else "multiclass"


def _ordered(found: tuple, given: Inference, where: Path) -> tuple:
    """The classes found, or --classes (the same set, in its order)."""
    if not given.classes:
        return found
    named = tuple(c.strip() for c in given.classes.split(",") if c.strip())
    if set(named) != set(found):
        raise CompetitionError(f"{where}: --classes {given.classes} is not the set found there "
                               f"({', '.join(found)}); give the same names, in the submission's order")
    return named


# -- submission, test images, groups ---------------------------------------------------------------
def _format(spec: Spec, given: Inference, sample: str, header: list[str], data_dir: Path) -> Spec:
    """The submission format from the sample submission's header (else from the task)."""
    from dataclasses import replace

    default = {"binary": "binary", "multiclass": "label", "multilabel": "tags"}[spec.task]
    if not sample:
        value = spec.label_column or ("label" if spec.task != "multilabel" else "tags")
        if spec.task == "binary":
            value = spec.classes[0]
        return replace(spec, format=default, submission_id=spec.id_column if spec.labels else "id",
                       submission_label=value, metric=given.metric)
    path = data_dir / sample
    if len(header) < 2:
        raise CompetitionError(f"{path}: a sample submission needs an id column and at least one more")
    if len(header) > 2:
        columns = tuple(header[1:])
        if spec.task != "multiclass":
            raise CompetitionError(f"{path}: one probability column per class is supported for one class per image; "
                                   f"these labels are {spec.task} (--task multiclass if each image has one)")
        missing = [c for c in spec.classes if c not in columns]  # classes no training image has are fine
        if missing or (spec.layout == "columns" and set(columns) != set(spec.classes)):
            raise CompetitionError(f"{path}: columns {', '.join(columns)} should be one probability per class "
                                   f"of the labels ({', '.join(spec.classes)}); give --classes or --labels FILE")
        return replace(spec, format="probs", classes=columns, sample=sample, submission_id=header[0],
                       submission_label="", metric=given.metric)
    return replace(spec, format=default, sample=sample, submission_id=header[0], submission_label=header[1],
                   metric=given.metric)


def _test(spec: Spec, data_dir: Path, test: str, need: bool) -> Spec:
    from dataclasses import replace

    if test:
        held = _holding(data_dir / test)
        if held is None or held[1]:
            raise CompetitionError(f"--test {test}: {data_dir / test} holds no test images")
        folder = _rel(data_dir, held[0])
    else:
        named = [d for d in _folders(data_dir) if _is_test(d.name)]
        named = [d for d in named if not any(o != d and o in d.parents for o in named)]
        held = [h[0] for h in (_holding(d) for d in named) if h is not None and not h[1]]
        if len(held) > 1:
            raise CompetitionError(f"{data_dir}: several test folders ({', '.join(_rel(data_dir, h) for h in held)}); "
                                   "give --test DIR")
        folder = _rel(data_dir, held[0]) if held else ""
    if not folder and spec.sample and spec.layout != "folders" and _lists_images(data_dir, spec):
        folder = spec.train  # train and test images in one folder (the label file names the training ones)
    if not folder and need:
        what = f"{spec.sample} lists the test ids but no test folder holds images" if spec.sample else \
            "no sample_submission.csv and no test folder"
        raise CompetitionError(f"{data_dir}: {what}: nothing to predict; give --test DIR (the test images)")
    suffix = spec.layout == "folders" or bool(spec.labels) and _suffixed(data_dir / spec.labels, spec.id_column)
    return replace(spec, test=folder, test_list=spec.sample if folder and spec.sample else "", keep_suffix=suffix,
                   shared=bool(folder) and folder == spec.train)


def _lists_images(data_dir: Path, spec: Spec) -> bool:
    """Whether the sample submission's ids are (mostly) images of the training folder."""
    ids = _read(data_dir / spec.sample).iloc[:, 0].astype(str).str.strip()
    return bool(len(ids)) and ids.isin(_image_names(data_dir / spec.train)).mean() >= 0.5


def _suffixed(path: Path, column: str) -> bool:
    ids = _read(path)[column].astype(str).str.lower()
    return bool(len(ids)) and bool(ids.str.endswith(layouts.IMAGE_SUFFIXES).all())


def _names(data_dir: Path, spec: Spec) -> set[str]:
    """The training images' file names and stems."""
    names = _image_names(data_dir / spec.train) if spec.layout != "folders" else {
        n for d in _class_folders(data_dir / spec.train) for n in _images_in(d)}
    return names | {layouts.stem(n) for n in names}


def _companions(spec: Spec, data_dir: Path, sample: str) -> Spec:
    """The CSVs beside the label file that name the training images (State Farm's driver list)."""
    from dataclasses import replace

    names = _names(data_dir, spec)
    found = [(_rel(data_dir, p), ids[0]) for p in _csvs(data_dir, sample)
             if _rel(data_dir, p) != spec.labels and (ids := _id_columns(_read(p), names))]
    return replace(spec, companions=tuple(found))


def _groups(spec: Spec, data_dir: Path, column: str, sample: str) -> Spec:
    """The CSV holding the --group-by column, and its column naming the images."""
    from dataclasses import replace

    names = _names(data_dir, spec)
    files = ([data_dir / spec.labels] if spec.labels else []) + _csvs(data_dir, sample)
    for path in dict.fromkeys(files):
        df = _read(path)
        ids = _id_columns(df, names)
        if column in df.columns and ids:
            return replace(spec, group_file=_rel(data_dir, path), group_id=ids[0], group_column=column)
    shown = ", ".join(_rel(data_dir, p) for p in files) or "no CSV"
    raise CompetitionError(f"--group-by {column}: no CSV naming the training images has that column ({shown}); "
                           "give a column of the label file")
