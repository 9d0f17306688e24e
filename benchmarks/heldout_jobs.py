"""The competitions of bench_heldout.py: what each holds out, how each tool trains on the rest and
how the parent scores the held-out probabilities. Top-level imports: the standard library only
(the fastai worker imports this module in fastai's own venv).

Each job offers `job(a, work)` (the parent: items, split, recipe, data folders -> spec),
`kaggletools(spec)` and `fastai_data(spec)` (the workers), `score(spec, probs)` and `ROWS` (the
parent's scores and the lines of the results table).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SEEDLINGS_HELD_OUT = REPO / "benchmarks" / "results" / "plant-seedlings-cv-20261206.json"


def recipe_of(comp, a, **extra) -> dict:
    """The competition's recipe with the command line's overrides, as both tools receive it."""
    r = comp.recipe
    out = {"backbone": a.backbone, "size": a.size or r.size, "presize": r.presize or 0,
           "freeze_epochs": r.freeze_epochs if a.freeze_epochs is None else a.freeze_epochs,
           "epochs": r.epochs if a.epochs is None else a.epochs, "lr": a.lr or r.lr,
           "batch_size": a.batch_size or r.batch_size, "seed": a.seed, "tta": a.tta or r.tta, **extra}
    out["presize"] = out["presize"] or r.replace(size=out["size"], presize=0).cache_side
    return out


def kt_train(slug: str, data_dir, spec: dict, valid_frac: float):
    """api.train with the spec's recipe (the competition's recipe otherwise); (run, seconds)."""
    from kaggletools import api

    r = spec["recipe"]
    t0 = time.perf_counter()
    run = api.train(slug, data_dir, backbone=r["backbone"], size=r["size"], presize=r["presize"],
                    freeze_epochs=r["freeze_epochs"], epochs=r["epochs"], lr=r["lr"], batch_size=r["batch_size"],
                    valid_frac=valid_frac, seed=r["seed"], tta=r["tta"], amp=spec["kt_amp"],
                    progress=spec["progress"], runs_dir=Path(spec["work"]) / "kt-runs")
    return run, time.perf_counter() - t0


def kt_epochs(run) -> tuple[dict, list]:
    """Seconds of the frozen and unfrozen epochs (metrics.csv) and the epoch rows."""
    import pandas as pd

    epochs = pd.read_csv(run.file("metrics.csv"))
    frozen = epochs["phase"] == "frozen"
    phases = {"frozen epochs": float(epochs["seconds"][frozen].sum()),
              "unfrozen epochs": float(epochs["seconds"][~frozen].sum()),
              "fine-tune (all epochs)": float(epochs["seconds"].sum())}
    return phases, epochs.to_dict("records")


class Planet:
    """693 chips, kaggletools' stratified split (20%, seed 42: 139 held out), F2."""
    name, slug, unit, metric = "planet", "planet-understanding-the-amazon-from-space", "chips", "F2"
    default_data = DATA / "planet"
    FASTAI_AUG = dict(flip_vert=True, max_lighting=0.1, max_zoom=1.05, max_warp=0.0)  # the tutorial's Planet augmentation
    ROWS = [("F2 at 0.2, plain thresholding (fastai's FBetaMulti)", ("f2_at_0.2_plain_threshold",)),
            ("F2 at 0.2, with the tag rules", ("f2_at_0.2_with_rules",)),
            ("F2 at 0.5, with the tag rules", ("f2_at_0.5_with_rules",)),
            ("honest: one tuned global threshold", ("honest", "global")),
            ("honest: per-tag thresholds (shrunk)", ("honest", "per_tag")),
            ("honest: the choice kaggletools submits with (`submitted`)", ("honest", "submitted"))]
    NOTE = ("Honest = tuned on one stratified half of the held-out chips and scored on the other, both ways "
            "(kaggletools.score.validation.cross_fitted), the same function for both tools. kaggletools validates "
            "on the held-out chips after each epoch, as fastai does.")

    def job(self, a, work: Path) -> dict:
        import warnings

        from kaggletools.competition import registry
        from kaggletools.data import items as data

        comp = registry.get(self.slug)
        data_dir = Path(a.data or self.default_data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if a.limit:  # a data folder of its own (links), so that both workers see the same chips
                data_dir = data.sample(comp, data_dir, work / f"sample-{a.limit}", n_train=a.limit, n_test=0,
                                       seed=a.seed)
            items = data.train_items(comp, data_dir)
        valid_frac = 0.2 if a.valid_frac is None else a.valid_frac
        valid = data.split(comp, items, valid_frac, a.seed).valid
        tags, y = list(comp.classes), comp.targets(items)

        def tag_text(rows):
            return [" ".join(t for t, v in zip(tags, row) if v > 0.5) for row in rows]

        return {"data_dir": str(data_dir.resolve()), "recipe": recipe_of(comp, a, valid_frac=valid_frac),
                "classes": tags, "notes": [str(w.message) for w in caught],
                "train_sources": list(items["source"][~valid]), "valid_sources": list(items["source"][valid]),
                "train_tags": tag_text(y[~valid]), "valid_tags": tag_text(y[valid]),
                "valid_ids": list(items["id"][valid]), "y_valid": y[valid].tolist()}

    def kaggletools(self, spec: dict) -> dict:
        import pandas as pd

        run, total = kt_train(self.slug, spec["data_dir"], spec, spec["recipe"]["valid_frac"])
        split = pd.read_csv(run.file("split.csv"), dtype={"id": str})
        assert sorted(split["id"][split["is_valid"]]) == sorted(spec["valid_ids"]), "kaggletools held out other chips"
        phases, epochs = kt_epochs(run)
        phases = {"whole job": total, **phases,
                  "kaggletools: decode once, TTA validation, run folder": total - phases["fine-tune (all epochs)"]}
        table = pd.read_csv(run.file("valid_predictions.csv"), dtype={"id": str}).set_index("id").loc[spec["valid_ids"]]
        report = run.load_json("report.json")
        return {"run": run, "phases": phases, "epochs": epochs, "tta_level": report["tta"],
                "plain": table[[f"{t}_prob" for t in spec["classes"]]].to_numpy().tolist(),
                "tta": table[[f"{t}_prob_tta" for t in spec["classes"]]].to_numpy().tolist(),
                "thresholds": report["post"]["thresholds"], "chosen_variant": report["post"].get("variant")}

    def fastai_data(self, spec: dict):
        """As fastai's multi-label tutorial writes it: (dls, metrics, the held-out rows' sources)."""
        from functools import partial

        import pandas as pd
        from fastai.vision.all import (ColReader, DataBlock, FBetaMulti, ImageBlock, IndexSplitter, MultiCategoryBlock,
                                       Normalize, Resize, accuracy_multi, aug_transforms, imagenet_stats)

        r, tags = spec["recipe"], spec["classes"]
        df = pd.DataFrame({"source": spec["train_sources"] + spec["valid_sources"],
                           "tags": spec["train_tags"] + spec["valid_tags"]})
        n_train = len(spec["train_sources"])
        planet = DataBlock(blocks=(ImageBlock, MultiCategoryBlock(vocab=tags)),
                           get_x=ColReader("source", pref=f"{spec['data_dir']}/"),
                           get_y=ColReader("tags", label_delim=" "),
                           splitter=IndexSplitter(list(range(n_train, len(df)))),
                           item_tfms=Resize(r["presize"]),
                           batch_tfms=[*aug_transforms(size=r["size"], **self.FASTAI_AUG),
                                       Normalize.from_stats(*imagenet_stats)])
        dls = planet.dataloaders(df, bs=r["batch_size"])
        assert list(dls.vocab) == tags
        metrics = [partial(accuracy_multi, thresh=0.2), FBetaMulti(2.0, thresh=0.2, average="samples")]
        return dls, metrics, spec["valid_sources"]

    def score(self, spec: dict, probs) -> dict:
        """F2 at 0.2 (and 0.5) plain and with Planet's tag rules, and the cross-fitted (honest)
        scores of kaggletools' threshold variants."""
        import numpy as np

        from kaggletools.competition import registry
        from kaggletools.score import metrics, validation

        comp = registry.get(self.slug)
        y, p = np.asarray(spec["y_valid"], np.float64), np.asarray(probs, np.float64)
        return {"f2_at_0.2_plain_threshold": metrics.f2_samples(y, p > 0.2),
                "f2_at_0.2_with_rules": comp.metric(y, p, {"thresholds": [0.2] * len(comp.classes)}),
                "f2_at_0.5_with_rules": comp.metric(y, p),
                "honest": validation.cross_fitted(comp, y, p, seed=spec["recipe"]["seed"])}


class PlantSeedlings:
    """960 images (80 per species); the 240 held out of every recipe choice (SEEDLINGS_HELD_OUT);
    micro-F1 (= accuracy) and log loss."""
    name, slug, unit, metric = "plant-seedlings", "plant-seedlings-classification", "images", "micro-F1"
    default_data = DATA / "plant-seedlings"
    ROWS = [("micro-F1 (= accuracy)", ("micro_f1",)), ("log loss", ("log_loss",)),
            ("correct", ("n_correct",))]
    NOTE = ("The held-out 240 are those no recipe choice saw (`held_out` in "
            "benchmarks/results/plant-seedlings-cv-20261206.json). kaggletools trains on the 720 with --valid-frac 0 "
            "(api.train takes no given split) and the worker predicts the 240 with the saved run, plain and with "
            "the recipe's TTA, as benchmarks/holdout.py's `score` does; so its epochs validate nothing, while "
            "fastai's validate on the 240 after each epoch. fastai as its docs write it: default cross-entropy "
            "(kaggletools' recipe: label smoothing 0.1), fine_tune's lr_mult 100 (kaggletools': 10).")

    def job(self, a, work: Path) -> dict:
        from kaggletools.competition import registry
        from kaggletools.data import items as data

        if a.valid_frac is not None:
            raise SystemExit("--valid-frac: Plant Seedlings holds out a fixed 240 images, not a fraction")
        comp = registry.get(self.slug)
        source = Path(a.data or self.default_data)
        items = data.train_items(comp, source)
        fixed = json.loads(SEEDLINGS_HELD_OUT.read_text())["held_out"]["held_out"]
        held = {f"train/{species}/{name}" for species, names in fixed.items() for name in names}
        missing = sorted(held - set(items["source"]))
        if missing:
            raise SystemExit(f"{source}: {len(missing)} held-out images missing (e.g. {missing[0]}); point --data at "
                             "the 960 Plant Seedlings images")
        items["held"] = items["source"].isin(held)
        if a.limit:  # per species: the first limit/12 training images and a third as many held-out ones
            k = max(1, a.limit // len(comp.classes))
            rank = items.groupby(["label", "held"]).cumcount()
            items = items[rank < (items["held"].map({False: k, True: max(1, k // 3)}))].reset_index(drop=True)
        every, train_only = work / "data-all", work / "data-train"
        for src, is_held in zip(items["source"], items["held"]):  # links: both tools read the same files
            for folder in (every,) if is_held else (every, train_only):
                (folder / src).parent.mkdir(parents=True, exist_ok=True)
                (folder / src).symlink_to((source / src).resolve())
        y = comp.targets(items)
        valid = items["held"].to_numpy()
        return {"data_dir": str(every), "kt_data_dir": str(train_only), "source_dir": str(source.resolve()),
                "recipe": recipe_of(comp, a, **{k: getattr(comp.recipe, k) for k in
                                                ("lr_mult", "label_smoothing", "dihedral", "min_scale")}),
                "classes": list(comp.classes), "notes": [],
                "train_sources": list(items["source"][~valid]), "valid_sources": list(items["source"][valid]),
                "y_valid": y[valid].tolist()}

    def kaggletools(self, spec: dict) -> dict:
        """api.train on the training part (valid_frac 0), then the saved run predicts the held-out part."""
        import numpy as np

        from holdout import predict_items
        from kaggletools.data import items as data
        from kaggletools.steps.predict import SavedRun

        run, trained = kt_train(self.slug, spec["kt_data_dir"], spec, 0.0)
        t0 = time.perf_counter()
        saved = SavedRun.load(run.path)
        comp, r = saved.competition, saved.recipe
        every = data.train_items(comp, Path(spec["data_dir"]))
        items = every.set_index("source").loc[spec["valid_sources"]].reset_index()
        out = predict_items(saved, Path(spec["data_dir"]), items, r.tta, spec["kt_amp"])
        held = time.perf_counter() - t0
        phases, epochs = kt_epochs(run)
        phases = {"whole job": trained + held, **phases,
                  "kaggletools: api.train's decode once + run folder": trained - phases["fine-tune (all epochs)"],
                  "kaggletools: held-out decode + predict (plain and TTA)": held}
        assert np.array_equal(comp.targets(items), np.asarray(spec["y_valid"])), "held-out labels differ"
        return {"run": run, "phases": phases, "epochs": epochs, "tta_level": r.tta,
                "plain": out.plain.tolist(), "tta": out.tta.tolist()}

    def fastai_data(self, spec: dict):
        """As fastai's docs write single-label image classification: (dls, metrics, held-out sources)."""
        from fastai.vision.all import (CategoryBlock, DataBlock, FuncSplitter, ImageBlock, Normalize, Resize, accuracy,
                                       aug_transforms, get_image_files, imagenet_stats, parent_label)

        r, held = spec["recipe"], set(spec["valid_sources"])

        def source(path) -> str:
            return f"train/{path.parent.name}/{path.name}"

        seedlings = DataBlock(blocks=(ImageBlock, CategoryBlock(vocab=spec["classes"])),
                              get_items=get_image_files, get_y=parent_label,
                              splitter=FuncSplitter(lambda path: source(path) in held),
                              item_tfms=Resize(r["presize"]),
                              batch_tfms=[*aug_transforms(size=r["size"], flip_vert=True),
                                          Normalize.from_stats(*imagenet_stats)])
        dls = seedlings.dataloaders(Path(spec["data_dir"]) / "train", bs=r["batch_size"])
        return dls, [accuracy], [source(p) for p in dls.valid.items]

    def score(self, spec: dict, probs) -> dict:
        import numpy as np

        from kaggletools.competition import registry
        from kaggletools.score import metrics

        comp = registry.get(self.slug)
        y, p = np.asarray(spec["y_valid"]), np.asarray(probs, np.float64)
        return {"micro_f1": comp.metric(y, p), "log_loss": metrics.multiclass_log_loss(y, p, 0.0),
                "n_correct": int((p.argmax(1) == y.argmax(1)).sum())}


JOBS = {job.name: job for job in (Planet(), PlantSeedlings())}
