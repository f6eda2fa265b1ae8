"""The replay of :func:`~hybridpgm.diagnostics.pointwise_log_lik.replay_draws` in one model run for all draws,
where that gives the same numbers: :func:`~hybridpgm.diagnostics.from_pyro_svi` and
:func:`~hybridpgm.diagnostics.from_mcmc` with ``parallel=True`` (the latter through :func:`replay_stacked`).

:func:`replay_draws` runs the model once per draw :math:`\\theta_s`, :math:`s = 1, \\ldots, S`, conditioned on
it.  Where the conditioned model draws no random number (:func:`draws_no_random_numbers`: no discrete site left
to :func:`~pyro.infer.infer_discrete`, no dropout), each run is a deterministic function of :math:`\\theta_s`, so
the ``S`` runs can be one run with the draws stacked along an outer :func:`pyro.plate` of size ``S`` left of the
model's plates (as :class:`pyro.infer.Predictive` does with ``parallel=True``): each latent of shape
``batch_shape + event_shape`` is passed as ``S x 1 ... 1 x batch_shape x event_shape`` (ones up to the model's
plate nesting), and each deterministic value and pointwise log-likelihood comes back with ``S`` on the left.

A model need not be written for that: one that indexes, sums or reshapes a latent without regard for its
leading dims (``mu.sum()``, ``w @ x`` with a vector ``w``) fails or mixes the draws, which is why the caller
opts in, as for ``pyro.infer.Predictive(..., parallel=True)``.  As a safety net
:func:`replay_vectorized` gives ``None`` -- and its caller replays draw by draw -- where the stacked run raises,
returns a value whose shape is not ``S x 1 ... 1 x own_shape``, or differs from the draw-by-draw replay at one of
the draws of :func:`checked_rows` (compared with a relative tolerance of :data:`RTOL`, at which float rounding of
batched kernels passes and a mixed-up draw does not): the first and the last draw, per latent site the draws
holding its smallest and its largest entry (where a threshold taken from the largest draw, or a clamp at a
quantile of the draws, shows first), and :data:`RANDOM_ROWS` draws picked by a generator of their own (seeded
with :data:`CHECK_SEED`: the same rows for the same draws, and no stream of the caller's moves).  That is at most
:data:`MAX_CHECKED` model runs, whatever :math:`S`.  A model that mixes the draws in a way none of the checked
draws shows is not caught.
"""

from __future__ import annotations

import warnings
from typing import Callable

import pyro
import torch
from pyro import poutine

from hybridpgm.diagnostics.pointwise_log_lik import _masked_to_zero, _Sites, replay_draws
from hybridpgm.infer.particle_probe import keeping_rng_state
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["CHECK_SEED", "MAX_CHECKED", "RANDOM_ROWS", "RTOL", "checked_rows", "draws_no_random_numbers",
           "replay_parallel", "replay_stacked", "replay_vectorized", "stacked_draws"]

#: the relative tolerance at which the stacked run's checked draws must match the draw-by-draw replay
RTOL = 1e-6

#: draws checked at random (besides the first, the last and the extreme ones), and the seed of their generator
RANDOM_ROWS, CHECK_SEED = 4, 20240611

#: the most draws :func:`checked_rows` gives (each costs one draw-by-draw model run)
MAX_CHECKED = 16

_DRAWS_PLATE = "_hybridpgm_replay_draws"


def _rng_states() -> list[torch.Tensor]:
    """torch's generator states: the CPU's and those of the CUDA devices already initialised."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return [torch.get_rng_state(), *cuda]


def draws_no_random_numbers(fn: Callable[[], object]) -> tuple[bool, object]:
    """Run ``fn()`` and say whether it drew from torch's generators: ``(True, result)`` when their states are
    the same before and after.  Either way the generators are put back as they were, so the check moves no
    stream."""
    with keeping_rng_state():
        before = _rng_states()
        result = fn()
        after = _rng_states()
    return all(torch.equal(a, b) for a, b in zip(before, after)), result


def _per_draw(value: torch.Tensor, num_draws: int, shape: torch.Size) -> torch.Tensor | None:
    """``value`` of the stacked run as ``S x shape``, or ``None`` unless it is ``S x 1 ... 1 x shape`` (a value
    that does not depend on the draws, of ``shape`` alone, is the same in each)."""
    if not isinstance(value, torch.Tensor):
        return None
    if value.shape == shape:
        return value.expand((num_draws,) + tuple(shape))
    extra = value.dim() - len(shape)
    if extra < 1 or value.shape[extra:] != shape or value.shape[0] != num_draws or any(
            d != 1 for d in value.shape[1:extra]):
        return None
    return value.reshape((num_draws,) + tuple(shape))


def stacked_draws(draws: dict[str, torch.Tensor], names: list[str], model_trace, nesting: int,
                  num_draws: int) -> dict[str, torch.Tensor] | None:
    """Sites ``names``' ``S x site_shape`` ``draws`` laid out for the draws' plate at dim ``-nesting - 1``, or
    ``None`` where a site has batch dims outside every plate (the draws' plate would collide with them).

    Each is reshaped to ``S``, then ones up to the model's plate nesting, then its ``batch_shape x event_shape``."""
    data = {}
    for name in names:
        site = model_trace.nodes[name]
        own = site["value"].shape
        batch_dims = len(own) - site["fn"].event_dim
        if batch_dims > nesting:
            return None
        data[name] = draws[name].reshape((num_draws,) + (1,) * (nesting - batch_dims) + tuple(own))
    return data


def draws_plate(num_draws: int, nesting: int) -> pyro.plate:
    """The outer plate of size ``S`` that the draws are stacked along, left of the model's ``nesting`` plates."""
    return pyro.plate(_DRAWS_PLATE, num_draws, dim=-nesting - 1)


def checked_rows(draws: dict[str, torch.Tensor], num_draws: int) -> list[int]:
    """The draws at which a stacked run is compared with the draw-by-draw replay, in this order and each once, at
    most :data:`MAX_CHECKED`: the first and the last; per site of ``draws`` (``S x site_shape``), the draw
    holding its smallest entry and the one holding its largest (NaN entries left out); then :data:`RANDOM_ROWS`
    draws picked uniformly without replacement among the others by a
    :class:`torch.Generator` seeded with :data:`CHECK_SEED`, made here, so the rows depend on the draws alone and
    no stream of the caller's moves."""
    rows = dict.fromkeys([0, num_draws - 1])
    for value in draws.values():
        if len(rows) >= MAX_CHECKED or value.numel() == 0:
            break
        flat = value.reshape(num_draws, -1)
        flat = flat if flat.is_floating_point() else flat.to(torch.float64)
        nan = torch.isnan(flat)
        low, high = flat.masked_fill(nan, float("inf")).amin(dim=1), flat.masked_fill(nan, -float("inf")).amax(dim=1)
        rows.update(dict.fromkeys([int(low.argmin()), int(high.argmax())]))
    rows = list(rows)[:MAX_CHECKED]
    others = torch.ones(num_draws, dtype=torch.bool, device="cpu")  # host rows, whatever torch's default device
    others[rows] = False
    left = others.nonzero().flatten()
    take = min(RANDOM_ROWS, MAX_CHECKED - len(rows), len(left))
    if take > 0:
        picked = torch.randperm(len(left), generator=torch.Generator().manual_seed(CHECK_SEED), device="cpu")[:take]
        rows += [int(r) for r in left[picked]]
    return rows


def _stacked_run(model: Callable, draws: dict[str, torch.Tensor], sites: _Sites, model_trace, nesting: int,
                 num_draws: int, shapes: dict, args: tuple, kwargs: dict):
    """``(values, log_lik)`` of one model run on all draws, or ``None`` where the draws do not stack."""
    data = stacked_draws(draws, sites.latent, model_trace, nesting, num_draws)
    if data is None:
        return None
    stacked = draws_plate(num_draws, nesting)(poutine.condition(model, data=data))
    trace = poutine.trace(stacked).get_trace(*args, **kwargs)
    values, log_lik = {}, {}
    for name in sites.deterministic:
        values[name] = _per_draw(trace.nodes[name]["value"], num_draws, model_trace.nodes[name]["value"].shape)
    for name, site in sites.observed.items():
        node = trace.nodes[name]
        per_draw = _per_draw(node["fn"].log_prob(node["value"]), num_draws, shapes[name])
        log_lik[name] = None if per_draw is None else _masked_to_zero(site, per_draw)
    if any(v is None for v in [*values.values(), *log_lik.values()]):
        return None
    return values, log_lik


def matches(stacked: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], row: int, index: int) -> bool:
    """Whether ``stacked[n][row]`` equals ``reference[n][index]`` for each ``n`` of ``reference``: the same shape
    and dtype, and values to a relative :data:`RTOL` (NaN where NaN)."""
    return all(stacked[n][row].shape == v[index].shape and stacked[n][row].dtype == v.dtype
               and bool(torch.allclose(stacked[n][row], v[index], rtol=RTOL, atol=0.0, equal_nan=True))
               for n, v in reference.items())


def replay_vectorized(model: Callable, draws: dict[str, torch.Tensor], sites: _Sites, model_trace, nesting: int,
                      num_draws: int, first: tuple[dict, dict], args: tuple,
                      kwargs: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """:func:`~hybridpgm.diagnostics.pointwise_log_lik.replay_draws` of a model that draws no random number
    given its latents and has no enumerated discrete site (``sites.discrete`` empty), in one run, or ``None``
    where the draws do not stack (see the module's notes); the caller then replays draw by draw.

    :param draws: latent site -> ``S x site_shape`` draws (``sites.latent``).
    :param nesting: the model's plate nesting (the draws' plate goes at dim ``-nesting - 1``).
    :param first: ``replay_draws`` of the first draw alone (``1 x ...`` values and log-likelihoods), which the
        caller ran to check that the model draws no random number
        (:func:`draws_no_random_numbers`); the other draws of :func:`checked_rows` are replayed here, and all
        are compared.
    :returns: ``(values, log_lik)`` as :func:`replay_draws` gives them.
    """
    if sites.discrete:
        return None
    observed = sites.observed
    shapes = {n: model_trace.nodes[n]["fn"].log_prob(model_trace.nodes[n]["value"]).shape for n in observed}
    rows = checked_rows(draws, num_draws)
    with keeping_rng_state():  # no stream moves here, also where a model draws in some code path only
        try:
            stacked = _stacked_run(model, draws, sites, model_trace, nesting, num_draws, shapes, args, kwargs)
        except Exception:  # noqa: BLE001 -- a model that does not take stacked draws is replayed draw by draw
            return None
        if stacked is None:
            return None
        checks = [(0, first, 0)]  # (row of the stack, draw-by-draw replay, its index there)
        if len(rows) > 1:
            others = replay_draws(model, {n: v[rows[1:]] for n, v in draws.items()}, sites, model_trace,
                                  -1 - nesting, len(rows) - 1, args, kwargs)
            checks += [(row, others, index) for index, row in enumerate(rows[1:])]
    for row, reference, index in checks:
        if not all(matches(s, r, row, index) for s, r in zip(stacked, reference)):
            return None
    return stacked


def replay_stacked(model: Callable, draws: dict[str, torch.Tensor], sites: _Sites, model_trace, nesting: int,
                   num_draws: int, args: tuple,
                   kwargs: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """:func:`replay_vectorized` where the model has no enumerated discrete site and draws no random number given
    the first draw (:func:`draws_no_random_numbers`), or ``None`` where any of that fails (the caller replays draw
    by draw)."""
    if sites.discrete:
        return None
    fast, first = draws_no_random_numbers(lambda: replay_draws(
        model, {n: v[:1] for n, v in draws.items()}, sites, model_trace, -1 - nesting, 1, args, kwargs))
    return replay_vectorized(model, draws, sites, model_trace, nesting, num_draws, first, args,
                             kwargs) if fast else None


def replay_parallel(model: Callable, draws: dict[str, torch.Tensor], sites: _Sites, model_trace, nesting: int,
                    num_draws: int, args: tuple,
                    kwargs: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Deprecated (it warns with a :class:`FutureWarning` when called, and is removed after one release): nothing in
    hybridpgm calls it; call :func:`replay_stacked` and, where it gives ``None``,
    :func:`~hybridpgm.diagnostics.pointwise_log_lik.replay_draws` with ``-1 - nesting``, which is all it does.

    :func:`~hybridpgm.diagnostics.pointwise_log_lik.replay_draws` of ``draws`` in one stacked run
    (:func:`replay_stacked`) where the model has no enumerated discrete site, draws no random number given the
    first draw (:func:`draws_no_random_numbers`) and the stacked run passes :func:`replay_vectorized`'s checks;
    draw by draw otherwise.  In the first case one model run per draw of :func:`checked_rows` (at most
    :data:`MAX_CHECKED`) and the stacked run, whatever the number of draws :math:`S`; :math:`S` more where the
    stacked run is refused.

    :param draws: latent site -> ``S x site_shape`` draws (``sites.latent``).
    :param nesting: the model's plate nesting (the draws' plate goes at dim ``-nesting - 1``, enumeration left of
        the plates).
    :returns: ``(values, log_lik)`` as :func:`replay_draws` gives them.
    """
    warnings.warn("hybridpgm.diagnostics.vectorized_replay.replay_parallel is deprecated and will be removed after "
                  "one release: call replay_stacked(...) and, where it gives None, hybridpgm.diagnostics."
                  "pointwise_log_lik.replay_draws(model, draws, sites, model_trace, -1 - nesting, num_draws, args, "
                  "kwargs), which is all it does", FutureWarning, stacklevel=users_stacklevel())
    stacked = replay_stacked(model, draws, sites, model_trace, nesting, num_draws, args, kwargs)
    if stacked is not None:
        return stacked
    return replay_draws(model, draws, sites, model_trace, -1 - nesting, num_draws, args, kwargs)
