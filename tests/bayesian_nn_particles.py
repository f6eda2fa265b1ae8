"""The vectorized-particles check shared by the BayesianRegressor tests (``tests/test_bayesian_nn_plates.py``,
``tests/test_bayesian_nn_reads.py``): Pyro's ``Trace_ELBO(vectorize_particles=True)`` loss, and the same estimate
from each particle's model run alone."""

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal


def vectorized_and_in_turn(model, x, y, names, num_particles=4, seed=3):
    """``(loss, in_turn, traces)`` for an ``AutoNormal`` guide of ``model`` (its parameters in a param store
    scope of their own, no gradients): ``loss`` is ``Trace_ELBO(num_particles, vectorize_particles=True,
    max_plate_nesting=1).loss`` after ``pyro.set_rng_seed(seed)``; ``in_turn`` the mean over the guide's particles
    of the same seed of :math:`\\log q(w) - \\log p(w) - \\log p(y \\mid w)`, each particle's model conditioned on
    its draw of the weight sites ``names`` and run alone; ``traces`` those model traces, one per particle.

    :param model: the model, called as ``model(x, y)``.
    :param x: the inputs.
    :param y: the targets.
    :param names: the weight sites a particle's model draws.
    :param num_particles: the particles.
    :param seed: the seed of both the vectorized and the one-at-a-time guide draws."""
    with pyro.get_param_store().scope(), torch.no_grad():
        guide = AutoNormal(model)
        guide(x, y)
        pyro.set_rng_seed(seed)
        loss = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1).loss(
            model, guide, x, y)
        pyro.set_rng_seed(seed)
        with pyro.plate("num_particles_vectorized", num_particles, dim=-2):
            guide_trace = poutine.trace(guide).get_trace(x, y)
        guide_trace.compute_log_prob()
        total, traces = 0.0, []
        for p in range(num_particles):
            draw = {n: guide_trace.nodes[n]["value"][p, 0] for n in names}
            model_trace = poutine.trace(poutine.condition(model, draw)).get_trace(x, y)
            traces.append(model_trace)
            log_q = sum(site["log_prob"][p, 0] for site in guide_trace.nodes.values() if site["type"] == "sample")
            log_p = sum(model_trace.nodes[n]["fn"].log_prob(draw[n]) for n in names)
            total += float(log_q - log_p - model_trace.nodes["y"]["fn"].log_prob(y).sum())
    return loss, total / num_particles, traces
