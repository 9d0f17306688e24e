"""The registry of competitions: `register` (a decorator), `get` (by slug or alias), `names`,
`aliases`, `default`, and discovery of the built-in modules and of plugins (the entry-point group
`kaggletools.competitions`), in the manner of timm's model registry."""
from __future__ import annotations

import contextlib
import importlib
import pkgutil
import sys
import warnings
from typing import Callable

import kaggletools.competition.tasks as tasks
from kaggletools.competition.interface import KINDS, Competition
from kaggletools.errors import CompetitionError, Interrupted
from kaggletools.options import Recipe

__all__ = ["register", "get", "names", "aliases", "default", "discover"]
ENTRY_POINTS = "kaggletools.competitions"


_REGISTRY: dict[str, Callable[[], Competition]] = {}
_ALIASES: dict[str, str] = {}
_DEFAULT: list[str] = []
_DISCOVERED = False


def register(slug: str, *aliases: str, default: bool = False):
    """Decorator for a zero-argument factory (or class) that makes the competition `slug`;
    `default`: the one `kaggletools demo` runs when none is named. A slug or alias that another
    factory holds already is refused, naming both (a plugin never takes over a built-in)."""
    names = (slug, *aliases)
    for name in names:
        if not isinstance(name, str) or not name.strip() or name != name.strip() or not name.isprintable():
            raise CompetitionError(f"competition name {name!r} (of {slug!r}) must be a printable, non-empty word")
    if len(set(names)) < len(names):
        raise CompetitionError(f"competition {slug!r} names {sorted(n for n in names if names.count(n) > 1)} twice")

    def decorate(factory):
        mine = owner(factory)
        for name in names:
            holder = _REGISTRY.get(name) or _REGISTRY.get(_ALIASES.get(name, ""))
            if holder is not None and owner(holder) != mine:
                raise CompetitionError(f"competition name {name!r} is taken twice: by {owner(holder)} and by {mine}; "
                                       "rename one of them")
        _REGISTRY[slug] = factory
        for alias in aliases:
            _ALIASES[alias] = slug
        if default:
            _DEFAULT.append(slug)
        return factory

    return decorate


def owner(factory) -> str:
    """Where a factory comes from: module.name."""
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', type(factory).__name__)}"


def default() -> str:
    """The slug registered as the default (the first one), else the first in sorted order."""
    discover()
    return _DEFAULT[0] if _DEFAULT else names()[0]


def discover(force: bool = False) -> None:
    """Import the built-in competition modules and the entry points of the group
    `kaggletools.competitions` once, so each registers itself. A plugin that fails to load is
    reported as a warning and skipped."""
    global _DISCOVERED
    if _DISCOVERED and not force:
        return
    from importlib.metadata import entry_points

    from kaggletools import competitions

    for module in pkgutil.iter_modules(competitions.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"kaggletools.competitions.{module.name}")
    for entry in entry_points(group=ENTRY_POINTS):
        _load_plugin(entry)
    _DISCOVERED = True


def _load_plugin(entry) -> None:
    """Import one plugin and check what it registered. A plugin that fails to import (any
    exception, SystemExit included: only an interrupt passes), takes a name already taken, or
    declares a competition that does not pass the checks is one warning naming the entry point and
    module, and leaves nothing registered."""
    before = (dict(_REGISTRY), dict(_ALIASES), list(_DEFAULT))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # what it prints never mixes with a verb's output
            entry.load()
        taken = [n for n, f in before[0].items() if _REGISTRY.get(n) is not f] + \
            [a for a, s in before[1].items() if _ALIASES.get(a) != s]
        if taken or _DEFAULT[:len(before[2])] != before[2]:
            what = ", ".join(map(repr, taken)) or "the default"
            raise CompetitionError(f"it replaced what others registered ({what}) instead of using register()")
        for slug in [s for s in _REGISTRY if _REGISTRY[s] is not before[0].get(s)]:
            _make(slug)  # its declarations checked now, not when a verb first needs them
    except (KeyboardInterrupt, Interrupted):
        raise
    except BaseException as e:  # noqa: BLE001 - a broken plugin must not break the others
        _REGISTRY.clear(), _REGISTRY.update(before[0])
        _ALIASES.clear(), _ALIASES.update(before[1])
        _DEFAULT[:] = before[2]
        said = " ".join(str(e).split())[:300]
        warnings.warn(f"competition plugin {entry.name!r} (module {entry.value}) was skipped: "
                      f"{type(e).__name__}" + (f": {said}" if said else ""), stacklevel=3)


def names() -> list[str]:
    """Registered competition slugs, sorted."""
    discover()
    return sorted(_REGISTRY)


def aliases() -> dict[str, str]:
    discover()
    return dict(_ALIASES)


def get(name: "str | Competition") -> Competition:
    """The competition registered as `name` (a slug or alias), checked; unknown names get the
    closest matches and the list of valid ones."""
    if isinstance(name, Competition):
        return name
    discover()
    slug = _ALIASES.get(name, name)
    if slug not in _REGISTRY:
        import difflib

        valid = sorted(_REGISTRY) + sorted(_ALIASES)
        close = difflib.get_close_matches(str(name), valid, 3, 0.0)  # the three closest, however far
        raise CompetitionError(f"unknown competition {name!r}; closest: {', '.join(close)} "
                               "(`kaggletools competitions` lists all)")
    return _make(slug)


def _make(slug: str) -> Competition:
    """The competition `slug` from its factory, checked."""
    factory = _REGISTRY[slug]
    competition = factory()
    if not isinstance(competition, Competition):
        raise CompetitionError(f"{owner(factory)} (registered as {slug!r}) made a {type(competition).__name__}, not a "
                               "kaggletools.competition.Competition")
    competition.slug = slug
    _check(competition)
    return competition


def describe(comp: Competition) -> dict:
    """What `kaggletools competitions` lists of one competition."""
    return {"slug": comp.slug, "aliases": sorted(a for a, s in aliases().items() if s == comp.slug),
            "title": comp.title, "task": comp.task.name, "kind": comp.kind, "classes": list(comp.classes),
            "metric": comp.metric_name, "greater_is_better": comp.greater_is_better, "files": list(comp.files)}


def _check(comp: Competition) -> None:
    """A competition's declarations, checked once when it is made (errors name its class)."""
    where = f"{type(comp).__module__}.{type(comp).__name__}"
    try:
        comp.task = tasks.resolve(comp.task)
        comp.task.check_classes(tuple(comp.classes))
    except CompetitionError as e:
        raise CompetitionError(f"{where}: {e}") from None
    if comp.kind not in KINDS:
        raise CompetitionError(f"{where}: kind {comp.kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(comp.recipe, Recipe):
        raise CompetitionError(f"{where}: recipe must be a kaggletools.options.Recipe")
    for name in ("title", "metric_name", "id_column"):
        value = getattr(comp, name, None)
        if not isinstance(value, str) or (name != "title" and not value.strip()):
            raise CompetitionError(f"{where}: {name} must be {'a' if name == 'title' else 'a non-empty'} string, "
                                   f"not {value!r}")
    if not isinstance(comp.greater_is_better, bool):
        raise CompetitionError(f"{where}: greater_is_better must be True or False, not {comp.greater_is_better!r}")
    if isinstance(comp.files, str) or not all(isinstance(f, str) for f in comp.files):
        raise CompetitionError(f"{where}: files must be a tuple of file names, not {comp.files!r}")
