"""What batch-norm in eval mode costs (or gains) while the body is frozen.

    python benchmarks/frozen_bn.py [--data ../shared/data/dogs-vs-cats] [--seeds 0 1] [--unfrozen 1]
                                   [--limit N] [--backbone mobilenet_v2] [--size 224] [--threads N]

kaggletools runs the frozen body forward only, in eval mode (its batch-norm statistics stay the
ImageNet ones). `--train-bn` (Recipe(train_bn=True)) instead lets the body's batch-norm layers normalise with
each batch's statistics and update their running statistics on the new data, still without a
backward pass (fastai's default, train_bn=True, also trains the batch-norm weights, which needs
a backward pass through the body). For each seed, this trains the same split both ways (one
frozen epoch, then optionally unfrozen epochs) and prints the held-out error and log loss of each.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SLUG = "dogs-vs-cats-redux-kernels-edition"


def one(data_dir: Path, recipe: dict, train_bn: bool, unfrozen: int, device: str) -> dict:
    """One fine-tune; the scores after the frozen epoch and after the unfrozen ones."""
    from kaggletools.competition import registry as competition
    from kaggletools.data import items as data
    from kaggletools.model.device import pick
    from kaggletools.fit.assemble import Experiment
    from kaggletools.options import RunOptions

    comp = competition.get(SLUG)
    r = comp.recipe.replace(**recipe, freeze_epochs=1, epochs=unfrozen, train_bn=train_bn)
    items = data.train_items(comp, data_dir)
    split = data.split(comp, items, r.valid_frac, 42)  # the split stays; the seed changes the training
    options = RunOptions(device=device, progress=False)
    learner, _ = Experiment(comp, Path(data_dir), r, options, items, split).learner(pick(device))
    start = time.perf_counter()
    learner.fit()
    rows = learner.history
    out = {"train_bn": train_bn, "seed": r.seed, "seconds": round(time.perf_counter() - start, 1),
           "precision": learner.precision.dtype,
           "frozen": {"error": rows[0]["error_rate"], "log_loss": rows[0]["valid_loss"]}}
    if unfrozen:
        out["unfrozen"] = {"error": rows[-1]["error_rate"], "log_loss": rows[-1]["valid_loss"]}
    return out


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "dogs-vs-cats"))
    p.add_argument("--limit", type=int, default=0, help="a stratified sample of N images")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--unfrozen", type=int, default=0, help="unfrozen epochs after the frozen one")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    sys.path.insert(0, str(REPO))
    from kaggletools.competition import registry as competition
    from kaggletools.data import items as data

    data_dir = Path(a.data)
    if a.limit:
        import tempfile

        data_dir = data.sample(competition.get(SLUG), data_dir,
                               Path(tempfile.gettempdir()) / f"kaggletools-frozen-bn-{a.limit}", a.limit, 0)
    rows = []
    for seed in a.seeds:
        for train_bn in (False, True):
            recipe = {"backbone": a.backbone, "size": a.size, "batch_size": a.batch_size, "seed": seed}
            rows.append(one(data_dir, recipe, train_bn, a.unfrozen, a.device))
            print(json.dumps(rows[-1]), flush=True)
    for phase in ("frozen", "unfrozen") if a.unfrozen else ("frozen",):
        for train_bn in (False, True):
            sel = [r[phase] for r in rows if r["train_bn"] == train_bn]
            print(f"{phase:>8} train_bn={train_bn!s:<5}: error {statistics.mean(s['error'] for s in sel):.4f}, "
                  f"log loss {statistics.mean(s['log_loss'] for s in sel):.4f} (mean of {len(sel)} seeds)")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
