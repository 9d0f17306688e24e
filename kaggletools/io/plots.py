"""Matplotlib without a display, and figures written atomically with every text drawn literally:
titles, labels, legends and class names come from outside (file names, ids, tags), so neither
TeX nor matplotlib's math parser ever sees them (a '$' or '_' in a file name must not break a plot)."""
from __future__ import annotations

import os
from pathlib import Path


def figure(width: float = 6, height: float = 4, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), **kwargs)


def save(fig, path: Path, dpi: int = 100) -> Path:
    """Write `fig` as PNG to a temporary name, then rename it into place; close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.png")
    try:
        literal(fig)
        fig.tight_layout()
        fig.savefig(partial, dpi=dpi)
        os.replace(partial, path)
    except OSError as e:  # a full disk, a read-only folder: named by the file meant, not the temporary one
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    finally:
        plt.close(fig)
        partial.unlink(missing_ok=True)
    return path


def literal(fig) -> None:
    """Every text of `fig` as written: no TeX, no math parsing. Tick labels that matplotlib's own
    formatters make (e.g. 10^-3 on a log axis) keep their math; labels given as strings do not."""
    from matplotlib.text import Text
    from matplotlib.ticker import FixedFormatter

    own = set()
    for ax in fig.axes:
        for axis in (a for a in (ax.xaxis, ax.yaxis, getattr(ax, "zaxis", None)) if a is not None):
            for ticks, formatter in ((axis.get_major_ticks(), axis.get_major_formatter()),
                                     (axis.get_minor_ticks(), axis.get_minor_formatter())):
                if not isinstance(formatter, FixedFormatter):
                    own.update(id(t) for tick in ticks for t in (tick.label1, tick.label2))
            own.add(id(axis.offsetText))
    for text in fig.findobj(Text):
        text.set_usetex(False)
        if id(text) not in own:
            text.set_parse_math(False)
