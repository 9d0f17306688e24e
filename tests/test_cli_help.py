"""The command line helps: closest flags for a misspelt one, the verb's -h, short errors, a
readable `runs` table."""
from pathlib import Path

import pandas as pd

import kaggletools.cli.app as app
import kaggletools.cli.commands as commands
from kaggletools.kaggle import credentials


def test_misspelt_flag_names_the_closest_flags_and_the_verbs_help(capsys):
    assert app.main(["train", "dogscats", "--epcohs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--epcohs: did you mean --epochs" in err and err.endswith("(see `kaggletools train -h`)")
    assert "\n" not in err


def test_misspelt_flag_of_a_verb_without_recipe_flags(capsys):
    assert app.main(["runs", "--cvs"]) == 2
    err = capsys.readouterr().err
    assert "did you mean --csv?" in err and "kaggletools runs -h" in err


def test_unknown_word_gets_no_invented_hint(capsys):
    assert app.main(["runs", "--zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" not in err and "kaggletools runs -h" in err


def test_missing_credentials_error_is_short(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    try:
        credentials.find_credentials()
    except credentials.KaggleCredentialsError as e:
        text = str(e)
    assert len(text) < 320 and len(text.splitlines()) <= 4
    assert "KAGGLE_API_TOKEN" in text and "chmod 600" in text


def test_runs_table_shows_names_and_dashes(tmp_path):
    root = tmp_path / "runs"
    table = pd.DataFrame([
        {"competition": "dogs-vs-cats-redux-kernels-edition", "status": "finished", "backbone": "resnet34",
         "run": str(root / "dogs-vs-cats-redux-kernels-edition" / "20261206-1200-resnet34"), "size": 128,
         "epochs": "1+1", "metric": "log_loss", "plain": 0.0612345, "tta": 0.0598765, "seconds": 63.21},
        {"competition": "dogs-vs-cats-redux-kernels-edition", "status": "interrupted", "backbone": "resnet34",
         "run": str(root / "dogs-vs-cats-redux-kernels-edition" / "cv5-x" / "fold0"), "size": 128,
         "epochs": "1+1", "metric": "log_loss", "plain": None, "tta": float("nan"), "seconds": None}])
    shown = commands._readable_runs(table, Path(root))
    assert list(shown["run"]) == ["20261206-1200-resnet34", "cv5-x/fold0"]
    assert list(shown["plain"]) == ["0.06123", "-"] and list(shown["tta"]) == ["0.05988", "-"]
    assert list(shown["seconds"]) == ["63", "-"]
    text = shown.to_string(index=False)
    assert "None" not in text and "nan" not in text and str(tmp_path) not in text
