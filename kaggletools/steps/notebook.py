"""The inference notebook of a bundle (kaggletools.steps.bundle) for a code competition: it finds
the bundle and the competition's data under /kaggle/input, installs kaggletools from the bundle's
wheels with no index, predicts with the run's TTA from the read-only run folder and writes a
validated /kaggle/working/submission.csv. Its code reads $KAGGLETOOLS_KAGGLE_ROOT (default
/kaggle), so the same cells run here against a stand-in /kaggle."""
from __future__ import annotations

import json
from pathlib import Path

MARKER = "kaggletools-bundle.json"  # at the top of a bundle: what it holds

FIND = '''import os, subprocess, sys, zipfile
from pathlib import Path

ROOT = Path(os.environ.get("KAGGLETOOLS_KAGGLE_ROOT") or "/kaggle")
COMPETITION, RUN, TTA, VERSION = {competition!r}, {run!r}, {tta!r}, {version!r}


def find(pattern, kind):
    """The first match of `pattern` under /kaggle/input, at most four folders deep."""
    for depth in range(4):
        hits = sorted((ROOT / "input").glob("*/" * depth + pattern))
        if hits:
            return hits[0]
    raise SystemExit(f"{{kind}} not found under {{ROOT / 'input'}}: add it to the notebook's inputs")


BUNDLE = find({marker!r}, "the kaggletools bundle (a dataset)").parent
DATA = find(COMPETITION, f"the data of competition {{COMPETITION}}")
print("bundle:", BUNDLE, "| data:", DATA)'''

INSTALL = '''# Install kaggletools and what the image lacks from the bundle's wheels: no index, no internet.
wheels = BUNDLE / "wheels"
if not wheels.is_dir():  # uploaded as wheels.zip and not unpacked by Kaggle
    wheels = ROOT / "temp" / "kaggletools-wheels"
    with zipfile.ZipFile(BUNDLE / "wheels.zip") as z:
        z.extractall(wheels)
subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
                "--quiet", f"kaggletools=={{VERSION}}"], check=True)'''

PREDICT = '''# Predict the test set with the run's TTA; the data folder is read-only, so what it holds packed
# is unpacked under /kaggle/temp; the run folder is read-only too: only the outputs are written.
from kaggletools import api

run = BUNDLE / "run" / RUN
if not run.is_dir():  # uploaded as run.zip and not unpacked by Kaggle
    with zipfile.ZipFile(BUNDLE / "run.zip") as z:
        z.extractall(ROOT / "temp" / "kaggletools-run")
    run = ROOT / "temp" / "kaggletools-run" / RUN
data = api.prepare(COMPETITION, DATA, quiet=True)
out = ROOT / "working" / "submission.csv"
csv = api.predict(run, data, tta=TTA, out=out, overwrite=True, progress=False)
api.validate(COMPETITION, csv, data)
print(f"{{csv}}: valid")'''


def cells(competition: str, run: str, tta: str, version: str) -> list[str]:
    """The notebook's code cells, in order."""
    values = dict(competition=competition, run=run, tta=tta, version=version, marker=MARKER)
    return [FIND.format(**values), INSTALL.format(**values), PREDICT.format(**values)]


def write(folder: Path, *, competition: str, run: str, tta: str, version: str, kernel: str, dataset: str) -> Path:
    """`folder`/inference.ipynb and its kernel-metadata.json (GPU on, internet off, the competition
    and the bundle's dataset as inputs); returns the notebook."""
    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(
        f"# {competition}: inference with kaggletools\n\nRun `{run}` with TTA `{tta}`, from the dataset "
        f"`{dataset}` (made by `kaggletools bundle`). Writes `/kaggle/working/submission.csv`.")]
    nb.cells += [nbformat.v4.new_code_cell(code) for code in cells(competition, run, tta, version)]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    path = folder / "inference.ipynb"
    nbformat.write(nb, str(path))
    meta = {"id": kernel, "title": kernel.split("/", 1)[1].replace("-", " "), "code_file": path.name,
            "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
            "enable_internet": False, "dataset_sources": [dataset], "competition_sources": [competition],
            "kernel_sources": [], "model_sources": []}
    (folder / "kernel-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def code(path: Path) -> str:
    """The code cells of a notebook, as one script (how the test runs it without Jupyter)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")
