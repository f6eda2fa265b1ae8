"""The exact queries of a :class:`~hybridpgm.graphs.BayesNet` and the caches behind them.

:class:`BayesNetQueries` is a mixin of :class:`~hybridpgm.graphs.BayesNet`: :meth:`~BayesNetQueries.posterior`,
:meth:`~BayesNetQueries.log_evidence`, :meth:`~BayesNetQueries.map` and
:meth:`~BayesNetQueries.compile_evidence` are batched tensor contractions (:mod:`hybridpgm.infer.exact`), run in
the network's query context (:meth:`~BayesNetQueries._query`).  A query keeps, in ``bn.plan_cache``, the
contraction plans and the structure of the network (plain Python), the normalised tables of the CPDs needing no
gradient (:func:`~hybridpgm.infer.bn_factors.node_table`, in :func:`~hybridpgm.infer.bn_evidence.network_facts`'s
``tables``), which hold the tensors and storages they were read from, and a workspace of the reverse passes
(:class:`~hybridpgm.graphs.reverse_pass.Workspace`), of the network's dtype and device.  A move
(:meth:`~BayesNetQueries._apply`: ``to``, ``cuda``, ``double`` ...) drops the last two, so the old tensors' memory
goes with the move, not at the next query.
"""

from __future__ import annotations

import contextlib

import torch

from hybridpgm.export_refusal import export_refused
from hybridpgm.interrupt_scope import restored_on_error
from hybridpgm.keyword_alias import renamed_keyword

__all__ = ["BayesNetQueries"]


class BayesNetQueries:
    """Mixin of :class:`~hybridpgm.graphs.BayesNet`: its exact queries and their caches."""

    @export_refused("BayesNet.posterior")
    @renamed_keyword(inputs="context")
    def posterior(self, query=None, evidence=None, *, joint: bool = False, context=None):
        """Posterior marginals; see :func:`hybridpgm.infer.exact.posterior`.

        :param query: a node name, a list of names, or ``None`` for every unobserved discrete node.
        :param evidence: a dict node -> value(s) (see :func:`~hybridpgm.infer.bn_evidence.parse_evidence`), or
            ``None``; for an ``[N, len(nodes)]`` data tensor pass :meth:`columns` of it.  The context inputs of
            neural CPDs may be given here, name -> ``[N, ...]``, or as ``context``.
        :param bool joint: return the joint ``[N, card_1, ..., card_k]`` over the query variables (in the given
            order) instead of the marginals.
        :param context: the context inputs of neural CPDs, as in :meth:`model` and :meth:`log_prob`: dict name ->
            ``[N, ...]`` (or one tensor if there is a single context name), joined to the evidence (``inputs=``,
            its name before, is accepted for one release with a :class:`FutureWarning`).
        :returns: ``[N, card]`` for one name, else a dict name -> ``[N, card]`` (without ``N`` when no evidence
            value has a row dim); with ``joint``, one tensor ``[N, card_1, ..., card_k]``.
        :raises EvidenceError: evidence that is not a mapping (naming its type and shape), one the query
            refuses, or a context input given both in the evidence and in ``context`` (naming it).
        :raises DataError: a continuous value of a floating dtype the network's would round, or ``context`` that
            are not a dict of the network's context names (nor one tensor for its single one).
        """
        from hybridpgm.infer.exact import posterior

        evidence = self._with_inputs(evidence, context, "posterior")
        with self._query():
            return posterior(self.check(), query, evidence, joint=joint)

    @export_refused("BayesNet.log_evidence")
    @renamed_keyword(inputs="context")
    def log_evidence(self, evidence=None, *, context=None) -> torch.Tensor:
        """:math:`\\log p(e)` per row; see :func:`hybridpgm.infer.exact.log_evidence` (the errors: as for
        :meth:`posterior`).

        :param evidence: a dict node -> value(s), or ``None``, as for :meth:`posterior`.
        :param context: context inputs, as for :meth:`posterior`."""
        from hybridpgm.infer.exact import log_evidence

        evidence = self._with_inputs(evidence, context, "log_evidence")
        with self._query():
            return log_evidence(self.check(), evidence)

    def compile_evidence(self, nodes, *, max_bytes: int | None = None, layout: str = "auto"):
        """Precompute the answers to every hard-evidence query over ``nodes``; see
        :class:`hybridpgm.infer.EvidenceTable` (a snapshot of the CPDs, answered by a gather per row).

        :param nodes: the evidence nodes (a name or a list of names).
        :param int max_bytes: refuse a table larger than this (``None``, the default:
            :data:`~hybridpgm.infer.evidence_table.DEFAULT_MAX_BYTES`).
        :param str layout: ``"subsets"``, ``"compact"`` or ``"auto"`` (default), as for the table.
        :returns: the :class:`~hybridpgm.infer.EvidenceTable`."""
        from hybridpgm.infer.evidence_snapshot import _snapshot, rebased
        from hybridpgm.infer.evidence_table import DEFAULT_MAX_BYTES, EvidenceTable

        with self._query():
            table = EvidenceTable(self.check(), nodes, layout=layout,
                                  max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)
        if self._query_restores():  # the restored buffers have new in-place versions: the table's network is this
            table._built_from = rebased(table._built_from, _snapshot(self))
        return table

    @export_refused("BayesNet.map")
    @renamed_keyword(inputs="context")
    def map(self, evidence=None, *, return_log_prob: bool = False, context=None):
        """Most probable explanation; see :func:`hybridpgm.infer.exact.map_assignment` (the errors: as for
        :meth:`posterior`).

        :param evidence: a dict node -> value(s), or ``None``, as for :meth:`posterior`.
        :param bool return_log_prob: also return the ``[N]`` maxima :math:`\\max_x \\log p(x, e_n)`.
        :param context: context inputs, as for :meth:`posterior`.
        :returns: dict node -> ``[N]`` state indices (and the maxima with ``return_log_prob``)."""
        from hybridpgm.infer.exact import map_assignment

        evidence = self._with_inputs(evidence, context, "map")
        with self._query():
            return map_assignment(self.check(), evidence, return_log_prob=return_log_prob)

    @contextlib.contextmanager
    def _query(self):
        """The context of a query (:meth:`posterior`, :meth:`log_evidence`, :meth:`map`, :meth:`sample`,
        :meth:`compile_evidence`): the CPDs' networks run in the mode they are in (in training mode a batch norm
        normalises with the batch's statistics), but their buffers (its running statistics) are left as they were
        (:func:`~hybridpgm.infer.particle_probe.keeping_module_state`).  The training losses (:meth:`model`,
        :meth:`log_prob`) update them as any forward pass does.  The query functions of
        :mod:`hybridpgm.infer.exact` and :class:`~hybridpgm.infer.Gibbs` on :meth:`model` enter it too; nested in
        another query of this network it does nothing (the outermost one copies and restores the buffers once:
        :func:`~hybridpgm.infer.particle_probe.keeping_module_state_once`)."""
        nets = self._query_restores()
        with restored_on_error():  # an interrupted query leaves no grad mode or autocast nesting behind
            if not nets:
                yield
                return
            from hybridpgm.infer.particle_probe import keeping_module_state_once

            with keeping_module_state_once(self, *nets):
                yield

    def _query_restores(self) -> list:
        """The CPDs whose buffers a query restores: those holding a network (a module of their own)."""
        return [c for c in self._cpd_map.values() if next(c.children(), None) is not None]

    def _apply(self, fn, recurse=True):
        """:meth:`torch.nn.Module._apply` (``to``, ``cuda``, ``double``, ``half``, ``share_memory`` ...), then the
        query caches holding tensors dropped: the normalised tables (each entry holds the CPD's tensors and their
        storages as they were, so after ``bn.double()`` or ``bn.to("cuda")`` the old tables' memory stayed until
        the next query of each node) and the reverse passes' workspace (of the old dtype or device).  The plans and
        the structure, plain Python, are kept.  A move that changes nothing drops them too: the next query
        normalises each table once more."""
        super()._apply(fn, recurse)
        cache = self.__dict__.get("plan_cache")
        if cache is not None:  # (None while the network is being built)
            facts = cache.memo.get("facts")
            if facts is not None:
                facts.tables.clear()
            cache.workspace.release()
        return self
