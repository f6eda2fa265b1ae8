r"""The log-partition function and likelihoods of a :class:`~hybridpgm.energy.dbm.DBM`, as a mixin of it.

With the layers :math:`x = [v, h_1, \dots, h_L]` and :math:`a_l = b_l + x_{l-1}^\top W_{l-1} + W_l x_{l+1}`
of :mod:`hybridpgm.energy.dbm`, the layers of one parity are summed out analytically given the others,

.. math::

    \log Z = \log \sum_{x_{l \equiv k}} \exp\Big(\sum_{l \equiv k} b_l^\top x_l
    + \sum_{l \not\equiv k} \sum_j \operatorname{softplus}(a_{lj})\Big),

enumerating (in chunks, up to 30 units; :func:`~hybridpgm.energy.enumerate_states.logsumexp_over_states`) the
smaller of the even (:math:`k = 0`) and odd (:math:`k = 1`) layer sets.  With :math:`v = x_0` clamped the
hidden layers alternate as well: :math:`\log \sum_h e^{-E(v, h)}` enumerates the smaller of the even hidden
layers :math:`h_2, h_4, \dots` (:math:`k = 0`; the odd layers summed out as above) and the odd hidden layers
:math:`h_1, h_3, \dots` (:math:`k = 1`), where the even hidden layers factorise given their odd neighbours,

.. math::

    \log \sum_h e^{-E(v, h)} = \log \sum_{x_1, x_3, \dots} \exp\Big(b_0^\top v + v^\top W_0 x_1
    + \sum_{l \text{ odd}} b_l^\top x_l + \sum_{l \ge 2 \text{ even}} \sum_j \operatorname{softplus}(a_{lj})\Big),

so :math:`\log p(v)` is exact on small models.  Larger ones take :math:`\log Z` from AIS [1] and the
mean-field bound

.. math::

    \log p(v) \ge -E(v, \mu) + \sum_{l \ge 1} \mathcal H(\mu_l) - \log Z .

Data are ``[..., V]``: :meth:`~DBMLikelihood.log_likelihood`, :meth:`~DBMLikelihood.unnormalized_log_prob` and
:meth:`~DBMLikelihood.log_likelihood_bound` take one example ``[V]`` (a 0-d result) or a batch of any shape and
answer with that batch shape (the first two flatten it into rows and restore it:
:func:`~hybridpgm.batch_shapes.over_batch_shape`).

References:

1. R. Salakhutdinov, G. Hinton, "Deep Boltzmann machines", AISTATS 2009.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hybridpgm.batch_shapes import over_batch_shape
from hybridpgm.checks import check_log_z, flag
from hybridpgm.energy.enumerate_states import MAX_ENUMERATED_UNITS, ais_unless_exact, logsumexp_over_states
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.precision_scope import exact_precision
from hybridpgm.softplus import softplus

__all__ = ["DBMLikelihood"]


def _visible_width(dbm) -> int:
    """The DBM's visible size :math:`V` (the width :func:`~hybridpgm.batch_shapes.over_batch_shape` checks)."""
    return dbm.sizes[0]


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

        :param str method: ``"exact"`` (default): the enumeration, in the model's dtype
            (:class:`~hybridpgm.errors.ModelSpecError` where both layer sets have more than 30 units); ``"ais"``: an
            AIS estimate (a ``float64`` scalar without a gradient), ``ais_kwargs`` passed on to it.
        :param chunk_size: ``method="exact"`` only (given with ``"ais"``, a ``ConfigError``): states per chunk of
            the enumeration, a positive integer; ``None`` (default) takes ``2**24 // sum(sizes)`` states, about
            ``2**24`` numbers per chunk (the memory bound; the value is the same up to rounding).
        :param bool differentiable: ``method="exact"`` only: record the enumeration for autograd (in grad mode),
            so that :math:`\\nabla \\log Z = -E_{p(x)}[\\nabla E(x)]` is exact; the result is a constant otherwise.
        :raises ConfigError: an unknown ``method``, ``ais_kwargs`` given with ``method="exact"``, a
            ``chunk_size`` that is not a positive integer (or given with ``method="ais"``), or ``differentiable``
            that is not ``True`` or ``False``.
        """
        differentiable = flag(differentiable, "DBM.log_partition differentiable")
        self.check_parameters()
        log_z = ais_unless_exact(self, "DBM", method, ais_kwargs, chunk_size)
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
                                         chunk_size=chunk_size, cost_per_state=max(even, odd), what="DBM",
                                         module=self)

    @over_batch_shape("DBM", _visible_width, name="v")
    def unnormalized_log_prob(self, v: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Exact :math:`\\log \\sum_h e^{-E(v,h)}` (``[...]``, the batch shape of ``v``), enumerating the smaller of
        the even hidden layers ``H2 + H4 + ...`` and the odd hidden layers ``H1 + H3 + ...`` (the other set summed
        out; see the module docstring), so feasible when either has at most 30 units; in grad mode differentiable in the
        parameters (and in ``v``), with several chunks each recomputed in the backward pass from the forward pass's
        parameters and ``v`` (:func:`~hybridpgm.energy.enumerate_states.logsumexp_over_states`: an in-place edit of
        either before ``backward()`` changes no gradient).  Both choices give the same value up
        to rounding; with a tie the even hidden layers are enumerated.

        :param v: ``[..., V]``: ``batch x V``, one example ``[V]`` (a 0-d result, that of ``v[None]`` without its
            row dimension) or any batch shape (its rows flattened and the result reshaped).
        :param chunk_size: states per chunk of the enumeration (default: about ``2**24`` numbers per chunk).
        :raises DataError: bad ``v`` (see :meth:`check_visible`).
        :raises ConfigError: ``chunk_size`` is not a positive integer.
        :raises ModelSpecError: both hidden parities have more than 30 units, naming the call and the widths
            (:meth:`log_likelihood_bound` needs no enumeration over :math:`h`).
        """
        return self._sum_over_hidden(v, chunk_size, "DBM.unnormalized_log_prob")

    def _hidden_parity(self, call: str) -> int:
        """The ``keep`` of :meth:`_sum_over_hidden`: ``0`` to enumerate the even hidden layers (when they are no
        wider than the odd ones), ``1`` to enumerate the odd ones; a :class:`ModelSpecError` naming ``call`` when
        both exceed :data:`~hybridpgm.energy.enumerate_states.MAX_ENUMERATED_UNITS`."""
        even, odd = sum(self.sizes[2::2]), sum(self.sizes[1::2])
        self._refuse_enumeration(f"{call}: the exact sum over the hidden layers given v", even,
                                 "hidden layers H2+H4+...", odd,
                                 "use log_likelihood_bound(v, log_z) for the mean-field lower bound on log p(v)")
        return 0 if even <= odd else 1

    def _refuse_enumeration(self, what: str, even: int, even_layers: str, odd: int, advice: str) -> None:
        """Raise :class:`ModelSpecError` where the smaller of ``even`` units (``even_layers``, as the message names
        them) and ``odd`` units (the odd layers H1+H3+...) exceeds
        :data:`~hybridpgm.energy.enumerate_states.MAX_ENUMERATED_UNITS`: ``what`` would enumerate ``2**min`` states."""
        if min(even, odd) > MAX_ENUMERATED_UNITS:
            raise ModelSpecError(
                f"{what} of DBM {self.sizes} would enumerate 2**{min(even, odd)} states (the smaller of the even "
                f"{even_layers} = {even} units and the odd layers H1+H3+... = {odd} units; limit "
                f"2**{MAX_ENUMERATED_UNITS}); {advice}")

    def _sum_over_hidden(self, v: torch.Tensor, chunk_size: int | None, call: str,
                         keep: int | None = None) -> torch.Tensor:
        """:meth:`unnormalized_log_prob` for ``call`` (its error messages); ``keep`` forces the parity of the
        hidden layers enumerated (``0`` even, ``1`` odd; ``None``: :meth:`_hidden_parity`)."""
        v = self.check_visible(v)
        if v.dim() != 2:
            raise DataError(f"{call} expects v of shape (batch, {self.sizes[0]}), got {tuple(v.shape)}")
        if keep is None:
            keep = self._hidden_parity(call)
        layers = list(range(2 - keep, len(self.sizes), 2))  # the hidden layers of parity keep
        sizes = [self.sizes[l] for l in layers]
        if not layers:  # an RBM: nothing left to enumerate
            return -self._summed_out([v] + [None] * self.num_layers, keep=0)

        def log_f(states: torch.Tensor, data: torch.Tensor) -> torch.Tensor:  # states S x n -> S x batch
            x = [None] * len(self.sizes)
            x[0] = data.unsqueeze(0)  # v, or the forward pass's copy of it where a chunk is recomputed
            for l, part in zip(layers, states.split(sizes, -1)):
                x[l] = part.unsqueeze(1)
            return self._clamped_log_weight(x, keep)

        summed = sum(self.sizes[1::2]) if keep == 0 else sum(self.sizes[2::2]) + self.sizes[1]
        return logsumexp_over_states(log_f, sum(sizes), dtype=v.dtype, device=v.device, chunk_size=chunk_size,
                                     cost_per_state=v.shape[0] * summed, what=f"{call} (the sum over h)",
                                     module=self, inputs=(v,))

    def _clamped_log_weight(self, x: list, keep: int) -> torch.Tensor:
        """:math:`\\log \\sum e^{-E}` over the hidden layers of parity ``1 - keep`` given ``v = x[0]`` and the
        hidden layers of parity ``keep`` (the two sums of the module docstring)."""
        if keep == 0:  # v is an even layer: the odd layers are summed out given all even ones
            return -self._summed_out(x, keep=0)
        out = x[0] @ self.biases[0] + ((x[0] @ self.weights[0]) * x[1]).sum(-1)
        for l in range(1, len(self.sizes), 2):
            out = out + x[l] @ self.biases[l]
        for l in range(2, len(self.sizes), 2):
            out = out + softplus(self.layer_logits(x, l)).sum(-1)
        return out

    def _exact_log_z(self, call: str, differentiable: bool = False) -> torch.Tensor:
        """:meth:`log_partition` (``"exact"``) for a likelihood called without ``log_z``: a
        :class:`ModelSpecError` naming ``call`` where the enumeration is too large, advising a ``log_z``."""
        self._refuse_enumeration(f"{call} without log_z: the exact log Z", sum(self.sizes[0::2]),
                                 "layers V+H2+...", sum(self.sizes[1::2]),
                                 "pass log_z, e.g. dbm.log_partition('ais', data=x), an estimate")
        return self.log_partition("exact", differentiable=differentiable)

    @over_batch_shape("DBM", _visible_width, name="v")
    def log_likelihood(self, v: torch.Tensor, log_z: torch.Tensor | float | None = None) -> torch.Tensor:
        """Exact :math:`\\log p(v) = \\log \\sum_h e^{-E(v,h)} - \\log Z` (``[...]``, the batch shape of ``v``) on
        small models (the sum over
        :math:`h` as in :meth:`unnormalized_log_prob`); under :func:`torch.autocast` computed with autocast off,
        in the model's dtype (:class:`~hybridpgm.precision_scope.exact_precision`).

        Without ``log_z``, :math:`\\log Z` is enumerated exactly and, in grad mode, differentiably
        (:meth:`log_partition` with ``differentiable=True``), as is the sum over :math:`h`, so the gradient is the
        exact one,

        .. math::

            \\nabla_\\theta \\log p(v) = -E_{p(h \\mid v)}\\big[\\nabla_\\theta E(v, h)\\big]
            + E_{p(v', h')}\\big[\\nabla_\\theta E(v', h')\\big],

        and ``(-dbm.log_likelihood(x).mean()).backward()`` is maximum-likelihood training (as for
        :meth:`RBM.log_likelihood <hybridpgm.energy.RBM.log_likelihood>`).

        :param v: ``[..., V]``: ``batch x V``, one example ``[V]`` (a 0-d result) or any batch shape, as in
            :meth:`unnormalized_log_prob`.
        :param log_z: a known :math:`\\log Z` (e.g. an AIS estimate), used as it is: a number or a tensor
            without a graph is a constant, so the result's gradient is that of :math:`\\log \\sum_h e^{-E(v,h)}`
            only (*not* that of :math:`\\log p(v)`); a tensor with a graph (``log_partition(differentiable=True)``)
            carries its own gradient.
        :raises ConfigError: ``log_z`` is not a finite scalar.
        :raises DataError: bad ``v`` (see :meth:`unnormalized_log_prob`).
        :raises ModelSpecError: both hidden parities have more than 30 units (see :meth:`unnormalized_log_prob`),
            or, without ``log_z``, both the even layers ``V + H2 + ...`` and the odd ones have more than 30 units
            (pass ``log_z``, e.g. ``log_partition("ais", data=x)``); each message names the call.
        """
        call = "DBM.log_likelihood"
        self._hidden_parity(call)  # the sum over h is feasible before log Z is computed
        with exact_precision(device=self.weights[0].device):
            if log_z is None:
                log_z = self._exact_log_z(call, differentiable=torch.is_grad_enabled())
            else:
                log_z = check_log_z(log_z, call)
            return self._sum_over_hidden(v, None, call) - log_z

    @torch.no_grad()
    def log_likelihood_bound(self, v: torch.Tensor, log_z: torch.Tensor | float | None = None) -> torch.Tensor:
        """Mean-field variational lower bound on :math:`\\log p(v)` (``[...]``, the batch shape of ``v``), a monitor
        computed without gradients (the result carries no graph); under :func:`torch.autocast` computed with
        autocast off, in the model's dtype.

        :param v: ``[..., V]`` visible data (``batch x V``, one example ``[V]`` or any leading shape), checked by
            :meth:`check_visible`; the mean field
            runs from it as :meth:`mean_field` does by default (at most ``mean_field_steps`` sweeps, ``tol=1e-5``).
        :param log_z: :math:`\\log Z`, e.g. ``AIS(...)(dbm, data).log_z``; exact by default.
            With an AIS estimate the result is a stochastic estimate of the bound.
        :raises ConfigError: ``log_z`` is not a finite scalar.
        :raises DataError: bad ``v`` (see :meth:`check_visible`).
        :raises ModelSpecError: without ``log_z``, both the even layers ``V + H2 + ...`` and the odd ones have
            more than 30 units (pass ``log_z``), naming the call.
        """
        v = self.check_visible(v)
        with exact_precision(device=self.weights[0].device):
            if log_z is None:
                log_z = self._exact_log_z("DBM.log_likelihood_bound")
            else:
                log_z = check_log_z(log_z, "DBM.log_likelihood_bound")
            mu = self._mean_field(v)
            entropy = sum(F.binary_cross_entropy(m, m, reduction="none").sum(-1) for m in mu[1:])
            return -self._energy(mu) + entropy - log_z
