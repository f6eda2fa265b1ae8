r"""The log-partition function and likelihoods of a :class:`~hybridpgm.energy.dbm.DBM`, as a mixin of it.

With the layers :math:`x = [v, h_1, \dots, h_L]` and :math:`a_l = b_l + x_{l-1}^\top W_{l-1} + W_l x_{l+1}`
of :mod:`hybridpgm.energy.dbm`, the layers of one parity are summed out analytically given the others,

.. math::

    \log Z = \log \sum_{x_{l \equiv k}} \exp\Big(\sum_{l \equiv k} b_l^\top x_l
    + \sum_{l \not\equiv k} \sum_j \operatorname{softplus}(a_{lj})\Big),

enumerating (in chunks, up to 30 units; :func:`~hybridpgm.energy.enumerate_states.logsumexp_over_states`) the
smaller of the even (:math:`k = 0`) and odd (:math:`k = 1`) layer sets; :math:`\log \sum_h e^{-E(v, h)}` sums
out the odd layers and enumerates the even hidden ones, so :math:`\log p(v)` is exact on small models.  Larger
ones take :math:`\log Z` from AIS [1] and the mean-field bound

.. math::

    \log p(v) \ge -E(v, \mu) + \sum_{l \ge 1} \mathcal H(\mu_l) - \log Z .

Data are ``batch x V``.

References:

1. R. Salakhutdinov, G. Hinton, "Deep Boltzmann machines", AISTATS 2009.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hybridpgm.checks import check_log_z, flag
from hybridpgm.energy.enumerate_states import ais_unless_exact, logsumexp_over_states
from hybridpgm.errors import DataError
from hybridpgm.precision_scope import exact_precision

__all__ = ["DBMLikelihood"]


class DBMLikelihood:
    """:math:`\\log Z`, the unnormalised and normalised :math:`\\log p(v)` and the mean-field bound of a DBM.

    A mixin of :class:`~hybridpgm.energy.dbm.DBM` (see the module docstring for the maths): it uses the host's
    ``sizes``, ``num_layers``, ``weights``, and its ``check_parameters``, ``check_visible``, ``_summed_out``,
    ``_mean_field`` and ``_energy``.
    """

    def log_partition(self, method: str = "exact", *, chunk_size: int | None = None, differentiable: bool = False,
                      **ais_kwargs) -> torch.Tensor:
        """:math:`\\log Z`: ``"exact"`` enumerates the smaller of the even and odd layer sets
        (chunked, up to 30 units); ``"ais"`` runs :class:`~hybridpgm.infer.AIS` with ``ais_kwargs`` (its options,
        ``data``, and ``generator``, a :class:`torch.Generator` for its draws).

        :param bool differentiable: ``method="exact"`` only: record the enumeration for autograd (in grad mode),
            so that :math:`\\nabla \\log Z = -E_{p(x)}[\\nabla E(x)]` is exact; the result is a constant otherwise.
        :raises ConfigError: an unknown ``method``, ``ais_kwargs`` given with ``method="exact"``, a
            ``chunk_size`` that is not a positive integer, or ``differentiable`` that is not ``True`` or ``False``.
        """
        differentiable = flag(differentiable, "DBM.log_partition differentiable")
        self.check_parameters()
        log_z = ais_unless_exact(self, "DBM", method, ais_kwargs)
        if log_z is not None:
            return log_z
        even = sum(self.sizes[0::2])
        odd = sum(self.sizes[1::2])
        keep = 0 if even <= odd else 1
        layers = list(range(keep, len(self.sizes), 2))
        w = self.weights[0]

        def log_f(states: torch.Tensor) -> torch.Tensor:
            x = [None] * len(self.sizes)
            for l, part in zip(layers, states.split([self.sizes[l] for l in layers], -1)):
                x[l] = part
            return -self._summed_out(x, keep)

        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            return logsumexp_over_states(log_f, min(even, odd), dtype=w.dtype, device=w.device,
                                         chunk_size=chunk_size, cost_per_state=max(even, odd), what="DBM")

    def unnormalized_log_prob(self, v: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Exact :math:`\\log \\sum_h e^{-E(v,h)}` (``batch``) by enumerating the even hidden
        layers (feasible for small ``H2 + H4 + ...``); in grad mode differentiable in the parameters (and in
        ``v``), with several chunks each recomputed in the backward pass
        (:func:`~hybridpgm.energy.enumerate_states.logsumexp_over_states`).

        :param v: ``batch x V`` (two dimensions).
        :raises DataError: bad ``v`` (see :meth:`check_visible`), or ``v`` not two-dimensional.
        """
        v = self.check_visible(v)
        if v.dim() != 2:
            raise DataError(f"DBM.unnormalized_log_prob expects v of shape (batch, {self.sizes[0]}), "
                            f"got {tuple(v.shape)}")
        layers = list(range(2, len(self.sizes), 2))
        sizes = [self.sizes[l] for l in layers]
        if not layers:  # an RBM: nothing left to enumerate
            return -self._summed_out([v] + [None] * self.num_layers, keep=0)

        def log_f(states: torch.Tensor) -> torch.Tensor:  # states S x n -> S x batch
            x = [None] * len(self.sizes)
            x[0] = v.unsqueeze(0)
            for l, part in zip(layers, states.split(sizes, -1)):
                x[l] = part.unsqueeze(1)
            return -self._summed_out(x, keep=0)

        return logsumexp_over_states(log_f, sum(sizes), dtype=v.dtype, device=v.device, chunk_size=chunk_size,
                                     cost_per_state=v.shape[0] * sum(self.sizes[1::2]), what="DBM posterior")

    def log_likelihood(self, v: torch.Tensor, log_z: torch.Tensor | float | None = None) -> torch.Tensor:
        """Exact :math:`\\log p(v) = \\log \\sum_h e^{-E(v,h)} - \\log Z` (``batch``) on small models; under
        :func:`torch.autocast` computed with autocast off, in the model's dtype
        (:class:`~hybridpgm.precision_scope.exact_precision`).

        Without ``log_z``, :math:`\\log Z` is enumerated exactly and, in grad mode, differentiably
        (:meth:`log_partition` with ``differentiable=True``), as is the sum over :math:`h`, so the gradient is the
        exact one,

        .. math::

            \\nabla_\\theta \\log p(v) = -E_{p(h \\mid v)}\\big[\\nabla_\\theta E(v, h)\\big]
            + E_{p(v', h')}\\big[\\nabla_\\theta E(v', h')\\big],

        and ``(-dbm.log_likelihood(x).mean()).backward()`` is maximum-likelihood training (as for
        :meth:`RBM.log_likelihood <hybridpgm.energy.RBM.log_likelihood>`).

        :param log_z: a known :math:`\\log Z` (e.g. an AIS estimate), used as it is: a number or a tensor
            without a graph is a constant, so the result's gradient is that of :math:`\\log \\sum_h e^{-E(v,h)}`
            only (*not* that of :math:`\\log p(v)`); a tensor with a graph (``log_partition(differentiable=True)``)
            carries its own gradient.
        :raises ConfigError: ``log_z`` is not a finite scalar.
        :raises DataError: bad ``v`` (see :meth:`unnormalized_log_prob`).
        """
        with exact_precision(device=self.weights[0].device):
            if log_z is None:
                log_z = self.log_partition("exact", differentiable=torch.is_grad_enabled())
            else:
                log_z = check_log_z(log_z, "DBM.log_likelihood")
            return self.unnormalized_log_prob(v) - log_z

    @torch.no_grad()
    def log_likelihood_bound(self, v: torch.Tensor, log_z: torch.Tensor | float | None = None) -> torch.Tensor:
        """Mean-field variational lower bound on :math:`\\log p(v)` (``batch``), a monitor computed without
        gradients (the result carries no graph); under :func:`torch.autocast` computed with autocast off, in the
        model's dtype.

        :param log_z: :math:`\\log Z`, e.g. ``AIS(...)(dbm, data).log_z``; exact by default.
            With an AIS estimate the result is a stochastic estimate of the bound.
        :raises ConfigError: ``log_z`` is not a finite scalar.
        :raises DataError: bad ``v`` (see :meth:`check_visible`).
        """
        v = self.check_visible(v)
        with exact_precision(device=self.weights[0].device):
            if log_z is None:
                log_z = self.log_partition("exact")
            else:
                log_z = check_log_z(log_z, "DBM.log_likelihood_bound")
            mu = self._mean_field(v)
            entropy = sum(F.binary_cross_entropy(m, m, reduction="none").sum(-1) for m in mu[1:])
            return -self._energy(mu) + entropy - log_z
