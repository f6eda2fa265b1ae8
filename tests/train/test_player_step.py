"""The non-finite guard of a player's step (hybridpgm/train/player_step.py)."""

import functools
import warnings

import pytest
import torch
from torch.overrides import TorchFunctionMode

from hybridpgm import fit
from hybridpgm.errors import TrainingDivergedError
from hybridpgm.train import load_checkpoint
from hybridpgm.train.callbacks import EarlyStopping
from hybridpgm.train.distributed import DistributedContext
from hybridpgm.train.player_step import Player
from tests.train.helpers import LinearRegression, host_reads_per_step, regression_data


class NormOfScaled:
    """``mean_i ||x_i * s||``: a finite loss whose gradient in ``s`` is NaN at a
    zero row (the derivative of the square root at 0, times 0) -- the issue's
    ``((batch - c)**2).sum(-1).sqrt().mean()`` at a row equal to ``c``."""

    def __init__(self, d=4):
        self.module = torch.nn.Module()
        self.module.scale = torch.nn.Parameter(torch.linspace(0.5, 1.5, d))

    def players(self):
        return {"fit": [self.module.scale]}

    def loss(self, player, batch):
        return ((batch * self.module.scale) ** 2).sum(-1).sqrt().mean()


def data_with_zero_row(row, n=64, d=4):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    x[row] = 0.0
    return x


SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("accumulate", [1, 4])
def test_nan_gradient_raises_before_any_update_and_the_checkpoint_is_the_last_good_step(tmp_path, accumulate):
    ckpt = tmp_path / "nan.pt"
    objective = NormOfScaled()
    with pytest.raises(TrainingDivergedError) as info:  # row 24 is in the batch of step 3 (0-based)
        fit(objective, data_with_zero_row(24), epochs=2, batch_size=8, accumulate=accumulate, shuffle=False,
            optim=SGD, checkpoint=ckpt, checkpoint_every=1, progress=False, seed=0)
    assert info.value.step == 3 and info.value.player == "fit"
    assert "gradient of player 'fit' is not finite in ['scale']" in str(info.value)
    saved = load_checkpoint(ckpt)
    assert saved["step"] == 3
    assert torch.isfinite(saved["module"]["scale"]).all()
    assert torch.equal(saved["module"]["scale"], objective.module.scale.detach())  # no update was applied


def test_nan_gradient_on_the_last_step_raises_too():
    with pytest.raises(TrainingDivergedError, match="at step 7") as info:
        fit(NormOfScaled(), data_with_zero_row(63), epochs=1, batch_size=8, shuffle=False, optim=SGD,
            progress=False, seed=0)
    assert info.value.step == 7


def test_skip_nonfinite_skips_and_counts_the_bad_steps(tmp_path):
    objective = NormOfScaled()
    result = fit(objective, data_with_zero_row(24), epochs=2, batch_size=8, shuffle=False, optim=SGD,
                 checkpoint=tmp_path / "c.pt", progress=False, seed=0, skip_nonfinite=True)
    assert result.steps == 16 and result.skipped_steps == {"fit": 2}  # once per epoch
    assert torch.isfinite(objective.module.scale).all()
    assert load_checkpoint(tmp_path / "c.pt")["players"]["fit"]["skipped"] == 2


def test_a_skipped_step_changes_nothing():
    data = data_with_zero_row(63)  # the zero row is the last batch's
    a, b = NormOfScaled(), NormOfScaled()
    fit(a, data, epochs=1, batch_size=8, shuffle=False, optim=SGD, progress=False, seed=0, max_steps=7)
    result = fit(b, data, epochs=1, batch_size=8, shuffle=False, optim=SGD, progress=False, seed=0,
                 skip_nonfinite=True)
    assert result.skipped_steps == {"fit": 1}
    assert torch.equal(a.module.scale, b.module.scale)


class ScaledSum:
    """The finite loss ``scale * w.sum()`` of ``size`` parameters starting at ``start``: its gradient is
    ``scale`` in every entry."""

    def __init__(self, size: int, scale: float, start: float):
        self.module = torch.nn.Module()
        self.module.w = torch.nn.Parameter(torch.full((size,), start))
        self.scale = scale

    def players(self):
        return {"fit": [self.module.w]}

    def loss(self, player, batch):
        return (self.module.w * self.scale).sum() + 0.0 * batch.sum()


def Overflow():
    """A finite loss and gradient (1e30) whose SGD update overflows float32."""
    return ScaledSum(2, 1e30, 1.0)


def test_overflowed_parameters_are_an_error_and_never_checkpointed(tmp_path):
    ckpt = tmp_path / "o.pt"
    with pytest.raises(TrainingDivergedError, match=r"parameters \['w'\] \(player 'fit'\) are not finite after step 1"):
        fit(Overflow(), torch.zeros(8, 1), batch_size=8, max_steps=1, checkpoint=ckpt, progress=False, seed=0,
            optim=functools.partial(torch.optim.SGD, lr=1e10))
    assert not ckpt.exists()


def HugeGradient():
    """A finite loss whose finite gradient, 3e38 in each of 4 entries, sums past float32's
    largest value: the guard's one-pass sum overflows, and its exact check must let the step through."""
    return ScaledSum(4, 3e38, 0.0)


def test_finite_gradients_whose_sum_overflows_are_stepped():
    objective = HugeGradient()
    result = fit(objective, torch.zeros(8, 1), batch_size=8, progress=False, seed=0,
                 optim=functools.partial(torch.optim.SGD, lr=1e-37))
    assert result.steps == 1 and result.skipped_steps == {"fit": 0}
    assert torch.allclose(objective.module.w.detach(), torch.full((4,), -30.0), rtol=1e-5)


class _GivenGradient(torch.autograd.Function):
    """Value 0, gradient ``g``: a finite loss with any gradient."""

    @staticmethod
    def forward(ctx, w, g):
        ctx.save_for_backward(g)
        return (w * 0.0).sum()

    @staticmethod
    def backward(ctx, grad):
        (g,) = ctx.saved_tensors
        return grad * g, None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_gradient_entry_is_caught_whatever_the_others(bad):
    """One NaN/inf entry among huge finite ones (whose sum alone would already overflow)."""
    objective = HugeGradient()
    g = torch.tensor([3e38, 3e38, bad, -3e38])
    objective.loss = lambda player, batch: _GivenGradient.apply(objective.module.w, g)
    with pytest.raises(TrainingDivergedError, match=r"gradient of player 'fit' is not finite in \['w'\]"):
        fit(objective, torch.zeros(8, 1), batch_size=8, progress=False, seed=0,
            optim=functools.partial(torch.optim.SGD, lr=1e-37))
    assert torch.equal(objective.module.w.detach(), torch.zeros(4))


def test_an_exploding_loss_is_reported_in_the_result():
    with pytest.warns(RuntimeWarning, match="loss of player 'fit' exploded"):
        result = fit(LinearRegression(), regression_data(), epochs=5, batch_size=16, progress=False, seed=0,
                     optim=functools.partial(torch.optim.SGD, lr=1.0))
    first, last = result.loss_explosions["fit"]
    assert result.diverged and last > 1e3 * first
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        healthy = fit(LinearRegression(), regression_data(), epochs=5, batch_size=16, progress=False, seed=0,
                      optim=functools.partial(torch.optim.SGD, lr=0.5))
    assert not healthy.diverged and healthy.loss_explosions == {} and healthy.skipped_steps == {"fit": 0}


def test_the_guard_adds_no_host_read_per_step(monkeypatch):
    """Per step and player, the loss and the finiteness of loss and gradients
    reach the host in one read (on CUDA, one synchronisation), as the loss alone did."""
    assert host_reads_per_step(monkeypatch, optim=SGD) == 1


@pytest.mark.parametrize("accumulate", [1, 2])
def test_fit_takes_written_out_gradients_and_lands_where_autograd_does(monkeypatch, accumulate):
    """An RBM trained by CD-1 through ``fit``: by default on the gradients the RBM writes out
    (``loss_and_gradients``); with a hook on a parameter, on autograd's, the hook firing.  Same seed,
    same draws, the same parameters after the epoch."""
    from hybridpgm.energy import RBM
    from hybridpgm.infer import ContrastiveDivergence

    written = []
    original = RBM.contrastive_gap_and_gradients
    monkeypatch.setattr(RBM, "contrastive_gap_and_gradients",
                        lambda self, *a, **k: written.append(1) or original(self, *a, **k))
    data = torch.bernoulli(torch.full((48, 7), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))

    def train(hook):
        torch.manual_seed(0)
        rbm = RBM(7, 5, init_scale=0.3).double()
        fired = []
        if hook:
            rbm.weight.register_hook(lambda g: fired.append(1))
        written.clear()
        fit(ContrastiveDivergence(rbm, 1), data, epochs=2, batch_size=12, accumulate=accumulate, optim=SGD,
            progress=False, seed=0)
        return rbm, len(written), len(fired)

    direct, direct_calls, _ = train(hook=False)
    hooked, hooked_calls, fired = train(hook=True)
    assert direct_calls == 8 * accumulate and hooked_calls == 0 and fired == 8 * accumulate
    for a, b in zip(direct.parameters(), hooked.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert not torch.equal(direct.weight, RBM(7, 5).double().weight)


class WrittenOutRegression(LinearRegression):
    """Least squares with its gradients written out; ``spoil`` breaks them on purpose."""

    def __init__(self, spoil=None):
        super().__init__()
        self.spoil = spoil

    def loss_and_gradients(self, player, batch):
        x, y = batch
        weight, bias = self.module.weight, self.module.bias
        with torch.no_grad():
            r = 2 * (x @ weight.T + bias - y) / y.numel()
            grads = {weight: r.T @ x, bias: r.sum(0)}
            loss = (r ** 2).sum() * y.numel() / 4
        if self.spoil == "shape":
            grads[bias] = grads[bias].expand(2).clone()
        elif self.spoil == "dtype":
            grads[weight] = grads[weight].double()
        elif self.spoil == "outsider":
            grads[torch.nn.Parameter(torch.zeros(1))] = torch.zeros(1)
        return loss, grads


def test_written_out_least_squares_trains_as_autograd_does():
    x, y = regression_data()
    direct, autograd = WrittenOutRegression(), LinearRegression()
    for objective in (direct, autograd):
        fit(objective, (x, y), epochs=3, batch_size=16, accumulate=2, optim=SGD, progress=False, seed=0)
    for a, b in zip(direct.module.parameters(), autograd.module.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("spoil,message", [("shape", r"shape \(2,\).*for parameter 'bias' of shape \(1,\)"),
                                           ("dtype", "torch.float64 on cpu for parameter 'weight' of shape"),
                                           ("outsider", "1 parameter\\(s\\) outside player 'fit'")])
def test_written_out_gradients_that_do_not_fit_the_player_are_an_error(spoil, message):
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        fit(WrittenOutRegression(spoil), regression_data(), epochs=1, batch_size=16, optim=SGD, progress=False)


def test_a_loss_overridden_below_the_written_out_gradients_goes_through_autograd():
    """A subclass that adds a penalty to ``loss`` only: its gradients are not the written-out ones, so
    ``fit`` must back-propagate its ``loss`` (the penalty shrinks the weights far below those of plain
    CD from the same start); an instance attribute ``loss`` likewise."""
    from hybridpgm.energy import RBM
    from hybridpgm.infer import ContrastiveDivergence
    from hybridpgm.train.player_step import _writes_its_loss_gradients

    class Penalised(ContrastiveDivergence):
        def loss(self, player, batch):
            return super().loss(player, batch) + (self.model.weight ** 2).sum()  # W shrinks by 0.8 a step

    class Declared(Penalised):  # a subclass that says its loss_and_gradients goes with the loss it inherits
        loss_and_gradients = ContrastiveDivergence.loss_and_gradients

    data = torch.bernoulli(torch.full((20, 6), 0.5), generator=torch.Generator().manual_seed(0))
    norms = {}
    for make in (Penalised, ContrastiveDivergence):
        torch.manual_seed(0)
        rbm = RBM(6, 4, init_scale=0.5)
        fit(make(rbm, 1), data, epochs=2, batch_size=10, optim=functools.partial(torch.optim.SGD, lr=0.1),
            progress=False, seed=0)
        norms[make] = rbm.weight.detach().abs().sum()
    assert norms[Penalised] < 0.6 * norms[ContrastiveDivergence]  # 0.8 ** 4 = 0.41 of the start
    assert not _writes_its_loss_gradients(Penalised(rbm, 1))
    assert _writes_its_loss_gradients(ContrastiveDivergence(rbm, 1)) and _writes_its_loss_gradients(Declared(rbm, 1))
    plain = ContrastiveDivergence(rbm, 1)
    plain.loss = lambda player, batch: ContrastiveDivergence.loss(plain, player, batch)
    assert not _writes_its_loss_gradients(plain)


def test_a_frozen_parameter_stays_put_and_the_others_train():
    """Found by an audit: a frozen parameter (requires_grad=False) in a player was passed to backward's
    inputs, a raw 'can't retain_grad' RuntimeError; the docs say fit keeps to autograd for it."""
    from hybridpgm.energy import RBM
    from hybridpgm.infer import ContrastiveDivergence

    x = torch.bernoulli(torch.full((32, 12), 0.3), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    rbm = RBM(12, 6)
    frozen = rbm.visible_bias.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in rbm.named_parameters()}
    fit(ContrastiveDivergence(rbm), x, epochs=1, batch_size=8, seed=0, progress=False, accumulate=2)
    assert torch.equal(frozen, before["visible_bias"])
    assert not torch.equal(rbm.weight, before["weight"]) and not torch.equal(rbm.hidden_bias, before["hidden_bias"])


def test_accumulation_keeps_a_float64_loss_in_float64():
    """Found by an audit: each micro-batch's loss was cast to float32 before its weight m_i / B, so a float64
    model with accumulate=3 landed 1.3e-8 from one step on the whole batch (1e-16 now), and the history's loss
    was float32-rounded."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 5, generator=g, dtype=torch.float64)
    y = x @ torch.randn(5, 1, generator=g, dtype=torch.float64) + 0.1

    def run(accumulate):
        objective = LinearRegression(d_in=5)
        objective.module.double()
        result = fit(objective, (x, y), batch_size=12, accumulate=accumulate, epochs=2, seed=0, shuffle=False,
                     progress=False, optim=functools.partial(torch.optim.SGD, lr=0.1))
        return objective.module.weight.detach(), result.history.loss["fit"]

    (w1, l1), (w3, l3) = run(1), run(3)
    assert (w1 - w3).abs().max() < 1e-14
    assert max(abs(a - b) for a, b in zip(l1, l3)) < 1e-14


class LogOfRows:
    """``mean_i log(w * x_i)``: ``-inf`` at a zero row, which its ``explain_nonfinite`` names (within the
    micro-batch it is given, as the hook's contract says); ``calls`` records the micro-batches it was shown."""

    def __init__(self, explain=None):
        self.module = torch.nn.Module()
        self.module.w = torch.nn.Parameter(torch.ones(()))
        self.calls = []
        self._explain = explain

    def players(self):
        return {"fit": [self.module.w]}

    def loss(self, player, batch):
        return (self.module.w * batch).log().mean()

    def explain_nonfinite(self, player, batch):
        self.calls.append((player, batch.shape[0], torch.is_grad_enabled()))
        if self._explain is not None:
            return self._explain(batch)
        rows = (batch == 0).nonzero().flatten().tolist()
        return f"rows {rows} are 0" if rows else None


def _rows(zero_row=None, n=8):
    x = torch.arange(1.0, n + 1)
    if zero_row is not None:
        x[zero_row] = 0.0
    return x


FIT_ONE = dict(epochs=1, batch_size=8, progress=False, seed=0, shuffle=False, optim=SGD)


@pytest.mark.parametrize("accumulate, said", [
    (1, r"LogOfRows\.explain_nonfinite: rows \[5\] are 0$"),
    (2, r"LogOfRows\.explain_nonfinite: micro-batch 2 of 2 \(rows 4\.\.7 of the batch, numbered from 0 in it\): "
        r"rows \[1\] are 0$"),
])
def test_the_objectives_explanation_ends_the_divergence_message(accumulate, said):
    """Before, the message said only 'loss of player 'fit' is -inf at step 0; ...' and named no row."""
    objective = LogOfRows()
    with pytest.raises(TrainingDivergedError, match=r"loss of player 'fit' is -inf at step 0; no update was applied"
                                                    r".*" + said):
        fit(objective, _rows(5), accumulate=accumulate, **FIT_ONE)
    # once per micro-batch, on the error path, without gradients
    assert objective.calls == [("fit", 8 // accumulate, False)] * accumulate
    assert float(objective.module.w.detach()) == 1.0


def test_the_explanation_costs_nothing_unless_the_loss_diverges():
    objective = LogOfRows()
    fit(objective, _rows(), **FIT_ONE)
    result = fit(objective, _rows(2), skip_nonfinite=True, **FIT_ONE)
    assert objective.calls == [] and result.skipped_steps == {"fit": 1}


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_failing_explanation_never_masks_the_divergence(accumulate):
    """The hook raising (here a KeyError, a bug of the hook) still gives the TrainingDivergedError, saying it
    could not explain; it is asked once only."""
    def broken(batch):
        raise KeyError("no such column")

    objective = LogOfRows(broken)
    with pytest.raises(TrainingDivergedError, match=r"loss of player 'fit' is -inf at step 0.*could not explain the "
                                                    r"non-finite loss \(KeyError: 'no such column'\)$") as caught:
        fit(objective, _rows(0), accumulate=accumulate, **FIT_ONE)
    assert caught.value.step == 0 and caught.value.player == "fit" and len(objective.calls) == 1


class Float64Offset:
    """``offset + w^2`` in float64 (one weight, ``w = 1`` at the start): under SGD with learning rate ``lr`` the
    loss falls strictly, by less than float32's spacing at ``1e6`` (0.0625) per step, and its exact values
    replay on the host as ``w <- (1 - 2 lr) w``."""

    def __init__(self, offset):
        self.offset = offset
        self.module = torch.nn.Module()
        self.module.w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))

    def players(self):
        return {"p": [self.module.w]}

    def loss(self, player, batch):
        return self.offset + (self.module.w ** 2).sum() + 0 * batch.sum()

    @staticmethod
    def replay(offset, steps, lr=0.01):
        w, out = 1.0, []
        for _ in range(steps):
            out.append(offset + w * w)
            w -= lr * 2 * w
        return out


FIT_F64 = dict(batch_size=10, progress=False, seed=0, optim=functools.partial(torch.optim.SGD, lr=0.01))


def test_a_float64_loss_reaches_the_history_the_callbacks_and_the_scheduler_unrounded():
    """Found by an audit: the step's loss was read on the host as float32, so the history of ``1e6 + w^2`` was
    off by up to 0.024 and repeated values; ReduceLROnPlateau and EarlyStopping saw a strictly falling loss
    stall (EarlyStopping(patience=2) stopped after 16 of 50 steps)."""
    seen = []

    class Record:
        def on_step_end(self, info):
            seen.append(info.losses["p"])

    steps = 50
    x = torch.zeros(10, 1, dtype=torch.float64)
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0, threshold=0.0)
    result = fit(Float64Offset(1e6), x, epochs=steps, lr_scheduler=plateau,
                 callbacks=[Record(), EarlyStopping("p", patience=2)], **FIT_F64)
    exact = Float64Offset.replay(1e6, steps)
    assert result.steps == steps and not result.stopped_early
    assert max(abs(a - b) for a, b in zip(result.history.loss["p"], exact)) < 1e-9
    assert seen == result.history.loss["p"]
    assert result.optimizers["p"].param_groups[0]["lr"] == 0.01  # never reduced: every step improved


@pytest.mark.parametrize("skip_nonfinite", [False, True])
def test_a_finite_float64_loss_beyond_float32s_range_is_not_a_divergence(skip_nonfinite):
    """Found by an audit: a float64 loss of 1e300 read as inf on the host (float32 overflows at 3.4e38), so the
    history recorded inf for a finite, healthy run."""
    objective = Float64Offset(1e300)
    result = fit(objective, torch.zeros(10, 1, dtype=torch.float64), epochs=3, skip_nonfinite=skip_nonfinite,
                 **FIT_F64)
    assert result.history.loss["p"] == [1e300] * 3
    assert not result.diverged and result.skipped_steps == {"p": 0}
    assert objective.module.w.item() == pytest.approx(0.98 ** 3, rel=1e-12)  # every step was taken


def test_fit_keeps_no_objective_class_alive():
    """Before, ``functools.lru_cache(maxsize=None)`` on the per-class check of written-out gradients kept every
    objective class ``fit`` had seen (and its closure and globals) for the life of the process: a notebook cell
    that defines and fits an objective, re-run, kept one class per run."""
    import gc
    import weakref

    from hybridpgm.train.player_step import _writes_its_loss_gradients

    refs = []
    for _ in range(3):  # the cell, re-run
        class CellObjective(LinearRegression):
            pass

        objective = CellObjective()
        fit(objective, regression_data(), epochs=1, batch_size=16, progress=False, seed=0)
        assert not _writes_its_loss_gradients(objective)  # the cached answer is the right one
        refs.append(weakref.ref(CellObjective))
        del CellObjective, objective
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


class _FrozenDecoder:
    """A trained encoder whose gradient comes through a frozen decoder made under inference mode."""

    def __init__(self):
        torch.manual_seed(0)
        with torch.inference_mode():
            dec = torch.nn.Linear(2, 3).requires_grad_(False)
        self.module = torch.nn.ModuleDict({"enc": torch.nn.Linear(3, 2), "dec": dec})

    def players(self):
        return {"fit": list(self.module["enc"].parameters())}

    def loss(self, player, batch):
        return (self.module["dec"](self.module["enc"](batch)) - batch).pow(2).mean()


def test_a_frozen_layer_made_under_inference_mode_in_the_gradients_path_is_named():
    """Review C: once the check at the start counted only trained parameters, a frozen layer made under inference
    mode *downstream* of the trained one (autograd must save its weights) failed with torch's raw "Inference
    tensors cannot be saved for backward"."""
    from hybridpgm import fit
    from hybridpgm.errors import ConfigError

    objective = _FrozenDecoder()
    before = [p.detach().clone() for p in objective.module.parameters()]
    with pytest.raises(ConfigError, match=r"_FrozenDecoder.module holds tensors created under torch.inference_mode"
                                          r"\(\) \('dec.weight', 'dec.bias'\)"):
        fit(objective, torch.randn(16, 3), max_steps=1, batch_size=16, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, objective.module.parameters()))


class _InferenceConstant(LinearRegression):
    """A loss using a constant of the objective's own (not the module's) made under inference mode."""

    def __init__(self):
        super().__init__()
        with torch.inference_mode():
            self.scale = torch.tensor(2.0)

    def loss(self, player, batch):
        x, y = batch
        return ((self.module(x) * self.scale - y) ** 2).mean()


def test_an_inference_tensor_outside_the_module_is_not_blamed_on_the_module():
    """Review D: the first version named ``.module`` (with an empty list) for any "Inference tensors cannot be saved"
    error; a tensor of the loss's own is torch's error to report."""
    with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward") as caught:
        fit(_InferenceConstant(), regression_data(), max_steps=1, batch_size=16, progress=False)
    assert "module holds" not in str(caught.value)


def test_a_player_whose_parameters_are_all_frozen_is_not_stepped_and_its_loss_is_recorded():
    """Found by an audit (WakeSleep with all of theta frozen, whose loss had no graph: a ConfigError blaming
    no_grad; tests/infer/test_wake_sleep.py).  Here the frozen player's loss reaches the other player's
    parameters, so it has a graph: before, fit stepped the frozen player's scheduler (its lr fell to 0.1 / 2**6,
    with no step taken) and, in fp16, failed with a raw AssertionError from the gradient scaler (unscale_ with
    nothing scaled).  Now its loss is computed and recorded, neither its optimizer nor its scheduler nor a scaler
    steps, and the other player trains."""
    from tests.train.helpers import TwoPlayer

    for precision in (None, "fp16"):
        objective = TwoPlayer()
        objective.module["a"].requires_grad_(False)
        before = {n: p.detach().clone() for n, p in objective.module.named_parameters()}
        x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
        halve = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
        result = fit(objective, (x, x.sum(-1, keepdim=True)), batch_size=16, max_steps=3, seed=0, progress=False,
                     optim=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.1),
                     lr_scheduler=halve, precision=precision, device="cpu")
        params = dict(objective.module.named_parameters())
        assert all(torch.equal(params[n], before[n]) for n in ("a.weight", "a.bias"))
        assert result.optimizers["a"].state == {} and result.optimizers["a"].param_groups[0]["lr"] == 0.1
        if precision is None:  # (fp16's scaler skips the first steps, whose scaled gradients overflow)
            assert not torch.equal(params["b.weight"], before["b.weight"])
            assert result.optimizers["b"].param_groups[0]["lr"] == 0.1 * 0.5 ** 3
        assert len(result.history.loss["a"]) == 3 and all(torch.isfinite(torch.tensor(result.history.loss["a"])))


class _Counted(LinearRegression):
    """Least squares in float64, counting its loss's calls."""

    def __init__(self):
        super().__init__(d_in=5)
        self.module.double()
        self.calls = 0

    def loss(self, player, batch):
        self.calls += 1
        return super().loss(player, batch)


LBFGS = functools.partial(torch.optim.LBFGS, lr=1, max_iter=40, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                          tolerance_change=1e-15)


@pytest.mark.parametrize("accumulate", [1, 3])
def test_lbfgs_reaches_the_least_squares_solution_and_evaluates_once_per_closure_call(accumulate):
    """Found by an audit: optim=torch.optim.LBFGS failed at the first step with a raw TypeError (step() missing
    its closure).  fit steps it with a closure over the player's micro-batches (accumulation included): one
    step lands on the least-squares solution, the history's first loss is the one at the starting parameters,
    and the loss runs accumulate times per function evaluation L-BFGS counts (the first evaluation is the one
    fit ran already, not repeated)."""
    x, y = (t.double() for t in regression_data(48))
    objective = _Counted()
    start = ((objective.module(x) - y) ** 2).mean().item()
    result = fit(objective, (x, y), batch_size=48, accumulate=accumulate, max_steps=2, seed=0, shuffle=False,
                 progress=False, optim=LBFGS, device="cpu")
    design = torch.cat([x, torch.ones(48, 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, y).solution.reshape(-1)
    found = torch.cat([objective.module.weight.detach().reshape(-1), objective.module.bias.detach()])
    assert (found - solution).abs().max().item() < 1e-8
    optimum = ((design @ solution - y.reshape(-1)) ** 2).mean().item()
    assert result.history.loss["fit"][0] == pytest.approx(start, rel=1e-12)
    assert result.history.loss["fit"][1] == pytest.approx(optimum, rel=1e-10)
    state = result.optimizers["fit"].state_dict()["state"][0]
    assert objective.calls == state["func_evals"] * accumulate > 2 * accumulate


def test_lbfgs_with_clipping_clips_every_evaluation():
    """Each evaluation of the closure is clipped as the first one is: with a tiny clip_grad_norm every gradient
    L-BFGS sees has that norm at most (recorded from inside the optimizer's step)."""
    x, y = (t.double() for t in regression_data(32))
    seen = []

    class Recording(torch.optim.LBFGS):
        def step(self, closure):
            def recorded():
                loss = closure()
                seen.append(torch.cat([p.grad.reshape(-1) for p in self.param_groups[0]["params"]]).norm().item())
                return loss
            return super().step(recorded)

    fit(_Counted(), (x, y), batch_size=32, max_steps=1, seed=0, progress=False, clip_grad_norm=1e-3, device="cpu",
        optim=functools.partial(Recording, lr=1e-3, max_iter=5))
    assert len(seen) > 1 and max(seen) <= 1e-3 * (1 + 1e-9)


def test_lbfgs_trains_a_bayes_net_to_its_table_mle():
    """Found by an audit: optim=torch.optim.LBFGS failed with a raw TypeError.  A Bayesian network with table CPDs
    and complete data, trained by fit with L-BFGS through SVIObjective (with accumulation too), reaches its
    maximum-likelihood tables, the normalised counts, to 1e-6."""
    from hybridpgm.graphs import BayesNet, cpd
    from hybridpgm.infer import SVIObjective

    g = torch.Generator().manual_seed(0)
    a = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), 60, replacement=True, generator=g)
    b = torch.bernoulli(torch.tensor([0.2, 0.7, 0.5])[a], generator=g).long()
    counts_a = torch.bincount(a, minlength=3).double()
    counts_ab = torch.zeros(3, 2, dtype=torch.float64).index_put_((a, b), torch.ones(60, dtype=torch.float64),
                                                                  accumulate=True)
    for accumulate in (1, 3):
        bn = BayesNet()
        bn.add("a", cpd.Table(torch.full((3,), 1 / 3, dtype=torch.float64)))
        bn.add("b", cpd.Table(torch.full((3, 2), 0.5, dtype=torch.float64), ["a"]))
        fit(SVIObjective(bn.model, bn.guide), torch.stack([a, b], 1), batch_size=60, accumulate=accumulate,
            max_steps=3, seed=0, progress=False, device="cpu",
            optim=functools.partial(torch.optim.LBFGS, lr=1, max_iter=50, line_search_fn="strong_wolfe",
                                    tolerance_grad=1e-9, tolerance_change=1e-12))
        assert (bn.cpds["a"].probs - counts_a / counts_a.sum()).abs().max().item() < 1e-6
        assert (bn.cpds["b"].probs - counts_ab / counts_ab.sum(-1, keepdim=True)).abs().max().item() < 1e-6


def test_an_lbfgs_run_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(tmp_path):
    """L-BFGS's state (its curvature pairs, the last direction and step) is checkpointed and restored: a run stopped
    after 2 steps and resumed to 4 ends bit for bit where 4 uninterrupted steps end."""
    x, y = regression_data(48)
    lbfgs = functools.partial(torch.optim.LBFGS, lr=1, max_iter=5)
    options = dict(batch_size=16, seed=0, progress=False, optim=lbfgs, device="cpu")
    fit(LinearRegression(), (x, y), max_steps=2, checkpoint=tmp_path / "c.pt", **options)
    resumed = LinearRegression()
    result = fit(resumed, (x, y), max_steps=4, checkpoint=tmp_path / "c.pt", **options)
    assert len(result.history.loss["fit"]) == 4
    straight = LinearRegression()
    fit(straight, (x, y), max_steps=4, **options)
    assert all(torch.equal(p, q) for p, q in zip(resumed.module.parameters(), straight.module.parameters()))


#: reductions that pass over a whole tensor, and the calls that read a tensor on the host
_REDUCTIONS = {"sum", "nansum", "mean", "amax", "amin", "max", "min", "all", "any", "isfinite", "norm"}
_HOST_READS = {"tolist", "item", "__bool__", "__float__", "__int__"}


class _CountedReductions(TorchFunctionMode):
    """Records the reductions over tensors of the ``sizes`` given (the gradients') and every host read."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes, self.reduced, self.reads = set(sizes), [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _REDUCTIONS and args and isinstance(args[0], torch.Tensor) and args[0].numel() in self.sizes:
            self.reduced.append(args[0].numel())
        if name in _HOST_READS:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("rank", [0, 1])
def test_a_step_on_several_ranks_reduces_each_gradient_once_in_one_collective_and_one_read(monkeypatch, rank):
    """Carried from the last session: on several ranks each rank also summed its own gradients before the
    all-reduce (a screen for the message naming the rank of a non-finite gradient: 0.7 ms a step at 4M
    parameters), a second pass over every gradient.  Whose own gradient was not finite is now asked on the
    error path only (tests/train/test_distributed.py names it there): a step without fault reduces each
    (averaged) gradient once, in one collective and one host read, and never reads this rank's own gradients."""
    sizes = (50, 70, 110)  # none equal to the size of a flag tensor or of the bucket
    weights = [torch.nn.Parameter(torch.full((n,), 0.5)) for n in sizes]
    batch = torch.linspace(-1.0, 1.0, max(sizes))

    class Objective:
        def loss(self, player, batch):  # no reduction over a gradient-sized tensor of its own
            return torch.stack([torch.dot(batch[:w.numel()], w) for w in weights]).sum()

    buckets = []

    def fake_all_reduce(flat):  # two identical ranks
        buckets.append(flat.numel())
        flat.mul_(2)

    monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
    player = Player("fit", weights, torch.optim.SGD(weights, lr=0.1), names=["a", "b", "c"])
    counted = _CountedReductions(sizes)
    with counted:
        loss = player.update(Objective(), [(batch, 1.0)], step=0, context=DistributedContext(rank=rank, world_size=2),
                             precision=None, device=torch.device("cpu"), clip_grad_norm=None)
    assert loss == pytest.approx(sum(0.5 * float(batch[:n].sum()) for n in sizes))
    assert sorted(counted.reduced) == sorted(sizes)  # one pass over each (averaged) gradient: its float32 sum
    assert buckets == [sum(sizes) + 1 + 2 * 2 + len(sizes)]  # one all-reduce: gradients, loss, 2 flags x 2 ranks
    assert counted.reads == ["tolist"]  # the loss, the gradients' sums and the ranks' flags in one read
    for w, n in zip(weights, sizes):  # the update was taken with the averaged gradient, which equals this rank's
        assert torch.allclose(w.detach(), 0.5 - 0.1 * batch[:n])
