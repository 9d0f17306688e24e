"""Shared fixtures: every cache the tests could fill (decode caches, torch and Hugging Face hubs,
matplotlib) points into one temporary folder for the session, each test runs in its own temporary
working folder, the shared data folder, and a small generated Dogs vs. Cats data folder."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="kaggletools-tests-"))
CACHE_VARIABLES = {  # set before any test module imports torch, matplotlib or timm
    "KAGGLETOOLS_CACHE": "kaggletools",
    "TORCH_HOME": "torch",
    "HF_HOME": "huggingface",
    "MPLCONFIGDIR": "matplotlib",
    "XDG_CACHE_HOME": "xdg-cache",
}
for _name, _sub in CACHE_VARIABLES.items():
    os.environ[_name] = str(_SESSION_HOME / _sub)


def pytest_unconfigure(config):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_working_folder(tmp_path, monkeypatch):
    """Default outputs (submissions/, runs/, plots) land in the test's temporary folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real competition data not found at {SHARED} (the ../shared folder beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def dogs_dir(tmp_path_factory) -> Path:
    """A prepared Dogs vs. Cats redux data folder: 48 generated train images, 16 test."""
    from kaggletools import api
    from kaggletools.competition import registry as competition

    folder = tmp_path_factory.mktemp("dogs") / "dogs-vs-cats-redux-kernels-edition"
    comp = competition.get("dogs-vs-cats-redux-kernels-edition")
    solution = comp.make_fixture(folder, n_train=48, n_test=16, seed=1, side=80)
    solution.to_csv(folder.parent / "solution.csv", index=False)
    api.prepare(comp, folder)
    return folder
