"""Evidence rows for exact Bayesian-network queries: validation, and the network facts queries reuse.

:func:`parse_evidence` turns a user's evidence dict (state indices or names,
tensors with one entry per row, ``-1``/``NaN`` for "not observed in this
row", :class:`~hybridpgm.infer.soft_evidence.Likelihood` for soft evidence)
into an :class:`Evidence`: nodes observed in every row (indexed away by the
contraction), nodes observed in some rows or softly (per-row likelihood
vectors :math:`\\lambda_n(x_v)`, one-hot where observed and all ones where
not [1]), and continuous values.  :func:`network_facts` caches the structure a
query needs (cardinalities, parents, children) in ``bn.plan_cache.memo``, so a
repeated query pays no ``torch.nn.Module`` attribute lookups for it.

**References**

[1] A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from hybridpgm.autograd_scope import usable_with_grad
from hybridpgm.checks import close_match, shown_items, torch_readable
from hybridpgm.data.validation import model_dtype_checks
from hybridpgm.errors import DataError, EvidenceError
from hybridpgm.graphs.bn_values import (_is_missing_entry, _plain, bool_states, context_batch_features,
                                        refuse_ambiguous_numbers)
from hybridpgm.infer.bn_dtypes import check_one_table_dtype
from hybridpgm.infer.bn_evidence_states import judged_states, read_flags, state_checks
from hybridpgm.infer.soft_evidence import Likelihood, judged_soft, soft_checks
from hybridpgm.meta_data import refuse_meta

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["BATCH", "Evidence", "NetworkFacts", "evidence_mapping", "network_facts", "parse_evidence"]

#: name of the batch dim over evidence rows in contraction plans
BATCH = "\x00rows"


@dataclass(eq=False)
class NetworkFacts:
    """The structure of a checked network, as plain Python containers.

    :ivar list nodes: node names in declaration order.
    :ivar dict cards: node -> cardinality (``None`` for a continuous node).
    :ivar dict parents: node -> all parents; ``discrete``: node -> discrete parents.
    :ivar dict children: node -> child nodes.
    :ivar dict cpds: node -> CPD module.
    :ivar set inputs: context input names of neural CPDs.
    :ivar bool tables_only: every CPD is a :class:`~hybridpgm.graphs.cpd.Table`.
    """

    nodes: list
    cards: dict
    parents: dict
    discrete: dict
    children: dict
    cpds: dict
    inputs: set
    tables_only: bool
    #: memo: frozenset(targets) -> ancestral closure (bounded: see :func:`~hybridpgm.infer.bn_factors.relevant`)
    relevant: dict = field(default_factory=dict)
    #: memo: node -> (logits, support, their :func:`~hybridpgm.tensor_tracking.value_key`, log-table, table, the
    #: storages read) of tables needing no gradient (:func:`~hybridpgm.infer.bn_factors.node_table`)
    tables: dict = field(default_factory=dict)


def network_facts(bn: "BayesNet") -> NetworkFacts:
    """The :class:`NetworkFacts` of ``bn``, kept in ``bn.plan_cache.memo`` (cleared when a node is added)."""
    facts = bn.plan_cache.memo.get("facts")
    if facts is None:
        from hybridpgm.graphs.cpd import Table

        cpds = dict(bn.cpds.items())
        children = {v: [] for v in cpds}
        for v, c in cpds.items():
            for p in c.parents:
                children[p].append(v)
        facts = NetworkFacts(nodes=list(cpds), cards={v: c.cardinality for v, c in cpds.items()},
                             parents={v: tuple(c.parents) for v, c in cpds.items()},
                             discrete={v: c.discrete_parents for v, c in cpds.items()}, children=children,
                             cpds=cpds, inputs=set(bn.input_names),
                             tables_only=all(type(c) is Table for c in cpds.values()))
        bn.plan_cache.memo["facts"] = facts
    return facts


def dtype_device(bn: "BayesNet", facts: NetworkFacts):
    """``(bn.dtype, bn.device)`` without walking the module tree when the network is all tables; a network whose
    CPDs are of two dtypes is refused (:func:`~hybridpgm.infer.bn_dtypes.check_one_table_dtype`)."""
    check_one_table_dtype(facts)
    if facts.tables_only and facts.cpds:
        t = None
        for c in facts.cpds.values():  # parameters come before buffers in bn.parameters()/buffers() order
            t = c._parameters.get("logits")
            if t is not None:
                break
        if t is None:
            t = next(iter(facts.cpds.values()))._buffers["logits"]
        return t.dtype, t.device
    return bn.dtype, bn.device


@dataclass(eq=False)
class Evidence:
    """Evidence rows, validated against a network.

    :ivar int n: number of rows :math:`N`.
    :ivar bool batched: whether the caller passed tensors (results keep the ``N`` dim).
    :ivar dict observed: discrete node -> ``[N]`` long values, observed in every row.
    :ivar dict partial: discrete node -> ``[N, card]`` log-likelihood: one-hot (0 / -inf) for hard
        evidence observed in some rows (all 0 where missing), for soft evidence the log-likelihood less its row
        maximum (largest entry 0; the maximum is in ``shifts``).
    :ivar dict values: continuous nodes and context inputs -> ``[N]`` or ``[N, d]`` tensors.
    :ivar set soft: the nodes of ``partial`` that hold soft evidence.
    :ivar dict likelihoods: soft node -> ``[N, card]`` likelihood :math:`\\lambda_n` in probability space, for
        soft evidence given as probabilities (``Likelihood(log=False)``): the operand of probability-space
        queries in place of ``partial[node].exp()``, so that a zero entry keeps its exact, finite gradient
        (:mod:`~hybridpgm.infer.soft_evidence`).
    :ivar dict shifts: soft node -> ``[N]`` detached :math:`m_n = \\max_k \\log \\lambda_{n,k}`, in the working
        precision of :func:`~hybridpgm.infer.soft_evidence.working_dtype` (float32 or float64): taken out of
        ``partial`` and ``likelihoods`` before they were narrowed to ``dtype``, added back to :math:`\\log p(e_n)`
        by the queries (:func:`~hybridpgm.infer.bn_spaces.with_shift`).
    :ivar whole: the caller's whole batch when these rows are a part of it (a group, chunk or redone subset:
        :meth:`subset`), else ``None``; an error about impossible rows names all of the whole batch's
        (:func:`~hybridpgm.infer.bn_impossible.check_possible`).
    """

    n: int
    batched: bool
    dtype: torch.dtype = torch.float32
    device: torch.device | None = None
    observed: dict = field(default_factory=dict)
    partial: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    soft: set = field(default_factory=set)
    likelihoods: dict = field(default_factory=dict)
    shifts: dict = field(default_factory=dict)
    whole: "Evidence | None" = field(default=None, repr=False, compare=False)

    def subset(self, idx: torch.Tensor) -> "Evidence":
        """The rows ``idx`` (``[n_g]`` long) of this evidence (its ``whole`` batch: this one's, or this one)."""
        return Evidence(n=idx.numel(), batched=True, dtype=self.dtype, device=self.device,
                        observed={k: t[idx] for k, t in self.observed.items()},
                        partial={k: t[idx] for k, t in self.partial.items()},
                        values={k: t[idx] for k, t in self.values.items()}, soft=set(self.soft),
                        likelihoods={k: t[idx] for k, t in self.likelihoods.items()},
                        shifts={k: t[idx] for k, t in self.shifts.items()},
                        whole=self if self.whole is None else self.whole)


def _as_index_tensor(bn: "BayesNet", name: str, v, device) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        refuse_meta(v, f"evidence for {name!r}")
        if v.is_complex():
            raise EvidenceError(f"evidence for {name!r} must be real, got dtype {v.dtype}")
        return v if v.device == device else v.to(device)
    states = bn.state_names.get(name)
    try:  # True / False for states named true / false: those states (BIF orders them TRUE, FALSE), not 1 / 0
        v = bool_states(name, [v], states, what="evidence")[0] if isinstance(v, (bool, np.bool_)) \
            else bool_states(name, v, states, what="evidence")
        refuse_ambiguous_numbers(name, v, states, what="evidence")
    except DataError as e:
        raise EvidenceError(str(e)) from None
    v = _plain(v)  # a pandas Series or Categorical: its values (names, not codes)
    if isinstance(v, np.ndarray) and v.dtype.kind in "OUS":  # a NumPy string or object array: entry by entry
        v = v.tolist()
    if isinstance(v, str) or (isinstance(v, (list, tuple)) and any(
            isinstance(s, str) or (_is_missing_entry(s) and not isinstance(s, float)) for s in v)):
        items = [v] if isinstance(v, str) else list(v)
        idx = []
        for s in items:  # None, NaN, pd.NA: not observed in that row (-1), as in the data of BayesNet.model
            if isinstance(s, str) and (states is None or s not in states):
                raise EvidenceError(f"{s!r} is not a state of {name!r}{close_match(s, states or [])} (states: "
                                    f"{'none named' if states is None else shown_items(states)})")
            idx.append(-1 if _is_missing_entry(s) else states.index(s) if isinstance(s, str) else s)
        t = _as_tensor(name, idx, device)
        return t[0] if isinstance(v, str) else t
    return _as_tensor(name, v, device)


def _as_tensor(name: str, v, device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``v`` as a tensor, or an :class:`EvidenceError` naming ``name`` and what ``v`` is.

    :param dtype: the dtype to build a number or list of numbers in (a tensor or array keeps its own).
    """
    refuse_meta(v, f"evidence for {name!r}")
    try:
        v = torch_readable(_plain(v), f"evidence for {name!r}")
    except DataError as e:  # a masked array with masked entries
        raise EvidenceError(str(e)) from None
    try:
        t = torch.as_tensor(v, device=device, dtype=None if hasattr(v, "dtype") else dtype)
    except (TypeError, ValueError, RuntimeError):
        raise EvidenceError(f"evidence for {name!r} must be a number, a state or a tensor of them, "
                            f"got {type(v).__name__} {v!r:.60}") from None
    if t.is_complex():
        raise EvidenceError(f"evidence for {name!r} must be real, got dtype {t.dtype}")
    return t


def evidence_mapping(bn: "BayesNet", evidence) -> dict:
    """``evidence`` as a dict (``None``: no evidence): a mapping, a pandas ``DataFrame`` (its columns), or
    anything else with ``items()`` -- a pandas ``Series`` such as one row ``df.iloc[0]``, label -> value, as
    :meth:`BayesNet.log_prob <hybridpgm.graphs.BayesNet.log_prob>` reads it.

    :raises EvidenceError: for anything else (a ``Series`` none of whose labels names a node or context input, as
        a column ``df["A"]`` is, included), saying what was given (type, shape, dtype) and what to pass instead
        (for a data tensor or a ``(values, mask)`` pair: :meth:`BayesNet.columns <hybridpgm.graphs.BayesNet.columns>`
        of it), or for a
        ``Series`` whose labels repeat (naming them).
    """
    if evidence is None:
        return {}
    if isinstance(evidence, Mapping):
        return dict(evidence)
    if hasattr(evidence, "columns") and not isinstance(evidence, torch.Tensor):  # a pandas DataFrame: its columns
        return {name: evidence[name] for name in evidence.columns}
    items = list(evidence.items()) if callable(getattr(evidence, "items", None)) and \
        not isinstance(evidence, torch.Tensor) else None  # a pandas Series, label -> value
    names = set(bn.nodes) | set(bn.input_names)
    if items and any(isinstance(k, str) and k in names for k, _ in items):  # a row: its labels name nodes
        labels = [k for k, _ in items]
        if len(set(labels)) != len(labels):
            twice = sorted({str(k) for k in labels if labels.count(k) > 1})
            raise EvidenceError(f"evidence given as a {type(evidence).__name__} repeats the label(s) {twice}: "
                                "one value per node")
        return dict(items)
    shape = getattr(evidence, "shape", None)
    given = type(evidence).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "") + \
        (f" and dtype {evidence.dtype}" if isinstance(evidence, torch.Tensor) else "")
    hint = ""
    if items is not None:  # a column (its labels are row labels): a node's values
        hint = "; for one node's values (a column such as df['<node>']) pass {'<node>': df['<node>']}"
    if isinstance(evidence, torch.Tensor):
        hint = (f"; for an [N, {len(bn.nodes)}] data tensor whose columns follow the nodes, pass bn.columns(data), "
                "the dict of its columns (NaN or -1 = not observed in that row)")
    if isinstance(evidence, tuple) and len(evidence) == 2 and all(isinstance(t, torch.Tensor) for t in evidence):
        hint = "; for a (values, mask) pair (bn.split_missing's), pass bn.columns(pair), the dict of its columns"
    raise EvidenceError(f"evidence must be a mapping node name -> value(s), e.g. {{'<node>': tensor([...])}} "
                        f"for the nodes {bn.nodes}, or None for no evidence; got {given}{hint}")


def _states(name: str, t: torch.Tensor, card: int) -> tuple[torch.Tensor, bool, bool]:
    """``(states, observed in every row, observed in none)`` of one node's evidence ``t``, in one host read of its
    own (:func:`~hybridpgm.infer.bn_evidence_states.judged_states`; :func:`parse_evidence` reads all nodes' at
    once)."""
    checks, flags = state_checks(t, card)
    return judged_states(name, card, checks, read_flags([flags])[0])


def parse_evidence(bn: "BayesNet", evidence: Mapping | None) -> Evidence:
    """Validate evidence and split it into observed / partially observed / continuous parts.

    A discrete value is a state index or state name, or a tensor of them with one
    entry per row; ``-1`` (integer or float tensors), ``NaN`` (float tensors) or ``None`` (in a
    list of state names, as in the data of :meth:`BayesNet.model
    <hybridpgm.graphs.BayesNet.model>`) marks a row where the variable is not
    observed, as in :class:`~hybridpgm.graphs.MarkovNet`'s evidence; any other negative value is refused.
    Scalars broadcast over the rows.  For a node whose states are named by numbers other than ``"0"`` ..
    ``"K-1"`` (``["1", "2"]``, as :meth:`BayesNet.from_pgmpy <hybridpgm.graphs.BayesNet.from_pgmpy>` names
    pgmpy's states ``[1, 2]``), a number -- a single Python or NumPy one too -- could be a name or an index and is
    refused (:func:`~hybridpgm.graphs.bn_values.refuse_ambiguous_numbers`); a tensor, 0-d too, holds indices.

    :param evidence: a mapping node (or context input) name -> value(s), or ``None`` for no evidence.
    :raises EvidenceError: for evidence that is not a mapping (an ``[N, len(nodes)]`` data tensor: turn it
        into columns with :meth:`BayesNet.columns <hybridpgm.graphs.BayesNet.columns>` first), an unknown
        name, numbers for states named by other numbers (naming the node and its states), a value out of range
        (a negative one other than ``-1`` included) or not a whole number (naming the node, the value and its
        row), or rows of different lengths.
    :raises DataError: for a continuous value (node or context input) of a floating dtype the network's
        dtype would round (the rule of :func:`~hybridpgm.data.validation.as_model_dtype`).
    """
    facts = network_facts(bn)
    evidence = evidence_mapping(bn, evidence)
    dtype, device = dtype_device(bn, facts)
    tensors, soft, failure = {}, {}, None  # soft: name -> (PendingSoft, flags), judged with the others' flags
    try:
        for name, v in evidence.items():
            card = facts.cards.get(name)
            if name not in facts.cards and name not in facts.inputs:
                raise EvidenceError(f"evidence names unknown variable {name!r}{close_match(name, facts.nodes)} "
                                    f"(nodes: {shown_items(facts.nodes)})")
            if isinstance(v, Likelihood):
                soft[name] = soft_checks(bn, name, v, dtype, device)
                continue
            # made under inference_mode, queried with grad on: a clone autograd can save (indexing a table by it)
            tensors[name] = usable_with_grad(_as_index_tensor(bn, name, v, device) if card
                                             else _as_tensor(name, v, device, dtype))
        lengths = {name: t.shape[0] for name, t in tensors.items() if t.dim() > 0}
        lengths.update({name: p.evidence.log_lik.shape[0] for name, (p, _) in soft.items()
                        if p.evidence.log_lik.dim() == 2})
        if len(set(lengths.values())) > 1:
            raise EvidenceError(f"evidence rows differ in length: {lengths}")
    except Exception as e:  # raised once the soft evidence before it has passed (the error path: one more read)
        failure = e
    if failure is not None:
        for (pending, _), values in zip(soft.values(), read_flags([flags for _, flags in soft.values()])):
            judged_soft(pending, values)
        raise failure
    n = next(iter(lengths.values()), 1)
    ev = Evidence(n=n, batched=bool(lengths), dtype=dtype, device=device)
    kept, failure = _checked(facts, tensors, dtype, n)
    read = read_flags([flags for _, flags in soft.values()] + [flags for *_, flags in kept])  # one read for all
    for (pending, _), values in zip(soft.values(), read):  # soft evidence first, as when it was read at once
        log_lik, lik, shift = judged_soft(pending, values)
        ev.partial[pending.name] = log_lik.expand(n, log_lik.shape[-1])
        if lik is not None:
            ev.likelihoods[pending.name] = lik.expand(n, lik.shape[-1])
        ev.shifts[pending.name] = shift.expand(n)
        ev.soft.add(pending.name)
    for (name, t, card, checks, _), values in zip(kept, read[len(soft):]):
        if card is None:  # checks: the error of integers outside the dtype's exact range (its flag first), or None
            if checks is not None and values[0]:
                raise checks()
            nan = values[1:] if checks is not None else values
            if name in facts.cards and nan and nan[0]:
                raise EvidenceError(f"continuous node {name!r} has missing (NaN) evidence; exact inference needs "
                                    "every continuous node it keeps observed in every row (a continuous node with "
                                    "no evidence below it is drawn, or left out, when it is not given at all)")
            ev.values[name] = t
            continue
        t, everywhere, nowhere = judged_states(name, card, checks, values)
        t = t.expand(n) if t.dim() == 0 else t
        if everywhere:
            ev.observed[name] = t
            continue
        if nowhere:  # missing in every row
            continue
        missing = (t == -1)[:, None]
        lik = torch.nn.functional.one_hot(t.clamp(min=0), card).to(dtype)
        ev.partial[name] = torch.where(missing, 0.0, lik.log())
    if failure is not None:  # raised by a node after every node checked above passed
        raise failure
    return ev


def _checked(facts: NetworkFacts, tensors: dict, dtype: torch.dtype, n: int) -> tuple[list, Exception | None]:
    """The checks of each node's evidence that read nothing, in order; ``(kept, failure)``: per node checked
    ``(name, value, card, checks, flags)`` -- a continuous node or context input in ``dtype``, ``checks`` the error
    of integers outside the range ``dtype`` holds exactly (``None`` for other dtypes) and ``flags`` that range's
    flag if any (:func:`~hybridpgm.data.validation.model_dtype_checks`), then, for a node, the flag of a ``NaN``
    entry; a discrete one with :func:`state_checks`' -- and the error of the first node refused here (``None``:
    none), which :func:`parse_evidence` raises unless a node before it fails a check of ``flags``."""
    kept = []
    try:
        for name, t in tensors.items():
            card = facts.cards.get(name)
            if card is None:  # continuous node or context input: in the network's dtype, never rounded
                what = f"evidence for the continuous node {name!r}" if name in facts.cards else \
                    f"the context input {name!r}"
                # integers: their range's flag read with the others', its error kept in the checks' place
                t, outside, error = model_dtype_checks(t, dtype, what)
                ranged = [] if outside is None else [outside]
                if t.dim() == 0:
                    t = t.expand(n)
                if name not in facts.cards:  # a context input [N, d...]: prod(d) features per row
                    kept.append((name, context_batch_features(t, 0), None, error, ranged))
                    continue
                if t.dim() != 1:
                    kept.append((name, t, None, error, ranged))  # its range is named before its shape
                    raise EvidenceError(f"evidence for the continuous node {name!r} must be a scalar or [N], "
                                        f"got shape {tuple(t.shape)}")
                kept.append((name, t, None, error, [*ranged, torch.isnan(t).any()]))
                continue
            if t.dim() > 1:
                raise EvidenceError(f"evidence for {name!r} must be a scalar or [N], got shape {tuple(t.shape)}")
            kept.append((name, t, card, *state_checks(t, card)))
    except Exception as e:  # raised once the nodes before it have passed their checks
        return kept, e
    return kept, None
