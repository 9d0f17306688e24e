"""Precision per device, without a GPU: `--amp auto` picks bf16 on cards of compute capability 8.0
and up, fp16 with a gradient scaler below (T4, V100, P100), bf16 or off on the CPU; the scaler
really scales in fp16 (it runs on the CPU in current torch) and skips steps with inf/NaN
gradients; bf16 and off do not scale; the scaler's state goes through the Learner's checkpoint;
under torchrun each process takes the GPU of its LOCAL_RANK."""
from __future__ import annotations

import io

import pytest
import torch

from kaggletools.competition import registry as competition
from kaggletools.model import device
from kaggletools.model.dist import Dist

REDUX = "dogs-vs-cats-redux-kernels-edition"
CUDA = torch.device("cuda")  # only a name: nothing here runs on it


def _fake_card(monkeypatch, capability):
    """torch.cuda.get_device_capability answers `capability` (per index when a dict)."""
    def answer(dev=None):
        index = torch.device(dev).index if dev is not None else None
        return capability[index or 0] if isinstance(capability, dict) else capability
    monkeypatch.setattr(torch.cuda, "get_device_capability", answer)


@pytest.mark.parametrize("capability,expected", [
    ((6, 0), "fp16"),   # P100 (Kaggle)
    ((7, 0), "fp16"),   # V100
    ((7, 5), "fp16"),   # T4 (Kaggle, two of them)
    ((8, 0), "bf16"),   # A100
    ((8, 6), "bf16"),   # RTX 30xx
    ((8, 9), "bf16"),   # L4, RTX 40xx
    ((9, 0), "bf16"),   # H100, H200
])
def test_auto_precision_follows_the_cards_compute_capability(monkeypatch, capability, expected):
    _fake_card(monkeypatch, capability)
    assert device.choose_precision(CUDA) == expected
    assert device.choose_precision(torch.device("cuda", 0), "auto") == expected
    assert device.precision_rule("cuda", capability) == expected
    for mode in ("bf16", "fp16", "off"):  # an explicit mode is used as given
        assert device.choose_precision(CUDA, mode) == mode


def test_auto_precision_on_the_cpu_and_mps(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert device.choose_precision(torch.device("cpu")) == "bf16"
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert device.choose_precision(torch.device("cpu")) == "off"
    assert device.choose_precision(torch.device("mps")) == "off"
    assert device.precision_rule("mps", cpu_bf16=True) == "off"
    with pytest.raises(ValueError, match="capability"):
        device.precision_rule("cuda")


def test_fused_adamw_on_cuda_only():
    assert device.optimizer_options(CUDA) == {"fused": True}
    assert device.optimizer_options(torch.device("cpu")) == {}
    p = torch.nn.Parameter(torch.ones(2))
    # the scaler hands the inf check to such an optimizer instead of reading found_inf back (.item())
    assert getattr(torch.optim.AdamW([p], fused=True), "_step_supports_amp_scaling", False)


def _toy(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    return model, torch.randn(8, 4)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("fused", [False, True])
def test_fp16_scales_the_loss_and_skips_steps_with_inf_or_nan_gradients(fused):
    precision = device.Precision(torch.device("cpu"), "fp16")
    assert precision.scaling
    model, x = _toy()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, fused=fused)
    loss = model(x).pow(2).mean()
    assert precision.scaler.scale(loss).item() == pytest.approx(loss.item() * precision.scaler.get_scale())
    assert precision.scaler.get_scale() > 1

    before = _params(model)
    precision.backward_step(model(x).pow(2).mean(), opt)  # finite: a step, the scale stays
    after = _params(model)
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    scale = precision.scaler.get_scale()
    assert scale == 65536.0

    # the step used unscaled gradients: the same update as a plain fp32 AdamW step
    ref, _ = _toy()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=0.1)
    ref_opt.zero_grad()
    ref(x).pow(2).mean().backward()
    ref_opt.step()
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(after, _params(ref)))

    for bad in (float("inf"), float("nan")):
        opt.zero_grad(set_to_none=True)
        precision.backward_step(model(x).pow(2).mean() * bad, opt)  # skipped, scale halved
        assert all(torch.equal(a, b) for a, b in zip(after, _params(model)))
        assert precision.scaler.get_scale() == scale / 2
        scale /= 2
    opt.zero_grad(set_to_none=True)
    precision.backward_step(model(x).pow(2).mean(), opt)  # finite again: steps
    assert all(not torch.equal(a, b) for a, b in zip(after, _params(model)))


@pytest.mark.parametrize("dtype", ["bf16", "off"])
def test_bf16_and_off_do_not_scale(dtype):
    precision = device.Precision(torch.device("cpu"), dtype)
    assert not precision.scaling and precision.scaler.state_dict() == {}
    model, x = _toy()
    loss = model(x).pow(2).mean()
    assert precision.scaler.scale(loss) is loss
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _params(model)
    precision.backward_step(model(x).pow(2).mean(), opt)
    grads = [p.grad.clone() for p in model.parameters()]
    ref, _ = _toy()
    ref(x).pow(2).mean().backward()
    assert all(torch.allclose(g, r.grad) for g, r in zip(grads, ref.parameters())), "gradients were scaled"
    assert all(torch.allclose(a, b - 0.1 * g) for a, b, g in zip(_params(model), before, grads))


def _learner(folder, amp: str):
    from kaggletools.fit.assemble import Experiment
    from kaggletools.options import RunOptions

    comp = competition.get(REDUX)
    r = comp.recipe.replace(backbone="resnet18", pretrained=False, size=32, batch_size=16, valid_frac=0.25,
                            freeze_epochs=1, epochs=0)
    learner, _ = Experiment.from_folder(comp, folder, r, RunOptions(amp=amp, progress=False)).learner(
        torch.device("cpu"))
    return learner


def test_fp16_training_on_the_cpu_and_the_scalers_state_in_the_checkpoint(dogs_dir):
    from kaggletools.fit.learner import Position

    learner = _learner(dogs_dir, "fp16")
    assert learner.precision.dtype == "fp16" and learner.precision.scaling
    learner.fit()  # one frozen epoch under fp16 autocast and the scaler
    row = learner.history[-1]
    assert row["train_loss"] == row["train_loss"] and 0 < row["train_loss"] < 10  # finite
    assert {"data_wait_s", "compute_s"} <= set(row)
    learner.precision.scaler.update(1024.0)  # a state no fresh scaler has
    state = learner.state(Position(0, 1))
    assert state["scaler"]["scale"] == 1024.0
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    fresh = _learner(dogs_dir, "fp16")
    assert fresh.precision.scaler.get_scale() == 65536.0
    assert fresh.load_state(saved) == Position(0, 1)
    assert fresh.precision.scaler.get_scale() == 1024.0
    assert fresh.precision.scaler.state_dict() == learner.precision.scaler.state_dict()


def test_without_fp16_the_checkpoint_has_no_scaler_state(dogs_dir):
    from kaggletools.fit.learner import Position

    learner = _learner(dogs_dir, "off")
    state = learner.state(Position())
    assert state["scaler"] == {}
    fresh = _learner(dogs_dir, "off")
    fresh.load_state(state)
    assert not fresh.precision.scaling


def test_each_torchrun_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(torch.device(d)))
    _fake_card(monkeypatch, {0: (7, 5), 1: (7, 5)})  # Kaggle's two T4s
    for rank in (0, 1):
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        dev = Dist(rank, 2).device(CUDA)
        assert dev == torch.device("cuda", rank) and chosen[-1] == dev
        assert device.choose_precision(dev) == "fp16"
    assert Dist().device(CUDA) == CUDA and len(chosen) == 2  # one process: the device as given
    assert Dist(1, 2).device(torch.device("cpu")) == torch.device("cpu")  # gloo on CPUs: no GPU picked


# -- on a real card (skipped without one; benchmarks/gpu_check.sh runs them: pytest -k cuda) --------
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_auto_precision_of_this_card():
    dev = torch.device("cuda", 0)
    expected = "bf16" if torch.cuda.get_device_capability(dev) >= (8, 0) else "fp16"
    assert device.choose_precision(dev) == expected
    assert device.Precision.for_device(dev).scaling == (expected == "fp16")


@needs_cuda
def test_cuda_fp16_scaler_with_the_fused_adamw_skips_inf_steps():
    dev = torch.device("cuda", 0)
    precision = device.Precision(dev, "fp16")
    model, x = _toy()
    model, x = model.to(dev), x.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, **device.optimizer_options(dev))
    assert opt.defaults["fused"]
    before = _params(model)
    with precision.autocast():
        loss = model(x).float().pow(2).mean()
    precision.backward_step(loss, opt)
    after = _params(model)
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    opt.zero_grad(set_to_none=True)
    with precision.autocast():
        loss = model(x).float().pow(2).mean() * float("inf")
    precision.backward_step(loss, opt)
    assert all(torch.equal(a, b) for a, b in zip(after, _params(model)))
    assert precision.scaler.get_scale() == 32768.0


def _syncs(run) -> int:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@needs_cuda
@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_cuda_training_steps_do_not_wait_for_the_gpu(dogs_dir, amp):
    """More steps, no more host-device synchronisations: the only ones are at the epoch's end."""
    from kaggletools.fit.assemble import Experiment
    from kaggletools.options import RunOptions

    comp = competition.get(REDUX)
    r = comp.recipe.replace(backbone="resnet18", pretrained=False, size=32, batch_size=4, valid_frac=0.25,
                            freeze_epochs=1, epochs=1)
    learner, _ = Experiment.from_folder(comp, dogs_dir, r, RunOptions(amp=amp, progress=False)).learner(
        torch.device("cuda"))
    for name in ("frozen", "unfrozen"):
        phase = learner.phase(name, 1, r.lr)
        opt = learner._optimizer(phase.groups)
        sched = phase.schedule(opt, phase.n_batches)
        phase.modes()
        learner._epoch(phase, opt, sched, max_steps=2)  # warm-up
        counts = [_syncs(lambda n=n: learner._epoch(phase, opt, sched, max_steps=n)) for n in (2, 6)]
        assert counts[0] == counts[1], f"{name}, {learner.precision.dtype}: {counts} syncs for 2 and 6 steps"
