"""Learning-rate schedules, step by step, shared by every phase of the training loop (frozen,
unfrozen, precomputed head, LR finder). Each sets the rate of every parameter group from the
group's own peak (so discriminative rates keep their ratios) and keeps its position in a
state dict, so a resumed run continues exactly where it stopped.

- OneCycle: fastai's one-cycle: cosine warm-up from peak/div to the peak over `pct_start` of the
  steps, then cosine down to peak/div_final; Adam's beta1 moves 0.95 -> 0.85 -> 0.95 against it.
  Unlike torch's OneCycleLR (peak at step pct_start * n - 1, last step at the minimum) a cycle
  of a few steps still trains at high rates, as fastai's does.
- SGDR: cosine annealing with warm restarts (fast.ai's cycle_len, cycle_mult): cycles of
  cycle_len, cycle_len * cycle_mult, ... epochs, each from the peak down to peak/div_final.
- Exponential: the LR finder's sweep from `start` to `end`.
"""
from __future__ import annotations

import math


def _cos(start: float, end: float, pct: float) -> float:
    return start + (1 + math.cos(math.pi * (1 - pct))) * (end - start) / 2


class Schedule:
    def __init__(self, optimizer, total_steps: int):
        self.optimizer, self.total_steps = optimizer, max(1, total_steps)
        self.peaks = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for group, peak in zip(optimizer.param_groups, self.peaks):
            group["initial_lr"] = peak
        self.position = 0
        self.apply()

    def rate(self, peak: float, pct: float) -> float:
        raise NotImplementedError

    def momentum(self, pct: float) -> float | None:
        return None

    def apply(self) -> None:
        pct = min(self.position, self.total_steps - 1) / self.total_steps
        beta1 = self.momentum(pct)
        for group, peak in zip(self.optimizer.param_groups, self.peaks):
            group["lr"] = self.rate(peak, pct)
            if beta1 is not None and "betas" in group:
                group["betas"] = (beta1, group["betas"][1])

    def step(self) -> None:
        self.position += 1
        self.apply()

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
        self.apply()


class OneCycle(Schedule):
    def __init__(self, optimizer, total_steps: int, pct_start: float = 0.25, div: float = 25.0,
                 div_final: float = 1e5, moms: tuple[float, float, float] = (0.95, 0.85, 0.95)):
        self.pct_start, self.div, self.div_final, self.moms = pct_start, div, div_final, moms
        super().__init__(optimizer, total_steps)

    def rate(self, peak, pct):
        if pct < self.pct_start:
            return _cos(peak / self.div, peak, pct / self.pct_start)
        return _cos(peak, peak / self.div_final, (pct - self.pct_start) / (1 - self.pct_start))

    def momentum(self, pct):
        m0, m1, m2 = self.moms
        if pct < self.pct_start:
            return _cos(m0, m1, pct / self.pct_start)
        return _cos(m1, m2, (pct - self.pct_start) / (1 - self.pct_start))


class SGDR(Schedule):
    def __init__(self, optimizer, steps_per_epoch: int, epochs: int, cycle_len: int = 1, cycle_mult: float = 1.0,
                 div_final: float = 1e5):
        self.bounds = [0]
        length = cycle_len
        while self.bounds[-1] < epochs * steps_per_epoch:
            self.bounds.append(self.bounds[-1] + max(1, round(length * steps_per_epoch)))
            length *= cycle_mult
        self.div_final = div_final
        super().__init__(optimizer, epochs * steps_per_epoch)

    def rate(self, peak, pct):
        step = pct * self.total_steps
        start = max(b for b in self.bounds if b <= step)
        end = min(b for b in self.bounds if b > step)
        return _cos(peak, peak / self.div_final, (step - start) / (end - start))


class Exponential(Schedule):
    def __init__(self, optimizer, total_steps: int, start: float, end: float):
        self.start, self.end = start, end
        super().__init__(optimizer, total_steps)

    def rate(self, peak, pct):  # the sweep ignores the groups' peaks: every group gets the same rate
        steps = max(self.total_steps - 1, 1)
        return self.start * (self.end / self.start) ** (pct * self.total_steps / steps)
