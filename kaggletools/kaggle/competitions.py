"""Kaggle operations over the official client (``kaggle`` 2.x on ``kagglesdk``), made safe by
`kaggletools.kaggle.client` (lazy import, errors that say what to do, no secret in any output)
with credentials from `kaggletools.kaggle.credentials`.

    from kaggletools.kaggle import competitions as kaggle_api
    kaggle_api.list_files("dogs-vs-cats-redux-kernels-edition")            # -> [RemoteFile]
    kaggle_api.download("dogs-vs-cats-redux-kernels-edition", "data/dogs")   # -> data/dogs/<slug>.zip
    r = kaggle_api.submit("dogs-vs-cats-redux-kernels-edition", "sub.csv", "resnet34, tta")
    kaggle_api.wait_for_score("dogs-vs-cats-redux-kernels-edition", r.ref)  # -> Submission
    kaggle_api.submissions("dogs-vs-cats-redux-kernels-edition")             # -> DataFrame
    kaggle_api.leaderboard("dogs-vs-cats-redux-kernels-edition").my_rank     # -> int | None
"""
from __future__ import annotations

import dataclasses
import io
import logging
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from kaggletools.kaggle.credentials import (Credentials, KaggleCredentialsError, KaggleError, KaggleForbiddenError,
                                     KaggleNetworkError, KaggleNotFoundError, KaggleRateLimitError, Redactor,
                                     find_credentials)
from kaggletools.kaggle.client import (COMPETITION_URL, KaggleSubmissionFailed, KaggleSubmissionPending, calling,
                                      _redactor_of, client)
from kaggletools.kaggle.download import RemoteFile, list_files  # noqa: F401 (RemoteFile: in annotations)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from kaggle.api.kaggle_api_extended import KaggleApi

__all__ = [
    "Credentials", "RemoteFile", "SubmitResult", "Submission", "Leaderboard",
    "KaggleError", "KaggleCredentialsError", "KaggleForbiddenError", "KaggleNotFoundError",
    "KaggleRateLimitError", "KaggleNetworkError", "KaggleSubmissionFailed", "KaggleSubmissionPending",
    "find_credentials", "client", "list_files", "submit", "wait_for_score", "submissions",
    "leaderboard",
]

log = logging.getLogger(__name__)

SUBMISSION_COLUMNS = ["ref", "date", "file_name", "description", "status", "public_score", "private_score",
                      "error_description", "team_name"]
LEADERBOARD_COLUMNS = ["rank", "team_id", "team_name", "submission_date", "score"]


# -- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmitResult:
    """`ref`: the new submission's reference (None if Kaggle gave none); `message`: what Kaggle said."""

    ref: int | None
    message: str
    slug: str = ""
    file: Path | None = None


@dataclass(frozen=True)
class Submission:
    """One submission. `status`: "pending", "complete" or "error" (then `error_description` says
    why); scores are floats, NaN while not scored."""

    ref: int
    date: datetime | None
    file_name: str
    description: str
    status: str
    public_score: float
    private_score: float
    error_description: str = ""
    team_name: str = ""


def _score(value: Any) -> float:
    try:
        return float(value) if value not in (None, "") else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _submission(s: Any, red: Redactor) -> Submission:
    status = (getattr(s.status, "name", None) or str(s.status or "pending")).lower()
    return Submission(ref=s.ref, date=s.date, file_name=s.file_name or "", description=s.description or "",
                      status=status, public_score=_score(s.public_score), private_score=_score(s.private_score),
                      error_description=red((s.error_description or "").strip()), team_name=s.team_name or "")


# -- operations -------------------------------------------------------------------------------
def submit(slug: str, csv_path: str | Path, message: str, quiet: bool = False,
           api: "KaggleApi | None" = None) -> SubmitResult:
    """Upload a submission file with a description; returns the new submission's `ref` and what
    Kaggle said (`message`, e.g. "Successfully submitted to ..."). The upload progress bar shows
    unless `quiet`. Follow with `wait_for_score(slug, result.ref)` to get the score."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"Submission file not found: {csv_path}")
    api = api or client()
    with calling(api, f"submitting {csv_path.name}", slug, show=not quiet) as said:
        resp = api.competition_submit(str(csv_path), message, slug, quiet=quiet)
    if resp.message == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", object()):
        detail = f" (the client said: {said.getvalue()})" if said.getvalue() else ""
        raise KaggleError(f"Uploading {csv_path} to competition '{slug}' failed{detail}; retry "
                          f"(or submit by hand at {COMPETITION_URL.format(slug=slug)}/submissions).")
    text = _redactor_of(api)(resp.message or "")
    log.info("submitted %s to %s: %s", csv_path, slug, text)
    return SubmitResult(ref=int(resp.ref) if resp.ref else None, message=text, slug=slug, file=csv_path)


def _iter_submissions(api: Any, slug: str, max_pages: int = 1000) -> Iterator[Submission]:
    """Your submissions, newest first, page after page (call inside `calling`)."""
    red, seen, size = _redactor_of(api), set(), 20
    for page in range(1, max_pages + 1):
        subs = api.competition_submissions(slug, page_number=page, page_size=size) or []
        new = [s for s in subs if s is not None and s.ref not in seen]
        for s in new:
            seen.add(s.ref)
            yield _submission(s, red)
        if len(subs) < size or not new:
            return


def submissions(slug: str, api: "KaggleApi | None" = None) -> "pd.DataFrame":
    """Your submissions, newest first, one row per `Submission` (columns SUBMISSION_COLUMNS:
    ref, date, file_name, description, status, public_score, private_score, error_description,
    team_name; scores are floats, NaN when not scored)."""
    import pandas as pd

    api = api or client()
    with calling(api, "listing submissions", slug):
        rows = [dataclasses.asdict(s) for s in _iter_submissions(api, slug)]
    df = pd.DataFrame(rows, columns=SUBMISSION_COLUMNS)
    df["date"] = pd.to_datetime(df["date"])
    return df


def _transient(e: KaggleError) -> bool:
    return isinstance(e, (KaggleNetworkError, KaggleRateLimitError)) or (getattr(e, "status", 0) or 0) >= 500


def wait_for_score(slug: str, ref: int, *, timeout: float = 30 * 60, first_delay: float = 2.0,
                   max_delay: float = 60.0, sleep: Callable[[float], Any] = time.sleep,
                   clock: Callable[[], float] = time.monotonic,
                   on_poll: Callable[["Submission | None"], Any] | None = None,
                   api: "KaggleApi | None" = None) -> Submission:
    """Poll your submissions list until submission `ref` is scored and return it (status
    "complete", public_score set). Waits `first_delay` s after the first poll, doubling up to
    `max_delay`. `on_poll(submission)` is called after each poll (None while Kaggle does not list
    it yet). Raises KaggleSubmissionFailed (with Kaggle's error description) when scoring failed,
    KaggleSubmissionPending when `timeout` s pass first; five failed polls in a row raise the error."""
    if not ref:
        raise KaggleError(f"No submission reference to wait for; see your submissions with:  "
                          f"kaggletools submissions {slug}")
    api = api or client()
    deadline, delay, failures = clock() + timeout, first_delay, 0
    current: Submission | None = None
    while True:
        try:
            with calling(api, f"checking submission {ref}", slug):
                current = next((s for s in _iter_submissions(api, slug, max_pages=5) if s.ref == ref), None)
        except KaggleError as e:
            failures += 1
            if not _transient(e) or failures >= 5:
                raise
            log.info("checking submission %s failed (%s); will retry", ref, e)
        else:
            failures = 0
            if on_poll is not None:
                on_poll(current)
            if current is not None and current.status == "complete":
                return current
            if current is not None and current.status == "error":
                why = current.error_description or "Kaggle gave no error description"
                raise KaggleSubmissionFailed(f"Kaggle could not score submission {ref} to '{slug}': {why}", current)
        left = deadline - clock()
        if left <= 0:
            state = current.status if current is not None else "not listed yet"
            raise KaggleSubmissionPending(
                f"Submission {ref} to '{slug}' is still pending ({state}) after waiting {timeout:.0f} s; "
                f"Kaggle is still scoring it. Check later with:  kaggletools submissions {slug}",
                slug, ref, current)
        sleep(min(delay, left))
        delay = min(delay * 2, max_delay)


# -- leaderboard ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Leaderboard:
    """`rows`: the first rows of the leaderboard (columns LEADERBOARD_COLUMNS: rank, team_id,
    team_name, submission_date, score). `my_rank` / `my_row` (a dict with the same keys plus
    `members`): where your team stands, None when it cannot be determined; `note` says how your
    team was found, or why not. `total_teams`: None when only the first rows could be read."""

    slug: str
    rows: "pd.DataFrame"
    total_teams: int | None
    my_rank: int | None
    my_row: dict | None
    note: str
    username: str | None = None


_LB_NAMES = {"rank": "rank", "teamid": "team_id", "teamname": "team_name", "lastsubmissiondate": "submission_date",
             "submissiondate": "submission_date", "score": "score", "teammemberusernames": "members"}


def _lb_frame(df: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    df = df.rename(columns={c: _LB_NAMES.get(str(c).replace("_", "").lower(), c) for c in df.columns})
    if not {"team_id", "team_name", "score"} <= set(df.columns):
        raise KaggleError(f"unexpected leaderboard columns: {', '.join(map(str, df.columns))}")
    df = df.reset_index(drop=True)
    position = pd.Series(range(1, len(df) + 1), dtype="int64")
    ranks = pd.to_numeric(df["rank"], errors="coerce").fillna(position) if "rank" in df else position
    df["rank"] = ranks.astype("int64")
    df["team_id"] = pd.to_numeric(df["team_id"], errors="coerce").astype("Int64")
    df["team_name"] = df["team_name"].fillna("").astype(str)
    df["score"] = [_score(v) for v in df["score"]]
    df["submission_date"] = pd.to_datetime(df.get("submission_date"), errors="coerce", utc=True)
    df["members"] = df["members"].fillna("").astype(str) if "members" in df else ""
    return df[LEADERBOARD_COLUMNS + ["members"]]


def _full_leaderboard(api: Any, slug: str) -> "pd.DataFrame":
    """The whole leaderboard, as Kaggle's "download leaderboard" serves it (a zipped CSV)."""
    import pandas as pd
    from kagglesdk.competitions.types.competition_api_service import ApiDownloadLeaderboardRequest

    with calling(api, "downloading the leaderboard", slug):
        request = ApiDownloadLeaderboardRequest()
        request.competition_name = slug
        with api.build_kaggle_client() as kaggle:
            data = kaggle.competitions.competition_api_client.download_leaderboard(request).content
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise KaggleError("the leaderboard download holds no CSV file")
            data = z.read(names[0])
    try:
        return _lb_frame(pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False))
    except (ValueError, UnicodeDecodeError) as e:
        raise KaggleError(f"the leaderboard download is not a readable CSV ({e})") from None


def _view_leaderboard(api: Any, slug: str, top: int) -> "pd.DataFrame":
    import pandas as pd

    with calling(api, "reading the leaderboard", slug):
        rows = api.competition_leaderboard_view(slug, page_size=top) or []
    return _lb_frame(pd.DataFrame([{"team_id": r.team_id, "team_name": r.team_name, "score": r.score,
                                    "submission_date": r.submission_date} for r in rows if r is not None],
                                  columns=["team_id", "team_name", "score", "submission_date"]))


def _find_me(api: Any, slug: str, df: "pd.DataFrame", user: str | None, complete: bool) -> tuple[dict | None, str]:
    """(your row, how it was found or why not)."""
    where = f"among the {len(df)} teams on the leaderboard" if complete else f"in the first {len(df)} rows"
    if (df["members"] != "").any():
        if not user:
            return None, "The user name of these credentials is unknown, so your team cannot be found."
        hits = df[[user.lower() in str(m).lower().replace(";", ",").replace(" ", ",").split(",")
                   for m in df["members"]]]
        how = f"your team is the one with member '{user}'"
    else:  # no member lists: match the team name your own submissions carry
        with calling(api, "listing submissions", slug):
            names = {s.team_name for s in _iter_submissions(api, slug, max_pages=1) if s.team_name}
        if not names:
            return None, ("The leaderboard does not list team members and you have no submissions that name "
                          "your team, so your standing cannot be determined.")
        hits = df[df["team_name"].isin(names)]
        how = f"your submissions are by team '{sorted(names)[0]}'"
    if len(hits) == 1:
        return hits.iloc[0].to_dict(), f"Found your team: {how}."
    if len(hits) > 1:
        return None, f"Cannot tell which team is yours: {len(hits)} teams match ({how})."
    if complete:
        return None, f"Your team is not on the leaderboard ({how}, not found {where}); no scored submission yet?"
    return None, f"Your team is not {where} ({how}); your standing is unknown."


def leaderboard(slug: str, top: int = 20, *, find_me: bool = True, api: "KaggleApi | None" = None) -> Leaderboard:
    """The first `top` rows of the leaderboard and, with `find_me`, where your own team stands: the
    whole leaderboard is downloaded and your team found by your user name among its members (or
    by the team name your submissions carry). If that fails, only the first rows are read and
    `note` says why your standing is unknown; nothing is guessed."""
    api = api or client()
    creds, cfg = getattr(api, "_kaggletools_credentials", None), getattr(api, "config_values", None) or {}
    user = cfg.get("username") or (creds.username if creds else None)
    note, full = "Your own team was not looked up.", None
    if find_me:
        try:
            full = _full_leaderboard(api, slug)
        except (KaggleCredentialsError, KaggleNetworkError, KaggleRateLimitError):
            raise
        except KaggleError as e:
            why = f"HTTP {e.status}" if getattr(e, "status", None) else str(e)
            note = f"The full leaderboard could not be downloaded ({why}), so your standing is unknown."
            log.debug("leaderboard download failed: %s", e)
    df = full if full is not None else _view_leaderboard(api, slug, top)
    mine = None
    if find_me:
        mine, found = _find_me(api, slug, df, user, complete=full is not None)
        note = found if full is not None or mine is not None else note
    return Leaderboard(slug=slug, rows=df.head(top)[LEADERBOARD_COLUMNS].reset_index(drop=True),
                       total_teams=len(full) if full is not None else None,
                       my_rank=int(mine["rank"]) if mine else None, my_row=mine, note=note, username=user)
