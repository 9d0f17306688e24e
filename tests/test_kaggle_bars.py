"""The kaggle client's download and upload bars go through kaggletools.progress: plain lines in a
log (no carriage returns), nothing with --quiet; `submit --wait` shows elapsed time and status
changes only."""
from __future__ import annotations

import sys
import types

import pytest

from fake_kaggle import SLUG, kaggle_server  # noqa: F401 (a fixture)
from kaggletools import progress
from kaggletools.kaggle import client
from kaggletools.kaggle import download as D


def test_a_download_in_a_log_is_plain_lines(kaggle_server, tmp_path, capsys):
    kaggle_server()
    D.download(SLUG, tmp_path / "data", quiet=False)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if "MiB in" in line]
    assert lines and lines[-1].split(":")[1].strip().startswith("100%")


def test_quiet_download_shows_no_bar(kaggle_server, tmp_path, capsys):
    kaggle_server()
    with progress.silenced():
        D.download(SLUG, tmp_path / "data", quiet=False)
    out = capsys.readouterr()
    assert "MiB in" not in out.err and "\r" not in out.err


def test_the_clients_tqdm_is_ours_only_while_it_runs(monkeypatch, capsys):
    fake = types.ModuleType("kaggle.api.kaggle_api_extended")
    fake.tqdm = original = object()
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", fake)
    with client.our_bars("uploading x.csv"):
        with fake.tqdm(total=3 * 2**20, initial=2**20, unit="B", unit_scale=True, unit_divisor=1024,
                       disable=False) as bar:
            bar.update(2 * 2**20)
        with fake.tqdm(total=10, unit="B", disable=True) as bar:
            bar.update(10)
    assert fake.tqdm is original
    err = capsys.readouterr().err
    assert "uploading x.csv: 100% 3.0/3.0 MiB" in err and err.count("uploading") == 1  # the 33% of `initial` is within 5 s


@pytest.mark.parametrize("statuses", [["pending", "pending", "pending", "complete"]])
def test_wait_for_score_prints_status_changes_with_elapsed_time(monkeypatch, capsys, statuses):
    from kaggletools import api
    from kaggletools.kaggle import competitions as kaggle_api

    def fake_wait(slug, ref, on_poll=None, **polling):
        for status in statuses:
            on_poll(types.SimpleNamespace(status=status))
        return types.SimpleNamespace(status="complete", public_score=0.05)

    monkeypatch.setattr(kaggle_api, "wait_for_score", fake_wait)
    api.wait_for_score("dogscats", 7)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "pending" in lines[0] and "complete" in lines[1]
    assert all(" s)" in line or "elapsed" in line for line in lines)
