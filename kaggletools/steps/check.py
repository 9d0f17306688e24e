"""`kaggletools check`: push one item of each split and one batch through every step, as fastai's
DataBlock.summary does, and say where it breaks before anything long starts. Writes nothing but
the decode cache of the items it decodes (none of the data folder)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from kaggletools import progress
from kaggletools.data import items as data
from kaggletools.model import device as devices
from kaggletools.steps import train as training
from kaggletools.competition.interface import Competition
from kaggletools.errors import CompetitionError
from kaggletools.fit.assemble import Experiment, normalization
from kaggletools.data.loaders import augment
from kaggletools.options import Recipe, RunOptions
import kaggletools.competition.inferred as inferred


def check(comp: Competition, data_dir: Path, recipe: Recipe, options: RunOptions) -> dict:
    """Every step once; returns what it saw (and prints it unless options.progress is off)."""
    say = (lambda text: progress.write(text, options.progress))
    training.check_options(recipe, options)
    say(f"options: ok (backbone {recipe.backbone}, size {recipe.size}, batch {recipe.batch_size}, "
        f"tta {recipe.tta}, schedule {recipe.schedule})")
    exp = Experiment.from_folder(comp, data_dir, recipe, options)
    y = comp.targets(exp.items)
    valid = exp.split.valid
    names = comp.class_names()  # binary: both classes, by the names people use
    train_counts, valid_counts = comp.task.class_counts(y[~valid]), comp.task.class_counts(y[valid])
    report = {"competition": comp.slug, **inferred.record(comp), "task": comp.task.name, "train": int((~valid).sum()),
              "valid": int(valid.sum()), "notes": exp.split.notes,
              "classes": {c: {"train": int(train_counts[i]), "valid": int(valid_counts[i])}
                          for i, c in enumerate(names)}}
    say(f"items: {len(exp.items)} labelled: train {report['train']}, valid {report['valid']}")
    if exp.split.groups is not None:
        report["groups"] = _groups(exp.split)
        g = report["groups"]
        say(f"groups ({g['column']}): train {g['train']}, valid {g['valid']}, on both sides {g['shared']}")
    shown = sorted(report["classes"].items(), key=lambda kv: -kv[1]["train"])
    say("class balance (train/valid): " + ", ".join(f"{c} {v['train']}/{v['valid']}" for c, v in shown[:12])
        + (f" ... ({len(shown)} classes)" if len(shown) > 12 else ""))
    for note in exp.split.notes:
        say(f"note: {note}")
    first_train = comp.load(exp.items["source"].iloc[0], data_dir, recipe.cache_side)
    report["item_shapes"] = {"train": list(first_train.shape)}
    try:
        test = data.test_items(comp, data_dir)
    except CompetitionError as e:  # training works without test items; predicting will not
        report["test"] = 0
        say(f"decoded one training item: {first_train.shape} {first_train.dtype}; no test items ({e}): "
            "training works, `predict` will need them")
    else:
        first_test = comp.load(test["source"].iloc[0], data_dir, recipe.cache_side)
        report["test"], report["item_shapes"]["test"] = len(test), list(first_test.shape)
        say(f"decoded one item of each split: train {first_train.shape} {first_train.dtype}, test "
            f"{first_test.shape}; {len(test)} test items")
    report.update(_one_batch(exp, recipe, options))
    say(f"one batch {report['batch_shape']} -> outputs {report['output_shape']}, loss {report['loss']:.4f}; "
        f"forward+backward {report['step_seconds']:.2f} s: about {report['epoch_seconds_estimate']:.0f} s per "
        f"epoch on {report['device']} (decoding once more: about {report['decode_seconds_estimate']:.0f} s)")
    return report


def _groups(split) -> dict:
    """How many groups lie on each side of the split, and on both (0 when grouping works)."""
    groups, valid = np.asarray(split.groups), split.valid
    train, held = set(groups[~valid]), set(groups[valid])
    return {"column": split.group_column, "train": len(train), "valid": len(held), "shared": len(train & held)}


def _one_batch(exp: Experiment, recipe: Recipe, options: RunOptions) -> dict:
    """Decode a batch's items (not cached), augment, one forward and backward pass, timed."""
    comp = exp.competition
    dev = devices.pick(options.device)
    model, info = exp.model()
    n = min(recipe.batch_size, len(exp.items))
    start = time.perf_counter()
    from kaggletools.data import cache

    array = np.stack([cache.decode(comp, exp.data_dir, s, recipe.cache_side) for s in exp.items["source"][:n]])
    decode_seconds = (time.perf_counter() - start) / n
    normalize = normalization(comp, info, array, np.arange(n))
    precision = devices.Precision.for_device(dev, options.amp)
    model.to(dev).train()
    x = torch.from_numpy(array).permute(0, 3, 1, 2).to(dev)
    x = augment(normalize(x), recipe.size, torch.Generator().manual_seed(recipe.seed), min_scale=recipe.min_scale,
                flip=recipe.flip, dihedral=recipe.dihedral, max_shift=recipe.max_shift)
    yb = torch.as_tensor(comp.targets(exp.items.iloc[:n]), device=dev)
    extra = comp.extra_features(exp.items.iloc[:n]) if recipe.extra else None
    e = None if extra is None else torch.as_tensor(np.asarray(extra, np.float32), device=dev)
    if devices.default_channels_last(dev) if options.channels_last is None else options.channels_last:
        model.to(memory_format=torch.channels_last)  # the layout the training loop uses, timed as it runs
        x = x.contiguous(memory_format=torch.channels_last)
    timings = []
    for _ in range(2):  # the first pass pays for allocation: time the second
        start = time.perf_counter()
        with precision.autocast():
            logits = model(x, e)
        loss = comp.task.loss(logits, yb, recipe.label_smoothing)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    n_train = int((~exp.split.valid).sum())
    return {"batch_shape": list(x.shape), "output_shape": list(logits.shape), "loss": float(loss.detach()),
            "step_seconds": timings[-1], "device": str(dev), "precision": precision.dtype,
            "epoch_seconds_estimate": timings[-1] * max(1, n_train // max(n, 1)),
            "decode_seconds_estimate": decode_seconds * len(exp.items)}
