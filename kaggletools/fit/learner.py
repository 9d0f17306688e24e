"""The training loop: one loop (`Learner._epoch`) that every phase runs through, with one set of
schedules (kaggletools.fit.schedules), mixed precision with a gradient scaler where fp16 needs one,
checkpoints at the end of every epoch and exact resumption, DDP under torchrun.

Phases (fastai's `fine_tune(epochs, base_lr)` by default):
- frozen: the head trains, one-cycle (pct_start 0.99, div 25); the body runs forward only, under
  no_grad, in eval mode, so its batch-norm statistics stay the pretrained ones (`train_bn` lets
  them follow the new data, still without a backward pass);
- precomputed (`--precompute N`, fast.ai lesson 1): the body runs once over the data (one pass per
  TTA view), and the head trains on those features, one-cycle (pct_start 0.25);
- unfrozen: everything trains at half the rate, discriminative rates slice(lr / lr_mult, lr)
  (pct_start 0.3, div 5);
- lr_find: the frozen phase with an exponential sweep of the rate, stopped when the loss explodes;
  the weights are restored afterwards.
`--schedule sgdr` replaces one-cycle by cosine annealing with warm restarts in every phase.

Resumption: each epoch ends with a checkpoint (weights, optimizer, schedule position, gradient
scaler, RNG states, history); a resumed run rebuilds the phase it stopped in and continues with
the same random numbers, so on the CPU it ends with the weights an uninterrupted run ends with.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from kaggletools import progress, signals
from kaggletools.model import network as models
from kaggletools.fit import schedules
from kaggletools.model.device import Precision, default_channels_last, optimizer_options
from kaggletools.model.dist import Dist
from kaggletools.data.loaders import Normalize, augment, batches, relight, to_device
from kaggletools.options import Recipe, RunOptions
from kaggletools.fit.tta import Predictor
from kaggletools.fit.epoch_table import EpochTable


@dataclass
class Data:
    """Decoded training items and what the loop needs to know about them."""

    array: np.ndarray                 # (N, S, S, C) cache of the training items
    y: np.ndarray                     # (N, k) float targets, encoded by the task
    train_idx: np.ndarray
    valid_idx: np.ndarray
    normalize: Normalize
    extra: np.ndarray | None = None   # (N, e) per-item numbers for the head


@dataclass
class Phase:
    """One stretch of training: what trains, on which batches, under which schedule."""

    name: str
    epochs: int
    groups: list[dict]                            # optimizer parameter groups with their peak rates
    batches: Callable[[int], Iterator]            # epoch number -> (inputs, targets, extra)
    n_batches: int
    forward: Callable                             # (inputs, extra) -> logits
    modes: Callable[[], None]                     # train/eval modes at the start of an epoch
    evaluate: Callable[[], dict]                  # validation scores at the end of an epoch
    schedule: Callable = None                     # (optimizer, steps per epoch) -> Schedule


@dataclass
class Position:
    """Where a run is: the phase (index in the plan) and the epochs done in it."""

    phase: int = 0
    done: int = 0


class Learner:
    """Fits a models.Net on Data for a competition. `on_epoch(learner, position)` runs after
    every epoch (rank 0 saves the checkpoint there)."""

    def __init__(self, competition, model: models.Net, data: Data, recipe: Recipe, options: RunOptions,
                 device: torch.device, *, dist: Dist = Dist(), on_epoch: Callable | None = None):
        self.competition, self.task, self.model, self.data = competition, competition.task, model, data
        self.recipe, self.options, self.device, self.dist = recipe, options, device, dist
        self.on_epoch = on_epoch or (lambda learner, position: None)
        self.precision = Precision.for_device(device, options.amp)
        self.channels_last = default_channels_last(device) if options.channels_last is None else options.channels_last
        self.model.to(device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.body = torch.compile(self.model.body) if options.compile else self.model.body
        self.generator = torch.Generator().manual_seed(recipe.seed + dist.rank)
        self.history: list[dict] = []
        self.batch_losses: list[dict] = []
        self.epoch = 0
        self.show = options.progress and dist.main
        self.table = EpochTable(competition.metric_name)  # the per-epoch lines, as fastai prints them

    # -- the plan --------------------------------------------------------------------------------
    def plan(self) -> list[tuple[str, int, float]]:
        """(phase, epochs, peak rate) in order: fine_tune, or the precomputed head then unfrozen."""
        r, o = self.recipe, self.options
        first = ("precomputed", o.precompute, r.lr) if o.precompute else ("frozen", r.freeze_epochs, r.lr)
        return [first, ("unfrozen", r.epochs, r.lr / 2)]

    def fit(self, resume: dict | None = None) -> None:
        """Run the plan, from the start or from a checkpoint's position."""
        start = Position()
        if resume is not None:
            start = self.load_state(resume)
        for index, (name, epochs, lr) in enumerate(self.plan()):
            if index < start.phase or epochs <= 0:
                continue
            done = start.done if index == start.phase else 0
            if done >= epochs:
                continue
            phase = self.phase(name, epochs, lr)
            opt = self._optimizer(phase.groups)
            sched = phase.schedule(opt, phase.n_batches)
            if index == start.phase and resume is not None and resume.get("optimizer") and done:
                opt.load_state_dict(resume["optimizer"])
                sched.load_state_dict(resume["schedule"])
            for done in range(done, epochs):
                phase.modes()
                self.record(self._epoch(phase, opt, sched))
                self._last = (opt, sched)
                with signals.deferred():  # an interrupt now waits for the checkpoint
                    self.on_epoch(self, Position(index, done + 1))

    def phase(self, name: str, epochs: int, lr: float) -> Phase:
        return {"frozen": self._frozen, "unfrozen": self._unfrozen, "precomputed": self._precomputed}[name](epochs, lr)

    def _schedule(self, pct_start: float, div: float) -> Callable:
        r = self.recipe

        def make(opt, n_batches: int, epochs: int):
            if r.schedule == "sgdr":
                return schedules.SGDR(opt, n_batches, epochs, r.cycle_len, r.cycle_mult)
            return schedules.OneCycle(opt, epochs * n_batches, pct_start, div)
        return make

    def _frozen(self, epochs: int, lr: float) -> Phase:
        models.freeze(self.model)
        head = self._wrap(HeadOnly(self.model))

        def forward(x, e):
            with torch.no_grad(), self.precision.autocast():
                feats = self.body(x)
            with self.precision.autocast():
                return head(feats.flatten(1).float(), e)

        def modes():
            self.model.body.eval()
            if self.recipe.train_bn:
                for m in self.model.body.modules():
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                        m.train()
            self.model.head.train()

        make = self._schedule(0.99, 25.0)
        return Phase("frozen", epochs, [{"params": list(self.model.head.parameters()), "lr": lr}],
                     self.image_batches, self._n_batches(), forward, modes, self.evaluate,
                     lambda opt, n: make(opt, n, epochs))

    def _unfrozen(self, epochs: int, lr: float) -> Phase:
        kept_bn = models.unfreeze(self.model, self.recipe.keep_frozen)
        net = self._wrap(self.model)
        if self.options.compile and self.dist.world > 1:
            net = torch.compile(net)  # DDP's own forward would bypass the compiled body

        def forward(x, e):
            with self.precision.autocast():
                if self.dist.world > 1:
                    return net(x, e)
                return self.model.classify(self.body(x).flatten(1).float(), e)

        def modes():
            self.model.train()
            for m in kept_bn:  # frozen layers keep their statistics, as the frozen phase's body does
                m.eval()

        make = self._schedule(0.3, 5.0)
        return Phase("unfrozen", epochs, models.param_groups(self.model, lr, self.recipe.lr_mult),
                     self.image_batches, self._n_batches(), forward, modes, self.evaluate,
                     lambda opt, n: make(opt, n, epochs))

    def _precomputed(self, epochs: int, lr: float) -> Phase:
        from kaggletools.fit.precompute import Features

        models.freeze(self.model)
        level = "flip" if self.recipe.tta == "flip" else "none"
        features = Features.compute(self, level)
        head = self._wrap(HeadOnly(self.model))

        def forward(f, e):
            with self.precision.autocast():
                return head(f, e)

        make = self._schedule(0.25, 25.0)
        return Phase("precomputed", epochs, [{"params": list(self.model.head.parameters()), "lr": lr}],
                     features.batches, features.n_batches, forward, self.model.head.train, features.evaluate,
                     lambda opt, n: make(opt, n, epochs))

    # -- the loop ------------------------------------------------------------------------------
    def _epoch(self, phase: Phase, opt, sched, on_step: Callable | None = None, max_steps: int | None = None) -> dict:
        """One pass over the phase's batches: forward, the task's loss, backward (scaled for
        fp16), step, schedule; then validation. Returns the epoch's row."""
        start, seen, wait, losses, rates = time.perf_counter(), 0, 0.0, [], []  # rates: (lr, momentum) per batch
        total = torch.zeros((), device=self.device)  # summed on the device: no sync per step
        bar = progress.bar(total=max_steps or phase.n_batches, unit="batch", enabled=self.show,
                           desc=f"epoch {self.epoch + 1} ({phase.name})")
        it = iter(phase.batches(self.epoch))
        while max_steps is None or len(losses) < max_steps:
            tick = time.perf_counter()
            batch = next(it, None)
            wait += time.perf_counter() - tick
            if batch is None:
                break
            x, y, e = batch
            loss = self.task.loss(phase.forward(x, e), y, self.recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            self.precision.backward_step(loss, opt)
            lr = opt.param_groups[-1]["lr"]
            rates.append((lr, opt.param_groups[-1].get("betas", (None,))[0]))
            sched.step()
            seen += len(y)
            total += loss.detach() * len(y)
            losses.append(loss.detach())
            bar.update(1)
            if on_step is not None and on_step(float(loss.detach()), lr):
                break
            if self.show and len(losses) % 10 == 1:  # reading the loss waits for the device: now and then
                bar.set_postfix(loss=f"{total.item() / seen:.4f}")
        bar.close()
        train_seconds = time.perf_counter() - start
        per_step = torch.stack(losses).float().cpu().tolist() if losses else []
        if on_step is not None:
            return {"losses": per_step}
        self.batch_losses += [{"epoch": self.epoch + (i + 1) / len(per_step), "phase": phase.name, "loss": v,
                               "lr": lr, "mom": mom} for i, (v, (lr, mom)) in enumerate(zip(per_step, rates))]
        self.dist.average_buffers(self.model)
        total_loss, seen = self.dist.sum((float(total), seen), self.device)
        return {"epoch": self.epoch + 1, "phase": phase.name, "train_loss": total_loss / max(seen, 1),
                **phase.evaluate(), "seconds": round(time.perf_counter() - start, 2),
                "train_images_per_s": round(seen / max(train_seconds, 1e-9), 1),
                "data_wait_s": round(wait, 3), "compute_s": round(train_seconds - wait, 3)}

    def record(self, row: dict) -> dict:
        """Close an epoch: count it, keep its row and print it (rank 0 only)."""
        self.epoch += 1
        self.history.append(row)
        for line in self.table.lines(row):
            progress.write(line, self.show)
        return row

    # -- batches -------------------------------------------------------------------------------
    def image_batches(self, epoch: int):
        d, r = self.data, self.recipe
        for pos, x in batches(d.array, d.train_idx, r.batch_size, self.device, shuffle=True,
                              seed=r.seed * 1000 + epoch, drop_last=len(d.train_idx) > r.batch_size,
                              rank=self.dist.rank, world=self.dist.world):
            x = d.normalize(x)
            if r.lighting:
                x = relight(x, d.normalize, r.lighting, self.generator)
            x = augment(x, r.size, self.generator, min_scale=r.min_scale, flip=r.flip,
                        dihedral=r.dihedral, max_shift=r.max_shift)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.targets(pos), self.extra(pos)

    def targets(self, pos) -> torch.Tensor:
        return to_device(self.data.y[pos], self.device)

    def extra(self, pos) -> torch.Tensor | None:
        return None if self.data.extra is None else to_device(self.data.extra[pos], self.device)

    def _n_batches(self) -> int:
        n = math.ceil(len(self.data.train_idx) / self.dist.world)
        return max(1, n // self.recipe.batch_size if n > self.recipe.batch_size else 1)

    # -- pieces ----------------------------------------------------------------------------------
    def _wrap(self, module):
        if self.dist.world == 1:
            return module
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        # buffers are averaged once per epoch (Dist.average_buffers), not broadcast at every forward
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                   else {"broadcast_buffers": False})
        return DDP(module, device_ids=ids, **no_sync)

    def _optimizer(self, groups):
        return torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=self.recipe.weight_decay,
                                 **optimizer_options(self.device))

    # -- evaluation ----------------------------------------------------------------------------
    def predictor(self) -> Predictor:
        return Predictor(self.model, self.task.activation, self.recipe.size, self.data.normalize, self.device,
                         self.precision.autocast, self.channels_last, self.recipe.batch_size * 2)

    def predict(self, indices: np.ndarray, tta: str = "none", desc: str = "predict"):
        d = self.data
        return self.predictor()(d.array, indices, tta=tta, extra=d.extra, show=self.show, desc=desc, dist=self.dist)

    def evaluate(self) -> dict:
        """Validation loss, metric and error rate of the plain view (nothing without validation items)."""
        d = self.data
        if len(d.valid_idx) == 0:
            return {}
        return self.scores(d.y[d.valid_idx], self.predict(d.valid_idx, desc="valid").plain)

    def scores(self, y: np.ndarray, probs: np.ndarray, post: dict | None = None) -> dict:
        return {"valid_loss": self.task.valid_loss(y, probs),
                self.competition.metric_name: self.competition.metric(y, probs, post),
                "error_rate": self.task.error_rate(y, probs)}

    # -- state ---------------------------------------------------------------------------------
    def state(self, position: Position) -> dict:
        """Everything a resumed run needs (plain tensors and numbers: loads with weights_only)."""
        opt, sched = getattr(self, "_last", (None, None))
        generators = self.dist.gather(self.generator.get_state())
        return {"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": opt.state_dict() if opt is not None else {},
                "schedule": sched.state_dict() if sched is not None else {},
                "scaler": self.precision.scaler.state_dict(),
                "position": {"phase": position.phase, "done": position.done, "epoch": self.epoch},
                "rng": {"torch": torch.get_rng_state(), "generators": generators,
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                "history": self.history, "batch_losses": self.batch_losses}

    def load_state(self, state: dict) -> Position:
        self.model.load_state_dict(state["model"])
        if state.get("scaler"):
            self.precision.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["generators"][min(self.dist.rank, len(rng["generators"]) - 1)])
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.history, self.batch_losses = list(state["history"]), list(state.get("batch_losses", []))
        self.epoch = int(state["position"]["epoch"])
        return Position(int(state["position"]["phase"]), int(state["position"]["done"]))

    # -- the LR finder ---------------------------------------------------------------------------
    def lr_find(self, start: float = 1e-7, end: float = 10.0, steps: int = 100, beta: float = 0.98,
                methods=("valley",)):
        """Sweep the head's rate from `start` to `end` over up to `steps` batches of the frozen
        phase (as fastai's lr_find on a fresh frozen learner); the weights are restored after.
        `methods`: the suggestions wanted (kaggletools.fit.lr_finder.METHODS), the first one to use."""
        from kaggletools.fit.lr_finder import suggest

        saved = copy.deepcopy(self.model.state_dict())
        phase = self._frozen(1, start)
        phase.name = "lr_find"  # the bar says what runs
        opt = self._optimizer(phase.groups)
        sched = schedules.Exponential(opt, steps, start, end)
        lrs, smoothed, state = [], [], {"avg": 0.0, "best": math.inf, "stop": False}

        def on_step(loss: float, lr: float) -> bool:
            state["avg"] = beta * state["avg"] + (1 - beta) * loss
            value = state["avg"] / (1 - beta ** (len(lrs) + 1))
            lrs.append(lr)
            smoothed.append(value)
            state["best"] = min(state["best"], value)
            state["stop"] = len(lrs) >= steps or value > 4 * state["best"] or not math.isfinite(value)
            return state["stop"]

        try:
            while not state["stop"]:
                phase.modes()
                before = len(lrs)
                self._epoch(phase, opt, sched, on_step=on_step, max_steps=steps - len(lrs))
                if len(lrs) == before:
                    break
        finally:
            self.model.load_state_dict(saved)
        return suggest(lrs, smoothed, methods)


class HeadOnly(torch.nn.Module):
    """The head as a module of its own, so DDP syncs only it while the body is frozen."""

    def __init__(self, net: models.Net):
        super().__init__()
        self.net = net

    def forward(self, features, extra=None):
        return self.net.classify(features, extra)
