"""The device, its precision and memory layout.

Precision per device (`--amp auto`, measured with benchmarks/cpu_precision.py on CPUs):
- CUDA with compute capability 8.0 and up (A100, H100, RTX 30xx/40xx): bf16 autocast, computed
  natively, no loss scaling needed;
- older CUDA cards (Kaggle's T4 and P100): fp16 autocast with a gradient scaler, since bf16 is
  emulated there (slow) and fp16 gradients underflow without scaling;
- CPUs with native bf16 (avx512_bf16 or amx_bf16): bf16 autocast (mobilenet_v2 at 224: the frozen
  forward pass 3.2-3.8x and a training step 1.9-4.3x faster than fp32 on a 2-core EPYC);
- other CPUs and MPS: off.
The rule itself is `precision_rule`, a pure function of the device type, the card's compute
capability and the CPU's bf16 support (tests fake the card); `choose_precision` asks the machine.
An explicit mode (`--amp bf16|fp16|off`) is always used as given.
channels_last is the default on CUDA and the CPU (oneDNN's preferred layout), not on MPS.
On CUDA the optimizer is the fused AdamW (`optimizer_options`): one kernel per step, and the
gradient scaler hands it the inf/NaN check instead of reading it back (no sync per step in fp16).
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


BF16_CAPABILITY = (8, 0)  # Ampere and later compute bf16 natively (A100, RTX 30xx/40xx, L4, H100, ...)


def precision_rule(device_type: str, capability: tuple[int, int] | None = None, cpu_bf16: bool = False,
                   mode: str = "auto") -> str:
    """'bf16', 'fp16' or 'off' for `mode` on a device of `device_type` ('cuda', 'cpu', 'mps'),
    a CUDA card of compute `capability` (major, minor), a CPU with or without native bf16:
    CUDA >= 8.0 bf16; older CUDA cards (T4 7.5, V100 7.0, P100 6.0) fp16 with a gradient scaler;
    CPUs with native bf16 bf16; everything else off."""
    if mode != "auto":
        return mode
    if device_type == "cuda":
        if capability is None:
            raise ValueError("a CUDA device needs its compute capability to choose a precision")
        return "bf16" if tuple(capability) >= BF16_CAPABILITY else "fp16"
    if device_type == "cpu" and cpu_bf16:
        return "bf16"
    return "off"


def choose_precision(device: torch.device, mode: str = "auto") -> str:
    """'bf16', 'fp16' or 'off' for `mode` on `device` (see precision_rule)."""
    if mode != "auto":
        return mode
    return precision_rule(device.type, cuda_capability(device) if device.type == "cuda" else None,
                          device.type == "cpu" and cpu_has_native_bf16())


def optimizer_options(device: torch.device) -> dict:
    """Extra optimizer arguments for `device`: the fused AdamW on CUDA (see the module's docstring)."""
    return {"fused": True} if device.type == "cuda" else {}


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

    @property
    def scaling(self) -> bool:
        """Whether losses are scaled (fp16 where the scaler works: CUDA, the CPU)."""
        return self.scaler.is_enabled()

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """loss.backward() and optimizer.step(), through the scaler when it is on: the loss is
        multiplied by the scale, the gradients divided by it before the step, and a step whose
        gradients hold inf or NaN is skipped and the scale halved (doubled after 2,000 good
        steps). Under DDP each process has its own scaler; the gradients they check are the
        all-reduced ones, so every process skips the same steps."""
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def default_channels_last(device: torch.device) -> bool:
    return device.type in ("cuda", "cpu")
