r"""The value of a probability-space contraction plan and its gradients, with the reverse pass by hand.

Exact marginals are derivatives of the contraction :math:`Z_n` (Darwiche 2003):
one forward pass through the pairwise steps of a
:class:`~hybridpgm.graphs.contraction.ContractionPlan`, then one reverse pass.
Each step of the plan is a batched matrix product of two operands laid out as
``A [b, l, k]`` and ``B [b, k, r]`` (after summing the dims only one of them
holds and permuting), so its reverse pass is two more,

.. math::

    \bar A = \bar C B^\top, \qquad \bar B = A^\top \bar C, \qquad C = A B,

folded back through the permutation and broadcast over the summed dims
(Eisner 2016: this reverse pass of the contraction tree is the outward pass
of a junction tree).  :func:`value_and_gradients` runs both passes without
autograd's graph and engine and computes only the gradients that reach the
requested operands.  Every intermediate of at least :data:`LARGE` elements
(forward values, permuted copies, gradients) is written into a slice of one
:class:`Workspace` buffer that is kept from one query to the next.  Allocated
fresh, such tensors come from the operating system on every call (the
allocator hands large blocks back when they are freed), and the kernel zeroes
every page: a third of the time of a query on the water network, on one core.
The numbers are those of ``torch.autograd.grad`` through the plan (the tests
compare them).  Smaller intermediates are allocated as usual, and a
contraction without large ones is faster through autograd, whose engine runs
in C++: :mod:`hybridpgm.infer.bn_contract` decides per query, and queries that
need a differentiable answer (``create_graph``) always use autograd.

**References**

A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.

J. Eisner, *Inside-Outside and Forward-Backward Algorithms Are Just Backprop*, 2016.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import weakref
from typing import Sequence

import torch

__all__ = ["LARGE", "Workspace", "value_and_gradients"]


class Workspace:
    """One flat buffer, handed out in slices during a query and taken back whole at its end.

    It grows to the largest query it has served, up to ``max_bytes`` (an exact
    Bayesian-network query needs at most about 1.3 times
    :data:`hybridpgm.infer.bn_contract.ROW_CHUNK_BYTES`, 256 MiB on CPU, which bounds
    the row-carrying intermediates of one contraction), and is kept, on the device and
    in the dtype of that query; :meth:`release` frees it.  One query at a time uses it: a query that
    finds it in use (from another thread) allocates as usual.  A process forked from this one finds every
    workspace free (:func:`os.register_at_fork`): forked while another thread's query held one, the child's
    queries would otherwise never have used it.
    """

    def __init__(self, max_bytes: int = 512 * 2**20):
        #: the most the buffer grows to; a query that needs more takes the rest as fresh tensors
        self.max_bytes = max_bytes
        self._buffer: torch.Tensor | None = None
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def nbytes(self) -> int:
        """Bytes held between queries."""
        return 0 if self._buffer is None else self._buffer.numel() * self._buffer.element_size()

    def release(self) -> None:
        """Free the buffer."""
        self._buffer = None

    def __reduce__(self):
        """A copy (``copy.deepcopy``, pickling) is an empty workspace: its contents are scratch."""
        return (Workspace, (self.max_bytes,))


#: the workspaces of this process, given fresh locks in a forked child (:func:`_after_fork_in_child`)
_LIVE: "weakref.WeakSet[Workspace]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Free every workspace in a forked child: a lock held by another thread of the parent at the fork is held by
    no thread of the child (the buffer's contents are scratch, written afresh by each query)."""
    for workspace in list(_LIVE):
        workspace._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX; registered once, at import
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: tensors of fewer elements are allocated as usual: the allocator keeps such blocks for reuse (and they stay in
#: cache), and the larger ones it takes from the operating system on every call are what the workspace is for;
#: a contraction with none this large is differentiated faster by autograd (its engine runs in C++)
LARGE = 1 << 18


def _contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


class _Arena:
    """Slices of a workspace for one query; past its end (or without one), fresh tensors."""

    def __init__(self, workspace: Workspace | None, like: torch.Tensor):
        self.workspace, self.like, self.used = workspace, like, 0
        buffer = None if workspace is None else workspace._buffer
        if buffer is not None and (buffer.dtype != like.dtype or buffer.device != like.device):
            buffer = None
        self.buffer = buffer

    def slice(self, shape) -> torch.Tensor | None:
        """A fresh slice of the workspace of ``shape`` (a new tensor past its end); ``None`` for a small tensor,
        which the operation allocates as usual."""
        n = math.prod(shape)
        if n < LARGE:  # the allocator serves these from memory it keeps
            return None
        start = -(-self.used // 8) * 8  # slices aligned to 8 elements (64 bytes in float64)
        self.used = start + n
        if self.buffer is not None and self.used <= self.buffer.numel():
            return self.buffer.as_strided(shape, _contiguous_strides(shape), start)
        # past the end: a fresh tensor, written through ``out=`` all the same (the kernels behind an
        # operation with and without ``out=`` may round differently, and a query must give the same bits
        # whether or not the workspace was large enough yet)
        return torch.empty(shape, dtype=self.like.dtype, device=self.like.device)

    def run(self, fn, shape, *args, **kwargs) -> torch.Tensor:
        """``fn(*args, **kwargs)`` with its result of ``shape`` written into the workspace where it has one."""
        out = self.slice(shape)
        return fn(*args, **kwargs) if out is None else fn(*args, **kwargs, out=out)

    def contiguous(self, t: torch.Tensor) -> torch.Tensor:
        out = self.slice(t.shape)
        return t.contiguous() if out is None else out.copy_(t)

    def detach(self, t: torch.Tensor) -> torch.Tensor:
        """``t``, copied if it lives in the workspace (which the next query overwrites)."""
        if self.buffer is not None and t.untyped_storage().data_ptr() == self.buffer.untyped_storage().data_ptr():
            return t.clone()
        return t

    def finish(self) -> None:
        """Grow the workspace to what this query wanted, for the next one."""
        if self.workspace is None:
            return
        size = min(self.used, self.workspace.max_bytes // self.like.element_size())
        if self.buffer is None or size > self.buffer.numel():
            self.workspace._buffer = None  # the old buffer goes before the new one is taken
            self.workspace._buffer = torch.empty(size, dtype=self.like.dtype, device=self.like.device)


class _Tape:
    """The forward pass over tensor ids, with what the reverse pass needs."""

    def __init__(self, operands: Sequence[torch.Tensor], wrt: set, arena: _Arena):
        self.values: list = list(operands)
        self.n_operands = len(operands)
        self.needs = [i in wrt for i in range(len(operands))]
        self.records: list = []
        self.arena = arena

    def _take(self, i: int) -> torch.Tensor:
        """Value ``i`` for the one step that consumes it; an intermediate is dropped from the tape then (the
        records keep what the reverse pass needs), so that memory is freed as autograd frees it."""
        value = self.values[i]
        if i >= self.n_operands:
            self.values[i] = None
        return value

    def _add(self, value: torch.Tensor, needs: bool) -> int:
        self.values.append(value)
        self.needs.append(needs)
        return len(self.values) - 1

    def pair(self, ids: list, spec) -> int:
        """One pairwise step, :math:`C_{b,l,r} = \\sum_k A_{b,l,k} B_{b,k,r}` (``spec`` as
        :func:`hybridpgm.graphs.contraction_steps.pair_plan` lays it out); a broadcast product when
        :math:`k` has one state.  Returns the id of ``C``, viewed in its dims ``batch + left + right``."""
        big, sum_a, sum_b, perm_a, perm_b, nb, nl, nk = spec
        ia, ib = ids[big], ids[1 - big]
        a, b = self._take(ia), self._take(ib)
        a3, a_shapes = self._matrix(a, sum_a, perm_a, nb, nl)
        b3, b_shapes = self._matrix(b, sum_b, perm_b, nb, nk)
        out_shape = (*a_shapes[2][:nb + nl], *b_shapes[2][nb + nk:])
        shape3 = (a3.shape[0], a3.shape[1], b3.shape[2])
        outer = a3.shape[2] == 1  # a broadcast multiply, not one tiny matmul per batch entry
        out3 = self.arena.run(torch.mul if outer else torch.bmm, shape3, a3, b3)
        needs_a, needs_b = self.needs[ia], self.needs[ib]
        self.records.append(("pair", ia, ib, a3 if needs_b else None, b3 if needs_a else None, a_shapes, b_shapes,
                             perm_a, perm_b, sum_a, sum_b, tuple(out3.shape), outer))
        return self._add(out3.view(out_shape), needs_a or needs_b)

    def _matrix(self, t: torch.Tensor, summed, perm, nb: int, n_first: int):
        """``t`` summed over ``summed``, permuted by ``perm`` and viewed as ``[batch, first, second]``."""
        shapes = [t.shape]
        if summed:
            kept = tuple(n for i, n in enumerate(t.shape) if i not in summed)
            t = self.arena.run(torch.sum, kept, t, summed)
        shapes.append(t.shape)
        if perm != tuple(range(len(perm))):
            t = t.permute(perm)
        shapes.append(t.shape)
        shape3 = (math.prod(t.shape[:nb]), math.prod(t.shape[nb:nb + n_first]), math.prod(t.shape[nb + n_first:]))
        return self._view(t, shape3), shapes

    def _view(self, t: torch.Tensor, shape) -> torch.Tensor:
        """``t.reshape(shape)``, a copy (into the workspace) only where no view exists."""
        if t.is_contiguous() or _has_view(tuple(t.shape), t.stride(), shape):
            return t.view(shape)
        return self.arena.contiguous(t).view(shape)

    def reduce(self, i: int, dims: tuple, out: tuple) -> int:
        """One operand summed over the dims not in ``out`` and permuted to ``out``."""
        t = self._take(i)
        shape = t.shape
        summed = tuple(j for j, d in enumerate(dims) if d not in out)
        kept = [d for d in dims if d in out]
        perm = tuple(kept.index(d) for d in out)
        if summed:
            t = t.sum(summed)
        if perm != tuple(range(len(perm))):
            t = t.permute(perm)
        self.records.append(("reduce", i, shape, summed, perm))
        return self._add(t, self.needs[i])

    def backward(self, result: int) -> dict:
        """Gradients of ``values[result].sum()`` with respect to every tensor that needs one."""
        grads = {result: torch.ones_like(self.values[result])}
        for k in range(len(self.records) - 1, -1, -1):
            record, out_id = self.records[k], _output_id(self.records, k, len(self.values))
            self.records[k] = None  # its saved tensors go once it has run, as autograd's do
            g = grads.pop(out_id, None)
            if g is None:
                continue
            if record[0] == "reduce":
                _, i, shape, summed, perm = record
                _accumulate(grads, i, _unreduce(g, shape, summed, perm))
                continue
            _, ia, ib, a3, b3, a_shapes, b_shapes, perm_a, perm_b, sum_a, sum_b, shape3, outer = record
            g3 = self._view(g, shape3)
            nbatch, rows, cols = shape3
            if self.needs[ia]:
                shape = (nbatch, rows, b3.shape[1])
                if outer:
                    ga3 = self.arena.run(torch.sum, shape, self.arena.run(torch.mul, shape3, g3, b3), 2, keepdim=True)
                else:
                    ga3 = self.arena.run(torch.bmm, shape, g3, b3.transpose(1, 2))
                _accumulate(grads, ia, _unmatrix(ga3, a_shapes, perm_a, sum_a))
            if self.needs[ib]:
                shape = (nbatch, a3.shape[2], cols)
                if outer:
                    gb3 = self.arena.run(torch.sum, shape, self.arena.run(torch.mul, shape3, g3, a3), 1, keepdim=True)
                else:
                    gb3 = self.arena.run(torch.bmm, shape, a3.transpose(1, 2), g3)
                _accumulate(grads, ib, _unmatrix(gb3, b_shapes, perm_b, sum_b))
        return grads


def _output_id(records, k: int, n_values: int) -> int:
    """The id of the value record ``k`` produced: values are appended one per record, in order."""
    return n_values - len(records) + k


@functools.lru_cache(maxsize=4096)
def _has_view(shape: tuple, stride: tuple, target: tuple) -> bool:
    """Whether a tensor of ``shape`` and ``stride`` has a view of shape ``target`` (torch's own rule,
    asked of a tensor without storage; layouts repeat from query to query, so the answers are kept)."""
    try:
        torch.empty_strided(shape, stride, device="meta").view(target)
        return True
    except RuntimeError:
        return False


def _unmatrix(g3: torch.Tensor, shapes, perm, summed) -> torch.Tensor:
    """A ``[batch, first, second]`` gradient back in the operand's own dims (broadcast over summed dims)."""
    original, _, permuted = shapes
    return _unreduce(g3.reshape(permuted), original, summed, perm)


def _unreduce(g: torch.Tensor, shape, summed, perm) -> torch.Tensor:
    """A gradient over a step's permuted, summed result back in its input's dims ``shape``."""
    if perm != tuple(range(len(perm))):
        g = g.permute(_inverse(perm))
    for j in sorted(summed):
        g = g.unsqueeze(j)
    return g.expand(shape) if summed else g


def _inverse(perm) -> tuple:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _accumulate(grads: dict, i: int, g: torch.Tensor) -> None:
    grads[i] = g if i not in grads else grads[i] + g


def _run(plan, ids: list, tape: _Tape):
    """Replay ``plan`` (a ContractionPlan or an AbsorbingPlan) over tensor ids on the tape."""
    if getattr(plan, "groups", None) is not None:  # an AbsorbingPlan: its groups, as its __call__ runs them
        return _run(plan.main, plan.absorb(ids, lambda sub, args: _run(sub, args, tape)), tape)
    ops = list(ids)
    for inds, ins, out, _, _, pair in plan.steps:
        args = [ops.pop(i) for i in inds]
        if pair is not None:
            ops.append(tape.pair(args, pair))
        elif len(args) == 1:
            ops.append(tape.reduce(args[0], ins[0], out))
        else:  # pragma: no cover - opt_einsum's paths are pairwise
            raise NotImplementedError("a contraction step of more than two operands")
    (result,) = ops
    final = plan._final_perm
    if final != tuple(range(len(final))):
        result = tape.reduce(result, tuple(range(len(final))), tuple(final))
    return result


def value_and_gradients(plan, operands: Sequence[torch.Tensor], wrt: Sequence[int],
                        workspace: Workspace | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``plan(operands, "prob")`` and its gradients (of the sum of its entries) in ``operands[i]``, ``i in wrt``.

    :param plan: a :class:`~hybridpgm.graphs.contraction.ContractionPlan` or
        :class:`~hybridpgm.graphs.contraction.AbsorbingPlan` over ``operands``.
    :param wrt: positions of the operands whose gradients are wanted.
    :param workspace: reused for the intermediates of both passes (``None``: fresh tensors).
    :returns: the contraction (``plan``'s output shape) and the gradients (each of its operand's shape), in
        the order of ``wrt``; none of them shares memory with the workspace.
    """
    like = operands[0]
    lock = workspace._lock if workspace is not None else None
    held = lock.acquire(blocking=False) if lock is not None else False
    arena = _Arena(workspace if held else None, like)
    try:
        with torch.no_grad():
            tape = _Tape(operands, set(wrt), arena)
            result = _run(plan, list(range(len(operands))), tape)
            value = tape.values[result].clone()
            grads = tape.backward(result)
            grads = {i: arena.detach(grads[i]) for i in wrt if i in grads}
        arena.finish()
    finally:
        if held:
            lock.release()
    return value, [grads[i] if i in grads else torch.zeros_like(operands[i]) for i in wrt]
