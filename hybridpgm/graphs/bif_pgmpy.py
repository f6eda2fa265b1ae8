"""Convert discrete Bayesian networks to and from pgmpy [1].

:func:`from_pgmpy` turns a pgmpy network of ``TabularCPD`` s into a :class:`~hybridpgm.graphs.BayesNet` of
:class:`~hybridpgm.graphs.cpd.Table` CPDs (``BayesNet.from_pgmpy``), :func:`to_pgmpy` the other way
(``BayesNet.to_pgmpy``).  pgmpy stores a CPD as ``card x prod(parent_cards)``, the child's state first;
hybridpgm's tables are ``parent_cards + (card,)``, the child's state last.

**References**

[1] A. Ankan, A. Panda, *pgmpy: Probabilistic Graphical Models using Python*, SciPy 2015.
"""

from __future__ import annotations

import numpy as np
import torch

from hybridpgm.errors import ModelSpecError

__all__ = ["discrete_table", "from_pgmpy", "to_pgmpy"]


def discrete_table(bn, v) -> np.ndarray:
    """The probability table of node ``v`` of ``bn``, ``parent_cards + (card,)`` float64 (the child's state
    last), for BIF and pgmpy.

    :raises ModelSpecError: ``v``'s CPD has no fixed table (continuous or context-dependent)."""
    c = bn.cpds[v]
    if c.cardinality is None or c.is_batched:
        raise ModelSpecError(f"node '{v}' has no fixed table (continuous or context-dependent CPD)")
    with torch.no_grad():
        return c.log_table().exp().detach().cpu().double().numpy()


def _parent_state_order(values: np.ndarray, axis: int, child, parent, cpd, parent_cpd) -> np.ndarray:
    """``values`` with its ``axis`` in the order of the parent's own CPD (a child's CPD may list the parent's
    states in another order: pgmpy's ``check_model`` refuses that, but the model can be built)."""
    own = (getattr(parent_cpd, "state_names", None) or {}).get(parent)
    listed = (cpd.state_names or {}).get(parent)
    if own is None or listed is None or list(listed) == list(own):
        return values
    if len(listed) != len(own) or set(listed) != set(own) or len(set(own)) != len(own):
        raise ModelSpecError(f"from_pgmpy: the CPD of '{child}' lists the states of its parent '{parent}' as "
                             f"{list(listed)!r}, the CPD of '{parent}' as {list(own)!r}; they must be the same states")
    return np.take(values, [list(listed).index(s) for s in own], axis=axis)


def from_pgmpy(model, *, dtype: torch.dtype = torch.float64, learnable: bool = False, cls=None):
    """Convert a pgmpy discrete Bayesian network (``TabularCPD`` s) to a :class:`~hybridpgm.graphs.BayesNet`.

    A child's CPD listing a parent's states in another order than the parent's own has its table reordered.  Node
    and state names become strings (``str`` of pgmpy's: integer states ``1, 2`` give ``'1'``, ``'2'``).

    :raises ModelSpecError: not a pgmpy network, a CPD that is not a ``TabularCPD``, a node without a CPD, or a
        child's CPD listing other states for a parent than the parent's CPD (naming child, parent, both lists).
    """
    from hybridpgm.graphs.bayes_net import BayesNet
    from hybridpgm.graphs.cpd import Table

    cls = cls or BayesNet
    if not all(callable(getattr(model, a, None)) for a in ("get_cpds", "nodes")):
        raise ModelSpecError(f"from_pgmpy needs a pgmpy Bayesian network (with get_cpds() and nodes()), "
                             f"got {type(model).__name__}")
    bn = cls()
    cpds = {}
    for c in model.get_cpds():
        if not hasattr(c, "state_names") or not hasattr(c, "get_evidence"):
            raise ModelSpecError(f"CPD of '{getattr(c, 'variable', '?')}' is not a pgmpy TabularCPD")
        cpds[c.variable] = c
    missing = [v for v in model.nodes() if v not in cpds]
    if missing:
        raise ModelSpecError(f"pgmpy model has no CPD for node(s) {missing}")
    for v in model.nodes():
        c = cpds[v]
        parents = list(c.variables[1:])
        values = np.moveaxis(np.asarray(c.values, dtype=np.float64), 0, -1)
        for axis, p in enumerate(parents):
            values = _parent_state_order(values, axis, v, p, c, cpds.get(p))
        bn.add(str(v), Table(torch.as_tensor(values, dtype=dtype), [str(p) for p in parents], learnable=learnable),
               states=[str(s) for s in c.state_names[v]] if c.state_names else None)
    return bn.check()


def to_pgmpy(bn):
    """Convert a :class:`~hybridpgm.graphs.BayesNet` of discrete CPDs to a pgmpy network.

    Every CPD names the states of its variables (a node without state names gets pgmpy's default ``0..k-1``), so
    a named parent's states are listed alike in its children's CPDs and the model passes pgmpy's ``check_model``.
    State names are strings (a network converted by :func:`from_pgmpy` from integer states ``1, 2`` comes back with
    ``'1'``, ``'2'``); the ``0..k-1`` of a node without names are integers.

    :raises ModelSpecError: a node without a fixed table (:func:`discrete_table`).

    :raises ModuleNotFoundError: pgmpy is not installed (the message names the extra:
        ``pip install 'hybridpgm[pgmpy]'``).
    """
    try:
        from pgmpy.factors.discrete import TabularCPD
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("BayesNet.to_pgmpy needs pgmpy, which is not installed: "
                                  "pip install 'hybridpgm[pgmpy]' (or pip install pgmpy)", name="pgmpy") from err
    try:
        from pgmpy.models import DiscreteBayesianNetwork as Net
    except ImportError:  # older pgmpy
        from pgmpy.models import BayesianNetwork as Net

    net = Net(bn.edges)
    net.add_nodes_from(bn.nodes)
    cpds = []
    for v in bn.nodes:
        table = discrete_table(bn, v)
        parents = list(bn.parents(v))
        card = bn.cardinality(v)
        values = np.moveaxis(table, -1, 0).reshape(card, -1)
        names = {u: list(bn.state_names.get(u) or range(bn.cardinality(u))) for u in [v] + parents}
        cpds.append(TabularCPD(v, card, values, evidence=parents or None,
                               evidence_card=[bn.cardinality(p) for p in parents] or None, state_names=names))
    net.add_cpds(*cpds)
    return net
