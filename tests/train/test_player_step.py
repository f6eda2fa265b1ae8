"""The non-finite guard of a player's step (hybridpgm/train/player_step.py)."""

import functools
import warnings

import pytest
import torch
from torch.overrides import TorchFunctionMode

from hybridpgm import fit
from hybridpgm.errors import TrainingDivergedError
from hybridpgm.train import load_checkpoint
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
    error path only (tests/train/test_distributed_collectives.py names it there): a step without fault reduces each
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
