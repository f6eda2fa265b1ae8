"""SVIObjective's gradients under Pyro's JIT ELBOs equal the eager twin's, batch by batch and in fit's first step.

Before: Pyro's ``JitTrace_ELBO.differentiable_loss`` returned ``loss + (surrogate - surrogate.detach())`` with a
traced ``loss`` that carries a gradient, so a VAE's gradients were twice ``Trace_ELBO``'s (``decoder.2.bias``
``[5.4003, -1.5071, ...]`` against ``[2.7001, -0.7535, ...]``) and a sigmoid belief net's (score-function latents)
were wrong; ``JitTraceMeanField_ELBO`` compiled again on every call (drawing the compilation's random numbers too).
"""

import copy
import functools

import pytest
import torch
from pyro.infer import (JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceMeanField_ELBO, Trace_ELBO, TraceEnum_ELBO,
                        TraceMeanField_ELBO)

from hybridpgm import fit
from hybridpgm.generative import VAE, SigmoidBeliefNet
from hybridpgm.infer import SVIObjective
from tests.infer.jit_scope import quiet_and_scoped  # noqa: F401 (autouse fixture)

X = torch.randint(0, 2, (10, 6), generator=torch.Generator().manual_seed(1)).float()

#: (model family, JIT ELBO, its eager twin); the mean-field ELBO needs reparameterized latents (not the SBN's)
CASES = [("vae", JitTrace_ELBO, Trace_ELBO), ("vae", JitTraceEnum_ELBO, TraceEnum_ELBO),
         ("vae", JitTraceMeanField_ELBO, TraceMeanField_ELBO),
         ("sbn", JitTrace_ELBO, Trace_ELBO), ("sbn", JitTraceEnum_ELBO, TraceEnum_ELBO)]


def _model(family):
    torch.manual_seed(0)
    return VAE(6, z_dim=2, hidden=[8]) if family == "vae" else SigmoidBeliefNet([6, 3, 2])


def _loss_and_grads(objective, batch, seed):
    torch.manual_seed(seed)
    loss = objective.loss("elbo", batch)
    return loss.detach(), torch.autograd.grad(loss, objective.players()["elbo"])


@pytest.mark.parametrize("family, jit_elbo, eager_elbo", CASES)
def test_each_batch_has_the_eager_elbos_loss_and_gradients(family, jit_elbo, eager_elbo):
    model = _model(family)
    jit = SVIObjective(model.model, model.guide, jit_elbo(), module=model)
    eager = SVIObjective(model.model, model.guide, eager_elbo(), module=model)
    for rows in (slice(0, 4), slice(8, 10)):  # compile both shapes: the compiling call draws more random numbers
        jit.loss("elbo", X[rows])
    for seed, rows in enumerate((slice(0, 4), slice(8, 10), slice(4, 8))):
        loss, grads = _loss_and_grads(jit, X[rows], seed)
        want_loss, want_grads = _loss_and_grads(eager, X[rows], seed)
        torch.testing.assert_close(loss, want_loss, rtol=0, atol=1e-5)
        for grad, want in zip(grads, want_grads):
            torch.testing.assert_close(grad, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family, jit_elbo, eager_elbo", CASES)
def test_fits_first_step_moves_the_parameters_as_the_eager_elbo(family, jit_elbo, eager_elbo):
    """One SGD step of lr 1 (the parameters move by minus the gradient), from the same parameters and seed; the
    JIT objective is compiled on a batch of that shape first, so that the step replays the compiled function and
    draws what the eager step draws."""
    model = _model(family)
    start = copy.deepcopy(model.state_dict())
    moved = {}
    for name, elbo in (("jit", jit_elbo()), ("eager", eager_elbo())):
        model.load_state_dict(start)
        objective = SVIObjective(model.model, model.guide, elbo, module=model)
        if name == "jit":
            objective.loss("elbo", X[:4])
        fit(objective, X[:4], batch_size=4, max_steps=1, shuffle=False, seed=3, progress=False,
            optim=functools.partial(torch.optim.SGD, lr=1.0))
        moved[name] = {key: value - start[key] for key, value in model.state_dict().items()}
    assert any(bool(step.abs().max() > 1e-3) for step in moved["eager"].values())
    for key, step in moved["eager"].items():
        torch.testing.assert_close(moved["jit"][key], step, rtol=0, atol=1e-5)
