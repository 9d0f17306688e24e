"""This process's place in a torch.distributed job (torchrun), and the few collectives we use.
Not launched by torchrun (WORLD_SIZE unset or 1): rank 0 of 1, every call a no-op."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Dist":
        """Join the torchrun job when launched by torchrun (gloo on CPUs, nccl on GPUs)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        import torch.distributed as td

        if not td.is_initialized():
            td.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(td.get_rank(), td.get_world_size())

    def device(self, device: torch.device) -> torch.device:
        """Each process its own GPU (LOCAL_RANK) under torchrun."""
        if self.world > 1 and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        return device

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order."""
        if self.world == 1:
            return [obj]
        import torch.distributed as td

        out = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def sum(self, values: tuple[float, ...], device: torch.device) -> tuple[float, ...]:
        if self.world == 1:
            return values
        import torch.distributed as td

        t = torch.tensor(values, dtype=torch.float64, device=device)  # nccl reduces CUDA tensors only
        td.all_reduce(t)
        return tuple(t.tolist())

    def average_buffers(self, module: torch.nn.Module) -> None:
        """Average floating-point buffers (batch-norm running statistics) across ranks."""
        if self.world == 1:
            return
        import torch.distributed as td

        for buf in module.buffers():
            if buf.is_floating_point():
                td.all_reduce(buf.data, op=td.ReduceOp.SUM)
                buf.data /= self.world
