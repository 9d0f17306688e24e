"""The device, its precision and memory layout.

Precision per device (`--amp auto`, measured with benchmarks/cpu_precision.py on CPUs):
- CUDA with compute capability 8.0 and up (A100, H100, RTX 30xx/40xx): bf16 autocast, computed
  natively, no loss scaling needed;
- older CUDA cards (Kaggle's T4 and P100): fp16 autocast with a gradient scaler, since bf16 is
  emulated there (slow) and fp16 gradients underflow without scaling;
- CPUs with native bf16 (avx512_bf16 or amx_bf16): bf16 autocast (mobilenet_v2 at 224: the frozen
  forward pass 3.2-3.8x and a training step 1.9-4.3x faster than fp32 on a 2-core EPYC);
- other CPUs and MPS: off.
channels_last is the default on CUDA and the CPU (oneDNN's preferred layout), not on MPS.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


def pick(name: str | None = None) -> torch.device:
    """The requested device, else cuda, then mps, then cpu."""
    if name and name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            from kaggletools.errors import OptionError

            raise OptionError(f"--device {name}: this machine has no usable CUDA GPU (torch "
                              f"{torch.__version__}); leave --device out to use the CPU")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def choose_precision(device: torch.device, mode: str = "auto") -> str:
    """'bf16', 'fp16' or 'off' for `mode` on `device` (see the module's docstring)."""
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return "bf16" if cuda_capability(device) >= (8, 0) else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "off"


@dataclass
class Precision:
    """Autocast and, for fp16, the gradient scaler whose state belongs to the training state."""

    device: torch.device
    dtype: str  # bf16 | fp16 | off

    def __post_init__(self):
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == "fp16")

    @classmethod
    def for_device(cls, device: torch.device, mode: str = "auto") -> "Precision":
        return cls(device, choose_precision(device, mode))

    def autocast(self):
        if self.dtype == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.float16 if self.dtype == "fp16" else torch.bfloat16)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """loss.backward() and optimizer.step(), through the scaler when it is on."""
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def default_channels_last(device: torch.device) -> bool:
    return device.type in ("cuda", "cpu")
