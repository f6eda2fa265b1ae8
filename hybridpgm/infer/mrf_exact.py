"""Exact log-partition function, marginals and samples of a discrete MRF by tensor contraction.

The log-partition function

.. math::

    \\log Z_b = \\log \\sum_x \\exp\\Big(\\sum_v \\theta_{b,v}(x_v) + \\sum_f \\theta_{b,f}(x_f)\\Big)

of each model ``b`` of a batch is one contraction over all factors, so the cost
is exponential only in the treewidth of the elimination order found.  Each
variable's unary term is first folded into one factor that holds it (fewer
operands, fewer steps), and the pairwise order is searched once per structure
by ``opt_einsum`` [2] and cached (:class:`~hybridpgm.graphs.contraction.ContractionPlan`;
:mod:`hybridpgm.infer.mrf_plan`; the operands and the probability space: :mod:`hybridpgm.infer.mrf_operands`).

**Probability space.**  Float64 and float32 models are contracted on
max-shifted potentials :math:`\\tilde\\phi_{b,f} = \\exp(\\theta_{b,f} - m_{b,f})`,
:math:`m_{b,f} = \\max_{x_f} \\theta_{b,f}(x_f)` (held constant), one batched
matmul per step, and :math:`\\log Z_b = \\log \\tilde Z_b + \\sum_f m_{b,f}`.
Every shifted entry is at most one, so an intermediate entry that underflows the
dtype's smallest normal number :math:`t` costs :math:`\\tilde Z_b` at most about
:math:`t\\,S`, :math:`S = \\prod_v |v|` the joint states.  A model whose
:math:`\\tilde Z_b` falls below :func:`probability_floor` (frustrated couplings
far from every factor's maximum), or overflows, is contracted again, alone, in log
space (max-shifted log-sum-exp per step, as Pyro's ``torch_log`` einsum); the
other models of the batch keep their probability-space answers.  Float32 models of
more than about :math:`10^{16}` joint states are contracted in float64
(:func:`probability_dtype`); other dtypes use log space throughout.

**Log space** (and the max-sum of MAP) runs on max-shifted operands :math:`\\theta_{b,f} - m_{b,f}`, each step's
output less its per-model maximum, the maxima summed in float64 and added back
(:mod:`hybridpgm.infer.mrf_log_space`): no float32 intermediate carries the running sum of the scores.

The most probable state (:func:`exact_map`) is the max-sum contraction on the same plan, back-tracked by its
gradient [3].  Marginals are the gradient of :math:`\\log Z` with respect to the unary
log-potentials [1] (computed with ``create_graph`` when the potentials require
gradients, so they stay differentiable).  Exact samples (:func:`exact_sample`, re-exported from
:mod:`hybridpgm.infer.mrf_exact_sample`) come from one contraction on the same plan and backward sampling along its
steps [3] (:mod:`hybridpgm.graphs.plan_sampling`).

**Batches.**  Each model's answer comes from its own tables alone.  A batch whose largest intermediate exceeds
:data:`EXACT_MAX_BYTES` while one model's fits is contracted in chunks of rows that fit
(:func:`~hybridpgm.infer.mrf_rows.in_row_chunks`), so a model's :math:`\\log Z`, marginals, MAP state and the law
of its samples (and its entropy, :func:`~hybridpgm.infer.mrf_entropy.exact_entropy`) do not depend on the batch; a
batch that fits runs as one contraction, as before (:func:`~hybridpgm.infer.mrf_rows.by_rows`).  Only where a
gradient must flow back through the whole batch (:func:`exact_log_partition`, :func:`exact_marginals` and the
entropy of potentials that require one, with autograd on in the caller: not under ``torch.no_grad()`` or
``torch.inference_mode()``; autograd would keep every chunk's intermediates) must the batch fit (or it raises).

**References**

[1] M. J. Wainwright, M. I. Jordan, *Graphical Models, Exponential Families,
and Variational Inference*, 2008.

[2] D. G. A. Smith, J. Gray, *opt_einsum - A Python package for optimizing
contraction order for einsum-like expressions*, 2018.

[3] F. Obermeyer et al., *Tensor Variable Elimination for Plated Factor Graphs*, 2019.
"""


from __future__ import annotations

import math

import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.tiny_ratio import tiny_log
from hybridpgm.autograd_scope import with_autograd
from hybridpgm.compile_scope import eagerly
from hybridpgm.infer.mrf_exact_sample import _sample, exact_sample  # noqa: F401 (re-exported)
from hybridpgm.infer.mrf_log_space import log_space_contract
from hybridpgm.infer.mrf_operands import (_exactly, _folded, _prob_contract, _with_potentials, probability_dtype,
                                          probability_floor)
from hybridpgm.infer.mrf_possible import _check_possible  # noqa: F401 (re-exported)
from hybridpgm.infer.mrf_plan import _STRUCTURES, SEARCH_ABOVE, _Structure, _structure  # noqa: F401 (re-exported)
from hybridpgm.infer.mrf_rows import by_rows, carries_tangents, model_bytes, needs_graph
from hybridpgm.precision_scope import exact_precision
from hybridpgm.tensor_tracking import without_graph

__all__ = ["EXACT_MAP_MAX_WORK", "EXACT_MAX_BYTES", "SEARCH_ABOVE", "exact_is_cheap", "exact_log_partition",
           "exact_map", "exact_map_work", "exact_marginals", "exact_sample", "probability_dtype", "probability_floor"]

#: bytes the largest intermediate of one exact contraction may take (all models of the contraction together): a
#: batch beyond it runs in chunks of rows that fit (:func:`_rows_per_call`); one model beyond it raises
#: :class:`~hybridpgm.errors.ModelSpecError` before contracting (a 26x26 binary grid needs 8 GiB per model) instead
#: of exhausting the memory.  Raise it on a machine that has the memory.  It bounds the largest intermediate, not
#: the peak: a contraction's peak memory was measured at 3 to 31 times it (log Z to MAP).
EXACT_MAX_BYTES = 4 * 2**30

#: element operations per model the max-sum contraction of :func:`exact_map` (``map_assignment(method="exact")``)
#: may take (:func:`exact_map_work`); a model beyond it raises :class:`~hybridpgm.errors.ModelSpecError` before
#: contracting.  The max-sum steps run at about 10^8 operations a second on one CPU thread (a 20x20 binary
#: grid's 4.6e9 took 39 s; a 22x22 grid's 5.5e10, which fits in memory, would take minutes), so 1e10 is about a
#: minute and a half.  It is far above :data:`SEARCH_ABOVE` flops, so the models ``"auto"`` gives the exact
#: contraction are never refused.  Raise it to wait for a larger model.
EXACT_MAP_MAX_WORK = 1e10


def _fitting(st: _Structure, models: int, dtype: torch.dtype) -> _Structure:
    """``st``, after checking that its largest intermediate for ``models`` models of ``dtype`` fits
    :data:`EXACT_MAX_BYTES` (:class:`ModelSpecError` naming its size otherwise, and what is too large: one model's
    contraction for ``models=1``, else the whole batch that a gradient needs as one contraction)."""
    need = model_bytes(st.plan, dtype) * models
    if need > EXACT_MAX_BYTES:
        elements = getattr(st.plan, "largest_intermediate", 0) * models
        if models == 1:
            why = ("one model's contraction alone is over the limit, so no batch size (and no torch.no_grad()) helps; "
                   "use an approximate method (method='bp' or 'mean_field'; for samples 'gibbs'), or raise the limit")
        else:
            why = (f"one model fits ({need / models / 2**30:.3g} GiB), but this query differentiates through the whole "
                   f"batch (log Z, marginals or entropy of potentials that require a gradient, autograd on), so it is "
                   f"one contraction, not chunks of rows; run it under torch.no_grad() (chunks of rows) where no "
                   f"gradient is needed, pass fewer models per call, use method='bp' or 'mean_field', or raise the "
                   f"limit")
        raise ModelSpecError(f"exact MRF inference over {len(st.cards)} variables needs an intermediate of "
                             f"{elements:.3g} elements ({need / 2**30:.3g} GiB for {models} model(s)), more than "
                             f"hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES ({EXACT_MAX_BYTES / 2**30:.3g} GiB); {why}")
    return st


def _rows_per_call(st: _Structure, models: int, dtype: torch.dtype, whole: bool = False) -> int:
    """How many of ``models`` rows one contraction takes: all where they fit :data:`EXACT_MAX_BYTES`, else as many
    as fit (:class:`ModelSpecError` where one model does not fit, checked first, or, with ``whole``: a gradient
    through the whole batch, where the batch does not)."""
    per_model = model_bytes(st.plan, dtype)
    if per_model * models <= EXACT_MAX_BYTES:
        return models
    _fitting(st, 1, dtype)
    if whole:
        _fitting(st, models, dtype)
    return EXACT_MAX_BYTES // per_model


def exact_map_work(fg: FactorGraph, st: _Structure | None = None) -> int:
    """Element operations per model of the max-sum contraction of :func:`exact_map`, from the cached plan alone.

    A max-sum step over operands :math:`a_1, \\dots, a_k` forms the broadcast sum over the union :math:`U` of
    their dims and maximises it over the dims it sums out (:func:`~hybridpgm.graphs.contraction_steps.max_sum`):
    :math:`k \\prod_{d \\in U} |d|` operations (:math:`k - 1` additions and a comparison per term); the work is
    the sum over the plan's steps: ``opt_einsum``'s cost of the same path.

    :param FactorGraph fg: the model (its structure is built and cached if it is not yet).
    :param st: its structure, where the caller has it.
    :returns: the operations for one model of the batch.
    """
    st = _structure(fg) if st is None else st
    cards = st.cards
    work = 0
    for _, ins, *_ in st.plan.steps:
        union = {d for dims in ins for d in dims}
        work += len(ins) * math.prod(cards[d] for d in union if isinstance(d, int))
    return work


def _map_fitting(st: _Structure, fg: FactorGraph) -> _Structure:
    """``st``, after checking that the max-sum contraction of one model takes at most :data:`EXACT_MAP_MAX_WORK`
    element operations (:class:`ModelSpecError` naming the estimate, the limit and the remedies otherwise)."""
    work = exact_map_work(fg, st)
    if work > EXACT_MAP_MAX_WORK:
        raise ModelSpecError(f"exact MAP over {len(st.cards)} variables needs about {work:.3g} element operations "
                             f"per model (max-sum contraction), more than "
                             f"hybridpgm.infer.mrf_exact.EXACT_MAP_MAX_WORK ({EXACT_MAP_MAX_WORK:.3g}: minutes of "
                             f"one CPU thread); use map_assignment(method='bp') or method='auto' (max-product BP), "
                             f"or raise EXACT_MAP_MAX_WORK to wait for it")
    return st


def _log_partition(fg: FactorGraph, unary: torch.Tensor, query: str | None = None, twice: bool = True) -> torch.Tensor:
    """``[B]`` :math:`\\log Z` of every model; with ``query`` (the caller, as an error names it), also
    :func:`_check_possible`: a model whose :math:`\\log Z` is :math:`-\\infty` raises.  A probability-space batch
    whose every :math:`\\tilde Z_b` and shift is in range (the one host read of that fast path) has only finite
    :math:`\\log Z_b` and is not checked again; where the contraction ran in log space (which reads once per
    underflow test of a step already), the check is one more read, deferred inside :func:`~hybridpgm.fit`'s step.

    Under autocast it runs in at least float32 (:class:`~hybridpgm.precision_scope.exact_precision`; ``unary`` may
    differ from ``fg.unary``, e.g. offset for marginals), and returns that dtype.  With ``twice`` (the result's
    gradient may be differentiated again) the log of a probability-space :math:`\\tilde Z` keeps its derivatives
    finite at every order (:func:`~hybridpgm.graphs.tiny_ratio.tiny_log`: a Hessian of :math:`\\log Z` divides by
    :math:`\\tilde Z^2` otherwise, infinite under :math:`10^{-154}`); without, the plain log, four operations
    fewer."""
    with exact_precision(unary, *[g.log_potentials for g in fg.groups]) as (unary, *pots):
        return _log_partition_exact(_with_potentials(fg, fg.unary, pots), unary, query, twice)


def _log_partition_exact(fg: FactorGraph, unary: torch.Tensor, query: str | None, twice: bool = True) -> torch.Tensor:
    """:func:`_log_partition` in the dtype of ``unary`` (and the potentials), the autocast state as it is; in chunks
    of rows where the batch does not fit :data:`EXACT_MAX_BYTES` and no gradient is asked for."""
    st = _structure(fg)
    rows = _rows_per_call(st, fg.batch_size, unary.dtype, needs_graph(fg, unary))
    return by_rows(fg, rows, lambda sub, r, q: (_log_partition_rows(sub, st, unary[r], q, twice),), (0,), query)[0]


def _log_partition_rows(fg: FactorGraph, st: _Structure, unary: torch.Tensor, query: str | None,
                        twice: bool = True) -> torch.Tensor:
    """:func:`_log_partition_exact` of a batch that fits, as one contraction (``twice``: as for
    :func:`_log_partition`)."""
    stacks, alone = _folded(fg, st, unary)
    work = probability_dtype(unary.dtype, st.log_states)
    if work is None:
        log_z = log_space_contract(st, stacks, alone, "log")
        _check_possible(fg, log_z, query)
        return log_z
    z, shift = _prob_contract(st, [t.to(work) for t in stacks], [t.to(work) for t in alone])
    # a shift of -inf (the maxima of the factors summing past the dtype's range) is redone, and checked, too
    ok = (z.detach() > probability_floor(work, st.log_states)) & (z.detach() < math.inf) & (shift.detach() > -math.inf)
    log_z = ((tiny_log if twice else torch.log)(torch.where(ok, z, torch.ones_like(z))) + shift).to(unary.dtype)
    if bool(ok.all()):
        return log_z
    bad = (~ok).nonzero().flatten()
    again = log_space_contract(st, [t.index_select(0, bad) for t in stacks], [t.index_select(0, bad) for t in alone],
                               "log")
    log_z = log_z.index_copy(0, bad, again)
    _check_possible(fg, log_z, query)
    return log_z


def exact_log_partition(fg: FactorGraph) -> torch.Tensor:
    """Exact :math:`\\log Z` (restricted to the valid states, i.e. given evidence).

    Under :func:`torch.autocast` (``fit(precision="bf16"/"fp16")``) the contraction runs, and returns, in at
    least float32 (:class:`~hybridpgm.precision_scope.exact_precision`), as do :func:`exact_marginals`,
    :func:`exact_map` and :func:`exact_sample`; outside autocast, in the potentials' dtype.

    A batch over :data:`EXACT_MAX_BYTES` runs in chunks of rows (module docstring, **Batches**) unless the
    potentials require a gradient and autograd is on; then it raises :class:`ModelSpecError`, as one model over it does.

    :param FactorGraph fg: the model, batch size ``B``.
    :returns: ``[B]`` log-partition values.
    """
    return _log_partition(fg, fg.unary)


def exact_marginals(fg: FactorGraph) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact :math:`\\log Z` and single-variable marginals.

    :math:`p(x_v = c) = \\partial \\log Z / \\partial \\theta_v(c)`.

    Works under :func:`torch.no_grad` and :func:`torch.inference_mode` too (the gradient is taken with
    :func:`~hybridpgm.autograd_scope.with_autograd`; the results there carry no graph).  A batch over
    :data:`EXACT_MAX_BYTES` runs in chunks of rows where the potentials require no gradient or autograd is off in
    the caller, and raises as :func:`exact_log_partition` otherwise.  A forward-mode tangent of the potentials
    (:func:`torch.func.jvp`, :func:`torch.func.jacfwd`, a :mod:`torch.autograd.forward_ad` dual; no
    ``requires_grad``) reaches both results, in chunks too.

    :param FactorGraph fg: the model, batch size ``B``.
    :returns: ``(log_z [B], marginals [B, V, C])`` with zeros at invalid states.
    :raises EvidenceError: when the evidence of a model has probability zero (:math:`\\log Z_b = -\\infty`:
        every assignment it allows scores :math:`-\\infty`), naming the model and its evidence.
    """
    whole = needs_graph(fg, fg.unary)  # in the caller's grad mode: with_autograd turns it on
    return _exactly(lambda g: with_autograd(_marginals, g, whole), fg)


def _marginals(fg: FactorGraph, whole: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`exact_marginals` with autograd on; differentiable, as one contraction, where ``whole`` (the caller's
    autograd on and the potentials requiring a gradient), else in chunks of rows where the batch does not fit
    :data:`EXACT_MAX_BYTES`."""
    rows = _rows_per_call(_structure(fg), fg.batch_size, fg.unary.dtype, whole)
    return by_rows(fg, rows, lambda sub, _, query: _marginals_rows(sub, whole, query), (0, 0), "exact marginals")


def _marginals_rows(fg: FactorGraph, create_graph: bool, query: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_z, marginals)`` of the rows of ``fg``; with ``create_graph`` (differentiable marginals) always run
    eagerly (:func:`_differentiable_marginals_rows`)."""
    if create_graph:
        return _differentiable_marginals_rows(fg, query)
    return _gradient_of_log_z(fg, False, query)


def _differentiable_marginals_rows(fg: FactorGraph, query: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_gradient_of_log_z` with ``create_graph``, outside ``torch.compile`` (a graph break; the contraction
    runs eagerly: :func:`~hybridpgm.compile_scope.eagerly`).  Compiled with AOT autograd (``aot_eager``,
    ``inductor``), the gradient of a compiled :math:`\\log Z` with ``create_graph`` raised torch's "a leaf
    Variable that requires grad is being used in an in-place operation" (AOT's backward copies the stride-0
    tangent of ``log_z.sum()``), and with a dense tangent instead the marginals came back with no path to the
    tables (their gradients ``None``): AOT autograd's backward is not differentiable again.  Eagerly, both
    hold (``tests/infer/test_mrf_exact_compile.py``)."""
    return eagerly(_gradient_of_log_z)(fg, True, query)


def _gradient_of_log_z(fg: FactorGraph, create_graph: bool, query: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    delta = torch.zeros_like(fg.unary, requires_grad=True)
    tangent = carries_tangents(fg, fg.unary)  # forward mode differentiates the log's derivative too
    log_z = _log_partition(fg, fg.unary + delta, query, create_graph or tangent)
    (marg,) = torch.autograd.grad(log_z.sum(), delta, create_graph=create_graph)
    return (log_z if create_graph else without_graph(log_z)), marg  # a forward-mode tangent stays


def exact_map(fg: FactorGraph) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable state :math:`\\arg\\max_x \\sum_f \\theta_f(x_f)` of each model (given evidence), exactly.

    The max-sum semiring on the same cached plan; the gradient of the maximum with respect to zero offsets of
    the unaries is one-hot at the maximising state of every variable (back-propagating through each step's
    maximum back-tracks the argmax, as Viterbi does [3]).  Ties go to the lowest state index a step compares.

    Works under :func:`torch.no_grad` and :func:`torch.inference_mode` too (the back-tracking gradient is taken
    with :func:`~hybridpgm.autograd_scope.with_autograd`).  A batch over :data:`EXACT_MAX_BYTES` is contracted and
    back-tracked a chunk of rows at a time, with the same answer per row.

    :param FactorGraph fg: the model, batch size ``B``.
    :returns: ``(assignment [B, V] long, max score [B])``.
    :raises EvidenceError: when every assignment the evidence of a model allows scores :math:`-\\infty`, naming
        the model and its evidence (checked at the step's one host read inside :func:`~hybridpgm.fit`).
    :raises ModelSpecError: before contracting, when one model's largest intermediate is over
        :data:`EXACT_MAX_BYTES` or the max-sum work per model (:func:`exact_map_work`) over :data:`EXACT_MAP_MAX_WORK`.
    """
    return _exactly(_map_exact, fg)


def _map_exact(fg: FactorGraph) -> tuple[torch.Tensor, torch.Tensor]:
    st = _structure(fg)
    rows = _rows_per_call(st, fg.batch_size, fg.unary.dtype)
    _map_fitting(st, fg)
    # in chunks, each back-tracked (and its autograd graph freed) before the next
    return by_rows(fg, rows, lambda sub, _, query: with_autograd(_map, sub, st, query), (0, 0), "exact MAP", 1)


def _map(fg: FactorGraph, st: _Structure, query: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    delta = torch.zeros_like(fg.unary, requires_grad=True)
    best = log_space_contract(st, *_folded(fg, st, fg.unary.detach() + delta), "max")
    (onehot,) = torch.autograd.grad(best.sum(), delta)
    _check_possible(fg, best, query)
    return onehot.argmax(-1), best.detach()


def exact_is_cheap(fg: FactorGraph) -> bool:
    """Whether an exact contraction of one model of ``fg`` costs at most :data:`SEARCH_ABOVE` flops (about a second
    of one CPU thread), fits :data:`EXACT_MAX_BYTES` and (implied at the default limits) takes at most
    :data:`EXACT_MAP_MAX_WORK` max-sum operations: what the ``"auto"`` methods of ``MarkovNet.map_assignment`` and
    ``MarkovNet.sample`` ask, so ``"auto"`` never picks an exact query that refuses.  It depends on the model
    alone, not on the batch size: a batch over the memory limit runs in chunks of rows.  Finding out costs a
    greedy order at most (no search); a cheap structure is cached for the contraction."""
    st = _structure(fg, cheap_only=True)
    if st is None:
        return False
    try:
        _map_fitting(_fitting(st, 1, fg.unary.dtype), fg)
    except ModelSpecError:
        return False
    return True
