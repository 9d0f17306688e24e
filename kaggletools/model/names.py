"""Backbone names: which library and model a name means, checked in milliseconds and without
importing torch (so a misspelt --backbone fails at once, before any run folder or decoding).

Names: `tv/` or `torchvision/` forces torchvision, `timm/` (or `hf-hub:timm/`) forces timm; an
unprefixed name is torchvision's when torchvision has it (it stays the default), else timm's; a
name with a pretrained tag (`convnext_tiny.fb_in22k`) is timm's. The lists of names come from
`torchvision.models.list_models()` and `timm.list_models()` / `timm.list_pretrained()`, saved once
per installed version pair under the cache folder (reading them takes a few seconds of imports).
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from importlib import metadata

PREFIXES = {"tv/": "torchvision", "torchvision/": "torchvision", "timm/": "timm", "hf-hub:timm/": "timm"}
NO_WEIGHTS_HINT = "pass --weights PATH (a local .pth/.pt/.bin/.safetensors file) or --no-pretrained"


class ModelError(ValueError):
    """An unknown backbone or weights that cannot be had; the message (one line) says what to do."""


@dataclass(frozen=True)
class BackboneSpec:
    library: str             # "torchvision" or "timm"
    model: str               # the architecture's name in that library, e.g. "convnext_tiny"
    tag: str | None = None   # timm's pretrained tag, e.g. "fb_in22k"; None: the library's default

    @property
    def name(self) -> str:
        """The unambiguous name, e.g. "tv/resnet34" or "timm/convnext_tiny.fb_in22k"."""
        prefix = "tv/" if self.library == "torchvision" else "timm/"
        return prefix + self.model + (f".{self.tag}" if self.tag else "")


_LOADED: dict[str, list[str]] = {}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def names(kind: str) -> list[str]:
    """'torchvision' (its classification models), 'timm' (its models) or 'timm-pretrained'
    (timm's `model.tag` names), from the saved lists when the installed versions match."""
    if kind in _LOADED:
        return _LOADED[kind]
    from kaggletools.io.places import cache_root

    versions = f"tv{_version('torchvision')}-timm{_version('timm')}"
    path = cache_root() / f"backbone-names-{versions}.json"
    try:
        lists = json.loads(path.read_text())
    except (OSError, ValueError):
        lists = _read_from_libraries()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            partial.write_text(json.dumps(lists))
            partial.replace(path)
        except OSError:
            pass  # a read-only cache folder: read the libraries every time
    _LOADED.update(lists)
    return _LOADED[kind]


def _read_from_libraries() -> dict[str, list[str]]:
    import timm
    import torchvision

    return {"torchvision": torchvision.models.list_models(module=torchvision.models),
            "timm": timm.list_models(), "timm-pretrained": timm.list_pretrained()}


def resolve(name: str) -> BackboneSpec:
    """Which library and model `name` means (see the module's docstring); ModelError with the
    closest names from both libraries when there is none."""
    text, library = name.strip(), None
    for prefix, lib in PREFIXES.items():
        if text.lower().startswith(prefix):
            text, library = text[len(prefix):], lib
            break
    arch, _, tag = text.partition(".")
    if library != "timm" and not tag and arch in names("torchvision"):
        return BackboneSpec("torchvision", arch)
    if library == "torchvision":
        raise ModelError(f"unknown torchvision backbone {name!r}{_closest(text, 'torchvision', 'tv/')}")
    if arch and arch in set(names("timm")):
        if tag:
            tags = [n.partition(".")[2] for n in names("timm-pretrained") if n.partition(".")[0] == arch]
            if tag not in tags:
                close = difflib.get_close_matches(tag, tags, n=6, cutoff=0) if tags else []
                raise ModelError(f"timm has no pretrained tag {tag!r} for {arch}; its tags: {', '.join(close) or 'none'}")
        return BackboneSpec("timm", arch, tag or None)
    raise ModelError(f"unknown backbone {name!r}{_closest(text, library, 'timm/' if library else '')}")


def _closest(text: str, library: str | None, prefix: str) -> str:
    """"; closest: a, b, ..." over the names of torchvision and timm (or `library`'s)."""
    pool: list[str] = []
    if library != "timm":
        pool += names("torchvision")
    if library != "torchvision":
        pool += names("timm") + names("timm-pretrained")
    close = difflib.get_close_matches(text, list(dict.fromkeys(pool)), n=6, cutoff=0.6)
    lists = {"torchvision": "torchvision.models.list_models()", "timm": "timm.list_models()"}
    where = lists[library] if library else " and ".join(lists.values())
    found = f"; closest: {', '.join(prefix + c for c in close)}" if close else ""
    return f"{found} (all: {where})"


def library_names(library: str = "torchvision") -> list[str]:
    """Every classification model name of `library` ("torchvision" or "timm")."""
    return names(library)


def check_all(recipe, options) -> None:
    """Every option, the backbone's name included, in milliseconds and without importing torch:
    before anything is decoded or written."""
    recipe.check()
    options.check()
    resolve(recipe.backbone)
