"""Kaggle credentials: found in the official client's order (`find_credentials`), every credential
file checked for group/other access (a warning says ``chmod 600 <file>``), and the secret kept out
of all we print, log or raise: `redact` (every form a server might echo), `redacting` (log
records), `RedactingWriter` (stdout/stderr of the client). The errors of `kaggle_api` (from
kaggletools.errors) are re-exported here.
"""
from __future__ import annotations

import base64
import html
import contextlib
import json
import logging
import os
import re
import stat
import threading
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from kaggletools.errors import (  # noqa: F401 (the Kaggle errors are part of this module's API)
    KaggleCredentialsError, KaggleError, KaggleForbiddenError, KaggleNetworkError, KaggleNotFoundError,
    KaggleRateLimitError)

__all__ = [
    "Credentials", "KaggleError", "KaggleCredentialsError", "KaggleForbiddenError", "KaggleNotFoundError",
    "KaggleRateLimitError", "KaggleNetworkError", "find_credentials", "redact", "Redactor", "redacting",
    "RedactingWriter", "known_secrets",
]

SETTINGS_URL = "https://www.kaggle.com/settings"
MASK = "***"


# -- redaction ---------------------------------------------------------------------------------
def _b64_forms(raw: bytes) -> list[str]:
    encoded = (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode())
    return [f for e in encoded for f in (e, e.rstrip("="))]


def _b64_cores(raw: bytes, min_len: int = 12) -> list[str]:
    """What base64 of any text holding `raw` must contain, whatever the alignment: the encoding of
    the longest run of `raw` that starts on a 3-byte boundary of the surrounding text."""
    out = []
    for k in range(3):
        n = (len(raw) - k) // 3 * 3
        if n > 0:
            core = base64.b64encode(raw[k:k + n]).decode()
            if len(core) >= min_len:
                out += [core, core.replace("+", "-").replace("/", "_")]
    return out


def _secret_forms(secret: str, usernames: Iterable[str | None] = ()) -> set[str]:
    raw = secret.encode()
    forms = {secret, *_b64_forms(raw), *_b64_cores(raw)}
    for user in usernames:
        if user:
            forms.update(_b64_forms(f"{user}:{secret}".encode()))
    for form in list(forms):
        forms.update({urllib.parse.quote(form), urllib.parse.quote(form, safe=""),
                      urllib.parse.quote_plus(form), form.replace("/", "\\/"), html.escape(form)})
    return {f for f in forms if len(f) >= 4}


def _pattern(form: str) -> str:
    """`form` as a regex (compiled case-insensitive: %2f or %2F, an upper-cased key), also when
    broken over lines (MIME base64 wraps at 76 characters) or split by a percent escape's case."""
    tokens = [t for t in re.split(r"(%[0-9A-Fa-f]{2})", form) for t in ([t] if t.startswith("%") else t)]
    return r"(?:\r?\n)?".join(re.escape(t) for t in tokens if t)


class Redactor:
    """``Redactor(secrets, usernames)(text)``: `text` with every form of the secrets replaced by ***.
    Secrets shorter than 4 characters are ignored (they would mask ordinary text)."""

    def __init__(self, secrets: Iterable[str | None] = (), usernames: Iterable[str | None] = ()):
        users = sorted({u for u in usernames if u})
        forms: set[str] = set()
        for s in {s.strip() for s in secrets if isinstance(s, str)}:
            if len(s) >= 4:
                forms |= _secret_forms(s, users)
        self._regex = (re.compile("|".join(_pattern(f) for f in sorted(forms, key=len, reverse=True)), re.IGNORECASE)
                       if forms else None)

    def __call__(self, text: str) -> str:
        return self._regex.sub(MASK, text) if self._regex is not None and text else text

    def __repr__(self) -> str:
        return "Redactor(***)"


def redact(text: str, secrets: Iterable[str | None], usernames: Iterable[str | None] = ()) -> str:
    """`text` with every form of `secrets` a server might echo replaced by ***: raw (so also
    ``Bearer <token>``), base64 of ``<username>:<secret>`` and of the secret (standard and URL-safe,
    with and without padding, also inside longer base64 text), and URL-encoded (quote, quote_plus)."""
    return Redactor(secrets, usernames)(text)


_ACTIVE: list[Redactor] = []
_LOCK = threading.RLock()
_PREVIOUS_FACTORY: list = []
LOGGER_PREFIXES = ("kaggletools", "kaggle", "kagglesdk", "urllib3", "requests")


def _apply(text: str) -> str:
    for r in list(_ACTIVE):
        text = r(text)
    return text


def _record_factory(*args, **kwargs) -> logging.LogRecord:
    """Makes log records; while `redacting` is active, those of LOGGER_PREFIXES loggers and their
    children (also loggers created meanwhile) are redacted: message, exception and stack text."""
    record = (_PREVIOUS_FACTORY[0] if _PREVIOUS_FACTORY else logging.LogRecord)(*args, **kwargs)
    if not _ACTIVE or str(record.name).split(".", 1)[0] not in LOGGER_PREFIXES:
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001  (a broken record: keep its format string)
        message = str(record.msg)
    record.msg, record.args = _apply(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    record.exc_text = record.exc_text and _apply(record.exc_text)
    record.stack_info = record.stack_info and _apply(record.stack_info)
    return record


@contextlib.contextmanager
def redacting(redactor: Redactor) -> Iterator[None]:
    """While the block runs, records logged by kaggletools, kaggle, kagglesdk, urllib3 and requests
    (and their child loggers) are redacted with `redactor` as they are made, before any filter or
    handler sees them (a record factory: it also covers loggers that do not exist yet)."""
    with _LOCK:
        _ACTIVE.append(redactor)
        if not _PREVIOUS_FACTORY:  # (else ours is still in the chain, under a factory set later)
            _PREVIOUS_FACTORY.append(logging.getLogRecordFactory())
            logging.setLogRecordFactory(_record_factory)
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE.remove(redactor)
            if not _ACTIVE and logging.getLogRecordFactory() is _record_factory:
                logging.setLogRecordFactory(_PREVIOUS_FACTORY.pop())


class RedactingWriter:
    """A text stream that redacts what is written to `stream`, line by line (``\\n`` or ``\\r``,
    so progress bars still update); `finish()` writes what is left."""

    def __init__(self, stream: TextIO, redactor: Redactor):
        self._stream, self._redact, self._buf = stream, redactor, ""

    def write(self, text: str) -> int:
        self._buf += text
        cut = max(self._buf.rfind("\n"), self._buf.rfind("\r"))
        if cut >= 0:
            done, self._buf = self._buf[:cut + 1], self._buf[cut + 1:]
            self._stream.write(self._redact(done))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def finish(self) -> None:
        if self._buf:
            self._stream.write(self._redact(self._buf))
            self._buf = ""
        self._stream.flush()

    def __getattr__(self, name: str):  # isatty, encoding, fileno... of the real stream
        return getattr(self._stream, name)


# -- credentials -----------------------------------------------------------------------------
class _Secret:
    """Holds a secret; prints as ***."""

    __slots__ = ("_value",)

    def __init__(self, value: str = ""):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'" if self._value else "''"

    __str__ = __repr__

    def __deepcopy__(self, memo) -> "_Secret":
        return self

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Credentials:
    """Where the credentials come from. `method`: "token" (KAGGLE_API_TOKEN / access_token file),
    "key" (username + legacy API key) or "oauth" (``kaggle auth login``). The secret itself is
    kept out of repr/str; `username` is None for a token until Kaggle has been asked."""

    source: str
    method: str
    username: str | None = None
    path: Path | None = None
    secret: _Secret = field(default_factory=_Secret, repr=False, compare=False)

    def __str__(self) -> str:
        who = f" for {self.username}" if self.username else ""
        return f"Kaggle {self.method} credentials{who} from {self.source}"

    def redactor(self) -> Redactor:
        return Redactor([self.secret.reveal()], [self.username])

    def redact(self, text: str) -> str:
        """`text` with the secret, in any form a server might echo it (see `redact`), as ***."""
        return self.redactor()(text)


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def config_paths() -> list[Path]:
    """kaggle.json locations, in the client's order: $KAGGLE_CONFIG_DIR alone when set, else
    ~/.kaggle, else $XDG_CONFIG_HOME/kaggle (~/.config/kaggle)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return [Path(os.environ["KAGGLE_CONFIG_DIR"]).expanduser() / "kaggle.json"]
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config")
    return [_home() / ".kaggle" / "kaggle.json", xdg / "kaggle" / "kaggle.json"]


def _access_token_paths() -> list[Path]:
    return [_home() / ".kaggle" / "access_token", _home() / ".kaggle" / "access_token.txt"]


def _oauth_path() -> Path:
    return _home() / ".kaggle" / "credentials.json"


def setup_help() -> str:
    """The fix, in three short lines (README "Kaggle credentials" has the rest)."""
    json_path = config_paths()[0]
    return "\n".join([f"Create a token at {SETTINGS_URL} (API) and export KAGGLE_API_TOKEN=<token>,",
                      f"or save kaggle.json as {json_path} (then chmod 600 it),",
                      "or set KAGGLE_USERNAME and KAGGLE_KEY."])


def _is_file(name: str) -> bool:
    try:
        return Path(name).is_file()
    except (OSError, ValueError):
        return False


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (OSError, ValueError):
        return None


def check_permissions(path: Path) -> None:
    """Warn (UserWarning) when group or other users may access the credentials file `path`."""
    if os.name == "nt":
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(f"Your Kaggle credentials file {path} is readable by other users on this system; "
                      f"fix it with:  chmod 600 {path}", UserWarning, stacklevel=3)


def _read_kaggle_json(path: Path) -> tuple[str, str]:
    fix = (f"It must be the JSON file downloaded from {SETTINGS_URL}, like "
           '{"username": "<your user name>", "key": "<your API key>"}; '
           f"download a new one, save it as {path} and run: chmod 600 {path}")
    try:
        text = path.read_text()
    except OSError as e:
        raise KaggleCredentialsError(f"Cannot read Kaggle credentials file {path} ({e.strerror}). {fix}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise KaggleCredentialsError(f"Kaggle credentials file {path} is not valid JSON. {fix}") from None
    if not isinstance(data, dict):
        raise KaggleCredentialsError(f"Kaggle credentials file {path} does not hold a JSON object. {fix}")
    # like the client: KAGGLE_USERNAME / KAGGLE_KEY, when set, override the file's values
    username = os.environ.get("KAGGLE_USERNAME") or data.get("username")
    key = os.environ.get("KAGGLE_KEY") or data.get("key")
    missing = [name for name, value in (("username", username), ("key", key))
               if not isinstance(value, str) or not value.strip()]
    if missing:
        raise KaggleCredentialsError(
            f"Kaggle credentials file {path} has no {' or '.join(repr(m) for m in missing)}. {fix}")
    return username.strip(), key.strip()


def find_credentials() -> Credentials:
    """Find credentials the way the official client does: KAGGLE_API_TOKEN (a token, or a file
    holding one), ~/.kaggle/access_token, KAGGLE_USERNAME + KAGGLE_KEY, kaggle.json
    ($KAGGLE_CONFIG_DIR, ~/.kaggle, $XDG_CONFIG_HOME/kaggle), ~/.kaggle/credentials.json (OAuth).
    Raises KaggleCredentialsError explaining the set-up when none (or a broken one) is found."""
    env = os.environ
    token = env.get("KAGGLE_API_TOKEN")
    if token:
        if _is_file(token):
            value = _read_text(Path(token))
            if value:
                check_permissions(Path(token))
                return Credentials(f"the file named by KAGGLE_API_TOKEN ({token})", "token",
                                   path=Path(token), secret=_Secret(value))
        elif _names_a_folder(token):
            raise KaggleCredentialsError(f"KAGGLE_API_TOKEN names the folder {token}; set it to the token itself or "
                                         "to the path of a file holding it")
        else:
            return Credentials("the KAGGLE_API_TOKEN environment variable", "token", secret=_Secret(token.strip()))
    for path in _access_token_paths():
        value = _read_text(path) if path.is_file() else None
        if value:
            check_permissions(path)
            return Credentials(str(path), "token", path=path, secret=_Secret(value))

    user, key = env.get("KAGGLE_USERNAME", "").strip(), env.get("KAGGLE_KEY", "").strip()
    if user and key:
        return Credentials("the KAGGLE_USERNAME and KAGGLE_KEY environment variables", "key",
                           username=user, secret=_Secret(key))

    for path in config_paths():
        if path.is_file():
            check_permissions(path)
            username, key = _read_kaggle_json(path)
            return Credentials(str(path), "key", username=username, path=path, secret=_Secret(key))

    oauth = _oauth_path()
    if oauth.is_file():
        try:
            data = json.loads(oauth.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("refresh_token"):
            check_permissions(oauth)
            return Credentials(f"{oauth} (kaggle auth login)", "oauth", username=data.get("username"),
                               path=oauth, secret=_Secret(str(data["refresh_token"])))

    partial = ""
    if bool(user) != bool(key):
        have, lack = ("KAGGLE_USERNAME", "KAGGLE_KEY") if user else ("KAGGLE_KEY", "KAGGLE_USERNAME")
        partial = f" ({have} is set but {lack} is not: set both, or neither)"
    raise KaggleCredentialsError(f"No Kaggle API credentials found{partial}.\n"
                                 + setup_help())


def _names_a_folder(value: str) -> bool:
    """A KAGGLE_API_TOKEN value that is an existing folder's path: a mistake, not a token."""
    try:
        return bool(value) and Path(value).expanduser().is_dir()
    except (OSError, ValueError):
        return False


def known_secrets() -> tuple[list[str], list[str]]:
    """(secrets, usernames) from every credential source the client might use, whichever wins:
    redacting all of them also covers a client that falls back to another source."""
    env = os.environ
    secrets = [env.get("KAGGLE_KEY", "")]
    users = [env.get("KAGGLE_USERNAME", "")]
    token = env.get("KAGGLE_API_TOKEN", "")
    secrets.append((_read_text(Path(token)) or "") if _is_file(token) else "" if _names_a_folder(token) else token)
    secrets += [_read_text(p) or "" for p in _access_token_paths()]
    for path in config_paths() + [_oauth_path()]:
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            secrets += [str(data.get(k) or "") for k in ("key", "refresh_token", "access_token")]
            users.append(str(data.get("username") or ""))
    return [s for s in secrets if s], [u for u in users if u]
