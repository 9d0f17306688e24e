"""The Kaggle verbs on any competition and the notebook/dataset verbs (issue 18, parts 3 and 4),
through the REAL official client against the loopback stand-in (fake_kaggle + fake_kaggle_code):
`competitions` (Kaggle's list, ours marked), files/download/submit/submissions/leaderboard on a
slug that has no module, `submit --wait SECONDS`, `download -w`, `leaderboard -d`,
`kernels push|status|output`, `datasets create|version`, `submit -k` (code competitions)."""
from __future__ import annotations

import io
import json
import tempfile
import zipfile

import pandas as pd
import pytest

from fake_kaggle import USERNAME, kaggle_server, redux_files  # noqa: F401
from fake_kaggle_code import KaggleCode
from kaggletools.cli.app import main as cli

OTHER = "titanic"  # a slug no module here knows


def titanic_files() -> dict[str, bytes]:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("train.csv", "PassengerId,Survived\n1,0\n2,1\n")
    return {"titanic-extra.zip": inner.getvalue(), "gender_submission.csv": b"PassengerId,Survived\n892,0\n893,1\n",
            "test.csv": b"PassengerId,Pclass\n892,3\n893,3\n"}


@pytest.fixture
def server(kaggle_server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the client's resumable-upload state
    (tmp_path / "tmp").mkdir()
    s = kaggle_server(redux_files())
    s.add_competition(OTHER, titanic_files())
    s.code = KaggleCode(s)
    return s


def test_competitions_lists_kaggles_with_ours_marked(server, capsys):
    assert cli(["competitions", "-v", "--search", "cat", "--category", "playground", "--sort-by", "prize"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table["slug"]) == ["dogs-vs-cats-redux-kernels-edition", "aerial-cactus-identification"]
    assert list(table["ours"]) == [True, True]
    sent = server.calls("ListCompetitions")[-1].json
    assert sent["search"] == "cat" and "PLAYGROUND" in str(sent["category"]) and "PRIZE" in str(sent["sortBy"])
    assert cli(["competitions", "--page-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "titanic" in out and "next page: --page-token 2" in out
    assert cli(["competitions", "--page", "3", "--page-size", "2", "-v"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table["slug"]) == ["rsna-2024-lumbar-spine"] and list(table["ours"]) == [False]
    assert cli(["competitions", "--registered", "-v"]) == 0
    assert capsys.readouterr().out.startswith("slug,aliases,task,metric,title")
    assert len([c for c in server.calls("ListCompetitions")]) == 3  # --registered asked nothing


def test_the_kaggle_verbs_take_a_slug_without_a_module(server, tmp_path, capsys, monkeypatch):
    assert cli(["files", OTHER, "-v"]) == 0
    assert set(pd.read_csv(io.StringIO(capsys.readouterr().out))["name"]) == set(titanic_files())
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert cli(["download", "-c", OTHER, "-w", "-q"]) == 0  # -w: into the current folder, unpacked beside
    assert (here / f"{OTHER}.zip").is_file() and (here / OTHER / "test.csv").is_file()
    assert cli(["download", OTHER, "-q"]) == 0  # data/<slug>: Kaggle's all-files zip merged into it
    data = here / "data" / OTHER
    assert (data / "test.csv").is_file() and (data / "gender_submission.csv").is_file()
    assert (data / "titanic-extra" / "train.csv").is_file()  # unpacked safely, no rules beyond that
    here = data
    bad = tmp_path / "bad.csv"
    bad.write_text("PassengerId,Survived\n892,0\n")
    assert cli(["submit", OTHER, str(bad), "-p", str(here), "-q"]) == 1
    assert "missing id" in capsys.readouterr().err and not server.uploads
    good = tmp_path / "good.csv"
    good.write_text("PassengerId,Survived\n893,1\n892,0\n")
    assert cli(["submit", OTHER, str(good), "-p", str(here), "-m", "any slug", "--wait", "60", "-q"]) == 0
    out = capsys.readouterr().out
    assert "public score: 0.5" in out and list(server.uploads.values()) == [good.read_bytes()]
    assert cli(["submissions", OTHER, "-v"]) == 0 and "any slug" in capsys.readouterr().out
    assert cli(["leaderboard", OTHER]) == 0 and "top team" in capsys.readouterr().out
    assert cli(["leaderboard", OTHER, "-d", "-p", str(tmp_path / "lb"), "-q"]) == 0
    with zipfile.ZipFile(capsys.readouterr().out.strip()) as z:
        assert z.namelist() == [f"{OTHER}-publicleaderboard.csv"]


def test_submit_wait_takes_seconds_and_still_the_competition(server, tmp_path, capsys, monkeypatch):
    from kaggletools import api

    seen = {}
    real = api.wait_for_score
    monkeypatch.setattr(api, "wait_for_score", lambda *a, **k: seen.update(k) or real(*a, **k))
    good = tmp_path / "good.csv"
    good.write_bytes(redux_files()["sample_submission.csv"])
    assert cli(["submit", "dogscats", str(good), "--wait", "600", "-q"]) == 0
    assert seen["timeout"] == 600.0 and "public score" in capsys.readouterr().out
    assert cli(["submit", "dogscats", "-f", str(good), "--wait", "-q"]) == 0 and seen["timeout"] == 1800.0


def _notebook_folder(tmp_path, competition=OTHER, datasets=()):
    folder = tmp_path / "nb"
    folder.mkdir(exist_ok=True)
    (folder / "train.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["!kaggletools run x"],
                                                               "metadata": {}, "outputs": [], "execution_count": None}],
                                                    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    (folder / "kernel-metadata.json").write_text(json.dumps({
        "id": f"{USERNAME}/train-on-kaggle", "title": "train on kaggle", "code_file": "train.ipynb",
        "language": "python", "kernel_type": "notebook", "enable_gpu": True, "enable_internet": False,
        "competition_sources": [competition], "dataset_sources": list(datasets)}))
    return folder


def test_kernels_push_status_output(server, tmp_path, capsys):
    folder = _notebook_folder(tmp_path)
    assert cli(["kernels", "push", "-p", str(folder), "--accelerator", "NvidiaTeslaT4", "-t", "3600", "-q"]) == 0
    assert f"pushed {USERNAME}/train-on-kaggle version 1" in capsys.readouterr().out
    sent = server.code.kernels[f"{USERNAME}/train-on-kaggle"].metadata
    assert sent["machineShape"] == "NvidiaTeslaT4" and sent["sessionTimeoutSeconds"] == 3600
    assert sent["competitionDataSources"] == [OTHER] and json.loads(sent["text"])["cells"][0]["source"] == \
        "!kaggletools run x"
    assert cli(["kernels", "status", f"{USERNAME}/train-on-kaggle"]) == 0
    assert capsys.readouterr().out.strip() == f"{USERNAME}/train-on-kaggle: queued"
    server.code.finish(f"{USERNAME}/train-on-kaggle", {"model.pt": b"weights", "report.json": b"{}"}, log="done")
    assert cli(["kernels", "status", "-k", f"{USERNAME}/train-on-kaggle"]) == 0
    assert "complete" in capsys.readouterr().out
    out = tmp_path / "out"
    assert cli(["kernels", "output", f"{USERNAME}/train-on-kaggle", "-p", str(out), "-q"]) == 0
    assert (out / "model.pt").read_bytes() == b"weights" and (out / "train-on-kaggle.log").read_text() == "done"
    assert cli(["kernels", "status", f"{USERNAME}/nothing-here"]) == 1
    assert "nothing-here" in capsys.readouterr().err
    (folder / "kernel-metadata.json").write_text(json.dumps({"id": f"{USERNAME}/x", "code_file": "train.ipynb"}))
    assert cli(["kernels", "push", "-p", str(folder)]) == 1
    assert "kernel-metadata.json" in capsys.readouterr().err


def test_datasets_create_and_version_upload_a_folder(server, tmp_path, capsys):
    folder = tmp_path / "bundle"
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "a.whl").write_bytes(b"wheel")
    (folder / "notes.txt").write_text("v1")
    (folder / "dataset-metadata.json").write_text(json.dumps({
        "id": f"{USERNAME}/my-bundle", "title": "my bundle", "licenses": [{"name": "CC0-1.0"}]}))
    assert cli(["datasets", "create", "-p", str(folder), "-r", "zip", "-q"]) == 0
    assert f"{USERNAME}/my-bundle" in capsys.readouterr().out
    made = server.code.datasets[f"{USERNAME}/my-bundle"]
    assert made["files"]["notes.txt"] == b"v1"
    with zipfile.ZipFile(io.BytesIO(made["files"]["wheels.zip"])) as z:
        assert z.read("a.whl") == b"wheel"
    assert cli(["datasets", "create", "-p", str(folder), "-q"]) == 1
    assert "already in use" in capsys.readouterr().err
    (folder / "notes.txt").write_text("v2")
    assert cli(["datasets", "version", "-p", str(folder), "-m", "retrained", "-q"]) == 0
    assert made["files"]["notes.txt"] == b"v2" and made["versions"][0]["versionNotes"] == "retrained"
    assert "wheels.zip" not in made["files"]  # the default dir mode skips folders, like the kaggle CLI
    assert cli(["datasets", "version", "-p", str(folder), "-m", "v3", "--ignore-patterns", "*.txt", "-q"]) == 0
    assert made["files"] == {}  # notes.txt ignored, wheels/ skipped


def test_submit_a_notebook_to_a_code_competition(server, capsys):
    assert cli(["submit", OTHER, "-k", f"{USERNAME}/inference", "-v", "3", "-m", "bundle v1"]) == 0
    assert "ref 4242" in capsys.readouterr().out
    sent = server.code.code_submissions[-1]
    assert sent["kernelSlug"] == "inference" and sent["kernelVersion"] == 3 and sent["fileName"] == "submission.csv"
    assert sent["competitionName"] == OTHER


def test_one_page_at_a_time_with_the_kaggle_cli_paging_flags(server, tmp_path, capsys):
    assert cli(["files", OTHER, "--page-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "next page: --page-token 2" in out and "gender_submission.csv" in out and "titanic-extra.zip" not in out
    assert cli(["files", OTHER, "--page-size", "2", "--page-token", "2", "-v"]) == 0
    assert list(pd.read_csv(io.StringIO(capsys.readouterr().out))["name"]) == ["titanic-extra.zip"]
    good = tmp_path / "good.csv"
    good.write_bytes(redux_files()["sample_submission.csv"])
    for message in ("first", "second", "third"):
        assert cli(["submit", "dogscats", str(good), "-m", message, "-q"]) == 0
    capsys.readouterr()
    assert cli(["submissions", "dogscats", "--page-size", "2", "--page-token", "2", "-v"]) == 0
    assert list(pd.read_csv(io.StringIO(capsys.readouterr().out))["description"]) == ["first"]
    assert cli(["leaderboard", "dogscats", "--page-size", "1", "--page-token", "1", "-v"]) == 0
    assert list(pd.read_csv(io.StringIO(capsys.readouterr().out))["team_name"]) == ["runner up"]


def test_kernels_output_pulls_a_run_folder_back(server, tmp_path, capsys):
    """A notebook that trained on Kaggle's GPU: its output holds runs/<slug>/<run>/..., pulled back whole."""
    assert cli(["kernels", "push", "-p", str(_notebook_folder(tmp_path)), "-q"]) == 0
    server.code.finish(f"{USERNAME}/train-on-kaggle", {"runs/dogs/r1/model.pt": b"w", "runs/dogs/r1/config.json": b"{}",
                                                        "submission.csv": b"id,label\n"})
    out = tmp_path / "pulled"
    assert cli(["kernels", "output", f"{USERNAME}/train-on-kaggle", "-p", str(out), "--file-pattern", "^runs/",
                "-q"]) == 0, capsys.readouterr().err
    assert (out / "runs" / "dogs" / "r1" / "model.pt").read_bytes() == b"w"
    assert not (out / "submission.csv").exists()  # not matched by the pattern


def test_competitions_without_credentials_lists_ours_and_says_why(tmp_path, monkeypatch, capsys):
    from fake_kaggle import isolate_env

    isolate_env(tmp_path, monkeypatch)
    assert cli(["competitions"]) == 0
    captured = capsys.readouterr()
    assert "no Kaggle credentials" in captured.err and "dogs-vs-cats-redux-kernels-edition" in captured.out


def test_kernels_init_writes_a_training_notebook_that_runs_kaggletools_run(server, tmp_path, capsys, monkeypatch):
    """The generated notebook pushed to the stand-in, and its code run here against a stand-in
    /kaggle (CPU: one process; on Kaggle's two T4s torchrun starts two); only its pip install is
    skipped (kaggletools is already installed here), and checked."""
    import subprocess

    import nbformat

    from test_kaggle_places import REDUX, kaggle_style_input

    folder = tmp_path / "train-nb"
    assert cli(["kernels", "init", "dogscats", "-p", str(folder), "--kernel", f"{USERNAME}/dogs-train", "--run",
                "--backbone", "resnet18", "--size", "32", "--batch-size", "8", "--no-pretrained", "--epochs", "1",
                "--freeze-epochs", "0", "-q"]) == 0
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    assert meta["competition_sources"] == [REDUX] and meta["enable_gpu"] and meta["enable_internet"]
    assert cli(["kernels", "push", "-p", str(folder), "-q"]) == 0 and f"{USERNAME}/dogs-train" in server.code.kernels

    root = tmp_path / "kaggle"
    kaggle_style_input(root / "input" / REDUX, n_train=12, n_test=4)
    (root / "working").mkdir()
    monkeypatch.setenv("KAGGLETOOLS_KAGGLE_ROOT", str(root))
    calls, real = [], subprocess.run

    def run(cmd, **kw):
        calls.append(cmd)
        if cmd[1:4] == ["-m", "pip", "install"]:
            return subprocess.CompletedProcess(cmd, 0)
        return real(cmd, **kw)

    monkeypatch.setattr(subprocess, "run", run)
    code = "\n\n".join(c.source for c in nbformat.read(str(folder / "train.ipynb"), 4).cells if c.cell_type == "code")
    exec(compile(code, "train.ipynb", "exec"), {})
    assert calls[0][-1] == "kaggletools" and "run" in calls[1] and str(root / "input" / REDUX) in calls[1]
    assert (root / "working" / "submission.csv").is_file()
    assert list((root / "working" / "runs" / REDUX).iterdir())
