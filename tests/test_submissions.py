"""`validate` accepts what Kaggle scores and refuses what it refuses, naming the file, the row and
the value: the real sample submissions (../shared) validate, broken copies of them do not."""
from __future__ import annotations

import shutil

import pytest

from kaggletools import api
from kaggletools.cli.app import main as cli
from kaggletools.score.submission import SubmissionError

SAMPLES = ["dogs-vs-cats-redux-kernels-edition", "dogs-vs-cats", "planet-understanding-the-amazon-from-space",
           "statoil-iceberg-classifier-challenge"]


@pytest.fixture(params=SAMPLES)
def sample(request, shared_data, tmp_path):
    """A data folder holding only the competition's real sample submission (no test images)."""
    folder = tmp_path / "data"
    folder.mkdir()
    name = {"dogs-vs-cats": "sampleSubmission.csv", "planet-understanding-the-amazon-from-space":
            "sample_submission_v2.csv"}.get(request.param, "sample_submission.csv")
    shutil.copy(shared_data / "sample-submissions" / f"{request.param}.csv", folder / name)
    return request.param, folder, (folder / name).read_text().splitlines(keepends=True)


def test_the_real_sample_submissions_validate(sample, tmp_path):
    slug, folder, lines = sample
    csv = tmp_path / "copy.csv"
    csv.write_text("".join(lines))
    api.validate(slug, csv, folder)  # ids from the sample submission
    api.validate(slug, csv)  # the format alone
    assert cli(["validate", slug, str(csv)]) == 0


def _broken(lines: list[str], how: str) -> str:
    header, rows = lines[0], lines[1:]
    first_id, value = rows[0].rstrip("\n").split(",", 1)
    if how == "missing row":
        return header + "".join(rows[1:])
    if how == "duplicate row":
        return header + rows[0] + "".join(rows)
    if how == "unknown id":
        return header + f"not-an-id,{value}\n" + "".join(rows[1:])
    if how == "renamed column":
        return header.replace(header.split(",")[-1].strip(), "prediction") + "".join(rows)
    if how == "extra column":
        return header.rstrip("\n") + ",extra\n" + "".join(r.rstrip("\n") + ",1\n" for r in rows)
    if how == "header only":
        return header
    if how == "empty file":
        return ""
    raise ValueError(how)


@pytest.mark.parametrize("how,said", [("missing row", "missing id"), ("duplicate row", "duplicate id.*row 2"),
                                      ("unknown id", "unknown id.*'not-an-id' at row 1"),
                                      ("renamed column", "columns"), ("extra column", "unexpected"),
                                      ("header only", "missing id"), ("empty file", "empty")])
def test_broken_copies_are_refused_with_the_row(sample, tmp_path, how, said):
    slug, folder, lines = sample
    csv = tmp_path / "broken.csv"
    csv.write_text(_broken(lines, how))
    with pytest.raises(SubmissionError, match=said) as e:
        api.validate(slug, csv, folder)
    assert str(csv) in str(e.value)


@pytest.mark.parametrize("slug,value,said", [
    ("dogs-vs-cats-redux-kernels-edition", "1.5", "row 1: '1.5' is not a probability"),
    ("dogs-vs-cats-redux-kernels-edition", "half", "row 1: 'half' is not a number"),
    ("statoil-iceberg-classifier-challenge", "", "row 1: 'nan' is not a number"),
    ("dogs-vs-cats", "0.5", "row 1: '0.5' is not 0 or 1")])
def test_values_kaggle_cannot_score_are_refused(shared_data, tmp_path, slug, value, said):
    lines = (shared_data / "sample-submissions" / f"{slug}.csv").read_text().splitlines(keepends=True)
    first_id = lines[1].split(",")[0]
    csv = tmp_path / "bad.csv"
    csv.write_text(lines[0] + f"{first_id},{value}\n" + "".join(lines[2:]))
    with pytest.raises(SubmissionError, match=said):
        api.validate(slug, csv)


def test_planet_rows_with_any_number_of_weather_tags_are_scored(shared_data, tmp_path):
    lines = (shared_data / "sample-submissions" / "planet-understanding-the-amazon-from-space.csv").read_text() \
        .splitlines(keepends=True)
    csv = tmp_path / "planet.csv"
    csv.write_text(lines[0] + "test_0,primary\n" + "test_1,clear haze primary\n" + "test_2,\n" + "".join(lines[4:]))
    api.validate("planet", csv)


def test_a_repeated_id_is_refused_even_without_the_test_ids(tmp_path):
    """Without a data folder the test ids are unknown, but an id given twice is still refused."""
    (tmp_path / "sub.csv").write_text("id,label\n1,0.5\n2,0.5\n1,0.25\n")
    with pytest.raises(SubmissionError, match=r"id '1' at row 3 appears more than once"):
        api.validate("dogs-vs-cats-redux-kernels-edition", tmp_path / "sub.csv")


def test_debug_switch_reads_false_as_off(tmp_path, monkeypatch, capsys):
    for value, traceback in (("false", False), ("off", False), ("0", False), ("1", True), ("yes", True)):
        monkeypatch.setenv("KAGGLETOOLS_DEBUG", value)
        if traceback:
            with pytest.raises(Exception, match="absent.csv"):
                cli(["validate", "dogscats", str(tmp_path / "absent.csv")])
        else:
            assert cli(["validate", "dogscats", str(tmp_path / "absent.csv")]) == 1
            assert capsys.readouterr().err.startswith("error: ")
