"""The inference queries of a :class:`~hybridpgm.graphs.MarkovNet`: :math:`\\log Z`, marginals and the MAP state.

For the MRF :math:`p(x) = \\exp\\big(\\sum_f \\theta_f(x_f)\\big) / Z` (given evidence :math:`e`, the states
:math:`x \\sim e` that agree with it), :class:`MarkovNetInference` answers

.. math::

    \\log Z = \\log \\sum_{x \\sim e} e^{\\sum_f \\theta_f(x_f)}, \\qquad
    p(x_v = k \\mid e), \\qquad \\arg\\max_{x \\sim e} \\sum_f \\theta_f(x_f),

of shapes ``batch_shape``, ``batch_shape + (card,)`` per variable and ``batch_shape`` per variable, on the
net compiled to a :class:`~hybridpgm.graphs.factor_graph.FactorGraph`: :math:`\\log Z` and the marginals by one
of the methods ``"exact"`` (tensor contraction, :mod:`hybridpgm.infer.mrf_exact`), ``"bp"`` (loopy belief
propagation, :class:`~hybridpgm.infer.BeliefPropagation`) and ``"mean_field"``
(:class:`~hybridpgm.infer.MeanField`), the MAP state by the max-sum contraction or max-product BP.
Each runs in the net's query context, which leaves the neural potentials' buffers (batch-norm running
statistics) as they were, and names a :func:`torch.func.vmap` over it
(:func:`~hybridpgm.graphs.mrf_vmap.vmap_refused`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.export_refusal import export_refused
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.mrf_convergence import warn_unconverged
from hybridpgm.graphs.mrf_declare import _check_options, _no_options
from hybridpgm.graphs.mrf_map import map_of
from hybridpgm.graphs.mrf_vmap import vmap_refused, vmap_rows_read
from hybridpgm.keyword_alias import keyword_only_soon

__all__ = ["MarkovNetInference", "no_rows"]

_METHODS = ("exact", "bp", "mean_field")


def no_rows(fg: FactorGraph) -> tuple[torch.Tensor, torch.Tensor]:
    """The answer of every method for a graph of ``B = 0`` rows (evidence or tables of 0 rows), without running
    one (mean field's and BP's kernels have no reduction over no rows): ``[0]`` :math:`\\log Z` and ``[0, V, C]``
    marginals in the graph's dtype, empty, as :class:`~hybridpgm.graphs.BayesNet`'s queries answer 0 rows.  They
    are read off the potentials, so a loss summed over them keeps the potentials in its graph (a gradient of
    zeros, not autograd's "does not require grad")."""
    log_z = fg.unary.sum((1, 2))
    for g in fg.groups:  # [0, F, C, ..., C]: the factors' potentials, summed to [0]
        log_z = log_z + g.log_potentials.flatten(1).sum(1)
    return log_z, fg.unary.softmax(-1) + log_z[:, None, None]


class MarkovNetInference(nn.Module):
    """Mixin of :class:`~hybridpgm.graphs.MarkovNet` answering its inference queries; it reads the net's
    ``cards``, ``potentials`` and :meth:`~hybridpgm.graphs.MarkovNet.factor_graph`."""

    @contextlib.contextmanager
    def _query(self):
        """The context of a query (:meth:`log_partition`, :meth:`marginals`, :meth:`map_assignment`,
        :meth:`sample`): the neural potentials run in the mode they are in, but their buffers (batch-norm running
        statistics) are left as they were (:func:`~hybridpgm.infer.particle_probe.keeping_module_state`)."""
        if not len(self.potentials):
            yield
            return
        from hybridpgm.infer.particle_probe import keeping_module_state

        with keeping_module_state(self.potentials):
            yield

    def _run(self, method, fg, **kwargs):
        from hybridpgm.infer.belief_propagation import BeliefPropagation
        from hybridpgm.infer.mean_field import MeanField
        from hybridpgm.infer.mrf_exact import exact_marginals

        if method not in _METHODS:
            hint = " (evidence is passed as evidence=)" if isinstance(method, Mapping) else ""
            raise ModelSpecError(f"MarkovNet: unknown inference method {method!r:.80}; use one of {_METHODS}{hint}")
        if method == "exact":
            _no_options(method, kwargs)
            return no_rows(fg) if not fg.batch_size else exact_marginals(fg)
        algorithm = BeliefPropagation if method == "bp" else MeanField
        _check_options(method, algorithm, kwargs)
        algorithm = algorithm(**kwargs)  # its options checked, for 0 rows too
        if not fg.batch_size:
            return no_rows(fg)
        res = algorithm(fg)
        warn_unconverged(method, algorithm, res)
        return res.log_z, res.marginals

    @export_refused("MarkovNet.log_partition")
    @vmap_refused
    @keyword_only_soon("evidence", "context")
    def log_partition(self, method: str = "exact", *, evidence=None, context=None, **kwargs) -> torch.Tensor:
        """:math:`\\log Z` (given evidence: :math:`\\log \\sum_{x \\sim e} e^{\\theta(x)}`), shape ``batch_shape``.

        ``"exact"`` is exact; ``"bp"`` is the Bethe estimate (exact on trees);
        ``"mean_field"`` a lower bound.  ``kwargs`` go to the algorithm
        (``num_iters``, ``damping``, ``tol``).

        :param str method: ``"exact"`` (default), ``"bp"`` or ``"mean_field"``.
        :param evidence: ``name -> states``, a value ``-1`` leaving that row's variable unobserved (see
            :meth:`~hybridpgm.graphs.MarkovNet.factor_graph`); keyword-only.
        :param context: the neural potentials' input (see :meth:`~hybridpgm.graphs.MarkovNet.tables`); keyword-only.

        Evidence or tables of 0 rows (a batch shape holding no model, ``(0,)`` or ``(2, 0)``) give an empty
        ``batch_shape`` result, by every method, as :meth:`marginals` and :meth:`map_assignment` do (and
        :class:`~hybridpgm.graphs.BayesNet`'s queries).

        :raises EvidenceError: bad evidence (see :meth:`factor_graph`).
        :raises ModelSpecError: an unknown method or option, a network of no variables, or ``method="bp"`` with
            ``max_product=True`` (max-product BP has no :math:`\\log Z` estimate; also what :meth:`log_prob` and
            :meth:`model` with ``log_z_method="bp"`` raise).
        :raises ConfigError: an option's value (``num_iters=2.5``), naming it.
        :raises DataError: a ``context`` a neural potential does not take (see :meth:`tables`), naming the factor.
        """
        self._refuse_max_product(method, kwargs)
        with self._query(), vmap_rows_read(method == "mean_field"):  # mean field answers a vmap's rows as a batch
            return self._log_z(method, self.factor_graph(evidence, context), kwargs)

    @staticmethod
    def _refuse_max_product(method: str, kwargs: dict) -> None:
        """Raise :class:`ModelSpecError` for ``method="bp"`` with ``max_product=True``: no :math:`\\log Z` there."""
        if method == "bp" and kwargs.get("max_product") is True:
            raise ModelSpecError("MarkovNet.log_partition: method 'bp' with max_product=True runs max-product BP, "
                                 "which gives max-marginals and no log Z estimate; leave max_product out (the Bethe "
                                 "estimate of sum-product BP), or use map_assignment(method='bp') for the MAP")

    def _log_z(self, method: str, fg: FactorGraph, kwargs: dict) -> torch.Tensor:
        """``batch_shape`` :math:`\\log Z` of the compiled ``fg`` by ``method`` (options ``kwargs``)."""
        self._refuse_max_product(method, kwargs)
        if method == "exact":
            from hybridpgm.infer.mrf_exact import exact_log_partition

            _no_options(method, kwargs)
            return fg.unflatten(no_rows(fg)[0] if not fg.batch_size else exact_log_partition(fg))
        return fg.unflatten(self._run(method, fg, **kwargs)[0])

    @export_refused("MarkovNet.marginals")
    @vmap_refused
    @keyword_only_soon("evidence", "context")
    def marginals(self, method: str = "exact", *, evidence=None, context=None, **kwargs) -> dict[str, torch.Tensor]:
        """Single-variable marginals ``name -> batch_shape + (card,)``.

        :param str method: ``"exact"`` (default; tensor contraction), ``"bp"`` (loopy BP, exact on trees) or
            ``"mean_field"``; ``kwargs`` go to the algorithm, as in :meth:`log_partition`.
        :param evidence: ``name -> states``, a value ``-1`` leaving that row's variable unobserved (see
            :meth:`~hybridpgm.graphs.MarkovNet.factor_graph`); keyword-only.
        :param context: the neural potentials' input (see :meth:`~hybridpgm.graphs.MarkovNet.tables`); keyword-only.

        It raises what :meth:`log_partition` raises, and :class:`~hybridpgm.errors.EvidenceError` naming the
        models whose evidence has probability zero (:math:`\\log Z_e = -\\infty`), by every method: ``"exact"``
        from its :math:`\\log Z`, ``"bp"`` from its Bethe estimate (exact on trees) and
        :func:`~hybridpgm.infer.mrf_possible_bound.impossible_rows`, ``"mean_field"`` from the latter before its
        sweeps (one host read for the batch, deferred inside :func:`~hybridpgm.fit`'s step).
        """
        from hybridpgm.infer.mrf_possible_bound import check_possible

        with self._query(), vmap_rows_read(method == "mean_field"):
            fg = self.factor_graph(evidence, context)
            if method == "mean_field" and fg.batch_size:  # before its sweeps, whose NaN check would come first
                check_possible(fg, "MarkovNet.marginals")
            log_z, marg = self._run(method, fg, **kwargs)
            if method == "bp" and fg.batch_size:  # BP's -inf Bethe log Z too (max-product has none)
                check_possible(fg, "MarkovNet.marginals", None if kwargs.get("max_product") else log_z)
            marg = fg.unflatten(marg)
        return {v: marg[..., i, : c] for i, (v, c) in enumerate(self.cards.items())}

    @export_refused("MarkovNet.map_assignment")
    @vmap_refused
    @keyword_only_soon("context", "method")
    def map_assignment(self, evidence=None, *, context=None, method: str = "auto", **kwargs) -> dict[str, torch.Tensor]:
        """The most probable assignment, ``name -> batch_shape`` long.

        ``method="exact"``: the max-sum contraction (:func:`~hybridpgm.infer.exact_map`; exact on any graph of
        small treewidth); ``"bp"``: max-product BP (exact on trees; ``kwargs`` go to it; where max-marginals
        tie, the variables are decoded a layer at a time, each given those before it, as
        :attr:`~hybridpgm.infer.belief_propagation.BPResult.decoded_assignment` does); ``"auto"`` (default):
        exact where the contraction costs at most about a second of one CPU thread per model
        (:func:`~hybridpgm.infer.mrf_exact.exact_is_cheap`: grids up to about 18x18), else max-product BP; BP
        options in ``kwargs`` select BP.  The choice depends on one model (batch row), not on the number of rows:
        a batch over :data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES` runs in chunks of rows, so a row's MAP is
        the same alone or in any batch (the time grows with the rows).

        :param evidence: ``name -> states`` (``-1``: unobserved in that row), as :meth:`marginals`.
        :param context: the neural potentials' input; keyword-only.
        :param str method: ``"auto"`` (default), ``"exact"`` or ``"bp"``; keyword-only.

        :raises ModelSpecError: an unknown method or an option it does not take; for ``"exact"``, before any
            work, a contraction over :data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES` per model or a max-sum over
            :data:`~hybridpgm.infer.mrf_exact.EXACT_MAP_MAX_WORK` operations per model.
        :warns EstimateWarning: max-product BP (``"bp"``, or ``"auto"`` choosing it) did not converge within its
            iterations (:func:`~hybridpgm.graphs.mrf_convergence.warn_map_unconverged`): the assignment may be far
            from the MAP.
        """
        if method not in ("auto", "bp", "exact"):
            raise ModelSpecError(f"MarkovNet.map_assignment: unknown method {method!r}; use 'auto', 'bp' or 'exact'")
        with self._query():
            return map_of(self.factor_graph(evidence, context), method, kwargs, list(self.cards))
