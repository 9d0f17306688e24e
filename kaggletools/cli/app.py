"""`kaggletools <verb> [competition] ...`: a thin layer over kaggletools.api.

Bad input and faults it can name end in one line on stderr and a non-zero exit; `--debug` (or
KAGGLETOOLS_DEBUG=1) shows the traceback. Ctrl-C exits 130, SIGTERM 143; a training run
interrupted either way is marked so in its folder and can be resumed (`train --resume RUN`).
Where a verb is also a `kaggle competitions` verb, the kaggle CLI's flags work the same way
(-c, -f, -p, -o, -q, -m, -v).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import warnings
from pathlib import Path

import kaggletools.cli.flags as cli_flags
import kaggletools.cli.kaggle_verbs as kaggle_verbs
from kaggletools.options import Recipe

TRAINING = {"check", "lr-find", "train", "cv", "run", "show-batch"}
LIGHT_OPTIONS = {"device", "amp", "channels_last", "compile"}


def _version() -> str:
    import kaggletools

    return f"kaggletools {kaggletools.__version__}"


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line: a misspelt flag gets the verb's closest flags, and
    the pointer goes to the verb's -h."""

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        verb = self._verb()
        hint = _closest_flags(message, verb) if verb is not None else ""
        self.exit(2, f"error: {message}{hint} (see `{(verb or self).prog} -h`)\n")

    def _verb(self):
        """The subparser of the verb on the command line, if this parser has verbs and one was given."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return next((action.choices[a] for a in getattr(self, "_argv", []) if a in action.choices), None)
        return None


def _closest_flags(message: str, verb: argparse.ArgumentParser) -> str:
    """'; did you mean --epochs?' for each unknown flag in an 'unrecognized arguments' message."""
    if not message.startswith("unrecognized arguments:"):
        return ""
    import difflib

    known = [s for action in verb._actions for s in action.option_strings if s.startswith("--")]
    hints = []
    for token in message.split(":", 1)[1].split():
        close = difflib.get_close_matches(token.split("=")[0], known, 3, 0.6) if token.startswith("-") else []
        if close:
            hints.append(f"{token.split('=')[0]}: did you mean {' or '.join(close)}?")
    return "; " + "; ".join(hints) if hints else ""


def parser(recipe=None) -> argparse.ArgumentParser:
    """The whole command line; `recipe`: the named competition's, to show its defaults in help."""
    p = Parser(prog="kaggletools", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress lines")
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")

    def verb(name, text, competition=True, data=True):
        s = sub.add_parser(name, help=text, description=text, parents=[common])
        if competition:
            s.add_argument("competition", nargs="?", help="a slug or alias (`kaggletools competitions`; the Kaggle "
                                                          "verbs take any slug on Kaggle)")
            s.add_argument("-c", "--competition", dest="competition_flag", metavar="COMPETITION",
                           help="the competition, as the kaggle CLI takes it")
        if data:
            s.add_argument("--data", "-p", "--path", dest="data", type=Path, help="data folder (default data/<slug>)")
        return s

    s = sub.add_parser("competitions", help="list Kaggle's competitions (those registered here marked)",
                       parents=[common])
    s.add_argument("-v", "--csv", action="store_true", help="CSV output")
    kaggle_verbs.competitions_flags(s)
    s = verb("files", "list the competition's files on Kaggle", data=False)
    s.add_argument("-v", "--csv", action="store_true", help="CSV output")
    kaggle_verbs.paging(s)
    s = verb("download", "download from Kaggle and unpack into the data folder")
    s.add_argument("-f", "--file", help="one file only")
    s.add_argument("-o", "--force", action="store_true", help="download again even if up to date")
    s.add_argument("-w", "--wp", dest="here", action="store_true", help="download into the current folder")
    s = verb("prepare", "unpack downloaded archives in the data folder")
    s.add_argument("--add", type=Path, action="append", metavar="PATH",
                   help="an archive or folder obtained elsewhere to bring into the data folder (repeatable)")
    _work(s)
    s = verb("sample", "make a small stratified sample as a new data folder")
    s.add_argument("--train", type=int, default=200, help="training items (default 200)")
    s.add_argument("--test", type=int, default=100, help="test items (default 100)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, help="output folder (default <data>/sample-<train>)")
    s = verb("check", "dry run: every option, items per split and class, one batch forward and backward")
    s.set_defaults(names=cli_flags.recipe_and_options(s, recipe))
    s = verb("lr-find", "learning-rate finder on the frozen model; saves a PNG plot")
    s.set_defaults(names=cli_flags.recipe_and_options(s, recipe, LIGHT_OPTIONS))
    s.add_argument("--out", type=Path, help="plot file (default lr_find-<slug>.png)")
    s.add_argument("--suggest", default="valley", metavar="METHODS",
                   help="fastai's suggestions, comma-separated: valley (default), steep, minimum, slide")
    s = verb("train", "train and validate; writes a run folder")
    s.set_defaults(names=cli_flags.recipe_and_options(s, recipe))
    s.add_argument("--resume", type=Path, metavar="RUN", help="continue an interrupted run from its last checkpoint")
    _work(s)
    s = verb("cv", "k-fold: one run per fold, blended: out-of-fold score, fold-averaged submission")
    s.set_defaults(names=cli_flags.recipe_and_options(s, recipe, cv=True))
    _out(s)
    s = sub.add_parser("predict", help="predict the test set from a run folder; writes a validated submission",
                       parents=[common])
    s.add_argument("run", type=Path, help="run folder printed by `train`")
    s.add_argument("--data", type=Path, help="data folder (default: the one the run was trained on)")
    s.add_argument("--tta", choices=("none", "flip", "crops", "dihedral"), help="TTA level (default: the run's)")
    s.add_argument("--device", default="", help="cuda, mps or cpu (default: the best available)")
    _work(s)
    _out(s)
    s = verb("validate", "check a submission file as Kaggle would")
    s.add_argument("csv", type=Path)
    s = verb("submit", "validate, then upload a submission file to Kaggle")
    s.add_argument("csv", type=Path, nargs="?", help="the submission file")
    s.add_argument("-f", "--file", dest="file", type=Path, help="the submission file, as the kaggle CLI takes it")
    s.add_argument("-m", "--message", default="kaggletools", help="the submission's description")
    s.add_argument("--wait", nargs="?", type=float, const=30 * 60, metavar="SECONDS",
                   help="wait for the public score and print it (at most SECONDS, default 1800)")
    s.add_argument("-k", "--kernel", help="code competition: submit this notebook's output (owner/slug)")
    s.add_argument("-v", "--version", dest="kernel_version", type=int, help="code competition: the notebook's version")
    s = verb("submissions", "your submissions and their scores", data=False)
    s.add_argument("-v", "--csv", action="store_true", help="CSV output")
    kaggle_verbs.paging(s)
    s = verb("leaderboard", "the top of the public leaderboard and where your team stands", data=False)
    s.add_argument("-s", "--show", action="store_true", help="show it (the default)")
    s.add_argument("--top", type=int, default=20, help="rows to show (default 20)")
    kaggle_verbs.paging(s, size_dest="top")
    s.add_argument("-d", "--download", action="store_true", help="download the whole leaderboard (a zip)")
    s.add_argument("-p", "--path", type=Path, default=Path("."), help="where -d puts it (default: here)")
    s.add_argument("-v", "--csv", action="store_true", help="CSV output")
    s = verb("run", "the whole loop: prepare, train, predict with TTA, validated submission")
    s.set_defaults(names=cli_flags.recipe_and_options(s, recipe))
    s.add_argument("--download", action="store_true", help="download from Kaggle first")
    s.add_argument("--add", type=Path, action="append", metavar="PATH", help="an archive or folder to bring in")
    s.add_argument("--submit", metavar="MESSAGE", help="upload the submission with this message")
    _work(s)
    _out(s)
    s = sub.add_parser("blend", help="average the test predictions of runs into one validated submission",
                       parents=[common])
    s.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    s.add_argument("--weights", type=float, nargs="+", help="one weight per run (default: equal)")
    s.add_argument("--data", type=Path, help="data folder (default: the first run's)")
    _out(s)
    s = sub.add_parser("runs", help="past runs, best first", parents=[common])
    s.add_argument("competition", nargs="?", help="only this competition's")
    s.add_argument("--runs", type=Path, default=Path("runs"), help="where run folders are (default runs)")
    s.add_argument("--html", type=Path, nargs="?", const=Path("runs.html"), metavar="FILE",
                   help="write one page comparing the runs side by side (default runs.html)")
    s.add_argument("-v", "--csv", action="store_true", help="CSV output")
    s = sub.add_parser("interpret", help="confusion matrix, top losses, thresholds, probabilities of a run",
                       parents=[common])
    s.add_argument("run", type=Path)
    s = verb("show-batch", "save a grid of augmented training inputs with their labels")
    s.set_defaults(names=cli_flags.add(s, Recipe, recipe) + cli_flags.inference(s))
    s.add_argument("--out", type=Path, help="image file (default show_batch-<slug>.png)")
    s = verb("new", "write the module of a competition inferred from its data folder (--data)")
    s.set_defaults(names=cli_flags.inference(s) + cli_flags.add(s, Recipe, None, only={"group_by"}))
    s.add_argument("--out", type=Path, help="the module file (default <slug with _>.py)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing module file")
    s = sub.add_parser("demo", help="the whole loop offline on a competition's generated download",
                       parents=[common])
    s.add_argument("competition", nargs="?", help="default: the registry's default (Dogs vs. Cats redux)")
    s.add_argument("--dir", type=Path, default=Path("demo"), help="working folder (default demo)")
    kaggle_verbs.add(sub, common)
    return p


def _out(s) -> None:
    s.add_argument("--out", type=Path, help="submission file (default submissions/<slug>-<run>.csv)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing submission file")


def _work(s) -> None:
    s.add_argument("--work", type=Path, metavar="DIR",
                   help="where a read-only data folder (/kaggle/input/<slug>) is unpacked (default: "
                        "$KAGGLETOOLS_WORK, /kaggle/temp/kaggletools on Kaggle, else <cache>/work)")


def _named_recipe(argv: list[str]):
    """The recipe of the competition named on the command line (for help with its defaults)."""
    if not argv or argv[0] not in TRAINING:
        return None
    rest = argv[1:]
    name = rest[rest.index("-c") + 1] if "-c" in rest[:-1] else next((a for a in rest if not a.startswith("-")), None)
    if name is None:
        return None
    import kaggletools.competition.registry as competition
    try:
        return competition.get(name).recipe
    except Exception:  # reported properly once parsed
        return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("KAGGLETOOLS_DEBUG", "").strip().lower() not in ("", "0", "false",
                                                                                                "no", "off")
    try:
        args = parser(_named_recipe(argv)).parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return int(e.code or 0)
    from kaggletools import progress, signals
    from kaggletools.errors import Interrupted

    warnings.showwarning = _one_line_warning
    try:
        with progress.silenced(getattr(args, "quiet", False)), signals.terminate_raises(), \
                contextlib.redirect_stdout(Escaped(sys.stdout)):
            import kaggletools.cli.commands as commands
            return commands.dispatch(args) or 0
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`kaggletools runs | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Interrupted as e:
        print(f"interrupted ({e.name})", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        stop = signals.interrupt_in(e)  # an interrupt that a library wrapped (one inside an import)
        if stop is not None and not debug:
            print(f"interrupted ({'Ctrl-C' if isinstance(stop, KeyboardInterrupt) else stop.name})", file=sys.stderr)
            return 130 if isinstance(stop, KeyboardInterrupt) else stop.exit_code
        if debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1


class Escaped:
    """stdout with the control characters of what is written escaped (kaggletools.progress.printable;
    newlines and tabs kept): every verb prints text from outside (team names, titles, file names)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        from kaggletools.progress import printable

        return self._stream.write(printable(text, keep="\n\t"))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


_OS_FIXES = {errno.EEXIST: "a file stands where a folder is needed: give another path or move the file away",
             errno.ENOTDIR: "a file stands where a folder is needed: give another path or move the file away",
             errno.EISDIR: "a folder stands where a file is needed: give the path of a file",
             errno.EACCES: "no permission: choose a folder you can write to, or fix its permissions",
             errno.EPERM: "not permitted: choose a folder you can write to, or fix its permissions",
             errno.EROFS: "the file system is read-only: choose a writable folder",
             errno.ENAMETOOLONG: "the name is too long for the file system: choose a shorter path"}


def one_line(e: BaseException) -> str:
    """An error as one line: our errors carry their explanation; others get their kind and a hint."""
    from kaggletools.progress import printable

    text = printable(" ".join(str(e).split()) or type(e).__name__)
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (f"the disk is full, or a file grew past what it allows ({e.filename or text}); free some space and "
                "run the command again")
    if isinstance(e, MemoryError):
        return "out of memory; lower --batch-size or --size"
    fix = _OS_FIXES.get(getattr(e, "errno", None)) if isinstance(e, OSError) and e.filename else None
    if fix:  # a raw OS error about a path the user gave: say which path and what to do
        return f"{e.filename}: {e.strerror or text}; {fix}"
    ours = type(e).__module__.startswith("kaggletools") or isinstance(e, (ValueError, FileNotFoundError,
                                                                          FileExistsError, PermissionError))
    return text if ours else f"{type(e).__name__}: {text} (run again with --debug for the traceback)"


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    from kaggletools.progress import printable

    print(f"warning: {printable(' '.join(str(message).split()))}", file=file or sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
