"""Pre-flight: what would stop `run`, `train` or `cv` after training stops them before it, with
no run folder made."""
from collections import namedtuple
from pathlib import Path

import pytest

from kaggletools import api
from kaggletools.competition import registry as competition
from kaggletools.errors import KaggleCredentialsError
from kaggletools.model import backbones
from kaggletools.options import Recipe, RunOptions
from kaggletools.steps import preflight

REDUX = "dogs-vs-cats-redux-kernels-edition"
FAST = {"backbone": "resnet18", "pretrained": False, "size": 32, "progress": False}


def _data(root: Path, test: bool = True) -> Path:
    """Items as `items` lists them (names only: nothing here decodes an image)."""
    for kind in ("cat", "dog"):
        for i in range(4):
            (root / "train").mkdir(parents=True, exist_ok=True)
            (root / "train" / f"{kind}.{i}.jpg").write_bytes(b"")
    if test:
        (root / "test").mkdir()
        for i in range(3):
            (root / "test" / f"{i + 1}.jpg").write_bytes(b"")
    return root


def test_run_without_test_items_stops_before_training(tmp_path):
    data = _data(tmp_path / "data", test=False)
    with pytest.raises(preflight.PreflightError, match="no test items"):
        api.run(REDUX, data, runs_dir=tmp_path / "runs", **FAST)
    assert not (tmp_path / "runs").exists()


def test_cv_without_test_items_stops_before_its_folder(tmp_path):
    data = _data(tmp_path / "data", test=False)
    with pytest.raises(preflight.PreflightError, match="no test items"):
        api.cross_validate(REDUX, data, folds=2, runs_dir=tmp_path / "runs", **FAST)
    assert not (tmp_path / "runs").exists()


def test_submit_without_credentials_stops_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    data = _data(tmp_path / "data")
    with pytest.raises(KaggleCredentialsError, match="KAGGLE_API_TOKEN"):
        api.run(REDUX, data, runs_dir=tmp_path / "runs", submit_message="first try", **FAST)
    assert not (tmp_path / "runs").exists()


def test_unwritable_runs_folder_stops_train(tmp_path):
    data = _data(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(preflight.PreflightError, match="runs folder"):
        api.train(REDUX, data, runs_dir=blocker / "runs", **FAST)


def test_unwritable_submission_folder_stops_run(tmp_path):
    data = _data(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(preflight.PreflightError, match="submission folder"):
        api.run(REDUX, data, runs_dir=tmp_path / "runs", out=blocker / "sub.csv", **FAST)
    assert not (tmp_path / "runs").exists()


def test_too_little_disk_for_cache_and_checkpoints(tmp_path, monkeypatch):
    data = _data(tmp_path / "data")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    with pytest.raises(preflight.PreflightError, match="GiB needed, 0.0 GiB free"):
        api.train(REDUX, data, runs_dir=tmp_path / "runs", **FAST)
    assert not (tmp_path / "runs").exists()


def test_disk_estimate_counts_the_cache_and_the_checkpoints():
    need = preflight.estimate(n_items=1000, side=256, channels=3, weights_bytes=10e6)
    assert need == {"cache": 1000 * 256 * 256 * 3, "checkpoints": 5 * 10_000_000}


def test_pretrained_weights_neither_cached_nor_reachable(tmp_path, monkeypatch):
    def unreachable(name, timeout=3.0):
        raise backbones.ModelError(f"cannot get weights for {name}: not cached and the server cannot be reached")

    monkeypatch.setattr(backbones, "weights_ready", unreachable)
    data = _data(tmp_path / "data")
    with pytest.raises(preflight.PreflightError, match="cannot get weights for resnet18"):
        api.train(REDUX, data, runs_dir=tmp_path / "runs", **{**FAST, "pretrained": True})
    assert not (tmp_path / "runs").exists()


def test_cached_weights_size_feeds_the_estimate(monkeypatch):
    monkeypatch.setattr(backbones, "weights_ready", lambda name, timeout=3.0: 14_000_000)
    assert preflight.weights(Recipe(backbone="mobilenet_v2")) == 14_000_000
    assert preflight.weights(Recipe(backbone="mobilenet_v2", pretrained=False)) is None


def test_all_clear_reports_what_it_found(tmp_path):
    data = _data(tmp_path / "data")
    found = preflight.check(competition.get(REDUX), data, Recipe(backbone="resnet18", pretrained=False, size=32),
                            RunOptions(runs_dir=tmp_path / "runs", progress=False), predicts=True,
                            submissions=tmp_path / "submissions")
    assert found["train"] == 8 and found["test"] == 3 and found["need"]["cache"] == 11 * 36 * 36 * 3
    assert not (tmp_path / "runs").exists() and not (tmp_path / "submissions").exists()


def _token(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", "t" * 32)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_submit_with_kaggle_unreachable_stops_before_training(tmp_path, monkeypatch):
    import socket

    from kaggletools.errors import KaggleNetworkError

    _token(monkeypatch, tmp_path)
    tried = []

    def refuse(address, timeout=None):
        tried.append(address)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    data = _data(tmp_path / "data")
    with pytest.raises(KaggleNetworkError, match="cannot be reached .*drop --submit"):
        api.run(REDUX, data, runs_dir=tmp_path / "runs", submit_message="first try", **FAST)
    assert tried and tried[0][1] in (80, 443) and not (tmp_path / "runs").exists()


def test_submit_with_kaggle_reachable_passes(tmp_path, monkeypatch):
    import socket

    _token(monkeypatch, tmp_path)

    class Connection:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout=None: Connection())
    preflight.credentials()
