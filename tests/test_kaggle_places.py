"""Kaggle notebooks as a place (issue 18, part 1): the Kaggle environment detected under a fake
/kaggle ($KAGGLETOOLS_KAGGLE_ROOT), read-only data folders used in place through an unpacked
mirror in the work folder, and predict from a read-only run folder writing only its outputs.

Tests run as root, for whom chmod does not stop writes: a read-only folder is simulated by
monkeypatching the one writability probe (kaggletools.io.places.writable) for paths under it.
test_kaggle_bundle.py checks the same with a real read-only bind mount (unshare -m)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from kaggletools import api
from kaggletools.cli.app import main
from kaggletools.io import mirror, places
from kaggletools.score import submission

REDUX = "dogs-vs-cats-redux-kernels-edition"
TINY = dict(backbone="resnet18", size=32, batch_size=8, pretrained=False, epochs=1, freeze_epochs=0)


def kaggle_style_input(folder: Path, n_train: int = 16, n_test: int = 6) -> Path:
    """What /kaggle/input/<slug> holds for Dogs vs. Cats redux: train.zip, test.zip, sample_submission.csv."""
    from kaggletools.competition import registry

    download = folder.parent / f"{folder.name}-download"
    registry.get(REDUX).make_fixture(download, n_train=n_train, n_test=n_test, seed=3, side=40)
    folder.mkdir(parents=True)
    with zipfile.ZipFile(download / f"{REDUX}.zip") as z:
        z.extractall(folder)
    return folder


@pytest.fixture
def read_only(monkeypatch):
    """Make folders read-only for kaggletools' writability probe; returns the function that marks one."""
    marked: list[Path] = []
    probe = places.writable

    def writable(folder):
        here = Path(folder).absolute()
        if any(here == m or m in here.parents for m in marked):
            return False
        return probe(folder)

    monkeypatch.setattr(places, "writable", writable)
    return lambda folder: marked.append(Path(folder).absolute())


def test_kaggle_environment_is_detected_under_a_fake_root(tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delenv("KAGGLETOOLS_WORK", raising=False)
    monkeypatch.setenv("KAGGLETOOLS_KAGGLE_ROOT", str(tmp_path / "kaggle"))
    assert not places.on_kaggle() and places.default_submission() is None
    (tmp_path / "kaggle" / "input").mkdir(parents=True)
    assert places.on_kaggle()
    assert places.default_submission() == tmp_path / "kaggle" / "working" / "submission.csv"
    assert places.work_root() == tmp_path / "kaggle" / "temp" / "kaggletools"
    monkeypatch.delenv("KAGGLETOOLS_CACHE")
    assert places.cache_root() == tmp_path / "kaggle" / "temp" / "kaggletools-cache"
    monkeypatch.setenv("KAGGLETOOLS_KAGGLE_ROOT", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert places.on_kaggle()


def test_writable_is_found_by_trying(tmp_path):
    assert places.writable(tmp_path) and places.writable(tmp_path / "not" / "yet")
    assert not places.writable(Path("/proc/self"))  # a file system that refuses new files, even to root
    assert not list(tmp_path.iterdir())  # the probe left nothing


def test_prepare_unpacks_a_read_only_folder_into_its_mirror_and_reuses_it(tmp_path, read_only):
    ro = kaggle_style_input(tmp_path / "input" / REDUX)
    read_only(ro)
    before = sorted(os.listdir(ro))
    work = tmp_path / "work"
    folder = api.prepare(REDUX, ro, quiet=True, work=work)
    assert folder == mirror.location(ro, work) and folder.parent == work
    assert sorted(os.listdir(ro)) == before  # nothing written beside the read-only files
    assert len(list((folder / "train").iterdir())) == 16 and len(list((folder / "test").iterdir())) == 6
    stamp = (folder / "train").stat().st_mtime_ns
    assert api.prepare(REDUX, ro, quiet=True, work=work) == folder
    assert (folder / "train").stat().st_mtime_ns == stamp  # reused, not unpacked again


def test_train_and_predict_on_kaggle_with_read_only_data_and_run(tmp_path, monkeypatch, read_only):
    """A fake Kaggle notebook: data in <root>/input (read-only), train, then predict from the run
    folder made read-only too: the submission lands in <root>/working/submission.csv."""
    root = tmp_path / "kaggle"
    monkeypatch.setenv("KAGGLETOOLS_KAGGLE_ROOT", str(root))
    monkeypatch.delenv("KAGGLETOOLS_WORK", raising=False)
    ro = kaggle_style_input(root / "input" / REDUX)
    read_only(ro)
    (root / "working").mkdir()
    monkeypatch.chdir(root / "working")
    run = api.train(REDUX, ro, runs_dir=Path("runs"), progress=False, **TINY)
    assert run.path.absolute().is_relative_to(root / "working") and places.work_root() == root / "temp" / "kaggletools"
    assert (places.work_root() / mirror.location(ro, places.work_root()).name / "train").is_dir()
    read_only(run.path)
    before = sorted(os.listdir(run.path))
    out = api.predict(run.path, ro, progress=False)
    assert out == root / "working" / "submission.csv"
    assert sorted(os.listdir(run.path)) == before  # the run folder was not written
    assert (root / "working" / "submission.test_predictions.csv").is_file()
    df = submission.read(out)
    assert len(df) == 6 and list(df.columns) == ["id", "label"]
    api.validate(REDUX, out, ro)
    assert api.predict(run.path, ro, progress=False) == out  # the notebook's file is replaced, not refused


def test_cli_prepare_prints_the_folder_to_use_and_takes_work(tmp_path, read_only, capsys):
    ro = kaggle_style_input(tmp_path / "in" / REDUX, n_train=4, n_test=2)
    read_only(ro)
    assert main(["prepare", REDUX, "--data", str(ro), "--work", str(tmp_path / "w"), "-q"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.parent == tmp_path / "w" and (printed / "test").is_dir()


def test_a_work_folder_that_cannot_be_made_says_which_option_to_use(tmp_path, read_only, capsys):
    ro = kaggle_style_input(tmp_path / "in" / REDUX, n_train=4, n_test=2)
    read_only(ro)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["prepare", REDUX, "--data", str(ro), "--work", str(blocker / "w"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "--work DIR" in err and str(ro) in err


def test_cli_on_a_real_read_only_mount_train_run_and_predict(tmp_path):
    """The command line as a Kaggle notebook uses it, with /kaggle/input (and then the run folder)
    mounted read-only for real (`unshare -m`, a read-only bind mount: EROFS even for root)."""
    import shutil
    import subprocess
    import sys

    if not shutil.which("unshare"):
        pytest.skip("needs unshare (util-linux) for a read-only bind mount")
    root = tmp_path / "kaggle"
    ro = kaggle_style_input(root / "input" / REDUX, n_train=16, n_test=6)
    (root / "working").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLETOOLS_WORK")}
    env.update(KAGGLETOOLS_KAGGLE_ROOT=str(root), KAGGLE_KERNEL_RUN_TYPE="Batch")
    tiny = "--backbone resnet18 --size 32 --batch-size 8 --no-pretrained --epochs 1 --freeze-epochs 0 -q"
    kt = f"{sys.executable} -m kaggletools"
    script = (f"mount --bind -o ro {root / 'input'} {root / 'input'} || exit 99; "
              f"touch {ro / 'x'} 2>/dev/null && exit 98; "
              f"{kt} train {REDUX} --data {ro} --runs runs {tiny} && "
              f"{kt} run {REDUX} --data {ro} --runs runs {tiny} --out run-sub.csv")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=root / "working", env=env, capture_output=True,
                          text=True)
    if done.returncode == 99:
        pytest.skip(f"no read-only bind mount here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    run = Path(done.stdout.splitlines()[0])
    assert (root / "working" / run / "model.pt").is_file() and (root / "working" / "run-sub.csv").is_file()
    assert sorted(os.listdir(ro)) == ["sample_submission.csv", "test.zip", "train.zip"]
    assert (root / "temp" / "kaggletools").is_dir()  # the unpacked mirror, on Kaggle under /kaggle/temp
    runs_dir = root / "working" / "runs"
    script = (f"mount --bind -o ro {root / 'input'} {root / 'input'} && mount --bind -o ro {runs_dir} {runs_dir} && "
              f"{kt} predict {root / 'working' / run} --data {ro} -q")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=root / "working", env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(done.stdout.strip()) == root / "working" / "submission.csv"
    api.validate(REDUX, root / "working" / "submission.csv", mirror.location(ro, root / "temp" / "kaggletools"))
    assert (root / "working" / "submission.test_predictions.csv").is_file()  # beside it: the run folder is read-only
