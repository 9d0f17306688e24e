"""The per-epoch line as fastai prints it: a table row per epoch under a header, one table per
phase (fastai's fine_tune prints one for the frozen epochs and one for the rest)."""
from __future__ import annotations

FIXED = ("epoch", "train_loss", "valid_loss")
TAIL = ("error_rate", "time")
WIDTH = 12


class EpochTable:
    """Rows of `epoch, train_loss, valid_loss, <metric>, error_rate, time`; the header comes
    before the first row of each phase."""

    def __init__(self, metric: str):
        self.columns = [*FIXED, *([metric] if metric not in FIXED + TAIL else []), *TAIL]
        self.phase = None

    def lines(self, row: dict) -> list[str]:
        """The lines to print for one epoch's row (the header first when a phase begins)."""
        out = []
        if row.get("phase") != self.phase:
            self.phase = row.get("phase")
            out.append(f"-- {self.phase}" if self.phase else "")
            out.append(self._join(self.columns))
        values = {**row, "epoch": int(row["epoch"]), "time": _clock(row.get("seconds"))}  # 1-based, as metrics.csv
        out.append(self._join([_cell(values.get(c)) for c in self.columns]))
        return [line for line in out if line]

    def _join(self, cells) -> str:
        return " ".join(str(c).ljust(max(WIDTH, len(str(c)) + 1)) for c in cells).rstrip()


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _clock(seconds) -> str:
    """mm:ss as fastai shows it (h:mm:ss past an hour)."""
    if seconds is None:
        return "-"
    s = int(round(float(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"
