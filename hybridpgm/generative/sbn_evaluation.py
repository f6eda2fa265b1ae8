"""Ancestral samples and the importance-sampled :math:`\\log p(x)` of a sigmoid belief net, run with autocast off.

:class:`SBNEvaluation` is a mixin of :class:`~hybridpgm.generative.sbn.SigmoidBeliefNet` (it calls the net's
:meth:`~hybridpgm.generative.sbn.SigmoidBeliefNet.model`, ``guide`` and ``_check_rows``).  Both methods run the
net's Pyro programs as programs of their own (isolated from the caller's effect handlers and its param store)
and, under :func:`torch.autocast` (a user's block, or ``fit(precision="bf16")``), with autocast off
(:func:`~hybridpgm.infer.autocast_off.autocast_off`), in the parameters' dtype:

* :meth:`~SBNEvaluation.log_likelihood` is an evaluation estimate, like AIS: summing :math:`D` bfloat16
  log-densities of the observed layer put it 0.25 nats off on a row (0.014 on average) of a ``[64, 32, 16]`` net
  with weights of scale 4;
* :meth:`~SBNEvaluation.sample` draws each layer from :math:`\\sigma` of the decoders' logits: in bfloat16 those
  probabilities are rounded (a different state in 12 of 3200 units for one seed) and the samples came back in
  bfloat16.

Under autocast both give what they give outside it, bit for bit, for the same random streams.
"""

from __future__ import annotations

import torch

from hybridpgm.batch_shapes import over_batch_shape
from hybridpgm.checks import generator_or_none, sample_count
from hybridpgm.handler_scope import isolated_from_handlers
from hybridpgm.infer.autocast_off import autocast_off
from hybridpgm.param_store_scope import own_param_store
from hybridpgm.rng_scope import seeded_globally_from

__all__ = ["SBNEvaluation"]


class SBNEvaluation:
    """Mixin of :class:`~hybridpgm.generative.sbn.SigmoidBeliefNet`: :meth:`sample` and :meth:`log_likelihood`
    (see the module docstring)."""

    @isolated_from_handlers
    @own_param_store
    @torch.no_grad()
    @autocast_off
    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral samples of the visible units, ``[num_samples, D]``, in the parameters' dtype (also under
        :func:`torch.autocast`, which is off here: see the module docstring).

        A prior draw whatever handlers the caller runs under: the model runs as a program of its own
        (:func:`~hybridpgm.handler_scope.isolated_from_handlers`), so an outer ``poutine.condition`` does not
        condition it and an outer trace records none of its sites.

        :param num_samples: the number of samples (a non-negative integer).
        :param generator: a :class:`torch.Generator` for the draws; ``None`` draws from torch's global stream.
            The draws are those of the Pyro model's sample statements, which take no generator: the model runs
            with torch's global streams seeded from one draw of ``generator`` and restored afterwards
            (:func:`~hybridpgm.rng_scope.seeded_globally_from`), so the samples are a function
            of the generator's state and the caller's streams do not move.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, or ``generator`` is neither a
            :class:`torch.Generator` nor ``None``."""
        n = sample_count(num_samples, "SigmoidBeliefNet.sample num_samples")
        generator = generator_or_none(generator, "SigmoidBeliefNet.sample generator")
        with seeded_globally_from(generator):
            return self.model(None, batch_size=max(n, 1))[:n]  # a Pyro plate cannot be empty

    @over_batch_shape("SigmoidBeliefNet", lambda sbn: sbn.layer_sizes[0])
    @isolated_from_handlers
    @own_param_store
    @autocast_off
    def log_likelihood(self, x: torch.Tensor, num_samples: int = 1000, chunk_size: int = 100, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance-sampled :math:`\\log p(x)` with the recognition network as proposal.

        See :func:`hybridpgm.infer.particle_elbo.importance_log_likelihood`.  Isolated from the caller's
        effect handlers (:func:`~hybridpgm.handler_scope.isolated_from_handlers`); under :func:`torch.autocast`
        computed with it off, in the parameters' dtype (see the module docstring).

        :param x: ``[..., D]`` binary data: ``[B, D]`` (an empty batch gives an empty result), one example ``[D]``
            (a 0-d result, that of ``x[None]`` without its row dimension) or any batch shape (its rows flattened and
            the result reshaped: :func:`~hybridpgm.batch_shapes.over_batch_shape`; with generators seeded alike,
            the same numbers).
        :param int num_samples: :math:`S`, the importance samples per datapoint,
            :math:`\\log \\frac1S \\sum_s p(x, h_s) / q(h_s \\mid x)` (a lower bound in expectation that tightens
            as :math:`S` grows).
        :param int chunk_size: particles per vectorized pass (bounds the memory, not the result).
        :param generator: a :class:`torch.Generator` for the draws; ``None`` draws from torch's global stream.
            The guide's sample statements run with torch's global streams seeded from one draw of ``generator``
            and restored afterwards, as in :meth:`sample`.
        :returns: ``[...]``, the batch shape of ``x``.
        :raises DataError: bad ``x`` (see :meth:`~hybridpgm.generative.sbn.SigmoidBeliefNet.check_data`; a last
            dimension other than ``D``).
        :raises ConfigError: ``num_samples`` or ``chunk_size`` is not a positive integer, or ``generator`` is
            neither a :class:`torch.Generator` nor ``None``.
        """
        from hybridpgm.infer.particle_elbo import importance_log_likelihood

        generator = generator_or_none(generator, "SigmoidBeliefNet.log_likelihood generator")
        x = self._check_rows(x, "log_likelihood")
        if not x.shape[0]:
            return x.new_zeros(0)
        with seeded_globally_from(generator):
            return importance_log_likelihood(self.model, self.guide, x, num_samples=num_samples,
                                             chunk_size=chunk_size, plate_name="data", max_plate_nesting=1)
