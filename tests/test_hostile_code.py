"""The surfaces of issue 18 against hostile and unlucky input (issue 20, round three, own round):
(a) `kaggletools bundle` and the notebook and metadata it writes; (b) Kaggle notebooks as a place:
read-only data folders, their mirror in the work folder; (c) competitions inferred from a folder
and the module `kaggletools new` writes. Text from a run folder, a data folder or the command line
never breaks (or injects into) the generated Python and JSON (checked by parsing them); every
refusal is one line naming the file or folder and the fix; nothing is written outside the temporary
folders and nothing partial is left. Run folders here are fake (config.json and a model.pt of a few
bytes): `bundle` with wheels off reads nothing else."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kaggletools import api
from kaggletools.cli.app import main as cli
from kaggletools.competition import fixtures
from kaggletools.errors import CompetitionError, RunError
from kaggletools.io import mirror
from kaggletools.steps import notebook, workspace

REDUX = "dogs-vs-cats-redux-kernels-edition"
EVIL = '"); import os; os.system("touch PWNED") #'
IDS = dict(dataset="someone/a-bundle", kernel="someone/an-inference")


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _fake_run(folder: Path, config: dict | None = None, versions: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or {"competition": REDUX, "recipe": {"tta": "flip"}}))
    (folder / "model.pt").write_bytes(b"weights")
    if versions is not None:
        (folder / "versions.json").write_text(json.dumps(versions))
    return folder


def _bundle(run: Path, to: Path, **kw) -> Path:
    return api.bundle(run, to, wheels=False, quiet=True, **{**IDS, **kw})


def _cells(folder: Path) -> list[ast.Module]:
    nb = json.loads((folder / "notebook" / "inference.ipynb").read_text())
    return [ast.parse("".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]


def _constants(folder: Path) -> tuple:
    """The values the notebook's first cell assigns to COMPETITION, RUN, TTA, VERSION."""
    for node in _cells(folder)[0].body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple) and \
                [t.id for t in node.targets[0].elts] == ["COMPETITION", "RUN", "TTA", "VERSION"]:
            return ast.literal_eval(node.value)
    raise AssertionError("no COMPETITION, RUN, TTA, VERSION line")


def _imports(folder: Path) -> set[str]:
    names = set()
    for tree in _cells(folder):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names.add(node.module)
    return names


def _no_leftovers(parent: Path) -> None:
    assert not [p.name for p in Path(parent).iterdir() if p.name.startswith(".") or "partial" in p.name]


# == (a) bundle ====================================================================================
def test_bundle_of_a_run_named_with_quotes_and_newlines_stays_valid_python_and_json(tmp_path):
    name = "run'\"\n\\N{x}" + '"""' + EVIL
    run = _fake_run(tmp_path / "runs" / name, {"competition": REDUX, "recipe": {"tta": "flip"}},
                    {"kaggletools": "1.2.3"})
    folder = _bundle(run, tmp_path / "b")
    assert _constants(folder) == (REDUX, name, "flip", "1.2.3")
    assert _imports(folder) == {"os", "subprocess", "sys", "zipfile", "pathlib", "kaggletools"}
    meta = json.loads((folder / "notebook" / "kernel-metadata.json").read_text())
    assert meta["competition_sources"] == [REDUX] and meta["enable_internet"] is False
    assert json.loads((folder / notebook.MARKER).read_text())["run"] == name
    assert not (tmp_path / "PWNED").exists()


def test_bundle_tta_from_a_tampered_config_cannot_inject_code(tmp_path):
    run = _fake_run(tmp_path / "r", {"competition": REDUX, "recipe": {"tta": EVIL}})
    with pytest.raises(RunError, match="config.json.*tta"):
        _bundle(run, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("slug", ['x"); import os #', "../../etc", "a\nb", "*", "", "a/b"])
def test_bundle_refuses_a_competition_slug_that_is_not_one(tmp_path, slug):
    run = _fake_run(tmp_path / "r", {"competition": slug, "recipe": {}})
    with pytest.raises(RunError, match=r"config\.json.*competition"):
        _bundle(run, tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


@pytest.mark.parametrize("config", [{"recipe": {}}, {"competition": ["a"]}, {"competition": 7}])
def test_bundle_of_a_config_without_a_competition_name_is_one_error(tmp_path, config):
    run = _fake_run(tmp_path / "r", config)
    with pytest.raises(RunError, match=r"config\.json"):
        _bundle(run, tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_bundle_version_from_a_tampered_versions_json_is_refused(tmp_path):
    run = _fake_run(tmp_path / "r", versions={"kaggletools": "1.0 --index-url http://evil.example/"})
    with pytest.raises(RunError, match=r"versions\.json.*kaggletools"):
        _bundle(run, tmp_path / "b")
    run2 = _fake_run(tmp_path / "r2", versions={"kaggletools": {"x": 1}})
    with pytest.raises(RunError, match=r"versions\.json"):
        _bundle(run2, tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("ident", ["noslash", "a/b/c", 'a/b"\n', "../x/y", "a/"])
def test_bundle_refuses_dataset_and_kernel_ids_that_are_not_owner_slash_slug(tmp_path, ident):
    run = _fake_run(tmp_path / "r")
    for field in ("dataset", "kernel"):
        with pytest.raises(RunError, match=f"--{field}"):
            _bundle(run, tmp_path / "b", **{field: ident})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_bundle_into_a_file_is_refused_even_with_overwrite(tmp_path, capsys):
    run = _fake_run(tmp_path / "r")
    (tmp_path / "f").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        assert cli(["bundle", str(run), "-p", str(tmp_path / "f"), "--no-wheels", "--dataset", IDS["dataset"],
                    "--kernel", IDS["kernel"], *extra]) == 1
        assert str(tmp_path / "f") in _one_line(capsys)
    assert (tmp_path / "f").read_text() == "keep me"
    _no_leftovers(tmp_path)


def test_bundle_overwrite_replaces_bundles_only_not_any_folder(tmp_path):
    run = _fake_run(tmp_path / "r")
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(RunError, match="not a bundle"):
        _bundle(run, mine, overwrite=True)
    assert (mine / "holiday.jpg").read_bytes() == b"precious"
    first = _bundle(run, tmp_path / "b")
    assert _bundle(run, first, overwrite=True) == first  # a bundle is replaced
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("where", ["inside", "itself", "above"])
def test_bundle_inside_or_around_its_own_run_folder_is_refused(tmp_path, where):
    run = _fake_run(tmp_path / "runs" / "r")
    target = {"inside": run / "bundle", "itself": run, "above": tmp_path / "runs"}[where]
    with pytest.raises(RunError, match="run folder"):
        _bundle(run, target, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.pt"]


def test_bundle_does_not_carry_a_link_out_of_the_run_folder(tmp_path):
    secret = tmp_path / "kaggle.json"
    secret.write_text('{"key": "SECRET"}')
    run = _fake_run(tmp_path / "r")
    (run / "notes.txt").symlink_to(secret)
    with pytest.raises(RunError, match="notes.txt"):
        _bundle(run, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    _no_leftovers(tmp_path)


def test_bundle_does_not_copy_a_weights_file_a_tampered_config_names(tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    run = _fake_run(tmp_path / "r", {"competition": REDUX, "recipe": {},
                                     "backbone": {"weights": "x", "weights_file": str(secret)}})
    folder = _bundle(run, tmp_path / "b")
    assert not any("PRIVATE KEY" in p.read_text(errors="ignore") for p in folder.rglob("*") if p.is_file())


def test_bundle_into_a_place_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    run = _fake_run(tmp_path / "r")
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    assert cli(["bundle", str(run), "-p", str(tmp_path / "ro" / "b"), "--no-wheels", "--dataset", IDS["dataset"],
                "--kernel", IDS["kernel"]]) == 1
    line = _one_line(capsys)
    assert "Read-only" in line and str(tmp_path / "ro") in line


def test_bundle_of_an_unfinished_or_damaged_run_is_refused(tmp_path):
    run = _fake_run(tmp_path / "r")
    (run / "model.pt").unlink()
    with pytest.raises(RunError, match="not a finished run"):
        _bundle(run, tmp_path / "b")
    (run / "model.pt").write_bytes(b"w")
    (run / "config.json").write_text("[1, 2")
    with pytest.raises(RunError, match="config.json"):
        _bundle(run, tmp_path / "b")
    assert not (tmp_path / "b").exists()


# == (b) read-only data folders and their mirror ===================================================
@pytest.fixture
def read_only(monkeypatch):
    """Folders marked read-only for the writability probe (tests run as root: chmod stops nothing)."""
    from kaggletools.io import places

    marked: list[Path] = []
    probe = places.writable
    monkeypatch.setattr(places, "writable", lambda f: not any(
        Path(f).absolute() == m or m in Path(f).absolute().parents for m in marked) and probe(f))
    return lambda folder: marked.append(Path(folder).absolute()) or folder


def _ro_folder(tmp_path: Path, *names: str) -> Path:
    src = tmp_path / "input" / "comp"
    src.mkdir(parents=True)
    for n in names:
        (src / n).write_text(n)
    return src


def test_mirror_follows_its_source_files_added_and_removed(tmp_path):
    src = _ro_folder(tmp_path, "a.csv", "b.csv")
    m = mirror.mirror(src, tmp_path / "work")
    (src / "c.csv").write_text("c")
    (src / "a.csv").unlink()
    m = mirror.mirror(src, tmp_path / "work")
    assert sorted(p.name for p in m.iterdir() if not p.name.startswith(".")) == ["b.csv", "c.csv"]
    assert (m / "c.csv").read_text() == "c"


def test_mirror_of_a_source_with_links_out_and_in_a_loop_neither_hangs_nor_writes_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    src = _ro_folder(tmp_path, "a.csv")
    (src / "out").symlink_to(outside, target_is_directory=True)
    (src / "loop").symlink_to(src / "loop")
    (src / "self").symlink_to(src, target_is_directory=True)
    m = mirror.mirror(src, tmp_path / "work")
    m = mirror.mirror(src, tmp_path / "work")  # again: nothing removed or doubled
    assert {p.name for p in m.iterdir()} >= {"a.csv", "out", "self"}
    assert not list(outside.iterdir())


def test_a_work_folder_that_is_a_file_is_one_line_naming_it(tmp_path, read_only):
    src = read_only(_ro_folder(tmp_path, "train.zip"))
    work = tmp_path / "work"
    work.write_text("not a folder")
    with pytest.raises(OSError, match="--work"):
        workspace.writable_folder(src, work)
    assert work.read_text() == "not a folder"


def test_a_mirror_place_taken_by_a_file_is_one_line(tmp_path):
    src = _ro_folder(tmp_path, "a.csv")
    where = mirror.location(src, tmp_path / "work")
    where.parent.mkdir()
    where.write_text("x")
    with pytest.raises(OSError, match=str(where)):
        mirror.mirror(src, tmp_path / "work")


def test_a_read_only_work_folder_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(OSError, match="--work DIR"):
        mirror.mirror(_ro_folder(tmp_path, "a.csv"), Path("/proc/self/kaggletools-work"))


def test_a_hostile_archive_in_a_read_only_folder_is_refused_and_writes_nothing_outside(tmp_path, read_only):
    src = read_only(_ro_folder(tmp_path))
    fixtures.write_zip(src / "train.zip", {"../escaped.txt": b"x", "train/a.jpg": b"y"})
    fixtures.write_zip(src / "test.zip", {"/abs-escaped.txt": b"x"})
    work = tmp_path / "work"
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises((CompetitionError, OSError, ValueError), match=r"\.\./escaped|escaped|outside|unsafe"):
        api.prepare(REDUX, src, quiet=True, work=work)
    after = {str(p) for p in tmp_path.rglob("*")} - set(before)
    assert not [p for p in after if "escaped" in p]
    assert all(p.startswith(str(work)) for p in after), after


def test_a_read_only_source_that_is_a_file_or_missing_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for data in (tmp_path / "f", tmp_path / "missing"):
        with pytest.raises(CompetitionError, match=str(data)):
            api.prepare(REDUX, data, quiet=True, work=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_two_read_only_folders_of_one_name_get_their_own_mirrors(tmp_path):
    a = tmp_path / "one" / "comp"
    b = tmp_path / "two" / "comp"
    for f, n in ((a, "a.csv"), (b, "b.csv")):
        f.mkdir(parents=True)
        (f / n).write_text(n)
    ma, mb = mirror.mirror(a, tmp_path / "work"), mirror.mirror(b, tmp_path / "work")
    assert ma != mb and (ma / "a.csv").exists() and not (ma / "b.csv").exists()
    assert json.loads((ma / mirror.NOTE).read_text())["mirror_of"] == str(a)


def test_a_source_holding_a_fake_mirror_note_does_not_redirect_the_mirror(tmp_path):
    src = _ro_folder(tmp_path, "a.csv")
    (src / mirror.NOTE).write_text(json.dumps({"mirror_of": "/etc"}))
    m = mirror.mirror(src, tmp_path / "work")
    assert not (m / mirror.NOTE).is_symlink()
    assert json.loads((m / mirror.NOTE).read_text())["mirror_of"] == str(src)


def test_mirror_keeps_what_was_unpacked_and_entries_with_odd_names(tmp_path):
    src = _ro_folder(tmp_path, "we'ird \"name\".csv", "new\nline.csv", "-rf")
    m = mirror.mirror(src, tmp_path / "work")
    (m / "train").mkdir()  # unpacked from an archive
    (m / "train" / "x.jpg").write_bytes(b"x")
    m = mirror.mirror(src, tmp_path / "work")
    assert (m / "train" / "x.jpg").is_file()
    assert (m / "new\nline.csv").read_text() == "new\nline.csv" and (m / "-rf").is_file()


# == (c) inferred competitions and `new` ===========================================================
def _image(rng, k=0) -> bytes:
    return fixtures.encode(fixtures.class_image(k, 3, rng, side=24), "PNG")


def _folders_data(root: Path, classes: list[str], n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        (root / "train" / c).mkdir(parents=True)
        for i in range(n):
            (root / "train" / c / f"{c[:3].encode().hex()}{i}.png").write_bytes(_image(rng, k % 3))
    return root


def _csv_data(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for i in range(n):
        (root / "train" / f"img{i}.png").write_bytes(_image(rng, i % 2))
    return root


def _module(path: Path) -> ast.Module:
    tree = ast.parse(path.read_text())
    calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert not [c for c in calls if isinstance(c, ast.Attribute) and c.attr == "system"]
    return tree


def _classes_of(tree: ast.Module) -> tuple:
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CLASSES":
            return ast.literal_eval(node.value)
    raise AssertionError("no CLASSES")


def test_new_with_class_folders_named_to_inject_code_writes_a_module_that_holds_them_as_text(tmp_path):
    names = [EVIL, "a'b\"c", "tab\tand\\N{x}", '"""doc']
    data = _folders_data(tmp_path / "d", names)
    out = api.new("my-comp", data, out=tmp_path / "m.py", show=False)
    assert sorted(_classes_of(_module(out))) == sorted(names)
    assert not (tmp_path / "PWNED").exists()


def test_new_with_file_names_that_would_close_the_docstring_stays_valid_python(tmp_path):
    data = _csv_data(tmp_path / "d")
    labels = 'labels"""; import os; os.system("x"); """\\N.csv'
    pd.DataFrame({"id": [f"img{i}" for i in range(6)], "label": ["cat", "dog"] * 3}).to_csv(data / labels,
                                                                                            index=False)
    out = api.new("my-comp", data, out=tmp_path / "m.py", show=False)
    tree = _module(out)
    assert labels in ast.get_docstring(tree)
    assert _classes_of(tree) == ("cat", "dog")


@pytest.mark.parametrize("slug", ['x"""; import os #', "../../evil", "a/b", "a\nb", "", "."])
def test_new_and_inference_refuse_a_slug_that_is_not_a_slug(tmp_path, slug):
    data = _folders_data(tmp_path / "d", ["cat", "dog"])
    with pytest.raises(CompetitionError, match="slug"):
        api.new(slug, data, out=tmp_path / "m.py", show=False)
    assert not (tmp_path / "m.py").exists() and not list(tmp_path.glob("*.py"))
    assert not (tmp_path.parent / "evil.py").exists()


def test_labels_with_spaces_commas_and_control_characters_stay_literal(tmp_path):
    data = _csv_data(tmp_path / "d")
    names = ["big cat", "dog, small", "bell\x07"] * 2
    pd.DataFrame({"id": [f"img{i}" for i in range(6)], "label": names}).to_csv(data / "labels.csv", index=False)
    out = api.new("my-comp", data, out=tmp_path / "m.py", show=False, task="multiclass")
    assert set(_classes_of(_module(out))) == {"big cat", "dog, small", "bell\x07"}


@pytest.mark.parametrize("content", [b"", b"\x00\x01\xff\xfe junk \x00\n\x89PNG", b"\xef\xbb\xbf"])
def test_an_empty_or_binary_label_file_is_one_line_naming_it(tmp_path, content):
    data = _csv_data(tmp_path / "d")
    (data / "labels.csv").write_bytes(content)
    with pytest.raises(CompetitionError, match="labels.csv"):
        api.new("my-comp", data, out=tmp_path / "m.py", show=False, labels="labels.csv")
    assert not (tmp_path / "m.py").exists()


def test_a_label_file_with_a_bom_is_read(tmp_path):
    data = _csv_data(tmp_path / "d")
    text = "id,label\n" + "".join(f"img{i},{'cat' if i % 2 else 'dog'}\n" for i in range(6))
    (data / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    spec = api.new("my-comp", data, out=tmp_path / "m.py", show=False)
    tree = _module(spec)
    assert _classes_of(tree) == ("cat", "dog") and "\ufeff" not in spec.read_text()


def test_duplicate_ids_in_the_label_file_are_one_line(tmp_path):
    data = _csv_data(tmp_path / "d", n=12)
    ids = [f"img{i}" for i in range(12)] + ["img0"]
    pd.DataFrame({"id": ids, "label": ["cat", "dog"] * 6 + ["dog"]}).to_csv(data / "labels.csv", index=False)
    comp = api.new("my-comp", data, out=tmp_path / "m.py", show=False)  # the module is written ...
    import kaggletools.competition.infer as infer
    import kaggletools.competition.inferred as inferred

    built = inferred.build(infer.infer("my-comp", data))
    with pytest.raises(CompetitionError, match="labels.csv.*duplicate"):  # ... reading the items refuses
        built.items(data, "train")
    assert comp.is_file()


def test_a_label_file_of_thousands_of_columns_is_a_short_message(tmp_path):
    data = _csv_data(tmp_path / "d")
    wide = pd.DataFrame({"id": [f"img{i}" for i in range(6)]})
    wide = pd.concat([wide, pd.DataFrame({f"col{j}": [f"v{j}-{i}" for i in range(6)] for j in range(3000)})], axis=1)
    wide.to_csv(data / "labels.csv", index=False)
    with pytest.raises(CompetitionError, match="labels.csv") as e:
        api.new("my-comp", data, out=tmp_path / "m.py", show=False)
    assert len(str(e.value)) < 600, len(str(e.value))


def test_empty_labels_are_not_a_class_named_nan(tmp_path):
    data = _csv_data(tmp_path / "d")
    pd.DataFrame({"id": [f"img{i}" for i in range(6)], "label": ["cat", "dog", "", "cat", "dog", np.nan]}).to_csv(
        data / "labels.csv", index=False)
    import kaggletools.competition.infer as infer

    spec = infer.infer("my-comp", data)
    assert "nan" not in spec.classes and "" not in spec.classes


def test_ids_with_path_separators_never_reach_outside_the_image_folder(tmp_path):
    data = _csv_data(tmp_path / "d", n=10)
    (tmp_path / "d" / "secret.png").write_bytes(_image(np.random.default_rng(1)))
    ids = [f"img{i}" for i in range(10)] + ["../secret", "../../d/secret", "/etc/passwd"]
    pd.DataFrame({"id": ids, "label": ["cat", "dog"] * 6 + ["cat"]}).to_csv(data / "labels.csv", index=False)
    import kaggletools.competition.infer as infer
    import kaggletools.competition.inferred as inferred

    comp = inferred.build(infer.infer("my-comp", data))
    try:
        items = comp.items(data, "train")
    except CompetitionError as e:
        assert "labels.csv" in str(e)
    else:
        assert all(Path(s).resolve().parent == (data / "train").resolve() for s in items["source"])


def _run_module(path: Path, monkeypatch, folder: Path):
    """Execute a module `new` wrote (its register a no-op: the registry stays as it is) and write its
    fixture download into `folder`; returns the competition."""
    import kaggletools.competition as plugin_api

    monkeypatch.setattr(plugin_api, "register", lambda *a, **k: (lambda cls: cls))
    namespace: dict = {"__name__": "generated"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    (cls,) = [v for v in namespace.values() if isinstance(v, type) and v.__module__ == "generated"]
    comp = cls()
    comp.make_fixture(folder, n_train=8, n_test=4)
    return comp


def test_new_with_a_train_folder_named_like_code_writes_a_fixture_laid_out_as_named(tmp_path, monkeypatch):
    root = tmp_path / "d"
    train = 'train"{os.getcwd()}\'+x+\''
    _folders_data(root, ["cat", "dog"])
    (root / "train").rename(root / train)
    out = api.new("my-comp", root, out=tmp_path / "m.py", show=False)
    _module(out)
    _run_module(out, monkeypatch, tmp_path / "fixture")
    assert sorted(p.name for p in (tmp_path / "fixture").iterdir()) == sorted([f"{train}.zip", "test.zip"])
    assert not (tmp_path / "PWNED").exists()


def test_the_module_of_hostile_class_names_runs_and_keeps_them(tmp_path, monkeypatch):
    names = [EVIL, "a'b\"c", "{x}"]
    out = api.new("my-comp", _folders_data(tmp_path / "d", names), out=tmp_path / "m.py", show=False)
    comp = _run_module(out, monkeypatch, tmp_path / "fixture")
    assert sorted(comp.classes) == sorted(names)
    import zipfile

    with zipfile.ZipFile(tmp_path / "fixture" / "train.zip") as z:
        assert {n.split("/")[1] for n in z.namelist()} <= set(names)
    assert not (tmp_path / "PWNED").exists()


def test_a_sample_submission_with_hostile_column_names_reaches_the_module_as_text(tmp_path, monkeypatch):
    import csv

    names = [EVIL, "b\\N"]
    data = _folders_data(tmp_path / "d", names)
    (data / "test").mkdir()
    (data / "test" / "t0.png").write_bytes(_image(np.random.default_rng(2)))
    with open(data / "sample_submission.csv", "w", newline="") as f:
        csv.writer(f).writerows([['i"d\\', *names], ["t0", 0.5, 0.5]])
    out = api.new("my-comp", data, out=tmp_path / "m.py", show=False)
    tree = _module(out)
    assert _classes_of(tree) == tuple(names)
    comp = _run_module(out, monkeypatch, tmp_path / "fixture")
    assert comp.id_column == 'i"d\\'
    assert pd.read_csv(tmp_path / "fixture" / "sample_submission.csv").columns.tolist() == ['i"d\\', *names]


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


def test_a_planted_unpack_record_in_a_read_only_folder_changes_nothing_there(tmp_path, read_only):
    from kaggletools.unpack import archives

    class Unpacks:
        def prepare(self, folder):
            archives.extract_all(folder, progress=False)

    src = read_only(_ro_folder(tmp_path))
    fixtures.write_zip(src / "train.zip", {"train/a.jpg": b"from the archive"})
    (src / "train").mkdir()
    (src / "train" / "mine.jpg").write_bytes(b"the source's own")
    (src / archives.RECORD).write_text(json.dumps({"train.zip": {"sig": {}, "outputs": ["train", "../../x"],
                                                                 "kept": []}, "junk": [1]}))
    before = _tree(src)
    folder = workspace.prepare(Unpacks(), src, quiet=True, work=tmp_path / "work")
    assert _tree(src) == before
    assert (folder / "train" / "a.jpg").read_bytes() == b"from the archive"
    assert not (folder / archives.RECORD).is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input", "work"]


def test_bundle_of_a_blend_folder_without_weights_is_refused_naming_model_pt(tmp_path):
    blend = tmp_path / "blend"
    blend.mkdir()
    (blend / "config.json").write_text(json.dumps({"competition": REDUX, "blend": {"runs": []}}))
    (blend / "report.json").write_text("{}")
    with pytest.raises(RunError, match="model.pt"):
        _bundle(blend, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    _no_leftovers(tmp_path)
