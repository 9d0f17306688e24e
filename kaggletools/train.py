"""The training loop: fine-tuning with one-cycle schedules, precomputed features, the LR finder,
mixed precision and DDP. Logging and checkpointing live in `runs`; the model in `models`.

fastai's `fine_tune(epochs, base_lr)` semantics: one-cycle over the head with the body frozen
(pct_start 0.99), then the learning rate halves and the whole network trains one-cycle with
discriminative rates slice(lr / lr_mult, lr) (pct_start 0.3, div 5). The one-cycle schedule is
fastai's, step by step (`OneCycle`), so short epochs on small samples train as fastai's do.

While the body is frozen it runs forward only, under no_grad: no backward pass through it. By
default it runs in eval mode, so its batch-norm statistics stay the pretrained ones. With
`train_bn=True` its batch-norm layers run in train mode instead: they normalise with the batch's
statistics and update their running statistics on the new data (under no_grad that still
happens), still without a backward pass. fastai's `train_bn` goes further and also trains the
batch-norm weights, which costs a backward pass through the whole body.
(benchmarks/README.md has the measured accuracy difference.)

Speed defaults (measured with benchmarks/cpu_precision.py): channels_last on CUDA and on the CPU;
bf16 autocast on CUDA and on CPUs with native bf16 instructions (avx512_bf16, amx_bf16): on a
2-core AVX-512-BF16 EPYC, mobilenet_v2 at 224 ran the frozen forward pass 3.2-3.8x and a training
step 1.9-4.3x faster with both than in fp32 contiguous (channels_last alone 1.6x / 1.6-2.5x);
autocast stays off on other CPUs, where bf16 is emulated. `torch.compile` (compile=True)
compiles the body; the frozen and unfrozen phases each get their own graph (eval/no_grad vs
train/grad), and under DDP the wrapped model is compiled. On CUDA, batches arrive through pinned
memory with non_blocking copies, and the training loss is summed on the device (no sync per step).

DDP (WORLD_SIZE > 1): each rank trains on its shard of every epoch; gradients are averaged by
DistributedDataParallel, batch-norm running statistics are averaged across ranks at the end of
each epoch (so every rank evaluates, and rank 0 saves, the same model), and the training loss and
validation predictions are gathered from all ranks.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kaggletools import models
from kaggletools.loaders import Normalize, augment, batches
from kaggletools.predict import predict


@dataclass
class Data:
    """Decoded training items and what the loop needs to know about them."""

    array: np.ndarray                 # (N, S, S, C) cache of the training items
    y: np.ndarray                     # (N, k) float targets
    train_idx: np.ndarray
    valid_idx: np.ndarray
    normalize: Normalize
    extra: np.ndarray | None = None   # (N, e) per-item numbers for the head


@dataclass
class Dist:
    """This process's place in a torch.distributed job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def amp_context(device: torch.device, mode: str = "auto"):
    """A factory for the autocast context. 'auto': bf16 on CUDA, and on CPUs with native bf16
    (1.5-3.2x faster there for mobilenet_v2, forward and training); off on other CPUs and on MPS.
    'bf16' / 'fp16' force a dtype, 'off' disables autocast."""
    auto_on = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    if mode == "off" or (mode == "auto" and not auto_on):
        return contextlib.nullcontext
    dtype = torch.float16 if mode == "fp16" else torch.bfloat16
    return lambda: torch.autocast(device.type, dtype=dtype)


def default_channels_last(device: torch.device) -> bool:
    """channels_last by default on CUDA and the CPU (oneDNN's preferred layout: 1.6-2.5x faster
    for mobilenet_v2 on an AVX-512 CPU); not on MPS."""
    return device.type in ("cuda", "cpu")


def _cos(start: float, end: float, pct: float) -> float:
    return start + (1 + math.cos(math.pi * (1 - pct))) * (end - start) / 2


class OneCycle:
    """fastai's one-cycle schedule, step by step: at step i of n the cycle is at i / n; the rate
    rises (cosine) from max / div to max over `pct_start` of the cycle, then falls to max / 1e5,
    and Adam's beta1 moves 0.95 -> 0.85 -> 0.95 against it. Unlike torch's OneCycleLR, whose peak
    is at step pct_start * n - 1 and whose last step runs at the minimum rate, a cycle of a few
    steps (a small data set: 2 batches an epoch) still trains at high rates, as fastai's does."""

    def __init__(self, opt, total_steps: int, pct_start: float, div: float, div_final: float = 1e5,
                 moms: tuple[float, float, float] = (0.95, 0.85, 0.95)):
        self.opt, self.total_steps, self.pct_start = opt, max(1, total_steps), pct_start
        self.div, self.div_final, self.moms = div, div_final, moms
        self.max_lrs = [g["lr"] for g in opt.param_groups]
        self.last_epoch = 0
        self._apply()

    def _apply(self) -> None:
        pct = self.last_epoch / self.total_steps
        up = pct < self.pct_start
        p = pct / self.pct_start if up else (pct - self.pct_start) / (1 - self.pct_start)
        m0, m1, m2 = self.moms
        for group, hi in zip(self.opt.param_groups, self.max_lrs):
            group["lr"] = _cos(hi / self.div, hi, p) if up else _cos(hi, hi / self.div_final, p)
            if "betas" in group:
                group["betas"] = (_cos(m0, m1, p) if up else _cos(m1, m2, p), group["betas"][1])

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()


class HeadOnly(torch.nn.Module):
    """The head as a module of its own, so DDP syncs only it while the body is frozen."""

    def __init__(self, net: models.Net):
        super().__init__()
        self.net = net

    def forward(self, features, extra=None):
        return self.net.classify(features, extra)


class Learner:
    """Fits a models.Net on Data; reports each epoch to `log` (e.g. Run.log_epoch)."""

    def __init__(self, competition, model: models.Net, data: Data, recipe, device: torch.device, *,
                 amp: str = "auto", channels_last: bool | None = None, compile: bool = False,
                 train_bn: bool = False, progress: bool = True, log=None, dist: Dist | None = None):
        self.competition, self.model, self.data, self.recipe = competition, model, data, recipe
        self.device, self.progress, self.log = device, progress, log or (lambda row: None)
        self.dist = dist or Dist()
        self.amp = amp_context(device, amp)
        self.channels_last = default_channels_last(device) if channels_last is None else channels_last
        self.compile, self.train_bn = compile, train_bn
        self.model.to(device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.body = torch.compile(self.model.body) if compile else self.model.body
        self.generator = torch.Generator().manual_seed(recipe.seed + self.dist.rank)
        self.history: list[dict] = []
        self.epoch = 0

    # -- batches -----------------------------------------------------------------------------
    def _train_batches(self, epoch_seed: int):
        d, r = self.data, self.recipe
        for pos, x in batches(d.array, d.train_idx, r.batch_size, self.device, shuffle=True,
                              seed=r.seed * 1000 + epoch_seed, drop_last=len(d.train_idx) > r.batch_size,
                              rank=self.dist.rank, world=self.dist.world):
            x = augment(d.normalize(x), r.size, self.generator, min_scale=r.min_scale, flip=r.flip,
                        dihedral=r.dihedral, max_shift=r.max_shift)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self._targets(pos), self._extra(pos)

    def _targets(self, pos):
        return torch.as_tensor(self.data.y[pos], device=self.device)

    def _extra(self, pos):
        return None if self.data.extra is None else torch.as_tensor(self.data.extra[pos], device=self.device)

    def _n_batches(self) -> int:
        n = math.ceil(len(self.data.train_idx) / self.dist.world)
        return max(1, n // self.recipe.batch_size if n > self.recipe.batch_size else 1)

    # -- phases ------------------------------------------------------------------------------
    def fit_frozen(self, epochs: int, lr: float) -> None:
        """Train the head with the body frozen: the body runs forward only (eval mode, or with its
        batch-norm layers updating their statistics when `train_bn`)."""
        if epochs <= 0:
            return
        models.freeze(self.model)
        head = self._wrap(HeadOnly(self.model))
        opt = self._optimizer([{"params": list(self.model.head.parameters()), "lr": lr}])
        sched = self._one_cycle(opt, epochs, pct_start=0.99, div=25.0)

        def step(x, y, e):
            with torch.no_grad(), self.amp():
                feats = self.body(x)
            with self.amp():
                return head(feats.flatten(1).float(), e)

        for _ in range(epochs):
            self.model.body.eval()
            if self.train_bn:
                for m in self.model.body.modules():
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                        m.train()
            self.model.head.train()
            self._epoch("frozen", step, opt, sched)

    def fit_unfrozen(self, epochs: int, lr: float) -> None:
        """Train everything, one-cycle, with discriminative learning rates."""
        if epochs <= 0:
            return
        models.unfreeze(self.model)
        net = self._wrap(self.model)
        if self.compile and self.dist.world > 1:
            net = torch.compile(net)  # DDP's own forward would bypass the compiled body
        opt = self._optimizer(models.param_groups(self.model, lr, self.recipe.lr_mult))
        sched = self._one_cycle(opt, epochs, pct_start=0.3, div=5.0)

        def step(x, y, e):
            with self.amp():
                return net(x, e) if self.dist.world > 1 else self.model.classify(self.body(x).flatten(1).float(), e)

        for _ in range(epochs):
            self.model.train()
            self._epoch("unfrozen", step, opt, sched)

    def fine_tune(self, freeze_epochs: int | None = None, epochs: int | None = None, lr: float | None = None):
        """fastai's fine_tune: frozen one-cycle at lr, then unfrozen at slice(lr/2/lr_mult, lr/2)."""
        r = self.recipe
        lr = r.lr if lr is None else lr
        self.fit_frozen(r.freeze_epochs if freeze_epochs is None else freeze_epochs, lr)
        self.fit_unfrozen(r.epochs if epochs is None else epochs, lr / 2)

    # -- loop pieces ---------------------------------------------------------------------------
    def _wrap(self, module):
        if self.dist.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        import inspect

        ids = [self.device.index] if self.device.type == "cuda" else None
        # buffers are averaged once per epoch (_sync_buffers), not broadcast at every forward
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                   else {"broadcast_buffers": False})
        return DDP(module, device_ids=ids, **no_sync)

    def _sync_buffers(self) -> None:
        """Average floating-point buffers (batch-norm running statistics) across ranks."""
        if self.dist.world == 1:
            return
        import torch.distributed as torch_dist

        for buf in self.model.buffers():
            if buf.is_floating_point():
                torch_dist.all_reduce(buf.data, op=torch_dist.ReduceOp.SUM)
                buf.data /= self.dist.world

    def _optimizer(self, groups):
        return torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=self.recipe.weight_decay)

    def _one_cycle(self, opt, epochs: int, pct_start: float, div: float):
        return OneCycle(opt, epochs * self._n_batches(), pct_start, div)

    def _epoch(self, phase: str, step, opt, sched) -> dict:
        start, seen = time.perf_counter(), 0
        total = torch.zeros((), device=self.device)  # summed on the device: no sync per step
        show = self.progress and self.dist.main
        bar = tqdm(self._train_batches(self.epoch), total=self._n_batches(), unit="batch", leave=False,
                   desc=f"epoch {self.epoch + 1} ({phase})", disable=not show)
        for i, (x, y, e) in enumerate(bar):
            loss = F.binary_cross_entropy_with_logits(step(x, y, e).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched.last_epoch + 1 < sched.total_steps:
                sched.step()
            seen += len(x)
            total += loss.detach() * len(x)
            if show and i % 10 == 0:  # reading the loss waits for the device: only now and then
                bar.set_postfix(loss=f"{total.item() / seen:.4f}")
        total = total.item()  # waits for the last step, so the time below is the real one
        train_seconds = time.perf_counter() - start
        self._sync_buffers()
        total, seen = self._sum_across_ranks(total, seen)
        row = {"epoch": self.epoch + 1, "phase": phase, "train_loss": total / max(seen, 1),
               **self.evaluate(), "seconds": round(time.perf_counter() - start, 2),
               "train_images_per_s": round(seen / train_seconds, 1)}
        return self.record(row)

    def record(self, row: dict) -> dict:
        """Close an epoch: count it, keep its row, log it and print it (rank 0 only)."""
        self.epoch += 1
        self.history.append(row)
        if self.dist.main:
            self.log(row)
            if self.progress:
                tqdm.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        return row

    def _sum_across_ranks(self, *values: float) -> tuple[float, ...]:
        """The sums of per-rank numbers over all ranks (the numbers themselves on one process)."""
        if self.dist.world == 1:
            return values
        import torch.distributed as torch_dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)  # nccl reduces CUDA tensors only
        torch_dist.all_reduce(t)
        return tuple(t.tolist())

    # -- evaluation ---------------------------------------------------------------------------
    def predict(self, array, indices, tta: str = "none", extra=None, desc="predict") -> dict:
        """Probabilities for `indices` of `array`, gathered across ranks in index order."""
        out = predict(self.model, array, indices, self.recipe.size, self.data.normalize, self.device,
                      tta=tta, extra=extra, batch_size=self.recipe.batch_size * 2, amp=self.amp,
                      channels_last=self.channels_last, progress=self.progress and self.dist.main,
                      desc=desc, rank=self.dist.rank, world=self.dist.world)
        if self.dist.world > 1:
            out = _gather(out, indices)
        return out

    def evaluate(self, tta: str = "none") -> dict:
        """Validation loss and metric (and error rate for binary tasks)."""
        d = self.data
        if len(d.valid_idx) == 0:
            return {}
        probs = self.predict(d.array, d.valid_idx, tta, d.extra, desc="valid")["tta"]
        return self.scores(d.y[d.valid_idx], probs)

    def scores(self, y: np.ndarray, probs: np.ndarray, post: dict | None = None) -> dict:
        p = np.clip(probs, 1e-7, 1 - 1e-7)
        bce = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        row = {"valid_loss": bce, self.competition.metric_name: self.competition.metric(y, probs, post)}
        if self.competition.task == "binary":
            row["error_rate"] = float(np.mean((probs[:, 0] > 0.5) != (y[:, 0] > 0.5)))
        return row


def _gather(out: dict, indices: np.ndarray) -> dict:
    """All ranks' shards, deduplicated and put back in the order of `indices`."""
    import torch.distributed as torch_dist

    shards = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(shards, out)
    positions = np.concatenate([s["positions"] for s in shards])
    where = {p: i for i, p in enumerate(positions)}  # padding repeats items: keep any one copy
    order = np.array([where[p] for p in indices])
    return {k: np.concatenate([s[k] for s in shards])[order] for k in ("plain", "tta", "positions")}
