"""Matplotlib without a display, and figures written atomically."""
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
        fig.tight_layout()
        fig.savefig(partial, dpi=dpi)
        os.replace(partial, path)
    finally:
        plt.close(fig)
        partial.unlink(missing_ok=True)
    return path
