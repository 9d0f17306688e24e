"""Interpretation of a run from its folder alone: where the model is wrong and how sure it is.

From `valid_predictions.csv` (the TTA probabilities, on which the post-processing was tuned) it
writes into the run folder the files that fit the task and the post-processing:

| file | what | when |
|---|---|---|
| interpret_confusion.png | actual against predicted class (many classes: the most confused) | binary, multi-class |
| interpret_confused.csv | most-confused pairs: actual, predicted, count | binary, multi-class |
| interpret_top_losses.png | the items with the highest loss: label, prediction, probability | data folder readable |
| interpret_thresholds.png | the metric against each tag's threshold, the chosen one marked | tags with thresholds |
| interpret_probabilities.png | probabilities where the target is 1 and 0; a log-loss clip or floor marked | always |
| interpret.json | what was written, notes, most-confused pairs, top losses, precision and recall per class (read by report.html) | always |

A run without validation predictions (trained with --valid-frac 0) gets only interpret.json,
which says so. Files of an earlier interpretation that no longer apply are removed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kaggletools.runs import gallery, per_class
import kaggletools.competition.tags as multilabel
from kaggletools.io import plots
from kaggletools.runs import folder as runs
import kaggletools.competition.tasks as tasks
from kaggletools.score import validation
from kaggletools.errors import CompetitionError, RunError
from kaggletools.options import Recipe

PREFIX = "interpret_"
VALID = "valid_predictions.csv"
TOP_LOSSES = 12
MAX_CLASSES = 20  # a confusion matrix with more classes shows the most confused ones
LISTED_PAIRS = 10
CURVE_GRID = tuple(float(t) for t in np.round(np.arange(0.02, 0.99, 0.02), 2))


# -- the numbers ---------------------------------------------------------------------------------
def class_names(comp) -> list[str]:
    """Names of the rows and columns of a confusion matrix (binary: negative, positive)."""
    return comp.class_names()


def confusion(comp, y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(k, k) counts: rows actual, columns predicted (binary at 0.5, multi-class the argmax)."""
    if isinstance(comp.task, tasks.Binary):
        actual, predicted = (y[:, 0] > 0.5).astype(int), (probs[:, 0] > 0.5).astype(int)
    else:
        actual, predicted = y.argmax(1), probs.argmax(1)
    k = len(class_names(comp))
    counts = np.zeros((k, k), int)
    np.add.at(counts, (actual, predicted), 1)
    return counts


def most_confused(counts: np.ndarray, names: list[str]) -> list[dict]:
    """Off-diagonal cells with a count, largest first: {actual, predicted, count}."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = np.lexsort((cols, rows, -off[rows, cols]))
    return [{"actual": names[rows[i]], "predicted": names[cols[i]], "count": int(off[rows[i], cols[i]])}
            for i in order]


def shown_classes(counts: np.ndarray, limit: int = MAX_CLASSES) -> np.ndarray:
    """Indices of the classes a readable matrix shows: all when few; else those most often in a
    mistake (as actual or predicted), then the most frequent in validation, in class order."""
    k = len(counts)
    if k <= limit:
        return np.arange(k)
    off = counts - np.diag(np.diag(counts))
    mistakes, frequency = off.sum(0) + off.sum(1), counts.sum(1)
    order = np.lexsort((np.arange(k), -frequency, -mistakes))
    return np.sort(order[:limit])


def item_losses(task: tasks.Task, y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each item's validation loss, as the task defines it."""
    return np.array([task.valid_loss(y[i:i + 1], probs[i:i + 1]) for i in range(len(y))])


def threshold_curves(comp, y: np.ndarray, probs: np.ndarray, post: dict) -> tuple[np.ndarray, np.ndarray]:
    """(grid, scores (k, G)): the competition's metric (its own decisions, tag rules included) when
    one tag's threshold moves over the grid and the others keep their chosen values. The grid
    holds the chosen values, so each curve passes through the tuned score."""
    chosen = multilabel.thresholds(post, comp.classes)
    grid = np.unique(np.concatenate([CURVE_GRID, chosen]))
    scores = np.empty((len(chosen), len(grid)))
    for c in range(len(chosen)):
        for j, value in enumerate(grid):
            t = chosen.copy()
            t[c] = value
            scores[c, j] = comp.metric(y, probs, {**post, "thresholds": t.tolist()})
    return grid, scores


# -- the plots -------------------------------------------------------------------------------------
def confusion_plot(comp, counts: np.ndarray, path: Path, n_valid: int) -> Path:
    names = class_names(comp)
    keep = shown_classes(counts)
    sub = counts[np.ix_(keep, keep)]
    share = sub / np.maximum(counts[keep].sum(1, keepdims=True), 1)
    side = max(5.5, 0.42 * len(keep) + 2.5)
    fig, ax = plots.figure(side, side * 0.92)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    labels = [names[i] if len(names[i]) <= 22 else names[i][:21] + "…" for i in keep]
    ax.set_xticks(range(len(keep)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(keep)), labels, fontsize=8)
    for i in range(len(keep)):
        for j in range(len(keep)):
            if sub[i, j]:
                ax.text(j, i, str(sub[i, j]), ha="center", va="center", fontsize=7 if len(keep) > 10 else 9,
                        color="white" if share[i, j] > 0.5 else "#222222")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    errors = int(counts.sum() - np.trace(counts))
    shown = f"; {len(keep)} of {len(names)} classes, the most confused" if len(keep) < len(names) else ""
    ax.set_title(f"{comp.slug}\nconfusion on {n_valid} validation items (TTA): {errors} wrong "
                 f"({errors / max(n_valid, 1):.1%})\ncolour: share of the actual class{shown}", fontsize=9)
    return plots.save(fig, path)


def probabilities_plot(comp, y: np.ndarray, probs: np.ndarray, post: dict, path: Path) -> tuple[Path, str]:
    """Histogram of the probabilities where the target is 1 and where it is 0; the clip or floor
    of the post-processing marked. Returns the path and a caption."""
    task, c0 = comp.task, comp.classes[0]
    if isinstance(task, tasks.Binary):
        words = (f"P({c0}) of items that are {c0}", f"P({c0}) of items that are {comp.class_names()[0]}")
    elif isinstance(task, tasks.MultiClass):
        words = ("P(actual class)", "P(each other class)")
    else:
        words = ("P(tag) where the tag is present", "P(tag) where it is absent")
    present, absent = probs[y > 0.5], probs[y <= 0.5]
    fig, ax = plots.figure(7, 4.6)
    bins = np.linspace(0, 1, 41)
    ax.hist([absent, present], bins, color=["#9ecae1", "#d62728"], alpha=0.75, label=[words[1], words[0]],
            histtype="stepfilled")
    caption = f"{words[0]} and {words[1]}, {len(y)} validation items, with TTA"
    clip, floor = post.get("clip"), post.get("floor")
    if clip:
        moved = int(((probs < clip) | (probs > 1 - clip)).sum())
        for lo, hi in ((0, clip), (1 - clip, 1)):
            ax.axvspan(lo, hi, color="#ff7f0e", alpha=0.35, lw=0)
        ax.axvline(clip, color="#ff7f0e", ls="--", label=f"log-loss clip {clip:g}: {moved} probabilities moved")
        ax.axvline(1 - clip, color="#ff7f0e", ls="--")
        caption += f"; the log-loss clip [{clip:g}, {1 - clip:g}] moves {moved} of {probs.size} probabilities"
    if floor:
        lifted = int((probs < floor).sum())
        ax.axvline(floor, color="#ff7f0e", ls="--", label=f"probability floor {floor:g}: {lifted} lifted")
        caption += f"; the probability floor {floor:g} lifts {lifted} of {probs.size} probabilities"
    if probs.shape[1] > 1:
        ax.set_yscale("log")
    else:
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts
    ax.set_xlim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("count")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)  # below the axes
    ax.set_title(f"{comp.slug}: validation probabilities (TTA)", fontsize=10)
    return plots.save(fig, path), caption


def thresholds_plot(comp, y: np.ndarray, probs: np.ndarray, post: dict, path: Path) -> Path:
    grid, scores = threshold_curves(comp, y, probs, post)
    chosen = multilabel.thresholds(post, comp.classes)
    k = len(comp.classes)
    cols = 4
    rows = -(-k // cols)
    fig, axes = plots.figure(cols * 2.6, rows * 2.0 + 0.6, nrows=rows, ncols=cols, squeeze=False, sharey=True)
    for ax in axes.flat[k:]:
        ax.axis("off")
    tuned = comp.metric(y, probs, post)
    for c, ax in enumerate(axes.flat[:k]):
        ax.plot(grid, scores[c], color="#1f77b4", lw=1.2)
        ax.axvline(chosen[c], color="#d62728", ls="--", lw=1)
        ax.plot([chosen[c]], [tuned], "o", color="#d62728", ms=4)
        ax.set_title(f"{comp.classes[c]} ({int((y[:, c] > 0.5).sum())} of {len(y)}): {chosen[c]:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlim(0, 1)
    fig.suptitle(f"{comp.slug}: validation {comp.metric_name} (TTA) against each tag's threshold, the others at "
                 f"their chosen values; red: the chosen threshold", fontsize=9)
    return plots.save(fig, path)


def top_losses_plot(comp, rows: list[dict], items: list[np.ndarray], path: Path) -> Path:
    titles = [f"{r['id']}\nactual: {r['actual']}\npredicted: {r['predicted']}\n{r['probability']}\n"
              f"loss {r['loss']:.2f}" for r in rows]
    colours = ["#b2182b" if r["wrong"] else "#1a7f37" for r in rows]
    return gallery.grid(items, titles, comp.kind, path, f"{comp.slug}: validation items with the highest loss "
                        "(TTA); red: wrong", colours)


# -- top losses: rows and pixels -------------------------------------------------------------------
def top_loss_rows(comp, ids, y: np.ndarray, probs: np.ndarray, post: dict, n: int = TOP_LOSSES) -> list[dict]:
    """The `n` items with the highest loss: id, actual, predicted (as submitted, post-processing
    included), the probability that matters, loss, wrong."""
    losses = item_losses(comp.task, y, probs)
    top = np.argsort(-losses, kind="stable")[:n]
    decided = _decisions(comp, [ids[i] for i in top], probs[top], post)
    rows = []
    for row, i in zip(decided, top):
        rows.append({"id": str(ids[i]), "actual": gallery.label_text(comp.task, comp.classes, y[i], comp.negative_class),
                     "predicted": gallery.label_text(comp.task, comp.classes, row, comp.negative_class),
                     "probability": _probability(comp, y[i], probs[i]), "loss": float(losses[i]),
                     "wrong": bool(((row > 0.5) != (y[i] > 0.5)).any())})
    return rows


def _decisions(comp, ids: list, probs: np.ndarray, post: dict) -> np.ndarray:
    """0/1 decisions per output: the argmax, P > 0.5, or for tags what the submission says."""
    if isinstance(comp.task, tasks.MultiClass):
        return np.eye(probs.shape[1])[probs.argmax(1)]
    if isinstance(comp.task, tasks.Binary):
        return (probs > 0.5).astype(float)
    return (comp.read_submission(comp.submission(ids, probs, post).astype(str)) > 0.5).astype(float)


def _probability(comp, y: np.ndarray, p: np.ndarray) -> str:
    if isinstance(comp.task, tasks.Binary):
        return f"P({comp.classes[0]}) {p[0]:.2f}"
    if isinstance(comp.task, tasks.MultiClass):
        return f"P {p.max():.2f}, P(actual) {p[y.argmax()]:.2f}"
    worst = int(np.abs(y - p).argmax())
    return f"worst: {comp.classes[worst]} ({'present' if y[worst] > 0.5 else 'absent'}) P {p[worst]:.2f}"


def _pixels(comp, config: dict, ids: list[str], decoded, data_dir: Path | None) -> list[np.ndarray]:
    """The items `ids` as the cache holds them: from `decoded` (items, array) when given, else
    decoded from the data folder the way the cache decodes them."""
    from kaggletools.data import cache
    from kaggletools.data import items as data

    if decoded is not None:
        items, array = decoded
        where = pd.Index(items["id"].astype(str)).get_indexer(ids)
        if (where < 0).any():
            raise CompetitionError(f"validation ids not among the training items: {list(np.array(ids)[where < 0][:3])}")
        return [np.asarray(array[i]) for i in where]
    data_dir = Path(data_dir or config["data_dir"])
    items = data.train_items(comp, data_dir)
    sources = dict(zip(items["id"].astype(str), items["source"]))
    missing = [i for i in ids if i not in sources]
    if missing:
        raise CompetitionError(f"{data_dir} lacks validation item(s) {missing[:3]}")
    side = Recipe.from_dict(config["recipe"]).cache_side
    return [cache.decode(comp, data_dir, sources[i], side) for i in ids]


# -- the whole interpretation ---------------------------------------------------------------------
def write(run: runs.Run, comp, decoded=None, data_dir: Path | None = None) -> list[Path]:
    """Write the interpretation of `run`, a run of the competition `comp` (see the module's
    table); returns the files written, interpret.json last. `decoded` = (item table, cache
    array) spares decoding the top-loss items again (training passes its own); `data_dir`
    overrides the run's."""
    config = run.load_json("config.json")
    if "blend" in config:  # a blend (or a cross-validation's folder) holds no model and no recipe of its own
        made = config["blend"].get("runs") if isinstance(config["blend"], dict) else None
        first = made[0] if isinstance(made, list) and made else "RUN"
        raise RunError(f"{run.path} is a blend of runs, not a trained run: interpret one of its runs, e.g. "
                       f"`kaggletools interpret {first}`")
    if "recipe" in config:  # checked like our own output: a hand-edited field is named
        runs.options_from(Recipe, config["recipe"], run.file("config.json"), "recipe", check=False)
    report = run.load_json("report.json") if run.file("report.json").is_file() else {}
    post = report.get("post") or {}
    summary = {"competition": comp.slug, "task": comp.task.name, "probabilities": f"with TTA '{report.get('tta')}'",
               "n_valid": 0, "plots": [], "confused": [], "top_losses": [], "notes": []}
    written: list[Path] = []
    table = run.load_table(VALID, ("id",), dtype={"id": str}) if run.file(VALID).is_file() else None
    if table is None or table.empty:
        summary["notes"].append(_no_validation(report))
    else:
        ids = table["id"].astype(str).tolist()
        y, probs = validation.read_prediction_table(comp, table, "tta")
        y, probs = y.astype(np.float64), probs.astype(np.float64)
        summary["n_valid"] = len(ids)

        def add(name: str, title: str, path: Path, caption: str) -> None:
            written.append(path)
            summary["plots"].append({"name": name, "title": title, "file": path.name, "caption": caption})

        if isinstance(comp.task, (tasks.Binary, tasks.MultiClass)):
            counts = confusion(comp, y, probs)
            pairs = most_confused(counts, class_names(comp))
            written.append(run.save_table(f"{PREFIX}confused.csv", pd.DataFrame(
                pairs, columns=["actual", "predicted", "count"])))
            summary["confused"] = pairs[:LISTED_PAIRS]
            rule = "P > 0.5" if isinstance(comp.task, tasks.Binary) else "the most probable class"
            add("confusion", "Confusion matrix", confusion_plot(comp, counts, run.file(f"{PREFIX}confusion.png"),
                                                                len(ids)),
                f"Confusion matrix: actual against predicted class ({rule}).")
        if isinstance(comp.task, tasks.MultiLabel) and "thresholds" in post:
            add("thresholds", "Thresholds", thresholds_plot(comp, y, probs, post, run.file(f"{PREFIX}thresholds.png")),
                f"The {comp.metric_name} against each tag's threshold, the other tags at their chosen thresholds "
                "(tag rules included); the chosen threshold marked.")
        path, caption = probabilities_plot(comp, y, probs, post, run.file(f"{PREFIX}probabilities.png"))
        add("probabilities", "Predicted probabilities", path, caption + ".")
        rows = top_loss_rows(comp, ids, y, probs, post)
        summary["top_losses"] = rows
        summary["per_class"] = per_class.rows(comp, y, _decisions(comp, ids, probs, post))
        try:
            pixels = _pixels(comp, config, [r["id"] for r in rows], decoded, data_dir)
        except (OSError, CompetitionError, ValueError) as e:
            if decoded is not None:
                raise
            summary["notes"].append(f"no top-loss images: the data folder cannot be read ({e})")
        else:
            add("top_losses", "Top losses", top_losses_plot(comp, rows, pixels, run.file(f"{PREFIX}top_losses.png")),
                f"The {len(rows)} validation items with the highest loss: actual, predicted (as submitted), "
                "probability, loss.")
    _remove_stale(run, written)
    written.append(run.save_json(runs.INTERPRETATION, summary))
    return written


def _no_validation(report: dict) -> str:
    if not report:
        return "no report.json: the run stopped before validation; nothing to interpret"
    if report.get("n_valid") == 0:
        return (f"{report.get('note') or 'no validation items'}: the run was trained with --valid-frac 0 (every "
                "labelled item in training), so there is nothing to interpret: no confusion matrix, top losses "
                "or probabilities")
    return f"no {VALID} in the run folder (removed?); nothing to interpret"


def _remove_stale(run: runs.Run, written: list[Path]) -> None:
    keep = {p.name for p in written}
    for path in run.path.glob(f"{PREFIX}*"):
        if path.is_file() and path.name not in keep:
            path.unlink()


def notes(run: runs.Run) -> list[str]:
    """The notes of the run's last interpretation."""
    return run.load_json(runs.INTERPRETATION).get("notes", []) if run.file(runs.INTERPRETATION).is_file() else []
