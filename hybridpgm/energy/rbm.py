r"""Restricted Boltzmann machine with Bernoulli or Gaussian visible units.

The energy of visible units :math:`v \in \{0,1\}^V` (or :math:`\mathbb{R}^V`)
and hidden units :math:`h \in \{0,1\}^H` is

.. math::

    E(v, h) = -v^\top W h - b^\top v - c^\top h
    \quad\text{(Bernoulli)},\qquad
    E(v, h) = \sum_i \frac{(v_i - b_i)^2}{2\sigma_i^2} - (v/\sigma)^\top W h - c^\top h
    \quad\text{(Gaussian)},

with :math:`p(v, h) = e^{-E(v, h)} / Z`.  Summing out the hidden units gives
the free energy :math:`F(v) = -\log \sum_h e^{-E(v,h)}`,

.. math::

    F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + v^\top W_{:j})
    \quad\text{(Bernoulli; Gaussian: } \textstyle\sum_i \frac{(v_i-b_i)^2}{2\sigma_i^2}
    - \sum_j \operatorname{softplus}(c_j + (v/\sigma)^\top W_{:j})\text{)},

and :math:`\log p(v) = -F(v) - \log Z` (:math:`\log Z` and the likelihoods: :mod:`hybridpgm.energy.rbm_likelihood`).
The conditionals factorise:
:math:`p(h_j = 1 \mid v) = \sigma(c_j + (v/\sigma)^\top W_{:j})` and
:math:`p(v_i = 1 \mid h) = \sigma(b_i + W_{i:} h)` (Gaussian:
:math:`v_i \mid h \sim \mathcal N(b_i + \sigma_i W_{i:} h, \sigma_i^2)`).

References:

1. G. E. Hinton, "Training products of experts by minimizing contrastive
   divergence", Neural Computation, 2002.
2. G. E. Hinton, "A practical guide to training restricted Boltzmann machines",
   UTML TR 2010-003, 2010.
3. R. Salakhutdinov, I. Murray, "On the quantitative analysis of deep belief
   networks", ICML 2008.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from hybridpgm.checks import (check_device, generator_keywords, generator_or_none, positive_int, positive_real,
                              sample_count)
from hybridpgm.data.validation import as_model_dtype
from hybridpgm.energy.machine_options import RBMOptions
from hybridpgm.energy.rbm_chains import RBMChains, without_autocast
from hybridpgm.energy.rbm_checks import RBMChecks
from hybridpgm.energy.rbm_likelihood import RBMLikelihood
from hybridpgm.energy.rbm_sigma import GaussianSigma
from hybridpgm.energy.sampling import bernoulli, standard_normal
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.keyword_alias import renamed_keyword
from hybridpgm.serialization import serializable
from hybridpgm.softplus import softplus
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["RBM"]

_VISIBLE_TYPES = ("bernoulli", "gaussian")


@serializable
class RBM(RBMOptions, RBMChecks, GaussianSigma, RBMLikelihood, RBMChains, nn.Module):
    r"""Restricted Boltzmann machine (see the module docstring for the maths).

    :math:`\log Z`, :math:`\log p(v)`, the pseudo-log-likelihood and the reconstruction error come from
    :class:`~hybridpgm.energy.rbm_likelihood.RBMLikelihood`; the chain protocol of contrastive divergence
    (positive and negative phases, the CD/PCD surrogate) from :class:`~hybridpgm.energy.rbm_chains.RBMChains`;
    the checks of parameters and inputs from :class:`~hybridpgm.energy.rbm_checks.RBMChecks`; the ``sigma``
    buffer from :class:`~hybridpgm.energy.rbm_sigma.GaussianSigma`.

    :param int num_visible: ``V``.
    :param int num_hidden: ``H``.
    :param str visible: ``"bernoulli"`` or ``"gaussian"`` visible units.
    :param bool probabilities: Bernoulli units only: accept data in ``[0, 1]``
        (grey levels read as probabilities) instead of requiring exact 0/1.  The attribute may be changed later;
        ``num_visible``, ``num_hidden`` and ``visible_type`` are fixed.
    :param float sigma: standard deviation of Gaussian visible units (fixed; standardise
        the data first, as in [2]), held in the buffer ``sigma`` in the parameters' dtype; ``.double()`` and
        ``.to(dtype)`` give it this number at the new precision (not the float32 rounding widened) unless it
        was loaded or edited to another value (:mod:`hybridpgm.energy.rbm_sigma`).
    :param float init_scale: standard deviation of the initial weights (``0.01`` as in [2]).
    :raises ModelSpecError: a size that is not a positive integer (``bool`` and floats included), an unknown
        ``visible``, or a ``sigma`` / ``init_scale`` that is not a finite positive (non-negative) number.

    >>> rbm = RBM(6, 3)
    >>> rbm.free_energy(torch.ones(2, 6)).shape
    torch.Size([2])
    """

    def __init__(self, num_visible: int, num_hidden: int, *, visible: str = "bernoulli",
                 probabilities: bool = False, sigma: float = 1.0, init_scale: float = 0.01):
        super().__init__()
        num_visible = positive_int(num_visible, "RBM num_visible", error=ModelSpecError)
        num_hidden = positive_int(num_hidden, "RBM num_hidden", error=ModelSpecError)
        if visible not in _VISIBLE_TYPES:
            raise ModelSpecError(f"RBM visible units must be one of {_VISIBLE_TYPES}, got {visible!r}")
        self.probabilities = probabilities  # checked by its setter
        sigma = positive_real(sigma, "RBM sigma", error=ModelSpecError)
        init_scale = positive_real(init_scale, "RBM init_scale", error=ModelSpecError, allow_zero=True)
        self.num_visible, self.num_hidden, self.visible_type = num_visible, num_hidden, visible
        self.weight = nn.Parameter(torch.randn(num_visible, num_hidden).mul_(init_scale))
        self.visible_bias = nn.Parameter(torch.zeros(num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))
        self._register_sigma(num_visible, sigma)  # follows .double() at the precision asked (rbm_sigma)

    @property
    def gaussian(self) -> bool:
        return self.visible_type == "gaussian"

    def extra_repr(self) -> str:
        """The layer sizes and the visible units' type, shown by ``repr``."""
        return f"num_visible={self.num_visible}, num_hidden={self.num_hidden}, visible={self.visible_type!r}"

    # ------------------------------------------------------------- the maths
    def _scaled(self, v: torch.Tensor) -> torch.Tensor:
        return v / self.sigma if self.gaussian else v

    def _visible_term(self, v: torch.Tensor) -> torch.Tensor:
        """The visible-only part of :math:`-E`: :math:`b^\\top v` or :math:`-\\|v-b\\|^2_\\sigma/2`."""
        if self.gaussian:
            return -(((v - self.visible_bias) / self.sigma) ** 2).sum(-1) / 2
        return v @ self.visible_bias

    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """Pre-activations :math:`c + (v/\\sigma)^\\top W`, shape ``batch x H`` (no checks).

        :param v: ``batch x V`` visible states."""
        return F.linear(self._scaled(v), self.weight.t(), self.hidden_bias)  # one fused addmm

    def visible_param(self, h: torch.Tensor) -> torch.Tensor:
        """Logits (Bernoulli) or means (Gaussian) of :math:`p(v \\mid h)`, ``batch x V`` (no checks).

        :param h: ``batch x H`` hidden states."""
        if self.gaussian:
            return self.visible_bias + self.sigma * (h @ self.weight.T)
        return F.linear(h, self.weight, self.visible_bias)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:math:`E(v, h)`; returns ``batch``.

        :param v: ``batch x V`` visible states.
        :param h: ``batch x H`` hidden states (values in ``[0, 1]``).
        :raises DataError: bad ``v`` or ``h`` (see :meth:`check_visible`, :meth:`check_hidden`), or batch shapes
            of ``v`` and ``h`` that do not broadcast.
        """
        v = self.check_visible(v)
        h = self.check_hidden(h)
        try:
            torch.broadcast_shapes(v.shape[:-1], h.shape[:-1])
        except RuntimeError:
            raise DataError(f"RBM.energy: the batch shapes of v {tuple(v.shape)} and h {tuple(h.shape)} "
                            "do not match") from None
        interaction = ((self._scaled(v) @ self.weight) * h).sum(-1)
        return -self._visible_term(v) - interaction - h @ self.hidden_bias

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`F(v)`; returns ``batch``.

        :param v: ``batch x V`` visible data (checked by :meth:`check_visible`)."""
        v = self.check_visible(v)
        return self._free_energy(v)

    def _free_energy(self, v: torch.Tensor) -> torch.Tensor:
        return -self._visible_term(v) - softplus(self.hidden_logits(v)).sum(-1)

    def hidden(self, v: torch.Tensor) -> dist.Independent:
        """:math:`p(h \\mid v)` as a (Pyro) distribution with batch shape ``batch`` and event shape ``H``.

        :param v: ``batch x V`` visible data (checked by :meth:`check_visible`)."""
        v = self.check_visible(v)
        return dist.Bernoulli(logits=self.hidden_logits(v)).to_event(1)

    def visible(self, h: torch.Tensor) -> dist.Independent:
        """:math:`p(v \\mid h)` as a (Pyro) distribution with batch shape ``batch`` and event shape ``V``.

        :param h: ``batch x H`` hidden states (values in ``[0, 1]``).
        :raises DataError: bad ``h`` (see :meth:`check_hidden`)."""
        h = self.check_hidden(h)
        param = self.visible_param(h)
        if self.gaussian:
            return dist.Normal(param, self.sigma.expand_as(param)).to_event(1)
        return dist.Bernoulli(logits=param).to_event(1)

    # --------------------------------------------------------------- sampling
    # (the pre-activations are fresh tensors: their sigmoid is taken in place)
    # (``generator``: the chain's torch.Generator, or None for torch's global stream)
    def _sample_hidden(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return bernoulli(self.hidden_logits(v).sigmoid_(), generator=generator)

    def _sample_visible(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        param = self.visible_param(h)
        if self.gaussian:
            return param + self.sigma * standard_normal(param, generator=generator)
        return bernoulli(param.sigmoid_(), generator=generator)

    @renamed_keyword(num="num_samples")
    def random_visible(self, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples x V`` initial states: fair coins (Bernoulli) or :math:`\\mathcal N(b, \\sigma^2)`.

        :param num_samples: the number of states (the old keyword ``num=`` still works for one release, with a
            :class:`FutureWarning`: :func:`~hybridpgm.keyword_alias.renamed_keyword`).
        :param generator: a :class:`torch.Generator` for the draws (on the parameters' device); ``None`` draws
            from torch's global stream.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, or both it and ``num`` are given, or
            ``generator`` is neither a :class:`torch.Generator` nor ``None``."""
        num_samples = sample_count(num_samples, "RBM.random_visible num_samples")
        generator = generator_or_none(generator, "RBM.random_visible generator")
        w = self.weight
        if self.gaussian:
            return self.visible_bias.detach() + self.sigma * torch.randn(num_samples, self.num_visible,
                                                                          dtype=w.dtype, device=w.device,
                                                                          generator=generator)
        return bernoulli(torch.full((num_samples, self.num_visible), 0.5, dtype=w.dtype, device=w.device),
                         generator=generator)

    @torch.no_grad()
    def gibbs(self, v: torch.Tensor, steps: int = 1, h: torch.Tensor | None = None, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Run ``steps`` block-Gibbs sweeps :math:`h \\sim p(h|v),\\ v \\sim p(v|h)` from ``v``.

        :param v: ``batch x V`` start states.
        :param h: optional ``batch x H`` hidden sample to use in the first sweep
            (saves recomputing it when the caller already has it); checked as by
            :meth:`check_hidden`, and its batch shape must be ``v``'s.
        :param int steps: sweeps, a non-negative integer (0 returns ``v``).
        :param generator: a :class:`torch.Generator` for the draws (on the parameters' device); ``None`` draws
            from torch's global stream.
        :returns: ``batch x V`` visible states after the last sweep.
        :raises ConfigError: ``steps`` is not a non-negative integer, or ``generator`` is neither a
            :class:`torch.Generator` nor ``None``.
        :raises DataError: ``v`` is not a tensor of shape ``(..., V)``, or has a dtype the model does not
            convert exactly (only shapes and dtypes of ``v`` are checked here, no values: chains run through
            it); ``h`` fails :meth:`check_hidden` (shape ``(..., H)``, dtype, values in ``[0, 1]``) or its
            batch shape differs from ``v``'s.
        :raises DeviceError: ``v`` or ``h`` is not on the parameters' device.
        """
        steps = positive_int(steps, "RBM.gibbs steps", minimum=0)
        generator = generator_or_none(generator, "RBM.gibbs generator")
        require_tensor(v, "RBM.gibbs start states 'v'", arg="v")
        if v.dim() < 1 or v.shape[-1] != self.num_visible:
            raise DataError(f"RBM.gibbs start states 'v' must have shape (..., {self.num_visible}), "
                            f"got {tuple(v.shape)}")
        check_device(v, self.weight, "RBM.gibbs start states 'v'")
        v = as_model_dtype(v, self.weight.dtype, "RBM.gibbs start states 'v'")
        if h is not None:
            h = self.check_hidden(h, "h")
            if h.shape[:-1] != v.shape[:-1]:
                raise DataError(f"RBM.gibbs hidden sample 'h' has shape {tuple(h.shape)}, expected the batch shape "
                                f"of the start states 'v' {tuple(v.shape)}: {(*v.shape[:-1], self.num_hidden)}")
        with holding_global_state():  # as in sample
            return self._gibbs(v, steps, h, generator)

    @torch.no_grad()
    def _gibbs(self, v: torch.Tensor, steps: int, h: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`gibbs` without its checks: the chains of contrastive divergence and checked starts.  Under
        :func:`torch.autocast` the sweeps run with it off, in the parameters' dtype
        (:func:`~hybridpgm.energy.rbm_chains.without_autocast`): bfloat16 conditionals drew other states, and
        returned them in bfloat16."""
        with without_autocast(v.device):
            for _ in range(steps):
                v = self._sample_visible(self._sample_hidden(v, generator) if h is None else h, generator)
                h = None
        return v

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int = 1000, init: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``num_samples`` visible vectors by ``steps`` block-Gibbs sweeps.

        :param int num_samples: the number of chains (and samples), a non-negative integer.
        :param int steps: sweeps per chain, a positive integer (default ``1000``).
        :param init: optional ``num_samples x V`` start states (random by default).
        :param generator: a :class:`torch.Generator` for the draws (the random start states and every sweep; on
            the parameters' device); ``None`` draws from torch's global stream.
        :returns: ``num_samples x V``.
        :raises ConfigError: ``steps`` is not a positive integer, or ``generator`` is neither a
            :class:`torch.Generator` nor ``None``.
        :raises DataError: ``init`` is not ``num_samples x V`` valid visible data.
        """
        num_samples = sample_count(num_samples, "RBM.sample num_samples")
        steps = positive_int(steps, "RBM.sample steps")
        generator = generator_or_none(generator, "RBM.sample generator")
        self.check_parameters()
        if init is not None:
            v = self.check_visible(init, "init")
            if v.shape != (num_samples, self.num_visible):
                raise DataError(f"RBM.sample init must have shape ({num_samples}, {self.num_visible}) for "
                                f"num_samples={num_samples}, got {tuple(v.shape)}")
        with holding_global_state():  # no draw from the global stream amid another thread's seeded fit step
            if init is None:
                v = self.random_visible(num_samples, **generator_keywords(generator, self.random_visible,
                                                                          what="RBM.sample generator"))
            return self._gibbs(v, steps, None, generator)

    # ------------------------------- features and AIS (log Z, likelihoods: RBMLikelihood)
    @torch.no_grad()
    def transform(self, v: torch.Tensor) -> torch.Tensor:
        """Features :math:`E[h \\mid v]`, ``batch x H``.

        :param v: ``batch x V`` visible data (checked by :meth:`check_visible`)."""
        v = self.check_visible(v)
        return torch.sigmoid(self.hidden_logits(v))

    def annealing_path(self, data: torch.Tensor | None = None):
        """The AIS path from a base-rate model to this RBM, see
        :class:`~hybridpgm.energy.annealing.RBMAnnealingPath`.

        :param data: optional ``N x V`` training data whose means set the base-rate visible biases; ``None``
            (default) starts from zero biases (Bernoulli units) or from the RBM's own visible biases (Gaussian).
        :raises ModelSpecError: a parameter holds NaN/inf (:meth:`check_parameters`)."""
        from hybridpgm.energy.annealing import RBMAnnealingPath

        self.check_parameters()
        return RBMAnnealingPath(self, data)
