"""The cached contraction plan of an MRF's exact queries: one per structure (cardinalities and scopes).

Each variable's unary term is folded into one factor that holds it (fewer operands, fewer steps), and the
pairwise order is found once per structure by ``opt_einsum``'s greedy order, searched further where it costs more
than :data:`SEARCH_ABOVE` flops per model [1], and cached (:class:`~hybridpgm.graphs.contraction.ContractionPlan`)
for :mod:`hybridpgm.infer.mrf_exact` and :mod:`hybridpgm.infer.mrf_entropy`.

**References**

[1] D. G. A. Smith, J. Gray, *opt_einsum - A Python package for optimizing contraction order for einsum-like
expressions*, 2018.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import math
from collections import OrderedDict

import numpy as np
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs.contraction import _LETTERS, ContractionPlan
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.infer.structure_cache import StructureCache
from hybridpgm.tensor_tracking import kept_by_a_cache

__all__ = ["SEARCH_ABOVE"]

#: the row (batch) dim of every operand
_ROWS = "\x00rows"

#: compiled structures kept (plans and fold indices), least recently used dropped first; also the verdicts kept in
#: :data:`_TOO_COSTLY`
_MAX_STRUCTURES = 64

#: the most operands the structures kept in :data:`_STRUCTURES` may have together (least recently used dropped
#: first; the newest is kept whatever its size): a plan keeps about 1.5 KiB of Python objects per operand (its
#: steps, the fold indices), so about 100 MiB; 64 structures of a 4x2000 grid's 14,000 operands took 1.3 GiB
_MAX_OPERANDS = 2**16

_STRUCTURES: OrderedDict = OrderedDict()

#: the min-degree width above which a model is refused before any search (:func:`_searched_plan`): 1.5 times the
#: dims one einsum step can name, past the widest gap measured between that order and the greedy one
_FAR_PAST = 3 * len(_LETTERS) // 2

#: flops per model of the greedy order above which the contraction order is also searched (:func:`_searched_plan`):
#: about a second of one CPU thread, so a search of seconds pays within a few calls; also the most that the
#: ``"auto"`` methods of ``MarkovNet.map_assignment`` and ``MarkovNet.sample`` spend on an exact contraction
SEARCH_ABOVE = 1e9


class _Structure:
    """What one factor-graph structure needs at every call: the plan, and where each unary is folded.

    Each variable's unary joins the first factor that holds it (``fold[g][i]``: ``[F_g]`` the variable folded in
    at argument ``i`` of each factor of group ``g``, or ``V``, a row of zeros); variables in no factor stay
    operands of their own (``alone``).
    """

    def __init__(self, cards: tuple, num_states: int, scopes: tuple, device, search: bool = True):
        V = len(cards)
        self.cards = cards
        host: dict = {}
        for g, group in enumerate(scopes):
            for f, scope in enumerate(group):
                for i, v in enumerate(scope):
                    host.setdefault(v, (g, f, i))
        self.fold = []
        for g, group in enumerate(scopes):
            arity = len(group[0])
            rows = [[V] * len(group) for _ in range(arity)]
            for v, (hg, f, i) in host.items():
                if hg == g:
                    rows[i][f] = v
            self.fold.append([torch.tensor(r, device=device) for r in rows])
        self.alone = [v for v in range(V) if v not in host]
        dims = [(_ROWS,) + tuple(scope) for group in scopes for scope in group]
        dims += [(_ROWS, v) for v in self.alone]
        sizes = {v: c for v, c in enumerate(cards)}
        sizes[_ROWS] = 1  # every operand carries the rows: the order found for one row is the order for any
        self.plan, self.greedy_flops = _searched_plan(dims, sizes, search)
        #: per group, the slices that drop padding states (``None`` when no variable of the group is padded)
        self.crop = [None if all(cards[v] == num_states for scope in group for v in scope)
                     else [tuple(slice(0, cards[v]) for v in scope) for scope in group] for group in scopes]
        self.log_states = sum(math.log(c) for c in cards)
        #: operands of the contraction, what :data:`_MAX_OPERANDS` counts
        self.operands = len(dims)


def _searched_plan(dims: list, sizes: dict, search: bool = True) -> tuple[ContractionPlan, int]:
    """opt_einsum's greedy order; for a contraction of more than :data:`SEARCH_ABOVE` flops per model (and
    ``search``), the better of it and a 128-trial random-greedy search's (:class:`ContractionPlan`'s ``"auto"``).
    The search takes seconds on grids of a few hundred factors (3 s at 12x12, 8 s at 20x20); it finds orders of 6
    times fewer flops on a 20x20 Ising grid, while on the grids up to 16x16 the greedy order runs about as fast
    (Python's cost per step dominates there) or needs fewer flops.  Returns the plan and the greedy order's flops
    per model, by which ``cheap_only`` callers decide, whether a search has run or not.

    A model whose min-degree elimination order needs a step over :data:`_FAR_PAST` dims, 1.5 times what one einsum
    step can name (:func:`_min_degree_width`), is refused before any order is searched: the greedy search on a grid
    far past that width took 5 s at 90x90, 143 s at 128x128 and did not end in 17 minutes at 256x256, only to be
    refused.  Under that margin the greedy order decides, as before: the min-degree order was up to 30 % wider than
    it on the grids measured, and one-state variables (which cost nothing but count as dims) can make it wider
    still (review: a 1,035-variable grid of one- to three-state variables, bound 54, greedy 51: planned).

    :raises ModelSpecError: when the min-degree order, or then the greedy order, needs such a step."""
    try:
        width = _min_degree_width(dims, _ROWS, _FAR_PAST)
        if width > _FAR_PAST:
            raise NotImplementedError(f"the min-degree elimination order has a step joining {width} dims, far more "
                                      f"than the {len(_LETTERS)} one contraction step can name")
        plan = ContractionPlan(dims, (_ROWS,), sizes, "greedy")
        greedy = _flops(plan)
        if search and greedy > SEARCH_ABOVE:
            searched = ContractionPlan(dims, (_ROWS,), sizes, "auto")
            plan = searched if searched.opt_cost < plan.opt_cost else plan
    except NotImplementedError as e:
        raise ModelSpecError(f"exact MRF inference over {len(sizes) - 1} variables: {e}; the model's treewidth is "
                             f"too large for exact contraction, use method='bp' or 'mean_field'") from None
    return plan, greedy


def _min_degree_width(dims: list, shared, limit: int) -> int:
    """The dims that the widest step of a min-degree elimination order joins, counted until one passes ``limit``.

    The variables are the nodes of the graph in which the variables of each operand (its dims but ``shared``, the
    row dim every operand holds) are joined pairwise.  Eliminating a variable :math:`v` of fewest neighbours
    :math:`N(v)` joins :math:`\\{v\\} \\cup N(v)` and ``shared``, then joins :math:`N(v)` pairwise (the fill);
    ties go to the lower variable.  The search stops at the first step over ``limit``, so each step costs at most
    :math:`O(\\mathrm{limit}^2)`: :math:`O(E + n \\log n)` for ``n`` variables and :math:`E` edges (a 256x256 grid
    in a few seconds).

    It is an upper bound on the treewidth, not a lower one: an order exists that is at least as narrow, and
    opt_einsum's greedy order is often narrower (by up to 30 % on grids; wider on random graphs), so a model this
    order refuses may have a greedy order within the limit, but none that an exact contraction can run: of the
    binary grids measured (up to 40x150), those it refuses and the greedy order would not have a greedy step of
    :math:`2^{42}` terms or more (a 28x150 grid; :math:`2^{51}` at 34x60).

    :param list dims: each operand's dims.
    :param shared: the dim every operand holds (counted once per step).
    :param int limit: the most dims a step may join.
    :returns: the widest step's dims, up to the first step over ``limit``.
    """
    extra = 1 if shared is not None else 0
    neighbours: dict = {}
    for scope in dims:
        scope = set(scope) - {shared}
        if len(scope) + extra > limit:  # an operand wider than a step: any order joins it whole
            return len(scope) + extra
        for v in scope:
            neighbours.setdefault(v, set()).update(scope)
    for v, near in neighbours.items():
        near.discard(v)
    heap = [(len(near), v) for v, near in neighbours.items()]
    heapq.heapify(heap)
    widest = 0
    while heap:
        degree, v = heapq.heappop(heap)
        near = neighbours.get(v)
        if near is None or len(near) != degree:  # eliminated, or its degree has changed since it was queued
            continue
        widest = max(widest, degree + 1 + extra)
        if widest > limit:
            break
        del neighbours[v]
        for u in near:
            other = neighbours[u]
            other.discard(v)
            other.update(near)
            other.discard(u)
            heapq.heappush(heap, (len(other), u))
    return widest


def _flops(plan: ContractionPlan) -> int:
    """opt_einsum's flop count per model (0 for a single operand)."""
    return getattr(plan, "opt_cost", 0)


#: a digest of the groups' ``variables`` tensors (:func:`_scopes_digest`), keyed by their identity and state (a
#: :class:`~hybridpgm.graphs.MarkovNet` keeps them from query to query): read to the host once per structure
_SCOPES = StructureCache(max_entries=16)

#: digests (:func:`_key`) of structures that a ``cheap_only`` call found too costly: the greedy order's flops per
#: model (``inf``: a treewidth beyond the contraction), compared with :data:`SEARCH_ABOVE` at each call; at most
#: :data:`_MAX_STRUCTURES`, of about 360 bytes each (key and value)
_TOO_COSTLY: OrderedDict = OrderedDict()


def _digest(what: str, tensors) -> bytes:
    """A BLAKE2b digest (32 bytes) of ``what`` and each tensor's shape and values as ``int64`` (an ``int32`` index
    and an ``int64`` one of the same values give the same digest, as equal Python ints did).  Two structures with
    the same digest are taken for the same: a collision needs about :math:`2^{128}` tries, so no plan of another
    structure is ever used.
    """
    h = hashlib.blake2b(what.encode(), digest_size=32)
    for t in tensors:
        h.update(repr(tuple(t.shape)).encode())
        h.update(_host_int64(t))
    return h.digest()


def _host_int64(t: torch.Tensor):
    """``t``'s values as a contiguous ``int64`` NumPy array on the host (no copy where ``t`` is one already)."""
    if t.device.type != "cpu" or t.dtype != torch.int64 or not t.is_contiguous():
        t = t.to("cpu", torch.int64).contiguous()
    try:
        return t.numpy()
    except (RuntimeError, TypeError):  # a torch.func wrapper, which has no NumPy view: its values as a list
        return np.asarray(t.tolist(), dtype=np.int64)


def _scopes_digest(fg: FactorGraph) -> bytes:
    """The digest of the groups' ``[F_g, k_g]`` scopes, in group order."""
    return _digest(f"scopes of {len(fg.groups)} groups", [g.variables for g in fg.groups])


def _key(fg: FactorGraph) -> tuple:
    """The content key of ``fg``'s structure: digests of the cardinalities and of the scopes (the scopes' read to
    the host and digest once per ``variables`` tensor, :data:`_SCOPES`), the states, the device.  A key is a few
    hundred bytes, whatever the size of the graph (a key holding each scope as Python ints took 6.5 MiB at 160x160
    and was kept after the network was gone)."""
    scopes = _SCOPES.get(tuple(g.variables for g in fg.groups), None, lambda: _scopes_digest(fg))
    return _digest("cardinalities", [fg.cardinalities]), fg.num_states, scopes, str(fg.unary.device)


def _host_scopes(fg: FactorGraph) -> tuple:
    """The groups' scopes as nested tuples of Python ints (read to the host: for a structure not yet cached)."""
    return tuple(tuple(map(tuple, g.variables.tolist())) for g in fg.groups)


def _structure(fg: FactorGraph, cheap_only: bool = False) -> _Structure | None:
    """The cached structure of ``fg`` (built, and its order searched, on first use); with ``cheap_only``, ``None``
    instead of a contraction whose greedy order takes more than :data:`SEARCH_ABOVE` flops per model (no search
    run, and only that verdict cached, so that a later full call still searches; the same verdict whether or not
    a search has run since) or of too large a treewidth."""
    key = _key(fg)
    s = _STRUCTURES.get(key)
    if s is None:
        if cheap_only and _TOO_COSTLY.get(key, 0.0) > SEARCH_ABOVE:
            with contextlib.suppress(KeyError):  # evicted by another thread since the read
                _TOO_COSTLY.move_to_end(key)
            return None
        try:
            with kept_by_a_cache():  # cached index tensors must stay usable by autograd, after a transform too
                s = _Structure(tuple(fg.cardinalities.tolist()), fg.num_states, _host_scopes(fg), fg.unary.device,
                               search=not cheap_only)
        except ModelSpecError:
            if cheap_only:
                _remember_too_costly(key, math.inf)
                return None
            raise
        if cheap_only and s.greedy_flops > SEARCH_ABOVE:
            _remember_too_costly(key, s.greedy_flops)
            return None
        _STRUCTURES[key] = s
        _drop_past_limits()
    else:
        with contextlib.suppress(KeyError):  # evicted by another thread since the read: the structure still holds
            _STRUCTURES.move_to_end(key)
        # the greedy order's cost, as for a structure not yet cached: "auto" must not change its choice because
        # an exact query has searched (and cached) a cheaper order since (review: 284.9 then 513.4 on one grid)
        if cheap_only and s.greedy_flops > SEARCH_ABOVE:
            return None
    return s


def _drop_past_limits() -> None:
    """Drop the least recently used structures while more than :data:`_MAX_STRUCTURES` are kept or they have more
    than :data:`_MAX_OPERANDS` operands together (the newest is kept whatever its size)."""
    total = sum(s.operands for s in list(_STRUCTURES.values()))
    while len(_STRUCTURES) > 1 and (len(_STRUCTURES) > _MAX_STRUCTURES or total > _MAX_OPERANDS):
        try:
            _, dropped = _STRUCTURES.popitem(last=False)
        except KeyError:  # emptied by another thread
            return
        total -= dropped.operands


def _remember_too_costly(key: tuple, flops: float) -> None:
    """Keep a ``cheap_only`` verdict (least recently used dropped past :data:`_MAX_STRUCTURES`)."""
    _TOO_COSTLY.pop(key, None)  # then set: a new key goes last, with no second lookup another thread could miss
    _TOO_COSTLY[key] = flops
    if len(_TOO_COSTLY) > _MAX_STRUCTURES:
        _TOO_COSTLY.popitem(last=False)
