"""A :class:`~hybridpgm.graphs.MarkovNet` as one Pyro distribution over the joint state of its variables.

For a Markov random field (given evidence :math:`e`, which rules states out)

.. math::

    p(x \\mid e) = \\frac{\\exp \\sum_f \\theta_f(x_f)}{Z_e}\\, [x \\sim e], \\qquad
    Z_e = \\sum_{x \\sim e} \\exp \\sum_f \\theta_f(x_f),

``log_prob`` is the score minus the exact :math:`\\log Z_e` (:func:`~hybridpgm.infer.mrf_exact.exact_log_partition`,
differentiable in the potentials), ``sample`` draws exact joint samples from one contraction
(:func:`~hybridpgm.infer.mrf_exact.exact_sample`), ``mode`` is the exact MAP state
(:func:`~hybridpgm.infer.mrf_exact.exact_map`) and ``entropy`` the exact entropy
(:func:`~hybridpgm.infer.mrf_entropy.exact_entropy`).  So ``pyro.sample("x", mrf.distribution())`` is one site whose
value is the whole configuration, ``[..., V]`` in the model's variable order: an MRF prior over a discrete
structure, or a structured guide for one (its samples are not reparameterisable, so Pyro's ELBOs use the
score-function estimator [1] for it).  :meth:`~hybridpgm.graphs.MarkovNet.model` is the other view, one enumerated
site per variable.

**Shapes.**  ``batch_shape`` is the model's (independent models, evidence rows and contexts broadcast together);
``event_shape`` is ``(V,)``; values are integer states (any integer dtype; float values of whole numbers pass
Pyro's validation too).

**References**

[1] R. J. Williams, *Simple statistical gradient-following algorithms for connectionist reinforcement learning*,
1992.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import lazy_property

from hybridpgm.checks import sample_shape_of
from hybridpgm.errors import EvidenceError
from hybridpgm.graphs.mrf_compile import assignment_states

__all__ = ["MarkovNetDistribution"]


class MarkovNetDistribution(TorchDistribution):
    """The joint distribution of a :class:`~hybridpgm.graphs.MarkovNet` (given evidence), exactly.

    :param mrf: the model.
    :param evidence: ``name -> value`` (``-1`` unobserved), as for :meth:`~hybridpgm.graphs.MarkovNet.factor_graph`.
    :param context: the input of neural potentials, if any.

    >>> import torch
    >>> from hybridpgm.graphs import MarkovNet
    >>> mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    >>> d = mrf.distribution()
    >>> d.sample((5,)).shape, d.event_shape
    (torch.Size([5, 2]), torch.Size([2]))
    """

    arg_constraints: dict = {}
    has_enumerate_support = False

    def __init__(self, mrf, evidence=None, context=None, validate_args=None):
        self.mrf, self.evidence, self.context = mrf, evidence, context
        self._fg = mrf.factor_graph(evidence, context)
        self._cards = self._fg.cardinalities.to(self._fg.unary.device)
        super().__init__(self._fg.batch_shape, torch.Size([self._fg.num_vars]), validate_args=validate_args)

    @property
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self._cards - 1), 1)

    @lazy_property
    def log_partition(self) -> torch.Tensor:
        """``batch_shape`` exact :math:`\\log Z_e`."""
        from hybridpgm.infer.mrf_exact import exact_log_partition

        return self._fg.unflatten(exact_log_partition(self._fg))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(x \\mid e)`, ``sample_shape + batch_shape`` (``-inf`` where ``x`` contradicts the evidence).

        :param value: ``sample_shape + batch_shape + (V,)`` states; its leading dims broadcast against
            ``batch_shape`` (one state ``(V,)`` is scored under every model and evidence row).
        A value whose score is :math:`-\\infty` (finite penalties summing past the dtype's range) gets
        ``-inf`` too, never NaN.

        :raises EvidenceError: when the last dim of ``value`` is not the number of variables, its leading dims
            do not broadcast with ``batch_shape``, or a value is not a state of its variable (``1.5``, ``-1``,
            ``card``), with or without Pyro's validation; or when the evidence of a model has probability zero
            (:math:`\\log Z_e = -\\infty`: every assignment it allows scores :math:`-\\infty`), naming the model and
            its evidence (deferred to the one host read of :func:`~hybridpgm.fit`'s step inside it).
        """
        V = self._fg.num_vars
        if value.dim() == 0 or value.shape[-1] != V:
            raise EvidenceError(f"MarkovNetDistribution.log_prob: values need a last dim of {V} (the variables "
                                f"{self.mrf.variables}), got shape {tuple(value.shape)}")
        try:
            shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)  # sample_shape + batch_shape
        except RuntimeError:
            raise EvidenceError(f"MarkovNetDistribution.log_prob: values of shape {tuple(value.shape)} do not "
                                f"broadcast with batch_shape {tuple(self.batch_shape)} + event_shape ({V},)") from None
        # the named check first, with validation on or off: Pyro's validation would raise a plain ValueError that
        # names no variable (and with it off, value.long() would truncate 1.5 to 1, silently)
        states = {v: assignment_states(v, value[..., i], self.mrf.cards[v], "MarkovNetDistribution.log_prob")
                  for i, v in enumerate(self.mrf.variables)}
        if self._validate_args:
            self._validate_sample(value)
        x = torch.stack(list(states.values()), -1)
        from hybridpgm.infer.mrf_exact import _check_possible

        score = self.mrf.score(states, self.context)
        log_z = self.log_partition
        _check_possible(self._fg, log_z.reshape(-1), "MarkovNetDistribution.log_prob")
        # a value that scores -inf (finite penalties summing past the dtype's range) has probability zero: -inf,
        # not -inf - log Z (NaN where log Z is -inf too, inside fit's step before its deferred check raises); the
        # branch not taken gets a zero gradient, so masked rows leave the potentials' gradients finite
        lp = torch.where(score == -math.inf, torch.full_like(score, -math.inf), score - log_z)
        if self.evidence:
            valid = self._fg.valid.reshape(self.batch_shape + self._fg.valid.shape[1:])  # batch + [V, C]
            x = x.expand(shape + (V,))
            ok = valid.expand(shape + valid.shape[-2:]).gather(-1, x.unsqueeze(-1)).all(-2)[..., 0]
            lp = lp.masked_fill(~ok, -math.inf)
        return lp

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Exact joint samples, ``sample_shape + batch_shape + (V,)`` long (one contraction for all of them)."""
        from hybridpgm.infer.mrf_exact import exact_sample

        shape = sample_shape_of(sample_shape, "MarkovNetDistribution.sample")
        x = exact_sample(self._fg, math.prod(shape))  # [N, B, V]
        return x.reshape(shape + self.batch_shape + self.event_shape)

    def entropy(self) -> torch.Tensor:
        """Exact :math:`H(p) = \\log Z_e - \\mathbb E_p[\\sum_f \\theta_f(x_f)]`, ``batch_shape``, differentiable in
        the potentials (:func:`~hybridpgm.infer.mrf_entropy.exact_entropy`)."""
        from hybridpgm.infer.mrf_entropy import exact_entropy

        return self._fg.unflatten(exact_entropy(self._fg))

    @property
    def mode(self) -> torch.Tensor:
        """The exact most probable state, ``batch_shape + (V,)`` long."""
        from hybridpgm.infer.mrf_exact import exact_map

        return exact_map(self._fg)[0].reshape(self.batch_shape + self.event_shape)
