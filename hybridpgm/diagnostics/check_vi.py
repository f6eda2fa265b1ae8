"""Did the variational approximation work?  Pareto-smoothed importance sampling.

For each data point :math:`x_n` with a local latent :math:`z_n` and guide
:math:`q(z_n \\mid x_n)`, draw :math:`S` samples from the guide and form the
importance ratios :math:`r_s = p(x_n, z_s) / q(z_s \\mid x_n)`.  Fitting a
generalized Pareto distribution to the largest ratios gives the shape
:math:`\\hat k` [1, 2].  PSIS is reliable, and the guide a good proposal, where
:math:`\\hat k \\le \\min(1 - 1/\\log_{10} S,\\ 0.7)` [2], the sample-size dependent
threshold ArviZ (0.x and 1.x) uses to flag a point in ``az.loo``: 0.5 at :math:`S = 100`, 0.57 at
:math:`S = 200`, 0.7 from :math:`S = 2155` on.  Above it and up to 0.7 the estimate is unreliable
at this :math:`S` (more draws may make it reliable); above 0.7 the guide misses mass of the posterior (it is
typically too narrow) and neither it nor the estimate should be trusted, whatever :math:`S`.  (Yao et al. [1]
used the fixed thresholds 0.5 and 0.7.)

Bias and variance [2]: Pareto smoothing replaces the :math:`M` largest ratios by the expected order statistics
of the fitted generalized Pareto distribution, trading a small bias for a large reduction of variance; both
vanish as :math:`S` grows (the estimate is consistent), and PSIS has a lower RMSE than plain or truncated
importance sampling.  For :math:`\\hat k < 0.5` the raw ratios have finite variance and the central limit
theorem holds; for :math:`0.5 \\le \\hat k < 0.7` their variance is infinite, yet the PSIS estimate has a finite
variance and a small bias, and converges at a practically useful rate; the bias and the pre-asymptotic
convergence rate degrade as :math:`\\hat k` grows, and past :math:`1 - 1/\\log_{10} S` the :math:`S` draws are
too few for a small error (the draws a reliable estimate needs grow as :math:`10^{1/(1-k)}`), past 0.7 too
many to be practical (and past 1 the mean does not exist).  Hence the threshold
:math:`\\min(1 - 1/\\log_{10} S,\\ 0.7)` (:func:`good_khat`, :attr:`VICheck.threshold`).  The PSIS estimate of
:math:`\\log p(x_n)` here, the log of the mean smoothed ratio, is biased by the smoothing and, as any log of an
importance estimate, low by Jensen's inequality.

References:

1. Y. Yao, A. Vehtari, D. Simpson, A. Gelman, *Yes, but Did It Work?:
   Evaluating Variational Inference*, ICML 2018.
2. A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry, *Pareto Smoothed
   Importance Sampling*, JMLR 25(72), 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from hybridpgm.checks import generator_or_none, sample_count
from hybridpgm.diagnostics.host_arrays import as_host_array
from hybridpgm.errors import ConfigError, DataError, ObjectiveError
from hybridpgm.infer.iwae import importance_log_weights
from hybridpgm.infer.particle_elbo import keeping_module_state, keeping_rng_state
from hybridpgm.param_store_scope import modules_own_their_params
from hybridpgm.portable_result import PortableResult
from hybridpgm.rng_scope import seeded_globally_from
from hybridpgm.summary_repr import array_text, number_text

__all__ = ["BAD", "PSIS_MIN_DRAWS", "VICheck", "check_vi", "good_khat", "pareto_khat"]

#: Fewest draws per row PSIS takes: ArviZ 1.x fits the generalized Pareto tail to the largest
#: :math:`\lfloor S/5\rfloor` draws (:math:`\lfloor 3\sqrt S\rfloor` beyond 225), raises below 5 of
#: them and returns a NaN k-hat below 6 (its fit's first quartile is then the minimum); ArviZ 0.x answers.
PSIS_MIN_DRAWS = 30

#: k-hat above which PSIS is unreliable whatever the number of draws [2]
BAD = 0.7


def good_khat(num_draws: int) -> float:
    """The largest k-hat at which PSIS with ``num_draws`` draws :math:`S` is reliable,
    :math:`\\min(1 - 1/\\log_{10} S,\\ 0.7)` [2]: ArviZ's ``good_k`` (0.x and 1.x), above which
    ``az.loo`` flags a point.

    :param num_draws: the number of draws :math:`S` behind the k-hat.
    :raises ConfigError: for fewer than 2 draws (no threshold: :math:`\\log_{10} S \\le 0`).
    """
    if num_draws < 2:
        raise ConfigError(f"the k-hat threshold needs at least 2 draws, got {num_draws}")
    return min(1.0 - 1.0 / math.log10(num_draws), BAD)


def _arviz_psislw(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's PSIS over the last axis: ``(smoothed log-weights up to a constant per row, k-hat)``."""
    import arviz as az

    if hasattr(az, "psislw"):  # ArviZ 0.x
        return az.psislw(log_weights, normalize=False)
    from arviz_stats.base import array_stats  # ArviZ >= 1.0

    # arviz_stats' psislw takes pointwise log-likelihoods, as PSIS-LOO does: the
    # importance log-weights are their negatives
    return array_stats.psislw(-log_weights, axis=-1)


def _rows(flags: np.ndarray) -> list:
    """The indices of the true entries of ``flags`` (ints for one leading dim, else tuples)."""
    return np.flatnonzero(flags).tolist() if flags.ndim <= 1 else [tuple(r) for r in np.argwhere(flags).tolist()]


def _check_log_weights(log_weights: np.ndarray) -> None:
    """Raise :class:`DataError` for NaN or :math:`+\\infty` log-weights, or a row of zero weights only."""
    bad = np.isnan(log_weights) | np.isposinf(log_weights)
    if bad.any():
        rows = _rows(bad.any(axis=-1))
        raise DataError(f"log-weights hold NaN or +inf in row(s) {rows[:10]} of shape {log_weights.shape}; a "
                        f"log-weight is finite, or -inf for a zero weight")
    empty = ~np.isfinite(log_weights).any(axis=-1)
    if empty.any():
        rows = _rows(empty)
        raise DataError(f"every log-weight is -inf (all weights zero) in row(s) {rows[:10]}; PSIS is undefined")


def _tail_lengths(num_draws: int) -> tuple[int, int]:
    """The fewest and the most draws ArviZ puts in the Pareto tail of a row of ``num_draws``:
    :math:`\\lfloor M\\rfloor` (ArviZ 1.x) and :math:`\\lceil M\\rceil` (ArviZ 0.x), :math:`M = \\min(S/5,
    3\\sqrt S)`."""
    m = min(num_draws / 5.0, 3.0 * math.sqrt(num_draws))
    return math.floor(m), math.ceil(m)


def _constant_tolerance(magnitude: np.ndarray) -> np.ndarray:
    """The largest spread (nats) of a row's log-weights that is rounding of a constant, given the row's largest
    :math:`|\\log w|`: :math:`\\max(\\sqrt{\\epsilon_{32}}, 8\\epsilon_{32} m)` (see :func:`pareto_khat`)."""
    eps = float(np.finfo(np.float32).eps)
    return np.maximum(math.sqrt(eps), 8.0 * eps * magnitude)


def pareto_khat(log_weights: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """PSIS of log-weights of shape ``(..., S)``: ``(smoothed unnormalized log-weights, k-hat)``.

    PSIS [2] sorts a row's weights, takes the :math:`M` largest as its tail
    and the next one, :math:`w_{(S-M)}`, as the threshold :math:`u`, fits a
    generalized Pareto distribution to the exceedances :math:`w - u` of the
    tail (its shape is :math:`\\hat k`) and replaces the tail by the fit's
    quantiles at :math:`(j - \\tfrac12)/M`, capped at the largest raw weight.
    ArviZ does the fit, and the two generations take different tails:
    ArviZ 0.x :math:`M = \\lceil \\min(S/5, 3\\sqrt S)\\rceil`, ArviZ 1.x
    :math:`\\lfloor S/5\\rfloor`, or :math:`\\lfloor 3\\sqrt S\\rfloor` beyond
    :math:`S = 225`: the same length where that bound is an integer (40 at
    :math:`S = 200`), else one draw apart (95 and 94 at :math:`S = 1000`).
    So k-hat and the smoothed tail agree across the generations only as two
    fits of nearly the same tail do, not to the last digit.  ArviZ 1.x
    returns normalized weights; PSIS leaves the body below the tail alone, so
    the smallest positive weight of a row keeps its raw value under either
    generation and restores the row's constant: the result is on the scale
    of the input weights.

    Rows ArviZ cannot fit are answered here, identically under both generations:

    * a row whose positive weights are equal up to rounding comes from a guide
      that matches the posterior there: its ratios are bounded, there is no
      tail to fit, and k-hat is :math:`-\\infty`, the weights unchanged.
      (Passed to ArviZ, the rounding ties leave fewer than five draws above
      the cut-off and ArviZ reports :math:`+\\infty`, flagging an exact guide as bad.)
      "Equal" is judged on the spread :math:`\\max_s \\log w_s - \\min_s \\log w_s`
      (the log-weights less the row's largest: adding a constant to a row, which changes no
      ratio, leaves it as it is, and k-hat with it, while the tolerance grows only by the
      float32 rounding of the new magnitude) against
      :math:`\\tau = \\max(\\sqrt{\\epsilon_{32}},\\ 8\\,\\epsilon_{32} \\max_s |\\log w_s|)`.
      The second term is float32 rounding of the values present: a log-weight
      :math:`\\log p - \\log q` of magnitude :math:`m` computed in float32 carries an
      error of a few units in its last place, :math:`\\epsilon_{32} m / 2` each, so eight
      :math:`\\epsilon_{32}` of the magnitude bound the spread of a rounded constant
      (0.03 nats at :math:`m = 3 \\cdot 10^4`, where a heavy tail spans nats).
      The first, :math:`3.5 \\cdot 10^{-4}` nats, covers rounding in the terms
      :math:`\\log p` and :math:`\\log q` themselves when they cancel to a small
      :math:`\\log w`; every ratio of such a row lies within :math:`e^{\\tau}` of 1, bounded
      whatever produced it.  (A tolerance proportional to the magnitude alone, as
      :math:`\\sqrt{\\epsilon_{32}} |\\log w|` once was, is 10 nats at :math:`|\\log w| =
      3 \\cdot 10^4` and called heavy tails constant.)
    * a log-weight of :math:`-\\infty` is a zero weight.  When a row has at
      most :math:`\\lceil \\min(S/5, 3\\sqrt S)\\rceil` positive weights, the
      threshold :math:`u` (under either generation) is a zero weight and the
      tail holds zeros: the exceedances have an atom at zero, which no
      generalized Pareto distribution has, and fitting them anyway gives zero
      weights mass (under ArviZ 0.x a mean smoothed weight of 0.22 where the
      expectation is 0.1, under ArviZ 1.x a NaN k-hat).  Such a row gets k-hat :math:`+\\infty`
      (most draws of the proposal carry no weight: it is not a proposal to
      trust) and its weights are left unsmoothed, so the importance estimate
      is the raw one (its mean ratio unbiased for :math:`p(x_n)`, without
      the smoothing's bias and variance reduction).  With more positive weights than that the
      tail and the threshold are all positive and PSIS runs as usual: the
      zeros lie in the body, which it keeps.
    * a row whose :math:`\\lfloor \\min(S/5, 3\\sqrt S)\\rfloor` largest weights
      are all equal (a plateau: nothing to fit), and a row whose fit fails
      (ArviZ 1.x answers NaN when the tail's weights underflow or tie after
      exponentiation, as in a row spanning thousands of nats) get
      :math:`+\\infty` and unsmoothed weights: ArviZ 0.x's answer to a tail
      too short to fit.  No k-hat returned is NaN.

    :param log_weights: ``... x S`` log-weights, :math:`S \\ge 30`; a tensor
        in any floating-point dtype (``bfloat16`` included) or an array.
    :returns: ``(smoothed, khat)``: ``... x S`` smoothed log-weights and ``...`` k-hats.
    :raises ConfigError: for fewer than :data:`PSIS_MIN_DRAWS` (30) log-weights per row, under either ArviZ.
    :raises DataError: for NaN or :math:`+\\infty` log-weights, or a row whose weights are all zero.
    """
    log_weights = as_host_array(log_weights, np.float64)
    if log_weights.ndim == 0:
        raise ConfigError("PSIS needs log-weights of shape (..., S), got a scalar")
    num_draws = log_weights.shape[-1]
    if num_draws < PSIS_MIN_DRAWS:  # before the values' check, which an empty row would fail
        raise ConfigError(f"PSIS needs at least {PSIS_MIN_DRAWS} log-weights per row (the Pareto tail is fitted to "
                          f"the largest fifth, at least 6 of them), got shape {log_weights.shape}")
    _check_log_weights(log_weights)
    finite = np.isfinite(log_weights)
    top = np.where(finite, log_weights, -np.inf).max(axis=-1)
    low = np.where(finite, log_weights, np.inf)
    # the spread below the row's largest log-weight: unchanged by a constant added to the row. Zero weights
    # (-inf) do not count: equal weights and some zeros still have bounded ratios and no tail
    spread = np.where(finite, top[..., None] - log_weights, 0.0).max(axis=-1)
    constant = spread <= _constant_tolerance(np.abs(np.where(finite, log_weights, 0.0)).max(axis=-1))
    shortest, longest = _tail_lengths(num_draws)
    few_positive = finite.sum(axis=-1) <= longest  # the threshold, and part of the tail, are zero weights
    plateau = np.sort(log_weights, axis=-1)[..., -shortest] == top  # ArviZ 1.x raises on it
    unfit = ~constant & (few_positive | plateau)
    answered = constant | unfit
    placeholder = np.linspace(-1.0, 0.0, num_draws)
    smoothed, khat = _arviz_psislw(np.where(answered[..., None], placeholder, log_weights))
    smoothed, khat = np.array(smoothed, dtype=np.float64), np.array(khat, dtype=np.float64)
    lowest = low.argmin(axis=-1)[..., None]  # the smallest positive weight: below the tail, so kept as it was
    smoothed += np.take_along_axis(log_weights, lowest, -1) - np.take_along_axis(smoothed, lowest, -1)
    failed = np.isnan(khat) & ~answered  # ArviZ 1.x's failed fit (it leaves such a row unsmoothed too)
    smoothed = np.where((answered | failed)[..., None], log_weights, smoothed)
    khat = np.where(constant, -np.inf, np.where(unfit | failed, np.inf, khat))
    return smoothed, khat


@dataclass(eq=False)
class VICheck(PortableResult):
    """Result of :func:`check_vi`.

    :param khat: ``N`` Pareto shape estimates, one per data point.
    :param log_likelihood: ``N`` PSIS estimates of :math:`\\log p(x_n)`.
    :param num_samples: draws from the guide per data point.
    """

    khat: np.ndarray
    log_likelihood: np.ndarray
    num_samples: int

    @property
    def threshold(self) -> float:
        """:func:`good_khat` of :attr:`num_samples`: :math:`\\min(1 - 1/\\log_{10} S,\\ 0.7)`."""
        return good_khat(self.num_samples)

    @property
    def counts(self) -> dict[str, int]:
        """How many points are good (:math:`\\hat k \\le` :attr:`threshold`: ArviZ's ``good_k``) and bad
        (above it, or NaN: ArviZ flags them in ``az.loo``), as ArviZ classes them.  Of the bad points, those
        with :math:`\\hat k \\le 0.7` are unreliable at this :math:`S` only, and more draws may make them good
        (:meth:`summary` counts them); at :math:`S \\ge 2155` the threshold is 0.7 and there are none.

        :func:`pareto_khat` returns no NaN, but a :class:`VICheck` built by hand may hold one: a k-hat that
        could not be estimated is no evidence that the guide is good, so it counts as bad and the two counts
        always add up to the number of points."""
        k = np.asarray(self.khat, dtype=np.float64)
        good = int((k <= self.threshold).sum())
        return {"good": good, "bad": k.size - good}

    @property
    def verdict(self) -> str:
        """``"good"`` when every point is good, else ``"bad"`` (see :attr:`counts`)."""
        return "bad" if self.counts["bad"] else "good"

    def summary(self) -> str:
        """One line: the counts of good and bad points (with those that more draws may help, and the NaN k-hats,
        among the bad), the largest k-hat and the mean PSIS :math:`\\log p(x_n)`."""
        c = self.counts
        k = np.asarray(self.khat, dtype=np.float64)
        nan = int(np.isnan(k).sum())
        more_draws = int(((k > self.threshold) & (k <= BAD)).sum())
        notes = ([f"{more_draws} of them <= {BAD}: more draws may help"] if more_draws else []) + \
            ([f"{nan} of them NaN"] if nan else [])
        worst = np.nanmax(k) if nan < k.size else np.nan
        noted = f" ({'; '.join(notes)})" if notes else ""
        return (f"PSIS k-hat over {k.size} points ({self.num_samples} draws each): "
                f"{c['good']} good (<= {self.threshold:.2f}), {c['bad']} bad{noted}; max {worst:.3f}; "
                f"mean log p(x) {np.mean(self.log_likelihood):.4f}")

    def __repr__(self) -> str:
        """A summary of constant size, whatever the number of points (the dataclass ``repr`` printed every k-hat
        and log-likelihood, 36 KB for 1000 points): the arrays' shapes and dtypes, the draws, the counts of good
        and bad points (:attr:`counts`), the largest k-hat (ignoring NaN) and the mean PSIS log-likelihood."""
        k = np.asarray(self.khat, dtype=np.float64) if _numeric(self.khat) else None
        parts = [f"khat={array_text(self.khat)}", f"log_likelihood={array_text(self.log_likelihood)}",
                 f"num_samples={self.num_samples!r}"]
        if k is not None and k.size and isinstance(self.num_samples, (int, np.integer)) and self.num_samples >= 2:
            counts = self.counts
            parts.append(f"good={counts['good']}, bad={counts['bad']} (threshold {self.threshold:.2f})")
        if k is not None and k.size and not np.isnan(k).all():
            parts.append(f"max_khat={number_text(np.nanmax(k), 4)}")
        if _numeric(self.log_likelihood) and np.size(self.log_likelihood):
            parts.append(f"mean_log_likelihood={number_text(np.mean(np.asarray(self.log_likelihood, np.float64)))}")
        return f"VICheck({', '.join(parts)})"


def _numeric(values: Any) -> bool:
    """Whether ``values`` reads as a float64 array (a :class:`VICheck` built by hand may hold anything)."""
    try:
        np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    return True


def _check_local_latents(guide: Callable, args: tuple, kwargs: dict) -> None:
    """Refuse a guide with a latent site outside every plate: a per-point diagnostic needs latents of their
    own per data point (a global weight, as a Bayesian network's, is shared by all of them)."""
    with torch.no_grad(), poutine.block(), keeping_rng_state():
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
    shared = [name for name, site in trace.nodes.items()
              if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
              and not site["infer"].get("is_auxiliary", False)
              and not any(frame.vectorized for frame in site["cond_indep_stack"])]
    if shared:
        raise ObjectiveError(f"check_vi diagnoses latents local to the data plate (one per data point); the guide "
                             f"samples {shared} outside every plate, shared by all points. For global latents, "
                             "take the model's pointwise log-likelihood from from_pyro_svi and run ArviZ's loo on it")


@modules_own_their_params
def check_vi(model: Callable, guide: Callable, *args: Any, num_samples: int = 1000, chunk_size: int = 250,
             generator: torch.Generator | None = None, **kwargs: Any) -> VICheck:
    """Per-data-point PSIS diagnostic of a guide [1].

    :param model: Pyro model with its data plate, run as ``model(*args, **kwargs)``.  Two models of one
        program over the same rows, each under a plate of its own at one dim with the same size (``"vae/data"``
        and ``"bn/data"``), share the data index: row :math:`n` is one point, its weight the product of theirs.
    :param guide: its (amortized) guide; latents must be local to the plate
        and reparameterizable (as for :class:`~hybridpgm.infer.IWAE`).
    :param num_samples: :math:`S`, draws per point (>= 100 for a stable
        :math:`\\hat k`).
    :param chunk_size: draws per pass of the model and guide (memory).
    :param generator: a :class:`torch.Generator` (on any device) for the draws, keyword-only like ``num_samples``
        and ``chunk_size`` (so ``generator`` is not passed on to the model); ``None`` (the default) draws from
        torch's global streams.  The model's and guide's sample statements take no generator: they run with
        torch's global streams seeded from one draw of it and restored afterwards
        (:func:`~hybridpgm.rng_scope.seeded_globally_from`), so the result is a function of its state and the
        caller's streams do not move.
    :returns: a :class:`VICheck` with :math:`\\hat k` per point and the PSIS
        estimate :math:`\\log \\frac1S \\sum_s \\tilde r_s` of :math:`\\log p(x_n)`.
    :raises ConfigError: for ``num_samples`` below :data:`PSIS_MIN_DRAWS` (30), counts that are not
        integers (``chunk_size`` at least 1), or a ``generator`` that is neither a :class:`torch.Generator` nor
        ``None``.
    :raises DataError: when the model and guide give NaN or :math:`+\\infty` log-weights.
    :raises ObjectiveError: the guide samples a latent outside every plate (a global one, shared by all points),
        or the sites lie in plates that share no data index (two models over batches of different sizes, or
        plates at different dims; see :func:`~hybridpgm.infer.iwae.importance_log_weights`).
    """
    num_samples = sample_count(num_samples, "check_vi num_samples")
    chunk_size = sample_count(chunk_size, "check_vi chunk_size")
    if chunk_size == 0:
        raise ConfigError("check_vi chunk_size must be at least 1, got 0")
    if num_samples < PSIS_MIN_DRAWS:
        raise ConfigError(f"check_vi needs num_samples >= {PSIS_MIN_DRAWS} for a Pareto fit, got {num_samples}")
    generator = generator_or_none(generator, "check_vi generator")
    chunks = []
    # a diagnostic leaves the model's buffers alone; with a generator, the draws come from it
    with torch.no_grad(), keeping_module_state(model, guide), seeded_globally_from(generator):
        _check_local_latents(guide, args, kwargs)
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            log_w, _ = importance_log_weights(model, guide, *args, num_particles=k, **kwargs)
            chunks.append(log_w.reshape(k, -1))
    log_w = torch.cat(chunks).double().cpu().numpy().T  # N x S
    smoothed, khat = pareto_khat(log_w)
    estimate = torch.logsumexp(torch.as_tensor(np.asarray(smoothed)), dim=-1).numpy() - math.log(num_samples)
    return VICheck(khat=np.asarray(khat), log_likelihood=np.asarray(estimate), num_samples=num_samples)
