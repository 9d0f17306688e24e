"""What each command-line verb does: read its arguments, call kaggletools.api, print the result."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pandas as pd

from kaggletools import api
import kaggletools.cli.flags as cli_flags
import kaggletools.cli.kaggle_verbs as kaggle_verbs
from kaggletools.errors import CompetitionError
from kaggletools.progress import printable


def dispatch(a) -> int | None:
    competition = _competition(a)
    handler = HANDLERS[a.verb]
    return handler(a, competition) if competition is not None else handler(a)


def _competition(a) -> str | None:
    positional, flag = getattr(a, "competition", None), getattr(a, "competition_flag", None)
    if positional and flag and positional != flag:
        raise CompetitionError(f"two competitions given: {positional!r} and -c {flag!r}; give one")
    name = positional or flag
    from kaggletools.cli.flags import NEEDS_COMPETITION

    if a.verb in NEEDS_COMPETITION and not name and not getattr(a, "resume", None):
        raise CompetitionError(f"`{a.verb}` needs a competition: kaggletools {a.verb} <slug> (or -c <slug>); "
                               "`kaggletools competitions` lists them")
    return name if a.verb in NEEDS_COMPETITION else None


def _data(a, name: str) -> Path:
    return a.data or api.default_data_dir(name)


def _print_table(df: pd.DataFrame, csv: bool) -> None:
    """A table on stdout; text in it (team names, descriptions, server messages) with its control
    characters escaped (kaggletools.progress.printable)."""
    df = df.rename(columns=lambda c: printable(c)).apply(
        lambda column: column.map(lambda v: printable(v) if isinstance(v, str) else v) if pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column) else column)
    if csv:
        df.to_csv(sys.stdout, index=False)
    elif df.empty:
        print("(none)")
    else:
        print(df.to_string(index=False))


def _overrides(a) -> dict:
    values = cli_flags.values(a, getattr(a, "names", []))
    if getattr(a, "quiet", False):
        values["progress"] = False
    return values


def files(a, name) -> None:
    if a.page_token or a.page_size:
        return kaggle_verbs.page(a, "files", name, api)
    remote = api.files(name)
    table = pd.DataFrame([{"name": f.name, "size": f.size, "created": f.created} for f in remote],
                         columns=["name", "size", "created"])
    _print_table(table, a.csv)


def download(a, name) -> None:
    print(api.download(name, Path(".") if a.here else _data(a, name), file=a.file, force=a.force, quiet=a.quiet))


def prepare(a, name) -> None:
    print(api.prepare(name, _data(a, name), a.add, quiet=a.quiet, work=a.work))


def sample(a, name) -> None:
    print(api.sample(name, _data(a, name), a.out, a.train, a.test, a.seed))


def check(a, name) -> None:
    report = api.check(name, _data(a, name), **_overrides(a))
    if a.quiet:
        print(json.dumps(report, indent=2, default=str))


def lr_find(a, name) -> None:
    result = api.lr_find(name, _data(a, name), a.out, suggest=a.suggest, **_overrides(a))
    print(f"suggested lr {result.text()}; plot: {result.plot_path}")


def train(a, name=None) -> None:
    run = api.train(name, None if a.resume else _data(a, name), resume=a.resume, work=a.work, **(
        {k: v for k, v in _overrides(a).items() if k in ("device", "progress")} if a.resume else _overrides(a)))
    if run is not None:
        print(run.path)


def cv(a, name) -> None:
    options = _overrides(a)
    result = api.cross_validate(name, _data(a, name), folds=options.pop("folds", None) or 5, out=a.out,
                                overwrite=a.overwrite, **{k: v for k, v in options.items() if k != "fold"})
    keys = ("folder", "scores", "with_post", "sampling", "folds", "averaging", "estimate", "submission")
    print(json.dumps({k: result.get(k) for k in keys}, indent=2))


def predict(a) -> None:
    print(api.predict(a.run, a.data, tta=a.tta, out=a.out, overwrite=a.overwrite, device=a.device,
                      progress=not a.quiet, work=a.work))


def validate(a, name) -> None:
    api.validate(name, a.csv, a.data if a.data else (api.default_data_dir(name) if api.default_data_dir(name)
                                                     .is_dir() else None))
    print(f"{a.csv}: valid")


def submit(a, name) -> None:
    csv = a.file or a.csv
    if csv is None and not a.kernel:
        raise CompetitionError("give the submission file: kaggletools submit <slug> <file.csv> (or -f <file.csv>)")
    data_dir = a.data or (api.default_data_dir(name) if api.default_data_dir(name).is_dir() else None)
    if a.kernel:  # a code competition: Kaggle reruns the notebook; its output file is the submission
        ref, said = api.kernels("submit_code", api.kaggle_slug(name), a.kernel, file_name=str(csv or "submission.csv"),
                                message=a.message, version=a.kernel_version, quiet=a.quiet)
        print(f"submitted notebook {a.kernel}: {said or 'Kaggle gave no message'}" + (f" (ref {ref})" if ref else ""))
        return
    sent = api.submit(name, csv, a.message, data_dir, quiet=a.quiet)
    print(printable(f"submitted {csv}: {sent.message or 'Kaggle gave no message'}" +
                    (f" (ref {sent.ref})" if sent.ref else "")))
    if a.wait is not None:
        if sent.ref is None:
            raise CompetitionError("Kaggle gave no reference for the submission, so its score cannot be awaited; "
                                   f"see `kaggletools submissions {name}`")
        try:
            scored = api.wait_for_score(name, sent.ref, show=not a.quiet, timeout=a.wait)
        except KeyboardInterrupt:
            print(f"stopped waiting; the submission is still being scored: `kaggletools submissions {name}`",
                  file=sys.stderr)
            raise
        print(f"public score: {scored.public_score}" + (f" (private {scored.private_score})"
                                                         if scored.private_score == scored.private_score else ""))


def submissions(a, name) -> None:
    if a.page_token or a.page_size:
        return kaggle_verbs.page(a, "submissions", name, api)
    _print_table(api.submissions(name), a.csv)


def leaderboard(a, name) -> None:
    if a.download:
        print(api.leaderboard_download(name, a.path, quiet=a.quiet))
        return
    if a.page_token:
        return kaggle_verbs.page(a, "leaderboard", name, api)
    board = api.leaderboard(name, top=a.top)
    _print_table(board.rows, a.csv)
    if not a.csv:
        total = f" of {board.total_teams}" if board.total_teams else ""
        mine = (f"your team {board.my_row.get('team_name', '')!r}: rank {board.my_rank}{total}, score "
                f"{board.my_row.get('score')}" if board.my_rank else f"your team: not found ({board.note})")
        print(printable(mine))


def run(a, name) -> None:
    result = api.run(name, a.data, download_data=a.download, add=a.add, out=a.out, overwrite=a.overwrite,
                     submit_message=a.submit, work=a.work, **_overrides(a))
    if result:
        print(json.dumps(result, indent=2))


def blend(a) -> None:
    result = api.blend(a.runs, weights=a.weights, data_dir=a.data, out=a.out, overwrite=a.overwrite,
                       progress=not a.quiet)
    print(result["submission"])


def runs(a) -> None:
    if a.html:
        print(api.compare_runs(a.competition, a.runs, a.html))
        return
    table = api.runs(a.competition, a.runs)
    _print_table(table if a.csv else _readable_runs(table, Path(a.runs)), a.csv)


def _readable_runs(table: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Run names below their competition's folder instead of paths, short numbers, `-` where nothing is known."""
    if table.empty:
        return table
    table = table.copy()

    def name(path, slug) -> str:
        path = Path(path)
        for base in ([root / slug] if isinstance(slug, str) else []) + [root]:
            if path.is_relative_to(base):
                return str(path.relative_to(base))
        return path.name

    table["run"] = [name(p, s) for p, s in zip(table["run"], table["competition"])]
    for column, form in (("plain", "{:.4g}"), ("tta", "{:.4g}"), ("seconds", "{:.0f}"), ("size", "{:.0f}")):
        table[column] = [form.format(v) if isinstance(v, (int, float)) and v == v else v for v in table[column]]
    return table.astype(object).where(table.notna(), "-")


def interpret(a) -> None:
    for path in api.interpret(a.run):
        print(path)


def show_batch(a, name) -> None:
    print(api.show_batch(name, _data(a, name), out=a.out, **cli_flags.values(a, a.names)))


def new(a, name) -> None:
    if a.data is None:
        raise CompetitionError(f"`new` reads the competition's data folder: kaggletools new {name} --data DIR")
    out = api.new(name, a.data, out=a.out, overwrite=a.overwrite, show=not a.quiet, **cli_flags.values(a, a.names))
    print(f"{out}: register it from your package (README: Adding a competition), or copy it into competitions/")


def demo(a) -> None:
    api.demo(a.competition, a.dir, progress=not a.quiet)


HANDLERS = {"files": files, "download": download, "prepare": prepare,
            "sample": sample, "check": check, "lr-find": lr_find, "train": train, "cv": cv, "predict": predict,
            "validate": validate, "submit": submit, "submissions": submissions, "leaderboard": leaderboard,
            "run": run, "blend": blend, "runs": runs, "interpret": interpret, "show-batch": show_batch, "demo": demo,
            "new": new,
            **{verb: functools.partial(handler, api=api) for verb, handler in kaggle_verbs.HANDLERS.items()}}
