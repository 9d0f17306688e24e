"""`kaggletools <verb> <competition> ...`: a thin layer over kaggletools.api."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RECIPE_FLAGS = {  # flag: (type, help)
    "backbone": (str, "torchvision model name, e.g. resnet34, mobilenet_v2, convnext_tiny"),
    "size": (int, "image side the network sees, pixels"),
    "presize": (int, "side of the decoded cache (default size*8/7)"),
    "freeze_epochs": (int, "epochs with the body frozen"),
    "epochs": (int, "epochs after unfreezing"),
    "lr": (float, "base learning rate"),
    "batch_size": (int, "batch size"),
    "valid_frac": (float, "validation fraction"),
    "min_scale": (float, "random-resized-crop: smallest fraction of the area kept (1 = no crop)"),
    "tta": (str, "TTA level: none | flip | crops | dihedral"),
    "seed": (int, "random seed for the split and training"),
}


def _recipe_args(p: argparse.ArgumentParser) -> None:
    for flag, (kind, text) in RECIPE_FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, help=text)
    p.add_argument("--no-pretrained", dest="pretrained", action="store_const", const=False,
                   help="random initialisation instead of ImageNet weights")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _recipe(a) -> dict:
    return {k: getattr(a, k) for k in [*RECIPE_FLAGS, "pretrained"] if getattr(a, k, None) is not None}


def _train_args(p: argparse.ArgumentParser) -> None:
    _recipe_args(p)
    p.add_argument("--runs", type=Path, default=Path("runs"), help="where run folders go")
    p.add_argument("--precompute", type=int, default=0, metavar="EPOCHS",
                   help="train the head this many epochs on precomputed features first (replaces the frozen phase)")
    p.add_argument("--folds", type=int, default=0, help="k-fold: number of folds (0: a plain split)")
    p.add_argument("--fold", type=int, default=0, help="k-fold: which fold is the validation set")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
    p.add_argument("--compile", action="store_true", help="torch.compile the body")
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CUDA and CPU)")
    p.add_argument("--train-bn", action="store_true",
                   help="frozen phase: let the body's batch-norm statistics follow the new data (no backward pass)")


def _train_kwargs(a) -> dict:
    return dict(runs_dir=a.runs, precompute=a.precompute, folds=a.folds, fold=a.fold, device=a.device,
                amp=a.amp, compile=a.compile, channels_last=a.channels_last, train_bn=a.train_bn,
                progress=not a.quiet, **_recipe(a))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kaggletools", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)

    sub.add_parser("competitions", help="list the registered competitions")

    def verb(name, text, data=True):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("competition", help="a registered slug (see `kaggletools competitions`)")
        if data:
            s.add_argument("--data", type=Path, help="data folder (default data/<slug>)")
        return s

    verb("files", "list the competition's files on Kaggle", data=False)
    s = verb("download", "download from Kaggle and unpack")
    s.add_argument("--file", help="one file only")
    s.add_argument("--force", action="store_true")
    s = verb("prepare", "unpack downloaded archives in the data folder")
    s.add_argument("--add", type=Path, action="append", metavar="PATH",
                   help="an archive or folder obtained elsewhere to bring into the data folder (repeatable)")
    s = verb("sample", "make a small stratified sample as a new data folder")
    s.add_argument("--train", type=int, default=200, help="training items")
    s.add_argument("--test", type=int, default=100, help="test items")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, help="output folder (default <data>/sample-<train>)")
    s = verb("lr-find", "learning-rate finder; saves a PNG plot")
    _recipe_args(s)
    s.add_argument("--out", type=Path, help="plot file (default lr_find-<slug>.png)")
    s = verb("train", "train and validate; writes a run folder")
    _train_args(s)
    s = verb("cv", "k-fold: one model per fold, out-of-fold score, fold-averaged test submission")
    _train_args(s)
    s.add_argument("--out", type=Path, help="submission file")
    s.add_argument("--overwrite", action="store_true")
    s = sub.add_parser("predict", help="predict the test set from a run folder; writes a validated submission")
    s.add_argument("run", type=Path, help="run folder printed by `train`")
    s.add_argument("--data", type=Path, help="data folder (default: the one the run was trained on)")
    s.add_argument("--tta", help="TTA level (default: the run's)")
    s.add_argument("--out", type=Path, help="submission file (default submissions/<slug>-<run>.csv)")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--device")
    s.add_argument("--quiet", action="store_true")
    s = verb("validate", "check a submission file against the test items")
    s.add_argument("csv", type=Path)
    s = verb("submit", "upload a submission file to Kaggle", data=False)
    s.add_argument("csv", type=Path)
    s.add_argument("-m", "--message", default="kaggletools")
    verb("submissions", "your submissions and scores", data=False)
    s = verb("run", "the whole loop: prepare, train, predict with TTA, validated submission")
    _train_args(s)
    s.add_argument("--download", action="store_true", help="download from Kaggle first")
    s.add_argument("--add", type=Path, action="append", metavar="PATH",
                   help="an archive or folder obtained elsewhere to bring into the data folder (repeatable)")
    s.add_argument("--out", type=Path, help="submission file")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--submit", metavar="MESSAGE", help="upload the submission with this message")
    s = sub.add_parser("demo", help="the whole loop offline on generated Kaggle-shaped data")
    s.add_argument("--dir", type=Path, default=Path("demo"), help="working folder")
    s.add_argument("--quiet", action="store_true")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    from kaggletools import api

    try:
        return _dispatch(api, a) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every library error carries its own explanation
        if not _is_user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1


def _is_user_error(e: Exception) -> bool:
    return isinstance(e, (ValueError, RuntimeError, FileNotFoundError, FileExistsError, PermissionError))


def _dispatch(api, a) -> int | None:
    data = getattr(a, "data", None)
    comp = getattr(a, "competition", None)
    if a.verb == "competitions":
        for c in api.competitions():
            print(f"{c['slug']:<45} {c['task']:<10} {c['metric']:<10} {c['title']}")
    elif a.verb == "files":
        for f in api.files(comp):
            print(f)
    elif a.verb == "download":
        print(api.download(comp, data, file=a.file, force=a.force))
    elif a.verb == "prepare":
        print(api.prepare(comp, data or api.default_data_dir(comp), a.add))
    elif a.verb == "sample":
        print(api.sample(comp, data or api.default_data_dir(comp), a.out, a.train, a.test, a.seed))
    elif a.verb == "lr-find":
        result = api.lr_find(comp, data or api.default_data_dir(comp), a.out, device=a.device,
                             progress=not a.quiet, **_recipe(a))
        print(f"suggested lr {result.suggestion:.2e} (steepest), {result.minimum:.2e} (minimum/10); "
              f"plot: {result.plot_path}")
    elif a.verb == "train":
        run = api.train(comp, data or api.default_data_dir(comp), **_train_kwargs(a))
        if run:
            print(run.path)
    elif a.verb == "cv":
        options = _train_kwargs(a)
        options.pop("fold")
        options["folds"] = options["folds"] or 5
        result = api.cross_validate(comp, data or api.default_data_dir(comp), out=a.out, overwrite=a.overwrite,
                                    **options)
        print(json.dumps({k: result[k] for k in ("run", "oof", "submission")}, indent=2))
    elif a.verb == "predict":
        print(api.predict(a.run, a.data, tta=a.tta, out=a.out, overwrite=a.overwrite, device=a.device,
                          progress=not a.quiet))
    elif a.verb == "validate":
        api.validate_file(comp, a.csv, data or api.default_data_dir(comp))
        print(f"{a.csv}: valid")
    elif a.verb == "submit":
        api.submit(comp, a.csv, a.message)
    elif a.verb == "submissions":
        print(api.submissions(comp).to_string(index=False))
    elif a.verb == "run":
        result = api.run(comp, data, download_data=a.download, add=a.add, out=a.out, overwrite=a.overwrite,
                         submit_message=a.submit, **_train_kwargs(a))
        if result:
            print(json.dumps(result, indent=2))
    elif a.verb == "demo":
        from kaggletools import demo

        demo.main(a.dir, progress=not a.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
