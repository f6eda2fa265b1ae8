"""SVIObjective under Pyro's JIT ELBOs on batches of several shapes: Pyro compiles once per number of arguments,
and a Bayes net's compiled ELBO failed on fit's shorter last batch; now one function is compiled per shape, and
every batch scores as under the eager ELBO."""

import functools
import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceMeanField_ELBO, Trace_ELBO, TraceEnum_ELBO
from pyro.nn import PyroModule, pyro_method

from hybridpgm import fit
from hybridpgm.errors import TrainingWarning
from hybridpgm.generative import VAE
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import SVIObjective
from hybridpgm.infer import jit_shapes
from hybridpgm.infer.jit_shapes import ShapeKeyedPrograms, batch_signature, elbo_signature, kwargs_signature
from tests.infer.jit_scope import quiet_and_scoped  # noqa: F401 (autouse fixture)

# 10 rows: batches of 4 leave a last batch of 2; 'b' is partly missing (-1) in each batch, 'a' and 'c' complete
DATA = torch.tensor([[0, 1, 1], [1, -1, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1],
                     [0, -1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0], [0, -1, 1]])


def _chain() -> BayesNet:
    bn = BayesNet().add("a", cpd.Table([0.6, 0.4], learnable=True))
    bn.add("b", cpd.Table([[0.8, 0.2], [0.3, 0.7]], ["a"], learnable=True))
    return bn.add("c", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["b"], learnable=True))


def _loss_and_grads(objective, batch):
    params = objective.players()["elbo"]
    loss = objective.loss("elbo", batch)
    return loss.detach(), torch.autograd.grad(loss, params)


def test_each_batch_shape_scores_as_under_the_eager_elbo():
    """Before: the last batch of 2 rows raised torch's raw RuntimeError "The expanded size of the tensor (4) must
    match the existing size (2)" from the function compiled on 4 rows."""
    bn = _chain()
    jit = SVIObjective(bn.model, bn.guide, JitTraceEnum_ELBO(max_plate_nesting=1), module=bn)
    eager = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1), module=bn)
    for rows in (slice(0, 4), slice(8, 10), slice(4, 8), slice(0, 2)):
        loss, grads = _loss_and_grads(jit, DATA[rows])
        want_loss, want_grads = _loss_and_grads(eager, DATA[rows])
        assert torch.isfinite(want_loss)
        torch.testing.assert_close(loss, want_loss, rtol=0, atol=1e-6)
        for grad, want in zip(grads, want_grads):
            torch.testing.assert_close(grad, want, rtol=0, atol=1e-6)


# 'b' missing in every row: each micro-batch of 1 or 2 rows has the missing pattern the compiled function keeps
HIDDEN_B = torch.cat([DATA[:, :1], torch.full((10, 1), -1), DATA[:, 2:]], 1)


@pytest.mark.parametrize("accumulate, data", [(1, DATA), (2, HIDDEN_B)])
def test_fit_takes_a_shorter_last_batch_under_a_jit_elbo(accumulate, data):
    """fit(batch_size=4) on 10 rows, two epochs (micro-batches of 2, and of 1 in the last batch, with accumulate=2):
    every step's loss, and the trained tables, as with TraceEnum_ELBO (before: the RuntimeError of the last
    batch)."""
    results = {}
    for name, elbo in (("jit", JitTraceEnum_ELBO(max_plate_nesting=1)), ("eager", TraceEnum_ELBO(max_plate_nesting=1))):
        bn = _chain()
        result = fit(SVIObjective(bn.model, bn.guide, elbo, module=bn), data, batch_size=4, epochs=2,
                     accumulate=accumulate, shuffle=False, progress=False,
                     optim=functools.partial(torch.optim.Adam, lr=0.05))
        results[name] = (result.history.loss["elbo"], [p.detach().clone() for p in bn.parameters()])
    (jit_losses, jit_params), (losses, params) = results["jit"], results["eager"]
    assert len(losses) == 6
    torch.testing.assert_close(torch.tensor(jit_losses), torch.tensor(losses), rtol=0, atol=1e-6)
    for got, want in zip(jit_params, params):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_the_signature_keys_on_shape_dtype_and_device_and_the_keyword_arguments():
    x = torch.zeros(4, 3, dtype=torch.long)
    mask = torch.ones(4, 3, dtype=torch.bool)
    assert batch_signature((x, mask)) == batch_signature((x.clone(), mask.clone()))
    assert batch_signature((x, mask)) != batch_signature((x[:2], mask[:2]))
    assert batch_signature((x, mask)) != batch_signature((x.float(), mask))
    assert batch_signature((x, None)) == (((4, 3), torch.long, x.device), "NoneType")
    assert kwargs_signature({"n": 3, "sizes": [1, 2]}) == kwargs_signature({"sizes": [1, 2], "n": 3})
    assert kwargs_signature({"n": 3}) != kwargs_signature({"n": 4})
    assert kwargs_signature({"opts": {"a": [1]}}) == (("opts", (("a", (1,)),)),)


class _Recorder(PyroModule):
    """A Gaussian mean with a model and an empty guide that record the keyword arguments they are given."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    @pyro_method
    def model(self, x, **kwargs):
        self.seen.append(sorted(kwargs))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(self.loc, 1.0), obs=x)

    @pyro_method
    def guide(self, x, **kwargs):
        self.seen.append(sorted(kwargs))


def test_an_elbo_already_compiled_on_the_raw_programs_is_left_alone():
    """Before: after one plain SVI step with the same JitTrace_ELBO, SVIObjective's loss raised "VAE.guide() got an
    unexpected keyword argument '_hybridpgm_batch_signature'" (the old code gave 3.9712): Pyro's compiled function
    keeps the programs of its first call, and those got the batch's signature.  Now the loss is the eager
    ELBO's, the programs get the keyword arguments given and no other, and the ELBO's own compiled function (the
    plain SVI's) is the one it had."""
    torch.manual_seed(0)
    x = (torch.rand(8, 6) < 0.5).float()
    vae = VAE(6, z_dim=2, hidden=[8])
    elbo = JitTrace_ELBO()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), elbo)
    svi.step(x)
    compiled = vars(elbo)["_loss_and_surrogate_loss"]
    jit = SVIObjective(vae.model, vae.guide, elbo, module=vae)
    eager = SVIObjective(vae.model, vae.guide, Trace_ELBO(), module=vae)
    jit.loss("elbo", x)  # compiles (drawing more random numbers than a replay)
    torch.manual_seed(1)
    loss = jit.loss("elbo", x)
    torch.manual_seed(1)
    torch.testing.assert_close(loss, eager.loss("elbo", x), rtol=0, atol=1e-6)
    assert vars(elbo)["_loss_and_surrogate_loss"] is compiled
    svi.step(x)

    recorder = _Recorder()
    elbo = JitTrace_ELBO()
    SVI(recorder.model, recorder.guide, pyro.optim.Adam({"lr": 1e-3}), elbo).step(torch.zeros(4), scale=2)
    recorder.seen.clear()
    SVIObjective(recorder.model, recorder.guide, elbo, module=recorder, scale=2).loss("elbo", torch.zeros(4))
    assert recorder.seen and all(kwargs == ["scale"] for kwargs in recorder.seen)


class _ExtraForSmallBatches(PyroModule):
    """A Gaussian whose mean is a sum of 7 linear maps, and on batches of 2 rows or fewer one more: Pyro's
    ``CompiledFunction`` kept one list of parameter names for all its compiled shapes, made anew for each shape."""

    def __init__(self):
        super().__init__()
        self.maps = torch.nn.ModuleList(torch.nn.Linear(1, 1) for _ in range(7))
        self.extra = torch.nn.Linear(1, 1)
        with torch.no_grad():
            for i, layer in enumerate([*self.maps, self.extra]):
                layer.weight.fill_(0.01 * (i + 1))
                layer.bias.fill_(0.01 * i)

    @pyro_method
    def model(self, x):
        layers = list(self.maps) + ([self.extra] if x.shape[0] <= 2 else [])
        mean = sum(layer(torch.ones(1, 1)).squeeze() * (i + 1) for i, layer in enumerate(layers))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mean, 1.0), obs=x)

    @pyro_method
    def guide(self, x):
        pass


def test_a_shape_compiled_earlier_keeps_its_own_parameters():
    """Before: replaying the 4-row function after the 2-row one was compiled fed it the 2-row parameter list
    (torch's raw "compiled() expected at most 15 argument(s) but received 17" here; with the same parameters read
    in another order, a silently wrong loss: 31183.81 against the eager 31685.25)."""
    module = _ExtraForSmallBatches()
    x = torch.randn(6, generator=torch.Generator().manual_seed(0))
    jit = SVIObjective(module.model, module.guide, JitTraceEnum_ELBO(max_plate_nesting=1), module=module,
                       per_example=False)
    eager = SVIObjective(module.model, module.guide, TraceEnum_ELBO(max_plate_nesting=1), module=module,
                         per_example=False)
    params = list(module.parameters())
    for rows in (slice(0, 4), slice(4, 6), slice(0, 4), slice(4, 6), slice(1, 5)):
        loss, want_loss = jit.loss("elbo", x[rows]), eager.loss("elbo", x[rows])
        torch.testing.assert_close(loss, want_loss, rtol=0, atol=1e-5)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for grad, want in zip(grads, torch.autograd.grad(want_loss, params, allow_unused=True)):
            assert (grad is None) == (want is None)  # the extra map is unused on 4 rows
            if want is not None:
                torch.testing.assert_close(grad, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("jit_elbo", [JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceMeanField_ELBO])
def test_fit_compiles_once_per_batch_shape(jit_elbo, monkeypatch):
    """10 rows, batches of 4 in micro-batches of 2 (accumulate=2), two epochs: micro-batches of 2 rows and of 1 (the
    last batch), so 2 compilations in 6 steps (before: JitTraceMeanField_ELBO compiled on every call, 12)."""
    traced = []
    trace = torch.jit.trace
    monkeypatch.setattr(torch.jit, "trace", lambda *args, **kwargs: traced.append(1) or trace(*args, **kwargs))
    torch.manual_seed(0)
    vae = VAE(6, z_dim=2, hidden=[8])
    x = (torch.rand(10, 6) < 0.5).float()
    result = fit(SVIObjective(vae.model, vae.guide, jit_elbo(), module=vae), x, batch_size=4, epochs=2,
                 accumulate=2, shuffle=False, progress=False)
    assert len(result.history.loss["elbo"]) == 6
    assert len(traced) == 2


def test_many_shapes_keep_the_last_few_compiled_and_warn_once(monkeypatch):
    monkeypatch.setattr(jit_shapes, "MAX_SHAPES", 3)
    recorder = _Recorder()
    programs = ShapeKeyedPrograms(recorder.model, recorder.guide, JitTrace_ELBO())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rows in (1, 2, 3, 1, 4, 1, 2):
            loss = programs.differentiable_loss((torch.zeros(rows),), {})
            torch.testing.assert_close(loss, torch.tensor(0.5 * rows * math.log(2 * math.pi)))
    ours = [w for w in caught if issubclass(w.category, TrainingWarning)]
    assert len(ours) == 1 and "more than 3 shapes" in str(ours[0].message)
    assert [key[0][0][0] for key in programs.copies] == [(4,), (1,), (2,)]
    assert programs.compilations == 5  # 1, 2, 3, 4, and 2 again (dropped for 4; 1, used since, was kept)


def test_an_objective_that_compiled_under_a_jit_elbo_pickles_and_deep_copies():
    """Review: after a JIT fit, ``pickle`` and ``copy.deepcopy`` of the objective failed on torch's traced
    functions; they are left out of its state and made again on the next batch: a copy trains on as the
    original does."""
    import copy
    import pickle

    bn = _chain()
    objective = SVIObjective(bn.model, bn.guide, JitTraceEnum_ELBO(max_plate_nesting=1), module=bn)
    fit(objective, DATA, batch_size=4, epochs=1, shuffle=False, progress=False)
    twins = [copy.deepcopy(objective), pickle.loads(pickle.dumps(objective))]
    assert objective._jit_programs is not None and all(twin._jit_programs is None for twin in twins)
    losses = [fit(o, DATA, batch_size=4, epochs=1, shuffle=False, progress=False, seed=1).history.loss["elbo"]
              for o in (objective, *twins)]
    for twin_losses in losses[1:]:
        torch.testing.assert_close(torch.tensor(twin_losses), torch.tensor(losses[0]), rtol=0, atol=1e-6)


def test_a_setting_of_the_elbo_changed_after_it_compiled_compiles_anew():
    """Before: ``elbo.num_particles = 4`` after a step went unseen (the private copy, compiled with 1 particle, kept
    it): the loss was the one-particle loss, 4.6313, where ``Trace_ELBO(num_particles=4)`` gives 4.4228 under the
    same seed.  Now the ELBO's settings are part of the copy's key: the change compiles anew, going back does not."""
    torch.manual_seed(0)
    x = (torch.rand(8, 6) < 0.5).float()
    vae = VAE(6, z_dim=2, hidden=[8])
    elbo = JitTrace_ELBO()
    jit = SVIObjective(vae.model, vae.guide, elbo, module=vae)
    jit.loss("elbo", x)
    for particles in (4, 1):
        elbo.num_particles = particles
        jit.loss("elbo", x)  # compiles for 4 (drawing more random numbers than a replay); replays for 1
        eager = SVIObjective(vae.model, vae.guide, Trace_ELBO(num_particles=particles), module=vae)
        torch.manual_seed(1)
        loss = jit.loss("elbo", x)
        torch.manual_seed(1)
        torch.testing.assert_close(loss, eager.loss("elbo", x), rtol=0, atol=1e-6)
    assert jit._jit_programs.compilations == 2
    settings = elbo_signature(elbo)
    for name, value in (("num_particles", 3), ("vectorize_particles", True), ("max_plate_nesting", 2)):
        changed = JitTrace_ELBO()
        setattr(changed, name, value)
        assert elbo_signature(changed) != settings, name
    assert elbo_signature(JitTrace_ELBO()) == settings
