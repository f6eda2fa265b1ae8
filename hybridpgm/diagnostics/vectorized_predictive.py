"""The posterior predictive of :func:`~hybridpgm.diagnostics.from_pyro_svi` and
:func:`~hybridpgm.diagnostics.from_mcmc` with ``parallel=True``: one replicate per draw from one model run with
the draws stacked, where that draws from the same distribution as the draw-by-draw run.

By default each replicate :math:`\\tilde y_s \\sim p(y \\mid \\theta_s)` comes from its own run of the model with
its observations removed and the draw :math:`\\theta_s` held
(:func:`~hybridpgm.diagnostics.unconditioned.predict_per_draw`: :class:`pyro.infer.Predictive` on the
:func:`~hybridpgm.diagnostics.unconditioned.unconditioned` model, whose ``pyro.deterministic`` sites keep the
values the model computes, not re-drawn from their ``Delta`` as :func:`~pyro.poutine.uncondition` would).
:func:`predict_stacked` makes the :math:`S` runs one, with the draws stacked along an outer plate as
:mod:`~hybridpgm.diagnostics.vectorized_replay` stacks them for the log-likelihood (the deterministic sites kept
at the values the model computes from the stacked draws): each observed site is
drawn once for all draws, row :math:`s` from :math:`p(y \\mid \\theta_s)` (and from the
replicates of the sites drawn before it, as in the model: an autoregressive model's :math:`\\tilde y_t` follows
:math:`\\tilde y_{t-1}`).  The replicates have the same distribution as the default's, not the same values: one
call to a sampler for all draws consumes torch's random stream in another order.

It is tried only where the stacked log-likelihood replay was accepted (the model draws no random number given
its latents, has no enumerated discrete site, and passed the checks at the draws of
:func:`~hybridpgm.diagnostics.vectorized_replay.checked_rows`), and checked itself at the same draws: with each
checked draw :math:`\\theta_r` and its
stacked replicate :math:`\\tilde y_r` held, the draw-by-draw model must give each observed site the
log-density the stacked run gave it, :math:`\\log p(\\tilde y_r \\mid \\theta_r, \\ldots)`, to a relative
:data:`~hybridpgm.diagnostics.vectorized_replay.RTOL`; a replicate drawn from another draw's distribution fails
that almost surely.  Where any of it fails the stacked run's draws are undone (torch's generators put back) and
the caller runs the default, draw-by-draw :class:`~pyro.infer.Predictive`, which then gives the default's
replicates exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
from pyro import poutine

from hybridpgm.diagnostics.pointwise_log_lik import _Sites
from hybridpgm.diagnostics.unconditioned import unconditioned
from hybridpgm.diagnostics.vectorized_replay import _per_draw, _rng_states, checked_rows, draws_plate, matches, \
    stacked_draws
from hybridpgm.infer.particle_probe import keeping_rng_state

__all__ = ["predict_stacked"]


def _set_rng_states(states: list[torch.Tensor]) -> None:
    """Put back torch's generator states as :func:`~hybridpgm.diagnostics.vectorized_replay._rng_states` took
    them (the CPU's, then those of the CUDA devices initialised then)."""
    torch.set_rng_state(states[0])
    if len(states) > 1:
        torch.cuda.set_rng_state_all(states[1:])


def _replicates(value: torch.Tensor, num_draws: int, shape: torch.Size) -> torch.Tensor | None:
    """A stacked replicate as ``S x shape``, or ``None`` unless it is ``S x 1 ... 1 x shape``: one replicate per
    draw (a value without the draws' dim would be one replicate shared by all draws)."""
    if not isinstance(value, torch.Tensor) or value.dim() <= len(shape):
        return None
    return _per_draw(value, num_draws, shape)


def _stacked_replicates(model: Callable, draws: dict[str, torch.Tensor], sites: _Sites, model_trace, nesting: int,
                        num_draws: int, data_shapes: dict, args: tuple, kwargs: dict):
    """``(replicates, log_density)`` of one run of the unconditioned model on all draws: observed site -> ``S x
    data_shape`` replicates and ``S x log_prob_shape`` their log-densities, or ``None`` where they do not stack."""
    names = list(sites.latent)
    data = stacked_draws(draws, names, model_trace, nesting, num_draws)
    if data is None:
        return None
    stacked = draws_plate(num_draws, nesting)(poutine.condition(unconditioned(model), data=data))
    trace = poutine.trace(stacked).get_trace(*args, **kwargs)
    replicates, log_density = {}, {}
    for name in sites.observed:
        node = trace.nodes[name]
        replicates[name] = _replicates(node["value"], num_draws, data_shapes[name])
        own = model_trace.nodes[name]["fn"].log_prob(model_trace.nodes[name]["value"]).shape
        log_density[name] = _per_draw(node["fn"].log_prob(node["value"]), num_draws, own)
        if replicates[name] is None or log_density[name] is None:
            return None
    return replicates, log_density


def _reference_log_density(model: Callable, draws: dict[str, torch.Tensor], replicates: dict[str, torch.Tensor],
                           sites: _Sites, rows: list[int], args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
    """Observed site -> ``len(rows) x log_prob_shape``: the log-density of the stacked replicates of draws
    ``rows`` under the model run draw by draw, the draw and its replicates held."""
    out: dict[str, list[torch.Tensor]] = {n: [] for n in sites.observed}
    without_data = unconditioned(model)
    for row in rows:
        held = {**{n: draws[n][row] for n in sites.latent}, **{n: v[row] for n, v in replicates.items()}}
        trace = poutine.trace(poutine.condition(without_data, data=held)).get_trace(*args, **kwargs)
        for name in sites.observed:
            node = trace.nodes[name]
            out[name].append(node["fn"].log_prob(node["value"]))
    return {n: torch.stack(v) for n, v in out.items()}


def predict_stacked(model: Callable, draws: dict[str, torch.Tensor], sites: _Sites, model_trace, nesting: int,
                    num_draws: int, data_shapes: dict[str, torch.Size], args: tuple,
                    kwargs: dict) -> dict[str, torch.Tensor] | None:
    """One posterior predictive replicate per draw of each observed site, from one stacked run of the
    unconditioned model (see the module's notes), or ``None`` -- with torch's generators as they were -- where
    the replicates do not stack or fail the check; the caller then runs the draw-by-draw
    :class:`~pyro.infer.Predictive`.

    Call it only where :func:`~hybridpgm.diagnostics.vectorized_replay.replay_stacked` accepted the stacked
    log-likelihood replay of the same ``draws`` (no enumerated site, no random number drawn given the draws).

    :param draws: latent site -> ``S x site_shape`` draws (``sites.latent``).
    :param nesting: the model's plate nesting (the draws' plate goes at dim ``-nesting - 1``).
    :param data_shapes: observed site -> its data's ``batch_shape + event_shape``
        (:func:`~hybridpgm.diagnostics.pointwise_log_lik.observed_shape`).
    :returns: observed site -> ``S x data_shape`` replicates, in the dtype the draw-by-draw run gives.
    """
    if sites.discrete or not sites.observed:
        return None
    before = _rng_states()
    try:
        stacked = _stacked_replicates(model, draws, sites, model_trace, nesting, num_draws, data_shapes, args,
                                      kwargs)
        if stacked is not None:
            replicates, log_density = stacked
            rows = checked_rows(draws, num_draws)
            with keeping_rng_state():
                reference = _reference_log_density(model, draws, replicates, sites, rows, args, kwargs)
            if all(matches(log_density, reference, row, index) for index, row in enumerate(rows)):
                return replicates
    except Exception:  # noqa: BLE001 -- a model that does not take stacked draws is predicted draw by draw
        pass
    _set_rng_states(before)
    return None
