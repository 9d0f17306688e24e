"""kaggletools.kaggle.credentials: permission checks on every credential file, and redaction of every
form in which a server might echo a secret (strings, streams, log records)."""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import urllib.parse
import warnings

import pytest

from fake_kaggle import KEY, TOKEN, USERNAME, isolate_env, leaked, secret_forms, write_kaggle_json
from kaggletools.kaggle import credentials as C


@pytest.fixture
def home(tmp_path, monkeypatch):
    return isolate_env(tmp_path, monkeypatch)


# -- permissions --------------------------------------------------------------------------------
def _token_env_file(home, monkeypatch, mode):
    path = home / "secrets" / "kaggle-token"
    path.parent.mkdir()
    path.write_text(TOKEN)
    path.chmod(mode)
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(path))
    return path


def _access_token(home, monkeypatch, mode):
    path = home / ".kaggle" / "access_token"
    path.write_text(TOKEN)
    path.chmod(mode)
    return path


def _oauth(home, monkeypatch, mode):
    path = home / ".kaggle" / "credentials.json"
    path.write_text(json.dumps({"refresh_token": TOKEN, "username": USERNAME}))
    path.chmod(mode)
    return path


def _kaggle_json(home, monkeypatch, mode):
    return write_kaggle_json(home / ".kaggle", mode=mode)


SOURCES = {"KAGGLE_API_TOKEN file": _token_env_file, "access_token": _access_token,
           "credentials.json": _oauth, "kaggle.json": _kaggle_json}


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_every_credential_file_open_to_others_warns(home, monkeypatch, source, mode):
    path = SOURCES[source](home, monkeypatch, mode)
    with pytest.warns(UserWarning) as rec:
        creds = C.find_credentials()
    assert creds.path == path
    text = " ".join(str(w.message) for w in rec)
    assert f"chmod 600 {path}" in text and "readable by other users" in text
    assert not leaked(text, TOKEN) and not leaked(text, KEY, USERNAME)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_private_credential_files_do_not_warn(home, monkeypatch, source):
    path = SOURCES[source](home, monkeypatch, 0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert C.find_credentials().path == path


# -- redaction of strings -----------------------------------------------------------------------
@pytest.mark.parametrize("form", secret_forms(KEY, USERNAME))
def test_redact_covers_every_form_of_a_key(form):
    text = f"server said: <{form}> end"
    out = C.redact(text, [KEY], [USERNAME])
    assert not leaked(out, KEY, USERNAME)
    assert out.startswith("server said: <") and out.endswith("> end") and "***" in out


@pytest.mark.parametrize("form", secret_forms(TOKEN))
def test_redact_covers_every_form_of_a_token(form):
    out = C.redact(f"[{form}]", [TOKEN])
    assert not leaked(out, TOKEN) and "***" in out


ODD_SECRET = "k~?>>/+ &%=key???~~~>>>"  # quote() and base64 (with + and /) both change it


@pytest.mark.parametrize("form", secret_forms(ODD_SECRET, "odd user"))
def test_redact_covers_every_form_of_a_secret_with_special_characters(form):
    basic = base64.b64encode(f"odd user:{ODD_SECRET}".encode()).decode()
    assert "+" in basic + base64.b64encode(ODD_SECRET.encode()).decode() and "/" in basic
    assert urllib.parse.quote(ODD_SECRET) != ODD_SECRET != urllib.parse.quote_plus(ODD_SECRET)
    out = C.redact(f"echo: {form}.", [ODD_SECRET], ["odd user"])
    assert not leaked(out, ODD_SECRET, "odd user") and "***" in out


def test_redact_percent_escapes_in_lower_case():
    quoted = urllib.parse.quote("Basic " + base64.b64encode(f"{USERNAME}:{KEY}".encode()).decode(), safe="")
    lower = quoted.replace("%3D", "%3d").replace("%20", "%20")
    assert "%3d" in lower
    assert KEY not in C.redact(lower, [KEY], [USERNAME]) and "***" in C.redact(lower, [KEY], [USERNAME])


@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc", '{"Authorization": "Basic '])
def test_redact_base64_of_longer_text_at_any_alignment(prefix):
    """A server may base64-encode a whole header dump: the key sits at any offset in it."""
    for secret, user in ((KEY, USERNAME), (TOKEN, None)):
        blob = base64.b64encode(f"{prefix}{secret} and more".encode()).decode()
        out = C.redact(blob, [secret], [user])
        assert out != blob and "***" in out
        # what is left cannot be decoded back to the secret
        assert secret not in base64.b64decode(out.replace("***", "") + "===", validate=False).decode(errors="ignore")



@pytest.mark.parametrize("user", ["a-rather-long-kaggle-user-name-for-wrapping", "x" * 30, "x" * 50])
def test_redact_base64_wrapped_over_lines(user):
    """MIME base64 (base64.encodebytes) breaks lines every 76 characters, anywhere in the key."""
    for newline in ("\n", "\r\n"):
        wrapped = base64.encodebytes(f"{user}:{KEY}".encode()).decode().replace("\n", newline)
        assert "\n" in wrapped.strip()
        out = C.redact(f"echo:\n{wrapped}", [KEY], [user])
        assert "***" in out
        assert KEY not in base64.b64decode("".join(out.replace("***", "").split()[1:]) + "===",
                                            validate=False).decode(errors="ignore")


def test_redact_an_upper_cased_key_and_an_html_escaped_secret():
    assert C.redact(f"said {KEY.upper()}.", [KEY]) == "said ***."
    escaped = html.escape(ODD_SECRET)
    assert escaped != ODD_SECRET and C.redact(f"<p>{escaped}</p>", [ODD_SECRET]) == "<p>***</p>"

def test_redact_leaves_ordinary_text_and_ignores_short_secrets():
    text = "Downloading train.zip to data/dogs\n100%|##########| 1.2M/1.2M"
    assert C.redact(text, [KEY, TOKEN], [USERNAME]) == text
    assert C.redact("abc abc", ["abc"]) == "abc abc"  # too short to redact safely
    assert C.redact("", [KEY]) == ""
    assert C.redact(f"x{KEY}y", []) == f"x{KEY}y"


def test_credentials_redact_uses_its_username():
    creds = C.Credentials("test", "key", username=USERNAME, secret=C._Secret(KEY))
    basic = base64.b64encode(f"{USERNAME}:{KEY}".encode()).decode()
    assert creds.redact(f"Authorization: Basic {basic}") == "Authorization: Basic ***"
    assert KEY not in repr(creds) and KEY not in str(creds)


def test_known_secrets_reads_every_source(home, monkeypatch):
    write_kaggle_json(home / ".kaggle", username="jsonuser", key="k" * 32)
    (home / ".kaggle" / "access_token").write_text("t" * 30)
    monkeypatch.setenv("KAGGLE_KEY", "e" * 32)
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    secrets, users = C.known_secrets()
    assert {"k" * 32, "t" * 30, "e" * 32, TOKEN} <= set(secrets) and "jsonuser" in users


# -- streams and log records --------------------------------------------------------------------
def test_redacting_writer_joins_writes_and_keeps_progress_lines():
    sink = io.StringIO()
    w = C.RedactingWriter(sink, C.Redactor([TOKEN]))
    half = len(TOKEN) // 2
    w.write(f"Authorization: Bearer {TOKEN[:half]}")
    w.write(f"{TOKEN[half:]}\n\r 50%|##")
    assert sink.getvalue() == "Authorization: Bearer ***\n\r"  # the unfinished bar waits for its line end
    w.write("\r100%|####|")
    w.finish()
    assert sink.getvalue() == "Authorization: Bearer ***\n\r 50%|##\r100%|####|"
    assert w.isatty() is False  # delegated to the real stream


def test_log_records_redacted_while_active_only(caplog):
    caplog.set_level(logging.DEBUG)
    factory = logging.getLogRecordFactory()
    basic = base64.b64encode(f"{USERNAME}:{KEY}".encode()).decode()
    child = logging.getLogger("urllib3.connectionpool")
    with C.redacting(C.Redactor([KEY], [USERNAME])):
        child.debug('"GET /blob?echo=%s HTTP/1.1" 200', urllib.parse.quote("Basic " + basic))
        logging.getLogger("kaggle.api.kaggle_api_extended").debug("Access token invalid: %s", KEY)
        try:
            raise ValueError(f"server echoed {basic}")
        except ValueError:
            logging.getLogger("kagglesdk").exception("failed")
    inside = caplog.text
    assert not leaked(inside, KEY, USERNAME)
    assert inside.count("***") >= 3 and "server echoed ***" in inside and "Access token invalid: ***" in inside
    caplog.clear()
    child.debug("after: %s", KEY)  # the filter is gone once the block ends
    assert KEY in caplog.text
    assert logging.getLogRecordFactory() is factory
