"""The Kaggle verbs of the Python API (kaggletools.api re-exports them): every one takes any
competition on Kaggle, registered here or not; a registered one is prepared and validated by its
module, any other unpacked safely and checked against its sample submission."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

import kaggletools.competition.registry as registry
from kaggletools.competition.interface import Competition
from kaggletools.steps import workspace


def kaggle_slug(name: str | Competition) -> str:
    """The slug of a competition (or of a registered one's slug or alias), else `name` itself: the
    Kaggle verbs work on any competition on Kaggle."""
    return name.slug if isinstance(name, Competition) else registry.aliases().get(name, name)


def kaggle_competitions(**query) -> tuple[pd.DataFrame, str]:
    """One page of Kaggle's competitions (query: see kaggle.browse.competitions), ours marked; the next page's token."""
    from kaggletools.kaggle import browse

    rows, token = browse.competitions(**query)
    table = pd.DataFrame(rows, columns=browse.COLUMNS)
    table.insert(1, "ours", table["slug"].isin(registry.names()))
    return table, token


def files(name: str) -> list:
    from kaggletools.kaggle import download as kaggle_download

    return kaggle_download.list_files(kaggle_slug(name))


def download(name: str, data_dir: Path | None = None, file: str | None = None, force: bool = False,
             quiet: bool = False) -> Path:
    """Download the competition's files (all, or one) and unpack them into `data_dir`."""
    from kaggletools.kaggle import download as kaggle_download

    slug = kaggle_slug(name)
    data_dir = Path(data_dir or Path("data") / slug)
    kaggle_download.download(slug, data_dir, file=file, force=force, quiet=quiet)
    if slug not in registry.names():  # no module: archives unpacked safely, nothing more
        from kaggletools.unpack import archives

        archives.extract_all(data_dir, progress=not quiet)
        return data_dir
    return workspace.prepare(registry.get(slug), data_dir, quiet=quiet)


def submit(name: str, csv: Path, message: str = "kaggletools", data_dir: Path | None = None, quiet: bool = False):
    """Validate the file (test ids from `data_dir` when it has them, else the format alone), then
    upload it. Returns Kaggle's reference and message (kaggle_api.SubmitResult)."""
    from kaggletools.kaggle import competitions as kaggle_api

    slug = kaggle_slug(name)
    if isinstance(name, Competition) or slug in registry.names():
        from kaggletools.steps import predict as inference

        inference.validate_file(registry.get(name), Path(csv), data_dir)
    else:  # no module: the sample submission's columns and ids, when the data folder has one
        from kaggletools.score import any_competition

        any_competition.validate(slug, Path(csv), data_dir)
    return kaggle_api.submit(slug, Path(csv), message, quiet=quiet)


def wait_for_score(name: str, ref: int, show: bool = True, **polling):
    """Poll (bounded backoff) until Kaggle has scored submission `ref`; its row (kaggle_api.Submission).
    Prints each change of status with the time waited so far."""
    from kaggletools import progress
    from kaggletools.kaggle import competitions as kaggle_api

    said = progress.changes("waiting for the score", show)

    def report(row):
        said(row.status if row else "not listed yet")

    return kaggle_api.wait_for_score(kaggle_slug(name), ref, on_poll=report, **polling)


def submissions(name: str) -> pd.DataFrame:
    from kaggletools.kaggle import competitions as kaggle_api

    return kaggle_api.submissions(kaggle_slug(name))


def leaderboard(name: str, top: int = 20):
    """The top of the public leaderboard and where your team stands."""
    from kaggletools.kaggle import competitions as kaggle_api

    return kaggle_api.leaderboard(kaggle_slug(name), top=top)


def kaggle_page(what: str, name: str, page_size: int = 20, page_token: str | None = None):
    """One page of a competition's files, submissions or leaderboard (the kaggle CLI's
    --page-size/--page-token): (table, next page's token or "")."""
    from kaggletools.kaggle import browse

    return browse.page(what, kaggle_slug(name), page_size, page_token)


def leaderboard_download(name: str, path: Path = Path("."), quiet: bool = False) -> str:
    """The whole public leaderboard as Kaggle's zip, in `path` (the kaggle CLI's `leaderboard -d`)."""
    from kaggletools.kaggle import browse

    return browse.download_leaderboard(kaggle_slug(name), str(path), quiet=quiet)


# -- Kaggle notebooks and datasets (code competitions, training on Kaggle's GPUs) --------------------
def kernels(action: str, *args, **how):
    """Kaggle notebooks (kaggletools.kaggle.kernels): "push" (folder; timeout, accelerator, no_run),
    "status" (kernel), "output" (kernel, path; pattern, force, quiet), "submit_code" (slug, kernel;
    file_name, message, version, quiet: a code competition's submission), "init" (folder,
    competition, kernel, run_args, bundle: a training notebook that calls `kaggletools run`)."""
    from kaggletools.kaggle import kernels as notebooks

    return getattr(notebooks, {"push": "push", "status": "status", "output": "output", "init": "init",
                               "submit_code": "submit_code"}[action])(*args, **how)


def datasets(action: str, folder: Path, *args, **how):
    """Kaggle datasets from a folder with dataset-metadata.json (kaggletools.kaggle.datasets):
    "create" (public, quiet, dir_mode) or "version" (message; quiet, dir_mode, delete_old_versions)."""
    from kaggletools.kaggle import datasets as uploads

    return getattr(uploads, {"create": "create", "version": "version"}[action])(folder, *args, **how)


def bundle(run_dir: Path, folder: Path, *, dataset: str | None = None, kernel: str | None = None,
           with_torch: bool = False, wheels: bool = True, overwrite: bool = False, quiet: bool = False) -> Path:
    """A folder to upload as a Kaggle dataset for a code competition: the run, the wheels of
    kaggletools and its dependencies (torch and torchvision left to the image unless `with_torch`),
    the backbone's weights, dataset-metadata.json and an inference notebook that installs with no
    index and writes a validated /kaggle/working/submission.csv (kaggletools.steps.bundle)."""
    from kaggletools.steps import bundle as bundling

    return bundling.bundle(Path(run_dir), Path(folder), dataset=dataset, kernel=kernel, with_torch=with_torch,
                           with_wheels=wheels, overwrite=overwrite, quiet=quiet)
