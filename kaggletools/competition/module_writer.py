"""`kaggletools new SLUG --data DIR`: the module of an inferred competition (a Spec, see
kaggletools.competition.inferred) as Python source in the shape of the README's examples: a class
on a base, `items` through the layouts, and a `make_fixture` whose generated download mirrors the
real one (the same folders, label file columns, ids with or without suffix, sample submission)."""
from __future__ import annotations

import keyword
import re

from kaggletools.competition.inferred import BASES, FORMATS, Spec, mixins

MAX_FIXTURE_CLASSES = 6   # a fixture of 64 images learns a few classes, not 120


def source(spec: Spec) -> str:
    """The module's text."""
    metric = _catalog(spec)
    extra = [m.__name__ for m in mixins(spec, metric)]
    catalog_base = ["ByMetric"] if metric is not None else []
    base = ("BinaryProbability" if metric is not None and spec.format == "binary" and metric.name != "log_loss"
            else BASES[spec.format].__name__)
    doc = (f"{spec.slug}: written by `kaggletools new` from its data folder; edit freely.\n\n"
           f"Training images: {_where(spec)}; a {spec.task} task scored by {spec.metric_name};\n"
           f"the submission holds {FORMATS[spec.format]} "
           f'({spec.sample or "no sample submission was found: the format is a guess"}).')
    lines = [f'"""{_doc(doc)}"""',
             "from __future__ import annotations", "", "from pathlib import Path", "", "import numpy as np",
             "import pandas as pd", "",
             "from kaggletools.competition import Recipe, " + ("files, " if _sample_files(spec) else "")
             + "fixtures, layouts, register",
             f"from kaggletools.competition.bases import {', '.join(catalog_base + [base])}"]
    if extra:
        lines.append(f"from kaggletools.competition.inferred import {', '.join(extra)}  # how the submission is written")
    lines += ["", f"CLASSES = {_tuple(spec.classes)}", "", "",
              f"@register({spec.slug!r})", f"class {_class_name(spec.slug)}({', '.join([*extra, *catalog_base, base])}):",
              f"    title = {spec.slug!r}", "    classes = CLASSES",
              f"    files = {_tuple(_files(spec))}"]
    if spec.submission_id != "id":
        lines.append(f"    id_column = {spec.submission_id!r}")
    if spec.format != "probs" and spec.submission_label != "label":
        lines.append(f"    label_column = {spec.submission_label!r}")
    if "TopK" in extra:
        lines.append(f"    top_k = {int(metric.name.split('@')[1])}")
    if spec.group_column:
        lines.append(f"    group_column = {spec.group_column!r}           # groups never straddle a split")
    if spec.format == "label" and not spec.metric:
        lines.append('    metric_name = "accuracy"                   # micro-F1: for one label per image, accuracy')
    lines += ["    recipe = Recipe(backbone=\"resnet34\", size=224, freeze_epochs=1, epochs=2, tta=\"flip\")",
              '    demo = {"size": 64}', ""]
    lines += _metric(spec) + _items(spec) + _sample_method(spec) + _sample_files(spec) + _fixture(spec)
    return "\n".join(lines).rstrip() + "\n"


def _doc(text: str) -> str:
    """`text` (file names and a slug from outside) safe inside a triple-quoted docstring: no
    quote can close it, no backslash starts an escape, no control character but newlines."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return "".join(c if c == "\n" or c.isprintable() else repr(c)[1:-1] for c in text)


def _catalog(spec: Spec):
    if not spec.metric:
        return None
    from kaggletools.score import catalog

    return catalog.get(spec.metric)


def _where(spec: Spec) -> str:
    if spec.layout == "folders":
        return f"{spec.train}/<class>/<image>"
    return f"{spec.train}/, labelled by {spec.labels}"


def _files(spec: Spec) -> list[str]:
    tops = list(dict.fromkeys(f"{p.split('/')[0]}.zip" for p in (spec.train, spec.test) if p))
    rest = (f for f in (spec.labels, spec.group_file, spec.sample) if f and f not in tops)
    return tops + list(dict.fromkeys(rest))      # the group file may be the label file itself


def _tuple(values) -> str:
    values = list(values)
    return "(" + ", ".join(repr(v) for v in values) + ("," if len(values) == 1 else "") + ")"


def _class_name(slug: str) -> str:
    name = "".join(part.capitalize() for part in re.split(r"[^0-9a-zA-Z]+", slug) if part) or "Competition"
    name = name if name[0].isalpha() else f"Competition{name}"
    return name + "_" if keyword.iskeyword(name) else name


def _metric(spec: Spec) -> list[str]:
    """A catalog metric by name: bases.ByMetric brings its score, direction and post-processing."""
    if not spec.metric:
        return []
    return [f"    metric_name = {_catalog(spec).name!r}                 # kaggletools.score.catalog", ""]


def _items(spec: Spec) -> list[str]:
    train = {"folders": f"layouts.labelled_by_folder(data_dir, {spec.train!r}, CLASSES)",
             "csv": f"layouts.labelled_by_csv(data_dir, {spec.labels!r}, {spec.train!r}, {spec.id_column!r}, "
                    f"{spec.label_column!r})",
             "tags": f"layouts.labelled_by_tags(data_dir, {spec.labels!r}, {spec.train!r}, {spec.id_column!r}, "
                     f"{spec.label_column!r}, CLASSES)",
             "columns": f"layouts.labelled_by_columns(data_dir, {spec.labels!r}, {spec.train!r}, "
                        f"{spec.id_column!r}, CLASSES)"}[spec.layout]
    if spec.shared:  # test images beside the training ones: the label file says which are which
        train = train[:-1] + ", skip_unlabelled=True)"
    if spec.test_list:
        test = f"layouts.listed(data_dir, {spec.test_list!r}, {spec.test!r}, {spec.submission_id!r})"
    else:
        test = f"layouts.unlabelled(data_dir, {spec.test or 'test'!r}, keep_suffix={spec.keep_suffix})"
    lines = ["    def items(self, data_dir: Path, split: str) -> pd.DataFrame:", '        if split == "train":']
    if spec.group_column:
        lines += [f"            table = {train}",
                  f"            groups = layouts.read_csv(Path(data_dir) / {spec.group_file!r}, "
                  f"({spec.group_id!r}, {spec.group_column!r}))",
                  f"            table[{spec.group_column!r}] = table[\"id\"].map(dict(zip(groups[{spec.group_id!r}], "
                  f"groups[{spec.group_column!r}])))",
                  "            return table"]
    else:
        lines.append(f"            return {train}")
    return lines + [f"        return {test}", ""]


def _sample_method(spec: Spec) -> list[str]:
    if not spec.sample or spec.sample in ("sample_submission.csv", "sampleSubmission.csv"):
        return []
    return ["    def sample_submission(self, data_dir: Path) -> Path | None:",
            f"        path = Path(data_dir) / {spec.sample!r}",
            "        return path if path.is_file() else None", ""]


def _sample_files(spec: Spec) -> list[str]:
    """`sample` cuts the CSVs the layouts read; a group file read beside them is cut here."""
    if not spec.group_column or spec.group_file == spec.labels:
        return []
    return ["    def sample_files(self, data_dir: Path, out_dir: Path, train: pd.DataFrame, test: pd.DataFrame) -> None:",
            f'        """The default, and {spec.group_file} cut to the chosen training images."""',
            "        super().sample_files(data_dir, out_dir, train, test)",
            f"        files.write_filtered_csv(Path(data_dir) / {spec.group_file!r}, Path(out_dir) / "
            f"{spec.group_file!r}, {spec.group_id!r}, train[\"id\"])", ""]


def _fixture(spec: Spec) -> list[str]:
    """make_fixture: the real layout in miniature, each class drawn as its own shape and colour."""
    multilabel = spec.task == "multilabel"
    k = "2" if spec.task == "binary" else f"min(len(CLASSES), {MAX_FIXTURE_CLASSES})"
    fmt = ', "PNG"' if spec.suffix == ".png" else ""
    names = "[f\"{i}" + spec.suffix + "\" for i in ids]" if spec.keep_suffix else "list(ids)"
    lines = ["    def make_fixture(self, folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> pd.DataFrame:",
             '        """The download in miniature, laid out as the real one; returns the hidden test answers."""',
             "        rng = np.random.default_rng(seed)", f"        k = {k}",
             "        ids = fixtures.hex_ids(n_train + n_test, rng, 12)"]
    if multilabel:
        lines += ["        rows = fixtures.random_tags(n_train + n_test, k, rng)",
                  f"        image = {{i: fixtures.encode(fixtures.tags_image(r, k, rng, side=64){fmt}) "
                  "for i, r in zip(ids, rows)}"]
        if spec.layout == "columns":
            lines += ["        onehot = np.zeros((len(ids), len(CLASSES)))",
                      "        for row, present in enumerate(rows):", "            onehot[row, present] = 1"]
    else:
        lines += ["        labels = fixtures.balanced_labels(n_train + n_test, k, rng)",
                  f"        image = {{i: fixtures.encode(fixtures.class_image(int(c), k, rng, side=64){fmt}) "
                  "for i, c in zip(ids, labels)}"]
        if spec.format == "probs" or spec.layout == "columns":
            lines.append("        onehot = np.eye(len(CLASSES))[labels]")
    lines += [f"        names = {names}",
              f"        suffix = {spec.suffix!r}",
              "        train, test = list(range(n_train)), list(range(n_train, n_train + n_test))"]
    train_folder = repr(spec.train + "/")  # folder names from outside: literals, never code or f-string
    if spec.layout == "folders":
        entries = train_folder + " + f\"{CLASSES[labels[j]]}/{ids[j]}{suffix}\""
    else:
        entries = train_folder + " + f\"{ids[j]}{suffix}\""
    test_folder = repr((spec.test or "test") + "/")
    lines += [f"        packed = {{{entries}: image[ids[j]] for j in train}}",
              f"        packed.update({{{test_folder} + f\"{{ids[j]}}{{suffix}}\": image[ids[j]] for j in test}})",
              "        folder = Path(folder)",
              "        for top in sorted({name.split(\"/\")[0] for name in packed}):",
              "            fixtures.write_zip(folder / f\"{top}.zip\", {n: b for n, b in packed.items() "
              "if n.split(\"/\")[0] == top})"]
    lines += _label_file(spec) + _group_file(spec) + _answers(spec)
    return lines


def _label_file(spec: Spec) -> list[str]:
    if spec.layout == "folders":
        return []
    column = {"csv": f"{spec.label_column!r}: " + ("labels[train]" if spec.task == "binary"
                                                  else "[CLASSES[c] for c in labels[train]]"),
              "tags": f"{spec.label_column!r}: [\" \".join(CLASSES[c] for c in rows[j]) for j in train]"}
    table = (f"pd.DataFrame({{{spec.id_column!r}: [names[j] for j in train], {column[spec.layout]}}})"
             if spec.layout in column else
             f"pd.DataFrame(onehot[train].astype(int), columns=list(CLASSES)).assign("
             f"**{{{spec.id_column!r}: [names[j] for j in train]}})[[{spec.id_column!r}, *CLASSES]]")
    lines = [f"        labels_table = {table}"]
    if spec.group_file == spec.labels and spec.group_column:
        lines.append(f"        labels_table[{spec.group_column!r}] = [f\"g{{j % 8}}\" for j in train]")
    return lines + [f"        labels_table.to_csv(folder / {spec.labels!r}, index=False)"]


def _group_file(spec: Spec) -> list[str]:
    if not spec.group_column or spec.group_file == spec.labels:
        return []
    return [f"        pd.DataFrame({{{spec.group_id!r}: [names[j] for j in train], "
            f"{spec.group_column!r}: [f\"g{{j % 8}}\" for j in train]}}).to_csv(folder / {spec.group_file!r}, "
            "index=False)"]


def _answers(spec: Spec) -> list[str]:
    test_ids = "[names[j] for j in test]"
    if spec.format == "probs":
        answers = (f"pd.DataFrame(onehot[test], columns=list(CLASSES)).assign(**{{{spec.submission_id!r}: "
                   f"{test_ids}}})[[{spec.submission_id!r}, *CLASSES]]")
        sample = "answers.assign(**{c: 1 / len(CLASSES) for c in CLASSES})"
    else:
        value = {"binary": "labels[test]", "label": "[CLASSES[c] for c in labels[test]]",
                 "tags": "[\" \".join(CLASSES[c] for c in rows[j]) for j in test]"}[spec.format]
        first = {"binary": "0.5", "label": "CLASSES[0]", "tags": "CLASSES[0]"}[spec.format]
        answers = f"pd.DataFrame({{{spec.submission_id!r}: {test_ids}, {spec.submission_label!r}: {value}}})"
        sample = f"answers.assign(**{{{spec.submission_label!r}: {first}}})"
    lines = [f"        answers = {answers}"]
    if spec.sample:
        lines.append(f"        {sample}.to_csv(folder / {spec.sample!r}, index=False)")
    return lines + ["        return answers"]
