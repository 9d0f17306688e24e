"""Command-line flags generated from the option dataclasses (kaggletools.options): every field of
Recipe and RunOptions is a flag, its help from the field, its default shown as the competition's
when the command line names one. Parsed values left unset are None, so the competition's
defaults apply."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from kaggletools.options import Inference, Recipe, RunOptions

# verbs whose first argument is a competition
NEEDS_COMPETITION = {"files", "download", "prepare", "sample", "check", "lr-find", "train", "cv", "validate",
                     "submit", "submissions", "leaderboard", "run", "show-batch", "new"}

SKIP = {"progress"}  # offered as -q/--quiet on every verb
CV_ONLY = {"repeats"}  # run options that only `cv` acts on


def _kind(hint) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def add(parser: argparse.ArgumentParser, cls, defaults=None, only: set[str] | None = None,
        title: str | None = None, skip: set[str] = frozenset()) -> list[str]:
    """Add a flag for each field of the dataclass `cls` (or those in `only`, less `skip`); return their names."""
    group = parser.add_argument_group(title or f"{cls.__name__.lower()} options")
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        if f.name in SKIP | skip or (only is not None and f.name not in only):
            continue
        meta, kind = f.metadata, _kind(hints[f.name])
        flag = "--" + (meta.get("flag") or f.name).replace("_", "-")
        default = getattr(defaults, f.name) if defaults is not None else f.default
        shown = default if default not in ("", None) else "auto" if f.name in ("device", "channels_last") else "none"
        text = f"{meta.get('help', '')} (default: {shown})".replace("%", "%%")
        flags = [flag] + ([meta["short"]] if meta.get("short") else [])
        if kind is bool:
            group.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(*flags, dest=f.name, type=Path if kind is Path else kind, default=None,
                               choices=meta.get("choices"), metavar=meta.get("metavar") or (
                                   None if meta.get("choices") else f.name.upper()), help=text)
        names.append(f.name)
    return names


def values(args: argparse.Namespace, names: list[str]) -> dict:
    """The flags the user gave (None: not given)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def recipe_and_options(parser, recipe: Recipe | None, only_options: set[str] | None = None,
                       cv: bool = False) -> list[str]:
    """The recipe's flags and the run options' (those in `only_options`; CV_ONLY ones for `cv` alone)."""
    names = add(parser, Recipe, recipe, title="recipe (what to train; defaults are the competition's)")
    names += add(parser, RunOptions, None, only_options, title="run options (how to run it)",
                 skip=frozenset() if cv else CV_ONLY)
    return names + inference(parser)


def inference(parser) -> list[str]:
    """The flags that settle what a data folder leaves open (a competition without a module)."""
    return add(parser, Inference, None, title="a competition without a module (inferred from --data; these settle "
                                               "what the folder leaves open)")
