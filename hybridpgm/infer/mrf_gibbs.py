"""Chromatic (block) Gibbs sampling for discrete MRFs.

Given a proper colouring of the interaction graph, variables of one colour are
conditionally independent given the rest, so a whole colour class is resampled
in one vectorised step from

.. math::

    p(x_v \\mid x_{-v}) \\propto \\exp\\Big(\\theta_v(x_v) + \\sum_{f \\ni v} \\theta_f(x_v, x_{f \\setminus v})\\Big).

A sweep visits every colour once (two steps on a grid, the classic
checkerboard schedule [1]).  Many independent chains and many models run at
once: the state is ``[N, B, V]``.

Each colour's conditionals are computed from the factors that touch that colour only
(:mod:`hybridpgm.infer.mrf_colour_blocks`, planned once per call), so a sweep gathers each
factor-variable incidence once: :math:`O(N B \\sum_f k_f C)` table entries whatever the number of
colours (a fully connected pairwise net needs :math:`V` of them).  Each colour step draws the
``[N, B, V_c, C]`` uniforms of its own variables only (Gumbel-max, the noise of
:mod:`hybridpgm.graphs.gumbel_noise`: finite in every dtype, so a state of probability 0 is never drawn),
:math:`O(N B V C)` draws per sweep.  For a given ``generator`` (or global seed) the chains are reproducible
within a version of hybridpgm, not across versions: the order of the random draws is not part of the interface.
A variable with no state of finite score given its neighbours (a chain in a state of probability zero: hard
constraints) is drawn from its unary, within the evidence; evidence of probability zero raises
:class:`~hybridpgm.errors.EvidenceError` (:meth:`ChromaticGibbs.__call__`), and no state returned has probability zero.

**References**

[1] J. Gonzalez, Y. Low, A. Gretton, C. Guestrin, *Parallel Gibbs Sampling:
From Colored Fields to Thin Junction Trees*, 2011.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from hybridpgm.checks import as_integer, check_device, generator_or_none, sample_count
from hybridpgm.errors import ConfigError, DataError, EvidenceError
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.flat_index_add import flat_index, index_add_rows
from hybridpgm.graphs.gumbel_noise import log_exponential_
from hybridpgm.graphs.mrf_score import factor_graph_score
from hybridpgm.infer.mrf_colour_blocks import block_logits, colour_blocks
from hybridpgm.infer.mrf_possible_bound import check_possible
from hybridpgm.infer.vmap_rows import all_rows
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.options import Option
from hybridpgm.train.deferred_checks import check_or_defer
from hybridpgm.transform_scope import under_vmap

__all__ = ["ChromaticGibbs"]


class ChromaticGibbs:
    """Run ``num_chains`` parallel chromatic Gibbs chains on a :class:`FactorGraph`.

    :param int num_sweeps: sweeps before the returned state (burn-in included).
    :param int thin: if ``return_trace``, keep every ``thin``-th sweep.
    :param int burn_in: if ``return_trace``, sweeps discarded first.
    :raises ConfigError: the three are not integers with ``num_sweeps >= 1``, ``0 <= burn_in < num_sweeps`` and
        ``thin >= 1`` (``bool`` and floats refused).  The three are attributes
        (:class:`~hybridpgm.options.Option`): assigning one checks the same rule against the
        other two (``burn_in = num_sweeps`` would keep no sweep of the trace).
    """

    # each checked against the other two once all three are set (the constructor checks them together: a subclass
    # setting one before it runs is checked there)
    num_sweeps = Option(lambda self, value: _checked(self, 0, value))
    burn_in = Option(lambda self, value: _checked(self, 1, value))
    thin = Option(lambda self, value: _checked(self, 2, value))

    def __init__(self, num_sweeps: int = 100, burn_in: int = 0, thin: int = 1):
        vars(self).update(zip(("num_sweeps", "burn_in", "thin"), _counts(num_sweeps, burn_in, thin)))  # together

    @staticmethod
    def conditional_logits(fg: FactorGraph, x: torch.Tensor) -> torch.Tensor:
        """``[N, B, V, C]`` logits of every :math:`p(x_v \\mid x_{-v})` at state ``x [N, B, V]``.

        All variables at once, from every factor; a sweep uses the per-colour
        :func:`~hybridpgm.infer.mrf_colour_blocks.block_logits` (the same numbers, row for row).

        :param fg: the factor graph.
        :param x: ``[N, B, V]`` long states of ``N`` chains per model.
        """
        N, B = x.shape[:2]
        logits = fg.masked_unary().expand(N, -1, -1, -1)
        b_idx = torch.arange(B, device=x.device).view(1, B, 1)
        for g in fg.groups:
            F, k = g.variables.shape
            f_idx = torch.arange(F, device=x.device).view(1, 1, F)
            states = [x[:, :, g.variables[:, j]] for j in range(k)]  # [N, B, F] each
            msgs = []
            for j in range(k):
                index = (b_idx, f_idx) + tuple(
                    slice(None) if i == j else states[i] for i in range(k))
                msgs.append(g.log_potentials[index])  # [N, B, F, C]
            msgs = torch.stack(msgs, dim=3)  # [N, B, F, k, C]
            flat = msgs.reshape(N, B, F * k, msgs.shape[-1])  # explicit: N may be 0
            index = g.variables.reshape(-1)
            rows = flat_index(index, msgs.shape[-1])
            logits = logits + index_add_rows(torch.zeros_like(logits), index, rows, flat)
        return logits

    @staticmethod
    def _draw(logits: torch.Tensor, generator=None) -> torch.Tensor:
        # in at least float32: half uniforms are coarse near 1 (bfloat16's largest is 1 - 2^-8), which cut the
        # noise's upper tail at 5.5 (float16: 7.6): a state of logit -6 below the other was drawn 0.00146 of the
        # time for softmax's 0.00247 (review B); float32 and float64 draw the bits they drew
        u = torch.rand(logits.shape, dtype=torch.promote_types(logits.dtype, torch.float32), device=logits.device,
                       generator=generator)
        return ChromaticGibbs._pick(logits.to(u.dtype), u)

    @staticmethod
    def _pick(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Gumbel-max draw ``[...]`` from ``logits [..., C]`` with the uniforms ``u`` of the same shape (overwritten):
        the noise :func:`~hybridpgm.graphs.gumbel_noise.log_exponential_` gives, finite whatever the dtype, so a
        state of probability 0 (``-inf``) never wins (a lower bound of ``1e-20``, 0 in float16, let a uniform of 0
        there make the one possible state ``-inf`` too, and the first, impossible state won)."""
        return (logits - log_exponential_(u)).argmax(-1)

    @keyword_only_soon("init", "return_trace", "generator")
    def __call__(self, fg: FactorGraph, num_chains: int, *, init: torch.Tensor | None = None,
                 return_trace: bool = False, generator: torch.Generator | None = None):
        """Sample.

        :param int num_chains: ``N`` independent chains per model (a non-negative integer; ``0`` gives empty
            results).
        :param torch.Tensor init: optional ``[N, B, V]`` start of an integer dtype, on ``fg``'s device, with
            ``N == num_chains``, the graph's batch size ``B`` and number of variables ``V``, and every state
            within its variable's cardinality; default: a draw from the unary potentials alone.
        :returns: the final state ``[N, B, V]`` (long), or with ``return_trace``
            the kept states ``[S, N, B, V]``.
        :raises ConfigError: ``num_chains`` that is not a non-negative integer (``bool`` and floats included), or a
            ``generator`` that is neither a :class:`torch.Generator` nor ``None``.
        :raises DataError: an ``init`` that is not an integer tensor, has another shape, or holds a state
            outside its variable's ``0 .. cardinality - 1`` (the message names the variable and the state).
        :raises DeviceError: an ``init`` on another device than ``fg``.
        :raises EvidenceError: a model whose evidence has probability zero, naming it: before the sweeps where one
            variable shows it (:func:`~hybridpgm.infer.mrf_possible_bound.impossible_rows`), else after them where
            a kept sweep (the last, or each one the trace keeps) met a variable with no state of finite score given
            its neighbours (one on-device flag per colour, read once: a chain in a state of probability zero, whose
            argmax over ``-inf`` logits would have drawn state 0 whatever the evidence) and a kept state scores
            ``-inf`` (a later colour's step may leave such a state).  Each check is one host read, deferred inside
            :func:`~hybridpgm.fit`'s step.
        """
        num_chains = sample_count(num_chains, "ChromaticGibbs num_chains")
        generator = generator_or_none(generator, "ChromaticGibbs generator")
        with torch.no_grad():
            theta = fg.masked_unary()
            if init is None:
                x = self._draw(theta.expand(num_chains, -1, -1, -1), generator)
            else:
                x = _check_init(init, fg, num_chains)
            check_possible(fg, "ChromaticGibbs")  # evidence of probability zero, before any sweep
            blocks = colour_blocks(fg)
            thetas = [theta[:, block.variables] for block in blocks]  # [B, V_c, C]: what a dead row draws from
            trace, dead = [], [None] * len(blocks)  # dead: [B, V_c] per colour, a kept sweep's step had no state
            for sweep in range(self.num_sweeps):
                kept = (sweep >= self.burn_in and (sweep - self.burn_in) % self.thin == 0 if return_trace
                        else sweep == self.num_sweeps - 1)
                for i, block in enumerate(blocks):  # the colour's uniforms [N, B, V_c, C] only
                    logits = block_logits(fg, theta, block, x)
                    # no NaN or +inf there: a maximum of -inf is a variable with no finite state given its
                    # neighbours (a chain in a state of probability zero): it draws from its unary, so within the
                    # evidence (the argmax of -inf logits was state 0), and the chain may leave such states
                    none = logits.amax(-1, keepdim=True) == -math.inf  # [N, B, V_c, 1]
                    logits = torch.where(none, thetas[i], logits)
                    if kept:
                        none = none[..., 0].any(0)
                        dead[i] = none if dead[i] is None else dead[i] | none
                    x[:, :, block.variables] = self._draw(logits, generator)
                if return_trace and kept:
                    trace.append(x.clone())
            _check_kept(fg, blocks, dead, trace[0] if return_trace else x)  # the first kept state (see there)
        return torch.stack(trace) if return_trace else x


def _check_kept(fg: FactorGraph, blocks: list, dead: list, first: torch.Tensor) -> None:
    """Raise :class:`~hybridpgm.errors.EvidenceError` where a kept sweep's step found a variable with no state of
    finite score given its neighbours (``dead``: ``[B, V_c]`` per colour, ``None`` for a colour of no step) and the
    first kept state (``first``: ``[N, B, V]``) scores :math:`-\\infty`: a later colour's step may leave the state of
    probability zero such a step met (a unary-drawn start breaking a hard constraint), whose sweep then ends in a
    state of positive probability.  A chain in a state of finite score stays in one (each step then has a finite
    state, its current one, and draws one), so the first kept state is the one to score: one gather per factor.

    A sweep with no such step ends in a state of finite score (each factor is finite at the step of the last of its
    variables to be drawn, whose logits hold it), so every state returned is then one of positive probability that
    respects the evidence; a row of ``-inf`` logits, though, was drawn as state 0 by the argmax, whatever the
    evidence says.  One host read for the call (deferred inside :func:`~hybridpgm.fit`'s step; under
    :func:`torch.func.vmap`, every row of it at once)."""
    flags = [(b.variables, d) for b, d in zip(blocks, dead) if d is not None and b.variables.numel()]
    if not flags or not fg.batch_size:
        return
    bad = torch.cat([d for _, d in flags], -1)  # [B, V'] in the blocks' order of variables
    flat = dataclasses.replace(fg, batch_shape=torch.Size([fg.batch_size]))  # states hold B flattened
    ends = (factor_graph_score(flat, first) == -math.inf).any(0)  # [B]: a chain's first kept state scores -inf
    bad = bad & ends[:, None]

    def error(rows: torch.Tensor, where: str = "") -> EvidenceError:
        order = torch.cat([v for v, _ in flags]).tolist()
        b, j = (int(i) for i in rows.nonzero()[0])
        return EvidenceError(
            f"ChromaticGibbs: the chains of model {b}{where} end in a state of probability zero: at a kept sweep, "
            f"variable {fg.names[order[j]]!r} had no state of finite score given its neighbours' states (every "
            f"state scores -inf).  The evidence has probability zero through a chain of factors, or hard constraints "
            f"(-inf or finfo.min penalties) keep the chains in states of probability zero from their start (init); "
            f"exact sampling (method='exact') or MarkovNet.log_partition('exact') tells which")

    if under_vmap():
        rows = all_rows(bad)  # [R, B, V'] (R = 1 where the flags are batched at no vmap level)
        with torch._C._DisableFuncTorch():
            if bool(rows.any()):
                r = int(rows.flatten(1).any(1).nonzero()[0])
                raise error(rows[r], f" in row {r} of the vmap" if rows.shape[0] > 1 else "")
        return
    check_or_defer(~bad.any(), lambda: error(bad), "ChromaticGibbs: the chains end in a state of probability zero "
                   "(a variable with no state of finite score)", EvidenceError)


def _checked(gibbs: "ChromaticGibbs", index: int, value):
    """``value`` for count ``index`` (num_sweeps, burn_in, thin) checked against the other two with
    :func:`_counts`; held as given while they are not all set (before the constructor, which checks all three)."""
    counts = [vars(gibbs).get(name, _UNSET) for name in ("num_sweeps", "burn_in", "thin")]
    counts[index] = value
    return value if any(c is _UNSET for c in counts) else _counts(*counts)[index]


#: a count not set yet (``None`` is a value, and refused)
_UNSET = object()


def _counts(num_sweeps, burn_in, thin) -> list[int]:
    """``[num_sweeps, burn_in, thin]`` as ``int`` if they are integers with ``num_sweeps >= 1``,
    ``0 <= burn_in < num_sweeps`` and ``thin >= 1``, else :class:`~hybridpgm.errors.ConfigError` giving all three."""
    counts = [as_integer(k) for k in (num_sweeps, burn_in, thin)]
    if None in counts or counts[0] < 1 or counts[1] < 0 or counts[2] < 1 or counts[1] >= counts[0]:
        raise ConfigError(
            f"ChromaticGibbs: need integers num_sweeps >= 1, 0 <= burn_in < num_sweeps, thin >= 1; "
            f"got num_sweeps={num_sweeps}, burn_in={burn_in}, thin={thin}")
    return counts


def _check_init(init, fg: FactorGraph, num_chains: int) -> torch.Tensor:
    """A copy of ``init`` as ``long`` if it is a valid ``[N, B, V]`` start of ``fg``'s chains, else raise."""
    want = (num_chains, fg.batch_size, fg.num_vars)
    if not isinstance(init, torch.Tensor):
        raise DataError(f"ChromaticGibbs init must be an integer tensor of shape [N, B, V] = {want}, "
                        f"got {type(init).__name__}")
    if init.dtype == torch.bool or init.is_floating_point() or init.is_complex():
        raise DataError(f"ChromaticGibbs init must hold integer states, got dtype {init.dtype}")
    if tuple(init.shape) != want:
        raise DataError(f"ChromaticGibbs init must have shape [N, B, V] = {want} (N = num_chains, B and V "
                        f"of the factor graph), got {tuple(init.shape)}")
    check_device(init, fg.unary, "ChromaticGibbs init")
    cards = fg.cardinalities.to(init.device)
    bad = (init < 0) | (init >= cards)
    if bool(bad.any()):
        n, b, v = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"ChromaticGibbs init holds state {int(init[n, b, v])} of variable {fg.names[v]!r} "
                        f"(chain {n}, batch row {b}), which has {int(cards[v])} states (0 .. {int(cards[v]) - 1})")
    return init.to(torch.long, copy=True)
