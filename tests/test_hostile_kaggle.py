"""Kaggle verbs against a hostile or broken server (tests/fake_kaggle.py): HTML where JSON belongs,
and text other people choose (team names, descriptions, error descriptions, server messages)
carrying terminal control characters. Every failure is one line on stderr with no decoder
message; every string from the server reaches the terminal with its control characters escaped."""
from __future__ import annotations

import contextlib
import functools
import io

import pandas as pd
import pytest

from fake_kaggle import SLUG, ScoringFailed, kaggle_server, redux_files  # noqa: F401 (fixture)
from kaggletools.cli import commands
from kaggletools.cli.app import main as cli
from kaggletools.kaggle import competitions as K

ESC = "\x1b[2J\x1b[31m"  # clear the screen, then red
HOSTILE = f"evil{ESC}team\r\u202eoverride\x07\x08"
DECODER_WORDS = ("JSONDecodeError", "Expecting value", "Traceback", "line 1 column 1")


@pytest.fixture
def no_waiting(monkeypatch):
    """wait_for_score without real sleeps (its back-off is tested in test_kaggle_api)."""
    monkeypatch.setattr(K, "wait_for_score", functools.partial(K.wait_for_score, sleep=lambda s: None))


def _good(tmp_path):
    good = tmp_path / "good.csv"
    good.write_bytes(redux_files()["sample_submission.csv"])
    return good


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not any(word in err for word in DECODER_WORDS), err
    return lines[0]


def _no_control_characters(text: str) -> None:
    assert not any(c in text for c in "\x1b\r\x07\x08\u202e"), repr(text)


# -- HTML where JSON belongs --------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 502])
def test_submit_wait_against_an_html_page_is_one_line(kaggle_server, tmp_path, capsys, no_waiting, status):
    server = kaggle_server(redux_files(), pending_polls=1)
    server.html = {"ListSubmissions": status}
    assert cli(["submit", SLUG, str(_good(tmp_path)), "--wait", "-q"]) == 1
    out, err = capsys.readouterr()
    assert "submitted" in out and server.uploads  # the upload itself went through
    line = _one_line_error(err)
    assert ("not its API's JSON" in line) if status == 200 else ("HTTP 502" in line)


@pytest.mark.parametrize("verb, route", [(["files", "-c", SLUG], "ListDataFiles"),
                                         (["submissions", "-c", SLUG], "ListSubmissions"),
                                         (["leaderboard", "-c", SLUG], "DownloadLeaderboard")])
def test_other_verbs_against_an_html_page_are_one_line(kaggle_server, capsys, verb, route):
    server = kaggle_server(redux_files())
    server.html = {route: 200, "GetLeaderboard": 200}
    code = cli(verb)  # leaderboard: the full download fails, then the first rows, which fail too
    out, err = capsys.readouterr()
    assert code == 1, out
    _one_line_error(err)


@pytest.mark.parametrize("route", ["DownloadDataFiles", "blob", "DownloadDataFile"])
def test_a_download_answered_with_a_web_page_keeps_nothing(kaggle_server, tmp_path, capsys, route):
    server = kaggle_server(redux_files())
    server.html = {route: 200}
    data = tmp_path / "data"
    one = ["-f", "sample_submission.csv"] if route == "DownloadDataFile" else []
    assert cli(["download", SLUG, "-p", str(data), "-q", *one]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert ("cut short or corrupt" if route == "blob" else "web page") in line, line
    assert not data.exists()


@pytest.mark.parametrize("route", ["StartSubmissionUpload", "CreateSubmission"])
def test_a_submission_answered_with_a_web_page_is_one_line(kaggle_server, tmp_path, capsys, route):
    server = kaggle_server(redux_files())
    server.html = {route: 200}
    assert cli(["submit", SLUG, str(_good(tmp_path)), "-q"]) == 1
    out, err = capsys.readouterr()
    assert "submitted" not in out and "not its API's JSON while submitting good.csv" in _one_line_error(err)
    assert not server.competition.submissions


def test_an_html_page_is_retried_then_given_up(kaggle_server, tmp_path):
    server = kaggle_server(redux_files(), pending_polls=1)
    ref = K.submit(SLUG, _good(tmp_path), "x", quiet=True).ref
    server.html = {"ListSubmissions": 200}
    sleeps = []
    with pytest.raises(K.KaggleNetworkError, match="not its API's JSON"):
        K.wait_for_score(SLUG, ref, sleep=sleeps.append)
    assert len(sleeps) == 4  # five polls, as for any transient failure

    def recover(s):
        server.html = {}

    assert K.wait_for_score(SLUG, ref, sleep=recover).status == "complete"


# -- text other people choose, on the terminal ------------------------------------------------
def test_leaderboard_team_names_reach_the_terminal_escaped(kaggle_server, capsys):
    server = kaggle_server(redux_files())
    server.competition.leaderboard = [
        {"teamId": 1, "teamName": HOSTILE, "score": 0.01, "members": ["someone"]},
        {"teamId": 2, "teamName": "line\nbreak", "score": 0.02, "members": ["other"]}]
    assert cli(["leaderboard", "-c", SLUG]) == 0
    out = capsys.readouterr().out
    _no_control_characters(out)
    assert "evil\\x1b[2J\\x1b[31mteam" in out and "\\u202eoverride" in out and "line\\nbreak" in out
    assert cli(["leaderboard", "-c", SLUG, "-v"]) == 0  # CSV too
    out = capsys.readouterr().out
    _no_control_characters(out)
    assert "evil\\x1b" in out


def test_submission_descriptions_and_errors_reach_the_terminal_escaped(kaggle_server, tmp_path, capsys):
    def scorer(data):
        raise ScoringFailed(f"bad file{ESC}\rPASSED")

    kaggle_server(redux_files(), scorer=scorer)
    assert cli(["submit", SLUG, str(_good(tmp_path)), "-m", f"mine{ESC}", "-q"]) == 0
    capsys.readouterr()
    for verb in (["submissions", "-c", SLUG], ["submissions", "-c", SLUG, "-v"]):
        assert cli(verb) == 0
        out = capsys.readouterr().out
        _no_control_characters(out)
        assert "mine\\x1b[2J" in out and "bad file\\x1b" in out


def test_a_scoring_error_with_control_characters_is_one_escaped_line(kaggle_server, tmp_path, capsys, no_waiting):
    def scorer(data):
        raise ScoringFailed(f"rows{ESC}\rPASSED")

    kaggle_server(redux_files(), scorer=scorer)
    assert cli(["submit", SLUG, str(_good(tmp_path)), "--wait", "-q"]) == 1
    line = _one_line_error(capsys.readouterr().err)
    _no_control_characters(line)
    assert "rows\\x1b[2J" in line and " PASSED" in line  # the carriage return is white space in one line


def test_the_server_message_after_submitting_is_escaped(kaggle_server, tmp_path, capsys):
    server = kaggle_server(redux_files())
    server.competition.title = f"Dogs{ESC}\rCats"
    assert cli(["submit", SLUG, str(_good(tmp_path)), "-q"]) == 0
    out = capsys.readouterr().out
    _no_control_characters(out)
    assert "Successfully submitted to Dogs\\x1b[2J" in out


def test_your_team_line_is_escaped(kaggle_server, tmp_path, capsys):
    kaggle_server(redux_files(), scorer=lambda data: 0.05, display_name=f"me{ESC}")
    assert cli(["submit", SLUG, str(_good(tmp_path)), "-q"]) == 0
    capsys.readouterr()
    assert cli(["leaderboard", "-c", SLUG]) == 0
    out = capsys.readouterr().out
    _no_control_characters(out)
    assert "your team 'me\\x1b[2J" in out


def test_files_named_by_the_server_are_escaped(kaggle_server, capsys):
    files = {**redux_files(), f"notes{ESC}.txt": b"x"}
    kaggle_server(files)
    assert cli(["files", "-c", SLUG]) == 0
    out = capsys.readouterr().out
    _no_control_characters(out)
    assert "notes\\x1b[2J" in out


def test_the_escaped_table_keeps_numbers_and_plain_text():
    from kaggletools.progress import printable

    assert printable("plain é 漢字 text") == "plain é 漢字 text"
    assert printable("a\tb\nc", keep="\n") == "a\\tb\nc"
    frame = pd.DataFrame({"team_name": ["ok", HOSTILE], "score": [0.5, 0.25]})
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        commands._print_table(frame, csv=True)
    back = pd.read_csv(io.StringIO(buffer.getvalue()))
    assert list(back["score"]) == [0.5, 0.25] and back["team_name"][0] == "ok"


def test_odd_submission_rows_list_without_failing(kaggle_server, capsys):
    server = kaggle_server(redux_files())
    server.competition.submissions = [
        {"ref": 7, "date": "2024-01-01T00:00:00.000Z", "description": f"odd{ESC}", "fileName": "a\r.csv",
         "publicScore": "not a number", "teamName": "t"},
        {"ref": 8, "date": "2024-01-02T00:00:00.000Z", "description": None, "status": "ERROR",
         "errorDescription": f"bad{ESC}", "publicScore": "0.5"}]
    assert cli(["submissions", "-c", SLUG]) == 0
    out = capsys.readouterr().out
    _no_control_characters(out)
    assert "odd\\x1b[2J" in out and "bad\\x1b[2J" in out and "a\\r.csv" in out
    server.competition.submissions[1]["date"] = f"not a date{ESC}"  # the client cannot read the answer
    assert cli(["submissions", "-c", SLUG]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert "Kaggle answered something the client cannot read while listing submissions" in line
    _no_control_characters(line)


def test_a_leaderboard_download_that_is_not_text_falls_back_to_the_first_rows(kaggle_server, capsys, monkeypatch):
    import fake_kaggle

    server = kaggle_server(redux_files())
    monkeypatch.setattr(fake_kaggle.FakeKaggle, "leaderboard_zip",
                        lambda self, comp: fake_kaggle._zip({"board.csv": b"Rank,TeamId\n\xff\xfe\x00bad"}))
    server.competition.leaderboard = [{"teamId": 1, "teamName": HOSTILE, "score": 0.01, "members": ["x"]}]
    assert cli(["leaderboard", "-c", SLUG]) == 0
    out = capsys.readouterr().out
    _no_control_characters(out)
    assert "evil\\x1b[2J" in out and "could not be downloaded" in out
