import functools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from pyro.nn import PyroModule

from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.errors import ConfigError, ObjectiveError
from hybridpgm.infer import IWAE
from hybridpgm.train.batches import batch_size_of


def test_loss_is_per_example_elbo():
    torch.manual_seed(0)
    vae = VAE(6, 2, (4,))
    x = torch.bernoulli(torch.rand(8, 6))
    objective = SVIObjective(vae.model, vae.guide)
    assert objective.module is vae and objective.players()["elbo"] == list(vae.parameters())
    pyro.set_rng_seed(0)
    loss = objective.loss("elbo", x)
    pyro.set_rng_seed(0)
    torch.testing.assert_close(loss, Trace_ELBO().differentiable_loss(vae.model, vae.guide, x) / 8)
    pyro.set_rng_seed(0)
    unscaled = SVIObjective(vae.model, vae.guide, per_example=False).loss("elbo", x)
    torch.testing.assert_close(unscaled, 8 * loss)


@pytest.mark.parametrize("value", ["no", 1, None])
def test_per_example_must_be_true_or_false(value):
    """``per_example="no"`` divided by the batch size, as any truthy value did."""
    vae = VAE(6, 2, (4,))
    with pytest.raises(ConfigError, match="per_example"):
        SVIObjective(vae.model, vae.guide, per_example=value)


def test_enumerated_discrete_model_learns_mixture_weights():
    class Mixture(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.zeros(2))

        def model(self, x):
            with pyro.plate("data", x.shape[0]):
                c = pyro.sample("c", dist.Categorical(logits=self.logits), infer={"enumerate": "parallel"})
                pyro.sample("x", dist.Normal(torch.tensor([-3.0, 3.0])[c], 1.0), obs=x)

        def guide(self, x):
            pass

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(300, generator=g) - 3, torch.randn(100, generator=g) + 3])
    mixture = Mixture()
    objective = SVIObjective(mixture.model, mixture.guide, TraceEnum_ELBO(max_plate_nesting=1))
    fit(objective, x, epochs=30, batch_size=100, progress=False, seed=0,
        optim=lambda params: torch.optim.Adam(params, lr=0.05))
    assert torch.softmax(mixture.logits, 0)[0].item() == pytest.approx(0.75, abs=0.03)


def test_module_is_required_for_plain_functions():
    with pytest.raises(ConfigError, match="module="):
        SVIObjective(lambda x: None, lambda x: None)


def test_elbo_without_differentiable_loss_is_refused():
    class NoDiff:
        pass

    vae = VAE(4, 1)
    with pytest.raises(ObjectiveError, match="NoDiff"):
        SVIObjective(vae.model, vae.guide, NoDiff())


def _guessing_objectives():
    from hybridpgm import RWS, WakeSleep
    from hybridpgm.generative import SigmoidBeliefNet

    def sbn(cls):
        s = SigmoidBeliefNet([8, 4, 2])
        return cls(s.model, s.guide)

    def vae(elbo):
        v = VAE(8, 2, (4,))
        return SVIObjective(v.model, v.guide, elbo)

    return {
        "rws": lambda: sbn(RWS),
        "wake-sleep": lambda: sbn(WakeSleep),
        "svi-trace-enum": lambda: vae(pyro.infer.TraceEnum_ELBO()),
        "svi-vectorized-particles": lambda: vae(pyro.infer.Trace_ELBO(num_particles=2, vectorize_particles=True)),
        "svi-iwae-1": lambda: vae(IWAE(1)),
        "svi-iwae-3": lambda: vae(IWAE(3)),
    }


@pytest.mark.parametrize("name", list(_guessing_objectives()))
def test_guessing_the_plate_nesting_uses_no_random_numbers(name):
    """An objective that guesses ``max_plate_nesting`` on its first call traces the model and guide to do so.
    A resumed run builds a fresh objective that guesses again after the random state was restored; the
    guess must not use up random numbers, or every later draw shifts and the resumed run differs from an
    uninterrupted one (as it did for RWS, wake-sleep and Pyro's TraceEnum_ELBO)."""
    x = torch.bernoulli(torch.full((6, 8), 0.5), generator=torch.Generator().manual_seed(0))

    def first_losses(warm):
        torch.manual_seed(1)
        objective = _guessing_objectives()[name]()
        player = next(iter(objective.players()))
        if warm:  # the guess already made, as in an uninterrupted run after its first step
            objective.loss(player, x)
        torch.manual_seed(2)
        return objective.loss(player, x).detach(), torch.rand(3)

    with pyro.get_param_store().scope():
        cold, warm = first_losses(False), first_losses(True)
    assert torch.equal(cold[0], warm[0]) and torch.equal(cold[1], warm[1])


@pytest.mark.parametrize("num_particles", [1, 3])
def test_iwae_guesses_its_plate_nesting_without_pyros_log_line(num_particles):
    """IWAE guesses its own plate nesting.  Before, SVIObjective also had Pyro guess it, and Pyro logged
    "Guessed max_plate_nesting = 1" at INFO: a stray line on the stderr of ``hybridpgm train iwae``."""
    import logging

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    x = torch.bernoulli(torch.full((6, 8), 0.5), generator=torch.Generator().manual_seed(0))
    handler, log = Keep(level=logging.DEBUG), logging.getLogger("pyro.infer.elbo")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        with pyro.get_param_store().scope():
            v = VAE(8, 2, (4,))
            loss = SVIObjective(v.model, v.guide, IWAE(num_particles)).loss("elbo", x)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert torch.isfinite(loss) and not [r for r in records if "max_plate_nesting" in r]


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 2, generator=g)
    return x, x @ torch.tensor([3.0, -1.0])


def _bnn_cell(x, y, **fit_kwargs):
    """What a notebook cell holds: a model, an autoguide never called, and fit."""
    from pyro.infer.autoguide import AutoNormal

    from hybridpgm.bayesian_nn import BayesianRegressor

    torch.manual_seed(0)
    model = BayesianRegressor(torch.nn.Linear(2, 1), num_data=len(x))
    guide = AutoNormal(model, init_scale=0.05)
    result = fit(SVIObjective(model, guide, per_example=False), (x, y), batch_size=32, epochs=150, progress=False,
                 seed=0, optim=functools.partial(torch.optim.Adam, lr=0.05), **fit_kwargs)
    return guide, result


def test_fit_trains_an_autoguide_that_has_not_run_yet():
    """Before, the guide made its parameters inside the first step, after the optimizer was built: its
    locations stayed at their initial zeros and the loss never fell."""
    x, y = _regression()
    guide, result = _bnn_cell(x, y)
    truth = torch.tensor([3.0, -1.0])  # the guide starts at 0: all the way from it
    assert (guide.median()["net.weight"].flatten() - truth).norm() < 0.25 * truth.norm()
    losses = result.history.loss["elbo"]
    assert sum(losses[-4:]) < 0.1 * sum(losses[:4])


def test_a_notebook_cell_run_twice_trains_a_guide_of_its_own():
    """The second run of the cell gets fresh parameters, and training it leaves the first guide alone."""
    x, y = _regression()
    first, _ = _bnn_cell(x, y)
    trained = {k: v.detach().clone() for k, v in first.named_parameters()}
    second, _ = _bnn_cell(x, -y)
    assert all(p is not q for p in first.parameters() for q in second.parameters())
    assert all(torch.equal(v, trained[k]) for k, v in first.named_parameters())
    truth = torch.tensor([-3.0, 1.0])
    assert (second.median()["net.weight"].flatten() - truth).norm() < 0.25 * truth.norm()


def test_a_resumed_run_with_a_fresh_autoguide_ends_as_an_uninterrupted_one(tmp_path):
    x, y = _regression()
    whole, _ = _bnn_cell(x, y, checkpoint=tmp_path / "a.pt")
    _bnn_cell(x, y, checkpoint=tmp_path / "b.pt", max_steps=125)
    resumed, _ = _bnn_cell(x, y, checkpoint=tmp_path / "b.pt")
    assert all(torch.equal(p, q) for p, q in zip(whole.parameters(), resumed.parameters()))


def _batch_norm_objectives():
    return {
        "iwae": lambda vae: SVIObjective(vae.model, vae.guide, IWAE(num_particles=3)),
        "trace-elbo-vectorized": lambda vae: SVIObjective(
            vae.model, vae.guide, Trace_ELBO(num_particles=2, vectorize_particles=True)),
    }


@pytest.mark.parametrize("name", list(_batch_norm_objectives()))
def test_guessing_the_plate_nesting_counts_no_batch_in_batch_norm(name):
    """The trace that guesses ``max_plate_nesting`` ran the model and guide in training mode: every
    ``fit`` call fed one extra batch into the batch-norm running statistics (4 steps counted 5 batches)."""
    from tests.infer.probe_helpers import batches_tracked, train

    vae, result = train(_batch_norm_objectives()[name], epochs=1)
    assert result.steps == 4 and set(batches_tracked(vae).values()) == {4}


@pytest.mark.parametrize("name", list(_batch_norm_objectives()))
def test_a_resumed_batch_norm_run_ends_with_the_buffers_of_an_uninterrupted_one(name, tmp_path):
    """Before, the resumed run guessed again on its restored module: its running statistics differed and
    its layers had counted one batch more (10 against 9 for 8 steps)."""
    from tests.infer.probe_helpers import batches_tracked, same_state, whole_and_resumed

    whole, resumed = whole_and_resumed(_batch_norm_objectives()[name], tmp_path)
    assert set(batches_tracked(whole).values()) == {8} and set(batches_tracked(resumed).values()) == {8}
    assert same_state(whole, resumed)


def test_setting_up_an_autoguide_leaves_the_models_buffers_alone():
    """``setup`` runs a fresh autoguide once, which traces the model: a batch-norm layer in it counted that
    run as a training batch, once more in every resumed run."""
    from pyro.infer.autoguide import AutoNormal
    from pyro.nn import PyroModule, PyroSample

    class Regressor(PyroModule):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.BatchNorm1d(2)
            self.w = PyroSample(dist.Normal(0.0, 1.0).expand([2]).to_event(1))

        def forward(self, x, y=None):
            loc = self.norm(x) @ self.w
            with pyro.plate("data", len(x)):
                return pyro.sample("y", dist.Normal(loc, 1.0), obs=y)

    x, y = _regression()
    with pyro.get_param_store().scope():
        model = Regressor()
        objective = SVIObjective(model, AutoNormal(model), per_example=False)
        objective.setup((x, y))
    assert model.norm.num_batches_tracked.item() == 0
    assert torch.equal(model.norm.running_mean, torch.zeros(2)) and torch.equal(model.norm.running_var, torch.ones(2))


class _HandWritten(PyroModule):
    """A model whose prior mean is a module parameter, and a guide whose location is a ``pyro.param``."""

    def __init__(self):
        super().__init__()
        self.prior_loc = torch.nn.Parameter(torch.zeros(()))
        self.net = torch.nn.Linear(1, 1)

    def model(self, x):
        z = pyro.sample("z", dist.Normal(self.prior_loc, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(self, x):
        loc = pyro.param("q_loc", torch.tensor(0.0))
        pyro.sample("z", dist.Normal(loc, 1.0))

    def guide_through_pyro_module(self, x):
        pyro.module("net", self.net)  # registers the net's own parameters: those fit does train
        pyro.sample("z", dist.Normal(self.net(torch.ones(1)).squeeze(), 1.0))


def test_fit_refuses_a_guide_whose_pyro_param_it_would_never_train():
    m = _HandWritten()
    with pytest.raises(ConfigError, match=r"the guide's \['q_loc'\].*pyro.infer.SVI"):
        fit(SVIObjective(m.model, m.guide), torch.randn(8) + 3.0, epochs=1, batch_size=8, progress=False)
    assert "q_loc" not in pyro.get_param_store()  # fit's own scope: nothing reaches the user's store


def test_fit_trains_parameters_that_a_guide_registers_with_pyro_module():
    m = _HandWritten()
    before = m.net.weight.detach().clone()
    fit(SVIObjective(m.model, m.guide_through_pyro_module), torch.randn(8) + 3.0, epochs=2, batch_size=8,
        progress=False)
    assert not torch.equal(m.net.weight.detach(), before)


def _incomplete_asia_rows(n=300, missing=0.3, seed=0):
    """A learner of asia's structure with random tables and ``n`` rows of asia, a fraction ``missing`` hidden."""
    from hybridpgm.graphs import load_network
    from hybridpgm.recipes.bayes_net import _rows, learner_for

    truth = load_network("asia").float()
    return learner_for(truth, torch.Generator().manual_seed(seed + 1)), _rows(truth, n, missing,
                                                                            torch.Generator().manual_seed(seed))


def _first_loss(bn, batch, precision):
    objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1))
    result = fit(objective, batch, batch_size=batch_size_of(batch), max_steps=1, precision=precision,
                 progress=False, seed=0, optim=functools.partial(torch.optim.SGD, lr=0.0))
    return result.history.loss["elbo"][0]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_enumerated_loss_under_mixed_precision_is_the_float32_one(precision):
    """Before, under autocast Pyro's einsum over the enumerated tables ran in the half precision: a Bayesian
    network's exact negative log-likelihood of incomplete rows was 4.5e-3 nats per row off in bfloat16 (alarm;
    asia: about 1e-3).  The contraction now runs with autocast off: the float32 loss, to float32 rounding."""
    import copy

    bn, rows = _incomplete_asia_rows()
    batch = bn.split_missing(rows)
    want = _first_loss(copy.deepcopy(bn), batch, "fp32")
    with torch.no_grad():
        exact = -float(bn.log_evidence(dict(zip(bn.nodes, rows.T))).mean())
    assert want == pytest.approx(exact, abs=1e-5)
    assert _first_loss(copy.deepcopy(bn), batch, precision) == pytest.approx(want, abs=1e-5)


def test_a_network_cpd_still_runs_under_autocast_in_an_enumerated_loss():
    """Only the contraction leaves autocast: the programs (a network CPD's forward pass) still run in bfloat16,
    and Pyro's ``_get_trace`` is the class's again after the loss."""
    from torch import nn

    from hybridpgm.graphs import BayesNet, cpd

    net = nn.Linear(2, 2)
    seen = []
    net.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    bn = BayesNet({"a": cpd.Table(torch.tensor([0.3, 0.7])), "b": cpd.Neural(net, ["a"], 2)}).check()
    rows = torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, float("nan")], [float("nan"), 1.0]])
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    objective = SVIObjective(bn.model, bn.guide, elbo)
    fit(objective, bn.split_missing(rows), batch_size=4, max_steps=1, precision="bf16", progress=False, seed=0)
    assert seen[-1] == torch.bfloat16  # the step's forward pass (fit's probes before it run outside autocast)
    assert "_get_trace" not in vars(elbo)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_vae_under_trace_enum_elbo_trains_in_mixed_precision(precision):
    """Before, ``TraceEnum_ELBO`` under ``fit(precision=...)`` raised torch's raw "both inputs should have same
    dtype" in Pyro's ``Dice``: the encoder's half-precision log-densities met float32 costs.  They are promoted
    now; with no enumerated site the loss is ``Trace_ELBO``'s for the same draws (which sums in half precision)."""
    import warnings

    x = torch.bernoulli(torch.rand(40, 6, generator=torch.Generator().manual_seed(1)))
    losses = {}
    for elbo in (Trace_ELBO(), TraceEnum_ELBO(max_plate_nesting=1)):
        torch.manual_seed(0)
        vae = VAE(6, 2, [5])
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # any other fails the test (a later filter wins)
            warnings.filterwarnings("ignore", "TraceEnum_ELBO found no sample sites", UserWarning)  # Pyro's
            result = fit(SVIObjective(vae.model, vae.guide, elbo), x, max_steps=2, batch_size=12, seed=0,
                         progress=False, precision=precision)
        losses[type(elbo).__name__] = result.history.loss["elbo"]
    assert all(map(math.isfinite, losses["TraceEnum_ELBO"]))
    assert losses["TraceEnum_ELBO"] == pytest.approx(losses["Trace_ELBO"], rel=1e-2)


def test_an_interrupt_as_the_autocast_trace_is_patched_in_leaves_the_elbo_as_it_was():
    """The patch of ``elbo._get_trace`` was assigned before its ``try``: an interrupt right after the assignment
    left it on the ELBO, and later float32 uses of it traced the model under autocast."""
    from hybridpgm.graphs import BayesNet, cpd

    class InterruptedELBO(TraceEnum_ELBO):
        armed = True

        def __setattr__(self, name, value):
            super().__setattr__(name, value)
            if name == "_get_trace" and InterruptedELBO.armed:
                InterruptedELBO.armed = False
                raise KeyboardInterrupt("Ctrl-C")

    bn = BayesNet({"a": cpd.Table(torch.tensor([0.3, 0.7])), "b": cpd.Table(torch.tensor([[0.6, 0.4], [0.1, 0.9]]),
                                                                            ["a"])}).check()
    elbo = InterruptedELBO(max_plate_nesting=1)
    objective = SVIObjective(bn.model, bn.guide, elbo)
    rows = bn.split_missing(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]))
    with pytest.raises(KeyboardInterrupt, match="Ctrl-C"), torch.autocast("cpu", dtype=torch.bfloat16):
        objective.loss("elbo", rows)
    assert not InterruptedELBO.armed
    assert "_get_trace" not in vars(elbo)
