"""The DAG bookkeeping of a :class:`~hybridpgm.graphs.BayesNet`: cycle search on each declaration, topological order.

A network is declared one node at a time, and a node's parents may be declared after it.  :class:`DagIndex`
keeps, in plain dicts, each declared node's parents and each name's declared children (also for a name not
declared yet: the children waiting for it), so that :meth:`BayesNet.add <hybridpgm.graphs.BayesNet.add>` costs
:math:`O(\\deg)` on a sparse network instead of a pass over the whole graph, and reads no CPD other than the
new one (a CPD's attributes go through :class:`torch.nn.Module`'s slow attribute lookup).

**Cycles.** The declared graph is acyclic before node :math:`v` is added, so a cycle after it passes through
:math:`v`: it is a path :math:`v \\to c \\to \\dots \\to p` from a declared child :math:`c` of :math:`v` down to
a declared parent :math:`p` of :math:`v`.  :meth:`DagIndex.cycle_through` looks for it from both ends at once
(down from :math:`v` over children, up from :math:`v`'s parents over parents, one node expanded by each in
turn) and stops as soon as either search reaches the other end or runs out of nodes, so it costs
:math:`O(\\min(|\\mathrm{desc}(v)|, |\\mathrm{anc}(\\mathrm{pa}(v))|))` node expansions: :math:`O(1)` for a
chain declared in either direction.

**Order.** :func:`topological_order` is the post-order of a depth-first search over parents, roots taken in
declaration order and parents in their declared order (each node after all its parents), computed with an
explicit stack, so the depth of the network is not bounded by Python's recursion limit.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Sequence

from hybridpgm.errors import ModelSpecError

__all__ = ["DagIndex", "topological_order"]


class DagIndex:
    """Parents and children of the declared nodes of a network, in plain dicts (picklable, deep-copyable).

    :ivar dict parents: declared node -> tuple of its parents' names (declared or not).
    :ivar dict children: name (declared or not) -> list of the declared nodes listing it as a parent, in
        declaration order.
    """

    def __init__(self, parents: Mapping[str, Sequence[str]] = ()):
        self.parents: dict[str, tuple[str, ...]] = {}
        self.children: dict[str, list[str]] = {}
        for v, pa in dict(parents).items():
            self.insert(v, pa)

    def __len__(self) -> int:
        return len(self.parents)

    def insert(self, name: str, parents: Sequence[str]) -> None:
        """Record node ``name`` with ``parents`` (it must not be recorded yet)."""
        self.parents[name] = tuple(parents)
        for p in self.parents[name]:
            self.children.setdefault(p, []).append(name)

    def remove(self, name: str) -> None:
        """Forget node ``name`` (its children stay, waiting for it again)."""
        for p in self.parents.pop(name):
            kids = self.children[p]
            kids.remove(name)
            if not kids:
                del self.children[p]

    def declared_children(self, name: str) -> list[str]:
        """The declared nodes listing ``name`` as a parent, in declaration order."""
        return list(self.children.get(name, ()))

    def cycle_through(self, name: str, parents: Sequence[str]) -> list[str] | None:
        """The cycle node ``name`` (not recorded yet) with ``parents`` would close, or ``None``.

        :returns: ``[name, c, ..., p, name]`` along the edges parent -> child: ``c`` a declared child of
            ``name`` and ``p`` a declared parent of it; ``None`` when adding the node keeps the graph acyclic.
        """
        ups = [p for p in parents if p in self.parents]
        downs = self.children.get(name, ())
        if not ups or not downs:  # a cycle through name needs an edge into it and one out of it
            return None
        down = _search([name], lambda v: self.children.get(v, ()), set(ups))
        up = _search(ups, lambda v: [p for p in self.parents[v] if p in self.parents], set(downs))
        while True:
            for search, downward in ((down, True), (up, False)):
                try:
                    next(search)
                except StopIteration as stop:
                    if stop.value is None:
                        return None  # one side has run out of nodes: no path joins name's children to its parents
                    path = stop.value  # from the node reached back to where its search started
                    return list(reversed(path)) + [name] if downward else [name] + path + [name]


def _search(starts: Sequence[str], step, goal: set) -> Iterator[None]:
    """A depth-first search from ``starts`` along ``step``: yields once per node expanded, and returns the path
    ``[reached, ..., start]`` to the first node of ``goal`` it meets, or ``None`` once every reachable node is
    expanded."""
    pred: dict[str, str | None] = {}
    for s in starts:
        pred[s] = None
        if s in goal:
            return _path(pred, s)
    stack = list(reversed(starts))
    while stack:
        v = stack.pop()
        for w in step(v):
            if w not in pred:
                pred[w] = v
                if w in goal:
                    return _path(pred, w)
                stack.append(w)
        yield
    return None


def _path(pred: Mapping[str, str | None], v: str) -> list[str]:
    path = [v]
    while pred[path[-1]] is not None:
        path.append(pred[path[-1]])
    return path


def topological_order(nodes: Iterable[str], parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Each node after all its parents: the depth-first post-order over parents, roots in the order of ``nodes``
    and parents in their order in ``parents``; iterative (no recursion limit on the depth).

    :param nodes: every node, in declaration order.
    :param parents: node -> its parents (all of them among ``nodes``).
    :raises ModelSpecError: the graph has a cycle (naming it), which :meth:`BayesNet.add
        <hybridpgm.graphs.BayesNet.add>` refuses, so only a network whose CPDs were changed behind its back.
    """
    order: list[str] = []
    done: set[str] = set()
    for root in nodes:
        if root in done:
            continue
        stack = [(root, iter(parents[root]))]
        on_path = {root: 0}
        while stack:
            v, todo = stack[-1]
            for p in todo:
                if p in done:
                    continue
                if p in on_path:
                    cycle = [u for u, _ in stack[on_path[p]:]][::-1]
                    raise ModelSpecError(f"the network has the cycle {' -> '.join([cycle[-1]] + cycle)}")
                on_path[p] = len(stack)
                stack.append((p, iter(parents[p])))
                break
            else:
                stack.pop()
                del on_path[v]
                done.add(v)
                order.append(v)
    return order
