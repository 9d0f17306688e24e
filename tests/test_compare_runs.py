"""`kaggletools runs --html`: one page comparing runs side by side (scores, curves overlaid, what differs)."""
import json
import re

import pandas as pd

import kaggletools.cli.app as app
from kaggletools import api
from kaggletools.runs import compare

REDUX = "dogs-vs-cats-redux-kernels-edition"


def _run(root, name, lr, score):
    path = root / REDUX / name
    path.mkdir(parents=True)
    recipe = {"backbone": "mobilenet_v2", "size": 128, "lr": lr, "epochs": 1, "freeze_epochs": 1}
    (path / "config.json").write_text(json.dumps({"competition": REDUX, "recipe": recipe,
                                                  "options": {"runs_dir": str(root), "progress": True, "keep": "last"}}))
    (path / "report.json").write_text(json.dumps({"plain": {"log_loss": score + 0.01}, "with_tta": {"log_loss": score},
                                                  "seconds": 60.0}))
    pd.DataFrame([{"epoch": e, "phase": "frozen" if e == 1 else "unfrozen", "train_loss": 0.5 / e,
                   "valid_loss": score * (3 - e), "log_loss": score * (3 - e)} for e in (1, 2)]).to_csv(
        path / "metrics.csv", index=False)
    return path


def test_differing_lists_only_the_fields_that_differ():
    configs = {"a": {"recipe": {"lr": 1e-3, "size": 128}, "options": {"runs_dir": "x", "keep": "last"}},
               "b": {"recipe": {"lr": 3e-3, "size": 128}, "options": {"runs_dir": "y", "keep": "best"}}}
    diff = compare.differing(configs)
    assert list(diff.columns) == ["run", "keep", "lr"] and diff["lr"].tolist() == [1e-3, 3e-3]


def test_page_compares_runs_side_by_side(tmp_path):
    root = tmp_path / "runs"
    _run(root, "20261206-1200-mobilenet_v2", 1e-3, 0.06)
    _run(root, "20261206-1300-mobilenet_v2", 3e-3, 0.08)
    out = api.compare_runs(None, root, tmp_path / "page" / "runs.html")
    html = out.read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"base64,[A-Za-z0-9+/=]+", "", html)).split())
    assert "20261206-1200-mobilenet_v2" in text and str(tmp_path) + "/runs/" + REDUX not in text
    assert html.count("data:image/png;base64,") == 1  # the curves, overlaid in one picture
    assert "What differs" in text and "lr" in text and "0.003" in text
    assert "runs_dir" not in text.split("What differs")[1]
    assert "http://" not in html and "https://" not in html


def test_cli_writes_the_page(tmp_path, capsys, monkeypatch):
    root = tmp_path / "runs"
    _run(root, "r1", 1e-3, 0.06)
    monkeypatch.chdir(tmp_path)
    assert app.main(["runs", "--runs", str(root), "--html"]) == 0
    assert (tmp_path / "runs.html").is_file() and capsys.readouterr().out.strip() == "runs.html"
    assert app.main(["runs", "--runs", str(root), "--html", "x/cmp.html"]) == 0
    assert (tmp_path / "x" / "cmp.html").is_file()


def test_no_runs_is_a_page_that_says_so(tmp_path):
    out = api.compare_runs(None, tmp_path / "none", tmp_path / "r.html")
    assert "No runs." in out.read_text()
