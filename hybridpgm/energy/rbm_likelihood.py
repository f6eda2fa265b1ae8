r"""The log-partition function and likelihoods of a :class:`~hybridpgm.energy.rbm.RBM`, as a mixin of it.

With the free energy :math:`F(v)` of :mod:`hybridpgm.energy.rbm`, :math:`\log p(v) = -F(v) - \log Z` and

.. math::

    \log Z = \log \sum_h \exp\Big(c^\top h + \sum_i \operatorname{softplus}(b_i + W_{i:} h)\Big)
    = \log \sum_v e^{-F(v)} \quad\text{(Bernoulli)},

enumerating the smaller layer in chunks (:func:`~hybridpgm.energy.enumerate_states.logsumexp_over_states`, up to
30 units); Gaussian visible units are integrated out,
:math:`\log \sum_h \exp\big(c^\top h + \sum_i (b_i a_i / \sigma_i + a_i^2 / 2)\big) + \frac{V}{2}\log 2\pi
+ \sum_i \log \sigma_i` with :math:`a = W h`.  Larger models take :math:`\log Z` from
:class:`~hybridpgm.infer.AIS` [1].  The pseudo-log-likelihood of binary data is
:math:`\sum_i \log p(v_i \mid v_{-i}) = \sum_i \log \sigma\big(F(\tilde v^{(i)}) - F(v)\big)`,
:math:`\tilde v^{(i)}` the example with unit :math:`i` flipped, and the reconstruction error
:math:`\|v - E[v \mid h = E[h \mid v]]\|^2` is a monitor of training [2].  Data are ``batch x V``.

References:

1. R. Salakhutdinov, I. Murray, "On the quantitative analysis of deep belief
   networks", ICML 2008.
2. G. E. Hinton, "A practical guide to training restricted Boltzmann machines",
   UTML TR 2010-003, 2010.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hybridpgm.checks import check_empty, check_log_z, flag
from hybridpgm.energy.enumerate_states import ais_unless_exact, logsumexp_over_states
from hybridpgm.errors import ConfigError
from hybridpgm.precision_scope import exact_precision

__all__ = ["RBMLikelihood"]


class RBMLikelihood:
    """:math:`\\log Z`, :math:`\\log p(v)`, the pseudo-log-likelihood and the reconstruction error of an RBM.

    A mixin of :class:`~hybridpgm.energy.rbm.RBM` (see the module docstring for the maths): it uses the host's
    parameters ``weight`` (``V x H``), ``visible_bias``, ``hidden_bias``, buffer ``sigma``, sizes
    ``num_visible`` / ``num_hidden``, ``gaussian``, and its ``check_parameters``, ``check_visible``,
    ``hidden_logits``, ``visible_param`` and ``_free_energy``.
    """

    def log_partition(self, method: str = "exact", *, chunk_size: int | None = None, differentiable: bool = False,
                      **ais_kwargs) -> torch.Tensor:
        """:math:`\\log Z`, a scalar tensor.

        ``method="exact"`` enumerates the smaller layer (hidden units always for
        Gaussian visible units), chunked, up to 30 units; ``method="ais"`` runs
        :class:`~hybridpgm.infer.AIS` with ``ais_kwargs`` (use ``AIS`` directly
        for its standard error and log-weights).

        Under :func:`torch.autocast` the enumeration runs with autocast off, in the model's dtype
        (:func:`~hybridpgm.energy.enumerate_states.logsumexp_over_states`).

        :param bool differentiable: ``method="exact"`` only: record the enumeration for autograd (in grad mode),
            so that :math:`\\nabla \\log Z = -E_{p(v,h)}[\\nabla E(v, h)]` is exact; the result is a constant
            otherwise.
        :raises ConfigError: an unknown ``method``, ``ais_kwargs`` given with ``method="exact"``, a
            ``chunk_size`` that is not a positive integer, or ``differentiable`` that is not ``True`` or ``False``.
        """
        differentiable = flag(differentiable, "RBM.log_partition differentiable")
        self.check_parameters()
        log_z = ais_unless_exact(self, "RBM", method, ais_kwargs)
        if log_z is not None:
            return log_z
        w = self.weight
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            if self.gaussian or self.num_hidden <= self.num_visible:
                return logsumexp_over_states(self._log_marginal_hidden, self.num_hidden, dtype=w.dtype,
                                             device=w.device, chunk_size=chunk_size,
                                             cost_per_state=self.num_visible, what="RBM")
            return logsumexp_over_states(lambda v: -self._free_energy(v), self.num_visible, dtype=w.dtype,
                                         device=w.device, chunk_size=chunk_size,
                                         cost_per_state=self.num_hidden, what="RBM")

    def _log_marginal_hidden(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`\log \sum_v e^{-E(v,h)}` (an integral for Gaussian units), ``states``."""
        a = h @ self.weight.T
        if self.gaussian:
            b, s = self.visible_bias, self.sigma
            const = self.num_visible * 0.5 * math.log(2 * math.pi) + torch.log(s).sum()
            return h @ self.hidden_bias + (b * a / s + a**2 / 2).sum(-1) + const
        return h @ self.hidden_bias + F.softplus(a + self.visible_bias).sum(-1)

    def log_likelihood(self, v: torch.Tensor, log_z: torch.Tensor | float | None = None) -> torch.Tensor:
        """:math:`\\log p(v) = -F(v) - \\log Z` for ``v: batch x V``; returns ``batch``.

        Without ``log_z``, :math:`\\log Z` is enumerated exactly and, in grad mode, differentiably
        (:meth:`log_partition` with ``differentiable=True``), so the gradient is the exact one,

        .. math::

            \\nabla_\\theta \\log p(v) = -\\nabla_\\theta F(v) + E_{p(v')}\\big[\\nabla_\\theta F(v')\\big],

        and ``(-rbm.log_likelihood(x).mean()).backward()`` is maximum-likelihood training.
        Under :func:`torch.autocast` (``fit(precision="bf16"/"fp16")``) it is computed with autocast off
        (:class:`~hybridpgm.precision_scope.exact_precision`), in the model's dtype: float32, not bfloat16, for a
        float32 RBM (:meth:`log_partition` too).

        :param log_z: a known :math:`\\log Z` (e.g. an AIS estimate), used as it is: a number or a tensor
            without a graph is a constant, so the result's gradient is :math:`-\\nabla_\\theta F(v)` only (the
            value is conditional on that constant and the gradient is *not* that of :math:`\\log p(v)`); a tensor
            with a graph (``log_partition(differentiable=True)``) carries its own gradient.

        :raises ConfigError: ``log_z`` is not a finite scalar (a number or a one-element tensor).
        """
        with exact_precision(device=self.weight.device):
            if log_z is None:
                log_z = self.log_partition("exact", differentiable=torch.is_grad_enabled())
            else:
                log_z = check_log_z(log_z, "RBM.log_likelihood")
            return -self.free_energy(v) - log_z

    @torch.no_grad()
    def pseudo_log_likelihood(self, v: torch.Tensor, exact: bool = False) -> torch.Tensor:
        r"""Pseudo-log-likelihood :math:`\sum_i \log p(v_i \mid v_{-i})` of binary ``v: batch x V``.

        With ``exact=False`` it is estimated from one random unit per example,
        :math:`V \log \sigma(F(\tilde v) - F(v))` with :math:`\tilde v` the
        example with that unit flipped (as scikit-learn does); ``exact=True``
        sums all ``V`` terms.  Returns ``batch``.

        :raises ConfigError: Gaussian visible units, or ``exact`` that is not ``True`` or ``False``.
        :raises DataError: bad ``v`` (see :meth:`check_visible`).
        """
        exact = flag(exact, "RBM.pseudo_log_likelihood exact")
        if self.gaussian:
            raise ConfigError("pseudo_log_likelihood is defined for Bernoulli visible units only")
        v = self.check_visible(v)
        free = self._free_energy(v)
        if exact:
            eye = torch.eye(self.num_visible, dtype=v.dtype, device=v.device)
            flipped = (v.unsqueeze(-2) - eye).abs()  # batch x V x V: row i has unit i flipped
            return F.logsigmoid(self._free_energy(flipped) - free.unsqueeze(-1)).sum(-1)
        index = torch.randint(self.num_visible, v.shape[:-1], device=v.device)
        flip = F.one_hot(index, self.num_visible).to(v.dtype)
        flipped = (v - flip).abs()
        return self.num_visible * F.logsigmoid(self._free_energy(flipped) - free)

    @torch.no_grad()
    def reconstruction_error(self, v: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of :math:`\\|v - E[v \\mid h = E[h \\mid v]]\\|^2` (a monitor, not a likelihood).

        :raises DataError: bad ``v`` (see :meth:`check_visible`) or an empty batch (no mean to take)."""
        v = self.check_visible(v)
        check_empty(v, "RBM.reconstruction_error data 'v'")
        h = torch.sigmoid(self.hidden_logits(v))
        param = self.visible_param(h)
        mean = param if self.gaussian else torch.sigmoid(param)
        return ((v - mean) ** 2).sum(-1).mean()
