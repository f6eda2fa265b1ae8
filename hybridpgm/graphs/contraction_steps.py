"""The kernels of one pairwise step of a :class:`~hybridpgm.graphs.contraction.ContractionPlan`.

A step contracts two operands (rarely one) over named dims, in one of three semirings:

* ``"log"`` -- :func:`log_einsum`, :math:`\\log \\sum \\prod_i e^{a_i}`: each operand ``a_i`` is shifted by
  its maximum over the dims the step sums out (laid out by :func:`shift_plan`), exponentiated, contracted by
  ``torch.einsum`` and taken back to log space by :func:`zero_safe_log` (:class:`LogOfSum`: exact gradient
  :math:`1/x`, zero for an impossible configuration; ordinary operations in forward mode), then the shifts are
  added back: the computation of :func:`pyro.ops.einsum.torch_log.einsum` with its bookkeeping precomputed once
  per step, except that the entries whose shifted sum underflows (operands peaking on different terms) are
  redone exactly, in blocks of at most :data:`MAX_SUM_CHUNK_ELEMENTS` terms (or the step's output size), by
  :mod:`hybridpgm.graphs.underflow_redo` (which also holds :func:`shifted_logsumexp`, re-exported here);
* ``"prob"`` -- :func:`pair_product`, the probability-space product of two operands as one ``torch.bmm``,
  :math:`C_{b,l,r} = \\sum_k A_{b,l,k} B_{b,k,r}`, after summing out the dims only one operand holds;
  :func:`pair_plan` orders the result ``batch + left + right`` as the matmul returns it, so the larger operand
  ``A`` is not copied when its dims are already grouped that way (an outer product, ``k`` empty, is a
  broadcast multiply);
* ``"max"`` -- :func:`max_sum`, the maximum over the summed-out dims of the broadcast sum of the operands
  (MAP; back-propagating through it recovers the argmax), found block by block so that the step holds about as
  much memory as its output (:data:`MAX_SUM_CHUNK_ELEMENTS`), not the whole broadcast sum.

Within a :class:`~hybridpgm.graphs.row_shifts.RowShifts` scope, the ``"log"`` and ``"max"`` steps of its plan
return their outputs less their per-row maxima, kept in float64 (the MRF's log-space queries and backward
sampling: a float32 intermediate then never carries the running sum of the scores).

:class:`~hybridpgm.graphs.contraction.ContractionPlan` precomputes :func:`pair_plan` and :func:`shift_plan` for
every step when it is built and replays the kernels on every call.

Under :func:`torch.autocast` the ``"prob"`` and ``"log"`` kernels run with autocast off, on operands promoted to
at least float32 (:class:`~hybridpgm.precision_scope.exact_precision`): autocast would run their ``torch.bmm``
and ``torch.einsum`` in half precision, which costs a float32 Bayesian network's log-evidence nats.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch.autograd import forward_ad

from hybridpgm.graphs.row_shifts import less_row_max
from hybridpgm.graphs.tiny_ratio import tiny_ratio
from hybridpgm.graphs.underflow_redo import redo_underflowed, shifted_logsumexp
from hybridpgm.precision_scope import any_autocast, exact_precision

__all__ = ["LogOfSum", "MAX_SUM_CHUNK_ELEMENTS", "log_einsum", "max_sum", "pair_plan", "pair_product", "shift_plan",
           "shifted_logsumexp", "zero_safe_log"]


def pair_plan(ins, out, sizes):
    """How to contract two operands with one ``torch.bmm``, and the output dim order that gives for free.

    The larger operand ``A`` (dims ``batch + left + contracted`` after summing the dims only it holds)
    times ``B`` (``batch + contracted + right``) is ``[batch, left, right]``; ordering every group as
    ``A`` holds it leaves ``A`` uncopied whenever its dims are already grouped that way.
    """
    big = 0 if math.prod(sizes[d] for d in ins[0]) >= math.prod(sizes[d] for d in ins[1]) else 1
    a, b = ins[big], ins[1 - big]
    keep = set(out)
    batch = [d for d in a if d in b and d in keep]
    contracted = [d for d in a if d in b and d not in keep]
    left = [d for d in a if d not in b and d in keep]
    right = [d for d in b if d not in a and d in keep]
    a_rest = [d for d in a if d in b or d in keep]  # after summing the dims only A holds
    b_rest = [d for d in b if d in a or d in keep]
    spec = (big,
            tuple(i for i, d in enumerate(a) if d not in b and d not in keep),
            tuple(i for i, d in enumerate(b) if d not in a and d not in keep),
            tuple(a_rest.index(d) for d in batch + left + contracted),
            tuple(b_rest.index(d) for d in batch + contracted + right),
            len(batch), len(left), len(contracted))
    return spec, tuple(batch + left + right)


def pair_product(args, spec):
    """``einsum`` of two probability-space operands as one ``bmm`` (see :func:`pair_plan`); in at least
    float32 under autocast (:class:`~hybridpgm.precision_scope.exact_precision`)."""
    if not any_autocast():  # the usual case: no scope to open at each step
        return _pair_product(args, spec)
    with exact_precision(*args) as args:
        return _pair_product(args, spec)


def _pair_product(args, spec):
    big, sum_a, sum_b, perm_a, perm_b, nb, nl, nk = spec
    a, b = args[big], args[1 - big]
    if sum_a:
        a = a.sum(sum_a)
    if sum_b:
        b = b.sum(sum_b)
    if perm_a != tuple(range(len(perm_a))):
        a = a.permute(perm_a)
    if perm_b != tuple(range(len(perm_b))):
        b = b.permute(perm_b)
    bs, ls, ks, rs = a.shape[:nb], a.shape[nb:nb + nl], a.shape[nb + nl:], b.shape[nb + nk:]
    nbatch, nk_ = math.prod(bs), math.prod(ks)
    if nk_ == 1:  # an outer product: a broadcast multiply, not one tiny matmul per batch entry
        out = a.reshape(nbatch, math.prod(ls), 1) * b.reshape(nbatch, 1, math.prod(rs))
    else:
        out = torch.bmm(a.reshape(nbatch, math.prod(ls), nk_), b.reshape(nbatch, nk_, math.prod(rs)))
    return out.reshape((*bs, *ls, *rs))


def shift_plan(ins, out):
    """For each input: the axes it is maximised over, and how that max lines up with ``out``."""
    plans = []
    for dims in ins:
        red = tuple(i for i, d in enumerate(dims) if d not in out)
        kept = [d for d in dims if d in out]
        order = sorted(range(len(kept)), key=lambda i: out.index(kept[i]))
        view = [1] * len(out)
        plans.append((red, tuple(order), tuple(out.index(kept[i]) for i in order), view))
    return plans


def log_einsum(equation, operands, shifts):
    """Log-space einsum ``log einsum(exp(a), exp(b), ...)`` with per-output max shifting.

    The same computation as :func:`pyro.ops.einsum.torch_log.einsum`, with the
    bookkeeping precomputed by the plan (one small kernel sequence per step), and
    exact gradients where a shifted sum is small (:class:`LogOfSum`).  Under autocast it runs with autocast off,
    on operands in at least float32 (:class:`~hybridpgm.precision_scope.exact_precision`).  Within a
    :class:`~hybridpgm.graphs.row_shifts.RowShifts` of the step's plan, the output comes back less its per-row
    maximum (:func:`~hybridpgm.graphs.row_shifts.less_row_max`).
    """
    if not any_autocast():
        return _log_einsum(equation, operands, shifts)
    with exact_precision(*operands) as operands:
        return _log_einsum(equation, operands, shifts)


def _log_einsum(equation, operands, shifts):
    if len(operands) == 1 and not shifts[0][0]:
        t = operands[0]
        return t.permute(shifts[0][1]) if shifts[0][1] != tuple(range(t.dim())) else t.clone()
    exps, total = [], None
    for t, (red, order, positions, view) in zip(operands, shifts):
        shift = t.detach()
        if red:
            shift = shift.amax(dim=red, keepdim=True)
        shift = shift.clamp(min=torch.finfo(shift.dtype).min)
        exps.append((t - shift).exp())
        if red:
            shift = shift.squeeze(red)
        if order != tuple(range(len(order))):
            shift = shift.permute(order)
        shape = list(view)
        for pos, n in zip(positions, shift.shape):
            shape[pos] = n
        shift = shift.reshape(shape)
        total = shift if total is None else total + shift
    summed = torch.einsum(equation, *exps)
    result = zero_safe_log(summed) + total
    return less_row_max(_redo_underflowed(equation, operands, summed, result), shifts)


def _redo_underflowed(equation: str, operands, summed: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """``result`` with the entries whose max-shifted sum underflowed computed again exactly
    (:func:`~hybridpgm.graphs.underflow_redo.redo_underflowed`), in blocks of at most
    :math:`\\max(|\\text{out}|, \\text{MAX\\_SUM\\_CHUNK\\_ELEMENTS})` terms."""
    return redo_underflowed(equation, operands, summed, result, max(result.numel(), MAX_SUM_CHUNK_ELEMENTS))


def zero_safe_log(x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log x` of a step's max-shifted sum (:math:`x \\ge 0`), with exact derivatives for :math:`x > 0`
    and zero ones at :math:`x = 0`: :class:`LogOfSum`, or, in forward mode (a :func:`torch.func.jvp`,
    :func:`~torch.func.jacfwd` or :func:`~torch.func.hessian` level, or a :mod:`torch.autograd.forward_ad`
    tangent on ``x``), :func:`_relative_log`, whose derivatives torch takes through ordinary operations at every
    nesting (``jacfwd(jacfwd(...))``, where a ``Function``'s own ``jvp`` would run with forward mode off).

    :param x: the non-negative sum.
    :returns: ``x.log()``, the same value (``-inf`` at 0)."""
    if _forward_mode(x):
        return _relative_log(x)
    return LogOfSum.apply(x)


def _forward_mode(x: torch.Tensor) -> bool:
    """Whether a forward-mode derivative may reach ``x``: a ``jvp`` level on torch.func's transform stack, or a
    :mod:`torch.autograd.forward_ad` tangent on ``x`` (looked up only while a dual level is open)."""
    if torch._C._are_functorch_transforms_active():  # asked first: torch.compile traces it (not the stack)
        stack = torch._C._functorch.get_interpreter_stack() or ()
        if any(level.key() == torch._C._functorch.TransformType.Jvp for level in stack):
            return True
    return getattr(forward_ad, "_current_level", 0) >= 0 and forward_ad.unpack_dual(x).tangent is not None


def _relative_log(x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log x` as :math:`\\log(x / s) + \\log s` with :math:`s` the detached :math:`x` (clamped at the
    dtype's smallest normal number), ``-inf`` at :math:`x = 0`, in ordinary operations: the value of
    ``x.log()`` (:math:`x / s = 1` exactly for a normal :math:`x`), the derivative :math:`\\dot x / x`, zero at
    :math:`x = 0` (the masked entries compute :math:`\\log 1`: no NaN), and every further derivative divides by
    :math:`s` once per factor of a derivative of :math:`x`, never by :math:`x^2`
    (:mod:`~hybridpgm.graphs.tiny_ratio`)."""
    possible = x > 0
    s = torch.where(possible, x.detach(), 1.0).clamp(min=torch.finfo(x.dtype).tiny)
    ratio = torch.where(possible, x, s) / s
    return torch.where(possible, ratio.log() + s.log(), -math.inf)


#: the name used before :func:`shifted_logsumexp` was public
_shifted_logsumexp = shifted_logsumexp


class LogOfSum(torch.autograd.Function):
    """:math:`\\log x` of a step's max-shifted sum, with the exact gradient :math:`1/x` for every positive
    :math:`x` and 0 at :math:`x = 0` (an impossible configuration: no NaN, no spurious gradient).

    Pyro's ``safe_log`` clamps :math:`1/x` at :math:`1/\\epsilon` (4.5e15 in float64), which is wrong wherever a
    step's shifted sum falls under :math:`\\epsilon`: shifting each operand by its own maximum does not keep the
    sum of their products near one when the operands' maxima disagree (frustrated couplings, conflicting
    evidence), and marginals taken as gradients then come out scaled by that sum.  Here :math:`x` is clamped at
    the dtype's smallest normal number only, which bounds the gradient for the subnormal sums alone; the gradient
    reaching a step's output is a posterior weight, at most one.  Differentiated again (``create_graph``: Hessians,
    derivatives of marginals), :math:`g / x` is :func:`~hybridpgm.graphs.tiny_ratio.tiny_ratio`, whose own
    derivatives never divide by :math:`x^2` (which underflows for the sums under about :math:`10^{-154}` in
    float64, making the Hessian of a log-partition function infinite or NaN).  ``forward`` takes no ``ctx``
    (:meth:`setup_context` saves :math:`x`), so :func:`torch.func.grad` and :func:`torch.func.jacrev` accept it,
    and its generated vmap rule lets the transforms that batch it do so.  It has no ``jvp``: torch runs a
    Function's ``jvp`` with forward mode off (``jacfwd(jacfwd(...))`` would drop the outer tangent's part), and
    ``torch.compile`` breaks its graph at a Function that has one; the contraction steps take
    :func:`zero_safe_log`, whose forward mode is ordinary operations.
    """

    generate_vmap_rule = True  # jacfwd and vmap batch it as they batch log, where and division

    @staticmethod
    def forward(x):
        return x.log()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.where(x > 0, tiny_ratio(grad, x.clamp(min=torch.finfo(x.dtype).tiny)), torch.zeros_like(grad))


#: elements of the broadcast sum :func:`max_sum` forms at a time, beyond the step's output: a step whose
#: output and summed-out configurations together exceed it is reduced in chunks of its summed-out dims; also the
#: block of the exact redo of a log-space step's underflowed entries (:func:`log_einsum`)
MAX_SUM_CHUNK_ELEMENTS = 1 << 20


def max_sum(args, ins, out):
    """Max over the dims not in ``out`` of the broadcast sum of ``args``, without forming that sum whole.

    With the output dims :math:`o` and the summed-out dims :math:`r` of the step (in ``out`` order, then sorted
    by name, the union of the operands' dims), the step is

    .. math:: m_o = \\max_r \\sum_i a_i(o, r), \\qquad r^*_o = \\text{the first } r
        \\text{ (row-major) attaining it}.

    A union :math:`|o| \\cdot |r|` within one block (below) is summed whole and maximised in one ``max``.  But
    it can be many times the output (16 times for four binary summed-out dims), and the memory guards of the
    exact queries count outputs only; so a larger :math:`r` is walked in row-major blocks
    of its leading dims, each block's broadcast sum holding at most
    :math:`\\max(|o|, \\text{MAX\\_SUM\\_CHUNK\\_ELEMENTS})` entries, keeping the running maximum and the
    first index attaining it (a later block replaces it only when strictly larger, or NaN: the answer and
    the tie-breaking of one ``max`` over the whole union).  This search runs without autograd; the result is
    then the sum of each operand's entry at :math:`(o, r^*_o)`, in operand order (the same additions as the
    broadcast sum, so the same value to the last bit), and back-propagating through it sends each output's
    gradient to exactly the entries of its maximising configuration, as back-propagating through ``max``
    does: the argmax back-tracking of MAP.  Within a :class:`~hybridpgm.graphs.row_shifts.RowShifts` of the
    step's plan, the output comes back less its per-row maximum (:func:`~hybridpgm.graphs.row_shifts.less_row_max`).
    """
    return less_row_max(_max_sum(args, ins, out), out)


def _max_sum(args, ins, out):
    union = list(out) + sorted({d for dims in ins for d in dims} - set(out), key=str)
    aligned = []
    for t, dims in zip(args, ins):
        perm = sorted(range(len(dims)), key=lambda i: union.index(dims[i]))
        t = t.permute(perm) if perm != list(range(len(dims))) else t
        shape, it = [], iter(t.shape)
        pos = {dims[i] for i in perm}
        for d in union:
            shape.append(next(it) if d in pos else 1)
        aligned.append(t.reshape(shape))
    n_out = len(out)
    if len(union) == n_out:
        total = aligned[0]
        for t in aligned[1:]:
            total = total + t
        return total.clone() if len(args) == 1 else total
    sizes = [max(t.shape[k] for t in aligned) for k in range(len(union))]
    if math.prod(sizes) <= max(math.prod(sizes[:n_out]), MAX_SUM_CHUNK_ELEMENTS):  # one block: the sum whole
        total = aligned[0]
        for t in aligned[1:]:
            total = total + t
        return total.expand(sizes).reshape(*sizes[:n_out], -1).max(-1).values
    best = _first_argmax(aligned, sizes, n_out)
    return _gathered_sum(aligned, sizes, n_out, best)


def _first_argmax(aligned: list, sizes: list, n_out: int) -> torch.Tensor:
    """``[*out]`` row-major index over the summed-out dims of the first maximum of the broadcast sum of
    ``aligned`` (laid out over ``sizes``: the output dims, then the summed-out ones), block by block."""
    out_shape, red = sizes[:n_out], sizes[n_out:]
    budget = max(math.prod(out_shape), MAX_SUM_CHUNK_ELEMENTS)
    lead = 0  # leading summed-out dims walked one configuration at a time; the rest are reduced in a block
    while lead < len(red) and math.prod(out_shape) * math.prod(red[lead:]) > budget:
        lead += 1
    inner = math.prod(red[lead:])
    best_val = best_idx = None
    with torch.no_grad():
        for block, fixed in enumerate(itertools.product(*[range(n) for n in red[:lead]])):
            total = None
            for t in aligned:
                at = tuple(0 if t.shape[n_out + k] == 1 else i for k, i in enumerate(fixed))
                part = t.detach()[(slice(None),) * n_out + at]
                total = part if total is None else total + part
            vals, idx = total.expand((*out_shape, *red[lead:])).reshape(*out_shape, inner).max(-1)
            if best_val is None:
                best_val, best_idx = vals, idx
                continue
            better = (vals > best_val) | (vals.isnan() & ~best_val.isnan())
            best_val = torch.where(better, vals, best_val)
            best_idx = torch.where(better, idx + block * inner, best_idx)
    return best_idx


def _gathered_sum(aligned: list, sizes: list, n_out: int, best: torch.Tensor) -> torch.Tensor:
    """``sum_i aligned[i][o, best[o]]`` (``best``: row-major indices over the summed-out dims), differentiable in
    the operands, added in operand order."""
    out_shape, red = sizes[:n_out], sizes[n_out:]
    coords, rest = [], best
    for n in reversed(red):  # the summed-out coordinates of each output's maximising configuration
        coords.append(rest % n)
        rest = rest // n
    coords.reverse()
    total = None
    for t in aligned:
        t = t.contiguous()
        index = torch.zeros((), dtype=torch.long, device=t.device)
        for k, n in enumerate(out_shape):
            if t.shape[k] != 1:
                view = [1] * n_out
                view[k] = n
                index = index + torch.arange(n, device=t.device).view(view) * t.stride(k)
        for k, c in enumerate(coords):
            if t.shape[n_out + k] != 1:
                index = index + c * t.stride(n_out + k)
        part = t.reshape(-1)[index.expand(out_shape)]
        total = part if total is None else total + part
    return total
