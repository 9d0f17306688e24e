"""Thin, safe wrapper over the official Kaggle client (``kaggle`` 2.x, built on ``kagglesdk``).

- Credentials are found first (same order as the client) and explained when missing or broken;
  ``kaggle`` is imported lazily, only then (it authenticates, and may ``exit(1)``, at import).
- Client failures become ``KaggleError`` subclasses with messages that say what to do.
- Secrets (API key / token) never appear in reprs, messages or logs.

    from kaggletools import kaggle_api
    kaggle_api.list_files("dogs-vs-cats-redux-kernels-edition")
    kaggle_api.download("dogs-vs-cats-redux-kernels-edition", "data/dogs")   # -> data/dogs/<slug>.zip
    kaggle_api.submit("dogs-vs-cats-redux-kernels-edition", "sub.csv", "resnet34, tta")
    kaggle_api.submissions("dogs-vs-cats-redux-kernels-edition")             # -> DataFrame
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import stat
import urllib.parse
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from kaggle.api.kaggle_api_extended import KaggleApi

__all__ = [
    "Credentials", "RemoteFile", "SubmitResult",
    "KaggleError", "KaggleCredentialsError", "KaggleForbiddenError", "KaggleNotFoundError",
    "KaggleRateLimitError", "KaggleNetworkError",
    "find_credentials", "client", "list_files", "download", "submit", "submissions", "leaderboard",
]

log = logging.getLogger(__name__)

SETTINGS_URL = "https://www.kaggle.com/settings"
COMPETITION_URL = "https://www.kaggle.com/competitions/{slug}"
RULES_URL = COMPETITION_URL + "/rules"
SUBMISSION_COLUMNS = ["ref", "date", "file_name", "description", "status", "public_score", "private_score"]
LEADERBOARD_COLUMNS = ["team_id", "team_name", "submission_date", "score"]


# -- errors ----------------------------------------------------------------------------------
class KaggleError(RuntimeError):
    """Anything that went wrong talking to Kaggle."""


class KaggleCredentialsError(KaggleError):
    """No usable credentials, or Kaggle rejected them (401)."""


class KaggleForbiddenError(KaggleError):
    """403: usually the competition's rules were not accepted."""


class KaggleNotFoundError(KaggleError):
    """404: unknown competition or file."""


class KaggleRateLimitError(KaggleError):
    """429: too many requests."""


class KaggleNetworkError(KaggleError):
    """Kaggle could not be reached (connection refused, DNS, timeout, cut download)."""


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

    def redact(self, text: str) -> str:
        """`text` with the secret (if any) replaced by ***."""
        secret = self.secret.reveal()
        return text.replace(secret, "***") if secret and len(secret) >= 4 else text


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def _config_paths() -> list[Path]:
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


def _setup_help(searched: list[Path] | None = None) -> str:
    json_path = _config_paths()[0]
    lines = [
        "Set up Kaggle API credentials in one of these ways:",
        f"  1. Create an API token at {SETTINGS_URL} (section 'API'), then",
        "       export KAGGLE_API_TOKEN=<the token>        (or save it in ~/.kaggle/access_token)",
        f"  2. Or download kaggle.json from {SETTINGS_URL} ('Create Legacy API Key') and put it at",
        f"       {json_path}   then run:  chmod 600 {json_path}",
        "     (KAGGLE_CONFIG_DIR selects another folder)",
        "  3. Or set both KAGGLE_USERNAME and KAGGLE_KEY environment variables.",
    ]
    if searched:
        lines.append("Looked for: KAGGLE_API_TOKEN, KAGGLE_USERNAME + KAGGLE_KEY, "
                     + ", ".join(str(p) for p in searched))
    return "\n".join(lines)


def _is_file(name: str) -> bool:
    try:
        return Path(name).is_file()
    except (OSError, ValueError):
        return False


def _read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _check_permissions(path: Path) -> None:
    if os.name == "nt":
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        msg = (f"Your Kaggle credentials file {path} is readable by other users on this system; "
               f"fix it with:  chmod 600 {path}")
        warnings.warn(msg, stacklevel=3)


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
            value = _read_token_file(Path(token))
            if value:
                return Credentials(f"the file named by KAGGLE_API_TOKEN ({token})", "token",
                                   path=Path(token), secret=_Secret(value))
        else:
            return Credentials("the KAGGLE_API_TOKEN environment variable", "token", secret=_Secret(token.strip()))
    for path in _access_token_paths():
        value = _read_token_file(path) if path.is_file() else None
        if value:
            _check_permissions(path)
            return Credentials(str(path), "token", path=path, secret=_Secret(value))

    user, key = env.get("KAGGLE_USERNAME", "").strip(), env.get("KAGGLE_KEY", "").strip()
    if user and key:
        return Credentials("the KAGGLE_USERNAME and KAGGLE_KEY environment variables", "key",
                           username=user, secret=_Secret(key))

    searched = _config_paths()
    for path in searched:
        if path.is_file():
            _check_permissions(path)
            username, key = _read_kaggle_json(path)
            return Credentials(str(path), "key", username=username, path=path, secret=_Secret(key))

    oauth = _oauth_path()
    if oauth.is_file():
        try:
            data = json.loads(oauth.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("refresh_token"):
            _check_permissions(oauth)
            return Credentials(f"{oauth} (kaggle auth login)", "oauth", username=data.get("username"),
                               path=oauth, secret=_Secret(str(data["refresh_token"])))

    partial = ""
    if bool(user) != bool(key):
        have, lack = ("KAGGLE_USERNAME", "KAGGLE_KEY") if user else ("KAGGLE_KEY", "KAGGLE_USERNAME")
        partial = f" ({have} is set but {lack} is not: set both, or neither)"
    raise KaggleCredentialsError(f"No Kaggle API credentials found{partial}.\n"
                                 + _setup_help(searched + _access_token_paths()[:1]))


# -- the official client ---------------------------------------------------------------------
@contextlib.contextmanager
def _captured_output(creds: Credentials | None = None) -> Iterator[io.StringIO]:
    """Swallow what the client prints outside of progress bars (auth help, warnings we rephrase);
    it is logged at debug level, redacted."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    finally:
        text = buf.getvalue().strip()
        if text:
            log.debug("kaggle client said: %s", creds.redact(text) if creds else "<hidden>")


def _kaggle_api_class():
    """Import the client lazily (importing `kaggle` runs an authentication and prints help)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi
    except SystemExit:
        raise KaggleCredentialsError("The kaggle client exited while being imported.\n" + _setup_help()) from None
    except ImportError as e:
        raise KaggleError(f"The official Kaggle client is not installed ({e}): "
                          "pip install 'kaggle>=2.2,<3'") from None
    return KaggleApi


def client(credentials: Credentials | None = None) -> "KaggleApi":
    """An authenticated official ``KaggleApi``; credentials are checked before ``kaggle`` is
    imported and ``SystemExit`` from the client becomes KaggleCredentialsError."""
    creds = credentials or find_credentials()
    KaggleApi = _kaggle_api_class()
    api = KaggleApi()
    # The client computes these when first imported; follow the current environment instead.
    config = creds.path if creds.method == "key" and creds.path else _config_paths()[0]
    api.config_dir = str(config.parent)
    api.config = str(config)
    api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []
    try:
        with _captured_output(creds):
            api.authenticate()
    except SystemExit:
        if creds.method == "token":
            raise KaggleCredentialsError(
                f"Kaggle did not accept the API token from {creds.source} (invalid or expired). "
                f"Create a new token at {SETTINGS_URL} and replace it.\n" + _setup_help()) from None
        raise KaggleCredentialsError(f"The Kaggle client could not authenticate with {creds}.\n"
                                     + _setup_help()) from None
    except Exception as e:
        err = _translate(e, creds, action="authenticating")
        if err is None:
            raise
        raise err from e
    method = str(api.config_values.get("auth_method", ""))
    if creds.method == "token" and method and "TOKEN" not in method:
        log.warning("Kaggle did not accept the token from %s; the client fell back to %s.", creds.source, method)
    api._kaggletools_credentials = creds  # for error messages
    return api


def _creds_of(api: Any) -> Credentials:
    return getattr(api, "_kaggletools_credentials", None) or Credentials("a caller-supplied client", "unknown")


def _translate(exc: BaseException, creds: Credentials, *, action: str, slug: str | None = None,
               file: str | None = None) -> KaggleError | None:
    """The KaggleError for a client exception (None: leave it alone)."""
    import requests

    try:
        from urllib3 import exceptions as u3
        u3_errors: tuple = (u3.ProtocolError, u3.TimeoutError, u3.NewConnectionError)
    except ImportError:  # pragma: no cover
        u3_errors = ()

    if isinstance(exc, KaggleError):
        return exc
    if isinstance(exc, requests.exceptions.HTTPError):
        response = exc.response
        status = response.status_code if response is not None else None
        detail = creds.redact(str(exc)).strip() or "no details"
        what = f"competition '{slug}'" if slug else "Kaggle"
        if status == 401:
            return KaggleCredentialsError(
                f"Kaggle rejected the credentials from {creds.source} while {action} (HTTP 401: invalid "
                f"credentials). Create a new API token at {SETTINGS_URL} and update them.\n" + _setup_help())
        if status == 403:
            hint = (f"Accept the competition rules at {RULES_URL.format(slug=slug)}, then retry"
                    if slug else "Check that your account may do this")
            return KaggleForbiddenError(
                f"Kaggle refused access to {what} while {action} (HTTP 403: {detail}). {hint}. "
                f"(Using {creds}.)")
        if status == 404:
            if file:
                return KaggleNotFoundError(f"File '{file}' not found in {what} (HTTP 404: {detail}).")
            return KaggleNotFoundError(
                f"{what[0].upper() + what[1:]} was not found while {action} (HTTP 404: {detail}). Check the "
                f"competition slug: it is the last part of {COMPETITION_URL.format(slug=slug or '<slug>')}.")
        if status == 429:
            after = response.headers.get("Retry-After") if response is not None else None
            wait = f" (the server asks for {after} s)" if after and after.strip() not in ("0", "") else ""
            return KaggleRateLimitError(
                f"Kaggle rate limited this request while {action} (HTTP 429: {detail}); "
                f"wait a minute{wait} and retry.")
        return KaggleError(f"Kaggle answered HTTP {status} while {action} for {what}: {detail}. "
                           "Retry later; if it persists, check https://www.kaggle.com for outages.")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError, ConnectionError, TimeoutError) + u3_errors):
        return KaggleNetworkError(
            f"Could not reach Kaggle{_where(exc)} while {action} ({_network_reason(exc, creds)}). "
            "Check your internet connection (and HTTPS_PROXY if you use a proxy), then retry.")
    return None


def _where(exc: BaseException) -> str:
    url = getattr(getattr(exc, "request", None), "url", None)
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    return f" at {parts.scheme}://{parts.netloc}"


def _network_reason(exc: BaseException, creds: Credentials) -> str:
    text = creds.redact(str(exc))
    errno = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno[-1].strip()
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _calling(api: Any, action: str, slug: str | None = None, file: str | None = None) -> Iterator[None]:
    """Run a client call, turning its exceptions (and any SystemExit) into KaggleErrors."""
    creds = _creds_of(api)
    try:
        yield
    except SystemExit:
        raise KaggleError(f"The Kaggle client gave up while {action} (it called exit()).") from None
    except Exception as e:
        err = _translate(e, creds, action=action, slug=slug, file=file)
        if err is None or err is e:
            raise
        raise err from e


# -- operations -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    """One data file of a competition."""

    name: str
    size: int
    created: datetime | None = None

    def __str__(self) -> str:
        return f"{self.name}  ({_human(self.size)})"


@dataclass(frozen=True)
class SubmitResult:
    ref: int
    message: str


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def list_files(slug: str, api: "KaggleApi | None" = None) -> list[RemoteFile]:
    """The competition's data files (all pages)."""
    api = api or client()
    out: list[RemoteFile] = []
    token: str | None = None
    seen: set[str] = set()
    with _calling(api, "listing files", slug):
        for _ in range(10_000):
            with _captured_output(_creds_of(api)):
                resp = api.competition_list_files(slug, page_token=token, page_size=20)
            for f in resp.files or []:
                out.append(RemoteFile(f.name or f.ref, int(f.total_bytes or 0), f.creation_date))
            token = resp.next_page_token
            if not token or token in seen:
                break
            seen.add(token)
    return out


def download(slug: str, dest: str | Path, file: str | None = None, force: bool = False,
             quiet: bool = False, api: "KaggleApi | None" = None) -> Path:
    """Download all files (-> ``<dest>/<slug>.zip``, not unzipped) or one `file` (-> ``<dest>/<name>``).
    An up-to-date local copy is kept unless `force`. The client's progress bar shows unless `quiet`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    api = api or client()
    try:
        with _calling(api, f"downloading {file or 'all files'}", slug, file):
            if file is None:
                api.competition_download_files(slug, path=str(dest), force=force, quiet=quiet)
            else:
                api.competition_download_file(slug, file, path=str(dest), force=force, quiet=quiet)
    except KaggleNotFoundError as e:
        if file is None:
            raise
        try:  # which one is missing: the competition or the file?
            names = [f.name for f in list_files(slug, api=api)]
        except KaggleError:
            raise e from None
        shown = ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")
        raise KaggleNotFoundError(f"File '{file}' not found in competition '{slug}'. "
                                  f"Files there: {shown or '(none)'}.") from None
    except ValueError as e:  # size check after a cut download
        raise KaggleNetworkError(f"Download of {file or slug + '.zip'} was incomplete ({e}); retry.") from e
    path = dest / (f"{slug}.zip" if file is None else Path(file).name)
    if not path.exists():
        stem = f"{slug}." if file is None else Path(file).name
        found = sorted(dest.glob(f"{stem}*"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise KaggleError(f"The Kaggle client reported success but {path} is missing.")
        path = found[-1]
    return path


def submit(slug: str, csv_path: str | Path, message: str, quiet: bool = False,
           api: "KaggleApi | None" = None) -> SubmitResult:
    """Upload a submission file with a description."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"Submission file not found: {csv_path}")
    api = api or client()
    with _calling(api, f"submitting {csv_path.name}", slug):
        resp = api.competition_submit(str(csv_path), message, slug, quiet=quiet)
    if resp.message == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", object()):
        raise KaggleError(f"Uploading {csv_path} to competition '{slug}' failed; retry "
                          f"(or submit by hand at {COMPETITION_URL.format(slug=slug)}/submissions).")
    log.info("submitted %s to %s: %s", csv_path, slug, resp.message)
    return SubmitResult(ref=int(resp.ref or 0), message=resp.message or "")


def _score(value: Any) -> float:
    try:
        return float(value) if value not in (None, "") else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _enum_name(value: Any) -> str:
    return (getattr(value, "name", None) or str(value or "")).lower()


def submissions(slug: str, api: "KaggleApi | None" = None) -> "pd.DataFrame":
    """Your submissions, newest first: ref, date, file_name, description, status, public_score,
    private_score (scores are floats, NaN when not scored)."""
    import pandas as pd

    api = api or client()
    rows: list[dict] = []
    seen: set[int] = set()
    page_size = 20
    with _calling(api, "listing submissions", slug):
        for page in range(1, 1000):
            with _captured_output(_creds_of(api)):
                subs = api.competition_submissions(slug, page_number=page, page_size=page_size) or []
            new = [s for s in subs if s is not None and s.ref not in seen]
            for s in new:
                seen.add(s.ref)
                rows.append({"ref": s.ref, "date": s.date, "file_name": s.file_name, "description": s.description,
                             "status": _enum_name(s.status), "public_score": _score(s.public_score),
                             "private_score": _score(s.private_score)})
            if len(subs) < page_size or not new:
                break
    df = pd.DataFrame(rows, columns=SUBMISSION_COLUMNS)
    df["date"] = pd.to_datetime(df["date"])
    return df


def leaderboard(slug: str, top: int = 20, api: "KaggleApi | None" = None) -> "pd.DataFrame":
    """The first `top` rows of the public leaderboard: team_id, team_name, submission_date, score."""
    import pandas as pd

    api = api or client()
    with _calling(api, "reading the leaderboard", slug):
        with _captured_output(_creds_of(api)):
            rows = api.competition_leaderboard_view(slug, page_size=top) or []
    df = pd.DataFrame([{"team_id": r.team_id, "team_name": r.team_name, "submission_date": r.submission_date,
                        "score": _score(r.score)} for r in rows if r is not None], columns=LEADERBOARD_COLUMNS)
    df["submission_date"] = pd.to_datetime(df["submission_date"])
    return df
