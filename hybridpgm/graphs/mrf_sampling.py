"""Drawing samples of a :class:`~hybridpgm.graphs.markov_net.MarkovNet`, exactly or by chromatic Gibbs.

:func:`sample_markov_net` is the body of :meth:`MarkovNet.sample <hybridpgm.graphs.markov_net.MarkovNet.sample>`:
it compiles the net (with ``evidence`` and ``context``) to a :class:`~hybridpgm.graphs.factor_graph.FactorGraph`
and draws ``num_samples`` joint states :math:`x \\sim p(x \\mid e) \\propto \\exp \\sum_f \\theta_f(x_f)`
either exactly, all from one contraction and backward sampling (:func:`~hybridpgm.infer.mrf_exact.exact_sample`),
or as the final states of independent chromatic Gibbs chains (:class:`~hybridpgm.infer.mrf_gibbs.ChromaticGibbs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hybridpgm.checks import generator_or_none, sample_count
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.rng_scope import seeded_from_generator
from hybridpgm.transform_scope import draws_differ_under_vmap

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.markov_net import MarkovNet

__all__ = ["sample_markov_net"]


def sample_markov_net(net: "MarkovNet", num_samples: int, method: str = "auto", evidence=None, context=None,
                      num_sweeps: int | None = None, generator=None) -> dict[str, torch.Tensor]:
    """``num_samples`` samples of ``net``, as :meth:`MarkovNet.sample
    <hybridpgm.graphs.markov_net.MarkovNet.sample>` documents them.

    :param net: the Markov network.
    :param num_samples: how many samples (a positive integer, :func:`~hybridpgm.checks.sample_count`).
    :param method: ``"exact"``, ``"gibbs"`` or ``"auto"`` (exact where
        :func:`~hybridpgm.infer.mrf_exact.exact_is_cheap`, else Gibbs; ``num_sweeps`` selects Gibbs).
    :param evidence: ``name -> LongTensor`` (:meth:`~hybridpgm.graphs.markov_net.MarkovNet.factor_graph`).
    :param context: passed to the neural potentials.
    :param num_sweeps: Gibbs sweeps per chain (100 by default).
    :param generator: a :class:`torch.Generator`; the samples are then a function of its state alone.
    :returns: ``name -> (num_samples,) + batch_shape`` long tensors.
    :raises ModelSpecError: an unknown ``method``, or ``num_sweeps`` with ``method="exact"``.
    :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None``; or exact sampling
        (``"exact"``, or ``"auto"`` choosing it) under :func:`torch.func.vmap` with ``randomness="different"``,
        whose batched draws the exact sampler cannot write (Gibbs can; ``randomness="same"`` runs as well, with
        the same draws for every row).
    """
    from hybridpgm.infer.mrf_exact import exact_is_cheap, exact_sample
    from hybridpgm.infer.mrf_gibbs import ChromaticGibbs

    num_samples = sample_count(num_samples, "MarkovNet.sample num_samples")
    generator = generator_or_none(generator, "MarkovNet.sample generator")
    if method not in ("auto", "exact", "gibbs"):
        raise ModelSpecError(f"MarkovNet.sample: unknown method {method!r}; use 'auto', 'exact' or 'gibbs'")
    with holding_global_state():  # no draw from the global stream amid another thread's seeded fit step
        with net._query(), seeded_from_generator(generator, net.potentials.values()):
            fg = net.factor_graph(evidence, context)
        requested = method
        if method == "auto":
            method = "gibbs" if num_sweeps is not None or not exact_is_cheap(fg) else "exact"
        if method == "exact":
            if num_sweeps is not None:
                raise ModelSpecError("MarkovNet.sample: method='exact' takes no num_sweeps")
            if draws_differ_under_vmap():
                raise ConfigError(
                    f"MarkovNet.sample: exact sampling (method={requested!r}) does not run under torch.func.vmap with "
                    f"randomness='different': its backward-sampling pass writes each row's own draws into one shared "
                    f"buffer. "
                    f"Draw the rows together instead: mrf.sample(N * num_samples) reshaped to [N, num_samples] for N "
                    f"independent sets, evidence {{variable: tensor of shape [N]}} for one set per row ([num_samples, "
                    f"N]), or tables with a leading batch dimension; or sample by chromatic Gibbs "
                    f"(method='gibbs' or num_sweeps=...), which runs under vmap(randomness='different')")
            x = exact_sample(fg, num_samples, generator=generator)
        else:
            x = ChromaticGibbs(num_sweeps=100 if num_sweeps is None else num_sweeps)(fg, num_samples,
                                                                                     generator=generator)
        x = x.reshape((num_samples,) + fg.batch_shape + (fg.num_vars,))
        return {v: x[..., i] for i, v in enumerate(net.cards)}
