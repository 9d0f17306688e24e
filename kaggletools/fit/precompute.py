"""fast.ai lesson 1's trick as a phase of the training loop: run the frozen body once over the
data, keep the pooled features, and train the head alone on them in seconds. With a TTA level,
features are computed once per view: each epoch draws one view per item, validation averages
over the views. Under torchrun each rank computes a shard of the features and the shards are
gathered, then each rank trains on its shard of every epoch."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from kaggletools import progress
from kaggletools.data.loaders import batches, to_device
from kaggletools.fit.tta import views


@dataclass
class Features:
    learner: object
    train: torch.Tensor        # (views, n_train, features)
    valid: torch.Tensor        # (views, n_valid, features)
    seconds: float

    @classmethod
    @torch.no_grad()
    def compute(cls, learner, level: str = "none") -> "Features":
        start = time.perf_counter()
        d = learner.data
        train = extract(learner, d.train_idx, level, "features (train)")
        valid = extract(learner, d.valid_idx, level, "features (valid)")
        return cls(learner, train, valid, time.perf_counter() - start)

    @property
    def n_batches(self) -> int:
        n = math.ceil(self.train.shape[1] / self.learner.dist.world)
        return max(1, n // self.learner.recipe.batch_size)

    def batches(self, epoch: int):
        """This rank's shard of a shuffled epoch: (features of one random view, targets, extra)."""
        lr, r, d = self.learner, self.learner.recipe, self.learner.data
        rng = torch.Generator().manual_seed(r.seed * 1000 + epoch)
        order = torch.randperm(self.train.shape[1], generator=rng)
        view = torch.randint(self.train.shape[0], (self.train.shape[1],), generator=rng)
        if lr.dist.world > 1:
            per_rank = math.ceil(len(order) / lr.dist.world)
            order = order.repeat(2)[: per_rank * lr.dist.world][lr.dist.rank::lr.dist.world]
        bs, steps = r.batch_size, self.n_batches
        for s in range(steps):
            i = order[s * bs:(s + 1) * bs] if s < steps - 1 else order[s * bs:]
            pos = d.train_idx[i.numpy()]
            yield to_device(self.train[view[i], i], lr.device), lr.targets(pos), lr.extra(pos)

    @torch.no_grad()
    def evaluate(self) -> dict:
        lr, d = self.learner, self.learner.data
        if len(d.valid_idx) == 0:
            return {}
        lr.model.head.eval()
        extra = lr.extra(d.valid_idx)
        probs = torch.stack([lr.task.activation(lr.model.classify(f.to(lr.device), extra).float()).cpu()
                             for f in self.valid]).mean(0).numpy()
        return {**lr.scores(d.y[d.valid_idx], probs), "feature_seconds": round(self.seconds, 2)}


@torch.no_grad()
def extract(learner, indices: np.ndarray, level: str = "none", desc: str = "features") -> torch.Tensor:
    """Pooled body features of `indices`, one set per view of `level`: (views, n, features),
    computed in shards across ranks and gathered."""
    model, r, dist = learner.model, learner.recipe, learner.dist
    model.eval()
    fns = views(level)
    out, positions = [], []
    n_batches = -(-len(indices) // (r.batch_size * 2 * dist.world))
    for pos, x in progress.bar(batches(learner.data.array, indices, r.batch_size * 2, learner.device,
                                       rank=dist.rank, world=dist.world),
                               total=n_batches, desc=desc, unit="batch", enabled=learner.show):
        x = learner.data.normalize(x)
        per_view = []
        for fn in fns:
            xv = fn(x, r.size)
            if learner.channels_last:
                xv = xv.contiguous(memory_format=torch.channels_last)
            with learner.precision.autocast():
                per_view.append(learner.body(xv).flatten(1).float().cpu())
        out.append(torch.stack(per_view))
        positions.append(np.asarray(pos))
    feats = torch.cat(out, 1) if out else torch.zeros(len(fns), 0, 0)
    if dist.world == 1:
        return feats
    shards = dist.gather((np.concatenate(positions) if positions else np.zeros(0, int), feats))
    where = {}
    for rank_pos, rank_feats in shards:
        for j, p in enumerate(rank_pos):
            where.setdefault(int(p), rank_feats[:, j])
    return torch.stack([where[int(p)] for p in indices], 1)
