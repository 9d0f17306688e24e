"""Run folders: the resolved recipe and options, versions, split, per-epoch metrics, checkpoints,
weights, predictions, report and plots of one training run; enough for `predict`, `interpret`,
`blend` and `train --resume` to work from the folder alone.

Every file is written under a temporary name and renamed into place. The weights (`model.pt`)
are written last: a run is finished exactly when it holds `model.pt` and no `failed.json`.
A run that failed or was interrupted holds `failed.json` (`status`: failed or interrupted); a
run whose process was killed outright holds neither, only its last `checkpoint.pt`.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path

import pandas as pd

from kaggletools.errors import OptionError, RunError
from kaggletools.io import files

WEIGHTS = "model.pt"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
FAILED = "failed.json"
LOCK = ".lock"  # held (flock) by the process that trains in the folder; holds its pid
INTERPRETATION = "interpret.json"  # what runs.interpret found, read by the report
STATUSES = ("finished", "failed", "interrupted", "killed", "empty")


def versions() -> dict:
    """Library and hardware versions, recorded with every run and benchmark."""
    from importlib import metadata

    import torch

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    cuda = None
    if torch.cuda.is_available():
        cuda = {"device": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
                "cuda": torch.version.cuda, "count": torch.cuda.device_count()}
    return {**{name: version(name) for name in ("kaggletools", "torch", "torchvision", "timm", "numpy", "pandas",
                                                "scikit-learn", "pillow")},
            "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "cuda": cuda}


def _builtin(value):
    """numpy scalars and arrays as Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in run metadata")


def plain(obj):
    """`obj` as plain JSON types (what `torch.load(weights_only=True)` reads back)."""
    return json.loads(json.dumps(obj, default=_builtin))


class Run:
    """One run's folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._saved: dict[str, str] = {}  # JSON this object wrote or read: handed down, not read again

    @classmethod
    def create(cls, root: Path, name: str, exact: bool = False) -> "Run":
        """A new folder `<root>/<time>-<name>` (or `<root>/<name>` when `exact`)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            base = name if exact else f"{stamp}-{name}"
            path = Path(root) / (base + (f"-{n}" if n else ""))
            try:
                path.mkdir(parents=True)
                return cls(path)
            except FileExistsError:
                continue
        raise RunError(f"cannot create a run folder under {root}")

    @classmethod
    def open(cls, path: Path, finished: bool = True) -> "Run":
        """An existing run folder; with `finished`, one whose training completed."""
        run = cls(path)
        if not (run.path / "config.json").is_file():
            raise RunError(f"{run.path} is not a run folder (no config.json); give the folder that `train` printed")
        if finished:
            status = run.status()
            if status != "finished":
                raise RunError(f"{run.path} is not a finished run ({run.explain(status)}); "
                               f"continue it with `kaggletools train --resume {run.path}` or train again")
        return run

    def status(self) -> str:
        if (self.path / FAILED).exists() or (self.path / FAILED).is_symlink():  # whatever it is, not finished
            saved = self._json_or_none(FAILED)
            return str(saved.get("status", "failed")) if isinstance(saved, dict) else "failed"
        if (self.path / WEIGHTS).is_file():
            return "finished"
        if (self.path / "report.json").is_file() and "blend" in self.load_json("config.json"):
            return "finished"  # a blend holds predictions, not weights
        return "killed" if (self.path / CHECKPOINT).is_file() or (self.path / "metrics.csv").is_file() else "empty"

    def explain(self, status: str) -> str:
        if status in ("failed", "interrupted"):
            saved = self._json_or_none(FAILED)
            error = saved.get("error", "") if isinstance(saved, dict) else ""
            return f"it {status}: {error}" if error else f"it {status}"
        if status == "killed":
            return "its process stopped before the end"
        return "it holds no weights"

    def _json_or_none(self, name: str):
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def file(self, name: str) -> Path:
        return self.path / name

    # -- writing ---------------------------------------------------------------------------------
    def _atomic(self, name: str, write) -> Path:
        """Write under a temporary name, then rename; a write that fails (a full disk, a read-only
        folder, torch's own writer failing) is one RunError naming the file, and leaves nothing."""
        target = self.path / name
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            write(partial)
            os.replace(partial, target)
        except OSError as e:
            raise unwritable(target, e) from None
        except RuntimeError as e:  # torch.save: "[enforce fail at inline_container.cc] ... file write failed"
            if "enforce fail" not in str(e) and "PytorchStreamWriter" not in str(e):
                raise
            raise unwritable(target, e) from None
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        return target

    def save_text(self, name: str, text: str) -> Path:
        return self._atomic(name, lambda p: p.write_text(text, encoding="utf-8"))

    def save_json(self, name: str, obj) -> Path:
        text = json.dumps(obj, indent=2, default=_builtin)
        path = self._atomic(name, lambda p: p.write_text(text))
        self._saved[name] = text
        return path

    def load_json(self, name: str, kind: type = dict):
        """A JSON file of the run (`kind`: what it must hold); a missing or damaged one is a
        RunError naming it."""
        path = self.path / name
        try:
            if name not in self._saved:
                self._saved[name] = path.read_text()
            obj = json.loads(self._saved[name])
        except FileNotFoundError:
            raise RunError(f"{path}: no such file; the run did not get that far, or is not a run folder") from None
        except (OSError, ValueError) as e:
            self._saved.pop(name, None)
            raise RunError(f"{path} cannot be read ({type(e).__name__}: {str(e)[:120]}); the run folder is "
                           "damaged: train again") from None
        if not isinstance(obj, kind):
            raise RunError(f"{path} holds a {type(obj).__name__}, not a {kind.__name__}; the run folder is "
                           "damaged: train again")
        return obj

    def load_table(self, name: str, columns: tuple[str, ...] = (), **read_csv) -> pd.DataFrame:
        """A CSV of the run, with the `columns` it must have; a damaged one is a RunError naming it."""
        path = self.path / name
        try:
            df = pd.read_csv(path, **read_csv)
        except FileNotFoundError:
            raise RunError(f"{path}: no such file; the run did not get that far") from None
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:  # UnicodeDecodeError too
            raise RunError(f"{path} cannot be read ({type(e).__name__}: {str(e)[:100]}); the run folder is "
                           "damaged: train again") from None
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise RunError(f"{path} lacks the column(s) {missing}; the run folder was edited or damaged: train again")
        return df

    def save_table(self, name: str, df: pd.DataFrame) -> Path:
        return self._atomic(name, lambda p: df.to_csv(p, index=False))

    def mark_failed(self, error: BaseException) -> None:
        """failed.json with the error as one line; when even that cannot be written (the disk is
        full), the error that stopped the run is still the one reported."""
        from kaggletools.signals import interrupt_in

        interrupted = interrupt_in(error) is not None
        text = " ".join(str(error).split())
        line = text if isinstance(error, RunError) and text else f"{type(error).__name__}: {text}".rstrip(": ")
        with contextlib.suppress(RunError, OSError):
            self.save_json(FAILED, {"status": "interrupted" if interrupted else "failed", "error": line,
                                    "time": time.strftime("%Y-%m-%d %H:%M:%S")})

    def clear_failed(self) -> None:
        (self.path / FAILED).unlink(missing_ok=True)
        self._saved.pop(FAILED, None)

    # -- one process at a time ------------------------------------------------------------------
    def lock(self) -> "Lock":
        """Hold the run folder for this process (see Lock); refused naming the process that holds it."""
        return Lock.take(self.path / LOCK)

    def remove_leftovers(self) -> list[Path]:
        """Our temporary files (`.<name>.partial-<pid>`) left by processes that no longer run (a
        SIGKILL while a checkpoint was written); never anything else."""
        return files.remove_dead_partials(self.path, ".*.partial-*")

    # -- tensors (torch imported here only) ------------------------------------------------------------
    def save_tensors(self, name: str, obj: dict) -> Path:
        import torch

        return self._atomic(name, lambda p: torch.save(obj, p))

    def load_tensors(self, name: str) -> dict:
        """A checkpoint or weights file, loaded with weights_only=True (no code in it is run)."""
        import pickle

        import torch

        path = self.path / name
        if not path.is_file():
            raise RunError(f"{path}: no such file; the run did not get that far")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError, AttributeError) as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise RunError(f"{path} cannot be read ({first}); the file is damaged or not ours: train again") from None
        if not isinstance(state, dict):
            raise RunError(f"{path} does not hold a kaggletools state (a dict); train again")
        return state

    def save_weights(self, state_dict: dict, meta: dict, name: str = WEIGHTS) -> Path:
        """The model's state dict and plain-JSON metadata (loads with weights_only=True)."""
        return self.save_tensors(name, {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
                                        "meta": plain(meta)})

    def load_weights(self) -> dict:
        state = self.load_tensors(WEIGHTS)
        if not isinstance(state.get("state_dict"), dict) or not isinstance(state.get("meta"), dict):
            raise RunError(f"{self.path / WEIGHTS} lacks its state_dict or meta; train again")
        return state


class Lock:
    """An exclusive lock (fcntl.flock) on `<run>/.lock`, which holds the holder's pid. The kernel
    drops it when the process ends, however it ends, so a stale file of a dead process is taken
    over; `release` removes the file."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    @classmethod
    def take(cls, path: Path) -> "Lock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover (no flock on this platform: no lock)
            return cls(path, None)
        for _ in range(10):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise unwritable(path, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise RunError(f"{path.parent} is in use: process {holder} is training in it ({path} is locked); "
                               "wait for it to end, or stop it, then run again") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file as we opened it: lock the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return cls(path, fd)
        raise RunError(f"{path}: could not be locked; run again")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def unwritable(target: Path, error: BaseException) -> RunError:
    """The one line for a file that could not be written: where, why, and what to do."""
    import errno as codes

    code = getattr(error, "errno", None)
    if code in (codes.ENOSPC, codes.EDQUOT, codes.EFBIG) or "file write failed" in str(error):
        why = "the disk is full"
        fix = "free some space and run again"
    elif code == codes.EROFS:
        why, fix = "the file system is read-only", "use a writable folder"
    elif code in (codes.EACCES, codes.EPERM):
        why, fix = "no permission to write there", "use a folder you can write to"
    else:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        why, fix = f"{type(error).__name__}: {first}", "check the folder and run again"
    return RunError(f"{target} could not be written ({why}); nothing partial was left: {fix}")


@contextlib.contextmanager
def damaged(path: Path):
    """Reading what a run wrote into `path`: a missing key, a wrong type or value in it is a
    RunError naming the file (it was edited, replaced or cut short), not a KeyError."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        if type(e).__module__.startswith("kaggletools"):  # ours name their file already
            raise
        raise RunError(f"{path} does not hold what kaggletools writes ({type(e).__name__}: {str(e)[:100]}); "
                       "the run folder was edited or damaged: train again") from None


def options_from(cls, values, path: Path, section: str, check: bool = True):
    """A Recipe or RunOptions saved in a run (config.json, model.pt), each field checked for its
    type and, with `check`, its value; a wrong one is a RunError naming the file and the field (not
    a command-line flag)."""
    import dataclasses
    import re
    import typing

    if not isinstance(values, dict):
        raise RunError(f"{path}: {section} is a {type(values).__name__}, not an object; the file was edited: train "
                       "again")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in values and not _fits(values[f.name], hints[f.name]):
            want = getattr(hints[f.name], "__name__", str(hints[f.name]).replace("typing.", ""))
            raise RunError(f"{path}: {section}.{f.name} is {values[f.name]!r} ({type(values[f.name]).__name__}), "
                           f"not {want}; the file was edited: fix that field or train again")
    try:
        made = cls.from_dict(values)
        return made.check() if check else made
    except OptionError as e:
        said = re.sub(r"--([a-z][a-z-]*)", lambda m: f"{section}.{m.group(1).replace('-', '_')}", str(e))
        raise RunError(f"{path}: {said}; the file was edited: fix that field or train again") from None


def _fits(value, hint) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, Path):
        return isinstance(value, str)
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    return value is None or any(_fits(value, a) for a in args) if args else True


def runs_under(root: Path) -> list[Run]:
    """Every run folder below `root` (fold runs of a cross-validation included)."""
    return sorted((Run(p.parent) for p in Path(root).rglob("config.json")), key=lambda r: str(r.path))
