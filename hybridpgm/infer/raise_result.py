r"""The result of :class:`~hybridpgm.infer.raise_ais.RAISE` and its two standard errors.

:class:`RAISEResult` holds the per-point estimates of reverse annealing and says how uncertain their mean is, in
the two senses a report needs: the Monte Carlo error of RAISE itself (:attr:`RAISEResult.mc_stderr`) and the
sampling error of the test set (:attr:`RAISEResult.test_set_stderr`).  The estimator is in
:mod:`hybridpgm.infer.raise_ais`, which imports this class from here (``hybridpgm.infer.raise_ais.RAISEResult``
is the same object).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from hybridpgm.portable_result import PortableResult
from hybridpgm.summary_repr import array_text, number_text
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["RAISEResult"]


@dataclass(eq=False)
class RAISEResult(PortableResult):
    r"""Result of :class:`~hybridpgm.infer.raise_ais.RAISE` on test points of batch shape ``N``
    (``v.shape[:-1]``) with ``M`` chains each.

    Two standard errors describe the mean :math:`\bar\ell = \frac1N\sum_i \log\widehat p(v_i)`, and they
    answer different questions:

    * :attr:`mc_stderr`, the *Monte Carlo* error of :math:`\bar\ell` for these test points: how much it would move
      if RAISE were run again with other random numbers.  Point :math:`i`'s estimate is :math:`\log\widehat p(v_i) =
      c_i + \log \bar w_i`, :math:`\bar w_i = \frac1M \sum_m w_{im}`, :math:`c_i` fixed, so by the delta method
      :math:`\operatorname{Var}\log\bar w_i \approx \operatorname{Var}(w_{i\cdot}) / (M \bar w_i^2)`:
      :attr:`point_stderr` is :math:`\mathrm{se}_i = \operatorname{sd}_m(w_{im} / \bar w_i) / \sqrt M` (the sample
      sd over the ``M`` chains, as :class:`~hybridpgm.infer.AIS` computes its own).  The points' chains are
      independent, so :math:`\operatorname{Var}\bar\ell = \frac1{N^2} \sum_i \operatorname{Var} \log\widehat p(v_i)`
      and :math:`\mathrm{se}(\bar\ell) = \sqrt{\sum_i \mathrm{se}_i^2} / N`.  It needs ``M >= 2`` chains per point
      (``nan`` otherwise, and for no points).
    * :attr:`test_set_stderr`, :math:`\operatorname{sd}_i \log\widehat p(v_i) / \sqrt N`: how well the ``N`` points
      estimate the mean log-likelihood of the population they were drawn from.  It is dominated by how much
      :math:`\log p(v)` varies between points (tens of nats between images), not by RAISE's noise, and is the wrong
      scale for comparing RAISE with AIS on the *same* points.  It is still an upper bound of :attr:`mc_stderr` in
      expectation: with :math:`\log\widehat p(v_i) = \mu_i + \varepsilon_i` (independent noise of variance
      :math:`\sigma_i^2`), :math:`E[\operatorname{sd}_i^2] = \frac1{N-1}\sum_i(\mu_i - \bar\mu)^2 +
      \frac1N\sum_i\sigma_i^2 \ge \frac1N \sum_i \sigma_i^2`, so :math:`E[\text{test\_set\_stderr}^2] \ge
      \operatorname{Var}\bar\ell`; :class:`~hybridpgm.infer.raise_ais.LikelihoodBounds` falls back on it when ``M = 1``.

    :param log_likelihood: ``N`` conservative estimates :math:`\log\widehat p(v)`.
    :param log_z: ``N`` upper estimates :math:`\log\widehat Z_{RAISE}(v)`.
    :param log_weights: ``N x M`` reverse-chain log-weights :math:`-\sum_k \Delta_k`.
    :param num_steps: :math:`K`.
    """

    log_likelihood: torch.Tensor
    log_z: torch.Tensor
    log_weights: torch.Tensor
    num_steps: int

    @property
    def point_stderr(self) -> torch.Tensor:
        r"""``N`` delta-method MC standard errors of :math:`\log\widehat p(v_i)` (nan if M < 2, empty if N = 0)."""
        log_w = self.log_weights.to(torch.float64)
        m = log_w.shape[-1]
        if m < 2 or log_w.shape[:-1].numel() == 0:  # no points: no std of an empty tensor (a torch warning)
            return torch.full(log_w.shape[:-1], math.nan, dtype=torch.float64, device=log_w.device)
        w = torch.exp(log_w - torch.logsumexp(log_w, -1, keepdim=True) + math.log(m))  # w_im / w_bar_i
        return w.std(-1, unbiased=True) / math.sqrt(m)

    @property
    def mc_stderr(self) -> torch.Tensor:
        r"""Monte Carlo standard error of the mean :math:`\frac1N\sum_i\log\widehat p(v_i)`,
        :math:`\sqrt{\sum_i \mathrm{se}_i^2} / N` (scalar; ``nan`` if ``M < 2`` or ``N = 0``)."""
        se = self.point_stderr
        n = se.numel()
        if n == 0:
            return se.new_full((), math.nan)
        return se.pow(2).sum().sqrt() / n

    @property
    def test_set_stderr(self) -> torch.Tensor:
        r"""Spread of the estimates between test points, :math:`\operatorname{sd}_i / \sqrt N` (scalar): the
        sampling error of the test set, not RAISE's Monte Carlo error (class docstring).  Zero for ``N = 1`` (one
        point has no spread); ``nan`` for ``N = 0``, as :attr:`mc_stderr`: the mean of no points is undefined, so
        is its error (a 0 there claimed an exact mean)."""
        n = self.log_likelihood.numel()
        if n == 0:
            return self.log_likelihood.new_full((), math.nan)
        return self.log_likelihood.std() / math.sqrt(n) if n > 1 else self.log_likelihood.new_zeros(())

    @property
    def stderr(self) -> torch.Tensor:
        """Deprecated name of :attr:`test_set_stderr` (removed in the next release), with a
        :class:`FutureWarning`: it is not the Monte Carlo error of the estimate, which is :attr:`mc_stderr`."""
        warnings.warn("RAISEResult.stderr is renamed test_set_stderr (the spread between test points, not the "
                      "Monte Carlo error of RAISE, which is mc_stderr); stderr will be removed in a future release",
                      FutureWarning, stacklevel=users_stacklevel())
        return self.test_set_stderr

    def __repr__(self) -> str:
        """A summary of constant size, whatever the number of points and chains (the dataclass ``repr`` printed
        every point's estimates and every chain's log-weight): the points ``N`` and chains ``M``, the steps, the
        mean estimate :math:`\\bar\\ell`, and the tensors' shapes and dtypes (not :attr:`mc_stderr`, a pass over
        every log-weight: a second for a million points)."""
        try:
            mean = self.log_likelihood.to(torch.float64).mean()
            points, chains = self.log_weights.shape[:-1].numel(), self.log_weights.shape[-1]
            head = (f"points={points}, chains={chains}, num_steps={self.num_steps!r}, "
                    f"mean_log_likelihood={number_text(mean)}, ")
        except Exception:  # a repr never raises: a result built by hand may hold anything
            head = f"num_steps={self.num_steps!r}, "
        return (f"RAISEResult({head}log_likelihood={array_text(self.log_likelihood)}, "
                f"log_z={array_text(self.log_z)}, log_weights={array_text(self.log_weights)})")
