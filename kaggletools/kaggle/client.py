"""The official Kaggle client (``kaggle`` 2.x on ``kagglesdk``), made safe to call from a library:
imported lazily, authenticated with the credentials `kaggletools.kaggle.credentials` found, its output and
log records redacted, its exceptions (and ``SystemExit``) turned into ``KaggleError`` subclasses
whose messages say what to do and hold no secret. The operations live in `kaggletools.kaggle.competitions`.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any, Iterator

from kaggletools.kaggle.credentials import (SETTINGS_URL, Credentials, KaggleCredentialsError, KaggleError,
                                     KaggleForbiddenError, KaggleNetworkError, KaggleNotFoundError,
                                     KaggleRateLimitError, RedactingWriter, Redactor, config_paths,
                                     find_credentials, known_secrets, redacting, setup_help)

if TYPE_CHECKING:  # pragma: no cover
    from kaggle.api.kaggle_api_extended import KaggleApi


__all__ = ["client", "KaggleSubmissionFailed", "KaggleSubmissionPending"]

log = logging.getLogger("kaggletools.kaggle.competitions")

COMPETITION_URL = "https://www.kaggle.com/competitions/{slug}"
RULES_URL = COMPETITION_URL + "/rules"


class KaggleSubmissionFailed(KaggleError):
    """Kaggle could not score the submission (status ERROR); `error_description` says why."""

    def __init__(self, message: str, submission: object):
        super().__init__(message)
        self.submission, self.ref, self.error_description = submission, submission.ref, submission.error_description


class KaggleSubmissionPending(KaggleError):
    """The submission was still being scored when `wait_for_score` gave up waiting."""

    def __init__(self, message: str, slug: str, ref: int, submission: "object | None"):
        super().__init__(message)
        self.slug, self.ref, self.submission = slug, ref, submission


# -- the official client ---------------------------------------------------------------------
def _kaggle_api_class():
    """Import the client lazily (importing `kaggle` runs an authentication and prints help)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi
    except SystemExit:
        raise KaggleCredentialsError("The kaggle client exited while being imported.\n" + setup_help()) from None
    except ImportError as e:
        raise KaggleError(f"The official Kaggle client is not installed ({e}): "
                          "pip install 'kaggle>=2.2,<3'") from None
    return KaggleApi


def _creds_of(api: Any) -> Credentials:
    return getattr(api, "_kaggletools_credentials", None) or Credentials("a caller-supplied client", "unknown")


def _redactor_of(api: Any) -> Redactor:
    """Covers our credentials, what the client authenticated with and every other credential source."""
    cached = getattr(api, "_kaggletools_redactor", None)
    if cached is not None:
        return cached
    creds, cfg = _creds_of(api), getattr(api, "config_values", None) or {}
    secrets, users = known_secrets()
    red = Redactor(secrets + [creds.secret.reveal(), cfg.get("key"), cfg.get("token")],
                   users + [creds.username, cfg.get("username")])
    with contextlib.suppress(AttributeError):
        api._kaggletools_redactor = red
    return red


def client(credentials: Credentials | None = None, *, verbose: bool = False) -> "KaggleApi":
    """An authenticated official ``KaggleApi``; credentials are checked before ``kaggle`` is
    imported and ``SystemExit`` from the client becomes KaggleCredentialsError. `verbose`: the
    client prints each request and response (redacted) instead of keeping quiet."""
    creds = credentials or find_credentials()
    KaggleApi = _kaggle_api_class()
    api = KaggleApi()
    # The client computes these when first imported; follow the current environment instead.
    config = creds.path if creds.method == "key" and creds.path else config_paths()[0]
    api.config_dir = str(config.parent)
    api.config = str(config)
    api.args = (["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []) + (
        ["--verbose"] if verbose else [])
    api._kaggletools_credentials, api._kaggletools_verbose = creds, verbose
    if creds.method == "token":
        exit_error = KaggleCredentialsError(
            f"Kaggle did not accept the API token from {creds.source} (invalid or expired). "
            f"Create a new token at {SETTINGS_URL} and replace it.\n" + setup_help())
    else:
        exit_error = KaggleCredentialsError(f"The Kaggle client could not authenticate with {creds}.\n" + setup_help())
    with calling(api, "authenticating", exit_error=exit_error):
        api.authenticate()
    api._kaggletools_redactor = None  # now also covers what the client authenticated with
    method = str(api.config_values.get("auth_method", ""))
    if creds.method == "token" and method and "TOKEN" not in method:
        log.warning("Kaggle did not accept the token from %s; the client fell back to %s.", creds.source, method)
    return api


@contextlib.contextmanager
def _client_io(red: Redactor, *, show: bool) -> Iterator[io.StringIO]:
    """While the client runs: log records redacted; its stdout/stderr shown redacted (`show`) or
    captured (yielded, and logged at debug level, redacted)."""
    buf = io.StringIO()
    out, err = (RedactingWriter(sys.stdout, red), RedactingWriter(sys.stderr, red)) if show else (buf, buf)
    try:
        with redacting(red), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield buf
    finally:
        if show:
            out.finish()
            err.finish()
        text = red(buf.getvalue().strip())
        buf.seek(0), buf.truncate(), buf.write(text)
        if text:
            log.debug("kaggle client said: %s", text)


def _scrub(exc: BaseException | None, red: Redactor, seen: set[int] | None = None) -> None:
    """Redact, in place, the messages of `exc` and of the exceptions it holds or was caused by."""
    seen = set() if seen is None else seen
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return red(value)
        if isinstance(value, BaseException):
            _scrub(value, red, seen)
        return value

    with contextlib.suppress(Exception):
        exc.args = tuple(clean(a) for a in exc.args)
    names = list(getattr(exc, "__dict__", {})) + ["strerror", "filename", "filename2"]
    for name in names:
        value = getattr(exc, name, None)
        if isinstance(value, (str, BaseException)):
            with contextlib.suppress(Exception):
                setattr(exc, name, clean(value))
    _scrub(exc.__cause__, red, seen)
    _scrub(exc.__context__, red, seen)


@contextlib.contextmanager
def calling(api: Any, action: str, slug: str | None = None, file: str | None = None, *, show: bool = False,
             exit_error: KaggleError | None = None) -> Iterator[io.StringIO]:
    """Run client calls with `_client_io`, turning their exceptions (and any SystemExit) into
    KaggleErrors whose messages, like those of their causes, are redacted."""
    red = _redactor_of(api)
    with (_client_io(red, show=show or getattr(api, "_kaggletools_verbose", False)) as out, _request_timeout(),
          our_bars(action)):
        try:
            yield out
        except SystemExit:
            raise exit_error or KaggleError(f"The Kaggle client gave up while {action} (it called exit()).") from None
        except Exception as e:
            _scrub(e, red)
            err = _translate(e, _creds_of(api), red, action=action, slug=slug, file=file)
            if err is None or err is e:
                raise
            raise err from e


@contextlib.contextmanager
def our_bars(action: str) -> Iterator[None]:
    """While the client runs, its tqdm bars (download, upload) are kaggletools.progress bars: tqdm
    on a terminal, plain lines in a log file, nothing under --quiet (the client's `quiet` too)."""
    extended = sys.modules.get("kaggle.api.kaggle_api_extended")  # imported by `client()`, never here
    original = getattr(extended, "tqdm", None)
    if original is None:
        yield
        return
    from kaggletools import progress

    def bar(iterable=None, *args, total=None, initial=0, disable=False, desc=None, unit="it", **ignored):
        made = progress.bar(iterable, total=total, desc=desc or action, unit=unit, enabled=not disable,
                            bytes_=unit == "B")
        if initial:
            made.update(initial)
        return made

    extended.tqdm = bar
    try:
        yield
    finally:
        extended.tqdm = original


SOCKET_TIMEOUT = 60.0  # s without a byte from Kaggle before a call fails (the client sets none on its calls)


@contextlib.contextmanager
def _request_timeout(seconds: float | None = None):
    """Within the block, HTTP requests the client sends without a timeout get one (`seconds`,
    default SOCKET_TIMEOUT, for connecting and for each read), so a server that never answers is
    an error, not a hang. (requests passes timeout=None on as "wait forever"; measured: a silent
    loopback server held `kaggletools download` for over 150 s before this.)"""
    import requests.adapters

    send = requests.adapters.HTTPAdapter.send
    limit = seconds or SOCKET_TIMEOUT

    def send_with_timeout(self, request, stream=False, timeout=None, *args, **kwargs):
        return send(self, request, stream, limit if timeout is None else timeout, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send_with_timeout
    try:
        yield
    finally:
        requests.adapters.HTTPAdapter.send = send


def _translate(exc: BaseException, creds: Credentials, red: Redactor, *, action: str, slug: str | None = None,
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
        detail = red(str(exc)).strip() or "no details"
        what = f"competition '{slug}'" if slug else "Kaggle"
        if status == 401:
            err: KaggleError = KaggleCredentialsError(
                f"Kaggle rejected the credentials from {creds.source} while {action} (HTTP 401: invalid "
                f"credentials). Create a new API token at {SETTINGS_URL} and update them.\n" + setup_help())
        elif status == 403:
            hint = (f"Accept the competition rules at {RULES_URL.format(slug=slug)}, then retry"
                    if slug else "Check that your account may do this")
            err = KaggleForbiddenError(f"Kaggle refused access to {what} while {action} (HTTP 403: {detail}). "
                                       f"{hint}. (Using {creds}.)")
        elif status == 404 and file:
            err = KaggleNotFoundError(f"File '{file}' not found in {what} (HTTP 404: {detail}).")
        elif status == 404:
            err = KaggleNotFoundError(
                f"{what[0].upper() + what[1:]} was not found while {action} (HTTP 404: {detail}). Check the "
                f"competition slug: it is the last part of {COMPETITION_URL.format(slug=slug or '<slug>')}.")
        elif status == 429:
            after = response.headers.get("Retry-After") if response is not None else None
            wait = f" (the server asks for {red(after)} s)" if after and after.strip() not in ("0", "") else ""
            err = KaggleRateLimitError(f"Kaggle rate limited this request while {action} (HTTP 429: {detail}); "
                                       f"wait a minute{wait} and retry.")
        else:
            err = KaggleError(f"Kaggle answered HTTP {status} while {action} for {what}: {detail}. "
                              "Retry later; if it persists, check https://www.kaggle.com for outages.")
        err.status = status
        return err
    if isinstance(exc, (ValueError, TypeError, KeyError, AttributeError)) and not isinstance(
            exc, (json.JSONDecodeError, UnicodeDecodeError)) and _reading_an_answer(exc):
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        return KaggleError(f"Kaggle answered something the client cannot read while {action} ({type(exc).__name__}"
                           f"{': ' + red(first) if first else ''}); retry later, or update the kaggle package.")
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):  # an HTML page (a proxy, maintenance)
        return KaggleNetworkError(f"Kaggle answered with something that is not its API's JSON while {action} (a "
                                  "web page from a proxy, a login wall or maintenance?); retry later, and check "
                                  "HTTPS_PROXY if you use a proxy.")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in str(exc):
        return KaggleNetworkError(f"The transfer from Kaggle was cut short while {action} "
                                  f"({_network_reason(exc, red)}); nothing of it was kept: run the command again.")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                        TimeoutError) + u3_errors):
        url = getattr(getattr(exc, "request", None), "url", None)
        where = " at {0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(url)) if url else ""
        return KaggleNetworkError(
            f"Could not reach Kaggle{red(where)} while {action} ({_network_reason(exc, red)}). "
            "Check your internet connection (and HTTPS_PROXY if you use a proxy), then retry.")
    return None


def _reading_an_answer(exc: BaseException) -> bool:
    """Whether `exc` arose while the client turned a server's answer into objects (kagglesdk)."""
    import traceback

    return any("kagglesdk" in frame.filename and ("kaggle_object" in frame.filename or
                                                  frame.name == "_prepare_response")
               for frame in traceback.extract_tb(exc.__traceback__))


def _network_reason(exc: BaseException, red: Redactor) -> str:
    text = red(str(exc))
    errno = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno[-1].strip()
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
