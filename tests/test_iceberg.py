"""The iceberg competition: JSON records -> float32 array cache (bounded memory, atomic), inputs and
the angle in the head, bad records, the whole loop on a generated download (API, k-fold, CLI), and
the five real records from ../shared."""
from __future__ import annotations

import json
import math
import re
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kaggletools.competitions import iceberg
from kaggletools import api
from kaggletools.data import arrays
import kaggletools.cli.app as cli
from kaggletools.competition import registry as competition
from kaggletools.data import items as data
from kaggletools.score import metrics
from kaggletools.score import submission
from kaggletools.errors import CompetitionError

SHARED_ICEBERG = Path(__file__).resolve().parents[2] / "shared" / "data" / "iceberg"
SLUG = "statoil-iceberg-classifier-challenge"
# small and fast for 2 CPU cores: ImageNet mobilenet_v2 (offline weights) at the native 75 px; the
# head learns on the frozen body, then one unfrozen epoch. Over fixture seeds 0-7 this gave a
# validation log loss of 0.07-0.26x the constant baseline (the test asks < 0.5x).
FAST = dict(backbone="mobilenet_v2", size=75, batch_size=16, lr=3e-3, freeze_epochs=6, epochs=1)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KAGGLETOOLS_CACHE", str(tmp_path_factory.getbasetemp() / "iceberg-cache"))


@pytest.fixture(scope="module")
def download(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The generated download (three .7z archives), made once; tests copy it."""
    folder = tmp_path_factory.mktemp("iceberg-download")
    solution = competition.get("iceberg").make_fixture(folder, n_train=96, n_test=32, seed=0)
    return folder, solution


def _copy(download_dir: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for archive in download_dir.glob("*.7z"):
        shutil.copy2(archive, target / archive.name)
    return target


def _records(n: int, seed: int = 0, train: bool = True) -> list[dict]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    out = list(iceberg.synthetic_records(labels, rng, iceberg.hex_ids(n, rng)))
    if train:
        for record, label in zip(out, labels):
            record["is_iceberg"] = int(label)
    return out


def _write(folder: Path, split: str, records) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return arrays.write_json_list(folder / f"{split}.json", records)


def _leftovers(folder: Path) -> list[str]:
    cache_dir = folder / iceberg.CACHE_DIR
    partial = [p.name for p in folder.rglob("*") if "partial" in p.name]
    return partial + ([p.name for p in cache_dir.iterdir()] if cache_dir.exists() else [])


# -- conversion -----------------------------------------------------------------------------------
def test_conversion_round_trip_and_cache_reuse(tmp_path, monkeypatch):
    comp = competition.get("iceberg")
    records = _records(6)
    records[1]["inc_angle"] = "na"
    records[2]["inc_angle"] = 41  # an int is a number of degrees too
    _write(tmp_path, "train", records)
    table = comp.table(tmp_path, "train")

    assert table.path == tmp_path / ".kaggletools" / "train.npy"
    x = np.load(table.path)
    assert x.shape == (6, 75, 75, 2) and x.dtype == np.float32
    for i, r in enumerate(records):
        np.testing.assert_array_equal(x[i, ..., 0], np.float32(r["band_1"]).reshape(75, 75))
        np.testing.assert_array_equal(x[i, ..., 1], np.float32(r["band_2"]).reshape(75, 75))
    meta = pd.read_csv(tmp_path / ".kaggletools" / "train.meta.csv", dtype={"id": str})
    assert list(meta.columns) == ["id", "inc_angle", "angle_missing", "is_iceberg"]
    assert list(meta["id"]) == [r["id"] for r in records]
    assert meta["is_iceberg"].tolist() == [r["is_iceberg"] for r in records]
    assert math.isnan(meta["inc_angle"][1]) and meta["angle_missing"].tolist() == [0, 1, 0, 0, 0, 0]
    assert meta["inc_angle"][2] == 41.0

    # items point into the array; load adds the mean of the bands as a third channel
    items = comp.items(tmp_path, "train")
    item = comp.load(items["source"][3], tmp_path)
    assert item.shape == (75, 75, 3) and item.dtype == np.float32
    np.testing.assert_allclose(item[..., 2], x[3].mean(-1), rtol=1e-6)

    # a second call reads the cache only
    monkeypatch.setattr(arrays, "convert_json", lambda *a, **k: pytest.fail("converted again"))
    again = comp.table(tmp_path, "train")
    assert again.token == table.token and again.meta.equals(table.meta)
    monkeypatch.undo()

    # a changed source (size or mtime) is converted again, with a new token in the sources
    records[0]["band_1"][0] = 3.5
    _write(tmp_path, "train", records)
    fresh = comp.table(tmp_path, "train")
    assert fresh.token != table.token and np.load(fresh.path)[0, 0, 0, 0] == np.float32(3.5)
    assert comp.items(tmp_path, "train")["source"][0] != items["source"][0]
    assert sorted(_leftovers(tmp_path)) == ["train.meta.csv", "train.npy", "train.stamp.json"]


def test_streaming_reader_matches_json_load_at_any_chunk_size(tmp_path):
    text = json.dumps([{"id": "a", "v": [1.5, -2, 3e-5], "s": "x,]}"}, {"id": "b", "v": []}, {}]) + "\n"
    path = tmp_path / "list.json"
    path.write_text(" \n" + text.replace(", ", " ,\n "))
    expected = json.loads(path.read_text())
    for chunk in (1, 2, 3, 7, 64, 1 << 20):
        assert [v for _, v in arrays.iter_json_list(path, chunk_chars=chunk)] == expected
    (tmp_path / "empty.json").write_text("[ ]")
    assert list(arrays.iter_json_list(tmp_path / "empty.json")) == []
    for cut, where in (("[{}, {}", "after record 1, before the list is closed"),
                       ("[{}, ", "after record 0, before the list is closed"),
                       ("[", "right after the opening '['"), ('[{"a": [1, -26.', "in the middle of record 0")):
        (tmp_path / "cut.json").write_text(cut)
        with pytest.raises(arrays.ArrayFileError, match=re.escape(f"ends {where}")):
            list(arrays.iter_json_list(tmp_path / "cut.json", chunk_chars=3))


def test_conversion_memory_is_bounded_by_a_record_not_the_file(tmp_path):
    """A 130-record file (about 16 MB of JSON, 5.8 MB of float32) converts with a few MB of
    Python memory: one chunk of text and one record at a time."""
    rng = np.random.default_rng(1)
    pool = _records(4, seed=1, train=False)
    ids = iceberg.hex_ids(130, rng)
    path = _write(tmp_path, "test", ({**pool[i % 4], "id": rid} for i, rid in enumerate(ids)))
    size = path.stat().st_size
    assert size > 15e6
    tracemalloc.start()
    try:
        table = competition.get("iceberg").table(tmp_path, "test")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(table.meta) == 130 and list(table.meta["id"]) == ids
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB of Python memory for a {size / 1e6:.0f} MB file"
    np.testing.assert_array_equal(table.array[5, ..., 0].ravel(), np.float32(pool[1]["band_1"]))


def test_the_five_real_records(tmp_path):
    if not SHARED_ICEBERG.is_dir():
        pytest.skip(f"real iceberg records not found at {SHARED_ICEBERG} (the ../shared folder beside the repo)")
    comp = competition.get("iceberg")
    real = {split: [json.loads(p.read_text()) for p in sorted((SHARED_ICEBERG / split).glob("*.json"))]
            for split in ("train", "test")}
    assert len(real["train"]) == 3 and len(real["test"]) == 2
    for split, records in real.items():
        _write(tmp_path, split, records)
    train, test = data.train_items(comp, tmp_path), data.test_items(comp, tmp_path)
    assert list(train["id"]) == [r["id"] for r in real["train"]]
    assert list(test["id"]) == [r["id"] for r in real["test"]]
    assert train["is_iceberg"].tolist() == [float(r["is_iceberg"]) for r in real["train"]]
    for items, records in ((train, real["train"]), (test, real["test"])):
        for source, r in zip(items["source"], records):
            x = comp.load(source, tmp_path)
            np.testing.assert_array_equal(x[..., 0].ravel(), np.float32(r["band_1"]))
            np.testing.assert_array_equal(x[..., 1].ravel(), np.float32(r["band_2"]))
            assert -50 < x.min() and x.max() < 40  # dB
    np.testing.assert_allclose(train["inc_angle"], [r["inc_angle"] for r in real["train"]], rtol=1e-6)
    assert comp.extra_features(test).shape == (2, 2) and (test["angle_missing"] == 0).all()


def test_unknown_angles_in_test_are_imputed_and_flagged(tmp_path):
    comp = competition.get("iceberg")
    _write(tmp_path, "train", _records(5))
    test = _records(4, seed=2, train=False)
    test[1]["inc_angle"] = "na"
    del test[2]["inc_angle"]
    test[3]["inc_angle"] = None
    _write(tmp_path, "test", test)
    items = data.test_items(comp, tmp_path)
    assert items["angle_missing"].tolist() == [0, 1, 1, 1]
    median, mean, std = comp.angle_stats(tmp_path)
    train_angles = [r["inc_angle"] for r in _records(5) if r["inc_angle"] != "na"]
    assert median == pytest.approx(np.median(train_angles))
    extra = comp.extra_features(items)
    assert extra.shape == (4, 2) and extra.dtype == np.float32 and np.isfinite(extra).all()
    np.testing.assert_allclose(extra[1:, 0], (median - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(extra[0, 0], (test[0]["inc_angle"] - mean) / std, rtol=1e-5)


# -- bad input ------------------------------------------------------------------------------------
def _short_band(r):
    r["band_1"] = r["band_1"][:5000]


def _text_value(r):
    r["band_2"][17] = "abc"


def _missing_band(r):
    del r["band_2"]


def _missing_train_angle(r):
    del r["inc_angle"]


def _bad_label(r):
    r["is_iceberg"] = 2


BAD_RECORDS = {  # mutation of record 2, expected words in the message
    "band of the wrong length": (_short_band, "'band_1' has 5000 values, expected 5625"),
    "non-numeric value": (_text_value, "'band_2' value 17 is 'abc', not a number"),
    "missing field": (_missing_band, "missing field 'band_2'"),
    "missing angle in train": (_missing_train_angle, "missing field 'inc_angle'"),
    "bad label": (_bad_label, "is_iceberg is 2, expected 0 (ship) or 1 (iceberg)"),
}


@pytest.mark.parametrize("case", BAD_RECORDS)
def test_bad_training_record_names_file_record_and_fix(tmp_path, case):
    mutate, words = BAD_RECORDS[case]
    records = _records(4)
    mutate(records[2])
    path = _write(tmp_path, "train", records)
    with pytest.raises(CompetitionError) as e:
        data.train_items(competition.get("iceberg"), tmp_path)
    message = str(e.value)
    assert str(path) in message and f"record 2 (id {records[2]['id']!r})" in message and words in message
    assert "fix or remove this record" in message
    assert not _leftovers(tmp_path)


def test_missing_band_in_a_test_record_is_an_error_too(tmp_path):
    test = _records(3, train=False)
    del test[1]["band_1"]
    path = _write(tmp_path, "test", test)
    with pytest.raises(CompetitionError, match=r"record 1 .*missing field 'band_1'") as e:
        competition.get("iceberg").table(tmp_path, "test")
    assert str(path) in str(e.value) and not _leftovers(tmp_path)


def test_truncated_json_file(tmp_path):
    path = _write(tmp_path, "train", _records(3))
    text = path.read_text()
    path.write_text(text[: int(len(text) * 0.6)])
    with pytest.raises(CompetitionError, match=r"ends in the middle of record 1 .*truncated; download or extract "
                                               r"it again") as e:
        competition.get("iceberg").table(tmp_path, "train")
    assert str(path) in str(e.value) and not _leftovers(tmp_path)


def test_duplicate_id(tmp_path):
    records = _records(4)
    records[3]["id"] = records[1]["id"]
    path = _write(tmp_path, "train", records)
    with pytest.raises(CompetitionError, match=rf"id '{records[1]['id']}' appears twice, records 1 and 3; .*remove "
                                               r"the duplicate") as e:
        competition.get("iceberg").table(tmp_path, "train")
    assert str(path) in str(e.value) and not _leftovers(tmp_path)


@pytest.mark.parametrize("text, words", [
    ('{"id": "a"}', "wrap it in [ ]"),
    ("", "the file is empty"),
    ("[]", "holds no records"),
    ("[5, {}]", "record 0: is 5, not a JSON object"),
    ('[{"id": "a", "band_1": [1, nope]}]', "invalid JSON in record 0 at character 27: Expecting value"),
])
def test_not_a_list_of_records(tmp_path, text, words):
    (tmp_path / "train.json").write_text(text)
    with pytest.raises(CompetitionError) as e:
        competition.get("iceberg").table(tmp_path, "train")
    assert str(tmp_path / "train.json") in str(e.value) and words in str(e.value)
    assert not _leftovers(tmp_path)


def test_a_bad_record_stops_the_cli_with_the_file_named(tmp_path, capsys):
    records = _records(4)
    records[1]["band_2"][3] = None
    _write(tmp_path / "data", "train", records)
    assert cli.main(["train", "iceberg", "--data", str(tmp_path / "data"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "train.json: record 1" in err and "'band_2' value 3 is None, not a number" in err


def test_submission_rows_are_probabilities(tmp_path):
    comp = competition.get("iceberg")
    df = comp.submission(["a", "b"], np.array([[0.0], [1.0]]), {"clip": 0.01})
    assert list(df.columns) == ["id", "is_iceberg"] and df["is_iceberg"].tolist() == [0.01, 0.99]
    submission.validate(comp, df, ["a", "b"])
    df.loc[1, "is_iceberg"] = 1.5
    with pytest.raises(submission.SubmissionError, match="not a probability in"):
        submission.validate(comp, df, ["a", "b"])


# -- the loop on the generated download ------------------------------------------------------------
def test_fixture_is_packed_as_kaggle_ships_it(download, tmp_path):
    import py7zr

    folder, solution = download
    assert sorted(p.name for p in folder.iterdir()) == ["sample_submission.csv.7z", "test.json.7z", "train.json.7z"]
    with py7zr.SevenZipFile(folder / "train.json.7z") as z:
        assert z.getnames() == ["data/processed/train.json"]
        z.extractall(tmp_path)
    records = json.loads((tmp_path / "data/processed/train.json").read_text())
    assert len(records) == 96 and set(records[0]) == {"id", "band_1", "band_2", "inc_angle", "is_iceberg"}
    assert all(len(r["id"]) == 8 and int(r["id"], 16) >= 0 for r in records)
    b1 = np.array([r["band_1"] for r in records])
    b2 = np.array([r["band_2"] for r in records])
    assert -40 <= b1.min() and b1.max() <= 15 and -45 <= b2.min() and b2.max() <= 2
    angles = [r["inc_angle"] for r in records if r["inc_angle"] != "na"]
    assert 30 <= min(angles) and max(angles) <= 46 and len(angles) < 96
    assert list(solution.columns) == ["id", "is_iceberg"] and len(solution) == 32


def test_run_end_to_end_beats_the_constant_baseline(download, tmp_path):
    folder = _copy(download[0], tmp_path / SLUG)
    solution = download[1]
    result = api.run("iceberg", folder, runs_dir=tmp_path / "runs", out=tmp_path / "sub.csv", progress=False, **FAST)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "sample_submission.csv", "sample_submission.csv.7z", "test.json", "test.json.7z", "train.json",
        "train.json.7z"]

    df = submission.read(Path(result["submission"]))
    assert list(df.columns) == ["id", "is_iceberg"] and len(df) == 32
    assert sorted(df["id"]) == sorted(solution["id"])
    api.validate("iceberg", Path(result["submission"]), folder)

    items = data.train_items(competition.get("iceberg"), folder)
    prevalence = items["is_iceberg"].mean()
    report = json.loads((Path(result["run"]) / "report.json").read_text())
    y = pd.read_csv(Path(result["run"]) / "valid_predictions.csv")["is_iceberg"].to_numpy()
    baseline = metrics.log_loss(y, np.full(len(y), prevalence))
    assert report["with_tta"]["log_loss"] < 0.5 * baseline, (report, baseline)
    config = json.loads((Path(result["run"]) / "config.json").read_text())
    recipe = config["recipe"]
    assert recipe["tta"] == "dihedral" and recipe["dihedral"] and recipe["max_shift"] == 0.1 and recipe["size"] == 75
    assert recipe["min_scale"] == 1.0 and recipe["extra"] and config["backbone"]["weights"]

    # and on the hidden test labels
    scored = df.merge(solution.astype({"id": str}), on="id", suffixes=("", "_true"))
    test_loss = metrics.log_loss(scored["is_iceberg_true"].to_numpy(), scored["is_iceberg"].astype(float).to_numpy())
    assert test_loss < 0.5 * metrics.log_loss(scored["is_iceberg_true"].to_numpy(), np.full(32, prevalence))


def test_one_fold_of_five(download, tmp_path):
    folder = _copy(download[0], tmp_path / SLUG)
    api.prepare("iceberg", folder)
    run = api.train("iceberg", folder, runs_dir=tmp_path / "runs", folds=5, fold=3, progress=False,
                    **{**FAST, "freeze_epochs": 1, "epochs": 1})
    split = pd.read_csv(run.file("split.csv"), dtype={"id": str})
    assert (split["is_valid"] == (split["fold"] == 3)).all() and sorted(np.bincount(split["fold"])) == [19, 19, 19,
                                                                                                        19, 20]
    items = data.train_items(competition.get("iceberg"), folder)
    y = items.set_index("id").loc[split["id"], "is_iceberg"].to_numpy()
    for k in range(5):  # stratified: each fold holds about half icebergs, like the whole
        assert abs(y[split["fold"] == k].mean() - y.mean()) < 0.1
    report = run.load_json("report.json")
    assert report["n_valid"] == int(split["is_valid"].sum()) and "log_loss" in report["with_tta"]
    assert "mobilenet_v2-fold3" in run.path.name


def test_cli_run_on_a_folder_outside_the_repo(download, tmp_path, capsys):
    folder = _copy(download[0], tmp_path / "somewhere" / "iceberg-data")
    out = tmp_path / "submission.csv"
    code = cli.main(["run", "iceberg", "--data", str(folder), "--backbone", "mobilenet_v2", "--size", "75",
                     "--batch-size", "16", "--freeze-epochs", "2", "--epochs", "1", "--runs", str(tmp_path / "runs"),
                     "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("{"):])
    assert Path(result["submission"]) == out and len(submission.read(out)) == 32
    assert cli.main(["validate", "iceberg", str(out), "--data", str(folder)]) == 0
    assert f"{out}: valid" in capsys.readouterr().out
