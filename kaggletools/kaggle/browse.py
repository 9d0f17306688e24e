"""Every competition on Kaggle, as the kaggle CLI's `competitions list` finds them (search,
category, sort order, pages), through the official client."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kaggletools.kaggle.client import _redactor_of, calling, client
from kaggletools.kaggle.credentials import KaggleError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from kaggle.api.kaggle_api_extended import KaggleApi

COLUMNS = ["slug", "title", "deadline", "category", "reward", "teams", "entered"]


def slug_of(ref: str) -> str:
    """A competition's slug from its ref (a slug, or its URL)."""
    return str(ref or "").rstrip("/").rsplit("/", 1)[-1]


def competitions(*, search: str | None = None, category: str | None = None, sort_by: str | None = None,
                 group: str | None = None, page: int | None = None, page_size: int = 20,
                 page_token: str | None = None, api: "KaggleApi | None" = None) -> tuple[list[dict], str]:
    """One page of Kaggle's competitions (rows with COLUMNS) and the token of the next page ("" at
    the end). `category`: featured, research, playground, gettingStarted, ... or "all" (closed
    ones too); `sort_by`: best, prize, earliestDeadline, latestDeadline, numberOfTeams, ...; `page`
    (from 1) or `page_token`, not both."""
    if page is not None and page_token:
        raise KaggleError("give --page or --page-token, not both")
    api = api or client()
    try:
        with calling(api, "listing competitions"):
            resp = api.competitions_list(group=group, category=category, sort_by=sort_by,
                                         page=-1 if page is None else page, search=search,
                                         page_size=page_size, page_token=page_token)
    except ValueError as e:  # an unknown group, category or sort order: the client lists the valid ones
        raise KaggleError(str(e)) from None
    rows = [{"slug": slug_of(c.ref), "title": c.title or "", "deadline": c.deadline, "category": c.category or "",
             "reward": c.reward or "", "teams": c.team_count, "entered": bool(c.user_has_entered)}
            for c in (resp.competitions if resp else None) or []]
    return rows, (resp.next_page_token if resp else "") or ""


def download_leaderboard(slug: str, path: str, quiet: bool = True, api: "KaggleApi | None" = None) -> str:
    """Download the whole public leaderboard (<slug>.zip, as the kaggle CLI's `leaderboard -d`) into `path`."""
    from pathlib import Path

    api = api or client()
    with calling(api, "downloading the leaderboard", slug, show=not quiet):
        api.competition_leaderboard_download(slug, str(path), quiet=quiet)
    found = sorted(Path(path).glob(f"{slug}*.zip"))
    return str(found[-1]) if found else str(path)


def page(what: str, slug: str, page_size: int = 20, page_token: str | None = None,
         api: "KaggleApi | None" = None) -> tuple["pd.DataFrame", str]:
    """One page of a competition's `what` ("files", "submissions" or "leaderboard"), as the kaggle
    CLI's --page-size/--page-token show it; and the next page's token ("" when there is none, or
    when the client does not say, as for submissions and the leaderboard)."""
    import dataclasses

    import pandas as pd

    from kaggletools.kaggle import competitions as kaggle_api

    api = api or client()
    token = ""
    with calling(api, f"listing {what}", slug):
        if what == "files":
            resp = api.competition_list_files(slug, page_token=page_token, page_size=page_size)
            rows = [{"name": f.name or f.ref, "size": int(f.total_bytes or 0), "created": f.creation_date}
                    for f in resp.files or []]
            table, token = pd.DataFrame(rows, columns=["name", "size", "created"]), resp.next_page_token or ""
        elif what == "submissions":
            subs = api.competition_submissions(slug, page_token=page_token or "", page_size=page_size) or []
            red = _redactor_of(api)
            table = pd.DataFrame([dataclasses.asdict(kaggle_api._submission(s, red)) for s in subs if s is not None],
                                 columns=kaggle_api.SUBMISSION_COLUMNS)
        else:
            rows = api.competition_leaderboard_view(slug, page_size=page_size, page_token=page_token) or []
            table = pd.DataFrame([{"team_id": r.team_id, "team_name": r.team_name, "score": r.score,
                                   "submission_date": r.submission_date} for r in rows if r is not None],
                                 columns=["team_id", "team_name", "score", "submission_date"])
    return table, token
