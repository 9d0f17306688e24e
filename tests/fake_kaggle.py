"""A stand-in Kaggle server on loopback that the REAL official client (kaggle 2.2 / kagglesdk) talks to.

It speaks what kagglesdk speaks: ``POST /api/v1/<service>/<Method>`` with a JSON body, errors as
HTTP status + ``{"code": N, "message": ...}``, downloads as a 302 redirect to a blob URL, and
submissions as ``StartSubmissionUpload`` -> ``PUT <createUrl>`` -> ``CreateSubmission``.

kagglesdk has no port setting: ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` means ``http://localhost``
(port 80). By default the server binds an ephemeral port on 127.0.0.1 and points kagglesdk's
LOCALHOST endpoint at it (in-process, via monkeypatch); pass ``port=80`` to serve the unpatched
``http://localhost`` instead (needed when the client runs in a subprocess, e.g. the CLI).

Use from any test::

    from fake_kaggle import fake_kaggle, redux_files

    def test_something(tmp_path, monkeypatch):
        with fake_kaggle(tmp_path, monkeypatch=monkeypatch) as server:
            ...                         # the official client now talks to `server`
            assert server.calls("DownloadDataFiles")

or the fixture (import it into your test module: ``from fake_kaggle import kaggle_server``)::

    def test_other(kaggle_server):
        server = kaggle_server(rules_accepted=False)
"""
from __future__ import annotations

import base64
import contextlib
import csv
import email.utils
import io
import itertools
import json
import os
import socket
import threading
import time
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest

SLUG = "dogs-vs-cats-redux-kernels-edition"
TITLE = "Dogs vs. Cats Redux: Kernels Edition"
USERNAME = "fakeuser"
KEY = "0123456789abcdef0123456789abcdef"  # what a legacy kaggle.json key looks like
TOKEN = "KGAT_fake0123456789abcdef0123456789"  # what a new-style API token looks like
DISPLAY_NAME = "Fake User"  # the user's display name: the name of their (one-person) team

API_PREFIX = "/api/v1/"
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


# -- generated competition data -------------------------------------------------------------
def _jpeg(color: tuple[int, int, int], side: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def redux_files(n_train: int = 4, n_test: int = 4) -> dict[str, bytes]:
    """The data files of a tiny Dogs vs. Cats Redux: ``train.zip`` (``train/cat.N.jpg``,
    ``train/dog.N.jpg``), ``test.zip`` (``test/1.jpg``...) and ``sample_submission.csv``."""
    train = {}
    for i in range(n_train):
        train[f"train/cat.{i}.jpg"] = _jpeg((200, 40 + i, 40))
        train[f"train/dog.{i}.jpg"] = _jpeg((40, 40 + i, 200))
    test = {f"test/{i}.jpg": _jpeg((120, 120, 20 + i)) for i in range(1, n_test + 1)}
    sample = "id,label\n" + "".join(f"{i},0.5\n" for i in range(1, n_test + 1))
    return {"train.zip": _zip(train), "test.zip": _zip(test), "sample_submission.csv": sample.encode()}


def all_files_zip(files: dict[str, bytes]) -> bytes:
    """What Kaggle serves for "download all": one zip holding every data file."""
    return _zip(files)


def make_redux_zip(dest: Path, slug: str = SLUG, n_train: int = 4, n_test: int = 4) -> Path:
    """Write a Dogs-vs-Cats-redux-shaped ``<dest>/<slug>.zip`` (train.zip, test.zip,
    sample_submission.csv inside) and return its path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{slug}.zip"
    out.write_bytes(all_files_zip(redux_files(n_train, n_test)))
    return out


def echo_text(headers: dict[str, str]) -> str:
    """What the hostile server (``echo_headers=True``) echoes: every request header, and the
    credential of the Authorization header raw, base64-encoded (standard and URL-safe alphabets,
    padded or not: for Basic that is ``base64(user:key)`` again, for Bearer the token's) and
    URL-encoded (quote, quote_plus)."""
    auth = headers.get("Authorization", "")
    scheme, _, cred = auth.partition(" ")
    plain = base64.b64decode(cred).decode(errors="replace") if scheme == "Basic" else cred
    forms = [plain]
    for b64 in (base64.b64encode(plain.encode()).decode(), base64.urlsafe_b64encode(plain.encode()).decode()):
        forms += [b64, b64.rstrip("=")]
    for value in {auth, cred, plain}:
        forms += [urllib.parse.quote(value), urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)]
    dump = "; ".join(f"{k}: {v}" for k, v in headers.items())
    return f"request headers: {dump} | credential as: {' '.join(forms)}"


def secret_forms(secret: str, username: str | None = None) -> list[str]:
    """Every form in which a server might echo `secret` (for assertions that it never leaks):
    raw, ``Bearer``, base64 of it and of ``username:secret`` (standard and URL-safe, padded or
    not, with ``Basic``), and each of those URL-encoded (quote, quote_plus)."""
    forms = [secret, f"Bearer {secret}"]
    for plain in [secret] + ([f"{username}:{secret}"] if username else []):
        for b64 in (base64.b64encode(plain.encode()).decode(), base64.urlsafe_b64encode(plain.encode()).decode()):
            forms += [b64, b64.rstrip("="), f"Basic {b64}"]
    for f in list(forms):
        forms += [urllib.parse.quote(f), urllib.parse.quote(f, safe=""), urllib.parse.quote_plus(f)]
    return sorted(set(forms))


def leaked(text: str, secret: str, username: str | None = None) -> list[str]:
    """The forms of `secret` found in `text` (percent escapes in either case)."""
    return [f for f in secret_forms(secret, username) if f in text or ("%" in f and f.lower() in text.lower())]


# -- server state ----------------------------------------------------------------------------
@dataclass
class RecordedRequest:
    """One request the server saw. ``route`` is the RPC method name (``ListDataFiles``...),
    ``"blob"`` for a file download or ``"upload"`` for a submission upload."""

    method: str
    path: str
    route: str
    headers: dict[str, str]
    body: bytes
    json: dict | None
    status: int = 0

    @property
    def auth(self) -> str | None:
        return self.headers.get("Authorization")


class ScoringFailed(Exception):
    """Raise it from a `scorer`: the submission ends with status ERROR and this error description."""


@dataclass
class FakeCompetition:
    """`submissions`: what ListSubmissions serves, newest first (keys as Kaggle's JSON; keys that
    start with "_" are the server's own). `leaderboard`: rows ``{"teamId", "teamName", "score",
    "date", "members": [user names]}``; None: two other teams plus yours once a submission is scored.
    `leaderboard_members`: whether the downloaded leaderboard CSV has a TeamMemberUserNames column."""

    slug: str
    files: dict[str, bytes]
    title: str = TITLE
    rules_accepted: bool = True
    submissions: list[dict] = field(default_factory=list)
    leaderboard: list[dict] | None = None
    leaderboard_members: bool = True
    higher_is_better: bool = False
    _all_zip: bytes | None = None

    def all_zip(self) -> bytes:
        if self._all_zip is None:
            self._all_zip = all_files_zip(self.files)
        return self._all_zip


class _Fail(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class FakeKaggle:
    """The server. ``fail_with`` is an HTTP status every request answers with, or a dict
    ``{route: status}`` (routes: RPC method names such as ``ListDataFiles``, ``DownloadDataFile``,
    ``StartSubmissionUpload``, ``CreateSubmission``, ``ListSubmissions``, ``GetLeaderboard``,
    ``DownloadLeaderboard``, ``IntrospectToken``, or
    ``"blob"`` / ``"upload"``); it can be changed while the server runs.
    ``scorer(csv_bytes) -> float`` gives a submission's public score (default 0.5); it may raise
    `ScoringFailed("why")` to make scoring fail. A new submission is listed as pending (no status,
    no score, as Kaggle's JSON omits defaults) for its first `pending_polls` listings.
    `echo_headers`: a hostile server that echoes the request's headers (Authorization included, raw
    and encoded in several ways) in every error message, in the headers and bodies of successful
    answers and in download URLs. ``html``: {route: status} answered with an HTML page instead
    (it can be changed while the server runs)."""

    def __init__(
        self,
        files: dict[str, bytes] | None = None,
        *,
        slug: str = SLUG,
        rules_accepted: bool = True,
        fail_with: int | dict[str, int] | None = None,
        username: str = USERNAME,
        key: str = KEY,
        token: str = TOKEN,
        scorer: Callable[[bytes], float] | None = None,
        pending_polls: int = 0,
        echo_headers: bool = False,
        display_name: str = DISPLAY_NAME,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.username, self.key, self.token, self.display_name = username, key, token, display_name
        self.pending_polls, self.echo_headers = pending_polls, echo_headers
        self.html: dict[str, int] = {}  # route -> HTTP status answered with an HTML page (a proxy, a login wall)
        self.fail_with = fail_with
        self.scorer = scorer
        self.host, self._port = host, port
        self.competitions: dict[str, FakeCompetition] = {}
        self.add_competition(slug, redux_files() if files is None else files, rules_accepted=rules_accepted)
        self.slug = slug
        self.requests: list[RecordedRequest] = []
        self.uploads: dict[str, bytes] = {}  # blob token -> uploaded bytes
        self._pending_uploads: dict[str, dict] = {}
        self.routes: dict[str, Callable[[dict, str], dict]] = {}  # more RPCs: {method: (body, origin) -> JSON}
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.last_modified = email.utils.formatdate(time.time() - 86400, usegmt=True)

    # -- set-up ----------------------------------------------------------------------------
    def add_competition(self, slug: str, files: dict[str, bytes], rules_accepted: bool = True,
                        title: str | None = None) -> FakeCompetition:
        comp = FakeCompetition(slug, dict(files), title or slug, rules_accepted)
        self.competitions[slug] = comp
        return comp

    @property
    def competition(self) -> FakeCompetition:
        return self.competitions[self.slug]

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """What the client must use as its LOCALHOST endpoint."""
        return "http://localhost" if self.port == 80 else f"http://{self.host}:{self.port}"

    def start(self) -> "FakeKaggle":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer((self.host, self._port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-kaggle", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (a later call then meets a closed port: a network failure)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> "FakeKaggle":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inspection --------------------------------------------------------------------------
    def calls(self, route: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if route is None or r.route == route]

    @property
    def basic_auth(self) -> str:
        """The Authorization header a client with the legacy key must send."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.key}".encode()).decode()

    # -- request handling ---------------------------------------------------------------------
    def _check_fail(self, route: str) -> None:
        status = self.fail_with
        if isinstance(status, dict):
            status = status.get(route)
        if status:
            headers = {"Retry-After": "0"} if status == 429 else {}
            messages = {429: "Too many requests", 500: "Internal server error", 503: "Service unavailable"}
            raise _Fail(status, messages.get(status, f"Simulated failure {status}"), headers)

    def _check_auth(self, headers: dict[str, str]) -> None:
        auth = headers.get("Authorization", "")
        if auth == f"Bearer {self.token}" or auth == self.basic_auth:
            return
        raise _Fail(401, "Unauthenticated: invalid API credentials")

    def _comp(self, body: dict, *, need_rules: bool = False) -> FakeCompetition:
        slug = body.get("competitionName", "")
        comp = self.competitions.get(slug)
        if comp is None:
            raise _Fail(404, f"Competition not found: {slug}")
        if need_rules and not comp.rules_accepted:
            raise _Fail(403, "You must accept this competition's rules before you'll be able to "
                             "download files or submit.")
        return comp

    def _blob_url(self, origin: str, slug: str, name: str, headers: dict[str, str]) -> str:
        sig = base64.urlsafe_b64encode(os.urandom(9)).decode()
        echo = "&echo=" + urllib.parse.quote(echo_text(headers), safe="") if self.echo_headers else ""
        return f"{origin}/blobs/download/{slug}/{urllib.parse.quote(name)}?sig={sig}{echo}"

    def _listed(self, sub: dict) -> dict:
        """A stored submission as ListSubmissions serves it (pending for its first listings)."""
        out = {k: v for k, v in sub.items() if not k.startswith("_")}
        if sub.get("_pending", 0) > 0:
            sub["_pending"] -= 1
            return out
        return {**out, **sub.get("_final", {})}

    def leaderboard_rows(self, comp: FakeCompetition) -> list[dict]:
        """The leaderboard, best first, each row with its "rank"."""
        rows = comp.leaderboard
        if rows is None:
            date = "2024-01-01T00:00:00.000Z"
            rows = [{"teamId": 1, "teamName": "top team", "date": date, "score": 0.033, "members": ["topdog"]},
                    {"teamId": 2, "teamName": "runner up", "date": date, "score": 0.041,
                     "members": ["alice", "bob"]}]
            scored = [s for s in comp.submissions if not s.get("_pending")
                      and s.get("_final", s).get("status") == "COMPLETE" and s.get("_final", s).get("publicScore")]
            if scored:
                best = sorted(scored, key=lambda s: float(s.get("_final", s)["publicScore"]),
                              reverse=comp.higher_is_better)[0]
                rows.append({"teamId": 3, "teamName": self.display_name, "date": best["date"],
                             "score": float(best.get("_final", best)["publicScore"]), "members": [self.username]})
        rows = sorted(rows, key=lambda r: float(r["score"]), reverse=comp.higher_is_better)
        return [{**r, "rank": i} for i, r in enumerate(rows, 1)]

    def leaderboard_zip(self, comp: FakeCompetition) -> bytes:
        """What "download leaderboard" serves: a zip holding <slug>-publicleaderboard.csv."""
        out = io.StringIO()
        cols = ["Rank", "TeamId", "TeamName", "LastSubmissionDate", "Score", "SubmissionCount"]
        writer = csv.writer(out)
        writer.writerow(cols + (["TeamMemberUserNames"] if comp.leaderboard_members else []))
        for r in self.leaderboard_rows(comp):
            date = str(r.get("date", "2024-01-01T00:00:00")).replace("T", " ")[:19]
            row = [r["rank"], r["teamId"], r["teamName"], date, f"{float(r['score']):.5f}", 1]
            writer.writerow(row + ([",".join(r.get("members", []))] if comp.leaderboard_members else []))
        return _zip({f"{comp.slug}-publicleaderboard.csv": out.getvalue().encode()})

    def rpc(self, method: str, body: dict, headers: dict[str, str], origin: str) -> tuple[int, dict, dict | bytes]:
        """Answer one RPC: (status, extra headers, JSON body or the bytes of a file)."""
        if method == "IntrospectToken":
            ok = body.get("token") == self.token
            return 200, {}, ({"active": True, "username": self.username, "clientId": "kaggle-cli"}
                             if ok else {"active": False})
        self._check_auth(headers)
        if method == "ListDataFiles":
            comp = self._comp(body)
            names = sorted(comp.files)
            size = int(body.get("pageSize") or 20)
            start = int(body.get("pageToken") or 0)
            page = names[start:start + size]
            created = datetime.fromtimestamp(time.time() - 86400, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            out = {"files": [{"ref": n, "name": n, "totalBytes": len(comp.files[n]), "creationDate": created}
                             for n in page]}
            if start + size < len(names):
                out["nextPageToken"] = str(start + size)
            return 200, {}, out
        if method == "DownloadDataFiles":
            comp = self._comp(body, need_rules=True)
            return 302, {"Location": self._blob_url(origin, comp.slug, f"{comp.slug}.zip", headers)}, {}
        if method == "DownloadDataFile":
            comp = self._comp(body, need_rules=True)
            name = body.get("fileName", "")
            if name not in comp.files:
                raise _Fail(404, f"File not found: {name}")
            return 302, {"Location": self._blob_url(origin, comp.slug, name, headers)}, {}
        if method == "StartSubmissionUpload":
            comp = self._comp(body, need_rules=True)
            token = f"blob-{next(self._ids)}"
            self._pending_uploads[token] = {"competition": comp.slug, **body}
            return 200, {}, {"token": token, "createUrl": f"{origin}/upload/{token}"}
        if method == "CreateSubmission":
            comp = self._comp(body, need_rules=True)
            token = body.get("blobFileTokens", "")
            if token not in self.uploads:
                raise _Fail(400, f"Unknown or incomplete upload: {token}")
            data = self.uploads[token]
            try:
                score = self.scorer(data) if self.scorer else 0.5
                final = {"status": "COMPLETE", "publicScore": f"{score:.5f}", "privateScore": ""}
            except ScoringFailed as e:
                final = {"status": "ERROR", "errorDescription": str(e)}
            ref = next(self._ids)
            comp.submissions.insert(0, {
                "ref": ref,
                "totalBytes": len(data),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "description": body.get("submissionDescription", ""),
                "fileName": self._pending_uploads.get(token, {}).get("fileName", ""),
                "submittedBy": self.username,
                "teamName": self.display_name,
                "_final": final,
                "_pending": self.pending_polls,
            })
            return 200, {}, {"message": f"Successfully submitted to {comp.title}", "ref": ref}
        if method == "ListSubmissions":
            comp = self._comp(body)
            size = int(body.get("pageSize") or 20)
            page = int(body.get("page") or 1)
            if body.get("pageToken"):
                page = int(body["pageToken"])
            subs = [self._listed(s) for s in comp.submissions[(page - 1) * size:page * size]]
            nxt = str(page + 1) if page * size < len(comp.submissions) else ""
            return 200, {}, {"submissions": subs, "nextPageToken": nxt}
        if method == "GetSubmissionLimits":
            self._comp(body)
            return 200, {}, {"numToday": 0, "numAllowedNow": 5}
        if method == "GetLeaderboard":
            comp = self._comp(body)
            size = int(body.get("pageSize") or 20)
            start = int(body.get("pageToken") or 0)
            rows = self.leaderboard_rows(comp)
            out = {"submissions": [{"teamId": r["teamId"], "teamName": r["teamName"],
                                    "submissionDate": r.get("date", "2024-01-01T00:00:00.000Z"),
                                    "score": f"{float(r['score']):.5f}"} for r in rows[start:start + size]]}
            if start + size < len(rows):
                out["nextPageToken"] = str(start + size)
            return 200, {}, out
        if method == "DownloadLeaderboard":
            return 200, {"Content-Type": "application/zip"}, self.leaderboard_zip(self._comp(body))
        if method in self.routes:  # e.g. the notebook and dataset RPCs of fake_kaggle_code
            return 200, {}, self.routes[method](body, origin)
        raise _Fail(404, f"No such method: {method}")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKaggle  # set on a per-server subclass
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _handle(self) -> None:
        fake = self.fake
        raw = self._body()
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith(API_PREFIX):
            route = path.rsplit("/", 1)[-1]
        elif path.startswith("/blobs/download/"):
            route = "blob"
        elif path.startswith("/upload/"):
            route = "upload"
        else:
            route = "unknown"
        try:
            parsed = json.loads(raw) if raw and route not in ("blob", "upload") else None
        except ValueError:
            parsed = None
        rec = RecordedRequest(self.command, self.path, route, dict(self.headers.items()), raw, parsed)
        with fake._lock:
            fake.requests.append(rec)
        origin = f"http://{self.headers.get('Host') or f'{fake.host}:{fake.port}'}"
        echo = echo_text(rec.headers) if fake.echo_headers else ""
        echo_header = {"X-Echo": echo} if echo else {}
        try:
            fake._check_fail(route)
            if route in fake.html:  # a captive portal, a proxy's error page, a maintenance page
                rec.status = fake.html[route]
                page = b"<!DOCTYPE html><html><head><title>Kaggle</title></head><body><h1>Down for maintenance</h1>"
                self._send(rec.status, page + b"</body></html>", "text/html; charset=utf-8")
                return
            if route == "blob" and self.command in ("GET", "HEAD"):
                _, _, _, slug, name = path.split("/", 4)
                comp = fake.competitions.get(slug)
                name = urllib.parse.unquote(name)
                if comp is None:
                    raise _Fail(404, "No such blob")
                data = comp.all_zip() if name == f"{slug}.zip" and name not in comp.files else comp.files.get(name)
                if data is None:
                    raise _Fail(404, "No such blob")
                rec.status = 200
                ctype = "application/zip" if name.endswith(".zip") else "application/octet-stream"
                self._send(200, data, ctype, {"Last-Modified": fake.last_modified, **echo_header})
            elif route == "upload" and self.command in ("PUT", "POST"):
                token = path.rsplit("/", 1)[-1]
                if token not in fake._pending_uploads:
                    raise _Fail(404, "Upload URL expired or unknown")
                fake.uploads[token] = raw
                rec.status = 200
                self._json(200, {})
            elif route not in ("blob", "upload", "unknown") and self.command == "POST":
                status, headers, obj = fake.rpc(route, parsed or {}, rec.headers, origin)
                rec.status = status
                headers = {**headers, **echo_header}
                if status in (301, 302, 303, 307):
                    self._send(status, b"", "text/plain", headers)
                elif isinstance(obj, bytes):
                    self._send(status, obj, headers.pop("Content-Type"), headers)
                else:
                    self._json(status, {**obj, "echo": echo} if echo else obj, headers)
            else:
                raise _Fail(404, f"Not found: {self.command} {path}")
        except _Fail as e:
            rec.status = e.status
            message = f"{e.message} ({echo})" if echo else e.message
            self._json(e.status, {"code": e.status, "message": message}, {**e.headers, **echo_header})

    do_GET = do_POST = do_PUT = do_HEAD = _handle


# -- environment wiring ----------------------------------------------------------------------
def _point_client_at(server: FakeKaggle, mp: pytest.MonkeyPatch) -> None:
    """Make the official client (imported or not yet) use `server` as its LOCALHOST endpoint."""
    import sys

    from kagglesdk import kaggle_env

    if server.port != 80:
        mp.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL, server.url)
    extended = sys.modules.get("kaggle.api.kaggle_api_extended")
    if extended is not None:  # class attributes are computed when the module is first imported
        home_cfg = Path(os.environ["KAGGLE_CONFIG_DIR"])
        mp.setattr(extended.KaggleApi, "args", ["--local"])
        mp.setattr(extended.KaggleApi, "config_dir", str(home_cfg))
        mp.setattr(extended.KaggleApi, "config", str(home_cfg / "kaggle.json"))


def isolate_env(tmp_path: Path, mp: pytest.MonkeyPatch) -> Path:
    """No KAGGLE_* variables, no proxies for loopback, HOME / XDG_CONFIG_HOME / KAGGLE_CONFIG_DIR
    in `tmp_path`. Returns the fake home."""
    for k in list(os.environ):
        if k.startswith("KAGGLE_"):
            mp.delenv(k)
    for k in _PROXY_VARS:
        mp.delenv(k, raising=False)
    mp.setenv("NO_PROXY", "127.0.0.1,localhost")
    mp.setenv("no_proxy", "127.0.0.1,localhost")
    home = Path(tmp_path) / "home"
    (home / ".kaggle").mkdir(parents=True, exist_ok=True)
    mp.setenv("HOME", str(home))
    mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    mp.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    return home


def write_kaggle_json(folder: Path, username: str = USERNAME, key: str = KEY, mode: int = 0o600) -> Path:
    path = Path(folder) / "kaggle.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"username": username, "key": key}))
    path.chmod(mode)
    return path


@contextlib.contextmanager
def fake_kaggle(
    tmp_path: Path,
    files: dict[str, bytes] | None = None,
    rules_accepted: bool = True,
    fail_with: int | dict[str, int] | None = None,
    *,
    monkeypatch: pytest.MonkeyPatch | None = None,
    slug: str = SLUG,
    creds: str | None = "env",
    port: int = 0,
    **server_kwargs,
) -> Iterator[FakeKaggle]:
    """Serve a fake competition `slug` (default: tiny Dogs vs. Cats Redux files) and point the
    official client at it for the duration of the block.

    `creds`: ``"env"`` (KAGGLE_USERNAME/KAGGLE_KEY), ``"token"`` (KAGGLE_API_TOKEN),
    ``"kaggle.json"`` (``$KAGGLE_CONFIG_DIR/kaggle.json``, mode 600) or None (no credentials).
    Environment changes go through `monkeypatch` (or a private one undone on exit)."""
    own = monkeypatch is None
    mp = pytest.MonkeyPatch() if own else monkeypatch
    server = FakeKaggle(files, slug=slug, rules_accepted=rules_accepted, fail_with=fail_with,
                        port=port, **server_kwargs)
    server.start()
    try:
        home = isolate_env(tmp_path, mp)
        mp.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
        if creds == "env":
            mp.setenv("KAGGLE_USERNAME", server.username)
            mp.setenv("KAGGLE_KEY", server.key)
        elif creds == "token":
            mp.setenv("KAGGLE_API_TOKEN", server.token)
        elif creds == "kaggle.json":
            write_kaggle_json(home / ".kaggle", server.username, server.key)
        elif creds is not None:
            raise ValueError(f"creds must be 'env', 'token', 'kaggle.json' or None, not {creds!r}")
        _point_client_at(server, mp)
        yield server
    finally:
        server.stop()
        if own:
            mp.undo()


@pytest.fixture
def kaggle_server(tmp_path, monkeypatch):
    """Factory fixture: ``server = kaggle_server(files=..., rules_accepted=..., fail_with=...,
    creds=...)`` starts a FakeKaggle (see `fake_kaggle`) that is stopped at teardown."""
    with contextlib.ExitStack() as stack:
        def start(files: dict[str, bytes] | None = None, **kwargs) -> FakeKaggle:
            return stack.enter_context(fake_kaggle(tmp_path, files, monkeypatch=monkeypatch, **kwargs))

        yield start


def free_port() -> int:
    """A loopback port with nothing listening (for network-failure tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
