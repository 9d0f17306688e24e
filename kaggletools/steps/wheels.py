"""The wheels a notebook without internet needs to install kaggletools: kaggletools' own (built
from its source tree, else downloaded) and those of every package it depends on, pinned to the
versions a run used (its versions.json, else what is installed here), torch and torchvision (and
what only they need) left to the Kaggle image unless asked. Fetched with pip from the configured
index or mirror; installed on Kaggle with `pip install --no-index --find-links <wheels>`."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from kaggletools.errors import RunError

IMAGE_PACKAGES = ("torch", "torchvision")  # a Kaggle image's own build (CUDA); carried only with --with-torch
SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "kaggletools", "competitions")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(name: str, extras: frozenset[str] = frozenset()) -> list[tuple[str, frozenset[str]]]:
    """What `name` (with `extras`) needs here, markers evaluated for this interpreter: (package, its extras)."""
    from packaging.requirements import Requirement

    out = []
    for text in metadata.requires(name) or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
            out.append((canonical(req.name), frozenset(req.extras)))
    return out


def closure(roots: list[str], stop: set[str] = frozenset()) -> set[str]:
    """`roots` and everything they need (through extras too), installed here; not going through the
    names in `stop`."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(canonical(r), frozenset()) for r in roots]
    while todo:
        item = todo.pop()
        if item in seen or item[0] in stop:
            continue
        try:
            needs = _requires(*item)
        except metadata.PackageNotFoundError:
            raise RunError(f"{item[0]} is not installed here, so its wheel cannot be pinned; pip install it") from None
        seen.add(item)
        todo.extend(needs)
    return {name for name, _ in seen}


def _source() -> Path | None:
    """The source tree this package runs from (an editable install), if it is one."""
    import kaggletools

    root = Path(kaggletools.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def own_requirements() -> list[str]:
    """What kaggletools needs: its source tree's pyproject.toml when it runs from one (an editable
    install's metadata can be stale), else its installed metadata."""
    from packaging.requirements import Requirement

    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover
        tomllib = None
    source = _source()
    if source is not None and tomllib is not None:
        texts = tomllib.loads((source / "pyproject.toml").read_text())["project"]["dependencies"]
    else:
        texts = metadata.requires("kaggletools") or []
    reqs = [Requirement(t) for t in texts]
    return [canonical(r.name) for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def pins(run_versions: dict, with_torch: bool = False) -> dict[str, str]:
    """{package: version} for every dependency of kaggletools to carry (not kaggletools itself):
    the run's recorded version where it has one, else the installed one."""
    stop = set() if with_torch else {canonical(p) for p in IMAGE_PACKAGES}
    names = closure(own_requirements(), stop)
    recorded = {canonical(k): v for k, v in run_versions.items() if isinstance(v, str)}
    return {name: recorded.get(name) or metadata.version(name) for name in sorted(names)}


def _pip(args: list[str], quiet: bool) -> None:
    cmd = [sys.executable, "-m", "pip", *args] + (["-q"] if quiet else [])
    done = subprocess.run(cmd, capture_output=quiet, text=True)
    if done.returncode:
        tail = (done.stderr or "").strip().splitlines()[-3:] if quiet else []
        raise RunError(f"`{' '.join(cmd[2:5])} ...` failed ({' | '.join(tail) or f'exit {done.returncode}'}); the "
                       "wheels must come from your index or mirror: check pip's settings, or bundle --no-wheels")


def fetch(pinned: dict[str, str], dest: Path, quiet: bool = True) -> None:
    """Download the wheels of `pinned` (no dependencies resolved again: the list is complete)."""
    dest.mkdir(parents=True, exist_ok=True)
    if pinned:
        _pip(["download", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
             + [f"{name}=={version}" for name, version in pinned.items()], quiet)


def own_wheel(dest: Path, version: str, quiet: bool = True) -> Path:
    """kaggletools' wheel: built from the source tree this package runs from (copied to a temporary
    folder, so the tree gets no build/ or egg-info), else downloaded at `version`."""
    source = _source()
    dest.mkdir(parents=True, exist_ok=True)
    if source is None:
        _pip(["download", "--no-deps", "-d", str(dest), f"kaggletools=={version}"], quiet)
    else:
        with tempfile.TemporaryDirectory(prefix="kaggletools-wheel-") as tmp:
            for part in SOURCE_PARTS:
                src = source / part
                if src.is_dir():
                    shutil.copytree(src, Path(tmp) / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                elif src.is_file():
                    shutil.copy2(src, Path(tmp) / part)
            _pip(["wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), tmp], quiet)
    found = sorted(dest.glob("kaggletools-*.whl"))
    if not found:
        raise RunError(f"no kaggletools wheel was written to {dest}")
    return found[-1]
