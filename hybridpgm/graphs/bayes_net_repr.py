"""The ``repr`` of a :class:`~hybridpgm.graphs.BayesNet`: every node of a small network, a summary of constant size
(whatever the number of nodes) of a large one.

A network of at most :data:`WHOLE` nodes shows them all, ``BayesNet(nodes=['rain', 'sprinkler', 'wet'])`` as
before; a larger one (the ``repr`` printed every name: 1000 nodes, 9 KB; pgmpy's ``munin``, 1041) its node and
edge counts, the first and last names (:func:`~hybridpgm.summary_repr.listed`, each cut to about 40 characters)
and the number of CPDs of each class, as :class:`~hybridpgm.graphs.MarkovNet`'s ``repr`` does past 8 variables:
``BayesNet(nodes=1000 ['x0', 'x1', 'x2', ..., 'x999'], edges=999, cpds={'Table': 1000})``.  It never raises (a
network half-built by a subclass still shows).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from hybridpgm.summary_repr import listed

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["WHOLE", "bayes_net_text"]

#: the most nodes a network's ``repr`` lists whole (as :class:`~hybridpgm.graphs.MarkovNet`'s variables)
WHOLE = 8


def bayes_net_text(bn: "BayesNet") -> str:
    """The ``repr`` of ``bn`` (see the module docstring); ``BayesNet(?)`` where its CPDs cannot be read."""
    name = "BayesNet"  # as before, for a subclass too
    try:
        cpds = dict(bn._cpd_map.items())
    except Exception:  # a repr never raises: a network half-built
        return f"{name}(?)"
    if len(cpds) <= WHOLE:
        return f"{name}(nodes={list(cpds)})"
    edges = sum(len(getattr(cpd, "parents", ())) for cpd in cpds.values())
    kinds = Counter(type(cpd).__name__ for cpd in cpds.values())
    return f"{name}(nodes={len(cpds)} [{listed(cpds)}], edges={edges}, cpds={dict(kinds.most_common())})"
