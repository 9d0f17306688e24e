"""The per-epoch line is a table row under a header, as fastai prints it."""
from kaggletools.fit.epoch_table import EpochTable


def test_a_header_per_phase_then_one_aligned_row_per_epoch():
    table = EpochTable("log_loss")
    rows = [{"epoch": 1, "phase": "frozen", "train_loss": 0.31234, "valid_loss": 0.1, "log_loss": 0.1,
             "error_rate": 0.04, "seconds": 12.3, "train_images_per_s": 99.0},
            {"epoch": 2, "phase": "unfrozen", "train_loss": 0.2, "valid_loss": 0.09, "log_loss": 0.09,
             "error_rate": 0.03, "seconds": 3725},
            {"epoch": 3, "phase": "unfrozen", "train_loss": 0.2, "seconds": 5}]
    first, second, third = (table.lines(r) for r in rows)
    assert first[0] == "-- frozen" and first[1].split() == ["epoch", "train_loss", "valid_loss", "log_loss",
                                                             "error_rate", "time"]
    assert first[2].split() == ["1", "0.312340", "0.100000", "0.100000", "0.040000", "00:12"]
    assert second[0] == "-- unfrozen" and second[2].split()[-1] == "1:02:05"
    assert len(third) == 1 and third[0].split() == ["3", "0.200000", "-", "-", "-", "00:05"]
    assert first[1].index("train_loss") == first[2].index("0.312340")  # aligned under its header
    assert "=" not in "".join(first + second + third)


def test_a_metric_named_like_a_fixed_column_is_not_repeated():
    assert EpochTable("error_rate").columns == ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
