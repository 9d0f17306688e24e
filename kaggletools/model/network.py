"""A backbone's body (torchvision or timm, see kaggletools.model.backbones) with a new head, freezing, and
parameter groups for discriminative learning rates."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kaggletools.model.backbones import (  # noqa: F401  (re-exported: callers use models.X)
    IMAGENET_MEAN, IMAGENET_STD, OFFLINE_WEIGHTS, BackboneInfo, BackboneSpec, ModelError, backbones, build,
    install_offline_weights, offline_weights_cached, pick_weights, resolve)


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


def create(backbone: str, n_out: int, pretrained: bool = True, n_extra: int = 0,
           weights_path: str | Path | None = None, pool: str = "avg") -> tuple[Net, BackboneInfo]:
    """A Net on `backbone` (a torchvision or timm name, see backbones.resolve) with a new head.

    Weights: the file `weights_path` when given, else the library's pretrained weights when
    `pretrained`, else random. `pool`: "avg" (the backbone's own pooling) or "concat" (see
    concat_pool). Raises ModelError (one line) for unknown names and unusable weights.
    """
    body, info = build(backbone, pretrained, weights_path)
    if pool == "concat":
        info.n_features = concat_pool(body, info)
    elif pool != "avg":
        raise ModelError(f"unknown pooling {pool!r}: avg or concat")
    return Net(body, info.n_features, n_out, n_extra), info


class ConcatPool(nn.Module):
    """fastai's AdaptiveConcatPool2d: each channel's average and maximum side by side (twice the
    features). The maximum keeps small local evidence (a road or a mine in a forest chip) that the
    average dilutes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], 1)


def concat_pool(body: nn.Module, info: BackboneInfo) -> int:
    """Make `body` pool by ConcatPool; the width of its features now. Where it pools:
    timm's `global_pool` (its own "catavgmax"), a torchvision `avgpool` module (resnets,
    efficientnets, regnets), or after mobilenet_v2's `features` (its forward then averages a 1x1
    map: a no-op). One forward pass checks the result; a body it does not fit raises ModelError."""
    if info.library == "timm" and hasattr(body, "reset_classifier"):
        try:
            body.reset_classifier(0, global_pool="catavgmax")
        except (AssertionError, TypeError, ValueError, RuntimeError) as e:
            raise ModelError(f"{info.name} cannot pool by concat: timm refuses ({e or type(e).__name__}); "
                             "use --pool avg") from None
    elif isinstance(getattr(body, "avgpool", None), nn.AdaptiveAvgPool2d):
        body.avgpool = ConcatPool()
    elif type(body).__name__ == "MobileNetV2":
        body.features.append(ConcatPool())
    else:
        raise ModelError(f"{info.name} has no pooling layer that --pool concat knows how to replace; "
                         "use --pool avg")
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            width = body(torch.zeros(1, *info.input_size)).flatten(1).shape[1]
    except RuntimeError as e:  # layers after the pooling expect the old width
        raise ModelError(f"{info.name} cannot pool by concat: layers after its pooling expect the "
                         "average's width; use --pool avg") from e
    finally:
        body.train(was_training)
    if width != 2 * info.n_features:
        raise ModelError(f"{info.name} cannot pool by concat: it gives {width} features, not "
                         f"2 x {info.n_features}; use --pool avg")
    return width


def freeze(model: Net) -> None:
    """Train the head only; the body runs in eval mode (its batch-norm statistics stay fixed)."""
    model.body.requires_grad_(False)


def unfreeze(model: Net, keep_frozen: float = 0.0) -> list[nn.Module]:
    """Train the body again, except its first layers holding `keep_frozen` of its parameter tensors
    (network order, whole layers): autograd then records nothing before them, so backward stops
    there. The early, high-resolution layers cost most of a backward pass and change least in
    fine-tuning, so this is where a CPU saves time and memory. Returns the batch-norm layers kept
    frozen (run them in eval mode, so that their statistics stay too)."""
    model.body.requires_grad_(True)
    target = round(sum(1 for _ in model.body.parameters()) * keep_frozen)
    kept, count = [], 0
    for module in model.body.modules():
        own = list(module.parameters(recurse=False))
        if own and count < target:
            kept.append(module)
            count += len(own)
            module.requires_grad_(False)
    return [m for m in kept if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def param_groups(model: Net, lr: float, lr_mult: float) -> list[dict]:
    """Three groups, early body / late body / head, with rates spread geometrically from
    lr / lr_mult to lr (fastai's `slice(lr / lr_mult, lr)`)."""
    early, late = body_halves(model.body)
    groups = [early, late, list(model.head.parameters())]
    rates = [lr / lr_mult, lr / lr_mult ** 0.5, lr]
    return [{"params": params, "lr": rate} for params, rate in zip(groups, rates) if params]


def body_halves(body: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The body's parameters split in two, early and late, each in network order.

    timm bodies split by stage: timm's coarse group matcher gives stem, stages (and neck) in order,
    and the first half of those groups (rounded up: resnets' stem, layer1, layer2) is early.
    Other bodies split at half their parameter tensors.
    """
    named = list(body.named_parameters())
    matcher = getattr(body, "group_matcher", None)
    if callable(matcher):
        from timm.models import group_parameters

        try:
            stages = [names for names in group_parameters(body, matcher(coarse=True)).values() if names]
        except NotImplementedError:
            stages = []
        if len(stages) >= 2:
            cut = (len(stages) + 1) // 2
            early = {n for names in stages[:cut] for n in names}
            late = [p for n, p in named if n not in early]  # the rest, unmatched parameters included
            return [p for n, p in named if n in early], late
    params = [p for _, p in named]
    half = len(params) // 2
    return params[:half], params[half:]
