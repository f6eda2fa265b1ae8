"""Bayesian networks over named variables, with table, neural and linear-Gaussian CPDs.

A :class:`BayesNet` factorises a joint distribution along a DAG,

.. math:: p(x) = \\prod_v p(x_v \\mid x_{\\mathrm{pa}(v)}),

where each factor is a :mod:`~hybridpgm.graphs.cpd` module.  The network is a
Pyro program (:meth:`BayesNet.model`) over a data plate, in which every missing
discrete entry is a latent site enumerated in parallel, so
:class:`pyro.infer.TraceEnum_ELBO` with the empty :meth:`BayesNet.guide` is the
exact negative log-likelihood of the observed entries and gradient steps on it
learn the CPDs from incomplete data (the same fixed points as EM [2]).  Exact
queries (:meth:`posterior`, :meth:`log_evidence`, :meth:`map`) are batched tensor
contractions (:mod:`hybridpgm.infer.exact`).  How data is read (columns, missing
entries, context inputs) is the mixin :class:`~hybridpgm.graphs.bn_data.BayesNetData`.

>>> import torch
>>> from hybridpgm.graphs import BayesNet, cpd
>>> bn = BayesNet()
>>> bn.add("rain", cpd.Table([0.8, 0.2]))                                # doctest: +ELLIPSIS
BayesNet(...)
>>> bn.add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], parents=["rain"]))  # doctest: +ELLIPSIS
BayesNet(...)
>>> bn.posterior("rain", {"wet": 1})
tensor([0.3333, 0.6667], grad_fn=<SelectBackward0>)

**References**

[1] J. Pearl, *Probabilistic Reasoning in Intelligent Systems*, 1988.

[2] A. P. Dempster, N. M. Laird, D. B. Rubin, *Maximum Likelihood from
Incomplete Data via the EM Algorithm*, 1977.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule, pyro_method
from torch import nn

from hybridpgm.checks import sample_count
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs.bn_data import BayesNetData
from hybridpgm.graphs.contraction import PlanCache
from hybridpgm.graphs.cpd_base import CPD
from hybridpgm.param_store_scope import own_param_store

__all__ = ["BayesNet"]


class BayesNet(BayesNetData, PyroModule):
    """A directed graphical model: named nodes, each with a CPD over its parents.

    :param cpds: optional mapping node name -> :class:`~hybridpgm.graphs.cpd_base.CPD`,
        added in order (parents may be declared after their children).
    :param dict state_names: optional node -> list of state names (for string evidence).
    :raises ModelSpecError: ``cpds`` or ``state_names`` is not a mapping,
        ``state_names`` names a node not in ``cpds``, or any check of :meth:`add`
        and :meth:`check` fails.
    """

    def __init__(self, cpds: Mapping[str, CPD] | None = None, *, state_names: Mapping | None = None):
        super().__init__()
        self.cpds = nn.ModuleDict()
        self.state_names: dict[str, list] = {}
        self.plan_cache = PlanCache()
        self._order: list[str] | None = None
        for what, arg in (("cpds", cpds), ("state_names", state_names)):
            if arg is not None and not isinstance(arg, Mapping):
                raise ModelSpecError(f"BayesNet {what} must be a mapping node name -> value, got {type(arg).__name__}")
        unknown = sorted(map(str, set(state_names or {}) - set(cpds or {})))
        if unknown:
            raise ModelSpecError(f"BayesNet state_names names node(s) {unknown} that are not in cpds "
                                 f"{list(cpds or {})}")
        for name, c in (cpds or {}).items():
            self.add(name, c, states=(state_names or {}).get(name))
        if cpds:
            self.check()

    # ------------------------------------------------------------------ declaration
    def add(self, name: str, cpd: CPD, *, states: Sequence | None = None) -> "BayesNet":
        """Declare node ``name`` with its CPD; returns ``self`` for chaining.

        :param states: optional names of the node's states, one per state, distinct
            (a list or tuple, not a string).
        :raises ModelSpecError: duplicate name, a cycle, a malformed table
            (rows not summing to 1, negative entries, wrong dims), ``states`` that
            are not distinct names matching the cardinality (or given for a
            continuous node), a CPD that does not match already-declared parents
            (shape, cardinality), a node that is the last missing parent of an
            already-declared child whose CPD does not match it, or the name ``"data"``
            (the plate of :meth:`model`); the message names the node.  A refused
            call changes nothing (no node, state names, or binding of a CPD), so the
            corrected call can follow.
        """
        if not isinstance(name, str) or not name or "." in name:
            raise ModelSpecError(f"node name {name!r} must be a non-empty string without '.'")
        if name == "data":
            raise ModelSpecError("node name 'data' is the name of the plate of BayesNet.model (Pyro refuses a "
                                 "sample site of that name); rename the node")
        if name in self.cpds:
            raise ModelSpecError(f"node '{name}' is already declared")
        if not isinstance(cpd, CPD):
            raise ModelSpecError(f"node '{name}': expected a CPD, got {type(cpd).__name__}")
        cpd.validate(name)  # a malformed table, named now that its node is known
        if name in cpd.parents:
            raise ModelSpecError(f"node '{name}' cannot be its own parent")
        if states is not None:
            states = self._check_states(name, cpd, states)
        self.cpds[name] = cpd
        cycle = self._find_cycle()
        if cycle:
            del self.cpds[name]
            raise ModelSpecError(f"adding node '{name}' creates the cycle {' -> '.join(cycle)}")
        # bind the new node, and every child for which it was the last undeclared parent
        ready = [(name, cpd)] + [(v, c) for v, c in self.cpds.items()
                                 if v != name and name in c.parents and all(p in self.cpds for p in c.parents)]
        bound = [(c, c.node, c.parent_cards) for _, c in ready]  # a refused add leaves every CPD as it was
        for v, c in ready:
            if all(p in self.cpds for p in c.parents):
                try:
                    c.bind(v, {p: self.cpds[p].cardinality for p in c.parents})
                except ModelSpecError as e:
                    del self.cpds[name]
                    for c_, node, parent_cards in bound:
                        c_.node, c_.parent_cards = node, parent_cards
                    if v == name:
                        raise
                    raise ModelSpecError(f"adding node '{name}' (cardinality {cpd.cardinality}) conflicts with "
                                         f"its child: {e}") from e
        if states is not None:
            self.state_names[name] = states
        self._order = None
        self.plan_cache.clear()
        return self

    @staticmethod
    def _check_states(name: str, cpd: CPD, states) -> list:
        if cpd.cardinality is None:
            raise ModelSpecError(f"node '{name}' is continuous; state names are for discrete nodes only")
        if isinstance(states, (str, bytes)) or not isinstance(states, Sequence):
            raise ModelSpecError(f"node '{name}': states must be a list of {cpd.cardinality} names, got {states!r}")
        states = list(states)
        if not_text := [s for s in states if not isinstance(s, str)]:  # evidence given as a number is an index
            raise ModelSpecError(f"node '{name}': state names must be strings, got {not_text!r} in {states!r}; a "
                                 "number given as evidence is read as a state's index, so a name 1 would be "
                                 f"ambiguous: name the states {[str(s) for s in states]!r}")
        if len(states) != cpd.cardinality:
            raise ModelSpecError(f"node '{name}': {len(states)} state names {states!r} for cardinality "
                                 f"{cpd.cardinality}")
        try:
            distinct = len(set(states)) == len(states)
        except TypeError:
            raise ModelSpecError(f"node '{name}': state names must be hashable, got {states!r}") from None
        if not distinct:
            dup = sorted({str(s) for s in states if states.count(s) > 1})
            raise ModelSpecError(f"node '{name}': state names must be distinct, {dup} repeat in {states!r}")
        return states

    def _find_cycle(self) -> list[str] | None:
        color: dict[str, int] = {}
        for start in self.cpds:
            if color.get(start):
                continue
            stack = [(start, iter(self.cpds[start].parents))]
            path = [start]
            color[start] = 1
            while stack:
                v, it = stack[-1]
                p = next(it, None)
                if p is None:
                    color[v] = 2
                    stack.pop()
                    path.pop()
                elif p in self.cpds:
                    if color.get(p) == 1:
                        return list(reversed(path[path.index(p):] + [p]))
                    if not color.get(p):
                        color[p] = 1
                        stack.append((p, iter(self.cpds[p].parents)))
                        path.append(p)
        return None

    def check(self) -> "BayesNet":
        """Validate the whole network (unknown parents, CPD shapes) and fix a topological order.

        Called automatically by every query; call it yourself to fail early.

        :raises ModelSpecError: naming the node at fault.
        """
        if self._order is not None:
            return self
        for v, c in self.cpds.items():
            unknown = [p for p in c.parents if p not in self.cpds]
            if unknown:
                raise ModelSpecError(f"node '{v}' has unknown parent(s) {unknown}")
            c.bind(v, {p: self.cpds[p].cardinality for p in c.parents})
        clash = set(self.input_names) & set(self.cpds)
        if clash:
            raise ModelSpecError(f"context input(s) {sorted(clash)} clash with node names")
        order, done = [], set()

        def visit(v):
            if v not in done:
                for p in self.cpds[v].parents:
                    visit(p)
                done.add(v)
                order.append(v)

        for v in self.cpds:
            visit(v)
        self._order = order
        return self

    # ------------------------------------------------------------------ structure
    @property
    def nodes(self) -> list[str]:
        """Node names in declaration order (the column order of tensor data)."""
        return list(self.cpds.keys())

    @property
    def topological_order(self) -> list[str]:
        return list(self.check()._order)

    def parents(self, name: str) -> tuple[str, ...]:
        return self.cpds[name].parents

    def child_nodes(self, name: str) -> list[str]:
        return [v for v, c in self.cpds.items() if name in c.parents]

    def cardinality(self, name: str) -> int | None:
        """Number of states of a discrete node, ``None`` for a continuous one."""
        return self.cpds[name].cardinality

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(p, v) for v, c in self.cpds.items() for p in c.parents]

    @property
    def input_names(self) -> list[str]:
        """Context inputs (not nodes) needed by neural CPDs."""
        names: list[str] = []
        for c in self.cpds.values():
            names += [u for u in getattr(c, "context", ()) if u not in names]
        return names

    def __repr__(self) -> str:
        return f"BayesNet(nodes={self.nodes})"

    # ------------------------------------------------------------------ Pyro view
    @pyro_method
    def model(self, data=None, mask=None, inputs=None, *, num_samples: int | None = None,
              num_data: int | None = None) -> dict:
        """Pyro model over a data plate ``"data"`` (``max_plate_nesting=1``).

        Observed entries are conditioned on; missing discrete entries (``NaN``,
        ``-1``, ``mask`` false, or absent columns) are latent sites marked for
        parallel enumeration (``"<node>"`` when the whole column is missing, else
        ``"<node>_unobserved"`` next to ``"<node>_observed"``, as with Pyro's
        ``obs_mask``); continuous entries must be observed when data is given.
        Tables with a Dirichlet ``prior`` add
        :math:`\\tfrac{B}{N_{\\rm data}} \\log \\mathrm{Dir}(\\theta; \\alpha)` so the
        loss per example estimates the full-data MAP objective.

        :param data: see :meth:`columns`; ``None`` to sample ``num_samples`` rows.
            For :func:`hybridpgm.fit` (which rejects NaN) pass integer data with
            ``-1`` for missing entries, or the pair ``(values, mask)`` of
            :meth:`split_missing`.
        :param mask: ``[N, len(nodes)]`` bool (or 0/1 integers; or a dict node -> ``[N]``), true where
            observed; see :meth:`columns`.
        :param inputs: context inputs: dict name -> ``[N, ...]`` (or one tensor if
            there is a single context name).
        :param int num_data: size of the full data set (for the prior weight), at least the batch's rows.
        :returns: dict node -> ``[N]`` values (with enumeration dims when enumerated).
        :raises ConfigError: a ``num_data`` that is not a positive integer.
        :raises DataError: data of 0 rows, context inputs of another number of rows than the data, a
            ``num_data`` smaller than the batch, a mask :meth:`columns` refuses, a row whose observed state has
            probability 0 given its parents (a structural zero; checked under Pyro's validation, naming the
            rows), a value outside a node's states, a continuous node with a
            missing entry, or continuous data (a continuous node's column, a context input) of a floating dtype
            of higher precision than the network's: float64 data for a float32 network is refused, not rounded
            (the message names the column and both dtypes; convert the data, or the network with ``.to``).
            Discrete columns may have any real dtype.
        :raises ModelSpecError: a node named like a site derived from another node's name for these data
            (``"<node>_prior"``, ``"<node>_observed"``, ``"<node>_unobserved"``), naming both.
        """
        self.check()
        cols = self.columns(data, mask)
        ctx = self._inputs(inputs)
        n = self._rows(cols, ctx, num_samples)
        if n == 0:
            raise DataError("BayesNet.model got data of 0 rows; a Pyro plate cannot be empty")
        weight = self._prior_weight(num_data, n)
        for v, c in self.cpds.items():
            if getattr(c, "prior", None) is not None:
                pyro.factor(f"{v}_prior", c.log_prior() * weight)
        x: dict = {}
        enum = {"enumerate": "parallel"}
        observed = self._observed_columns(cols)
        self._check_site_names(observed)
        with pyro.plate("data", n, dim=-1):
            for v in self._order:
                c = self.cpds[v]
                obs, obs_mask = observed.get(v, (None, False))
                if c.cardinality is None:
                    if data is not None and obs_mask is not None:
                        raise DataError(f"continuous node '{v}' must be observed in every row of the data")
                    loc = c.select(c.mean_table({**ctx, **x}), x)
                    scale = c.select(c.scale, x, batched=False)
                    x[v] = pyro.sample(v, dist.Normal(loc, scale), obs=obs)
                    continue
                fn = dist.Categorical(logits=c.select(c.log_table({**ctx, **x}), x, event_dims=1))
                if obs_mask is None:
                    self._check_possible(v, fn, obs, None, observed)
                    x[v] = pyro.sample(v, fn, obs=obs, infer=enum)
                elif obs_mask is False:
                    x[v] = pyro.sample(v, fn, infer=enum)
                else:  # Pyro's obs_mask, keeping the enumeration flag on the latent half
                    self._check_possible(v, fn, obs, obs_mask, observed)
                    with poutine.mask(mask=obs_mask):
                        seen = pyro.sample(f"{v}_observed", fn, obs=obs)
                    with poutine.mask(mask=~obs_mask):
                        hidden = pyro.sample(f"{v}_unobserved", fn, infer=enum)
                    x[v] = torch.where(obs_mask, seen, hidden)
        return x

    @pyro_method
    def guide(self, data=None, mask=None, inputs=None, **kwargs) -> None:
        """The empty guide: every latent site of :meth:`model` is enumerated.

        It is exact only under enumeration (:class:`~pyro.infer.TraceEnum_ELBO`, also jitted or with vectorized
        particles), which sums each missing discrete entry out: an ELBO that samples instead
        (``Trace_ELBO``, :class:`SVIObjective`'s default) would draw the missing entries from the model, ignoring
        the observed entries below them, and fit a biased model; so would ``pyro.infer.Predictive(bn.model,
        guide=bn.guide)`` impute from the prior.  Data with missing discrete entries (or absent discrete
        columns) are therefore refused when no enumeration is active; complete data and ``data=None`` pass.

        :raises ConfigError: data with missing discrete entries and no enumeration active, saying to train with
            ``TraceEnum_ELBO`` (for posterior samples of the missing entries: :meth:`sample` with ``evidence``,
            or :func:`pyro.infer.infer_discrete`).
        """
        self._check_enumerated(data, mask)

    @own_param_store
    def sample(self, num_samples: int, inputs=None, *, evidence=None, generator=None) -> dict:
        """Ancestral samples: dict node -> ``[num_samples]`` (context ``inputs`` sized to match).

        With ``evidence`` (or a ``generator``): exact samples of the unobserved nodes given each evidence
        row, dict node -> ``[num_samples, N]``; see :func:`hybridpgm.infer.exact.posterior_sample` (``inputs``
        join the evidence; the continuous ancestors of the evidence must be observed).

        :raises EvidenceError: evidence that is not a mapping node -> value(s) (an ``[N, len(nodes)]`` tensor:
            pass :meth:`columns` of it), or evidence the query refuses.
        :raises DataError: continuous data, evidence or context inputs of a floating dtype the network's would
            round (float64 for a float32 network; see :meth:`columns`).
        """
        num_samples = sample_count(num_samples, "BayesNet.sample num_samples")
        if evidence is not None or generator is not None:
            from hybridpgm.infer.bn_evidence import evidence_mapping
            from hybridpgm.infer.exact import posterior_sample

            return posterior_sample(self.check(), num_samples, {**self._inputs(inputs),
                                                                **evidence_mapping(self, evidence)},
                                    generator=generator)
        with torch.no_grad():  # a Pyro plate cannot be empty: zero samples are one, sliced away
            tr = poutine.trace(self.model).get_trace(None, None, inputs, num_samples=max(num_samples, 1))
        return {v: tr.nodes[v]["value"][:num_samples] for v in self.nodes}

    @own_param_store
    def log_prob(self, values, inputs=None) -> torch.Tensor:
        """``[N]`` joint :math:`\\log p(x)` of complete rows (dict or ``[N, len(nodes)]`` tensor).

        :raises DataError: a missing node or entry, or data :meth:`model` refuses (continuous data of a
            floating dtype the network's would round among them).
        """
        cols = self.columns(values)
        missing = [v for v in self.nodes if v not in cols]
        if missing:
            raise DataError(f"log_prob needs every node; missing {missing}")
        incomplete = [v for v, (_, observed) in self._observed_columns(cols).items() if observed is not None]
        if incomplete:
            raise DataError(f"log_prob scores complete rows; columns {incomplete} have missing entries "
                            "(NaN or -1): log_evidence sums them out")
        with self._scoring():  # a row of probability 0 scores -inf
            tr = poutine.trace(self.model).get_trace(cols, None, inputs)
        tr.compute_log_prob(site_filter=lambda name, site: name in self.cpds)
        return sum(tr.nodes[v]["log_prob"] for v in self.nodes)

    # ------------------------------------------------------------------ exact queries
    def posterior(self, query=None, evidence=None, *, joint: bool = False):
        """Posterior marginals; see :func:`hybridpgm.infer.exact.posterior`.

        :param evidence: a dict node -> value(s) (see :func:`~hybridpgm.infer.bn_evidence.parse_evidence`), or
            ``None``; for an ``[N, len(nodes)]`` data tensor pass :meth:`columns` of it.
        :raises EvidenceError: evidence that is not a mapping (naming its type and shape), or one the query
            refuses.
        :raises DataError: a continuous value of a floating dtype the network's would round.
        """
        from hybridpgm.infer.exact import posterior

        return posterior(self.check(), query, evidence, joint=joint)

    def log_evidence(self, evidence=None) -> torch.Tensor:
        """:math:`\\log p(e)` per row; see :func:`hybridpgm.infer.exact.log_evidence` (``evidence`` and the
        errors: as for :meth:`posterior`)."""
        from hybridpgm.infer.exact import log_evidence

        return log_evidence(self.check(), evidence)

    def compile_evidence(self, nodes, *, max_bytes: int | None = None, layout: str = "auto"):
        """Precompute the answers to every hard-evidence query over ``nodes``; see
        :class:`hybridpgm.infer.EvidenceTable` (a snapshot of the CPDs, answered by a gather per row)."""
        from hybridpgm.infer.evidence_table import DEFAULT_MAX_BYTES, EvidenceTable

        return EvidenceTable(self.check(), nodes, max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
                             layout=layout)

    def map(self, evidence=None, *, return_log_prob: bool = False):
        """Most probable explanation; see :func:`hybridpgm.infer.exact.map_assignment` (``evidence`` and the
        errors: as for :meth:`posterior`)."""
        from hybridpgm.infer.exact import map_assignment

        return map_assignment(self.check(), evidence, return_log_prob=return_log_prob)

    # ------------------------------------------------------------------ pgmpy interop
    @classmethod
    def from_pgmpy(cls, model, *, dtype: torch.dtype = torch.float64, learnable: bool = False) -> "BayesNet":
        """Convert a pgmpy discrete Bayesian network (tabular CPDs) to a :class:`BayesNet`."""
        from hybridpgm.graphs.bif import from_pgmpy

        return from_pgmpy(model, dtype=dtype, learnable=learnable, cls=cls)

    def to_pgmpy(self):
        """Convert to a pgmpy ``DiscreteBayesianNetwork`` with ``TabularCPD`` s."""
        from hybridpgm.graphs.bif import to_pgmpy

        return to_pgmpy(self.check())
