"""Ancestral and posterior samples of a :class:`~hybridpgm.graphs.BayesNet` (a mixin of the network:
:class:`BayesNetSampling`).

Without evidence the nodes are drawn in topological order, :math:`x_v \\sim p(x_v \\mid x_{\\mathrm{pa}(v)})`, by
tracing the network's Pyro :meth:`~hybridpgm.graphs.BayesNet.model` with no data; with evidence :math:`e` (or a
``generator``) the draws are exact samples of :math:`p(x \\setminus e \\mid e)`: one contraction of the rows,
then backward sampling along its steps (:func:`~hybridpgm.infer.exact.posterior_sample`).

Reference: D. Koller, N. Friedman, *Probabilistic Graphical Models*, MIT Press 2009, section 12.1 (forward
sampling).
"""

from __future__ import annotations

import torch
from pyro import poutine

from hybridpgm.checks import generator_or_none, sample_count
from hybridpgm.errors import DataError
from hybridpgm.handler_scope import isolated_from_handlers
from hybridpgm.keyword_alias import renamed_keyword
from hybridpgm.param_store_scope import own_param_store

__all__ = ["BayesNetSampling"]


class BayesNetSampling:
    """Mixin of :class:`~hybridpgm.graphs.BayesNet`: :meth:`sample`."""

    @renamed_keyword(inputs="context")  # MarkovNet's and cpd.Neural's name; inputs= warns for a release
    @isolated_from_handlers  # a program of its own: the caller's handlers neither see nor alter its sites
    @own_param_store
    def sample(self, num_samples: int, context=None, *, evidence=None, generator=None) -> dict:
        """Ancestral samples: dict node -> ``[num_samples]`` (``context`` inputs sized to match: sample ``s`` is
        drawn given context row ``s``), with or without a ``generator``.

        With ``evidence``: exact samples of the unobserved nodes given each evidence row, dict node ->
        ``[num_samples, N]`` for ``N`` evidence rows (``[num_samples]`` where no value has a row dim); see
        :func:`hybridpgm.infer.exact.posterior_sample` (``context`` joins the evidence; the continuous ancestors of
        the evidence must be observed).  With a ``generator`` and no evidence, :func:`posterior_sample
        <hybridpgm.infer.exact.posterior_sample>` draws the ancestral samples (one per context row where
        ``context`` has a row dim), so the shapes do not depend on the generator.  With a ``generator`` the
        samples are a function of its state alone: torch's global streams are seeded from one draw of the generator
        while the CPDs' networks run, whatever their modes, and restored afterwards
        (:func:`~hybridpgm.rng_scope.seeded_from_generator`); without one, the networks draw from the global
        streams, as in Pyro.

        :param int num_samples: the number ``S`` of samples (of each evidence row); 0 gives empty results.
        :param context: the context inputs of neural CPDs, as in :meth:`model`: dict name -> ``[num_samples, ...]``
            (or one tensor if there is a single context name; a single-feature input may be one 0-d value for
            all); with ``evidence``, joined to the evidence (``[N, ...]``).  (``inputs=``, its name before, is
            accepted for one release with a :class:`FutureWarning`.)  Unlike :meth:`MarkovNet.sample
            <hybridpgm.graphs.MarkovNet.sample>`, which draws ``[num_samples, N]`` (``num_samples`` given each
            of ``N`` context rows), context rows here are paired with the samples: ``N`` must be
            ``num_samples`` (for ``[num_samples, N]``: :func:`~hybridpgm.infer.exact.posterior_sample`).
        :param evidence: a mapping node -> observed value(s), as :func:`~hybridpgm.infer.exact.posterior_sample`
            reads it (``[N]`` for ``N`` rows, a 0-d value for one), or a pandas DataFrame (read by its columns);
            ``None`` (the default): none.  Without a row dim in any value the results are ``[num_samples]``.
        :param generator: a :class:`torch.Generator` (on the network's device) for the draws, ``None`` (the
            default) for torch's global streams; with it and no evidence, :func:`posterior_sample
            <hybridpgm.infer.exact.posterior_sample>` draws them, ``[num_samples]`` per node as without it.
        :raises EvidenceError: evidence that is neither a mapping node -> value(s) nor a DataFrame (an
            ``[N, len(nodes)]`` tensor: pass :meth:`columns` of it), or evidence the query refuses.
        :raises DataError: continuous data, evidence or context inputs of a floating dtype the network's would
            round (float64 for a float32 network; see :meth:`columns`), or (without evidence) context inputs of
            another number of rows than ``num_samples``.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, or ``generator`` is neither a
            :class:`torch.Generator` nor ``None``.
        """
        num_samples = sample_count(num_samples, "BayesNet.sample num_samples")
        generator = generator_or_none(generator, "BayesNet.sample generator")
        given = self._inputs(context)
        rows = {k: int(t.shape[-2 if t.dim() > 1 else 0]) for k, t in given.items() if t.dim() > 0}
        if evidence is None and num_samples and any(n != num_samples for n in rows.values()):  # sets the count
            raise DataError(f"BayesNet.sample: {num_samples} samples asked for, but the context inputs have "
                            f"{', '.join(f'{k!r}: {n} row(s)' for k, n in rows.items())}; give each input "
                            f"{num_samples} rows (a single-feature input may be one 0-d value for all), or, for "
                            f"{num_samples} samples given each input row ([num_samples, rows]), call "
                            f"hybridpgm.infer.exact.posterior_sample(bn, {num_samples}, "
                            f"{{{', '.join(f'{k!r}: <its rows>' for k in rows)}}})")
        if evidence is not None or generator is not None:
            from hybridpgm.infer.exact import posterior_sample

            # the networks' running statistics are left as they were (their dropout draws come from the generator:
            # posterior_sample's scope)
            with self._query():
                if evidence is None and rows:  # sample s given input row s: [num_samples], as the ancestral draws
                    draws = posterior_sample(self.check(), 1, given, generator=generator)
                    return {v: t[0, :num_samples] for v, t in draws.items()}
                # a context input given both in context= and in the evidence is refused, as by the exact queries
                return posterior_sample(self.check(), num_samples, self._with_inputs(evidence, given, "sample"),
                                        generator=generator)
        with torch.no_grad(), self._query():  # a Pyro plate cannot be empty: zero samples are one, sliced away
            tr = poutine.trace(self.model).get_trace(None, None, context, num_samples=max(num_samples, 1))
        return {v: tr.nodes[v]["value"][:num_samples] for v in self.nodes}
