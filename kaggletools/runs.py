"""Run folders: the resolved configuration, versions, split, per-epoch metrics, weights,
predictions and plots of one training run, enough for `predict` to work from the folder alone."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

WEIGHTS = "model.pt"


def versions() -> dict:
    """Library and hardware versions, recorded with every run and benchmark."""
    import numpy
    import sklearn
    import torchvision

    import kaggletools

    return {"kaggletools": kaggletools.__version__, "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _builtin(value):
    """numpy scalars and arrays as Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in run metadata")


class Run:
    """One run's folder. Every file is written atomically (temporary name, then rename)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, root: Path, name: str) -> "Run":
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = Path(root) / (f"{stamp}-{name}" + (f"-{n}" if n else ""))
            try:
                path.mkdir(parents=True)
                return cls(path)
            except FileExistsError:
                continue
        raise RuntimeError(f"cannot create a run folder under {root}")

    @classmethod
    def open(cls, path: Path) -> "Run":
        path = Path(path)
        if not (path / "config.json").is_file() or not (path / WEIGHTS).is_file():
            raise FileNotFoundError(f"{path} is not a finished run folder (no config.json or {WEIGHTS}); "
                                    "give the folder that `train` printed")
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def _atomic(self, name: str, write) -> Path:
        target = self.path / name
        partial = target.with_name(f".{target.name}.partial")
        write(partial)
        os.replace(partial, target)
        return target

    def save_json(self, name: str, obj) -> Path:
        return self._atomic(name, lambda p: p.write_text(json.dumps(obj, indent=2, default=str)))

    def load_json(self, name: str):
        return json.loads((self.path / name).read_text())

    def save_table(self, name: str, df: pd.DataFrame) -> Path:
        return self._atomic(name, lambda p: df.to_csv(p, index=False))

    def log_epoch(self, row: dict) -> None:
        """Append one epoch's metrics to metrics.csv."""
        path = self.path / "metrics.csv"
        table = pd.concat([pd.read_csv(path), pd.DataFrame([row])]) if path.exists() else pd.DataFrame([row])
        self.save_table("metrics.csv", table)

    def save_weights(self, model: torch.nn.Module, meta: dict) -> Path:
        """The state dict and plain-JSON metadata (numpy numbers become Python numbers, so the
        file loads with weights_only=True)."""
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        meta = json.loads(json.dumps(meta, default=_builtin))
        return self._atomic(WEIGHTS, lambda p: torch.save({"state_dict": state, "meta": meta}, p))

    def load_weights(self) -> dict:
        """The saved state, loaded with weights_only=True (no code from the file is run)."""
        return torch.load(self.path / WEIGHTS, map_location="cpu", weights_only=True)
