"""Importance resampling: equally weighted draws from weighted ones (sampling-importance-resampling, SIR [1]).

Given :math:`K` draws :math:`x_k \\sim q` with log-weights :math:`\\log w_k` (:math:`w_k \\propto p(x_k) /
q(x_k)`, known up to a constant), the self-normalised weights :math:`\\bar w_k = w_k / \\sum_j w_j` estimate
:math:`E_p[f] \\approx \\sum_k \\bar w_k f(x_k)`.  Resampling picks :math:`K` indices :math:`i_1, \\ldots,
i_K` with :math:`E[\\#\\{m : i_m = k\\}] = K \\bar w_k`, so the plain mean :math:`\\frac1K \\sum_m f(x_{i_m})`
is unbiased for that weighted mean given the weights, and the resampled draws are (approximately, as
:math:`K \\to \\infty`) draws from :math:`p`:

* ``"multinomial"``: :math:`i_m` independent with :math:`P(i_m = k) = \\bar w_k`; the resampled mean has
  conditional variance :math:`\\mathrm{Var}_{\\bar w}(f) / K`, where :math:`\\mathrm{Var}_{\\bar w}(f) =
  \\sum_k \\bar w_k (f(x_k) - \\sum_j \\bar w_j f(x_j))^2`;
* ``"systematic"`` [2]: one :math:`u \\sim U[0, 1)`, and :math:`i_m` the :math:`k` with :math:`C_{k-1} \\le
  (m - 1 + u) / K < C_k`, :math:`C_k = \\sum_{j \\le k} \\bar w_j`: each draw is kept :math:`\\lfloor K \\bar
  w_k\\rfloor` or :math:`\\lceil K \\bar w_k\\rceil` times, which in practice gives a smaller variance than
  multinomial resampling.

A zero weight (:math:`\\log w_k = -\\infty`) is never picked.

[1] D. B. Rubin, *Using the SIR algorithm to simulate posterior distributions*, Bayesian Statistics 3, 1988.

[2] G. Kitagawa, *Monte Carlo filter and smoother for non-Gaussian nonlinear state space models*, Journal of
Computational and Graphical Statistics 5(1), 1996.
"""

from __future__ import annotations

import torch

from hybridpgm.checks import generator_or_none
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.keyword_alias import keyword_only_soon

__all__ = ["RESAMPLING", "check_log_weights", "resample_indices"]

#: the resampling schemes :func:`resample_indices` takes
RESAMPLING = ("systematic", "multinomial")


def check_log_weights(log_weights: torch.Tensor, name: str = "log_weights") -> None:
    """Refuse log-weights holding NaN or :math:`+\\infty` (one host read); :math:`-\\infty`, a zero weight, is
    allowed.  Shared by :func:`resample_indices` and :func:`~hybridpgm.diagnostics.from_importance`.

    :param log_weights: the log-weights, of any shape, on any device.
    :param name: how the message names them.
    :raises DataError: naming how many such values there are and (up to five of) their positions."""
    bad = torch.isnan(log_weights) | (log_weights == float("inf"))
    if bool(bad.any()):
        where = bad.nonzero().tolist()
        raise DataError(f"{name} hold {len(where)} NaN or +inf value(s) (at {where[:5]}"
                        f"{' ...' if len(where) > 5 else ''}); a log-weight is finite, or -inf for a zero weight")


@keyword_only_soon("generator")
def resample_indices(log_weights: torch.Tensor, method: str = "systematic", *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``K x N`` indices into the ``K`` draws of each of ``N`` columns of log-weights, picked by ``method``
    (see the module's docstring), one column at a time.

    :param log_weights: ``K x N`` log-weights (finite, or :math:`-\\infty` for a zero weight), on any device;
        the picking runs in float64 on the CPU.
    :param method: ``"systematic"`` or ``"multinomial"``.
    :param generator: a CPU :class:`torch.Generator` for a reproducible pick (``None``: torch's global one);
        keyword-only, as every sampler's (by position, after ``method``, it still works for one release, with a
        :class:`FutureWarning`).
    :returns: ``K x N`` int64 indices, column ``n`` picking among the draws of column ``n`` (``K`` indices for
        one column given as a 1-D tensor, the pick of ``log_weights[:, None]``).
    :raises ConfigError: for another ``method``, or a ``generator`` that is neither a :class:`torch.Generator`
        nor ``None`` (a seed).
    :raises DataError: for log-weights that are not a ``K x N`` or ``K`` tensor (naming the shape), with no draws
        (``K = 0``), holding NaN or :math:`+\\infty` (naming their positions, as :func:`check_log_weights`), or a
        column whose weights are all zero (nothing to pick).
    """
    if method not in RESAMPLING:
        raise ConfigError(f"resampling must be one of {list(RESAMPLING)}, got {method!r}")
    generator = generator_or_none(generator, "resample_indices generator")
    one = isinstance(log_weights, torch.Tensor) and log_weights.dim() == 1  # one column of K draws
    if one:
        log_weights = log_weights[:, None]
    if not isinstance(log_weights, torch.Tensor) or log_weights.dim() != 2:
        got = (f"shape {tuple(log_weights.shape)}" if isinstance(log_weights, torch.Tensor)
               else f"a {type(log_weights).__name__}")
        raise DataError(f"resample_indices needs K x N log-weights (a 2-D tensor: K draws in each of N columns; "
                        f"one column of K draws as a 1-D tensor), got {got}")
    if log_weights.shape[0] == 0:
        raise DataError(f"resample_indices got log-weights of shape {tuple(log_weights.shape)}: no draws (K = 0) "
                        f"to resample")
    lw = log_weights.detach().to("cpu", torch.float64)
    check_log_weights(lw[:, 0] if one else lw, "resample_indices log_weights")  # positions as the caller's
    empty = torch.isneginf(lw).all(dim=0)
    if bool(empty.any()):
        columns = empty.nonzero().flatten().tolist()
        raise DataError(f"every log-weight is -inf (all weights zero) in column(s) {columns[:10]} of the "
                        f"{tuple(lw.shape)} log-weights: no draw to resample")
    k = lw.shape[0]
    probs = torch.softmax(lw, dim=0).T.contiguous()  # N x K, each row sums to one
    if method == "multinomial":
        index = torch.multinomial(probs, k, replacement=True, generator=generator).T.contiguous()
        return index[:, 0] if one else index
    # on probs' device (the CPU), not torch's default one (torch.set_default_device), as the docstring says
    u = torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device, generator=generator)
    points = (torch.arange(k, dtype=torch.float64, device=probs.device) + u) / k  # N x K, in [0, 1)
    cdf = probs.cumsum(dim=1)
    cdf[:, -1] = 1.0  # rounding must not leave a point above the last draw
    index = torch.searchsorted(cdf, points, right=True)  # the k with C_{k-1} <= point < C_k
    # a point at or past the end of the last positive weight goes to that draw, not to a zero weight after it:
    # (K - 1 + u) / K rounds to 1.0 for u within K ulps of 1, and the forced C_K = 1 covers [C, 1) after a rounded C
    last = (k - 1) - (probs > 0).flip(1).int().argmax(dim=1, keepdim=True)  # N x 1
    index = torch.minimum(index, last).T.contiguous()
    return index[:, 0] if one else index
