"""Does bf16 autocast or channels_last help on this CPU? Times a backbone at a given size in the
two ways kaggletools uses it: the frozen phase (body forward only, eval mode, no_grad) and a
training step (forward + backward + AdamW step of the whole network).

    python benchmarks/cpu_precision.py [--backbone mobilenet_v2] [--size 224] [--batch 32]
                                       [--rounds 5] [--threads N] [--json out.json]

The four settings (fp32 / bf16 autocast x contiguous / channels_last) are timed round-robin, one
batch each per round after two warm-up batches, so a noisy machine (other jobs on the cores)
disturbs all four alike; the median of the rounds is reported, with images/s and the speed-up
over fp32 contiguous. It also checks that bf16 logits stay close to fp32 ones. The result
decides kaggletools' CPU defaults in kaggletools/device.py (`precision_rule`: bf16 on CPUs with
native bf16, `default_channels_last`), and it prints what `--amp auto` picks on this CPU.
On GPUs, benchmarks/bench_dogs_cats.py --variants measures the precisions and channels_last.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time

import torch

SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def cpu_model() -> str:
    """lscpu's model name (platform.processor() is empty on many Linux builds)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 instruction sets (avx512_bf16, amx_bf16), from /proc/cpuinfo."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in set(flags) if "bf16" in f)


def kaggletools_choice() -> dict:
    """What kaggletools picks on this CPU (kaggletools/device.py), for comparison with the numbers."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from kaggletools.model import device

    cpu = torch.device("cpu")
    return {"precision": device.choose_precision(cpu), "channels_last": device.default_channels_last(cpu)}


def make_model(backbone: str) -> torch.nn.Module:
    """The torchvision backbone with random weights (speed does not depend on the values)."""
    import torchvision

    return torchvision.models.get_model(backbone, weights=None, num_classes=2)


def forward_step(model, x, dtype):
    """The frozen phase's cost: the body forward only, eval mode, no_grad."""
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        return model(x)


def train_step(model, opt, x, y, dtype):
    """The unfrozen phase's cost: forward, loss, backward and an optimizer step."""
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        loss = torch.nn.functional.cross_entropy(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def measure(backbone: str, size: int, batch: int, rounds: int) -> dict:
    """Median seconds per batch of each setting for both steps, and the bf16 drift."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 2, (batch,))
    models, opts = {}, {}
    for dtype, cl in SETTINGS:
        m = make_model(backbone)
        if cl:
            m = m.to(memory_format=torch.channels_last)
        models[dtype, cl] = m
        opts[dtype, cl] = torch.optim.AdamW(m.parameters(), lr=1e-4)

    def inputs(cl):
        return x.contiguous(memory_format=torch.channels_last) if cl else x

    results = {}
    for step in ("forward", "train"):
        times = {s: [] for s in SETTINGS}
        for r in range(rounds + 2):  # two warm-up rounds (oneDNN builds its kernels)
            for dtype, cl in SETTINGS:
                m, xin = models[dtype, cl], inputs(cl)
                t0 = time.perf_counter()
                if step == "forward":
                    forward_step(m, xin, dtype)
                else:
                    train_step(m, opts[dtype, cl], xin, y, dtype)
                if r >= 2:
                    times[dtype, cl].append(time.perf_counter() - t0)
        base = statistics.median(times["fp32", False])
        for (dtype, cl), ts in times.items():
            sec = statistics.median(ts)
            results[f"{step} {dtype} {'channels_last' if cl else 'contiguous'}"] = {
                "step": step, "dtype": dtype, "channels_last": cl, "seconds_per_batch": round(sec, 4),
                "images_per_s": round(batch / sec, 1), "speedup_vs_fp32": round(base / sec, 2),
                "spread": [round(min(ts), 4), round(max(ts), 4)]}

    ref = make_model(backbone).eval()
    with torch.no_grad():
        fp32 = ref(x[:8])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = ref(x[:8]).float()
    drift = float((bf16 - fp32).abs().max() / fp32.abs().max())
    return {"results": results, "bf16_max_relative_logit_difference": round(drift, 4)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--json", help="write the results here as JSON")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out = {"backbone": a.backbone, "size": a.size, "batch": a.batch, "rounds": a.rounds,
           "cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "cpu_bf16_flags": cpu_bf16_flags(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "kaggletools_auto": kaggletools_choice()}
    out.update(measure(a.backbone, a.size, a.batch, a.rounds))
    print(f"{a.backbone} at {a.size}px, batch {a.batch}, {out['threads']} threads on {out['cpu']} "
          f"({out['cpu_capability']}, bf16 flags: {out['cpu_bf16_flags'] or 'none'}), torch {out['torch']}")
    print(f"{'step':<8} {'dtype':<5} {'layout':<14} {'s/batch':>8} {'img/s':>8} {'vs fp32':>8}")
    for r in out["results"].values():
        print(f"{r['step']:<8} {r['dtype']:<5} {'channels_last' if r['channels_last'] else 'contiguous':<14} "
              f"{r['seconds_per_batch']:>8.3f} {r['images_per_s']:>8.1f} {r['speedup_vs_fp32']:>7.2f}x")
    print(f"bf16 autocast: max relative logit difference vs fp32 {out['bf16_max_relative_logit_difference']}")
    print(f"kaggletools on this CPU: --amp auto -> {out['kaggletools_auto']['precision']}, "
          f"channels_last {out['kaggletools_auto']['channels_last']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
