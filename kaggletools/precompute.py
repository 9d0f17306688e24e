"""fast.ai lesson 1's trick: run the frozen body once over the data, keep the pooled features,
and train the head alone on them in seconds. With a TTA level, features are computed once per
view: training draws one view per item per epoch, validation averages over the views.
Under torchrun every rank computes all features and trains the same head (the head is cheap;
only rank 0 writes), so precompute does not get faster with more processes."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kaggletools import models
from kaggletools.loaders import batches
from kaggletools.predict import views as tta_views


@torch.no_grad()
def extract(learner, indices: np.ndarray, level: str = "none", desc: str = "features") -> torch.Tensor:
    """Pooled body features of `indices`, one set per view of `level`: (views, n, features)."""
    model, r = learner.model, learner.recipe
    model.eval()
    fns = tta_views(level)
    out = []
    n_batches = -(-len(indices) // (r.batch_size * 2))
    for _, x in tqdm(batches(learner.data.array, indices, r.batch_size * 2, learner.device), total=n_batches,
                     desc=desc, unit="batch", disable=not (learner.progress and learner.dist.main), leave=False):
        x = learner.data.normalize(x)
        per_view = []
        for fn in fns:
            xv = fn(x, r.size)
            if learner.channels_last:
                xv = xv.contiguous(memory_format=torch.channels_last)
            with learner.amp():
                per_view.append(learner.body(xv).flatten(1).float().cpu())
        out.append(torch.stack(per_view))
    return torch.cat(out, 1)


def fit_head(learner, epochs: int, lr: float | None = None, level: str = "flip") -> None:
    """Train the head for `epochs` on precomputed features (body frozen), one-cycle."""
    d, r = learner.data, learner.recipe
    lr = r.lr if lr is None else lr
    models.freeze(learner.model)
    start = time.perf_counter()
    train_feats = extract(learner, d.train_idx, level, "features (train)")
    valid_feats = extract(learner, d.valid_idx, level, "features (valid)")
    feature_seconds = time.perf_counter() - start

    head = learner.model.head
    opt = learner._optimizer([{"params": list(head.parameters()), "lr": lr}])
    bs = r.batch_size
    steps = max(1, len(d.train_idx) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.25)
    y = torch.as_tensor(d.y[d.train_idx])
    extra = None if d.extra is None else torch.as_tensor(d.extra[d.train_idx])
    rng = torch.Generator().manual_seed(r.seed)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        head.train()
        order = torch.randperm(len(y), generator=rng)
        view = torch.randint(len(train_feats), (len(y),), generator=rng)
        total = 0.0
        for s in range(steps):
            i = order[s * bs:(s + 1) * bs] if s < steps - 1 else order[s * bs:]
            f = train_feats[view[i], i].to(learner.device)
            e = None if extra is None else extra[i].to(learner.device)
            loss = F.binary_cross_entropy_with_logits(learner.model.classify(f, e), y[i].to(learner.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched.last_epoch + 1 < sched.total_steps:
                sched.step()
            total += loss.item() * len(i)
        probs = predict_features(learner, valid_feats, d.valid_idx)
        row = {"epoch": learner.epoch + 1, "phase": "precomputed", "train_loss": total / len(y),
               **learner.scores(d.y[d.valid_idx], probs), "seconds": round(time.perf_counter() - t0, 2),
               "feature_seconds": round(feature_seconds, 2) if epoch == 0 else 0.0}
        learner.record(row)


@torch.no_grad()
def predict_features(learner, feats: torch.Tensor, indices: np.ndarray) -> np.ndarray:
    """Head probabilities averaged over the views of precomputed features."""
    d = learner.data
    learner.model.head.eval()
    extra = None if d.extra is None else torch.as_tensor(d.extra[indices], device=learner.device)
    probs = [torch.sigmoid(learner.model.classify(f.to(learner.device), extra)).cpu() for f in feats]
    return torch.stack(probs).mean(0).numpy()
