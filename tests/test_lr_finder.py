"""The LR finder's suggestions (fastai's valley, steep, minimum, slide) on synthetic loss curves
with known answers: no training."""
import math

import numpy as np
import pytest

from kaggletools.fit import lr_finder

LRS = np.logspace(-7, 1, 100)


def dip(lr):
    """Flat at 2 up to 1e-4, a cosine-shaped fall to 0.5 at 1e-1 (steepest at 10**-2.5), then an explosion."""
    u = math.log10(lr)
    if u < -4:
        return 2.0
    if u <= -1:
        return 2.0 - 1.5 * (1 - math.cos(math.pi * (u + 4) / 3)) / 2
    return 0.5 + 10 * (u + 1) ** 2


def close(a, b, factor=1.5):
    return b / factor < a < b * factor


def test_valley_steep_and_minimum_land_where_the_curve_says():
    losses = [dip(lr) for lr in LRS]
    found = lr_finder.suggest(list(LRS), losses, ("valley", "steep", "minimum", "slide")).suggestions
    assert list(found) == ["valley", "steep", "minimum", "slide"]
    assert close(found["valley"][0], 10 ** -2.5)      # half-way into the fall (in log lr)
    assert close(found["steep"][0], 10 ** -2.5)
    assert close(found["minimum"][0], 1e-1 / 10)      # the lowest loss at 1e-1, divided by 10
    assert 1e-4 < found["slide"][0] < 1e-1 * 1.5      # on the fall, not in the flat part or the explosion
    for lr, loss in found.values():                   # the marker sits on the curve
        assert loss == pytest.approx(np.interp(np.log(lr), np.log(LRS), losses), rel=1e-6)


def test_valley_is_the_default_and_ignores_noise_at_the_start():
    rng = np.random.default_rng(0)
    losses = [dip(lr) for lr in LRS]
    losses[:8] = [2.0, 0.1, 3.0, 0.2, 2.5, 0.3, 2.2, 1.9]  # the bias-corrected average's wild first steps
    losses = list(np.array(losses) + rng.normal(0, 0.002, len(losses)))
    result = lr_finder.suggest(list(LRS), losses)
    assert list(result.suggestions) == ["valley"]
    assert close(result.suggestion, 10 ** -2.5, 2.0)


def test_valley_matches_fastai_index_on_a_plain_fall():
    # strictly falling from index 0 to 59, then rising: longest decreasing run 0..59, fastai's index
    # start + int(len / 3) + int(len / 6) with start = end - run = 59 - 60 = -1 -> -1 + 20 + 10 = 29
    losses = np.r_[np.linspace(3, 1, 60), np.linspace(1.1, 5, 40)]
    assert lr_finder.valley(LRS, losses) == 29


def test_the_sweep_stops_at_the_first_nonfinite_loss():
    losses = [dip(lr) for lr in LRS]
    losses[70:] = [float("nan")] * 30
    result = lr_finder.suggest(list(LRS), losses, ("minimum",))
    lr, loss = result.suggestions["minimum"]
    assert math.isfinite(loss) and lr < LRS[70] / 10


def test_unknown_method_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="valley, steep, minimum, slide"):
        lr_finder.parse_methods("valey")
    assert lr_finder.parse_methods("steep, valley,steep") == ("steep", "valley")


def test_plot_marks_every_suggestion(tmp_path):
    result = lr_finder.suggest(list(LRS), [dip(lr) for lr in LRS], ("valley", "steep", "minimum"))
    path = result.plot(tmp_path / "lr.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert result.text().startswith("2.31e-03 (valley)") and "(valley)" in result.text() and "(minimum)" in result.text()
