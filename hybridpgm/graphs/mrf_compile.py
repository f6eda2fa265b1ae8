"""Compiling a :class:`~hybridpgm.graphs.MarkovNet` to its padded, batched :class:`FactorGraph`.

:func:`compile_factor_graph` evaluates every factor family's log-potentials
(``batch_shape + (F or 1,) + cards``), broadcasts them with the evidence to one batch shape
and flattens it to ``B`` models, then lays every model out in the padded form the inference
algorithms consume (``V`` variables, ``C`` the largest cardinality):

* ``unary`` ``[B, V, C]`` -- the sum of all one-variable log-potentials, zero-padded;
* ``valid`` ``[B, V, C]`` -- the states each variable may take: not a padding state
  (``c < card``), and the observed state only where the evidence observes the variable
  (``-1``, or NaN in a float tensor, leaves it unobserved in that batch entry; :func:`evidence_states`);
* one :class:`FactorGroup` per arity ``k >= 2``, every family of that arity stacked into
  ``[B, F] + [C] * k`` log-potentials (zero-padded) with their ``[F, k]`` variable indices;
* the cached proper colouring of the interaction graph (:meth:`MarkovNet.colors
  <hybridpgm.graphs.MarkovNet.colors>`).
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch

from hybridpgm.checks import torch_readable
from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph, FactorGroup
from hybridpgm.graphs.mrf_vmap import host_rows
from hybridpgm.meta_data import refuse_meta
from hybridpgm.train.deferred_checks import check_or_defer
from hybridpgm.tensor_tracking import held_storages, kept_by_a_cache, unversioned, value_key
from hybridpgm.transform_scope import under_vmap

if TYPE_CHECKING:
    from hybridpgm.graphs.markov_net import MarkovNet

__all__ = ["assignment_states", "compile_factor_graph", "evidence_states", "unknown_names"]


def _numbers(v: str, x, what: str) -> torch.Tensor:
    """``x`` (a tensor, a number, a nested sequence or array of numbers) as a tensor, or an
    :class:`EvidenceError` naming ``v`` and the value (a string, ``None``, a dict or another object is not a
    state)."""
    if isinstance(x, torch.Tensor):
        refuse_meta(x, f"{what}: the value of {v!r}")
        return x
    try:
        x = torch_readable(x, f"{what}: the value of {v!r}")
    except ValueError as error:  # a masked array with masked entries: its own message
        raise EvidenceError(str(error)) from None
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise EvidenceError(f"{what}: the value of {v!r} must be a state number or a tensor of states, got "
                            f"{type(x).__name__} {x!r:.60}") from None


def _first_at(bad: torch.Tensor) -> str:
    """Where the first (row-major) entry marked by ``bad`` lies: ``"the first in row i"`` (a 1-D tensor),
    ``"the first at index (i, j)"`` (more dims) or ``"a scalar"`` (0-d); a host read, for the error path only."""
    if bad.dim() == 0:
        return "a scalar"
    where = tuple(bad.nonzero()[0].tolist())
    return f"the first in row {where[0]}" if len(where) == 1 else f"the first at index {where}"


def _marker(dtype: torch.dtype) -> str:
    """The end of a message on refused evidence of ``dtype``: its missing markers, or that it has none (an
    unsigned integer or ``bool`` tensor cannot hold ``-1``, so none of its values means unobserved)."""
    if dtype.is_floating_point or dtype.is_signed:
        return "only -1 (or NaN in a float tensor) means unobserved"
    return f"dtype {dtype} has no marker for unobserved (-1 needs a signed integer or a float tensor)"


def _refused(v: str, t: torch.Tensor, card: int | None, dtype: torch.dtype) -> EvidenceError:
    """The error for evidence ``t`` (of the user's ``dtype``; long if that is an integer one) of ``v`` holding a
    value that is neither a state, ``-1`` nor ``NaN``: its non-integers first (``0.5``, ``-1.5``), else its values
    outside the states (another negative number, an infinity, too large a value).  The error path only: it reads
    the bad entries (every row of a ``vmap`` inside :func:`~hybridpgm.graphs.mrf_vmap.vmap_rows_read`, its row
    first)."""
    t = host_rows(t)
    floating = torch.is_floating_point(t)
    missing = (torch.isnan(t) | (t == -1)) if floating else (t == -1) & dtype.is_signed  # a uint8 255 is no -1
    fraction = torch.isfinite(t) & (t != t.round()) if floating else torch.zeros_like(missing)
    if bool(fraction.any()):
        return EvidenceError(f"MarkovNet: evidence for {v!r} holds non-integer values {t[fraction][:3].tolist()} "
                             f"({_first_at(fraction)}); give whole states, and -1 or NaN where unobserved")
    outside = ~missing & (((t < 0) | (t == math.inf)) if card is None else ((t < 0) | (t >= card)))  # +-inf too
    states = "0, 1, ..." if card is None else f"0..{card - 1}"
    return EvidenceError(f"MarkovNet: evidence for {v!r} has value(s) {t[outside][:3].tolist()} outside {states} "
                         f"({_first_at(outside)}); {_marker(dtype)}")


def evidence_states(v: str, t: torch.Tensor, card: int | None = None) -> torch.Tensor:
    """Evidence values as long states, ``-1`` where unobserved.

    The convention of BayesNet's evidence too: a state is a whole number ``0..card-1`` (an integer or bool
    tensor, or a float tensor of whole numbers); ``-1`` (in a signed integer or a float tensor) or ``NaN`` (float)
    means unobserved; an unsigned or ``bool`` tensor has no such marker.  Any other value is refused, never read
    as unobserved: a non-integer (``0.5``, ``-1.5``), or a value outside ``0..card-1`` -- another negative number
    (``-2``), an infinity (``-inf`` and ``+inf``: not states, whichever side), a value ``>= card`` (``+inf`` used
    to overflow the conversion to a negative number and so read as unobserved).

    The check is one host read of one flag (a compile reads the flags of all its evidence variables at once):
    integer evidence ``t`` passes when :math:`\\mathrm{clamp}(t, -1, \\mathrm{card} - 1) = t`; float evidence, with
    ``NaN`` set to ``-1`` first (:math:`u`), when :math:`\\mathrm{clamp}(\\mathrm{round}(u), -1, \\mathrm{card} - 1)
    = u` (a whole number in range, or ``-1``).  Only the error path reads the bad entries, to say which they are.

    :param card: the variable's cardinality; when given, an observed value ``>= card`` is refused.
    :raises EvidenceError: naming ``v``, the bad values and the row (index) of the first: a dtype that holds no
        states (complex), a non-integer float, or a value outside ``0..card-1`` other than ``-1`` (an infinity
        included).
    """
    states, ok, refusal = _checked_states(v, t, card)
    if not bool(ok):  # the one host read
        raise refusal()
    return states


def _checked_states(v: str, t: torch.Tensor, card: int | None) -> tuple[torch.Tensor, torch.Tensor, Callable]:
    """The device half of :func:`evidence_states`: ``(states, ok, refusal)``, ``ok`` a 0-d bool tensor (false: the
    values are refused, by ``refusal()``'s error; ``states`` is then meaningless).  Reads nothing.

    :raises EvidenceError: for a complex dtype (no read needed).
    """
    if t.is_complex():
        raise EvidenceError(f"MarkovNet: evidence for {v!r} has dtype {t.dtype}; give integer states, or a float "
                            f"tensor of whole states with -1 or NaN for unobserved")
    hi = None if card is None else card - 1
    if not torch.is_floating_point(t):
        states = t.long()  # before comparing with -1: a uint8 255 would equal it
        return states, (states.clamp(-1, hi) == states).all(), functools.partial(_refused, v, states, card, t.dtype)
    u = t.nan_to_num(-1.0, math.inf, -math.inf)  # NaN as the other marker; the infinities kept, to be refused
    if u.dtype in (torch.float16, torch.bfloat16):  # the bound card - 1 in float32: bfloat16 rounds 299 to 300
        u = u.float()
    good = u.round().clamp(-1, hi) == u
    if card is None:  # no upper bound to refuse +inf: an infinity is no state either
        good = good & (u < math.inf)
    refusal = functools.partial(_refused, v, t, card, t.dtype)
    if card is not None:
        return u.long(), good.all(), refusal  # whole numbers in -1..card-1 where ok: exact
    # clamp before the cast: a value too large for int64 (1e20) would wrap to a negative number.  The bound is the
    # dtype's own largest value where that is smaller (float16: 65504; 2**62 overflows it)
    return u.clamp_max(min(2.0 ** 62, torch.finfo(t.dtype).max)).long(), good.all(), refusal


def _evidence_states(mrf: MarkovNet, evidence: dict) -> dict:
    """``name -> long states`` of every variable in ``evidence`` (:func:`evidence_states`), the checks of all of
    them in one host read; of several refused variables, or a refused one before a name that is no variable, the
    first in ``evidence``'s order is named."""
    checked, failure = [], None
    try:
        for v in evidence:
            if v not in mrf.cards:
                raise EvidenceError(f"MarkovNet: evidence names unknown variable {v!r}")
            checked.append((v, *_checked_states(v, _numbers(v, evidence[v], "MarkovNet evidence"), mrf.cards[v])))
    except Exception as e:  # raised once the variables before it have passed their checks
        failure = e
    if len(checked) > 1:
        oks = [ok for _, _, ok, _ in checked]
        try:
            flags = torch.stack(oks)
        except RuntimeError:  # evidence on several devices (a Python number beside a CUDA tensor)
            flags = torch.stack([ok.to(oks[0].device) for ok in oks])
        passed = bool(host_rows(flags).all())  # the one host read (of every row of a vmap: mrf_vmap)
    else:
        passed = not checked or bool(host_rows(checked[0][2]).all())
    if not passed:  # error path: reads each flag
        raise next(refusal() for _, _, ok, refusal in checked if not bool(host_rows(ok).all()))
    if failure is not None:
        raise failure
    return {v: states for v, states, _, _ in checked}


def _colour_tensor(mrf: MarkovNet, device: torch.device) -> torch.Tensor:
    """:meth:`MarkovNet.colors <hybridpgm.graphs.MarkovNet.colors>` as a ``[V]`` long tensor on ``device``, the same
    tensor from call to call while the colouring and the device stay: the plans the samplers and mean field derive
    from it are cached by the tensor's identity (:class:`~hybridpgm.infer.structure_cache.StructureCache`).  Made
    with inference mode off (a tensor made inside it could not be saved for backward outside it)."""
    colours = mrf.colors()  # the net's cached list, a new list when its factors change
    kept = getattr(mrf, "_colour_tensor", None)
    if kept is None or kept[0] is not colours or kept[1].device != device:
        with kept_by_a_cache():
            kept = (colours, torch.tensor(colours, dtype=torch.long, device=device))
        mrf._colour_tensor = kept
    return kept[1]


def _card_tensor(mrf: MarkovNet, device: torch.device) -> tuple[torch.Tensor, int]:
    """``(cards, C)``: the variables' cardinalities as a ``[V]`` long tensor on ``device`` and the largest, ``C``.
    The tensor is uploaded once per network and device -- on CUDA each upload is a blocking host-to-device copy --
    and is the same from compile to compile while ``mrf.cards`` holds the same values (compared at each compile)
    and the kept tensor is unedited (each graph gets a copy of it: an edit of a graph's ``cardinalities`` changes
    neither the kept tensor nor another graph; the kept tensor itself is private, and checked as the other kept
    tensors are, by :func:`~hybridpgm.tensor_tracking.value_key` with its storage held).  Made with
    inference mode off and outside any transform (:func:`~hybridpgm.tensor_tracking.kept_by_a_cache`)."""
    cards = tuple(mrf.cards.values())
    kept = getattr(mrf, "_card_tensor", None)
    if kept is None or kept[0] != cards or kept[1].device != device or value_key(kept[1]) != kept[3]:
        with kept_by_a_cache():
            t = torch.tensor(cards, dtype=torch.long, device=device)
        kept = (cards, t, max(cards), value_key(t), held_storages((t,)))
        mrf._card_tensor = kept
    return kept[1], kept[2]


def unknown_names(what: str, names, cards: Mapping[str, int]) -> None:
    """Raise :class:`EvidenceError` for names that are not variables (pure Python: no host read)."""
    unknown = [v for v in names if v not in cards]
    if unknown:
        raise EvidenceError(f"{what}: values name unknown variable(s) {unknown}; the variables are {list(cards)}")


def assignment_states(v: str, x, card: int, what: str) -> torch.Tensor:
    """Observed values of ``v`` in a full assignment (:meth:`MarkovNet.score
    <hybridpgm.graphs.MarkovNet.score>`, :meth:`MarkovNet.model <hybridpgm.graphs.MarkovNet.model>`) as long
    states ``0..card-1``: an integer tensor, or a float tensor of whole numbers (as for evidence, but with no
    unobserved entries).

    The range check needs a host read; inside :func:`~hybridpgm.fit`'s step it is deferred to the step's one read
    (:func:`~hybridpgm.train.deferred_checks.check_or_defer`), and until then bad entries are read as state 0, so
    indexing with them cannot fail on the device.

    :param what: the caller, as the message names it (``"MarkovNet.score"``).
    :raises EvidenceError: naming ``v``, the dtype and the bad values: a complex dtype, or a value that is not a
        whole number in ``0..card-1`` (NaN, infinities, negative numbers included); or naming ``v`` and the
        value: a non-number (a string, ``None``, a dict or another object).
    """
    x = _numbers(v, x, what)
    if x.is_complex():
        raise EvidenceError(f"{what}: the values of {v!r} have dtype {x.dtype}; give integer states 0..{card - 1}")
    ok = (x >= 0) & (x < card)
    if torch.is_floating_point(x):
        ok &= x == x.round()  # NaN fails every comparison

    def error():
        return EvidenceError(f"{what}: the values of {v!r} ({x.dtype}) hold {x[~ok][:3].tolist()}, which are not "
                             f"states 0..{card - 1}; give integer states, or a float tensor of whole states")

    check_or_defer(ok.all(), error, f"{what}: the values of {v!r} hold values that are not states 0..{card - 1}",
                   EvidenceError)
    return torch.where(ok, x, torch.zeros((), dtype=x.dtype, device=x.device)).long()


#: per network: ``(arity, device) -> (scope buffers, their keys, [F, k] variables, its key, the storages read)``
#: (keys: :func:`~hybridpgm.tensor_tracking.value_key`).  Weak keys: what a network compiled goes with it
_GROUP_VARIABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _group_variables(mrf: MarkovNet, k: int, scopes: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The ``[F, k]`` variable indices of the arity-``k`` group: the families' scope buffers ``[F_i, k]`` stacked
    and moved to ``device``, as the *same* tensor at every compile of ``mrf`` while those buffers are unchanged
    and while the kept tensor itself is unedited: a caller's edit of a compiled graph's ``variables`` (never the
    network's buffer: even one family's is a copy), in place or by ``variables.data = other``, builds a fresh one.
    "Unchanged" is :func:`~hybridpgm.tensor_tracking.value_key` (version, data pointer, shape, strides, dtype) of
    each tensor, the entry holding the storages it read (:func:`~hybridpgm.tensor_tracking.held_storages`): a
    version alone missed ``.data =``, which moves no counter (a scope buffer replaced so compiled to the old
    scopes, an edit of one graph's ``variables`` reached every later compile).

    The structures the inference engines cache per ``variables`` tensor
    (:func:`hybridpgm.infer.bp_engine._structure`) are then built once per network, not once per query.
    """
    if any(unversioned(s) for s in scopes):  # no version counter to check (a net built under a transform or in
        return torch.cat([s.to(device) for s in scopes])  # inference mode)
    keys = tuple(map(value_key, scopes))
    cached = _GROUP_VARIABLES.get(mrf, {})
    hit = cached.get((k, str(device)))
    if hit is not None and len(hit[0]) == len(scopes) and all(a is b for a, b in zip(hit[0], scopes)) \
            and hit[1] == keys and value_key(hit[2]) == hit[3]:
        return hit[2]
    with kept_by_a_cache():  # the kept tensor must stay usable outside inference mode and after a transform
        variables = torch.cat([s.to(device) for s in scopes])
    cached[(k, str(device))] = (tuple(scopes), keys, variables, value_key(variables),
                                held_storages((*scopes, variables)))
    _GROUP_VARIABLES[mrf] = cached
    return variables


def _check_evidence_rows(evidence: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`EvidenceError` naming each variable and its rows where the evidence tensors' batch shapes do
    not broadcast together (:class:`~hybridpgm.graphs.BayesNet` refuses rows of different lengths alike)."""
    if len(evidence) < 2:  # nothing to compare (and torch.broadcast_shapes() of nothing fails under a JIT trace)
        return
    try:
        torch.broadcast_shapes(*(e.shape for e in evidence.values()))
    except RuntimeError as e:
        rows = {v: (t.shape[0] if t.dim() == 1 else tuple(t.shape)) for v, t in evidence.items()}
        raise EvidenceError(f"MarkovNet: evidence rows differ in length (their batch shapes do not broadcast "
                            f"together): {rows}") from e


def compile_factor_graph(mrf: MarkovNet, evidence: Mapping[str, torch.Tensor] | None = None,
                         context=None, tables: Mapping[str, torch.Tensor] | None = None) -> FactorGraph:
    """Compile ``mrf`` to a padded, batched :class:`FactorGraph` (what
    :meth:`MarkovNet.factor_graph <hybridpgm.graphs.MarkovNet.factor_graph>` returns).

    :param evidence: ``name -> LongTensor`` broadcastable to a batch shape;
        ``-1`` (or NaN in a float tensor) means "unobserved" in that batch entry; any other negative value is
        refused (:func:`evidence_states`).
    :param context: passed to neural potentials.
    :param tables: the families' log-potentials, already evaluated (:meth:`MarkovNet.tables
        <hybridpgm.graphs.MarkovNet.tables>` of ``context``): a caller that also scores values passes the tables
        it scores with, so the networks run once and the score and :math:`\\log Z` come from one forward pass
        (one dropout mask, one batch-norm update).  ``None`` evaluates them here.
    :raises EvidenceError: evidence that is not a mapping, names an unknown variable, holds a
        non-number (a string, ``None``, a dict or another object; the message names the variable and the
        value), a non-integer value or a state outside ``0..card-1`` (``-inf``, ``+inf`` and negative values
        other than ``-1`` included; the message names the variable, the values and the first one's row).
        A batch shape holding no model (evidence or tables of 0 rows) compiles to a graph of ``B = 0`` rows, whose
        queries answer empty results of that batch shape, as :class:`~hybridpgm.graphs.BayesNet`'s do.
    :raises EvidenceError: also evidence whose variables' batch shapes do not broadcast together (rows of
        different lengths), naming each variable and its length (its shape when not one-dimensional).
    :raises ModelSpecError: batch shapes of the factors (and of the factors with the evidence) that do not
        broadcast, or a network of no variables (there is nothing to infer; every query of
        :class:`~hybridpgm.graphs.MarkovNet` refuses it).
    """
    if not mrf.cards:
        raise ModelSpecError("MarkovNet: the network has no variables, so there is nothing to infer or sample; "
                             "declare at least one, e.g. MarkovNet({'a': 2})")
    if tables is None:
        tables = mrf.tables(context)
    if evidence is not None and not isinstance(evidence, Mapping):
        raise EvidenceError(f"MarkovNet: evidence must be a mapping name -> values, got {type(evidence).__name__} "
                            f"{evidence!r:.60}")
    evidence = _evidence_states(mrf, dict(evidence or {}))
    _check_evidence_rows(evidence)
    shapes = [t.shape[: t.dim() - len(mrf.families[n]["cards"]) - 1] for n, t in tables.items()]
    shapes += [e.shape for e in evidence.values()]
    try:
        batch_shape = torch.broadcast_shapes(*shapes) if shapes else torch.Size()
    except RuntimeError as e:
        raise ModelSpecError(f"MarkovNet: batch shapes of factors/evidence do not broadcast: {shapes}") from e
    ref = next(iter(tables.values()), None)
    dtype = torch.get_default_dtype() if ref is None else ref.dtype
    for t in tables.values():
        dtype = torch.promote_types(dtype, t.dtype)
    device = ref.device if ref is not None else torch.device("cpu")
    B, V = batch_shape.numel(), len(mrf.cards)
    card_t, C = _card_tensor(mrf, device)
    valid = (torch.arange(C, device=device) < card_t[:, None]).expand(B, V, C)
    if evidence:
        obs = {}
        for v, val in evidence.items():
            val = val.to(device).expand(batch_shape).reshape(B)  # states checked by evidence_states
            obs[mrf._index[v]] = torch.nn.functional.one_hot(val.clamp_min(0), C).bool() | (val < 0)[:, None]
        if under_vmap():  # out of place: the evidence's rows are batched, the mask of the cards is not
            index = torch.tensor(list(obs), device=device)
            valid = valid.index_copy(1, index, valid[:, index] & torch.stack(list(obs.values()), 1))
        else:  # in place, indexed by Python ints: no index upload
            valid = valid.clone()
            for i, o in obs.items():
                valid[:, i] &= o
    unary = torch.zeros(B, V, C, dtype=dtype, device=device)
    by_arity: dict[int, list] = {}
    for name, t in tables.items():
        fam = mrf.families[name]
        k, F = len(fam["cards"]), len(fam["scopes"])
        t = t.to(dtype).expand(batch_shape + (F,) + fam["cards"]).reshape((B, F) + fam["cards"])
        pad = []
        for c in reversed(fam["cards"]):
            pad += [0, C - c]
        if any(pad):
            t = torch.nn.functional.pad(t, pad)
        scope = getattr(mrf, fam["scope_key"])
        if k == 1:
            unary = unary.index_add(1, scope.to(device)[:, 0], t)  # a module-held potential may sit elsewhere
        else:
            by_arity.setdefault(k, []).append((scope, t))
    groups = [FactorGroup(_group_variables(mrf, k, [i for i, _ in g], device), torch.cat([t for _, t in g], dim=1))
              for k, g in sorted(by_arity.items())]
    colors = _colour_tensor(mrf, device)
    # a copy per graph (a device-side copy, no upload): an edit of one graph's cardinalities changes no other graph
    return FactorGraph(list(mrf.cards), card_t.clone(), unary, valid, groups, colors, batch_shape)
