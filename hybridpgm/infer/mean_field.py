"""Naive mean field as ``K`` unrolled, differentiable coordinate-ascent sweeps.

A fully factorised :math:`q(x) = \\prod_v q_v(x_v)` maximises the evidence
lower bound [1]

.. math::

    \\mathcal L(q) = \\sum_v \\mathbb E_{q_v}[\\theta_v] + \\sum_f \\mathbb E_{q}[\\theta_f]
      + \\sum_v H(q_v) \\;\\le\\; \\log Z

by the fixed-point update
:math:`q_v(x_v) \\propto \\exp(\\theta_v(x_v) + \\sum_{f \\ni v} \\mathbb E_{q_{f \\setminus v}}[\\theta_f(x_f)])`.
Variables of one colour of a proper colouring of the interaction graph share
no factor, so updating a whole colour class at once is exact coordinate ascent
(:math:`\\mathcal L` never decreases) yet vectorised: a sweep is one update per
colour (two on a grid).  Each update computes the field of its colour's variables
only, from the factors that touch them (:mod:`~hybridpgm.infer.mrf_colour_blocks`,
planned once per call), so a sweep contracts every factor once per argument,
:math:`O(B \\sum_f k_f C^{k_f})` whatever the number of colours (a fully
connected net needs one per variable), plus :math:`O(B V_c C)` per colour to
write the colour's rows of ``q`` in place (autograd needs no copy: every read of ``q``
is a gather), and one copy of ``q`` in the first sweep and in each sweep that tests
convergence (the old one is kept for the change); under a :mod:`torch.func` transform,
whose batched or dual rows cannot be written into an unbatched ``q`` in place,
:math:`O(B V C)` per colour (a copy).  Nothing inside the loop waits for the device:
with ``tol > 0`` the change is read every ``check_every`` sweeps (and at the last), as
:class:`~hybridpgm.infer.BeliefPropagation` does, and with ``tol = 0`` never.  The bound holds
for *any* :math:`q`, so the returned ``log_z`` is a lower bound after any number
of steps.  All steps are torch
operations, so gradients flow into the potentials through the ``K`` sweeps [2].

The sweeps run on the tables less their detached maxima over the states the evidence allows
(:func:`~hybridpgm.graphs.mrf_centring.centred_graph`), and the maxima :math:`M` are added to the bound once:
:math:`\\mathcal L(q) = \\tilde{\\mathcal L}(q) + M`.  A constant added to a table changes no update, so the
marginals are those of the tables without it, and the fields are never formed at the constant's size (float32
marginals were off by :math:`10^{-3}` at a constant of 65536 on every table); the gradient is unchanged.

Under :func:`torch.func.vmap` (a graph built from a row of batched potentials or ``init``) the host reads -- the
change of ``q`` with ``tol > 0``, the NaN test of the result with ``tol = 0`` and of an ``init`` -- read every row
at once (:func:`~hybridpgm.infer.vmap_rows.all_rows`, one read as outside ``vmap``): the rows are answered as the
batch of those models is (the sweeps stop once every row passes its test), and a NaN or a bad ``init`` in a row is
the named error, at once (not deferred to :func:`hybridpgm.fit`'s read), naming the row of the ``vmap``.

Under :func:`torch.autocast` (``fit(precision="bf16"/"fp16")``) the sweeps and the bound run with autocast off
for the potentials' device, on potentials in at least float32
(:class:`~hybridpgm.precision_scope.exact_precision`, as the exact queries): autocast would run the
:func:`~hybridpgm.graphs.factor_graph.expected_factor` einsums in the half precision (a bfloat16 field added to
a float32 one).  A float32 model's result is then the float32 run's, bit for bit; networks computing neural
potentials before the call still run under autocast.

**References**

[1] M. J. Wainwright, M. I. Jordan, *Graphical Models, Exponential Families,
and Variational Inference*, 2008.

[2] J. Domke, *Learning Graphical Model Parameters with Approximate Marginal
Inference*, 2013.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hybridpgm.checks import check_device, damping_of, positive_int, positive_real
from hybridpgm.errors import DataError, EvidenceError, ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph, expected_factor, scatter_to_variables
from hybridpgm.graphs.mrf_centring import centred_graph
from hybridpgm.infer.mrf_colour_blocks import block_field, block_tables, colour_blocks
from hybridpgm.infer.mrf_operands import _with_potentials
from hybridpgm.infer.rounding_floor import rounding_floor
from hybridpgm.options import Option
from hybridpgm.portable_result import PortableResult
from hybridpgm.precision_scope import exact_precision
from hybridpgm.infer.vmap_rows import all_rows, first_row_where
from hybridpgm.transform_scope import under_torch_func, under_vmap
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["MeanField", "MeanFieldResult"]


@dataclass(eq=False)
class MeanFieldResult(PortableResult):
    """Output of :class:`MeanField` (batch flattened to ``B``; a dataclass: each field is an attribute).

    :param torch.Tensor log_z: ``[B]`` the evidence lower bound :math:`\\mathcal L(q) \\le \\log Z`.
    :param torch.Tensor marginals: ``[B, V, C]`` the factors :math:`q_v`.
    :param bool converged: whether the largest change of ``q`` fell below ``tol`` (or float rounding's floor
        :math:`c\\,\\epsilon`, see :class:`MeanField`); always ``False`` when ``tol == 0``.
    :param int num_iters: sweeps run.
    """

    log_z: torch.Tensor
    marginals: torch.Tensor
    converged: bool
    num_iters: int


class MeanField:
    """Naive mean field with chromatic (block coordinate-ascent) sweeps.

    :param int num_iters: number ``K`` of unrolled sweeps.
    :param float damping: :math:`\\alpha \\in [0, 1)`; ``q \\leftarrow (1-\\alpha) q_{new} + \\alpha q``.
    :param float tol: stop early once the largest change of any ``q`` in a checked sweep is below
        :math:`\\max(\\mathrm{tol}, c\\,\\epsilon)`, :math:`\\epsilon` the dtype's machine epsilon and :math:`c = 16`
        (:mod:`~hybridpgm.infer.rounding_floor`: a few roundings of :math:`q \\in [0, 1]` per sweep; a change below
        that is rounding, which an absolute ``tol`` under it could never see settle): :math:`1.9 \\cdot 10^{-6}`
        in ``float32``, :math:`3.6 \\cdot 10^{-15}` in ``float64`` (where the default ``1e-6`` is the test, as
        before); ``0`` runs all ``K`` sweeps.  The floor is the same for every model of a batch (the scale is 1),
        so the sweeps stop once every model passes its own test.  The test bounds the last sweep's change, not the
        distance to the fixed point; a model kept sweeping by a slower one moves on towards its fixed point, so its
        answer in a batch differs from its answer alone by up to about what its own stop leaves alone (more than
        ``tol`` where the sweeps converge slowly).
    :param int check_every: with ``tol > 0``, test the change of every ``check_every``-th sweep and of the last
        one (each test is one device-to-host read; default 10, as :class:`~hybridpgm.infer.BeliefPropagation`):
        the sweeps stop at the first tested sweep whose change passes, so a run stops at a multiple of
        ``check_every`` or at ``num_iters`` (``check_every=1`` tests every sweep); keyword-only.
    :raises ConfigError: ``num_iters`` or ``check_every`` that is not a positive integer (``2.5``, ``True`` and
        ``0`` are refused, not rounded), ``damping`` that is not a real number in ``[0, 1)``, or ``tol`` that is
        not a finite real number ``>= 0`` (``bool``, strings, ``None`` and NaN are refused); the message names the
        option and value.
        The options are attributes (:class:`~hybridpgm.options.Option`): assigning one raises
        the same for the same values.
    """

    num_iters = Option(lambda self, value: positive_int(value, "MeanField num_iters"))
    damping = Option(lambda self, value: damping_of(value, "MeanField damping"))
    tol = Option(lambda self, value: positive_real(value, "MeanField tol", allow_zero=True))
    #: an engine pickled before the option existed tested every sweep; it loads with the default
    check_every = Option(lambda self, value: positive_int(value, "MeanField check_every"), missing=lambda self: 10)

    def __init__(self, num_iters: int = 50, damping: float = 0.0, tol: float = 1e-6, *, check_every: int = 10):
        self.num_iters, self.damping, self.tol, self.check_every = num_iters, damping, tol, check_every

    @staticmethod
    def _field(fg: FactorGraph, theta: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``[B, V, C]`` mean-field logits of every variable given ``q`` (all factors; the sweeps compute one
        colour's rows at a time with :func:`~hybridpgm.infer.mrf_colour_blocks.block_field`)."""
        field = theta
        for g in fg.groups:
            probs = [q[:, g.variables[:, j]] for j in range(g.arity)]
            msgs = torch.stack([expected_factor(g.log_potentials, probs, skip=j)
                                for j in range(g.arity)], dim=2)
            field = field + scatter_to_variables(msgs, g.variables, fg.num_vars)
        return field

    @staticmethod
    def elbo(fg: FactorGraph, q: torch.Tensor) -> torch.Tensor:
        """``[B]`` the lower bound :math:`\\mathcal L(q) = \\mathbb E_q[\\theta(x)] + \\mathcal H(q) \\le \\log Z`.

        :param fg: the factor graph.
        :param q: ``[B, V, C]`` fully factorised marginals :math:`q_v` (zero at invalid states).

        Summed on the centred tables, the maxima added once (see the module docstring).  Under autocast, computed
        with it off, in at least float32 (as :meth:`__call__`)."""
        with exact_precision(fg.unary, q, *[g.log_potentials for g in fg.groups]) as (unary, q, *pots):
            centred, offset = centred_graph(_with_potentials(fg, unary, pots))
            return MeanField._elbo(centred, q) + offset

    @staticmethod
    def _elbo(fg: FactorGraph, q: torch.Tensor) -> torch.Tensor:
        """:meth:`elbo` in the operands' dtype, the autocast state as it is."""
        valid = fg.valid
        log_q = torch.log(q.clamp_min(torch.finfo(q.dtype).tiny)).masked_fill(~valid, 0.0)
        unary = fg.unary.masked_fill(~valid, 0.0)
        out = (q * (unary - log_q)).sum((-1, -2))
        for g in fg.groups:
            probs = [q[:, g.variables[:, j]] for j in range(g.arity)]
            out = out + expected_factor(g.log_potentials, probs).sum(-1)
        return out

    def __call__(self, fg: FactorGraph, init: torch.Tensor | None = None) -> MeanFieldResult:
        """Run mean field on ``fg``.

        :param FactorGraph fg: the graph.
        :param torch.Tensor init: an optional start ``q``, ``[B, V, C]`` (or ``[1, V, C]``, shared by the batch)
            in the dtype and on the device of ``fg``'s potentials; the softmax of the unary potentials if ``None``.
            Non-negative weights, normalised here per variable over the states :attr:`FactorGraph.valid` allows
            (:math:`q_v(x) = w_v(x)\\,[x \\text{ valid}] / \\sum_{y \\text{ valid}} w_v(y)`): mass on a state that
            the evidence rules out, or on a padding state, is dropped, so :math:`\\mathcal L(q) \\le \\log Z`
            holds from the first sweep (damping mixes only such ``q``).
        :raises DataError: an ``init`` that is not a tensor, or has another shape or dtype (the message gives the
            expected and the actual one); or one holding a negative or non-finite weight, or no weight on the valid
            states of a variable (the message names the variable and the model).
        :raises DeviceError: an ``init`` on another device than ``fg``.
        :raises ModelSpecError: when an update leaves no finite field on a variable's states (NaN :math:`q`: the
            expected log-potentials of its factors sum past the dtype's range, as hard constraints written as
            ``finfo.min`` do), naming the variable whose update first gave a NaN (a NaN spreads to its neighbours);
            found at a convergence read (``tol > 0``) or, with ``tol = 0``, by one read of the final ``q`` after
            the sweeps (inside a training step, deferred to the step's own read:
            :func:`~hybridpgm.train.deferred_checks.check_or_defer`); the sweeps then run again from the start,
            every colour update read, to find that variable.

        Under :func:`torch.autocast` the sweeps run with autocast off for the potentials' device, on potentials
        (and ``init``) in at least float32 (:class:`~hybridpgm.precision_scope.exact_precision`): ``log_z`` and
        ``marginals`` of a float32 graph are the float32 run's, exactly; outside autocast, in the potentials' dtype.
        """
        if init is not None:
            init = _check_init(init, fg)  # against the caller's dtype, before any promotion
        with exact_precision(fg.unary, init, *[g.log_potentials for g in fg.groups]) as (unary, init, *pots):
            centred, offset = centred_graph(_with_potentials(fg, unary, pots))
            result = self._sweeps(centred, init)
            result.log_z = result.log_z + offset  # the maxima added back once: L(q) = L~(q) + M
        return result

    def _sweeps(self, fg: FactorGraph, init: torch.Tensor | None) -> MeanFieldResult:
        """:meth:`__call__` from a checked ``init`` (or ``None``), in the potentials' dtype, the autocast state as
        it is, on ``fg`` as given (the caller's centred graph: ``log_z`` is the bound of its tables)."""
        theta = fg.masked_unary()
        q = torch.softmax(theta, dim=-1) if init is None else init
        colors = fg.colors if fg.colors is not None else torch.zeros(
            fg.num_vars, dtype=torch.long, device=q.device)
        blocks = [b for b in colour_blocks(fg, colors) if b.variables.numel() > 0]
        tables = block_tables(fg, blocks)  # gathered once per call: one gather to back-propagate into
        thetas = theta.index_select(1, torch.cat([b.variables for b in blocks])).split(
            [b.variables.numel() for b in blocks], dim=1)
        # Each colour writes its rows of q.  Outside torch.func transforms the colours write their rows in place,
        # O(B V_c C) each, instead of a copy of the whole q per colour, but for the first colour of the first sweep
        # (q is the softmax's output, which its backward keeps, or the caller's init) and of each sweep that tests
        # the change (the old q is kept for it): that one makes the new q, O(B V C).  Autograd allows it: every
        # read of q is a gather, whose backward keeps only the indices, and index_copy_ has index_copy's derivative
        # (the same backward graph, the same gradients).  A transform's batched or dual rows cannot be written into
        # an unbatched q in place: there every colour copies.
        sweep = (blocks, tables, thetas, self.damping, not under_torch_func())
        converged, it, start = False, 0, q  # start is never written: the first sweep copies it
        floor = rounding_floor(q.dtype)  # q lies in [0, 1]: the scale is 1, nothing more to read
        num_iters, tol, every = self.num_iters, self.tol, self.check_every  # options read once per call
        for it in range(1, num_iters + 1):
            check = tol > 0 and (it % every == 0 or it == num_iters)  # tol=0: every sweep, nothing read
            q_old, q = q, _sweep(q, *sweep, keep=it == 1 or check)
            if check:  # under vmap: the largest change of every row (a batch of them stops once all pass)
                delta = float(all_rows(q.detach() - q_old.detach()).abs().max())
                if delta != delta:  # NaN: named instead of returned, at no extra read
                    raise _first_divergence(fg, start, sweep, it, q)
                if delta < max(tol, floor):
                    converged = True
                    break
        if tol == 0 and under_vmap():  # every row's q read at once: its error is built here, from the rows
            if bool(all_rows(torch.isnan(q.detach())).any()):
                raise _first_divergence(fg, start, sweep, it, q)
        elif tol == 0:  # the loop read nothing: one test of the result, deferred inside a training step
            check_or_defer(~torch.isnan(q.detach()).any(), lambda: _first_divergence(fg, start, sweep, it, q),
                           "MeanField: an update left a variable with no finite field (NaN q)",
                           kind=ModelSpecError, about_data=False)
        return MeanFieldResult(self._elbo(fg, q), q, converged, it)


def _update(q: torch.Tensor, block, tabs: list, theta_c: torch.Tensor, damping: float) -> torch.Tensor:
    """``[B, V_c, C]`` the new rows of one colour's variables given ``q``."""
    new = torch.softmax(block_field(theta_c, block, tabs, q), dim=-1)
    return (1 - damping) * new + damping * q[:, block.variables] if damping > 0 else new


def _sweep(q: torch.Tensor, blocks: list, tables: list, thetas: tuple, damping: float, may_write: bool,
           keep: bool) -> torch.Tensor:
    """``q`` after one sweep, a block update per colour (the blocks, their tables and unary rows of
    :meth:`MeanField._sweeps`).  Where ``may_write`` (outside :mod:`torch.func` transforms) the colours write
    their rows in place, but for the first colour when ``keep`` (``q`` itself is left as it was); elsewhere
    every colour copies."""
    for c, (block, tabs, theta_c) in enumerate(zip(blocks, tables, thetas)):
        new = _update(q, block, tabs, theta_c, damping)
        if may_write and (c > 0 or not keep):
            q.index_copy_(1, block.variables, new)
        else:
            q = q.index_copy(1, block.variables, new)
    return q


def _first_divergence(fg: FactorGraph, start: torch.Tensor, sweep: tuple, last: int,
                      found: torch.Tensor) -> ModelSpecError | EvidenceError:
    """The error for the NaN ``q`` ``found`` after sweep ``last``: an :class:`~hybridpgm.errors.EvidenceError`
    naming the evidence where it is impossible, through a chain of factors too
    (:func:`~hybridpgm.infer.mrf_possible_bound.impossible_evidence_error`), else a ModelSpecError.  For the
    latter, on this error path only, the sweeps run again from ``start``, every colour update read, to name the
    variable of the first update that gave a NaN: one with no finite field (a NaN spreads to its neighbours'
    updates, colour by colour, sweep by sweep)."""
    from hybridpgm.infer.mrf_possible_bound import impossible_evidence_error

    impossible = impossible_evidence_error(fg, "MeanField")
    if impossible is not None:
        return impossible
    blocks, tables, thetas, damping, may_write = sweep
    with torch.no_grad():
        q = start.detach().clone()
        for _ in range(last):
            for block, tabs, theta_c in zip(blocks, tables, thetas):
                new = _update(q, block, tabs, theta_c, damping)
                q = q.index_copy_(1, block.variables, new) if may_write else q.index_copy(1, block.variables, new)
                if bool(all_rows(torch.isnan(q)).any()):  # under vmap: any row's
                    return _diverged(fg, q)
    return _diverged(fg, found.detach())  # not met again (a device that sums in another order): the last q


def _check_init(init, fg: FactorGraph) -> torch.Tensor:
    """``init`` if it is a ``[B, V, C]`` (or ``[1, V, C]``) tensor of ``fg``'s dtype and device, else raise."""
    want = (fg.batch_size, fg.num_vars, fg.num_states)
    if not isinstance(init, torch.Tensor):
        raise DataError(f"MeanField init must be a tensor of shape {want}, got {type(init).__name__}")
    if init.dim() != 3 or init.shape[0] not in (1, want[0]) or tuple(init.shape[1:]) != want[1:]:
        raise DataError(f"MeanField init must have shape [B, V, C] = {want} (or [1, V, C]), "
                        f"got {tuple(init.shape)}")
    if init.dtype != fg.unary.dtype:
        raise DataError(f"MeanField init must have the potentials' dtype {fg.unary.dtype}, got {init.dtype}")
    check_device(init, fg.unary, "MeanField init")
    valid = fg.valid
    kept = init.masked_fill(~valid, 0.0)                                           # [B, V, C]
    # a variable the evidence (or its cardinality) fixes to one state has that q whatever the init says: a warm
    # start shared by batches with other evidence may put its mass elsewhere
    fixed = valid.sum(-1, keepdim=True) == 1                                       # [B, V, 1]
    kept = torch.where(fixed, valid.to(kept.dtype), kept)
    mass = kept.sum(-1, keepdim=True)
    bad = (~torch.isfinite(init) | (init < 0)).any(-1).expand(valid.shape[:2]) | (mass.squeeze(-1) <= 0)

    def error() -> DataError:
        r, b, v = first_row_where(bad)  # r: the row of a vmap (0 outside any)
        weights, allowed = (_row(all_rows(t), r)[min(b, t.shape[0] - 1), v] for t in (init, valid))
        return DataError(f"MeanField init for variable {fg.names[v]!r} (model {b}{_vmap_row(r)}) holds "
                         f"{weights.tolist()}: give finite, non-negative weights with some mass on the states the "
                         f"evidence allows ({allowed.nonzero().flatten().tolist()})")

    if under_vmap():  # every row's weights read at once (nothing deferred: the rows are vmap's, not fit's)
        if bool(all_rows(bad).any()):
            raise error()
        return kept / mass
    check_or_defer(~bad.any(), error, "MeanField init holds weights that are not finite and non-negative or "
                   "leave no mass on the states the evidence allows")
    return kept / mass


def _diverged(fg: FactorGraph, q: torch.Tensor) -> ModelSpecError:
    """The error for a NaN ``q``, naming the first variable (and model) that holds one."""
    row, b, v = first_row_where(torch.isnan(q).any(-1))
    return ModelSpecError(f"MeanField: the update of variable {fg.names[v]!r} (model {b}{_vmap_row(row)}) has no "
                          f"finite field on any state it may take: the expected log-potentials of its factors sum "
                          f"past the range of {q.dtype} (hard constraints near finfo.min?), or the evidence allows "
                          f"only such states; use penalties well inside the range (e.g. -1e4) or method='exact'")


def _vmap_row(row: int) -> str:
    """``, row r of the vmap`` under :func:`torch.func.vmap` (the rows of nested calls counted as one), else ``""``."""
    return f", row {row} of the vmap" if under_vmap() else ""


def _row(rows: torch.Tensor, r: int) -> torch.Tensor:
    """Row ``r`` of :func:`~hybridpgm.infer.vmap_rows.all_rows`' answer, its only row for a tensor not batched."""
    return rows[r if r < rows.shape[0] else 0]
