"""report.html: one self-contained page per run, written from the run folder alone.

The scores (plain, with TTA, and the honest cross-fitted post-processing scores), the
post-processing chosen, the training history (history.png and a per-epoch table), the
interpretation plots and tables (kaggletools.runs.interpret), the resolved recipe and options, the
versions and hardware, and the split notes. Plots are embedded as base64 data URIs; the page
has no external reference (no stylesheet, script, font or image from elsewhere), and every
piece of text in it is escaped. A small inline script marks on <body> how many images loaded.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from kaggletools.runs import folder as runs
from kaggletools.score import validation

REPORT = "report.html"
STYLE = """
html { background: #fff; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 0 auto;
       max-width: 1100px; padding: 20px 28px 60px; background: #fff; }
h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 18px; border-bottom: 1px solid #d0d7de;
     padding-bottom: 4px; margin-top: 30px; } h3 { font-size: 15px; margin-bottom: 6px; }
.sub { color: #59636e; margin-top: 0; } .note { background: #fff8c5; border: 1px solid #d4a72c;
       padding: 6px 10px; border-radius: 6px; margin: 8px 0; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 12px 0 22px; } figure img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption { color: #59636e; font-size: 13px; } .cols { display: flex; gap: 28px; flex-wrap: wrap; }
"""
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (im) { return im.complete && im.naturalWidth > 0; });
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-images-loaded", String(loaded.length));
});
"""


def e(value) -> str:
    """Any value as escaped HTML text."""
    return html.escape(str(value), quote=True)


def fmt(value) -> str:
    """A value as short text: floats to 4 significant digits, lists joined, None as a dash."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def table(rows: list[list], header: list | None = None) -> str:
    """An HTML table of escaped cells; numbers right-aligned."""
    head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(
        f'<td class="n">{e(fmt(v))}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
        else f"<td>{e(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def pairs(mapping: dict) -> str:
    return table([[k, v] for k, v in mapping.items()])


def image(path: Path, alt: str, caption: str = "") -> str:
    """A PNG embedded as a data URI in a figure."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    figcaption = f"<figcaption>{e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{e(alt)}">{figcaption}</figure>'


# -- sections ------------------------------------------------------------------------------------
def scores_section(comp, report: dict, metrics: pd.DataFrame | None = None) -> str:
    if not report:
        return '<h2>Scores</h2><p class="note">No report.json: the run stopped before validation.</p>'
    out = ["<h2>Scores</h2>"]
    if report.get("note"):
        out.append(f'<p class="note">{e(report["note"])}</p>')
    plain, tta = report.get("plain") or {}, report.get("with_tta") or {}
    if plain or tta:
        names = list(dict.fromkeys([comp.metric_name, *plain, *tta]))
        better = "higher" if comp.greater_is_better else "lower"
        out.append(f"<p>On {e(report.get('n_valid'))} validation items; {e(comp.metric_name)}: {better} is better.</p>")
        out.append(table([[n, plain.get(n), tta.get(n)] for n in names],
                         ["score", "plain", f"with TTA '{report.get('tta')}'"]))
    honest, spread = report.get("with_post") or {}, report.get("with_post_spread") or {}
    variants = list(dict.fromkeys([*(honest.get("plain") or {}), *(honest.get("tta") or {})]))
    if variants:
        out.append(f"<h3>With post-processing, honest ({e(comp.metric_name)})</h3><p>Tuned on one half of the "
                   "validation items and scored on the other, both ways, pooled; the mean ± sd over several "
                   f"random halvings. <b>{validation.SUBMITTED}</b>: the post-processing procedure actually "
                   "submitted (which may choose among the variants) tuned the same way, the honest estimate of "
                   "what the test set gets; the best variant picked afterwards flatters.</p>")
        out.append(table([[v, *(_honest_cell(honest, spread, side, v) for side in ("plain", "tta"))]
                          for v in variants], ["variant", "plain", "with TTA"]))
    sampling = report.get("sampling") or {}
    if sampling.get("sd") is not None:
        out.append(f"<p>Sampling spread of the validation score: ± {float(sampling['sd']):.4f} (sd over "
                   f"{e(sampling.get('resamples'))} bootstrap resamples of the {e(sampling.get('n_items'))} items, "
                   "with TTA and the post-processing submitted): the score on other items of the same kind, such "
                   "as the test set, may lie that far off.</p>")
    if report.get("sharper"):
        out.append(f"<p>{e(report['sharper'])}.</p>")
    out.append("<h3>Post-processing chosen</h3>" + post_table(report.get("post") or {}))
    if report.get("post_source"):
        out.append(f"<p>Source: {e(report['post_source'])}.</p>")
    kept = report.get("kept") or {}
    score = kept.get("score")
    if score is None and metrics is not None and "epoch" in metrics and comp.metric_name in metrics:
        at = metrics.loc[metrics["epoch"] == kept.get("epoch"), comp.metric_name]
        score = float(at.iloc[-1]) if len(at) and at.notna().iloc[-1] else None
    facts = {"weights kept from epoch": kept.get("epoch"), f"validation {comp.metric_name} at that epoch": score,
             "training seconds": report.get("seconds")}
    out.append(pairs({k: v for k, v in facts.items() if v is not None}))
    return "".join(out)


def _honest_cell(honest: dict, spread: dict, side: str, variant: str):
    """A variant's honest mean with its spread as text ('0.8861 ± 0.0040 (5 halvings)'), the bare
    number in a report without spreads, None when absent."""
    mean = (honest.get(side) or {}).get(variant)
    if not isinstance(mean, (int, float)) or isinstance(mean, bool):
        return mean
    return validation.with_spread(mean, (spread.get(side) or {}).get(variant)) if spread else mean


def post_table(post: dict) -> str:
    if not post:
        return "<p>None (the probabilities are submitted as they are).</p>"
    rest = {k: v for k, v in post.items() if k not in ("thresholds", "classes")}
    parts = [pairs(rest)] if rest else []
    if isinstance(post.get("thresholds"), list) and isinstance(post.get("classes"), list):
        parts.append(table([[c, t] for c, t in zip(post["classes"], post["thresholds"])], ["tag", "threshold"]))
    elif "thresholds" in post:
        parts.append(pairs({"thresholds": post["thresholds"]}))
    return "<div class='cols'>" + "".join(f"<div>{p}</div>" for p in parts) + "</div>"


def history_section(run: runs.Run, comp) -> str:
    out = ["<h2>Training</h2>"]
    png = run.file("history.png")
    if not png.is_file() and run.file("metrics.csv").is_file():
        from kaggletools.runs import history

        batches = run.load_table("batches.csv") if run.file("batches.csv").is_file() else pd.DataFrame()
        history.history_plot(run.load_table("metrics.csv").to_dict("records"),
                             batches.to_dict("records"), comp, png)
    if png.is_file():
        out.append(image(png, "training history", "Loss per batch (faint) and per epoch with the validation loss; "
                                                  f"{comp.metric_name} per epoch; the learning rate and momentum per "
                                                  "batch; phases shaded and named."))
    if run.file("metrics.csv").is_file():
        metrics = run.load_table("metrics.csv")
        rows = [[_plain(v) for v in row] for row in metrics.itertuples(index=False)]
        out.append(table(rows, list(metrics.columns)))
    else:
        out.append('<p class="note">No metrics.csv: no epoch finished.</p>')
    return "".join(out)


def interpretation_section(run: runs.Run) -> str:
    out = ["<h2>Interpretation</h2>"]
    if not run.file(runs.INTERPRETATION).is_file():
        return out[0] + '<p class="note">Not interpreted yet: run <code>kaggletools interpret RUN</code>.</p>'
    summary = run.load_json(runs.INTERPRETATION)
    out.append(f"<p>{e(summary.get('n_valid'))} validation items, probabilities {e(summary.get('probabilities'))}."
               "</p>")
    out += [f'<p class="note">{e(note)}</p>' for note in summary.get("notes", [])]
    losses = (table([[r["id"], r["actual"], r["predicted"], r["probability"], r["loss"]] for r in summary["top_losses"]],
                    ["id", "actual", "predicted", "probability", "loss"]) if summary.get("top_losses") else "")
    for plot in summary.get("plots", []):
        path = run.file(plot["file"])
        if path.is_file():
            out.append(f"<h3>{e(plot.get('title', plot['name']))}</h3>" + image(path, plot["name"], plot["caption"]))
            if plot["name"] == "top_losses":  # the table under its plot, one heading for both
                out.append(losses)
                losses = ""
        if plot["name"] == "confusion":
            out.append("<h3>Most confused</h3>" + (table([[p["actual"], p["predicted"], p["count"]]
                                                          for p in summary.get("confused", [])],
                                                         ["actual", "predicted", "count"])
                                                   if summary.get("confused") else "<p>No mistakes.</p>"))
    if losses:  # no plot (the images could not be read): the table alone
        out.append("<h3>Top losses</h3>" + losses)
    if summary.get("per_class"):
        out.append("<h3>Precision and recall per class</h3><p>Of the validation decisions as submitted.</p>"
                   + table([[r["class"], r["precision"], r["recall"], r["support"], r["predicted"]]
                            for r in summary["per_class"]], ["class", "precision", "recall", "items", "predicted"]))
    return "".join(out)


def setup_section(run: runs.Run, config: dict) -> str:
    out = ["<h2>Recipe and options</h2><div class='cols'>"]
    out.append("<div><h3>Recipe</h3>" + pairs(config.get("recipe", {})) + "</div>")
    out.append("<div><h3>Run options</h3>" + pairs(config.get("options", {})) + "</div>")
    backbone = dict(config.get("backbone") or {})
    size = (config.get("recipe") or {}).get("size")
    if size and "input_size" in backbone:  # the backbone's pretraining size: say what this run trained at
        channels = (backbone.pop("input_size") or [3])[0]
        backbone["input size (trained)"] = f"{channels}×{size}×{size}"
    out.append("<div><h3>Backbone and device</h3>" + pairs({
        **backbone, "precision": config.get("precision"), "device": config.get("device"),
        "processes": config.get("world_size"), "data folder": config.get("data_dir")}) + "</div></div>")
    out.append("<h2>Split</h2>")
    if run.file("split.csv").is_file():
        split = run.load_table("split.csv", ("is_valid",))
        valid = split["is_valid"].astype(str).str.lower().isin(["true", "1"])
        facts = {"items": len(split), "training": int((~valid).sum()), "validation": int(valid.sum())}
        if "fold" in split:
            facts["folds"] = int(split["fold"].nunique())
        out.append(pairs(facts))
    notes = config.get("split_notes") or []
    out.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>" if notes else "<p>No split notes.</p>")
    if run.file("versions.json").is_file():
        versions = run.load_json("versions.json")
        cuda = versions.pop("cuda", None) or {"": "none"}
        out.append("<h2>Versions and hardware</h2>" + pairs({**versions, **{f"cuda {k}".strip(): v
                                                                            for k, v in cuda.items()}}))
    return "".join(out)


def _plain(value):
    return value.item() if hasattr(value, "item") else value


# -- the page --------------------------------------------------------------------------------------
def render(run: runs.Run, comp) -> str:
    """The report page of `run`, a run of the competition `comp`, as text."""
    config = run.load_json("config.json")
    report = run.load_json("report.json") if run.file("report.json").is_file() else {}
    recipe = config.get("recipe", {})
    title = f"{comp.slug}: {run.path.name}"
    sub = (f"{comp.title} · {comp.task.name} · {recipe.get('backbone', '')} at {recipe.get('size', '')} px · "
           f"metric {comp.metric_name}")
    metrics = run.load_table("metrics.csv") if run.file("metrics.csv").is_file() else None
    body = [f"<h1>{e(title)}</h1><p class='sub'>{e(sub)}</p>", scores_section(comp, report, metrics),
            history_section(run, comp), interpretation_section(run), setup_section(run, config)]
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<style>{STYLE}</style><script>{SCRIPT}</script></head>\n<body>{''.join(body)}</body></html>\n")


def write(run: runs.Run, comp) -> Path:
    """Write report.html into the run folder (atomically); returns its path."""
    return run.save_text(REPORT, render(run, comp))  # a full disk: one line naming report.html
