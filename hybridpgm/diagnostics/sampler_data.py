"""ArviZ data of sampler runs: :func:`from_mcmc` (a :class:`pyro.infer.MCMC` run; the groups that replay its model
come from :mod:`~hybridpgm.diagnostics.mcmc_replay`) and :func:`from_importance` (importance or AIS log-weights,
optional draws resampled by :mod:`~hybridpgm.diagnostics.importance_resampling`)."""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import pyro
import torch

from hybridpgm.checks import as_integer, flag, seed_of, torch_readable
from hybridpgm.diagnostics.arviz_data import make_inference_data
from hybridpgm.diagnostics.check_vi import PSIS_MIN_DRAWS, pareto_khat
from hybridpgm.diagnostics.importance_resampling import RESAMPLING, check_log_weights, resample_indices
from hybridpgm.diagnostics.masked_data import UNOBSERVED
from hybridpgm.diagnostics.mcmc_divergences import divergent_draws
from hybridpgm.diagnostics.mcmc_replay import mcmc_data_groups
from hybridpgm.diagnostics.svi_data import _one_draw_warning
from hybridpgm.errors import ConfigError, DataError, DiagnosticsWarning
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.rng_scope import fixed_rng
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["from_importance", "from_mcmc"]


@keyword_only_soon("log_likelihood")
def from_mcmc(mcmc: pyro.infer.MCMC, *, log_likelihood: bool = True, model_args: Sequence[Any] | None = None,
              model_kwargs: Mapping[str, Any] | None = None, posterior_predictive: bool = False,
              generator: torch.Generator | None = None, parallel: bool = False):
    """ArviZ data of a :class:`pyro.infer.MCMC` run (any kernel, hybridpgm's :class:`~hybridpgm.infer.Gibbs`
    included), as ``arviz.from_pyro`` gives under ArviZ 0.x (ArviZ 1.x has none).  The groups hold:

    * ``posterior`` (``C x D x site_shape``, ``C`` chains of ``D`` draws, chains kept in order, for
      ``az.rhat``): the sites of :meth:`~pyro.infer.MCMC.get_samples` (``group_by_chain=True``);
    * ``log_likelihood`` (``C x D x log_prob_shape``) and ``observed_data``: one variable per observed site that holds
      data (as in :func:`~hybridpgm.diagnostics.from_pyro_svi`: no ``pyro.factor``, ``pyro.deterministic`` or
      placeholder site), for ``az.loo`` (and ``az.waic`` under ArviZ 0.x; ArviZ 1.x has only ``loo``) and
      ``az.compare``.  The log-likelihood of draw :math:`\\theta_{c,d}` is :math:`\\log p(y_n \\mid \\theta_{c,d})` per
      element :math:`n` of the site's plates, computed by running the kernel's model on its arguments (``model_args``,
      ``model_kwargs``) conditioned on the draw (:func:`~hybridpgm.diagnostics.pointwise_log_lik.replay_draws`, the code
      of ``from_pyro_svi``): a discrete site the model enumerates and the sampler summed out (NUTS and HMC with
      ``infer={"enumerate": "parallel"}``) is summed out of its plate's likelihood where it is local to the data (shared
      by an inner plate's elements, the unit is the point: ``N x 1`` for ``N x F`` data, see the notes of
      :mod:`~hybridpgm.diagnostics.pointwise_log_lik`), and drawn from its conditional posterior where it is global.  A
      scalar ``obs=`` broadcast across a plate is stored broadcast, one value per plate element. An observed placeholder
      site (the evidence of :meth:`MarkovNet.model <hybridpgm.graphs.MarkovNet.model>` run by
      :class:`~hybridpgm.infer.Gibbs`: a uniform ``Categorical`` whose likelihood lies in ``pyro.factor`` sites) is left
      out with a :class:`~hybridpgm.errors.DiagnosticsWarning` naming it, as ``from_pyro_svi`` leaves it out; a model
      that observes only such sites, or no site at all, gets neither group (nor ``posterior_predictive``).  A site
      observed in some entries only (Pyro's ``obs_mask``, a tensor ``poutine.mask``) holds the entries the model counts
      only, ``y[m]``, in these groups and ``posterior_predictive``
      (:func:`~hybridpgm.diagnostics.masked_data.data_groups`), as in ``from_pyro_svi``: named ``"<name>"`` for an
      ``obs_mask`` split, whose latent half ``"<name>_unobserved"`` the ``posterior`` reports as the node ``"<name>"``
      (the observed value where observed, the draw where missing), whenever the kernel has a model;
    * ``posterior_predictive`` (``C x D x obs_shape``, with ``posterior_predictive=True``): one replicate
      :math:`\\tilde y_{c,d} \\sim p(y \\mid \\theta_{c,d})` of each observed site (with ``observed_data``)
      per draw, from :class:`pyro.infer.Predictive` on the model with its observations removed, its
      ``pyro.deterministic`` sites kept at their computed values
      (:func:`~hybridpgm.diagnostics.unconditioned.unconditioned`), and the draws (and discrete sites) held, for
      ``az.plot_ppc`` (ArviZ 0.x; arviz-plots' under 1.x) and other posterior predictive checks;
    * ``sample_stats.diverging`` (``C x D`` bool), when the kernel reports divergences (:class:`~pyro.infer.NUTS`,
      :class:`~pyro.infer.HMC`): true at the draws whose trajectory diverged after warmup, as
      ``az.plot_trace`` and ``az.summary`` expect (read without Pyro's R-hat and ESS, so a run of fewer than 4
      draws per chain is read too: :func:`~hybridpgm.diagnostics.mcmc_divergences.divergent_draws`).

    For a model with enumerated or masked sites use this converter, not ``arviz.from_pyro``: ArviZ's vectorized
    trace *samples* an enumerated discrete site instead of summing it out of its children's log-likelihood, and
    lists a masked site's missing entries as data (a ``BayesNet`` prior with missing entries, 4 points: ArviZ
    gave ``[-1.03, -1.14, -9.21, -2.59]`` for one draw where the exact, and this, is ``[-1.25, -1.24, -2.02,
    -2.07]``; see :doc:`/pyro_native`, "ArviZ").

    Replaying the model costs one model run per draw (``C * D`` in all), and as many again for the
    posterior predictive; the draws are taken as they are, the model's buffers are left alone and no gradient
    is recorded.  With ``parallel=True`` the log-likelihood of all draws comes from one run with the ``C * D``
    draws stacked along an outer plate (:func:`~hybridpgm.diagnostics.vectorized_replay.replay_vectorized`), as
    ``pyro.infer.Predictive(..., parallel=True)`` runs a model: the model must then treat a latent's leading dims
    as batch dims, never reducing or reading across them.  A model that raises, returns other shapes, or differs
    from the draw-by-draw replay at one of the draws of :func:`~hybridpgm.diagnostics.vectorized_replay.checked_rows`
    is replayed draw by draw instead, as is a model with an enumerated discrete site or one that draws a random
    number given the draws (dropout); a model that mixes the draws in a way none of those draws shows gives
    wrong numbers there, which is why it is not the default.  Where the log-likelihood was stacked, so is the
    posterior predictive (:func:`~hybridpgm.diagnostics.vectorized_predictive.predict_stacked`), whose
    replicates have the draw-by-draw replicates' distribution but not their values.
    The randomness of the replay (the discrete sites drawn from their conditional posterior, the predictive
    replicates) comes from one seed drawn from ``generator`` (from torch's global stream where it is ``None``):
    the same run and a generator seeded alike give the same groups (the same replicates as the default where
    ``parallel`` stacks none), and torch's global generators are left as they were but for that one draw.

    :param mcmc: the :class:`pyro.infer.MCMC` object, after :meth:`~pyro.infer.MCMC.run`.
    :param log_likelihood: ``False`` keeps ``posterior``, ``sample_stats`` (and ``posterior_predictive`` where
        asked for) only; also the case of a kernel built from a ``potential_fn`` (no model to replay).  Where
        the samples hold an ``obs_mask`` split's ``"<name>_unobserved"``, the model still runs once (for its
        mask and observed values) to report the node ``"<name>"``.
    :param model_args: the positional arguments the model was run with, ``mcmc.run(*model_args,
        **model_kwargs)`` (the names of Pyro's :func:`~pyro.infer.mcmc.util.initialize_model`).  Given either
        of the two, the other defaults to empty; given neither, they are read from the arguments the MCMC
        object recorded in its last ``run`` (a private attribute of Pyro's, as ``arviz.from_pyro`` reads it).
    :param model_kwargs: the keyword arguments of that call.
    :param posterior_predictive: add the ``posterior_predictive`` group (``C * D`` more model runs).
    :param generator: the replay's randomness: a CPU :class:`torch.Generator`, which the call advances by one draw
        (a seed for the replay), or ``None`` (the default) for that draw from torch's global stream, as every
        sampler of the library takes it.  An int seed still works, with a :class:`FutureWarning` (it was the
        default, ``0``, before: every call without a generator replayed alike); pass
        ``torch.Generator().manual_seed(seed)``.
    :param parallel: replay the model on all draws in one vectorized run for the log-likelihood and the
        posterior predictive (see above; ``False``: draw by draw).
    :raises DataError: for anything but an MCMC object (such as the dict of :meth:`~pyro.infer.MCMC.get_samples`:
        pass it to :func:`make_inference_data` as ``{"posterior": ...}`` with ``chain x draw`` leading dims), or
        an MCMC that has not run (no samples); an observed value that does not broadcast to its distribution's
        shape (see :func:`~hybridpgm.diagnostics.pointwise_log_lik.observed_shape`).
    :raises ConfigError: ``posterior_predictive`` that is not a bool; the model is to be replayed and neither
        ``model_args``/``model_kwargs`` are given nor the MCMC object records its run's arguments;
        ``model_args`` that is not a sequence or ``model_kwargs`` that is not a mapping;
        ``posterior_predictive`` for a kernel without a model (a ``potential_fn``); a ``generator`` that is
        neither a :class:`torch.Generator`, ``None`` nor an int seed in ``[-2**63, 2**64)`` (not a bool);
        ``parallel`` that is not a bool.
    :warns FutureWarning: an int ``generator`` (a seed), naming ``torch.Generator().manual_seed(seed)``.
    :warns DiagnosticsWarning: (a :class:`UserWarning`) when the model is replayed (``log_likelihood`` or
        ``posterior_predictive``) and observes placeholder sites: it names them, says they are left out of
        ``log_likelihood``, ``observed_data`` and ``posterior_predictive``, and points to
        ``mrf.distribution(...)`` (an observed site whose log-probability is the data's likelihood) or
        ``log_likelihood=False``; for a run of one draw in all (one chain of one draw: ``az.loo`` raises ArviZ's
        ``IndexError`` on it, and ``az.waic``, ``az.ess`` and ``az.rhat`` have nothing to estimate from).
    """
    if not isinstance(mcmc, pyro.infer.MCMC):
        raise DataError(f"from_mcmc takes a pyro.infer.MCMC run, got {type(mcmc).__name__}; for a dict of samples "
                        f"name -> chains x draws x ... use make_inference_data({{'posterior': samples}})")
    samples = mcmc.get_samples(group_by_chain=True)
    if not samples:
        raise DataError("the MCMC holds no samples: call mcmc.run(...) before from_mcmc")
    chains, draws = next(iter(samples.values())).shape[:2]
    if chains * draws == 1:
        warnings.warn(_one_draw_warning("from_mcmc"), DiagnosticsWarning, stacklevel=users_stacklevel())
    groups = {"posterior": samples}
    diverging = divergent_draws(mcmc, chains, draws)
    if diverging is not None:
        groups["sample_stats"] = {"diverging": diverging}
    model = getattr(mcmc.kernel, "model", None)
    if not isinstance(posterior_predictive, bool):
        raise ConfigError(f"from_mcmc posterior_predictive must be True (one replicate per posterior draw) or "
                          f"False, got {posterior_predictive!r}")
    if posterior_predictive and model is None:
        raise ConfigError(f"from_mcmc posterior_predictive replays the kernel's model, but the "
                          f"{type(mcmc.kernel).__name__} kernel was built from a potential_fn and has none")
    parallel = flag(parallel, "from_mcmc parallel")
    replay = log_likelihood or posterior_predictive
    if model is not None and (replay or any(n.endswith(UNOBSERVED) for n in samples)):
        args, kwargs = _model_inputs(mcmc, model_args, model_kwargs)
        seed = _seed(generator, "from_mcmc generator")
        with fixed_rng(next(iter(samples.values())).device, seed):
            groups["posterior"], replayed = mcmc_data_groups(model, samples, args, kwargs, posterior_predictive,
                                                             replay, parallel)
        if not log_likelihood:
            replayed.pop("log_likelihood", None)
        groups.update(replayed)
    return make_inference_data(groups)


def _model_inputs(mcmc: pyro.infer.MCMC, model_args, model_kwargs) -> tuple[tuple, dict]:
    """``(args, kwargs)`` to replay the model with: the ones given (either alone: the other empty), else the
    ones the MCMC object recorded in its last run (Pyro's private ``_args``/``_kwargs``)."""
    if model_args is None and model_kwargs is None:
        args, kwargs = getattr(mcmc, "_args", None), getattr(mcmc, "_kwargs", None)
        if args is None and kwargs is None:
            raise ConfigError("from_mcmc replays the kernel's model on each draw but this MCMC object does not "
                              "record the arguments of its run: pass them, from_mcmc(mcmc, model_args=(...), "
                              "model_kwargs={...}) as in mcmc.run(*model_args, **model_kwargs)")
        return tuple(args or ()), dict(kwargs or {})
    if model_args is not None and (isinstance(model_args, (str, bytes, Mapping))
                                   or not isinstance(model_args, Sequence)):
        raise ConfigError(f"from_mcmc model_args must be a tuple or list of the model's positional arguments, got "
                          f"{type(model_args).__name__}")
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise ConfigError(f"from_mcmc model_kwargs must be a dict of the model's keyword arguments, got "
                          f"{type(model_kwargs).__name__}")
    return tuple(model_args or ()), dict(model_kwargs or {})


def from_importance(log_weights: torch.Tensor, samples: Mapping[str, torch.Tensor] | None = None, *,
                    resampling: str = "systematic", psis: bool = True, generator: torch.Generator | None = None):
    """ArviZ data of an importance-sampling or AIS run: ``posterior`` holds draws from the (approximate)
    posterior, resampled from the weighted proposal draws; the proposal draws and their log-weights are kept in
    ``sample_stats``.

    Importance sampling draws :math:`x_1, \\ldots, x_K \\sim q` and weighs them by :math:`w_k \\propto
    p(x_k) / q(x_k)`; the self-normalised estimate of a posterior expectation is :math:`E_p[f] \\approx
    \\sum_k \\bar w_k f(x_k)`, :math:`\\bar w_k = w_k / \\sum_j w_j`.  Every ArviZ function reads the
    ``posterior`` group as equally weighted posterior draws (``az.summary``, ``az.hdi``,
    ``az.plot_posterior``), and ArviZ has no weights, so the proposal draws themselves are not put there (their
    ArviZ summary would be the proposal's, not the posterior's).  Instead ``posterior`` holds :math:`K` draws
    resampled from them with probabilities :math:`\\bar w_k` (sampling-importance-resampling, Rubin 1988;
    :func:`~hybridpgm.diagnostics.importance_resampling.resample_indices`), whose plain mean is unbiased for the
    weighted mean given the weights, with a conditional variance of at most about
    :math:`\\mathrm{Var}_{\\bar w}(f) / K` (that of multinomial resampling).  With ``psis`` and :math:`K \\ge`
    :data:`~hybridpgm.diagnostics.check_vi.PSIS_MIN_DRAWS` the weights are first Pareto-smoothed
    (:func:`~hybridpgm.diagnostics.pareto_khat`; Vehtari et al., *Pareto Smoothed Importance Sampling*, JMLR
    2024), which lowers the variance of the estimate where the weights have a heavy tail; a row PSIS cannot fit
    (k-hat :math:`\\pm\\infty`) keeps its raw weights.  Resampled draws repeat proposal draws, so
    ``az.ess`` and ``az.rhat`` of ``posterior`` describe the resampling, not the importance sampler: for that
    use k-hat (above 0.7 the weights are not to be trusted, see :func:`~hybridpgm.diagnostics.check_vi`) and the
    importance ESS :math:`(\\sum_k w_k)^2 / \\sum_k w_k^2`.

    The groups (one chain, :math:`K` draws):

    * ``posterior``: ``name -> 1 x K x ...`` resampled draws (only with ``samples``).  For ``K x N``
      log-weights each of the ``N`` targets has its own draws, ``samples`` ``name -> K x N x ...``, and column
      :math:`n` is resampled by its own weights;
    * ``sample_stats``: ``log_weight`` (``1 x K`` or ``1 x K x N``), the raw log-weights as given, and
      ``proposal_<name>`` (``1 x K x ...``), the proposal draws as given; both indexed by *proposal* draw, not
      by the resampled ``posterior`` draw.  k-hat per target, under ArviZ 0.x and 1.x alike:
      ``pareto_khat(idata["sample_stats"]["log_weight"].values[0].T)[1]`` (ArviZ 0.x's ``az.psislw`` refuses
      the ``(chain, draw)`` layout).

    :param log_weights: ``K`` or ``K x N`` log-weights (``N`` independent targets, e.g. data points), up to a
        constant per target.
    :param samples: optional proposal draws ``name -> K x ...`` (``K x N x ...`` for ``K x N`` log-weights;
        tensors, arrays or lists).  With ``K x N`` log-weights a draw's second dim is always read as the target:
        draws shared by all targets (``K x D``) must be given per target, ``x[:, None].expand(K, N, D)`` (a
        ``K x D`` tensor is refused unless ``D == N``, when it is read as one scalar per target).
    :param resampling: ``"systematic"`` (default; lower variance) or ``"multinomial"`` (independent picks).
    :param psis: Pareto-smooth the weights before resampling (when :math:`K \\ge 30`).
    :param generator: the resampling's randomness: a CPU :class:`torch.Generator`, which the call advances (the
        same input and a generator seeded alike give the same ``posterior``), or ``None`` (the default) for torch's
        global stream, as :func:`~hybridpgm.diagnostics.importance_resampling.resample_indices` and every sampler
        of the library take it.  An int seed still works, with a :class:`FutureWarning` (it was the default, ``0``,
        before: every call without a generator resampled alike, whatever torch's seed); ``seed`` draws as
        ``torch.Generator().manual_seed(seed)`` does.
    :raises DataError: for log-weights that are not floating point, not ``K`` or ``K x N`` with ``K >= 1``, or
        hold NaN or :math:`+\\infty` (:math:`-\\infty`, a zero weight, is allowed, but not a target whose
        weights are all zero when there are draws to resample); for draws whose count is not ``K`` (or whose
        second dim is not ``N``), or that are not numbers.
    :raises ConfigError: for a ``resampling`` other than the two above, or a ``generator`` that is neither a
        :class:`torch.Generator`, ``None`` nor an int seed in ``[-2**63, 2**64)`` (not a bool).
    :warns FutureWarning: an int ``generator`` (a seed), naming ``torch.Generator().manual_seed(seed)``.
    """
    log_weights = torch.as_tensor(torch_readable(log_weights))
    if log_weights.dim() not in (1, 2) or log_weights.shape[0] == 0:
        raise DataError(f"log_weights must be K or K x N with K >= 1 draws, got shape {tuple(log_weights.shape)}")
    if not log_weights.is_floating_point():
        raise DataError(f"log_weights must be floating point, got dtype {log_weights.dtype}")
    check_log_weights(log_weights)  # NaN or +inf: a DataError naming the positions, as resample_indices raises
    if resampling not in RESAMPLING:
        raise ConfigError(f"from_importance resampling must be one of {list(RESAMPLING)}, got {resampling!r}")
    groups = {"sample_stats": {"log_weight": log_weights.unsqueeze(0)}}
    if samples:
        samples = _checked_draws(samples, tuple(log_weights.shape))
        columns = log_weights.reshape(log_weights.shape[0], -1)  # K x N (N = 1 for K log-weights)
        if generator is not None and not isinstance(generator, torch.Generator):
            generator = torch.Generator().manual_seed(_int_seed(generator, "from_importance generator"))
        index = resample_indices(_smoothed(columns) if psis else columns, resampling, generator=generator)
        groups["posterior"] = {n: _picked(v, index, log_weights.dim()).unsqueeze(0) for n, v in samples.items()}
        groups["sample_stats"].update({f"proposal_{n}": v.unsqueeze(0) for n, v in samples.items()})
    return make_inference_data(groups)


def _seed(generator: Any, what: str) -> int:
    """A seed for the call's randomness: drawn from ``generator`` (a :class:`torch.Generator`), from torch's global
    CPU stream (``None``), or an int seed itself (deprecated, see :func:`_int_seed`).  Drawn on the CPU whatever
    :func:`torch.set_default_device` says (a CPU generator's, the global CPU stream's; no device read)."""
    if generator is None or isinstance(generator, torch.Generator):
        return int(torch.randint(2**62, (), generator=generator, device="cpu"))
    return _int_seed(generator, what, same_draws=False)


def _int_seed(seed: Any, what: str, same_draws: bool = True) -> int:
    """``seed``, an int seed, with a :class:`FutureWarning` naming ``torch.Generator().manual_seed(seed)``, the
    library's one spelling; :class:`ConfigError` naming ``what`` for anything else (a ``bool``, a float, a string)
    and for an integer torch does not take as a seed (:func:`~hybridpgm.checks.seed_of`: outside
    ``[-2**63, 2**64)``).  ``same_draws``: whether that generator draws as the int seed does (``from_mcmc``'s,
    a seed drawn from the generator, does not: the warning says so)."""
    if as_integer(seed) is None:
        raise ConfigError(f"{what} must be a torch.Generator or None (or, deprecated, an int seed), got "
                          f"{type(seed).__name__} {seed!r:.60}")
    seed = seed_of(seed, what)
    warnings.warn(f"{what}={seed}: an int seed is deprecated and will be refused, as by every sampler of the "
                  f"library; pass generator=torch.Generator().manual_seed({seed})"
                  f"{'' if same_draws else ', whose draws are not those of the int seed,'} (None, the default now, "
                  "draws from torch's global stream)", FutureWarning, stacklevel=users_stacklevel())
    return seed


def _checked_draws(samples: Mapping[str, Any], shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """``samples`` as tensors, each of ``K`` draws (``K x N`` for ``K x N`` log-weights), else :class:`DataError`."""
    try:  # arrays and lists too, as the log-weights
        samples = {n: torch.as_tensor(torch_readable(v)) for n, v in samples.items()}
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(f"samples must be tensors or arrays of numbers ({error})") from None
    bad = {n: tuple(v.shape) for n, v in samples.items() if v.dim() == 0 or v.shape[0] != shape[0]}
    if bad:
        raise DataError(f"samples must have {shape[0]} draws like the log-weights; got shapes {bad}")
    if len(shape) == 2:
        bad = {n: tuple(v.shape) for n, v in samples.items() if v.dim() < 2 or v.shape[1] != shape[1]}
        if bad:
            raise DataError(f"with K x N log-weights of shape {shape} (N = {shape[1]} targets, each weighing its "
                            f"own draws) samples must be K x N x ..., got shapes {bad}; for draws shared by one "
                            f"target pass K log-weights")
    return samples


def _smoothed(columns: torch.Tensor) -> torch.Tensor:
    """``K x N`` log-weights Pareto-smoothed per column (:func:`pareto_khat`) when ``K`` is enough for a fit, else
    as they are.  Columns with a zero-weight-only target are left to :func:`resample_indices` to refuse."""
    if columns.shape[0] < PSIS_MIN_DRAWS or bool(torch.isneginf(columns).all(dim=0).any()):
        return columns
    smoothed, _ = pareto_khat(columns.T)
    return torch.as_tensor(smoothed).T


def _picked(draws: torch.Tensor, index: torch.Tensor, weight_dims: int) -> torch.Tensor:
    """The resampled draws: ``draws[index[m, 0]]`` for ``K`` log-weights, ``draws[index[m, n], n]`` per column
    ``n`` for ``K x N``."""
    index = index.to(draws.device)
    if weight_dims == 1:
        return draws[index[:, 0]]
    columns = torch.arange(draws.shape[1], device=draws.device)
    return draws[index, columns]
