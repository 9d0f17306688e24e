"""The package's architecture, checked: rooms (subpackages) in the order of the loop, each
importing only from rooms below it (and the few top-level modules everyone may use); no import
circles; no file much over 400 lines. Imports inside functions count too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kaggletools"
# Top-level modules every room may use: they import no room (options only errors).
BASE = ("errors", "progress", "signals", "options")
# Rooms, lowest first: a room imports only from the rooms before it (and from BASE).
ROOMS = ("io", "unpack", "kaggle", "score", "model", "data", "competition", "fit", "runs", "steps")
# At the top, in order: the Python API, the command line over it, `python -m`; the package's
# __init__ names plugin modules lazily (by string).
TOP = ("api", "cli", "__main__", "__init__")
# The one documented way up: the registry discovers the competition modules (the folder that
# installs as kaggletools.competitions) and plugins' entry points, which register themselves.
DISCOVERY = {("competition", "competitions")}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    return {name for name in out if name.startswith("kaggletools.")}


def _place(dotted: str) -> str:
    """The room (or top-level module) a dotted kaggletools name lives in."""
    return dotted.split(".")[1]


def _rank(place: str) -> int:
    if place in BASE:
        return -1
    if place in ROOMS:
        return ROOMS.index(place)
    return len(ROOMS) + TOP.index(place)


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_from_below_it(path):
    here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    assert here in BASE + ROOMS + TOP, f"{path}: not in a room; add it to one (or to ROOMS here, in order)"
    for name in _imports(path):
        there = _place(name)
        if there == here or (here, there) in DISCOVERY:
            continue
        if here in BASE:
            assert there in BASE and BASE.index(there) < BASE.index(here) or there == "errors", \
                f"{path} imports {name}: the base modules import no room"
            continue
        assert _rank(there) < _rank(here), f"{path} ({here}) imports {name} ({there}), a room above or beside it"


def test_every_room_is_a_package_with_a_docstring():
    for room in ROOMS + ("cli",):
        init = PACKAGE / room / "__init__.py"
        assert init.is_file(), room
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init}: say what the room holds"


def test_no_file_is_much_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 420}
    assert not long, long


def test_every_room_is_in_the_installed_package():
    """pyproject.toml lists the packages by hand (the competition modules install from another
    folder): a room missing there would be absent after `pip install .`."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    rooms = {f"kaggletools.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    assert rooms <= listed, sorted(rooms - listed)
