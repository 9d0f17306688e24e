"""kaggletools.kaggle.competitions against the real official client talking to tests/fake_kaggle.py."""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
import warnings
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from fake_kaggle import (DISPLAY_NAME, KEY, SLUG, TOKEN, USERNAME, FakeKaggle, ScoringFailed, echo_text,
                         fake_kaggle, free_port, isolate_env, kaggle_server, leaked, make_redux_zip, redux_files,
                         write_kaggle_json)  # noqa: F401
from kaggletools.kaggle import competitions as K
from kaggletools.kaggle import download as D

REPO = Path(__file__).resolve().parents[1]


def _no_secret(*texts: str) -> None:
    """No form of the key or the token (raw, base64 of user:key or of the token, URL-encoded...)."""
    for text in texts:
        assert not leaked(text, KEY, USERNAME) and not leaked(text, TOKEN)


def _messages(exc: BaseException) -> list[str]:
    out = []
    while exc is not None:
        out += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return out


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """No credentials anywhere; HOME etc. in tmp."""
    return isolate_env(tmp_path, monkeypatch)


# -- credentials discovery --------------------------------------------------------------------
def test_token_from_env(home, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    c = K.find_credentials()
    assert (c.method, c.username) == ("token", None)
    assert "KAGGLE_API_TOKEN" in c.source
    assert c.secret.reveal() == TOKEN
    _no_secret(repr(c), str(c), repr(dataclasses.asdict(c)))


def test_token_env_naming_a_file(home, monkeypatch):
    f = home / "tok.txt"
    f.write_text(TOKEN + "\n")
    f.chmod(0o600)
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(f))
    c = K.find_credentials()
    assert c.method == "token" and c.path == f and c.secret.reveal() == TOKEN


def test_access_token_file(home):
    (home / ".kaggle" / "access_token").write_text(TOKEN)
    (home / ".kaggle" / "access_token").chmod(0o600)
    c = K.find_credentials()
    assert c.method == "token" and c.source.endswith("access_token")


def test_username_key_env(home, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    c = K.find_credentials()
    assert (c.method, c.username) == ("key", USERNAME)
    assert "KAGGLE_USERNAME" in c.source
    _no_secret(repr(c), str(c))


def test_kaggle_json_in_config_dir(home, monkeypatch, tmp_path):
    cfg = tmp_path / "elsewhere"
    path = write_kaggle_json(cfg)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(cfg))
    c = K.find_credentials()
    assert (c.method, c.username, c.path) == ("key", USERNAME, path)
    _no_secret(repr(c), str(c))


def test_kaggle_json_in_home(home, monkeypatch):
    monkeypatch.delenv("KAGGLE_CONFIG_DIR")
    path = write_kaggle_json(home / ".kaggle")
    assert K.find_credentials().path == path


def test_kaggle_json_in_xdg_config(home, monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = write_kaggle_json(tmp_path / "xdg" / "kaggle")
    assert K.find_credentials().path == path


def test_oauth_credentials_file(home):
    p = home / ".kaggle" / "credentials.json"
    p.write_text(json.dumps({"refresh_token": TOKEN, "username": USERNAME}))
    p.chmod(0o600)
    c = K.find_credentials()
    assert (c.method, c.username) == ("oauth", USERNAME)
    _no_secret(repr(c), str(c))


def test_order_token_then_env_then_kaggle_json(home, monkeypatch):
    write_kaggle_json(home / ".kaggle", username="fromfile")
    assert K.find_credentials().username == "fromfile"
    monkeypatch.setenv("KAGGLE_USERNAME", "fromenv")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    assert K.find_credentials().username == "fromenv"
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    assert K.find_credentials().method == "token"


def test_missing_credentials_explains_setup(home):
    with pytest.raises(K.KaggleCredentialsError) as e:
        K.find_credentials()
    msg = str(e.value)
    for needle in ("https://www.kaggle.com/settings", "kaggle.json", "chmod 600", "KAGGLE_USERNAME",
                   "KAGGLE_KEY", "KAGGLE_API_TOKEN", str(home / ".kaggle" / "kaggle.json")):
        assert needle in msg
    assert isinstance(e.value, K.KaggleError) and isinstance(e.value, RuntimeError)


def test_half_set_env_is_pointed_out(home, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    with pytest.raises(K.KaggleCredentialsError, match="KAGGLE_USERNAME is set but KAGGLE_KEY is not"):
        K.find_credentials()


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
    ('["a"]', "JSON object"),
    ('{"username": "u"}', "'key'"),
    (json.dumps({"key": KEY}), "'username'"),
])
def test_malformed_kaggle_json(home, content, problem):
    path = home / ".kaggle" / "kaggle.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(K.KaggleCredentialsError) as e:
        K.find_credentials()
    msg = str(e.value)
    assert problem in msg and str(path) in msg and "chmod 600" in msg and "kaggle.com/settings" in msg
    _no_secret(msg)


def test_world_readable_kaggle_json_warns(home, caplog):
    path = write_kaggle_json(home / ".kaggle", mode=0o644)
    with pytest.warns(UserWarning, match="chmod 600") as rec:
        K.find_credentials()
    text = " ".join(str(w.message) for w in rec)
    assert str(path) in text
    _no_secret(text, caplog.text)


def test_private_kaggle_json_does_not_warn(home):
    write_kaggle_json(home / ".kaggle", mode=0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        K.find_credentials()


def test_no_work_at_import_and_no_exit_without_credentials(home):
    code = ("import sys\n"
            "import kaggletools.kaggle.competitions as k\n"
            "assert 'kaggle' not in sys.modules and 'kagglesdk' not in sys.modules, 'imported at import time'\n"
            "try:\n    k.client()\n"
            "except k.KaggleCredentialsError as e:\n    print('OK', 'kaggle' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(home), KAGGLE_CONFIG_DIR=str(home / ".kaggle"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK False"  # found missing credentials before importing kaggle


# -- end to end with the real client -------------------------------------------------------------
@pytest.mark.parametrize("creds", ["env", "kaggle.json", "token"])
def test_list_files_with_each_credential_source(kaggle_server, creds):
    server = kaggle_server(creds=creds)
    files = D.list_files(SLUG)
    expected = redux_files()
    assert {f.name: f.size for f in files} == {n: len(b) for n, b in expected.items()}
    call = server.calls("ListDataFiles")[-1]
    assert call.json["competitionName"] == SLUG
    assert call.auth == (f"Bearer {TOKEN}" if creds == "token" else server.basic_auth)
    if creds == "token":
        assert server.calls("IntrospectToken")


def test_list_files_follows_pages(kaggle_server):
    files = {f"f{i:02d}.csv": b"x" * i for i in range(45)}
    server = kaggle_server(files)
    got = D.list_files(SLUG)
    assert [f.name for f in got] == sorted(files)
    assert len(server.calls("ListDataFiles")) == 3
    assert str(got[1]) == "f01.csv  (1 B)"


def test_download_all_files_is_the_slug_zip(kaggle_server, tmp_path, capsys):
    server = kaggle_server()
    path = D.download(SLUG, tmp_path / "data", quiet=True)
    assert path == tmp_path / "data" / f"{SLUG}.zip"
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["sample_submission.csv", "test.zip", "train.zip"]
        with zipfile.ZipFile(io.BytesIO(z.read("train.zip"))) as train:
            names = train.namelist()
            assert "train/cat.0.jpg" in names and "train/dog.3.jpg" in names
            assert Image.open(io.BytesIO(train.read("train/cat.0.jpg"))).format == "JPEG"
        with zipfile.ZipFile(io.BytesIO(z.read("test.zip"))) as test:
            assert "test/1.jpg" in test.namelist()
        assert z.read("sample_submission.csv").decode().startswith("id,label\n1,")
    assert not list(path.parent.glob("*.kaggle-partial"))
    assert [c.route for c in server.calls()][-2:] == ["DownloadDataFiles", "blob"]
    out = capsys.readouterr()
    assert "Downloading" not in out.out + out.err  # quiet


def test_download_keeps_fresh_copy_unless_forced(kaggle_server, tmp_path, capsys):
    kaggle_server()
    path = D.download(SLUG, tmp_path, quiet=True)
    good = path.read_bytes()
    path.write_bytes(b"x" * len(good))  # same size, newer than the server's copy
    D.download(SLUG, tmp_path, quiet=True)
    assert path.read_bytes() == b"x" * len(good)
    D.download(SLUG, tmp_path, force=True)
    assert path.read_bytes() == good
    out = capsys.readouterr()
    assert "Downloading" in out.out + out.err  # not quiet: the client reports progress


def test_download_one_file(kaggle_server, tmp_path):
    server = kaggle_server()
    path = D.download(SLUG, tmp_path / "d", file="sample_submission.csv", quiet=True)
    assert path == tmp_path / "d" / "sample_submission.csv"
    assert path.read_bytes() == server.competition.files["sample_submission.csv"]
    assert server.calls("DownloadDataFile")[-1].json == {"competitionName": SLUG,
                                                         "fileName": "sample_submission.csv"}


def test_make_redux_zip_helper(tmp_path):
    path = make_redux_zip(tmp_path, n_train=2, n_test=3)
    assert path.name == f"{SLUG}.zip"
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(io.BytesIO(z.read("test.zip"))) as t:
        assert sorted(t.namelist()) == ["test/1.jpg", "test/2.jpg", "test/3.jpg"]


def test_submit_and_submissions(kaggle_server, tmp_path):
    server = kaggle_server(scorer=lambda data: 0.0625)
    csv = tmp_path / "sub.csv"
    csv.write_text("id,label\n1,0.9\n2,0.1\n")
    result = K.submit(SLUG, csv, "resnet34 tta", quiet=True)
    assert result.ref > 0 and "Successfully submitted" in result.message
    start = server.calls("StartSubmissionUpload")[-1].json
    assert start["fileName"] == "sub.csv" and start["contentLength"] == csv.stat().st_size
    create = server.calls("CreateSubmission")[-1].json
    assert create["submissionDescription"] == "resnet34 tta"
    assert server.uploads[create["blobFileTokens"]] == csv.read_bytes()

    df = K.submissions(SLUG)
    assert list(df.columns) == K.SUBMISSION_COLUMNS
    row = df.iloc[0]
    assert (row.ref, row.description, row.status) == (result.ref, "resnet34 tta", "complete")
    assert row.file_name == "sub.csv"
    assert row.public_score == 0.0625 and row.private_score != row.private_score  # NaN
    assert str(df["date"].dtype).startswith("datetime64")


def test_submissions_all_pages_and_empty(kaggle_server):
    server = kaggle_server()
    assert K.submissions(SLUG).empty
    server.competition.submissions[:] = [
        {"ref": i, "date": "2024-01-02T03:04:05.000Z", "description": f"s{i}", "status": "COMPLETE",
         "publicScore": "0.1", "privateScore": "0.2"} for i in range(45, 0, -1)]
    df = K.submissions(SLUG)
    assert len(df) == 45 and df.ref.iloc[0] == 45 and df.private_score.iloc[0] == 0.2


def test_leaderboard_without_own_submissions(kaggle_server):
    kaggle_server()
    lb = K.leaderboard(SLUG)
    df = lb.rows
    assert list(df.columns) == K.LEADERBOARD_COLUMNS and df.score.iloc[0] == pytest.approx(0.033)
    assert list(df["rank"]) == [1, 2] and list(df.team_name) == ["top team", "runner up"]
    assert lb.total_teams == 2 and lb.my_rank is None and lb.my_row is None
    assert "not on the leaderboard" in lb.note and USERNAME in lb.note


def test_submit_missing_file(kaggle_server, tmp_path):
    kaggle_server()
    with pytest.raises(FileNotFoundError):
        K.submit(SLUG, tmp_path / "nope.csv", "x")


def test_real_cli_in_subprocess_on_port_80(tmp_path, monkeypatch):
    """The unpatched client (http://localhost, port 80) works against the server too."""
    try:
        server = FakeKaggle(port=80).start()
    except OSError as e:
        pytest.skip(f"cannot bind 127.0.0.1:80 for the unpatched client ({e})")
    try:
        with fake_kaggle(tmp_path, monkeypatch=monkeypatch, creds="kaggle.json"):
            pass  # only to set up HOME / kaggle.json; its own server is stopped
        env = {**os.environ, "KAGGLE_API_ENVIRONMENT": "LOCALHOST"}
        r = subprocess.run([sys.executable, "-m", "kaggle", "competitions", "download", SLUG, "-p",
                            str(tmp_path / "cli")], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert zipfile.is_zipfile(tmp_path / "cli" / f"{SLUG}.zip")
        assert server.calls("DownloadDataFiles")[-1].auth == server.basic_auth
    finally:
        server.stop()


# -- errors -------------------------------------------------------------------------------------
def test_rules_not_accepted_is_forbidden_with_rules_link(kaggle_server, tmp_path):
    kaggle_server(rules_accepted=False)
    assert D.list_files(SLUG)  # listing works without accepting the rules
    rules = f"https://www.kaggle.com/competitions/{SLUG}/rules"
    with pytest.raises(K.KaggleForbiddenError) as e:
        D.download(SLUG, tmp_path)
    assert rules in str(e.value) and "accept" in str(e.value).lower() and "retry" in str(e.value)
    csv = tmp_path / "s.csv"
    csv.write_text("id,label\n")
    with pytest.raises(K.KaggleForbiddenError, match="rules"):
        K.submit(SLUG, csv, "x")


def test_unknown_competition_is_not_found(kaggle_server, tmp_path):
    kaggle_server()
    with pytest.raises(K.KaggleNotFoundError, match="no-such-comp"):
        D.list_files("no-such-comp")
    with pytest.raises(K.KaggleNotFoundError, match="no-such-comp"):
        D.download("no-such-comp", tmp_path)
    with pytest.raises(K.KaggleNotFoundError, match="Competition not found"):
        D.download("no-such-comp", tmp_path, file="train.zip")


def test_unknown_file_lists_what_exists(kaggle_server, tmp_path):
    kaggle_server()
    with pytest.raises(K.KaggleNotFoundError) as e:
        D.download(SLUG, tmp_path, file="test1.zip")
    msg = str(e.value)
    assert "test1.zip" in msg and "train.zip" in msg and "sample_submission.csv" in msg


@pytest.mark.parametrize("route, call", [
    ("ListDataFiles", lambda tmp: D.list_files(SLUG)),
    ("DownloadDataFiles", lambda tmp: D.download(SLUG, tmp)),
    ("StartSubmissionUpload", lambda tmp: K.submit(SLUG, _csv(tmp), "x")),
    ("ListSubmissions", lambda tmp: K.submissions(SLUG)),
])
def test_rate_limit(kaggle_server, tmp_path, route, call):
    kaggle_server(fail_with={route: 429})
    with pytest.raises(K.KaggleRateLimitError) as e:
        call(tmp_path)
    assert "rate limited" in str(e.value) and "retry" in str(e.value)


def _csv(folder: Path) -> Path:
    p = folder / "s.csv"
    p.write_text("id,label\n1,0.5\n")
    return p


def test_rate_limit_everywhere_with_token(kaggle_server):
    kaggle_server(creds="token", fail_with=429)  # even the token check is refused
    with pytest.raises(K.KaggleRateLimitError):
        D.list_files(SLUG)


def test_server_error_is_a_plain_kaggle_error(kaggle_server):
    kaggle_server(fail_with=500)
    with pytest.raises(K.KaggleError) as e:
        D.list_files(SLUG)
    assert type(e.value) is K.KaggleError and "HTTP 500" in str(e.value)


def test_failed_upload(kaggle_server, tmp_path):
    server = kaggle_server(fail_with={"upload": 500})
    with pytest.raises(K.KaggleError, match="failed"):
        K.submit(SLUG, _csv(tmp_path), "x", quiet=True)
    assert not server.calls("CreateSubmission")


def test_wrong_key_is_invalid_credentials(kaggle_server, monkeypatch):
    kaggle_server()
    monkeypatch.setenv("KAGGLE_KEY", "f" * 32)
    with pytest.raises(K.KaggleCredentialsError, match="invalid credentials") as e:
        D.list_files(SLUG)
    assert "KAGGLE_USERNAME" in str(e.value)
    assert "f" * 32 not in str(e.value)


def test_rejected_token_is_a_credentials_error_not_exit(kaggle_server, monkeypatch):
    kaggle_server(creds="token")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_expired_token_value_123")
    with pytest.raises(K.KaggleCredentialsError, match="invalid or expired") as e:
        D.list_files(SLUG)
    assert "KGAT_expired_token_value_123" not in str(e.value)


def test_stopped_server_is_a_network_error(kaggle_server, tmp_path):
    server = kaggle_server()
    assert D.list_files(SLUG)
    server.stop()
    refused = "Could not reach Kaggle at http://127.0.0.1:.*Connection refused"
    with pytest.raises(K.KaggleNetworkError, match=refused):
        D.list_files(SLUG)
    with pytest.raises(K.KaggleNetworkError):
        D.download(SLUG, tmp_path)


def test_nothing_listening_is_a_network_error_even_while_authenticating(kaggle_server, monkeypatch):
    kaggle_server(creds="token")
    from kagglesdk import kaggle_env

    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(K.KaggleNetworkError, match="authenticating"):
        K.client()


def test_secrets_never_printed_or_logged(kaggle_server, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    def attempt(fn):
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                r = fn()
            texts.extend(str(x.message) for x in w)
            texts.append(repr(r))
        except Exception as e:  # noqa: BLE001
            texts.extend(_messages(e))

    server = kaggle_server(creds="kaggle.json")
    (tmp_path / "home" / ".kaggle" / "kaggle.json").chmod(0o644)
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    attempt(K.find_credentials)
    attempt(lambda: D.list_files(SLUG))
    attempt(lambda: D.download(SLUG, tmp_path / "d"))  # not quiet: progress output
    attempt(lambda: K.submit(SLUG, _csv(tmp_path), "x"))
    attempt(lambda: K.submissions(SLUG))
    monkeypatch.delenv("KAGGLE_API_TOKEN")
    attempt(K.find_credentials)
    attempt(lambda: D.list_files(SLUG))
    for fail in (403, 404, 429, 500):
        server.fail_with = fail
        attempt(lambda: D.download(SLUG, tmp_path / "d", file="train.zip"))
    server.fail_with = None
    monkeypatch.setenv("KAGGLE_API_TOKEN", "bad-token")
    attempt(lambda: D.list_files(SLUG))
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    server.stop()
    attempt(lambda: D.list_files(SLUG))
    out = capsys.readouterr()
    assert any("403" in t for t in texts) and any("Could not reach" in t for t in texts)
    _no_secret(out.out, out.err, caplog.text, *texts)


# -- listings for table or CSV output -------------------------------------------------------------
def test_list_files_gives_name_size_and_creation_date(kaggle_server):
    kaggle_server()
    files = D.list_files(SLUG)
    assert all(isinstance(f, K.RemoteFile) and isinstance(f.created, datetime) for f in files)
    assert {f.name for f in files} == set(redux_files())


def test_submissions_carry_error_description_and_team(kaggle_server, tmp_path):
    def scorer(data):
        raise ScoringFailed("Submission must have 12500 rows")

    kaggle_server(scorer=scorer)
    ref = K.submit(SLUG, _csv(tmp_path), "broken", quiet=True).ref
    df = K.submissions(SLUG)
    row = df.set_index("ref").loc[ref]
    assert (row.status, row.error_description, row.team_name) == ("error", "Submission must have 12500 rows",
                                                                 DISPLAY_NAME)
    assert row.public_score != row.public_score  # NaN


# -- submit and wait for the score -----------------------------------------------------------------
class FakeClock:
    """A clock that only moves when `sleep` is called."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s

    def __call__(self):
        return self.now


def test_submit_returns_ref_and_kaggles_message(kaggle_server, tmp_path, capsys):
    server = kaggle_server()
    csv = _csv(tmp_path)
    result = K.submit(SLUG, csv, "first try")
    assert isinstance(result, K.SubmitResult) and result.ref and result.slug == SLUG and result.file == csv
    assert result.message == f"Successfully submitted to {server.competition.title}"
    assert result.ref == server.competition.submissions[0]["ref"]
    assert result.message not in capsys.readouterr().out  # returned for the caller to print, not printed


def test_wait_for_score_polls_with_backoff_until_scored(kaggle_server, tmp_path):
    server = kaggle_server(scorer=lambda data: 0.0625, pending_polls=3)
    ref = K.submit(SLUG, _csv(tmp_path), "pending a while", quiet=True).ref
    clock, seen = FakeClock(), []
    sub = K.wait_for_score(SLUG, ref, sleep=clock.sleep, clock=clock, on_poll=seen.append)
    assert isinstance(sub, K.Submission) and (sub.ref, sub.status) == (ref, "complete")
    assert sub.public_score == 0.0625 and sub.error_description == ""
    assert [s.status for s in seen] == ["pending", "pending", "pending", "complete"]
    assert clock.sleeps == [2.0, 4.0, 8.0]
    assert len(server.calls("ListSubmissions")) == 4


def test_wait_for_score_backoff_is_bounded(kaggle_server, tmp_path):
    kaggle_server(pending_polls=7)
    ref = K.submit(SLUG, _csv(tmp_path), "x", quiet=True).ref
    clock = FakeClock()
    assert K.wait_for_score(SLUG, ref, first_delay=1, max_delay=5, sleep=clock.sleep, clock=clock).status == "complete"
    assert clock.sleeps == [1, 2, 4, 5, 5, 5, 5]


def test_wait_for_score_scoring_error(kaggle_server, tmp_path):
    def scorer(data):
        raise ScoringFailed("ERROR: Could not find column 'label'")

    kaggle_server(scorer=scorer, pending_polls=1)
    ref = K.submit(SLUG, _csv(tmp_path), "x", quiet=True).ref
    clock = FakeClock()
    with pytest.raises(K.KaggleSubmissionFailed) as e:
        K.wait_for_score(SLUG, ref, sleep=clock.sleep, clock=clock)
    assert isinstance(e.value, K.KaggleError)
    assert e.value.ref == ref and e.value.error_description == "ERROR: Could not find column 'label'"
    assert "Could not find column 'label'" in str(e.value) and str(ref) in str(e.value)
    assert clock.sleeps == [2.0]


def test_wait_for_score_timeout_says_how_to_check_later(kaggle_server, tmp_path):
    server = kaggle_server(pending_polls=10_000)
    ref = K.submit(SLUG, _csv(tmp_path), "x", quiet=True).ref
    clock = FakeClock()
    with pytest.raises(K.KaggleSubmissionPending) as e:
        K.wait_for_score(SLUG, ref, timeout=100, sleep=clock.sleep, clock=clock)
    msg = str(e.value)
    assert "still pending" in msg and f"kaggletools submissions {SLUG}" in msg and str(ref) in msg
    assert e.value.ref == ref and e.value.submission.status == "pending"
    assert sum(clock.sleeps) == pytest.approx(100) and max(clock.sleeps) <= 60
    assert clock.sleeps[-1] == pytest.approx(100 - 2 - 4 - 8 - 16 - 32)  # the last wait stops at the deadline
    assert len(server.calls("ListSubmissions")) == len(clock.sleeps) + 1


def test_wait_for_score_for_a_submission_not_listed(kaggle_server):
    kaggle_server()
    clock, seen = FakeClock(), []
    with pytest.raises(K.KaggleSubmissionPending, match="not listed yet"):
        K.wait_for_score(SLUG, 424242, timeout=10, sleep=clock.sleep, clock=clock, on_poll=seen.append)
    assert seen and all(s is None for s in seen)


def test_wait_for_score_rides_out_server_errors_but_not_404(kaggle_server, tmp_path):
    server = kaggle_server(pending_polls=1)
    ref = K.submit(SLUG, _csv(tmp_path), "x", quiet=True).ref
    server.fail_with = {"ListSubmissions": 503}
    clock = FakeClock()

    def sleep(s):
        clock.sleep(s)
        if len(clock.sleeps) == 2:
            server.fail_with = None

    assert K.wait_for_score(SLUG, ref, sleep=sleep, clock=clock).status == "complete"
    assert [c.status for c in server.calls("ListSubmissions")][-4:] == [503, 503, 200, 200]
    server.fail_with = {"ListSubmissions": 503}
    with pytest.raises(K.KaggleError, match="HTTP 503"):  # five failures in a row
        K.wait_for_score(SLUG, ref, sleep=clock.sleep, clock=clock)
    clock.sleeps.clear()
    server.fail_with = None
    with pytest.raises(K.KaggleNotFoundError):
        K.wait_for_score("no-such-comp", ref, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


# -- leaderboard: where is my team? -----------------------------------------------------------------
def _teams(n: int, me_at: int | None = None, members: bool = True) -> list[dict]:
    rows = [{"teamId": 100 + i, "teamName": f"team {i}", "score": 0.01 * i, "members": [f"user{i}"]}
            for i in range(1, n + 1)]
    if me_at is not None:
        rows[me_at - 1] = {"teamId": 7, "teamName": DISPLAY_NAME, "score": 0.01 * me_at,
                           "members": ["a_friend", USERNAME] if members else []}
    return rows


@pytest.mark.parametrize("creds", ["env", "kaggle.json", "token"])
def test_leaderboard_finds_own_team_by_user_name(kaggle_server, creds):
    server = kaggle_server(creds=creds)
    server.competition.leaderboard = _teams(40, me_at=27)
    lb = K.leaderboard(SLUG, top=10)
    assert len(lb.rows) == 10 and list(lb.rows["rank"]) == list(range(1, 11)) and lb.total_teams == 40
    assert lb.my_rank == 27 and lb.my_row["team_name"] == DISPLAY_NAME and lb.my_row["team_id"] == 7
    assert lb.my_row["score"] == pytest.approx(0.27) and lb.username == USERNAME
    assert f"member '{USERNAME}'" in lb.note
    assert server.calls("DownloadLeaderboard")


def test_leaderboard_after_a_scored_submission(kaggle_server, tmp_path):
    kaggle_server(scorer=lambda data: 0.02)
    K.submit(SLUG, _csv(tmp_path), "x", quiet=True)
    lb = K.leaderboard(SLUG)
    assert lb.my_rank == 1 and lb.rows.team_name.iloc[0] == DISPLAY_NAME


def test_leaderboard_without_member_column_matches_team_name(kaggle_server, tmp_path):
    server = kaggle_server()
    server.competition.leaderboard = _teams(5, me_at=4, members=False)
    server.competition.leaderboard_members = False
    assert K.leaderboard(SLUG).my_rank is None  # no submissions: no team name to match
    K.submit(SLUG, _csv(tmp_path), "x", quiet=True)
    lb = K.leaderboard(SLUG)
    assert lb.my_rank == 4 and f"team '{DISPLAY_NAME}'" in lb.note
    server.competition.leaderboard = _teams(5, me_at=4, members=False) + [
        {"teamId": 9, "teamName": DISPLAY_NAME, "score": 0.9}]
    lb = K.leaderboard(SLUG)
    assert lb.my_rank is None and "Cannot tell" in lb.note  # two teams of that name: no guess


def test_leaderboard_when_the_full_download_fails(kaggle_server, tmp_path):
    server = kaggle_server(fail_with={"DownloadLeaderboard": 403})
    server.competition.leaderboard = _teams(30, me_at=25)
    K.submit(SLUG, _csv(tmp_path), "x", quiet=True)
    lb = K.leaderboard(SLUG, top=10)
    assert len(lb.rows) == 10 and lb.total_teams is None and lb.my_rank is None
    assert "could not be downloaded (HTTP 403)" in lb.note and "unknown" in lb.note
    lb = K.leaderboard(SLUG, top=30)  # own team among the rows read: found by its team name
    assert lb.my_rank == 25 and lb.total_teams is None
    assert server.calls("GetLeaderboard")[-1].json["pageSize"] == 30


def test_leaderboard_without_find_me_is_one_request(kaggle_server):
    server = kaggle_server()
    lb = K.leaderboard(SLUG, find_me=False)
    assert len(lb.rows) == 2 and lb.my_rank is None and "not looked up" in lb.note
    assert not server.calls("DownloadLeaderboard") and len(server.calls("GetLeaderboard")) == 1


def test_leaderboard_of_unknown_competition(kaggle_server):
    kaggle_server()
    with pytest.raises(K.KaggleNotFoundError, match="no-such-comp"):
        K.leaderboard("no-such-comp")


# -- download leaves no empty folder behind ---------------------------------------------------------
@pytest.mark.parametrize("case", ["403", "404", "network"])
def test_failed_download_leaves_no_empty_folder(kaggle_server, tmp_path, case):
    server = kaggle_server(rules_accepted=case != "403")
    if case == "network":
        server.stop()
    dest = tmp_path / "data" / "dogs" / "raw"
    slug = "no-such-comp" if case == "404" else SLUG
    with pytest.raises(K.KaggleError):
        D.download(slug, dest, quiet=True)
    assert not (tmp_path / "data").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(K.KaggleError):
        D.download(slug, existing, quiet=True)
    assert existing.is_dir()  # not ours to remove


def test_folder_made_by_the_client_is_removed_when_still_empty(tmp_path):
    import requests

    class Stub:  # a client that creates the folder, then loses the connection
        def competition_download_files(self, slug, path, force, quiet):
            os.makedirs(path)
            raise requests.exceptions.ConnectionError("connection reset by peer")

    dest = tmp_path / "a" / "b"
    with pytest.raises(K.KaggleNetworkError):
        D.download(SLUG, dest, api=Stub())
    assert not (tmp_path / "a").exists()
    (tmp_path / "a").mkdir()
    with pytest.raises(K.KaggleNetworkError):
        D.download(SLUG, dest, api=Stub())
    assert (tmp_path / "a").is_dir() and not dest.exists()


def test_download_creates_the_folder_when_it_writes(kaggle_server, tmp_path):
    kaggle_server()
    path = D.download(SLUG, tmp_path / "x" / "y", quiet=True)
    assert path.parent == tmp_path / "x" / "y" and path.is_file()


# -- a hostile server that echoes the credentials --------------------------------------------------
def _secret_of(creds: str) -> tuple[str, str | None]:
    return (TOKEN, None) if creds == "token" else (KEY, USERNAME)


@pytest.mark.parametrize("creds", ["env", "kaggle.json", "token"])
def test_echoed_credentials_in_an_error_are_redacted(kaggle_server, tmp_path, creds, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    server = kaggle_server(creds=creds, echo_headers=True, rules_accepted=False)
    secret, user = _secret_of(creds)
    with pytest.raises(K.KaggleForbiddenError) as e:
        D.download(SLUG, tmp_path / "d")
    call = server.calls("DownloadDataFiles")[-1]
    assert call.status == 403 and leaked(echo_text(call.headers), secret, user)  # the server did echo the secret
    texts = _messages(e.value)
    assert "request headers:" in str(e.value) and "***" in str(e.value)  # the echo reached us, redacted
    out = capsys.readouterr()
    _no_secret(out.out, out.err, caplog.text, *texts)


def test_echoed_token_while_authenticating_is_redacted(kaggle_server, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    kaggle_server(creds="token", echo_headers=True, fail_with={"IntrospectToken": 403})
    with pytest.raises(K.KaggleCredentialsError) as e:
        K.client()
    assert "Access token invalid" in caplog.text and "request headers" in caplog.text  # the client logged the echo
    out = capsys.readouterr()
    _no_secret(out.out, out.err, caplog.text, *_messages(e.value))


@pytest.mark.parametrize("creds", ["env", "kaggle.json", "token"])
def test_echoed_credentials_in_a_successful_listing_are_redacted(kaggle_server, tmp_path, creds, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    server = kaggle_server(creds=creds, echo_headers=True)
    api = K.client(verbose=True)  # the client prints every request and response, headers included
    files = D.list_files(SLUG, api=api)
    assert {f.name for f in files} == set(redux_files())
    D.download(SLUG, tmp_path / "d", file="sample_submission.csv", api=api)  # echo in the download URL too
    secret, user = _secret_of(creds)
    assert leaked(echo_text(server.calls("ListDataFiles")[-1].headers), secret, user)
    out = capsys.readouterr()
    scheme = "Bearer" if creds == "token" else "Basic"
    assert f"Authorization: {scheme} ***" in out.out and "request headers:" in out.out  # printed, redacted
    assert "echo=" in caplog.text  # urllib3 logged the download URL, redacted
    _no_secret(out.out, out.err, caplog.text)
    for f in (tmp_path / "d").iterdir():
        _no_secret(f.name, f.read_bytes().decode(errors="replace"))


def test_a_server_that_never_answers_is_a_network_error(kaggle_server, monkeypatch, tmp_path):
    """The client sets no timeout on its calls: ours (kaggle_client.SOCKET_TIMEOUT) ends the wait."""
    import socket

    from kagglesdk import kaggle_env

    from kaggletools.kaggle import client as kaggle_client

    kaggle_server()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        monkeypatch.setattr(kaggle_client, "SOCKET_TIMEOUT", 0.5)
        monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL,
                            f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(K.KaggleNetworkError, match="Could not reach Kaggle"):
            D.list_files(SLUG)
        with pytest.raises(K.KaggleNetworkError):
            D.download(SLUG, tmp_path / "d", quiet=True)
        assert not (tmp_path / "d").exists()
    finally:
        silent.close()


def test_a_corrupt_download_is_removed_so_the_next_run_fetches_it_again(kaggle_server, tmp_path):
    server = kaggle_server()
    good = server.competition.all_zip()
    flipped = bytearray(good)
    flipped[len(good) // 3:len(good) // 3 + 64] = bytes(64)  # inside a member's compressed data
    for served in (b"<html>not a zip</html>", bytes(flipped)):
        server.competition.files[f"{SLUG}.zip"] = served
        with pytest.raises(K.KaggleNetworkError, match=f"{SLUG}.zip arrived cut short or corrupt.*removed"):
            D.download(SLUG, tmp_path / "data", quiet=True)
        assert not (tmp_path / "data").exists()
    del server.competition.files[f"{SLUG}.zip"]
    path = D.download(SLUG, tmp_path / "data", quiet=True)
    assert zipfile.is_zipfile(path)


def test_a_token_variable_naming_a_folder_is_one_line_that_shows_it(tmp_path, monkeypatch):
    from kaggletools.kaggle import credentials

    folder = tmp_path / "tokens"
    folder.mkdir()
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(folder))
    with pytest.raises(K.KaggleCredentialsError, match=f"KAGGLE_API_TOKEN names the folder {folder}"):
        credentials.find_credentials()
    assert str(folder) not in credentials.known_secrets()[0]
