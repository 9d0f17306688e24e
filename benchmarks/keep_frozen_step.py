"""One fp32 training step of mobilenet_v2 (batch 64, 224 px, random weights) with the first k of its
19 feature blocks frozen: where the backward pass spends its time (the case for --keep-frozen).

    python benchmarks/keep_frozen_step.py [threads]      # 2 threads by default

Prints the best of 3 timed steps (after one warm-up) per k, contiguous and channels_last, and the
forward pass alone. Nothing here is imported by kaggletools.
"""
import sys
import time

import torch
import torchvision


def step_seconds(body, head, x, y, k: int, reps: int = 3) -> float:
    """Best of `reps` steps: blocks [0, k) under no_grad, the rest with autograd (k < 0: forward only)."""
    times = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        if k < 0:
            with torch.no_grad():
                body(x)
        else:
            h = x
            with torch.no_grad():
                for block in body[:k]:
                    h = block(h)
            for block in body[k:]:
                h = block(h)
            torch.nn.functional.cross_entropy(head(h.mean((2, 3))), y).backward()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    torch.manual_seed(0)
    body, head = torchvision.models.mobilenet_v2().features, torch.nn.Linear(1280, 2)
    x, y = torch.randn(64, 3, 224, 224), torch.randint(0, 2, (64,))
    for layout in (torch.contiguous_format, torch.channels_last):
        body = body.to(memory_format=layout)
        xx = x.contiguous(memory_format=layout)
        name = "channels_last" if layout is torch.channels_last else "contiguous"
        print(f"{name}: forward only {step_seconds(body, head, xx, y, -1):.2f} s", flush=True)
        for k in (0, 2, 4, 7, 11):
            print(f"  first {k} of {len(body)} blocks frozen: step {step_seconds(body, head, xx, y, k):.2f} s",
                  flush=True)


if __name__ == "__main__":
    main()
