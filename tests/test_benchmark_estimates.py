"""benchmarks/estimates.py: the summary of estimates against held-out scores, checked by hand."""
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import estimates  # noqa: E402


def _row(name, slug, estimate, held_out, sd, single=(), one_model=None, oof_sd=0.0):
    return {"name": name, "competition": slug, "metric": "m", "n_held_out": 100, "cv_estimate": estimate,
            "cv_held_out": held_out, "cv_gap": held_out - estimate, "held_out_sampling_sd": sd,
            "one_model_oof": one_model, "n_oof": 400, "cv_sampling_sd": oof_sd,
            "single": [{"estimate": e, "held_out": h, "gap": h - e} for e, h in single]}


ROWS = [_row("a", "planet", 0.88, 0.90, 0.01, single=[(0.85, 0.90)], one_model=0.87, oof_sd=0.005),
        _row("b", "dogs-vs-cats-redux-kernels-edition", 0.05, 0.04, 0.0, single=[(0.06, 0.04), (0.03, 0.04)],
             oof_sd=0.002)]


def test_summary_by_hand():
    s = estimates.summary(ROWS)
    assert s["rows"] == 2
    assert s["mean_abs_gap"] == pytest.approx((0.02 + 0.01) / 2)
    assert s["mean_abs_gap_by_competition"] == pytest.approx({"planet": 0.02, "dogs-vs-cats-redux-kernels-edition": 0.01})
    # log loss is lower-is-better: its held-out 0.01 below the estimate counts as +0.01
    assert s["signed_mean"] == pytest.approx((0.02 + 0.01) / 2)
    assert s["signed_se"] == pytest.approx(0.005)  # sd of (0.02, 0.01) is 0.00707, over sqrt(2)
    assert s["mean_abs_gap_single_split"] == pytest.approx((0.05 + 0.02 + 0.01) / 3)
    assert s["single_split_models"] == 3
    assert s["mean_abs_gap_one_model_oof"] == pytest.approx(0.03)  # the row without one is left out
    boot = s["held_out_noise"]["bootstrap"]
    own = math.sqrt((0.02 ** 2 + 0.01 ** 2) / 2 - 0.01 ** 2 / 2)
    assert boot["own_rms"] == pytest.approx(own)
    assert boot["own_mean_abs"] == pytest.approx(own * math.sqrt(2 / math.pi))
    assert boot["sampling_mean_abs"] == pytest.approx(math.sqrt(0.01 ** 2 / 2) * math.sqrt(2 / math.pi))
    # expected: the out-of-fold sd 0.005 on 400 items is 0.01 on 100; 0.002 on 400 is 0.004
    single = s["single_split_held_out_noise"]  # gaps 0.05 (sd 0.01), 0.02 and 0.01 (sd 0.004)
    assert single["own_rms"] == pytest.approx(math.sqrt((0.05 ** 2 + 0.02 ** 2 + 0.01 ** 2 - 0.01 ** 2 - 2 * 0.004 ** 2) / 3))
    exp = s["held_out_noise"]["expected"]
    assert exp["sampling_rms"] == pytest.approx(math.sqrt((0.01 ** 2 + 0.004 ** 2) / 2))
    assert exp["own_rms"] == pytest.approx(math.sqrt((0.02 ** 2 + 0.01 ** 2 - 0.01 ** 2 - 0.004 ** 2) / 2))


def test_own_error_never_negative_when_sampling_explains_everything():
    rows = [_row("a", "planet", 0.88, 0.881, 0.05)]
    assert estimates.summary(rows)["held_out_noise"]["bootstrap"]["own_rms"] == 0.0


def test_older_rows_read_one_model_from_the_cv_report():
    old = _row("x2", "planet", 0.88, 0.90, 0.01)
    old["raw"] = {"run_estimate": {"averaging": {"one_model": 0.86}}}
    assert estimates.one_model_oof(old) == 0.86
    assert estimates.one_model_oof(_row("one-draw", "planet", 0.88, 0.90, 0.01)) is None
    assert "| 0.8600 |" in estimates.table([old])


def test_collect_refuses_a_malformed_spec(tmp_path):
    with pytest.raises(SystemExit, match="NAME=CV_DIR:HELD_OUT_CSV or NAME=SCORE.json"):
        estimates.collect(tmp_path / "r.json", ["just-a-name"])
    assert not (tmp_path / "r.json").exists()


def test_collect_reads_a_saved_score(tmp_path):
    scored = {"competition": "planet", "metric": "f2", "n_held_out": 139,
              "held_out": {"submitted": 0.89, "sampling": {"sd": 0.015},
                           "each_run": [{"estimate": 0.87, "held_out": 0.88, "n_valid": 111}]},
              "run_estimate": {"n_valid": 554, "honest": {"submitted": 0.875}, "sampling": {"sd": 0.0096},
                               "estimate": {"value": 0.885}, "averaging": {"one_model": 0.872}, "folds": None}}
    (tmp_path / "s.json").write_text(json.dumps(scored))
    book = estimates.collect(tmp_path / "r.json", [f"p={tmp_path / 's.json'}"])
    r = book["rows"]["p"]
    assert r["cv_estimate"] == 0.885 and r["one_model_oof"] == 0.872
    assert r["cv_gap"] == pytest.approx(0.005)
    assert r["single"][0]["gap"] == pytest.approx(0.01)
    assert json.loads((tmp_path / "r.json").read_text())["rows"]["p"]["n_oof"] == 554


def test_each_competition_counts_once_across_competitions():
    rows = [_row("a", "planet", 0.88, 0.90, 0.01), _row("b", "planet", 0.88, 0.88, 0.01),
            _row("c", "aerial-cactus-identification", 0.99, 0.99, 0.0)]
    s = estimates.summary(rows)
    assert s["mean_abs_gap"] == pytest.approx(0.02 / 3)
    assert s["mean_abs_gap_across_competitions"] == pytest.approx((0.01 + 0.0) / 2)
