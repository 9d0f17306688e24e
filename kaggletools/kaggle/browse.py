"""Every competition on Kaggle, as the kaggle CLI's `competitions list` finds them (search,
category, sort order, pages), through the official client."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kaggletools.kaggle.client import calling, client
from kaggletools.kaggle.credentials import KaggleError

if TYPE_CHECKING:  # pragma: no cover
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
