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
:math:`\tilde v^{(i)}` the example with unit :math:`i` flipped (each gap from the change that the flip makes to
the hidden pre-activations, or, for a subclass that overrides the free energy, from flipped copies through its
own), and the reconstruction error
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

from hybridpgm.checks import check_empty, check_log_z, flag, generator_or_none
from hybridpgm.energy.enumerate_states import MAX_ENUMERATED_UNITS, ais_unless_exact, logsumexp_over_states
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.precision_scope import exact_precision
from hybridpgm.softplus import softplus

__all__ = ["RBMLikelihood"]

#: The most elements of one chunk of :func:`_flip_gaps`' ``batch x k x H`` pre-activations (1 MiB in float32;
#: larger chunks fall out of cache and run slower at 784 x 500, batch 100).
_FLIP_CHUNK_ELEMENTS = 2**18

#: The host's methods whose :class:`~hybridpgm.energy.rbm.RBM` definitions :func:`_flip_gaps` writes out: a class
#: (or an instance) that replaces one of them gets the gaps from flipped copies through its own ``_free_energy``
#: (:func:`_flip_gaps_through`).
_FREE_ENERGY_HOOKS = ("_free_energy", "_visible_term", "hidden_logits", "_scaled")


class RBMLikelihood:
    """:math:`\\log Z`, :math:`\\log p(v)`, the pseudo-log-likelihood and the reconstruction error of an RBM.

    A mixin of :class:`~hybridpgm.energy.rbm.RBM` (see the module docstring for the maths): it uses the host's
    parameters ``weight`` (``V x H``), ``visible_bias``, ``hidden_bias``, buffer ``sigma``, sizes
    ``num_visible`` / ``num_hidden``, ``gaussian``, and its ``check_parameters``, ``check_visible``,
    ``hidden_logits``, ``visible_param`` and ``_free_energy``.  A subclass may override ``_free_energy`` (or
    ``_visible_term``, ``hidden_logits``, ``_scaled``, which the RBM's uses): every result here then follows the
    override; :meth:`pseudo_log_likelihood` writes out the RBM's free energy only where none is overridden, and
    the exact :math:`\\log Z` enumerates the visible states through ``_free_energy`` where one is (the sum over
    hidden states writes out the RBM's energy; a Gaussian RBM's free energy overridden has no exact
    :math:`\\log Z` here).  AIS (``log_partition("ais")``) anneals along the RBM's own energy, whatever is
    overridden.
    """

    def log_partition(self, method: str = "exact", *, chunk_size: int | None = None, differentiable: bool = False,
                      **ais_kwargs) -> torch.Tensor:
        """:math:`\\log Z`, a scalar tensor.

        ``method="exact"`` enumerates the smaller layer (hidden units always for
        Gaussian visible units; the visible units through ``_free_energy`` where a subclass overrides the free
        energy, see the class docstring), chunked, up to 30 units; ``method="ais"`` runs
        :class:`~hybridpgm.infer.AIS` with ``ais_kwargs`` (its options, ``data``, and ``generator``, a
        :class:`torch.Generator` for its draws; use ``AIS`` directly for its standard error and log-weights).

        Under :func:`torch.autocast` the enumeration runs with autocast off, in the model's dtype
        (:func:`~hybridpgm.energy.enumerate_states.logsumexp_over_states`).

        :param str method: ``"exact"`` (default): the enumeration above, in the model's dtype; ``"ais"``: an
            :class:`~hybridpgm.infer.AIS` estimate (a ``float64`` scalar without a gradient), ``ais_kwargs`` passed
            on to it.
        :param chunk_size: ``method="exact"`` only (given with ``"ais"``, a ``ConfigError``): states per chunk of
            the enumeration, a positive integer; ``None`` (default) takes ``2**24 // (V + H)`` states, about
            ``2**24`` numbers per chunk.  Smaller chunks bound the memory and take more passes (with
            ``differentiable`` in grad mode, several chunks are each recomputed in the backward pass); the value is
            the same up to rounding.
        :param bool differentiable: ``method="exact"`` only: record the enumeration for autograd (in grad mode),
            so that :math:`\\nabla \\log Z = -E_{p(v,h)}[\\nabla E(v, h)]` is exact; the result is a constant
            otherwise.
        :raises ConfigError: an unknown ``method``, ``ais_kwargs`` given with ``method="exact"``, a
            ``chunk_size`` that is not a positive integer (or given with ``method="ais"``), or ``differentiable``
            that is not ``True`` or ``False``.
        :raises ModelSpecError: ``method="exact"`` with more than 30 units to enumerate, or the free energy of a
            Gaussian RBM overridden (no exact sum here), naming what is overridden.
        """
        differentiable = flag(differentiable, "RBM.log_partition differentiable")
        self.check_parameters()
        log_z = ais_unless_exact(self, "RBM", method, ais_kwargs, chunk_size)
        if log_z is not None:
            return log_z
        w = self.weight
        plain = _plain_free_energy(self)
        if not plain and (self.gaussian or self.num_visible > MAX_ENUMERATED_UNITS):
            hooks = ", ".join(n for n in _FREE_ENERGY_HOOKS if not _own_hook(self, n))
            why = ("of a Gaussian RBM, whose exact log Z here sums the RBM's own energy over the hidden states"
                   if self.gaussian else f"so its exact log Z sums over the 2**{self.num_visible} visible states "
                   f"(limit 2**{MAX_ENUMERATED_UNITS}); AIS would anneal along the RBM's own energy")
            raise ModelSpecError(f"RBM.log_partition('exact'): {type(self).__name__} overrides the free energy "
                                 f"({hooks}) {why}; pass log_z to log_likelihood, or do not override the free energy")
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            if self.gaussian or (plain and self.num_hidden <= self.num_visible):
                return logsumexp_over_states(self._log_marginal_hidden, self.num_hidden, dtype=w.dtype,
                                             device=w.device, chunk_size=chunk_size,
                                             cost_per_state=self.num_visible, what="RBM", module=self)
            return logsumexp_over_states(lambda v: -self._free_energy(v), self.num_visible, dtype=w.dtype,
                                         device=w.device, chunk_size=chunk_size,
                                         cost_per_state=self.num_hidden, what="RBM", module=self)

    def _log_marginal_hidden(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`\log \sum_v e^{-E(v,h)}` (an integral for Gaussian units), ``states``."""
        a = h @ self.weight.T
        if self.gaussian:
            b, s = self.visible_bias, self.sigma
            const = self.num_visible * 0.5 * math.log(2 * math.pi) + torch.log(s).sum()
            return h @ self.hidden_bias + (b * a / s + a**2 / 2).sum(-1) + const
        return h @ self.hidden_bias + softplus(a + self.visible_bias).sum(-1)

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

        :param v: ``batch x V`` visible data (any leading shape), checked by :meth:`check_visible`
            (:class:`~hybridpgm.errors.DataError`, :class:`~hybridpgm.errors.DeviceError`).
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
    @keyword_only_soon("exact")
    def pseudo_log_likelihood(self, v: torch.Tensor, *, exact: bool = False,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Pseudo-log-likelihood :math:`\sum_i \log p(v_i \mid v_{-i})` of binary ``v: batch x V``.

        With ``exact=False`` it is estimated from one random unit per example,
        :math:`V \log \sigma(F(\tilde v) - F(v))` with :math:`\tilde v` the
        example with that unit flipped (as scikit-learn does); ``exact=True``
        sums all ``V`` terms.  Each gap comes from the change that the flip makes to the hidden pre-activations
        :math:`a = c + v^\top W`: with :math:`d_i = 1 - 2 v_i`,
        :math:`F(\tilde v^{(i)}) - F(v) = -d_i b_i - \sum_j [\operatorname{softplus}(a_j + d_i W_{ij})
        - \operatorname{softplus}(a_j)]`, :math:`O(\text{batch} \cdot V \cdot H)` time and memory bounded by
        chunks of units (no ``batch x V x V`` copies).  A subclass (or an instance) that overrides
        ``_free_energy``, ``_visible_term``, ``hidden_logits`` or ``_scaled`` gets the gaps from flipped copies
        through its own ``_free_energy`` instead, in chunks of units under the same memory budget
        (:math:`O(\text{batch} \cdot V \cdot (V + H))` time).  Data in :math:`[0, 1]` (``probabilities=True``)
        flip to :math:`1 - v_i`.  Returns ``batch``, without a gradient.  Under :func:`torch.autocast` it is
        computed with autocast off, in the model's dtype (:class:`~hybridpgm.precision_scope.exact_precision`): a
        gap is a small difference of two free energies, which bfloat16 products moved by up to 0.03 nats.

        :param v: binary visible data ``batch x V`` (any leading shape, or one row ``V``: a 0-d result), checked by
            :meth:`check_visible` (values in :math:`[0, 1]` with ``probabilities=True``).
        :param bool exact: ``False`` (default): the one-random-unit estimate, unbiased for the sum; ``True``: all
            ``V`` terms, no randomness.  Keyword-only; by position it still works for one release, with a
            :class:`FutureWarning` (:func:`~hybridpgm.keyword_alias.keyword_only_soon`).
        :param generator: a :class:`torch.Generator` for the random units of ``exact=False`` (on ``v``'s device);
            ``None`` draws from torch's global stream.
        :raises ConfigError: Gaussian visible units, ``exact`` that is not ``True`` or ``False``, or ``generator``
            neither a :class:`torch.Generator` nor ``None``.
        :raises DataError: bad ``v`` (see :meth:`check_visible`).
        """
        exact = flag(exact, "RBM.pseudo_log_likelihood exact")
        generator = generator_or_none(generator, "RBM.pseudo_log_likelihood generator")
        if self.gaussian:
            raise ConfigError("pseudo_log_likelihood is defined for Bernoulli visible units only")
        v = self.check_visible(v)
        with exact_precision(device=self.weight.device):
            if exact:
                if _plain_free_energy(self):
                    gaps = _flip_gaps(v, self.hidden_logits(v), self.weight, self.visible_bias)
                else:
                    gaps = _flip_gaps_through(self._free_energy, v, self.num_hidden)
                return F.logsigmoid(gaps).sum(-1)
            free = self._free_energy(v)
            index = torch.randint(self.num_visible, v.shape[:-1], device=v.device, generator=generator)
            flip = F.one_hot(index, self.num_visible).to(v.dtype)
            flipped = (v - flip).abs()
            return self.num_visible * F.logsigmoid(self._free_energy(flipped) - free)

    @torch.no_grad()
    def reconstruction_error(self, v: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of :math:`\\|v - E[v \\mid h = E[h \\mid v]]\\|^2` (a monitor, not a likelihood).

        :param v: ``batch x V`` visible data (any leading shape: the mean is over all its rows), checked by
            :meth:`check_visible`.  Returns a 0-d tensor, without a gradient; under :func:`torch.autocast` computed
            with it off, in the model's dtype (:class:`~hybridpgm.precision_scope.exact_precision`).
        :raises DataError: bad ``v`` (see :meth:`check_visible`) or an empty batch (no mean to take)."""
        v = self.check_visible(v)
        check_empty(v, "RBM.reconstruction_error data 'v'")
        with exact_precision(device=self.weight.device):
            h = torch.sigmoid(self.hidden_logits(v))
            param = self.visible_param(h)
            mean = param if self.gaussian else torch.sigmoid(param)
            return ((v - mean) ** 2).sum(-1).mean()


def _plain_free_energy(model) -> bool:
    """Whether ``model``'s free energy is the :class:`~hybridpgm.energy.rbm.RBM`'s, the one :func:`_flip_gaps`
    writes out: each of :data:`_FREE_ENERGY_HOOKS` is the RBM's own function on ``type(model)`` (not overridden
    by a subclass) and not replaced by an attribute of the instance."""
    return all(_own_hook(model, name) for name in _FREE_ENERGY_HOOKS)


def _own_hook(model, name: str) -> bool:
    """Whether ``model``'s ``name`` (one of :data:`_FREE_ENERGY_HOOKS`) is the RBM's own function."""
    from hybridpgm.energy.rbm import RBM  # here, not at the top: rbm.py imports this module

    return getattr(type(model), name, None) is getattr(RBM, name) and name not in vars(model)


def _flip_gaps_through(free_energy, v: torch.Tensor, num_hidden: int) -> torch.Tensor:
    r"""The gaps :math:`F(\tilde v^{(i)}) - F(v)` for every unit :math:`i` from ``free_energy`` of flipped copies
    (:math:`v_i \to 1 - v_i`, also for data in :math:`[0, 1]`), for a free energy that :func:`_flip_gaps` does not
    write out (a subclass's).

    The copies are formed for a chunk of ``k`` units at a time, ``batch x k x V``, with ``k`` such that they and
    an RBM free energy's ``batch x k x H`` pre-activations hold at most ``max(_FLIP_CHUNK_ELEMENTS, batch x V,
    batch x H)`` elements (one unit per chunk where one unit is over the budget): no ``batch x V x V`` tensor.

    :param free_energy: :math:`F`, ``... x V -> ...`` (any leading shape).
    :param v: ``batch x V``, checked, in the model's dtype (``batch`` any leading shape, or none).
    :param num_hidden: ``H``, for the size of a chunk.
    :returns: ``batch x V``.
    """
    num_visible = v.shape[-1]
    free = free_energy(v).unsqueeze(-1)  # batch x 1
    rows = max(1, v[..., :1].numel() * max(num_visible, num_hidden))  # what one unit adds to a chunk
    step = max(1, _FLIP_CHUNK_ELEMENTS // rows)
    gaps = []
    for start in range(0, num_visible, step):
        units = torch.arange(start, min(start + step, num_visible), device=v.device)
        flips = F.one_hot(units, num_visible).to(v.dtype)  # k x V: row j flips unit start + j
        flipped = (v.unsqueeze(-2) - flips).abs()  # batch x k x V; |v_i - 1| = 1 - v_i exactly
        gaps.append(free_energy(flipped) - free)
    return torch.cat(gaps, -1)


def _flip_gaps(v: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    r"""The free-energy gaps :math:`F(\tilde v^{(i)}) - F(v)` of a Bernoulli RBM for every unit :math:`i`.

    Flipping unit :math:`i` (:math:`v_i \to 1 - v_i`, also for data in :math:`[0, 1]`) changes it by
    :math:`d_i = 1 - 2 v_i`, so the hidden pre-activations :math:`a = c + v^\top W` move to
    :math:`a + d_i W_{i:}` and the visible term by :math:`d_i b_i`:

    .. math::

        F(\tilde v^{(i)}) - F(v) = -d_i b_i
        - \sum_j \big[\operatorname{softplus}(a_j + d_i W_{ij}) - \operatorname{softplus}(a_j)\big].

    The moved pre-activations are formed for a chunk of ``k`` units at a time, a ``batch x k x H`` tensor of at
    most ``max(_FLIP_CHUNK_ELEMENTS, batch x H)`` elements: :math:`O(\text{batch} \cdot V \cdot H)` time,
    no ``V x V`` tensor (the flipped copies of every example).  The differences are taken term by term before
    the sum over :math:`j`, which cancels the large common part of the two free energies (float32 rounding).

    :param v: ``batch x V``, checked, in the model's dtype (``batch`` any leading shape, or none).
    :param logits: :math:`a`, ``batch x H``.
    :param weight: :math:`W`, ``V x H``.
    :param bias: :math:`b`, ``V``.
    :returns: ``batch x V``.
    """
    num_visible = weight.shape[0]
    change = 1 - 2 * v  # d, batch x V
    logits = logits.unsqueeze(-2)  # batch x 1 x H
    base = softplus(logits)
    rows = max(1, logits.numel())  # batch x H: the elements one unit adds to a chunk
    step = max(1, _FLIP_CHUNK_ELEMENTS // rows)
    gaps = []
    for start in range(0, num_visible, step):
        units = slice(start, start + step)
        moved = torch.addcmul(logits, change[..., units, None], weight[units])  # batch x k x H
        hidden = softplus(moved).sub_(base).sum(-1)  # batch x k
        gaps.append(torch.addcmul(hidden, change[..., units], bias[units]).neg_())
    return torch.cat(gaps, -1)
