"""Shared fixtures: an isolated decode cache per test session, the shared data folder, and a
small generated Dogs vs. Cats data folder."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep decode caches out of the user's ~/.cache."""
    monkeypatch.setenv("KAGGLETOOLS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real competition data not found at {SHARED} (the ../shared folder beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def dogs_dir(tmp_path_factory) -> Path:
    """A prepared Dogs vs. Cats redux data folder: 48 generated train images, 16 test."""
    from kaggletools import api, competition

    folder = tmp_path_factory.mktemp("dogs") / "dogs-vs-cats-redux-kernels-edition"
    comp = competition.get("dogs-vs-cats-redux-kernels-edition")
    solution = comp.make_fixture(folder, n_train=48, n_test=16, seed=1, side=80)
    solution.to_csv(folder.parent / "solution.csv", index=False)
    api.prepare(comp, folder)
    return folder
