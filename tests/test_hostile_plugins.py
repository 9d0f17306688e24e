"""Competition plugins (the entry-point group `kaggletools.competitions`) that misbehave: exit or
raise anything at import, declare something invalid, take a name already taken, make something
that is not a competition. Each is one warning naming the entry point and its module, and skipped;
the built-ins and every other plugin keep working. Plugins are installed as dist-info folders on
PYTHONPATH and the CLI runs in a subprocess, as a user's would."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOOD = '''
from kaggletools.competition.bases import MultiClassLabel
from kaggletools.competition.registry import register
from kaggletools.competition import layouts


@register("{slug}", "{alias}")
class Plugin(MultiClassLabel):
    title = "{title}"
    classes = ("daisy", "rose")
    files = ("train.zip",)

    def items(self, data_dir, split):
        return layouts.labelled_by_folder(data_dir, "train", self.classes)

    def make_fixture(self, folder, n_train=64, n_test=32, seed=0):
        raise NotImplementedError
'''


def good(slug: str, alias: str, title: str = "A plugin") -> str:
    return GOOD.format(slug=slug, alias=alias, title=title)


HOSTILE = {  # entry point name -> (module body, what the warning says)
    "kt_exits": ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    "kt_exits_quietly": ("raise SystemExit\n", "SystemExit"),
    "kt_base_exception": ("class Odd(BaseException):\n    pass\nraise Odd('odd plugin')\n", "Odd: odd plugin"),
    "kt_generator_exit": ("raise GeneratorExit('gen')\n", "GeneratorExit: gen"),
    "kt_missing_import": ("import kt_no_such_module_anywhere\n", "ModuleNotFoundError"),
    "kt_syntax": ("def broken(:\n", "SyntaxError"),
    "kt_takes_builtin_slug": (good("dogs-vs-cats", "kt-own-alias"),
                              "'dogs-vs-cats' is taken twice: by kaggletools.competitions.dogs_vs_cats"),
    "kt_takes_builtin_alias": (good("kt-fresh-slug", "dogscats"), "'dogscats' is taken twice"),
    "kt_bad_task": (good("kt-bad-task", "kt-bt").replace('classes = ("daisy", "rose")',
                                                          'classes = ("daisy", "rose")\n    task = "nonsense"'),
                    "unknown task 'nonsense'"),
    "kt_bad_kind": (good("kt-bad-kind", "kt-bk").replace('files = ("train.zip",)', 'kind = "video"'),
                    "kind 'video'"),
    "kt_factory_fails": ("from kaggletools.competition.registry import register\n\n"
                         "@register('kt-factory-fails')\ndef make():\n    raise SystemExit('no')\n",
                         "SystemExit: no"),
    "kt_not_a_competition": ("from kaggletools.competition.registry import register\n\n"
                             "@register('kt-not-a-comp')\ndef make():\n    return 42\n", "made a int"),
    "kt_bad_name": ("from kaggletools.competition.registry import register\n\n"
                    "@register('kt-bad\\x1b[2Jname')\nclass X:\n    pass\n", "must be a printable"),
    "kt_hijacks": ("from kaggletools.competition import registry\n\n"
                   "registry._REGISTRY['dogs-vs-cats'] = registry._REGISTRY['dogs-vs-cats-redux-kernels-edition']\n",
                   "replaced what others registered ('dogs-vs-cats')"),
    "kt_bad_metric_name": (good("kt-bad-metric", "kt-bm").replace('files = ("train.zip",)', 'metric_name = ""'),
                           "metric_name must be a non-empty string"),
    "kt_bad_direction": (good("kt-bad-direction", "kt-bd").replace('files = ("train.zip",)',
                                                                    'greater_is_better = "yes"'),
                         "greater_is_better must be True or False"),
    "kt_files_a_string": (good("kt-files-string", "kt-fs").replace('files = ("train.zip",)', 'files = "train.zip"'),
                          "files must be a tuple of file names"),
    "kt_half_registered": (good("kt-half", "kt-half-alias") + "\nraise RuntimeError('after registering')\n",
                           "after registering"),
}


def _install(root: Path, module: str, body: str, entry: str | None = None, value: str | None = None) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[kaggletools.competitions]\n{entry or module} = {value or module}\n")


def _cli(root: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "kaggletools", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}  # the registered ones are listed
    env.update(PYTHONPATH=str(root), KAGGLE_CONFIG_DIR=str(root / "no-kaggle-credentials"))
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Path:
    """Every hostile plugin of HOSTILE plus two good ones (the first also claims the second's slug
    through another package, which is refused) and an entry point naming a missing attribute."""
    root = tmp_path_factory.mktemp("plugins")
    for module, (body, _) in HOSTILE.items():
        _install(root, module, body)
    _install(root, "kt_good", good("kt-good", "kt-good-alias", "Good plugin"))
    _install(root, "kt_rival", good("kt-good", "kt-rival-alias"))  # the same slug from another package
    _install(root, "kt_attr", "x = 1\n", value="kt_attr:no_such_attribute")
    return root


@pytest.fixture(scope="module")
def listed(crowd) -> subprocess.CompletedProcess:
    return _cli(crowd, "competitions")


def test_the_crowd_still_lists_the_builtins_and_the_good_plugin(listed):
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert {"dogs-vs-cats", "dogs-vs-cats-redux-kernels-edition", "planet-understanding-the-amazon-from-space",
            "kt-good"} <= names
    assert "Traceback" not in listed.stderr


@pytest.mark.parametrize("module", sorted(HOSTILE))
def test_each_hostile_plugin_is_one_warning_naming_it_and_skipped(listed, module):
    said = HOSTILE[module][1]
    lines = [line for line in listed.stderr.splitlines() if f"'{module}' (module {module})" in line]
    assert len(lines) == 1, listed.stderr
    assert lines[0].startswith("warning: competition plugin") and "skipped" in lines[0] and said in lines[0], lines[0]
    assert "\x1b" not in lines[0]


def test_nothing_of_a_skipped_plugin_stays_registered(listed):
    for name in ("kt-half", "kt-half-alias", "kt-bad-task", "kt-bad-kind", "kt-factory-fails", "kt-not-a-comp",
                 "kt-fresh-slug", "kt-own-alias"):
        assert name not in listed.stdout, name


def test_a_slug_taken_by_two_plugins_names_both_owners(listed):
    """Whichever of the two loads first keeps the slug; the other is refused naming both."""
    lines = [line for line in listed.stderr.splitlines() if "'kt_rival'" in line or "'kt_good'" in line]
    assert len(lines) == 1, listed.stderr
    assert "'kt-good' is taken twice: by kt_" in lines[0] and "kt_good.Plugin" in lines[0] \
        and "kt_rival.Plugin" in lines[0]
    kept = "kt-rival-alias" if "'kt_good'" in lines[0] else "kt-good-alias"
    lost = "kt-good-alias" if kept == "kt-rival-alias" else "kt-rival-alias"
    assert kept in listed.stdout and lost not in listed.stdout


def test_a_missing_attribute_in_an_entry_point_is_skipped(listed):
    assert any("'kt_attr' (module kt_attr:no_such_attribute)" in line and "AttributeError" in line
               for line in listed.stderr.splitlines()), listed.stderr


def test_builtins_keep_their_names_and_verbs_work_beside_the_crowd(crowd, tmp_path):
    code = ("import warnings; warnings.simplefilter('ignore')\n"
            "from kaggletools.competition import registry\n"
            "print(registry.get('dogscats').slug, registry.get('dogs-vs-cats').slug, registry.get('kt-good').slug,"
            " type(registry.get('dogs-vs-cats')).__module__)")
    out = _cli(crowd, code=code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["dogs-vs-cats-redux-kernels-edition", "dogs-vs-cats", "kt-good",
                                  "kaggletools.competitions.dogs_vs_cats"]
    check = _cli(crowd, "validate", "dogscats", str(tmp_path / "none.csv"))
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert check.stderr.strip().splitlines()[-1].startswith("error:") and "none.csv" in check.stderr


def test_what_a_plugin_prints_at_import_stays_out_of_the_listing(tmp_path):
    _install(tmp_path, "kt_chatty", good("kt-chatty", "kt-chatty-alias") + "\nprint('hello from a plugin')\n")
    out = _cli(tmp_path, "competitions", "-v")
    assert out.returncode == 0 and "hello from a plugin" in out.stderr and "hello" not in out.stdout, out
    listed = [line.split(",")[0] for line in out.stdout.splitlines() if not line.startswith("note:")]
    assert "kt-chatty" in listed and listed[0] == "slug"


def test_a_plugin_interrupted_at_import_stops_the_program(tmp_path):
    """Ctrl-C while a plugin imports is the user's, not the plugin's: it is not swallowed."""
    _install(tmp_path, "kt_ctrl_c", "raise KeyboardInterrupt\n")
    out = _cli(tmp_path, "competitions")
    assert out.returncode == 130 and "interrupted" in out.stderr and "Traceback" not in out.stderr


def test_a_plugin_title_with_control_characters_is_listed_escaped(tmp_path):
    _install(tmp_path, "kt_loud", good("kt-loud", "kt-loud-alias", "Loud\\x1b[2J\\x1b[31m title"))
    out = _cli(tmp_path, "competitions")
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.lstrip().startswith("kt-loud"))
    assert "\x1b" not in out.stdout and "Loud\\x1b[2J" in line


def test_registering_a_taken_name_in_process_is_refused_and_changes_nothing():
    from kaggletools.competition import registry
    from kaggletools.errors import CompetitionError

    registry.discover()
    before = (dict(registry._REGISTRY), dict(registry._ALIASES))

    class Usurper:
        pass

    for names in (("dogs-vs-cats",), ("kt-new", "dogscats"), ("kt-new", "kt-new")):
        with pytest.raises(CompetitionError, match="taken twice|twice"):
            registry.register(*names)(Usurper)
    for bad in ("", " padded", "tab\there", 7):
        with pytest.raises(CompetitionError, match="printable"):
            registry.register(bad)
    assert (dict(registry._REGISTRY), dict(registry._ALIASES)) == before
    assert registry.get("dogs-vs-cats").slug == "dogs-vs-cats"
