r"""Annealing paths from a base-rate model to an RBM or a DBM, for :class:`~hybridpgm.infer.AIS`.

Following [1], the intermediate distributions interpolate the energies of a
*base-rate* model :math:`A` (visible biases :math:`b_A`, no weights, so its
partition function and samples are exact) and the target :math:`B`:

.. math::

    f_\beta(x) = \exp\big(-(1-\beta) E_A(v) - \beta E_B(x)\big),
    \qquad 0 = \beta_0 < \dots < \beta_K = 1 .

The units that are conditionally independent given the others (the hidden
units of an RBM, the odd layers of a DBM) are summed out analytically, so the
importance weights use the marginal :math:`f_\beta` of the remaining units and
a block-Gibbs sweep of the joint leaves :math:`f_\beta` invariant.

A path has ``log_z0`` (:math:`\log Z_A` of :math:`f_0`), ``sample0(n)`` (exact
draws from :math:`f_0/Z_A`) and ``step(x, beta_prev, beta, transition)`` returning
:math:`\log f_\beta(x) - \log f_{\beta_{prev}}(x)` and, if ``transition``, the
state after one Gibbs sweep at :math:`\beta`.  Both draw from the keyword-only
``generator`` (a :class:`torch.Generator` on the model's device) when one is given,
from torch's global stream otherwise.

A path follows its model: the weights, biases, ``sigma``, dtype and device are read
when it is used, ``log_z0`` included, so a path kept across ``load_state_dict``,
``model.double()`` or ``model.to(device)`` answers for the model as it is then.  Only
the base rates ``base`` are the path's own, fixed when it is built (from ``data``;
without data, zeros for Bernoulli units, while a Gaussian RBM's base is its visible
biases as they are when used); where the model moved to another dtype or device
since, they follow it (converted once, values kept).

References:

1. R. Salakhutdinov, I. Murray, "On the quantitative analysis of deep belief
   networks", ICML 2008.
2. R. Salakhutdinov, G. Hinton, "Deep Boltzmann machines", AISTATS 2009.
"""

from __future__ import annotations

import math

import torch

from hybridpgm.checks import flag
from hybridpgm.energy.sampling import bernoulli, standard_normal
from hybridpgm.errors import DataError
from hybridpgm.softplus import softplus
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["DBMAnnealingPath", "RBMAnnealingPath", "base_rate_bias"]


def base_rate_bias(data: torch.Tensor | None, like: torch.Tensor, gaussian: bool = False,
                   eps: float = 1e-3) -> torch.Tensor:
    """Visible biases of the base-rate model: :math:`\\operatorname{logit}` of the (clamped) data
    means for Bernoulli units, the data means for Gaussian units.  Without data: zeros for Bernoulli units (the
    uniform distribution), and for Gaussian units the target's own visible biases ``like`` (a Gaussian base of
    mean 0 under a model whose visible units sit around 1000 left AIS thousands of nats low, with a small
    standard error).

    :param data: ``N x V`` or ``None``; ``like``: the target's ``V`` visible biases (their shape, dtype and
        device; their values for Gaussian units without data).
    :param bool gaussian: the units are Gaussian (means) rather than Bernoulli (log-odds).
    :raises ConfigError: ``gaussian`` that is not ``True`` or ``False``.
    :raises DataError: ``data`` of the wrong shape, complex, empty (no means to take), holding NaN/inf, or
        (Bernoulli units) holding values outside ``[0, 1]``.
    """
    gaussian = flag(gaussian, "base_rate_bias gaussian")
    if data is None:
        return like.clone() if gaussian else torch.zeros_like(like)
    require_tensor(data, "AIS base-rate data", arg="data")
    if data.dim() < 1 or data.shape[-1] != like.shape[-1]:
        raise DataError(f"AIS base-rate data must have shape (N, {like.shape[-1]}), got {tuple(data.shape)}")
    if data.is_complex():
        raise DataError(f"AIS base-rate data must be real, got dtype {data.dtype}")
    if data.numel() == 0:
        raise DataError(f"AIS base-rate data is empty (shape {tuple(data.shape)}); pass data=None for "
                        "uniform base rates, or at least one row")
    if not bool(torch.isfinite(data).all()):
        raise DataError("AIS base-rate data holds NaN or inf")
    if not gaussian and not bool(((data >= 0) & (data <= 1)).all()):
        raise DataError(f"AIS base-rate data for Bernoulli units must lie in [0, 1], got values in "
                        f"[{data.min().item()}, {data.max().item()}]")
    mean = data.to(like).reshape(-1, like.shape[-1]).mean(0)
    if gaussian:
        return mean
    return torch.logit(mean.clamp(eps, 1 - eps))



_UNSET = object()


def _settable(prop: property) -> property:
    """``prop`` (read from the model when used), unless a value was set on the path: then that value, as it is
    (a subclass of an older release sets ``self.log_z0 = ...`` in its ``__init__``, where these were attributes)."""
    key = "_set_" + prop.fget.__name__

    def get(self):
        held = self.__dict__.get(key, _UNSET)
        return prop.fget(self) if held is _UNSET else held

    def set_(self, value) -> None:
        self.__dict__[key] = value

    return property(get, set_, doc=prop.__doc__)


class RBMAnnealingPath:
    r"""Path :math:`f_\beta(v) = e^{-(1-\beta)E_A(v) + \beta \cdot \text{vis}_B(v)}
    \prod_j (1 + e^{\beta (c_j + (v/\sigma)^\top W_{:j})})` for an :class:`~hybridpgm.energy.RBM`.

    :param rbm: the target RBM.
    :param data: optional ``N x V`` training data for the base rates [1]; without it, zeros for Bernoulli units
        and, for Gaussian units, the RBM's visible biases as they are when AIS runs (:func:`base_rate_bias`).
    """

    def __init__(self, rbm, data: torch.Tensor | None = None):
        self.rbm = rbm
        # Gaussian units without data: the RBM's visible biases as they are when AIS runs (None), as the path's
        # other parts follow the model (a copy taken here went stale after a load_state_dict)
        live = data is None and rbm.gaussian
        self.base = None if live else base_rate_bias(data, rbm.visible_bias.detach(), rbm.gaussian)

    @property
    def base(self) -> torch.Tensor:
        """The base-rate model's visible biases ``V``: from the data, zeros, or (a Gaussian RBM without data) the
        RBM's visible biases as they are now."""
        held = self.__dict__.get("base")
        return self.rbm.visible_bias.detach() if held is None else held

    @base.setter
    def base(self, value: torch.Tensor | None) -> None:
        self.__dict__["base"] = value  # where the attribute of earlier releases was: their pickles load

    @_settable
    @property
    def dtype(self) -> torch.dtype:
        """The RBM's dtype now."""
        return self.rbm.weight.dtype

    @_settable
    @property
    def device(self) -> torch.device:
        """The RBM's device now."""
        return self.rbm.weight.device

    @_settable
    @property
    def log_z0(self) -> torch.Tensor:
        """:math:`\\log Z_A = \\sum_i \\operatorname{softplus}(b_{A,i}) + H \\log 2` (Bernoulli; Gaussian:
        :math:`\\tfrac{V}{2} \\log 2\\pi + \\sum_i \\log \\sigma_i + H \\log 2`), with the RBM's ``sigma`` now."""
        rbm = self.rbm
        if rbm.gaussian:
            const = rbm.num_visible * 0.5 * math.log(2 * math.pi) + torch.log(rbm.sigma).sum()
        else:
            const = softplus(_following(self, rbm.visible_bias)).sum()
        return const.detach() + rbm.num_hidden * math.log(2.0)

    def _visible_gap(self, v: torch.Tensor, bias: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """:math:`-E_B^{vis}(v) + E_A(v)`, the visible part of :math:`\\partial \\log f_\\beta/\\partial\\beta`
        (``bias``: the RBM's visible biases, ``base``: the base rates in their dtype)."""
        rbm = self.rbm
        if rbm.gaussian:
            s = rbm.sigma
            return ((((v - base) / s) ** 2) - (((v - bias) / s) ** 2)).sum(-1) / 2
        return v @ (bias - base)

    @torch.no_grad()
    def sample0(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n x V`` exact draws of the base-rate model (from ``generator``, or torch's global stream)."""
        rbm = self.rbm
        base = _following(self, rbm.visible_bias)
        if rbm.gaussian:
            return base + rbm.sigma * torch.randn(n, rbm.num_visible, dtype=base.dtype, device=base.device,
                                                  generator=generator)
        return bernoulli(torch.sigmoid(base).expand(n, rbm.num_visible).contiguous(), generator=generator)

    @torch.no_grad()
    def step(self, v: torch.Tensor, beta_prev: float, beta: float, transition: bool = True, *,
             generator: torch.Generator | None = None):
        """The increment :math:`\\log f_\\beta(v) - \\log f_{\\beta_{prev}}(v)` (``n``) and, if ``transition``,
        ``v`` after one block-Gibbs sweep at :math:`\\beta` (``v`` itself otherwise), drawn from ``generator``
        (torch's global stream for ``None``).

        :raises ConfigError: ``transition`` that is not ``True`` or ``False``.
        """
        transition = flag(transition, "RBMAnnealingPath.step transition")
        rbm = self.rbm
        bias = rbm.visible_bias
        base = _following(self, bias)
        a = rbm.hidden_logits(v)
        inc = ((beta - beta_prev) * self._visible_gap(v, bias, base)
               + (softplus(beta * a) - softplus(beta_prev * a)).sum(-1))
        if not transition:
            return inc, v
        h = bernoulli(torch.sigmoid(beta * a), generator=generator)
        wh = h @ rbm.weight.T
        if rbm.gaussian:
            mean = (1 - beta) * base + beta * bias + beta * rbm.sigma * wh
            return inc, mean + rbm.sigma * standard_normal(mean, generator=generator)
        logits = (1 - beta) * base + beta * (bias + wh)
        return inc, bernoulli(torch.sigmoid(logits), generator=generator)


class DBMAnnealingPath:
    r"""Path for a :class:`~hybridpgm.energy.DBM` with the odd layers summed out [2]:

    .. math::

        f_\beta(x_{even}) = e^{(1-\beta) b_A^\top v + \beta \sum_{l\ even} b_l^\top x_l}
        \prod_{l\ odd} \prod_j \big(1 + e^{\beta a_{lj}}\big),\quad
        a_l = b_l + x_{l-1}^\top W_{l-1} + W_l x_{l+1}.

    The state is the list of all layers (odd layers are resampled each sweep).

    :param dbm: the target DBM; ``data``: optional ``N x V`` data for the base rates.
    """

    def __init__(self, dbm, data: torch.Tensor | None = None):
        self.dbm = dbm
        self.base = base_rate_bias(data, dbm.biases[0].detach())

    @_settable
    @property
    def dtype(self) -> torch.dtype:
        """The DBM's dtype now."""
        return self.dbm.weights[0].dtype

    @_settable
    @property
    def device(self) -> torch.device:
        """The DBM's device now."""
        return self.dbm.weights[0].device

    @_settable
    @property
    def log_z0(self) -> torch.Tensor:
        """:math:`\\log Z_A = \\sum_i \\operatorname{softplus}(b_{A,i}) + \\log 2 \\sum_{l \\ge 1} n_l`."""
        return softplus(_following(self, self.dbm.biases[0])).sum() + sum(self.dbm.sizes[1:]) * math.log(2.0)

    @torch.no_grad()
    def sample0(self, n: int, *, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Every layer's ``n x size`` exact draws of the base model (from ``generator``, or torch's global
        stream)."""
        dbm = self.dbm
        base = _following(self, dbm.biases[0])
        v = bernoulli(torch.sigmoid(base).expand(n, dbm.sizes[0]).contiguous(), generator=generator)
        half = [bernoulli(torch.full((n, size), 0.5, dtype=base.dtype, device=base.device), generator=generator)
                for size in dbm.sizes[1:]]
        return [v] + half

    @torch.no_grad()
    def step(self, x: list[torch.Tensor], beta_prev: float, beta: float, transition: bool = True, *,
             generator: torch.Generator | None = None):
        """The increment :math:`\\log f_\\beta(x) - \\log f_{\\beta_{prev}}(x)` (``n``) and, if ``transition``,
        the layers ``x`` after one sweep at :math:`\\beta` (odd layers, then even ones; ``x`` itself otherwise),
        drawn from ``generator`` (torch's global stream for ``None``).

        :raises ConfigError: ``transition`` that is not ``True`` or ``False``.
        """
        transition = flag(transition, "DBMAnnealingPath.step transition")
        dbm = self.dbm
        bias = dbm.biases[0]
        base = _following(self, bias)
        layers = len(x)
        odd = range(1, layers, 2)
        acts = {l: dbm.layer_logits(x, l) for l in odd}
        inc = x[0] @ (bias - base)
        for l in range(2, layers, 2):
            inc = inc + x[l] @ dbm.biases[l]
        inc = (beta - beta_prev) * inc
        for a in acts.values():
            inc = inc + (softplus(beta * a) - softplus(beta_prev * a)).sum(-1)
        if not transition:
            return inc, x
        x = list(x)
        for l, a in acts.items():
            x[l] = bernoulli(torch.sigmoid(beta * a), generator=generator)
        for l in range(0, layers, 2):
            a = dbm.layer_logits(x, l)
            if l == 0:
                a = (1 - beta) * base + beta * a
            else:
                a = beta * a
            x[l] = bernoulli(torch.sigmoid(a), generator=generator)
        return inc, x


def _following(path: RBMAnnealingPath | DBMAnnealingPath, like: torch.Tensor) -> torch.Tensor:
    """``path.base`` in ``like``'s dtype and on its device (the model's visible biases): converted, and kept so,
    where the model moved since the path was built; the same tensor, no copy, where it did not.  A base of
    ``None`` is ``like`` itself, as it is now (a Gaussian RBM's path without data)."""
    held = path.__dict__.get("base")
    if held is None:
        return like.detach()
    if held.dtype != like.dtype or held.device != like.device:
        held = path.__dict__["base"] = held.to(device=like.device, dtype=like.dtype)
    return held
