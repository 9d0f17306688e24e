"""The command line's Kaggle-side verbs beyond a competition's files: `competitions` (Kaggle's
list), `kernels push|status|output`, `datasets create|version` and `bundle`, with the kaggle CLI's
flags; and the kaggle CLI's flags of `competitions`. Parsers here import nothing heavy; the
handlers call kaggletools.api, which kaggletools.cli.commands hands them (`api=`), so that this
module imports it nowhere (one floor less in the import graph)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

CATEGORIES = ("all", "featured", "research", "recruitment", "gettingStarted", "masters", "playground")
SORTS = ("grouped", "best", "prize", "earliestDeadline", "latestDeadline", "numberOfTeams", "relevance",
         "recentlyCreated")
GROUPS = ("general", "entered", "community", "hosted", "unlaunched", "unlaunched_community")


def competitions_flags(s) -> None:
    """`kaggle competitions list`'s flags, and --registered for ours alone (no network)."""
    s.add_argument("--registered", action="store_true", help="only the competitions registered here (offline)")
    s.add_argument("-s", "--search", help="term(s) to look for")
    s.add_argument("--category", choices=CATEGORIES, help="a category ('all': closed competitions too)")
    s.add_argument("--sort-by", choices=SORTS, help="sort order (Kaggle's default: best)")
    s.add_argument("--group", choices=GROUPS, help="a group, e.g. 'entered': those you entered")
    s.add_argument("--page", type=int, help="page number, from 1")
    s.add_argument("--page-size", type=int, default=20, help="competitions per page (default 20)")
    s.add_argument("--page-token", help="the token of a page (printed after a page that has a next one)")


def paging(s, size_dest: str = "page_size") -> None:
    """The kaggle CLI's --page-size and --page-token: one page (and the next one's token)."""
    s.add_argument("--page-size", dest=size_dest, type=int, help="rows of one page (with --page-token: that page)")
    s.add_argument("--page-token", help="show the page with this token (printed after a page that has a next one)")


def page(a, what: str, name: str, api) -> None:
    """`files`, `submissions` or `leaderboard` one page at a time."""
    table, token = api.kaggle_page(what, name, getattr(a, "page_size", None) or getattr(a, "top", None) or 20,
                                   a.page_token)
    _print(table, a.csv)
    if token and not a.csv:
        print(f"next page: --page-token {token}")


def add(sub, common) -> None:
    """Add `kernels`, `datasets` and `bundle` to the subparsers `sub`."""
    k = sub.add_parser("kernels", help="Kaggle notebooks: push one to run, its status, its output")
    ks = k.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = ks.add_parser("push", help="push a notebook folder (kernel-metadata.json) to run on Kaggle", parents=[common])
    s.add_argument("-p", "--path", dest="folder", type=Path, default=Path("."), help="the folder (default: here)")
    s.add_argument("-t", "--timeout", type=int, help="the run's time limit in seconds")
    s.add_argument("--accelerator", "--acc", dest="accelerator", help="a machine shape, e.g. NvidiaTeslaT4")
    s.add_argument("--no-run", action="store_true", help="save a version without running it (Quick Save)")
    s = ks.add_parser("init", help="write a training notebook that runs `kaggletools run` on Kaggle's GPUs",
                      parents=[common])
    s.add_argument("competition", help="the competition's slug (its data becomes the notebook's input)")
    s.add_argument("-p", "--path", dest="folder", type=Path, required=True, help="the notebook folder to write")
    s.add_argument("--kernel", dest="kernel_id", metavar="OWNER/SLUG", help="default <your user>/<slug>-train")
    s.add_argument("--bundle", metavar="OWNER/SLUG", help="a bundle dataset to install from (internet off)")
    s.add_argument("--run", dest="run_args", nargs=argparse.REMAINDER, default=[], metavar="OPTION",
                   help="last: what follows goes to `kaggletools run`, e.g. --run --backbone resnet34 --epochs 4")
    s = ks.add_parser("status", help="the state of a notebook's latest run", parents=[common])
    _kernel(s)
    s = ks.add_parser("output", help="download a notebook's output files and log", parents=[common])
    _kernel(s)
    s.add_argument("-p", "--path", type=Path, default=Path("."), help="where to write them (default: here)")
    s.add_argument("-w", "--wp", dest="here", action="store_true", help="into the current folder")
    s.add_argument("-o", "--force", action="store_true", help="download again files that are up to date")
    s.add_argument("--file-pattern", help="only the files whose name matches this regular expression")
    s.add_argument("--page-size", type=int, default=20, help="files per page of the output listing (default 20)")
    s.add_argument("--page-token", help="only the page of the output listing with this token")

    d = sub.add_parser("datasets", help="Kaggle datasets: upload a folder (a bundle) as one, or a new version")
    ds = d.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("create", "create a dataset from a folder with dataset-metadata.json"),
                       ("version", "upload a folder as a new version of its dataset")):
        s = ds.add_parser(name, help=text, parents=[common])
        s.add_argument("-p", "--path", dest="folder", type=Path, default=Path("."), help="the folder (default: here)")
        s.add_argument("-r", "--dir-mode", choices=("skip", "zip", "tar"), default="skip",
                       help="sub-folders: skip them, or upload each as one archive (a bundle needs zip)")
        s.add_argument("-t", "--keep-tabular", action="store_true", help="do not convert tabular files to CSV")
        s.add_argument("--ignore-patterns", nargs="+", metavar="GLOB", help="files and folders not to upload")
        if name == "create":
            s.add_argument("-u", "--public", action="store_true", help="make it public (default: private)")
        else:
            s.add_argument("-m", "--message", required=True, help="the version's notes")
            s.add_argument("-d", "--delete-old-versions", action="store_true", help="delete the older versions")

    s = sub.add_parser("bundle", help="a run, wheels and an inference notebook as a Kaggle dataset for a code "
                                      "competition (no internet)", parents=[common])
    s.add_argument("run", type=Path, help="a finished run folder")
    s.add_argument("-p", "--path", dest="folder", type=Path, required=True, help="the bundle folder to write")
    s.add_argument("--dataset", metavar="OWNER/SLUG", help="the dataset's id (default <your user>/<slug>-bundle)")
    s.add_argument("--kernel", metavar="OWNER/SLUG", help="the notebook's id (default <your user>/<slug>-inference)")
    s.add_argument("--with-torch", action="store_true", help="carry torch and torchvision too (else the image's)")
    s.add_argument("--no-wheels", action="store_true", help="no wheels (the notebook then needs internet)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")


def _kernel(s) -> None:
    s.add_argument("kernel", nargs="?", help="owner/slug of the notebook")
    s.add_argument("-k", "--kernel", dest="kernel_flag", metavar="KERNEL",
                   help="the notebook, as the kaggle CLI takes it")


def _print(table, csv: bool) -> None:
    if csv:
        table.to_csv(sys.stdout, index=False)
    else:
        print("(none)" if table.empty else table.to_string(index=False))


def competitions(a, api) -> None:
    from kaggletools.kaggle.credentials import KaggleCredentialsError, find_credentials

    if not a.registered:
        try:
            find_credentials()
        except KaggleCredentialsError:
            print("note: no Kaggle credentials, so these are the competitions registered here; set them up to list "
                  "Kaggle's (`kaggletools files` says how)", file=sys.stderr)
            a.registered = True
    if a.registered:
        import pandas as pd

        table = pd.DataFrame(api.competitions())
        table["aliases"] = table["aliases"].map(" ".join)
        return _print(table[["slug", "aliases", "task", "metric", "title"]], a.csv)
    table, token = api.kaggle_competitions(search=a.search, category=a.category, sort_by=a.sort_by, group=a.group,
                                           page=a.page, page_size=a.page_size, page_token=a.page_token)
    _print(table, a.csv)
    if token and not a.csv:
        print(f"next page: --page-token {token}")


def _kernel_name(a) -> str:
    from kaggletools.errors import CompetitionError

    if a.kernel and a.kernel_flag and a.kernel != a.kernel_flag:
        raise CompetitionError(f"two notebooks given: {a.kernel!r} and -k {a.kernel_flag!r}; give one")
    name = a.kernel or a.kernel_flag
    if not name:
        raise CompetitionError(f"`kernels {a.action}` needs a notebook: owner/slug (or -k owner/slug)")
    return name


def kernels(a, api) -> None:
    if a.action == "init":
        from kaggletools.kaggle.credentials import find_credentials

        try:
            owner = find_credentials().username or "YOUR-KAGGLE-USERNAME"
        except Exception:  # no credentials: a placeholder to edit before pushing
            owner = "YOUR-KAGGLE-USERNAME"
        kernel = a.kernel_id or f"{owner}/{api.kaggle_slug(a.competition)[:40]}-train"
        print(api.kernels("init", a.folder, api.kaggle_slug(a.competition), kernel, a.run_args, a.bundle).parent)
    elif a.action == "push":
        pushed = api.kernels("push", a.folder, timeout=a.timeout, accelerator=a.accelerator, no_run=a.no_run)
        print(f"pushed {pushed.ref} version {pushed.version}: {pushed.url}")
    elif a.action == "status":
        state = api.kernels("status", _kernel_name(a))
        print(f"{state.kernel}: {state.status}" + (f" ({state.failure})" if state.failure else ""))
    else:
        for path in api.kernels("output", _kernel_name(a), Path(".") if a.here else a.path, pattern=a.file_pattern,
                                       force=a.force, quiet=a.quiet, page_size=a.page_size, page_token=a.page_token):
            print(path)


def datasets(a, api) -> None:
    if a.action == "create":
        made = api.datasets("create", a.folder, public=a.public, quiet=a.quiet, dir_mode=a.dir_mode,
                            ignore_patterns=a.ignore_patterns, keep_tabular=a.keep_tabular)
    else:
        made = api.datasets("version", a.folder, a.message, quiet=a.quiet, dir_mode=a.dir_mode,
                            delete_old_versions=a.delete_old_versions, ignore_patterns=a.ignore_patterns,
                            keep_tabular=a.keep_tabular)
    print(f"{made.ref or a.folder}: {made.status or 'uploaded'} {made.url}".rstrip())


def bundle(a, api) -> None:
    print(api.bundle(a.run, a.folder, dataset=a.dataset, kernel=a.kernel, with_torch=a.with_torch,
                     wheels=not a.no_wheels, overwrite=a.overwrite, quiet=a.quiet))


HANDLERS = {"competitions": competitions, "kernels": kernels, "datasets": datasets, "bundle": bundle}
