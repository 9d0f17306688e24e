"""The command line as users of the kaggle CLI expect it: the same flags and short forms against
the loopback stand-in server (-c, -f, -p, -o, -q, -m, -v), `submit` validating before it uploads
and waiting for the score, `leaderboard`; plus --version, python -m, --quiet that silences
everything, one-line errors, warnings as one line, and help that shows a competition's defaults."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from fake_kaggle import SLUG, ScoringFailed, kaggle_server, redux_files  # noqa: F401
from kaggletools import __version__
from kaggletools.cli.app import main as cli


def test_version_and_python_dash_m(capsys):
    assert cli(["--version"]) == 0 and capsys.readouterr().out.strip() == f"kaggletools {__version__}"
    out = subprocess.run([sys.executable, "-m", "kaggletools", "competitions", "-v"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.splitlines()[0] == "slug,aliases,task,metric,title"
    assert "plant-seedlings-classification" in out.stdout and "dog-breed-identification" in out.stdout


def test_listing_competitions_imports_neither_torch_nor_sklearn():
    code = ("import sys; from kaggletools.cli.app import main; main(['competitions']); "
            "print('heavy:', sorted(m for m in ('torch', 'sklearn', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("heavy: []"), out.stdout + out.stderr


def test_help_shows_the_competitions_defaults(capsys):
    assert cli(["train", "iceberg", "-h"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: mobilenet_v2)" in text and "(default: 150)" in text and "(default: dihedral)" in text


def test_download_with_the_kaggle_cli_flags(kaggle_server, tmp_path, capsys):
    kaggle_server(redux_files())
    data = tmp_path / "data"
    assert cli(["download", "-c", SLUG, "-p", str(data), "-q"]) == 0
    assert (data / "train").is_dir() and (data / "test").is_dir()
    assert capsys.readouterr().err == "", "-q: nothing on stderr"
    assert cli(["download", "-c", SLUG, "-p", str(data), "-f", "sample_submission.csv", "-o", "-q"]) == 0
    assert (data / "sample_submission.csv").is_file()
    capsys.readouterr()
    assert cli(["files", "-c", SLUG, "-v"]) == 0
    listed = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert set(listed["name"]) == set(redux_files()) and list(listed.columns) == ["name", "size", "created"]


def test_submit_validates_before_uploading(kaggle_server, tmp_path, capsys):
    server = kaggle_server(redux_files())
    one_row = tmp_path / "one.csv"
    one_row.write_text("id,label\n1,0.5\n")
    sample = tmp_path / "data" / "sample_submission.csv"
    sample.parent.mkdir()
    sample.write_bytes(redux_files()["sample_submission.csv"])
    rc = cli(["submit", "-c", SLUG, "-f", str(one_row), "-m", "too short", "-p", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert rc == 1 and "missing id" in err and not server.uploads
    bad = tmp_path / "bad.csv"
    bad.write_text("id,probability\n1,0.5\n")
    assert cli(["submit", SLUG, str(bad)]) == 1 and "columns" in capsys.readouterr().err and not server.uploads


def test_submit_prints_the_reference_and_waits_for_the_score(kaggle_server, tmp_path, capsys):
    server = kaggle_server(redux_files(), pending_polls=1, scorer=lambda data: 0.123)
    good = tmp_path / "good.csv"
    good.write_bytes(redux_files()["sample_submission.csv"])
    assert cli(["submit", SLUG, str(good), "-m", "a message", "--wait", "-q"]) == 0
    out = capsys.readouterr().out
    assert "submitted" in out and "ref " in out and "public score: 0.123" in out
    assert list(server.uploads.values()) == [good.read_bytes()]
    assert cli(["submissions", "-c", SLUG, "-v"]) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert table["description"].iloc[0] == "a message" and table["status"].iloc[0] == "complete"


def test_a_submission_kaggle_fails_to_score_is_an_error(kaggle_server, tmp_path, capsys):
    def scorer(data):
        raise ScoringFailed("Submission must have 12500 rows")

    kaggle_server(redux_files(), scorer=scorer)
    good = tmp_path / "good.csv"
    good.write_bytes(redux_files()["sample_submission.csv"])
    assert cli(["submit", SLUG, str(good), "--wait", "-q"]) == 1
    assert "Submission must have 12500 rows" in capsys.readouterr().err


def test_leaderboard_shows_the_top_and_your_team(kaggle_server, tmp_path, capsys):
    kaggle_server(redux_files(), scorer=lambda data: 0.05)
    good = tmp_path / "good.csv"
    good.write_bytes(redux_files()["sample_submission.csv"])
    assert cli(["submit", SLUG, str(good), "-q"]) == 0
    capsys.readouterr()
    assert cli(["leaderboard", "-c", SLUG, "-s", "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "team_name" in out and "your team 'Fake User': rank 3 of 3" in out


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    assert cli(["validate", SLUG, str(tmp_path / "absent.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "absent.csv" in err
    with pytest.raises(Exception, match="absent.csv"):
        cli(["validate", SLUG, str(tmp_path / "absent.csv"), "--debug"])
    assert cli(["train"]) == 1 and "needs a competition" in capsys.readouterr().err
    assert cli(["train", SLUG, "--epochs", "two"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs: invalid int value: 'two'" in err



def test_a_file_where_a_folder_belongs_is_one_line_with_the_fix(tmp_path, capsys):
    (tmp_path / "data").write_text("not a folder")
    (tmp_path / "train.zip").write_bytes(b"")
    for args in (["prepare", SLUG, "--add", str(tmp_path / "train.zip"), "--data", str(tmp_path / "data")],
                 ["prepare", SLUG, "--add", str(tmp_path / "train.zip"), "--data", str(tmp_path / "data" / "in")]):
        assert cli(args) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(tmp_path / "data") in err, err
        assert "a file stands where a folder is needed" in err, err
    assert (tmp_path / "data").read_text() == "not a folder"

def test_unknown_tags_draw_a_one_line_warning(tmp_path, capsys):
    csv = tmp_path / "planet.csv"
    csv.write_text("image_name,tags\ntest_0,clear primary jungle\n")
    assert cli(["validate", "planet", str(csv)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and err.count("\n") == 1 and "jungle" in err


def test_quiet_silences_every_bar_and_a_log_gets_lines_not_carriage_returns(dogs_dir, tmp_path):
    import os

    base = [sys.executable, "-m", "kaggletools", "run", "dogscats", "--data", str(dogs_dir), "--backbone", "resnet18",
            "--no-pretrained", "--size", "32", "--batch-size", "16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = subprocess.run([*base, "--runs", str(tmp_path / "a"), "--out", str(tmp_path / "a.csv"), "-q"],
                           capture_output=True, text=True, env=env)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    logged = subprocess.run([*base, "--runs", str(tmp_path / "b"), "--out", str(tmp_path / "b.csv")],
                            capture_output=True, text=True, env=env)
    assert logged.returncode == 0 and "\r" not in logged.stderr and "\r" not in logged.stdout
    assert "epoch 1 (frozen): 100%" in logged.stderr and "validation (" in logged.stdout
