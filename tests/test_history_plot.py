"""history.png: one y-axis per quantity (losses together, the metric on its own), the learning
rate and one-cycle momentum per batch, phases marked, legends outside the data."""
import numpy as np
import pytest

from kaggletools.competition import registry as competition
from kaggletools.fit import schedules
from kaggletools.runs import history

METRIC = "log_loss"


def _history(with_rates: bool = True):
    import torch

    rows, batches, n = [], [], 20
    for epoch, phase in ((1, "frozen"), (2, "unfrozen"), (3, "unfrozen")):
        rows.append({"epoch": epoch, "phase": phase, "train_loss": 0.5 / epoch, "valid_loss": 0.4 / epoch,
                     METRIC: 0.35 / epoch, "error_rate": 0.1 / epoch, "seconds": 10.0})
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-3)
    sched = schedules.OneCycle(opt, 2 * n, 0.3, 5.0)
    for epoch in range(3):
        if epoch == 1:
            opt = torch.optim.AdamW([param], lr=1e-3)
            sched = schedules.OneCycle(opt, 2 * n, 0.3, 5.0)
        for i in range(n):
            row = {"epoch": epoch + (i + 1) / n, "phase": rows[epoch]["phase"], "loss": 0.6 / (epoch + 1)}
            if with_rates:
                row.update(lr=opt.param_groups[0]["lr"], mom=opt.param_groups[0]["betas"][0])
            batches.append(row)
            sched.step()
    return rows, batches


def test_panels_one_per_quantity():
    rows, batches = _history()
    import pandas as pd

    assert history.panels(pd.DataFrame(rows), pd.DataFrame(batches), METRIC) == ["loss", "metric", "lr", "mom"]
    old = pd.DataFrame([{k: v for k, v in b.items() if k not in ("lr", "mom")} for b in batches])
    assert history.panels(pd.DataFrame(rows), old, METRIC) == ["loss", "metric"]  # a run from before lr was kept


def test_a_metric_that_is_the_validation_loss_is_one_line():
    import pandas as pd

    rows, batches = _history()
    rows = [{**r, METRIC: r["valid_loss"]} for r in rows]  # log loss: the validation loss itself
    assert history.panels(pd.DataFrame(rows), pd.DataFrame(batches), METRIC) == ["loss", "lr", "mom"]


def test_phase_spans_follow_the_epochs():
    import pandas as pd

    rows, _ = _history()
    assert history.phase_spans(pd.DataFrame(rows)) == [("frozen", 0, 1), ("unfrozen", 1, 3)]


def test_history_png_has_the_panels_and_legends_outside(tmp_path, monkeypatch):
    from kaggletools.io import plots

    seen = {}
    save = plots.save

    def keep(fig, path, **kw):
        seen["axes"] = [(a.get_ylabel(), a.get_legend()) for a in fig.axes]
        fig.canvas.draw()
        seen["outside"] = all(a.get_legend() is None or a.get_legend().get_window_extent().x0
                              >= a.get_window_extent().x1 for a in fig.axes)
        return save(fig, path, **kw)

    monkeypatch.setattr(plots, "save", keep)
    rows, batches = _history()
    path = history.history_plot(rows, batches, competition.get("dogscats"), tmp_path / "history.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    labels = [label for label, _ in seen["axes"]]
    assert labels == ["loss", f"{METRIC}\n(lower is better)", "lr", "momentum"]
    assert seen["outside"]
    assert np.isfinite([b["lr"] for b in batches]).all()


@pytest.mark.parametrize("with_rates", [True, False])
def test_history_png_without_validation_or_rates(tmp_path, with_rates):
    rows, batches = _history(with_rates)
    rows = [{k: v for k, v in r.items() if k not in ("valid_loss", METRIC, "error_rate")} for r in rows]
    path = history.history_plot(rows, batches, competition.get("dogscats"), tmp_path / "h.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
