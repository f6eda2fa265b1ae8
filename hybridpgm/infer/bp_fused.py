"""The scripted, allocation-free forward pass of the binary pairwise BP fast path.

When nothing asks for gradients, :class:`~hybridpgm.infer.BeliefPropagation`
runs a binary pairwise graph (an Ising grid, say) as *one* TorchScript call,
:func:`binary_forward`: the coefficients (:func:`binary_coefficients`), the
``K`` flooding steps (:func:`binary_loop`) and the marginals.  The eager,
differentiable :class:`~hybridpgm.infer.bp_engine.BinaryPairwise` calls the
same :func:`binary_coefficients` and steps with the same formula, so both
paths give the same numbers up to rounding (a batch of one folds the fields into
the summed gather, so its additions may come in another order).  One step on the shifted log-odds messages
:math:`d' \\in \\mathbb R^{2F \\times B}` (``F`` factors, two directed edges
each, batch last) is six kernels,

.. math::

    x = G d' + \\beta, \\qquad d' \\leftarrow s \\odot \\log\\big(1 + k \\odot \\sigma(x)\\big),

``embedding_bag`` (the 0/1 pattern :math:`G`: "the other messages into the
factor's other variable"), ``add``, ``sigmoid``, ``mul``, ``log1p``, ``mul``
(batch 1: ``index_select`` and ``sum`` in place of the first two),
with :math:`\\beta` the folded fields and tables, :math:`k = e^{|\\Delta|} - 1`
and :math:`s = \\operatorname{sign}\\Delta` per factor (the derivation is in
:class:`~hybridpgm.infer.bp_engine.BinaryPairwise`).  What was measured to
matter, one CPU thread, interleaved rounds against the previous version:

* **half the transcendental work**: one ``sigmoid`` and one ``log1p`` per
  message instead of two ``softplus`` (torch's CPU ``softplus`` costs about ten
  times a ``sigmoid``); 1.3x faster at 16x16 batch 1, 2x at 64x64 batch 16;
* **no allocation inside the loop**: the intermediate lives in one buffer made
  once and written with ``out=`` variants, and the messages are updated in
  place (fresh ``[2, E, B]`` tensors cost page faults at 64x64 batch 16);
* **forward-only kernels**: ``torch.embedding_bag`` skips its backward
  book-keeping when no input requires grad, and its ``include_last_offset``
  form spares a copy of the offsets per call;
* **batch 1: a padded 1-D gather** (:func:`gather_others`) instead of
  ``embedding_bag``, whose one-column rows cost ~4 ns per entry: one
  ``index_select`` into a ``[W, E]`` buffer whose last row holds
  :math:`\\beta`, and one sum over its rows gives :math:`x` (the ``add``
  disappears); 4.7x faster gathers at 128x128, 1.3x at 16x16, and
  :math:`k`, :math:`s` are expanded to full shape once (no broadcasting in
  the loop);
* **TorchScript** (:func:`torch.jit.script`, compiled on first use, never at
  import; 0.1-0.3 s once per process; compiled by
  :func:`~hybridpgm.torchscript.script_function`, without the deprecation
  warning of recent torch and without touching the process's warning
  filters, which other threads share): the interpreter costs about 1 microsecond per
  kernel against about 2 for Python, which matters where each kernel touches
  only a thousand numbers (16x16, batch 1: ~350 kernels per call).  Where
  scripting is unavailable the same functions run eagerly.  ``torch.compile``
  is deliberately not used: it compiled for ~100 s here.

The coefficients and the marginals are inside the scripted call too (about
40 small kernels per call that would otherwise each pay Python's overhead).
What did not pay: folding the sign into ``embedding_bag``'s per-sample weights,
or the bias into extra ``embedding_bag`` entries (within 5%: the kernel's
per-entry cost grows), and a CSR sparse ``addmm`` (slower than
``embedding_bag``).

Damping and convergence checks (``tol > 0``, every ``check_every`` steps, the
only device-to-host synchronisation in the loop; a check passes when each
model's change is below ``max(tol, c * eps * max|d'|)`` of that model,
:mod:`hybridpgm.infer.rounding_floor` and its :func:`~hybridpgm.infer.rounding_floor.check_margin`) follow
:meth:`BeliefPropagation._iterate <hybridpgm.infer.BeliefPropagation>`
exactly.  Couplings so strong that :math:`e^{|\\Delta|}` overflows the dtype,
and max-product, use the two-branch step :math:`f(x_1) - f(x_2)` with
:math:`f` = ``softplus`` or ``relu`` instead; tables or fields beyond
:func:`odds_max_spread` (huge finite penalties as hard constraints) return at
once, no step run, for the general path.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch

from hybridpgm.infer.rounding_floor import check_margin, rounding_floor, tol_above
from hybridpgm.softplus import softplus_threshold
from hybridpgm.torchscript import script_function

__all__ = ["binary_coefficients", "binary_forward", "binary_loop", "damp_odds", "gather_others", "odds_max_spread",
           "run_binary_forward"]


def damp_odds(new: torch.Tensor, old: torch.Tensor, c0: torch.Tensor, damping: float, it: int) -> torch.Tensor:
    """Damped shifted log-odds :math:`d'`.

    See :meth:`BinaryPairwise.damp <hybridpgm.infer.bp_engine.BinaryPairwise.damp>`.

    ``new``, ``old``, ``c0``: ``[E, B]``; step ``it`` weighs the old message by
    :math:`\\alpha (1 + \\alpha^{it-1})` so that the normalised messages equal
    those of the general log-space damping.
    """
    new = new + c0
    old = old + c0
    a = math.log1p(-damping)
    b = math.log(damping) + math.log1p(damping ** (it - 1))
    ls = torch.nn.functional.logsigmoid
    up = torch.logaddexp(ls(new) + a, ls(old) + b)
    down = torch.logaddexp(ls(-new) + a, ls(-old) + b)
    return up - down - c0


def gather_others(d: torch.Tensor, cols: torch.Tensor, offsets: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """``[E, B]`` sparse product :math:`G d`: per edge, the sum of ``d [E, B]`` over its CSR row.

    Batch 1 with a padded pattern ``pad`` (``[W * E]`` long, row-major ``[W, E]``,
    index ``E`` standing for "nothing") takes a 1-D ``index_select`` and a sum
    over the ``W`` rows: ``embedding_bag`` with one column costs ~4 ns per entry,
    the 1-D gather under 1 (16x16: 1.3x, 128x128: 4.7x faster, measured).  The
    rows are summed in CSR order either way, but torch's ``sum`` over the ``W`` rows may pair its additions
    otherwise than ``embedding_bag``: the same numbers up to rounding, not bit for bit.
    """
    E = d.shape[0]
    if pad.numel() > 0 and d.shape[1] == 1:
        flat = torch.cat([d.reshape(-1), d.new_zeros(1)])
        return flat.index_select(0, pad).view(-1, E).sum(0).view(E, 1)
    return torch.embedding_bag(d, cols, offsets, False, 0, False, None, True, None)[0]


def binary_coefficients(log_potentials: torch.Tensor, unary: torch.Tensor, other_var: torch.Tensor,
                        cols: torch.Tensor, offsets: torch.Tensor, num_factors: int, max_product: bool,
                        limit: float, max_spread: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                  torch.Tensor, torch.Tensor, bool, bool]:
    """The constants of the binary pairwise step, batch last.

    :param torch.Tensor log_potentials: ``[B, F, 2, 2]`` (``B`` may be 1).
    :param torch.Tensor unary: ``[B, V, 2]``.
    :param torch.Tensor other_var: ``[2F]`` long, each edge's source variable.
    :param cols: CSR pattern of :math:`G` (``include_last_offset`` form, with ``offsets``).
    :param float limit: the largest :math:`|\\Delta|` for which :math:`e^{|\\Delta|}`
        is finite in the dtype.
    :param float max_spread: :func:`odds_max_spread` of the dtype.
    :returns: ``(c0 [2F, B], h [V, B], bias, scale, sign, odds_form, precise)``: the
        shift :math:`c_0`, the fields in log-odds, and either (odds form)
        ``bias [2, F, B]``, ``scale`` :math:`e^{|\\Delta|} - 1` and ``sign``
        ``[F, B]``, or (two-branch form) ``bias [2, 2F, B]`` and empty ``scale``,
        ``sign``; ``precise``: whether every :math:`|c_0|`, :math:`|\\Delta|` and field :math:`|h|` is at most
        ``max_spread`` (else the step would lose the finite parts next to a huge penalty, and the caller runs the
        general path).  Deciding both is one host read, outside any loop.
    """
    F = num_factors
    # Message to x0: theta_ab = t[b, a] (a: the other argument's state, b: the target's); to x1:
    # theta_ab = t[a, b].  c0 = th01 - th00, c2 = th10 - th00, c1 = th11 - th01 = c2 + Delta, with the
    # interaction Delta = t00 + t11 - t01 - t10 shared by both directions, and c2 of one direction
    # equal to c0 of the other.  The table is transposed once as a 2-D [B, 4F] -> [4F, B] copy (a
    # 3-D permuting copy, or a skinny matmul, was several times slower at 128x128 batch 16).
    Bt = log_potentials.numel() // (4 * F)
    t = log_potentials.reshape(Bt, 4 * F).t().contiguous().view(F, 4, Bt)   # t00 t01 t10 t11
    t00 = t[:, 0]
    c0 = torch.stack([t[:, 2] - t00, t[:, 1] - t00])                 # [2, F, B]: to x0, to x1
    delta = (t[:, 3] - t[:, 2]) - c0[1]                              # [F, B]
    h = (unary[:, :, 1] - unary[:, :, 0]).t().contiguous()           # [V, B]
    c0 = c0.view(2 * F, Bt)
    # once per call: embedding_bag directly (one kernel; the same sums as the padded gather)
    gathered = torch.embedding_bag(c0, cols, offsets, False, 0, False, None, True, None)[0]
    hb = (h.index_select(0, other_var) + gathered).view(2, F, -1)    # [2, F, B]
    sign = delta.new_zeros(())
    mag = sign
    if not max_product:
        sign = torch.copysign(torch.ones([], dtype=delta.dtype, device=delta.device), delta)
        mag = delta * sign                                           # |Delta|, gradient +-1 at Delta = 0
    # one host read for both decisions: -1 where a magnitude is beyond max_spread, else max |Delta| (sum-product)
    top = torch.maximum(torch.maximum(c0.detach().abs().amax(), h.detach().abs().amax()),
                        delta.detach().abs().amax())
    code = float(torch.where(top <= max_spread, mag.detach().amax(), -torch.ones_like(top)))
    precise = code >= 0.0
    odds_form = precise and not max_product and code < limit
    c0x = c0.view(2, F, Bt)
    if odds_form:
        low = delta.clamp(max=0.0)                                   # bias: c2 if Delta >= 0, c1 = c2 + Delta if < 0
        bias = hb + torch.stack([c0x[1] + low, c0x[0] + low])        # [2, F, B]
        return c0, h, bias, torch.expm1(mag), sign, True, precise
    c2 = torch.stack([c0x[1], c0x[0]])
    bias = torch.stack([hb + (c2 + delta), hb + c2]).view(2, 2 * F, -1)   # [2, 2F, B]: c1, c2
    empty = bias.new_zeros(())
    return c0, h, bias, empty, empty, False, precise


def binary_loop(d: torch.Tensor, cols: torch.Tensor, offsets: torch.Tensor, pad: torch.Tensor, bias: torch.Tensor,
                scale: torch.Tensor, sign: torch.Tensor, c0: torch.Tensor, num_iters: int, odds_form: bool,
                max_product: bool, threshold: float, damping: float, tol: float,
                check_every: int, floor: float = 0.0) -> Tuple[torch.Tensor, bool, int]:
    """Run up to ``num_iters`` steps on the shifted messages ``d [E, B]``, overwriting ``d``.

    The arguments are :class:`~hybridpgm.infer.bp_engine.BinaryPairwise`'s
    fields: ``cols``/``offsets`` the CSR pattern of :math:`G` (long,
    ``include_last_offset`` form), ``bias`` ``[2, F, B]`` (odds form, with
    ``scale`` :math:`e^{|\\Delta|} - 1` and ``sign`` ``[F, B]``) or
    ``[2, E, B]`` (two-branch form), ``c0`` ``[E, B]`` the shift (used by
    damping only); ``floor`` :math:`c\\,\\epsilon` of the dtype
    (:func:`~hybridpgm.infer.rounding_floor.rounding_floor`): a check passes when every model's (column's)
    largest change is below ``max(tol, floor * max|d|)`` of that model, all read in one host read
    (:func:`~hybridpgm.infer.rounding_floor.check_margin`).

    :returns: ``(d, converged, steps run)``; steps run is 0 (a sentinel: at least one step always runs) when a
        check found a NaN message, where the loop stops.
    """
    E = d.shape[0]
    use_pad = pad.numel() > 0 and d.shape[1] == 1
    # batch 1, odds form: the bias is one more row of the padded gather, so the row sum is x itself
    fold = use_pad and odds_form
    ext = d.new_zeros(E + 1 if use_pad else 0)                      # batch-1 state with a trailing zero
    gbuf = d.new_empty(pad.numel() + (E if fold else 0) if use_pad else 0)
    gsel = gbuf[:pad.numel()]
    gathered = d.new_empty((E, 1) if use_pad else (0, 1))
    x = torch.empty_like(bias)
    x0 = x[0]
    x1 = x[1]
    if use_pad:
        ext[:E].copy_(d.view(-1))
        d = ext[:E].view(E, 1)
        if fold:
            gbuf[pad.numel():].copy_(bias.reshape(-1))
    d3 = d.view(2, -1, d.shape[1])
    if odds_form and d.shape[1] == 1:  # same-shape operands: ~4% less per step at 16x16 (broadcast costs)
        scale = scale.expand(x.shape).contiguous()
        sign = sign.expand(x.shape).contiguous()
    prev = d.new_empty([d.shape[0], d.shape[1]] if tol > 0 or damping > 0 else [0, 1])
    converged = False
    it = 0
    limit = tol_above(tol, d.dtype) if tol > 0 and d.shape[1] > 1 else tol  # one model: the test on the host
    for step in range(1, num_iters + 1):
        it = step
        if use_pad:
            torch.index_select(ext, 0, pad, out=gsel)
            torch.sum(gbuf.view(-1, E), [0], False, out=x.view(E) if fold else gathered.view(E))
        else:
            gathered = torch.embedding_bag(d, cols, offsets, False, 0, False, None, True, None)[0]
        check = tol > 0 and (step % check_every == 0 or step == num_iters)
        if check or damping > 0:
            prev.copy_(d)
        if odds_form:  # d' = sign * log1p(scale * sigmoid(x)) on [2, F, B]
            if not fold:
                torch.add(gathered.view(2, -1, gathered.shape[1]), bias, out=x)
            torch.sigmoid(x, out=x)
            torch.mul(x, scale, out=x)
            torch.log1p(x, out=x)
            torch.mul(x, sign, out=d3)
        else:  # d' = f(x_1) - f(x_2) on [2, 2F, B]
            torch.add(gathered, bias, out=x)
            if max_product:
                torch.clamp_min(x, 0.0, out=x)
            else:
                torch._C._nn.softplus(x, 1.0, threshold, out=x)
            torch.sub(x0, x1, out=d)
        if damping > 0:
            d.copy_(damp_odds(d, prev, c0, damping, step))
        if check:
            margin = check_margin(d, torch.sub(d, prev, out=prev), 0, limit, floor)  # the change overwrites prev
            # margin is NaN (TorchScript: math.isnan is an int in torch 2.5, m != m False) and a message NaN
            if not (margin <= 0.0 or margin > 0.0) and bool(torch.isnan(d).any()):  # not inf - inf: the sentinel
                it = 0
                break
            if margin < 0.0:
                converged = True
                break
    return d, converged, it


def binary_forward(log_potentials: torch.Tensor, unary: torch.Tensor, edge_var: torch.Tensor,
                   other_var: torch.Tensor, cols: torch.Tensor, offsets: torch.Tensor, pad: torch.Tensor,
                   num_factors: int,
                   num_iters: int, max_product: bool, threshold: float, limit: float, damping: float,
                   tol: float, check_every: int, max_spread: float, floor: float = 0.0
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool, int]:
    """Coefficients, up to ``num_iters`` steps from zero messages, and the beliefs, in one call.

    :returns: ``(marginals [B, V, 2], L [V, B] belief log-odds, d [2F, B] final
        log-odds messages, converged, steps run)``; steps run is 0 when a check found a NaN message
        (:func:`binary_loop`), and -1, with no step run, where the coefficients are not precise
        (:func:`binary_coefficients`; the caller runs the general path).
    """
    c0, h, bias, scale, sign, odds_form, precise = binary_coefficients(
        log_potentials, unary, other_var, cols, offsets, num_factors, max_product, limit, max_spread)
    if not precise:
        return h, h, c0, False, -1
    batch = max(h.shape[1], c0.shape[1])
    d = (-c0).expand(2 * num_factors, batch).contiguous()
    d, converged, it = binary_loop(d, cols, offsets, pad, bias, scale, sign, c0, num_iters, odds_form,
                                   max_product, threshold, damping, tol, check_every, floor)
    d.add_(c0)                                                       # shifted state -> log-odds messages
    L = h.index_add(0, edge_var, d)
    Lt = L.t().unsqueeze(-1)
    marginals = torch.sigmoid(torch.cat([-Lt, Lt], -1))
    return marginals, L, d, converged, it


_SCRIPTED: Optional[Callable] = None
#: why scripting failed, if it did (the eager fallback gives the same numbers, only slower)
_SCRIPT_ERROR: Optional[Exception] = None


def _compiled() -> Callable:
    """:func:`binary_forward`, scripted once per process on first use (eager if scripting fails)."""
    global _SCRIPTED
    if _SCRIPTED is None:
        try:
            _SCRIPTED = script_function(binary_forward)  # no deprecation notice, the warning filters untouched
        except Exception as e:  # TorchScript missing, or no source to compile: the same functions, eagerly
            global _SCRIPT_ERROR
            _SCRIPT_ERROR = e
            _SCRIPTED = binary_forward
    return _SCRIPTED


def dtype_limits(dtype: torch.dtype) -> Tuple[float, float]:
    """``(softplus threshold, largest |Delta| with a finite e^|Delta|)`` for ``dtype`` (the threshold of
    :func:`hybridpgm.softplus.softplus_threshold`)."""
    return softplus_threshold(dtype), math.log(torch.finfo(dtype).max) - 1.0


def odds_max_spread(dtype: torch.dtype) -> float:
    """The largest :math:`|c_0|`, :math:`|\\Delta|` or field :math:`|h|` the log-odds path takes in ``dtype``:
    :math:`\\epsilon^{-1/2} / 32`.

    A binary message is one number, so a state a factor forbids and the state it allows share it: with a penalty
    :math:`-H` (``-1e30`` as "forbidden") the step forms :math:`H + a - H` and keeps only :math:`\\epsilon H` of the
    finite part :math:`a` (in ``float32`` nothing of it from :math:`H \\approx 10^8`: finite, wrong marginals).
    Under this bound that error stays below :math:`\\sqrt\\epsilon / 32` (``float32``: magnitudes up to 90, error
    about :math:`10^{-5}`; ``float64``: up to :math:`2 \\cdot 10^6`, about :math:`5 \\cdot 10^{-10}`); beyond it
    (hard constraints written as large finite penalties, couplings of :math:`|J| > 22` in ``float32``)
    :class:`~hybridpgm.infer.BeliefPropagation` runs the general path, which keeps the states apart and loses
    precision only at the states ruled out.
    """
    return torch.finfo(dtype).eps ** -0.5 / 32


def run_binary_forward(log_potentials: torch.Tensor, unary: torch.Tensor, structure, num_iters: int,
                       max_product: bool, damping: float, tol: float, check_every: int, script: bool = True):
    """:func:`binary_forward` through TorchScript (``script=True``) or eagerly.

    :param structure: ``(edge_var, other_var, cols, offsets, pad)`` of
        :func:`hybridpgm.infer.bp_engine._structure`.
    """
    edge_var, other_var, cols, offsets, pad = structure
    threshold, limit = dtype_limits(unary.dtype)
    fn = _compiled() if script else binary_forward
    return fn(log_potentials, unary, edge_var, other_var, cols, offsets, pad, edge_var.shape[0] // 2, int(num_iters),
              bool(max_product), threshold, limit, float(damping), float(tol), int(check_every),
              odds_max_spread(unary.dtype), rounding_floor(unary.dtype))
