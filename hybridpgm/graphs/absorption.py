"""Which variables an :class:`~hybridpgm.graphs.contraction.AbsorbingPlan` eliminates before its main plan, in
which order, and where each group's operands sit.

A variable :math:`v` (not in the output, not the row dim :math:`b`) *qualifies* when, among the operands holding
it, at least one is *small*, its dims within :math:`\\{v, b\\}` (an evidence indicator, a soft-evidence likelihood, a
query indicator), at most one is not (the *main* operand), and at least two hold it.  The group of the qualifying
variable first by ``str`` is contracted: its operands leave the list and the group's result, over :math:`b` (if a
group operand holds it) and the main operand's other dims, is appended.  This repeats until no variable qualifies,
so the groups, and their order, depend on the names alone, never on set or hash order.

Each operand is judged by its own dims only, so an absorption changes the verdict of no variable but those of the
operands it removes and the one it adds.  :func:`absorbed_groups` keeps, per variable, the set of operands holding
it and how many of them are small, re-judges only the variables an absorption touched, and takes the next group
from a heap of the qualifying names: :math:`O(\\sum_i |D_i| \\log n)` for ``n`` operands of dims :math:`D_i` (the
scan it replaced restarted over every variable and rebuilt each one's holders after every absorption:
:math:`O(n^3)` on a chain observed at its leaf).

Operands are numbered once, in *slots*: the ``n`` operands ``0 .. n-1``, then one new slot per group, in order;
the list at any point is its live slots in increasing order, so a group's positions in that list are ranks among
the live slots (a Fenwick tree [1], :math:`O(\\log n)` each), and :meth:`AbsorbingPlan.absorb` replays the groups
over slots in :math:`O(n)` per call.

**References**

[1] P. M. Fenwick, *A new data structure for cumulative frequency tables*, Software: Practice and Experience
24(3), 1994.
"""

from __future__ import annotations

import heapq
from typing import Hashable, Sequence

__all__ = ["absorbed_groups", "slot_layout"]


class _LiveSlots:
    """Which of ``size`` slots are live (a Fenwick tree of 0/1 counts): the rank of a live slot (how many live
    slots precede it) and the slot of a given rank, each in :math:`O(\\log \\text{size})`."""

    def __init__(self, size: int, live: int):
        #: per slot, whether it is live
        self.flags = [i < live for i in range(size)]
        self._tree = [0] * (size + 1)
        for i in range(1, size + 1):  # the first ``live`` slots set, built in O(size)
            self._tree[i] += i <= live
            parent = i + (i & -i)
            if parent <= size:
                self._tree[parent] += self._tree[i]

    def set(self, slot: int, delta: int) -> None:
        """Add ``delta`` (+1: the slot becomes live, -1: it leaves)."""
        self.flags[slot] = delta > 0
        i = slot + 1
        while i < len(self._tree):
            self._tree[i] += delta
            i += i & -i

    def rank(self, slot: int) -> int:
        """The number of live slots before ``slot``: its position in the operand list."""
        total, i = 0, slot
        while i > 0:
            total += self._tree[i]
            i -= i & -i
        return total

    def select(self, position: int) -> int:
        """The live slot at ``position`` of the operand list (the inverse of :meth:`rank`)."""
        slot, step = 0, 1 << (len(self._tree) - 1).bit_length()
        while step:
            nxt = slot + step
            if nxt < len(self._tree) and self._tree[nxt] <= position:
                slot, position = nxt, position - self._tree[nxt]
            step >>= 1
        return slot


def absorbed_groups(operand_dims: Sequence[tuple], output_dims: Sequence[Hashable], batch_dim) -> tuple[list, list]:
    """The absorbed groups of :class:`~hybridpgm.graphs.contraction.AbsorbingPlan`, in order.

    :param operand_dims: for each operand, the tuple of its dim names.
    :param output_dims: the result's dims (never absorbed).
    :param batch_dim: the row dim :math:`b` (or ``None``).
    :returns: ``(groups, live)``: per group ``(positions, slots, group_dims, new_dims)``, the group's operands as
        positions in the list when it runs (the main operand first, then the small ones, each in list order) and
        as slots, their dims, and the dims of its result (slot ``n + g`` of group ``g``); ``live`` the slots left
        for the main plan, in order (slot ``s`` holds ``operand_dims[s]`` for ``s < n``, else the ``new_dims``
        of group ``s - n``).
    """
    dims = [tuple(d) for d in operand_dims]
    n = len(dims)
    out = set(output_dims) | {batch_dim}
    own = [set(d) - {batch_dim} for d in dims]  # a slot holding v is small for v iff its own dims are {v}
    holders: dict = {}  # variable -> live slots holding it
    small: dict = {}  # variable -> how many of them are small
    first: dict = {}  # variable -> order of first appearance (ties of equal str)
    for s, o in enumerate(own):
        for v in dict.fromkeys(dims[s]):
            if v in o and v not in out:
                holders.setdefault(v, set()).add(s)
                small[v] = small.get(v, 0) + (len(o) == 1)
                first.setdefault(v, len(first))

    def qualifies(v) -> bool:
        k = len(holders[v])
        return small[v] >= 1 and k - small[v] <= 1 and k >= 2

    heap = [(str(v), first[v], v) for v in holders if qualifies(v)]
    heapq.heapify(heap)
    queued = {v for _, _, v in heap}
    live = _LiveSlots(2 * n, n)  # at most n - 1 groups, each one new slot
    groups = []
    while heap:
        v = heapq.heappop(heap)[2]
        queued.discard(v)
        if not qualifies(v):  # stale: its verdict changed since it was queued
            continue
        slots = sorted(holders[v])
        big = [s for s in slots if len(own[s]) != 1]
        group = big + [s for s in slots if len(own[s]) == 1]
        g_dims = [dims[s] for s in group]
        rest = tuple(d for d in (dims[big[0]] if big else ()) if d not in (v, batch_dim))
        new_dims = ((batch_dim,) if any(batch_dim in ds for ds in g_dims) else ()) + rest
        groups.append((tuple(live.rank(s) for s in group), tuple(group), g_dims, new_dims))
        touched = set()
        for s in group:
            live.set(s, -1)
            for u in own[s]:
                if u not in out:
                    holders[u].discard(s)
                    small[u] -= len(own[s]) == 1
                    touched.add(u)
        new = len(dims)
        dims.append(new_dims)
        own.append(set(new_dims) - {batch_dim})
        live.set(new, 1)
        for u in own[new]:
            if u not in out:
                holders[u].add(new)
                small[u] += len(own[new]) == 1
                touched.add(u)
        for u in touched:
            if u not in queued and qualifies(u):
                heapq.heappush(heap, (str(u), first[u], u))
                queued.add(u)
    return groups, [s for s in range(len(dims)) if live.flags[s]]


def slot_layout(positions: Sequence[tuple], n: int) -> tuple[list, list]:
    """The slots of groups given by their positions (``groups`` of a plan pickled before it stored its slots).

    :param positions: per group, its operands' positions in the list when it runs.
    :param int n: the number of operands.
    :returns: ``(slots, live)`` as :func:`absorbed_groups` gives them: per group its slots, and the main plan's.
    """
    live = _LiveSlots(n + len(positions), n)
    slots = []
    for g, group in enumerate(positions):
        picked = tuple(live.select(i) for i in group)
        for s in picked:
            live.set(s, -1)
        live.set(n + g, 1)
        slots.append(picked)
    return slots, [s for s, on in enumerate(live.flags) if on]
