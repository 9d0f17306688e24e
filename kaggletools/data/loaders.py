"""Batches from the decode-once cache, and augmentation applied per batch on the device.

Training augmentation is one affine warp per image: a random-resized crop, horizontal flip and
(for satellite and radar chips) a rotation by a multiple of 90 degrees and small shifts, all
folded into one matrix and sampled with a single bilinear interpolation (fastai's presizing).

Nothing here waits for a GPU: every host-to-device copy (image batches, targets, the warp
matrices) goes from pinned memory with non_blocking=True (`to_device`), so the CPU queues the
next step while the GPU runs this one. A copy from ordinary (pageable) memory would make torch
synchronise the stream at every step.
"""
from __future__ import annotations

import math
import threading
import queue
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Normalize:
    """Scale to [0, 1] (uint8 images) and standardise per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1 / 255
    _constants: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(x * scale - mean) / std as one float copy and two in-place ops (4x faster on the CPU
        than the three-temporary expression, for a 64x3x256x256 uint8 batch). The per-channel
        constants are made once per device, not copied to the GPU for every batch."""
        if x.device not in self._constants:
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            self._constants[x.device] = (self.scale / std, mean / std)
        mul, sub = self._constants[x.device]
        return x.to(torch.float32, copy=True).mul_(mul).sub_(sub)


def to_device(values, device: torch.device) -> torch.Tensor:
    """`values` (an array or CPU tensor) on `device`; to CUDA through pinned memory without
    blocking (torch synchronises the stream after a copy from pageable memory)."""
    t = torch.as_tensor(values)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def batches(array: np.ndarray, indices: np.ndarray, batch_size: int, device: torch.device, *,
            shuffle: bool = False, seed: int = 0, drop_last: bool = False, rank: int = 0, world: int = 1):
    """Yield (positions, x) with x an (B, C, H, W) tensor on `device` in the cache's dtype.

    Batches are gathered from the memory-mapped cache one step ahead on a thread, in pinned
    memory on CUDA so the copy overlaps the computation. With `world` > 1, each rank takes its
    own shard of the (shuffled) order, padded to equal length as DistributedSampler does.
    """
    order = np.asarray(indices)
    if shuffle:
        order = order[np.random.default_rng(seed).permutation(len(order))]
    if world > 1:
        per_rank = math.ceil(len(order) / world)
        order = np.resize(order, per_rank * world)[rank::world]
    stops = range(0, len(order), batch_size)
    if drop_last and len(order) >= batch_size:
        stops = range(0, len(order) - batch_size + 1, batch_size)
    pin = device.type == "cuda"

    def gather(start: int):
        pos = order[start:start + batch_size]
        # sorted reads are faster on a memory map; restore the shuffled order afterwards
        sort = np.argsort(pos)
        x = np.empty((len(pos), *array.shape[1:]), array.dtype)
        x[sort] = array[pos[sort]]
        x = torch.from_numpy(x).permute(0, 3, 1, 2)
        return pos, (x.pin_memory() if pin else x)

    ahead: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def wanted() -> bool:  # the consumer has not stopped, nor the program (its main thread)
        return not stop.is_set() and threading.main_thread().is_alive()

    def put(item) -> bool:
        while wanted():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def producer():
        try:
            for start in stops:
                if not wanted() or not put(gather(start)):
                    return
        except BaseException as e:  # surfaced in the consumer
            put(e)
        put(None)

    # not a daemon: at exit Python waits for it (a moment: it stops once the main thread has ended)
    # instead of tearing torch down under it ("terminate called without an active exception")
    thread = threading.Thread(target=producer, daemon=False)
    thread.start()
    try:
        while (item := ahead.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            pos, x = item
            yield pos, x.to(device, non_blocking=pin)
    finally:  # the consumer stopped (done, an error, Ctrl-C): no thread left inside torch at exit
        stop.set()
        thread.join(timeout=30)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Plain evaluation transform: the whole (square) item at `size`."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def augment(x: torch.Tensor, size: int, generator: torch.Generator, *, min_scale: float = 0.35,
            flip: bool = True, dihedral: bool = False, max_shift: float = 0.0) -> torch.Tensor:
    """Random-resized crop + flips (+ 90-degree rotations, + shifts) as one warp per image."""
    b = x.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    area = uniform(min_scale, 1.0)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3)) if min_scale < 1 else torch.zeros(b)
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1)
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1)
    cx = uniform(-1, 1) * (1 - sx) + uniform(-1, 1) * 2 * max_shift
    cy = uniform(-1, 1) * (1 - sy) + uniform(-1, 1) * 2 * max_shift
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = sx, sy, cx, cy
    if flip:
        theta[:, :, 0] *= torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)[:, None]
    if dihedral:
        theta[:, :, 1] *= torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)[:, None]
        transpose = torch.rand(b, generator=generator) < 0.5  # with both flips: all 8 symmetries
        theta[transpose, :, :2] = theta[transpose, :, :2].flip(-1)
    theta = to_device(theta, x.device).to(x.dtype)
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def relight(x: torch.Tensor, normalize: Normalize, lighting: float, generator: torch.Generator,
            p: float = 0.75) -> torch.Tensor:
    """Random brightness and contrast on a normalised batch, each applied to an image with
    probability `p` (fastai's aug_transforms: max_lighting 0.2, p_lighting 0.75): on the [0, 1]
    scale, contrast multiplies the distance from mid-grey by c (log c uniform within +-log(1 -
    lighting)) and brightness adds d (uniform within +-lighting / 2). Computed in the normalised
    space, one multiply-add per image and channel."""
    b = x.shape[0]
    spread = -math.log(1 - lighting)
    c = torch.exp((torch.rand(b, generator=generator) * 2 - 1) * spread)
    d = (torch.rand(b, generator=generator) - 0.5) * lighting
    c = torch.where(torch.rand(b, generator=generator) < p, c, torch.ones(b))
    d = torch.where(torch.rand(b, generator=generator) < p, d, torch.zeros(b))
    mean = torch.tensor(normalize.mean).view(1, -1)
    std = torch.tensor(normalize.std).view(1, -1)
    shift = (c[:, None] * (mean - 0.5) + 0.5 + d[:, None] - mean) / std  # (b, channels)
    c, shift = to_device(c, x.device).to(x.dtype), to_device(shift, x.device).to(x.dtype)
    return x.mul_(c.view(b, 1, 1, 1)).add_(shift.view(b, -1, 1, 1))
