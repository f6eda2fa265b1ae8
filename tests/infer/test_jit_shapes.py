"""SVIObjective under Pyro's JIT ELBOs on batches of several shapes: Pyro compiles once per number of arguments,
and a Bayes net's compiled ELBO failed on fit's shorter last batch; now one function is compiled per shape, and
every batch scores as under the eager ELBO."""

import functools
import warnings

import pyro
import pytest
import torch
from pyro.infer import JitTraceEnum_ELBO, TraceEnum_ELBO

from hybridpgm import fit
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import SVIObjective
from hybridpgm.infer.jit_shapes import SIGNATURE_KWARG, ShapeKeyedPrograms, batch_signature

# 10 rows: batches of 4 leave a last batch of 2; 'b' is partly missing (-1) in each batch, 'a' and 'c' complete
DATA = torch.tensor([[0, 1, 1], [1, -1, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1],
                     [0, -1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0], [0, -1, 1]])


def _chain() -> BayesNet:
    bn = BayesNet().add("a", cpd.Table([0.6, 0.4], learnable=True))
    bn.add("b", cpd.Table([[0.8, 0.2], [0.3, 0.7]], ["a"], learnable=True))
    return bn.add("c", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["b"], learnable=True))


@pytest.fixture(autouse=True)
def quiet_and_scoped():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with pyro.get_param_store().scope(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings, the deprecation of torch.jit.trace, the TrainingWarning
        yield
    torch.set_num_threads(n)


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


def test_the_signature_keys_on_shape_dtype_and_device_and_is_dropped_before_the_programs():
    x = torch.zeros(4, 3, dtype=torch.long)
    mask = torch.ones(4, 3, dtype=torch.bool)
    assert batch_signature((x, mask)) == batch_signature((x.clone(), mask.clone()))
    assert batch_signature((x, mask)) != batch_signature((x[:2], mask[:2]))
    assert batch_signature((x, mask)) != batch_signature((x.float(), mask))
    assert batch_signature((x, None)) == (((4, 3), torch.long, x.device), "NoneType")
    seen = []
    programs = ShapeKeyedPrograms(lambda *args, **kwargs: seen.append(kwargs), lambda *args, **kwargs: None)
    programs.model(x, num_samples=3, **{SIGNATURE_KWARG: batch_signature((x,))})
    assert seen == [{"num_samples": 3}]
