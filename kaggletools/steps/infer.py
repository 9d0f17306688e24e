"""The competition a verb works on: the registered one, or, for a slug no module registers and a
data folder, the one inferred from the folder (kaggletools.competition.infer), its summary
printed; and `kaggletools new`, which writes the inferred competition's module."""
from __future__ import annotations

import os
from pathlib import Path

import kaggletools.competition.registry as registry
from kaggletools import progress
import kaggletools.competition.infer as infer
import kaggletools.competition.inferred as inferred
import kaggletools.competition.module_writer as module_writer
from kaggletools.competition.interface import Competition
from kaggletools.errors import CompetitionError, OptionError
from kaggletools.options import Inference
from kaggletools.steps import workspace


def settled(name: "str | Competition", data_dir: Path | None, overrides: dict, *, need_test: bool = False,
            full: bool = False, work: Path | None = None) -> tuple[Competition, dict]:
    """The competition (see `competition`) and the `overrides` left once the fields of
    kaggletools.options.Inference among them settled it."""
    given = {k: v for k, v in overrides.items() if k in Inference.__dataclass_fields__}
    rest = {k: v for k, v in overrides.items() if k not in given}
    return competition(name, data_dir, given, rest.get("group_by") or "", need_test=need_test, full=full,
                       show=rest.get("progress", True), work=work), rest


def competition(name: "str | Competition", data_dir: Path | None = None, inference: dict | None = None,
                group_by: str = "", *, need_test: bool = False, full: bool = False, show: bool = True,
                work: Path | None = None) -> Competition:
    """`inference`: fields of kaggletools.options.Inference (refused for a registered slug);
    `need_test`: refuse a folder without test images; `full`: the summary with every field."""
    if isinstance(name, Competition):
        return name
    given = Inference().replace(**(inference or {}))
    if data_dir is None or name in registry.names() or name in registry.aliases():
        if given.given():
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given.given())
            raise OptionError(f"{flags}: for a competition without a module, inferred from --data DIR; {name} has "
                              "a module" if data_dir is not None else f"{flags} need(s) --data DIR")
        return registry.get(name)
    if not Path(data_dir).is_dir():  # a misspelt slug, most likely: the registry names the closest
        try:
            registry.get(name)
        except CompetitionError as e:
            raise CompetitionError(f"{e}; a competition without a module needs --data DIR, its download "
                                   f"({data_dir}: no such folder)") from None
    spec = _spec(str(name), workspace.writable_folder(Path(data_dir), work), given, group_by, need_test, show)
    for line in inferred.summary(spec, full):
        progress.write(line, show)
    return inferred.build(spec)


def _spec(name: str, folder: Path, given: Inference, group_by: str, need_test: bool, show: bool) -> inferred.Spec:
    with progress.silenced(not show):
        return infer.infer(name, folder, given, "" if group_by == "none" else group_by, need_test=need_test)


def new(name: str, data_dir: Path, out: Path | None = None, overwrite: bool = False, group_by: str = "",
        show: bool = True, **inference) -> Path:
    """Write the module of the competition inferred from `data_dir` (default `<slug with _>.py`),
    atomically; an existing file only with `overwrite`."""
    if name in registry.names() or name in registry.aliases():
        raise CompetitionError(f"{name} has a module already (`kaggletools competitions`); choose another slug")
    spec = _spec(name, workspace.writable_folder(Path(data_dir), None), Inference().replace(**inference), group_by,
                 False, show)
    for line in inferred.summary(spec):
        progress.write(line, show)
    inferred.build(spec)  # what the module will declare, checked
    out = Path(out or f"{name.replace('-', '_')}.py")
    if out.exists() and not overwrite:
        raise CompetitionError(f"{out} exists; give --out FILE or --overwrite")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial.write_text(module_writer.source(spec))
    os.replace(partial, out)
    return out
