"""Loopy belief propagation as ``K`` unrolled, differentiable message-passing steps.

Sum-product messages on the factor graph, in log space [1]:

.. math::

    n_{v \\to f}(x_v) &= \\theta_v(x_v) + \\sum_{g \\ni v, g \\ne f} m_{g \\to v}(x_v), \\\\
    m_{f \\to v}(x_v) &= \\log \\sum_{x_f \\setminus x_v} \\exp\\Big(\\theta_f(x_f)
        + \\sum_{u \\in f, u \\ne v} n_{u \\to f}(x_u)\\Big),

updated in parallel ("flooding") with damping
:math:`m \\leftarrow \\log((1-\\alpha) e^{m_{new}} + \\alpha e^{m_{old}})`.
Max-product replaces the log-sum-exp by a max and gives MAP assignments.
The log-partition estimate is the negative Bethe free energy [2]

.. math::

    \\log Z_{Bethe} = \\sum_f \\mathbb E_{b_f}[\\theta_f] + \\sum_v \\mathbb E_{b_v}[\\theta_v]
      + \\sum_f H(b_f) + \\sum_v (1 - d_v) H(b_v),

which is exact on trees (and BP converges there in diameter-many steps; :mod:`hybridpgm.infer.bethe`).
BP iterates on the unary tables less their detached maxima over the states the evidence allows
(:func:`~hybridpgm.graphs.mrf_centring.centred_unary`; the engine centres the factor tables the same way), so a
constant added to a table never enters a message; the Bethe estimate adds the maxima back, once.
Every step is an ordinary torch operation, so gradients flow from the beliefs
or :math:`\\log Z_{Bethe}` back into the potentials through all ``K`` steps
("unrolled inference as a computation graph", [3]).

The messages of the whole graph live in one tensor and an iteration is a
fixed sequence of whole-graph gathers, ``logsumexp`` and ``index_add`` calls
(:mod:`hybridpgm.infer.bp_engine`); binary pairwise graphs such as Ising grids
take a log-odds fast path, which runs as one allocation-free TorchScript call
when nothing requires gradients (:mod:`hybridpgm.infer.bp_fused`, the same
numbers up to rounding: a batch of one adds the fields inside the summed
gather, so its sums may round in another order, measured 3e-17 in float64).
Nothing inside the loop waits for the device: convergence (``tol > 0``) is
checked only every ``check_every`` steps, each model of the batch against its
own threshold, in one host read.

**References**

[1] J. Pearl, *Probabilistic Reasoning in Intelligent Systems*, 1988.

[2] J. S. Yedidia, W. T. Freeman, Y. Weiss, *Constructing Free-Energy
Approximations and Generalized Belief Propagation Algorithms*, 2005.

[3] J. Domke, *Learning Graphical Model Parameters with Approximate Marginal
Inference*, 2013.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch

from hybridpgm.checks import damping_of, flag, positive_int, positive_real
from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.mrf_centring import centred_unary
from hybridpgm.infer.bethe import bethe_log_z
from hybridpgm.infer.bp_last_graph import LastGraphPlan
from hybridpgm.infer.bp_engine import BinaryPairwise, FlatGraph, _structure, damp_log, odds_to_flat
from hybridpgm.infer.bp_fused import run_binary_forward
from hybridpgm.infer.max_product_decoding import decode_in_layers
from hybridpgm.infer.rounding_floor import cached_tol_above, rounding_floor, scale_cap, step_margin
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.options import Option
from hybridpgm.portable_result import PortableResult

__all__ = ["BPResult", "BeliefPropagation"]


class BPResult(PortableResult):
    """Output of :class:`BeliefPropagation` (batch flattened to ``B``).

    :param marginals: the ``[B, V, C]`` beliefs (held as :attr:`marginals`).
    :param assignment: the ``[B, V]`` argmax of the beliefs, or a callable computing it on first access.
    :param bool converged: held as :attr:`converged`.
    :param int num_iters: held as :attr:`num_iters`.
    :param log_z_fn: a callable computing :attr:`log_z` on first access, or ``None`` (max-product).
    :param decode_fn: a callable computing :attr:`decoded_assignment` on first access, or ``None``.
    :ivar torch.Tensor log_z: ``[B]`` Bethe estimate of :math:`\\log Z`
        (``None`` for max-product); computed on first access.
    :ivar torch.Tensor marginals: ``[B, V, C]`` variable beliefs (max-marginals,
        normalised, for max-product).
    :ivar torch.Tensor assignment: ``[B, V]`` argmax of the beliefs; computed on first access.
    :ivar torch.Tensor decoded_assignment: ``[B, V]`` (max-product only, else ``None``) the assignment decoded
        a layer of variables at a time, each conditioned on those before it
        (:func:`~hybridpgm.infer.max_product_decoding.decode_in_layers`): where max-marginals tie, the
        per-variable argmax need not be a most probable assignment even on a tree, and this is; computed on
        first access.
    :ivar bool converged: whether, at a check, every model's (batch row's) largest message change fell below
        ``tol`` (or that model's float rounding floor, see :class:`BeliefPropagation`); one flag for the batch,
        always ``False`` when ``tol == 0``.
    :ivar int num_iters: steps run (the same for every model of the batch).

    ``to``/``cpu``/``to_dict`` (:class:`~hybridpgm.portable_result.PortableResult`) compute the parts computed on
    first access first, as pickling does: a moved result holds values, not closures over the graph and the
    messages on the old device.
    """

    def __init__(self, marginals: torch.Tensor, assignment: torch.Tensor | Callable[[], torch.Tensor],
                 converged: bool, num_iters: int, log_z_fn: Callable[[], torch.Tensor] | None = None,
                 decode_fn: Callable[[], torch.Tensor] | None = None):
        self.marginals = marginals
        self.converged = converged
        self.num_iters = num_iters
        self._assignment = assignment
        self._log_z_fn = log_z_fn
        self._log_z = None
        self._decode_fn = decode_fn
        self._decoded = None

    @property
    def decoded_assignment(self) -> torch.Tensor | None:
        if self._decoded is None and self._decode_fn is not None:
            self._decoded = self._decode_fn()
            self._decode_fn = None
        return self._decoded

    @property
    def assignment(self) -> torch.Tensor:
        if callable(self._assignment):
            self._assignment = self._assignment()
        return self._assignment

    @property
    def log_z(self) -> torch.Tensor | None:
        if self._log_z is None and self._log_z_fn is not None:
            self._log_z = self._log_z_fn()
            self._log_z_fn = None
        return self._log_z

    def __getstate__(self) -> dict:
        """The state pickled: the parts computed on first access are computed now (the closures that compute
        them hold the factor graph and the messages, and cannot be pickled)."""
        self.assignment, self.log_z, self.decoded_assignment  # noqa: B018 -- each computes and caches its value
        return dict(self.__dict__)

    def _result_fields(self) -> dict:
        """The public fields, name -> value, for :class:`~hybridpgm.portable_result.PortableResult`'s ``to`` and
        ``to_dict``: the parts computed on first access are computed now (``to`` moves values, and the closures
        hold the graph and the messages on the old device; pickling computes them too)."""
        return {"marginals": self.marginals, "assignment": self.assignment, "log_z": self.log_z,
                "decoded_assignment": self.decoded_assignment, "converged": self.converged,
                "num_iters": self.num_iters}

    def _with_result_fields(self, values: dict) -> BPResult:
        """A new result holding ``values`` (names as :meth:`_result_fields` gives them; the others shared)."""
        new = copy.copy(self)  # computes the lazy parts (__getstate__), as _result_fields did
        renamed = {"assignment": "_assignment", "log_z": "_log_z", "decoded_assignment": "_decoded"}
        for name, value in values.items():
            setattr(new, renamed.get(name, name), value)
        return new

    def __repr__(self) -> str:
        kind = "max-product" if self._log_z is None and self._log_z_fn is None else "sum-product"
        return (f"BPResult({kind}, marginals={list(self.marginals.shape)} {self.marginals.dtype}, "
                f"converged={self.converged}, num_iters={self.num_iters})")


class BeliefPropagation:
    """Damped loopy sum-product (or max-product) belief propagation.

    :param int num_iters: number ``K`` of unrolled parallel message updates.
    :param float damping: :math:`\\alpha \\in [0, 1)`.
    :param float tol: stop early at the first check where, for every model :math:`b` of the batch, the largest
        change :math:`\\delta_b` of its messages is below ``tol`` (or its rounding floor, below); ``0`` runs all
        ``K`` steps.  Every model runs the same steps: one still moving keeps the others iterating (towards their
        fixed points).  The quantity compared depends on the path that runs (both are taken between the
        step before a check and the check's step, after damping):

        * general path: :math:`\\delta_b = \\max_{e, x} |m'_{b,e}(x) - m_{b,e}(x)|` over every edge (factor and
          target variable) and padded state of the factor-to-variable log-messages ``[B, E, C]``, each normalised
          so that :math:`\\log \\sum_{x \\text{ valid}} e^{m_{b,e}(x)} = 0` over the target's valid states (the
          entries at the other states count too, though no belief uses them);
        * binary fast path (all variables binary, pairwise factors only, nothing clamped;
          :class:`~hybridpgm.infer.bp_engine.BinaryPairwise` and :mod:`~hybridpgm.infer.bp_fused`):
          :math:`\\delta_b = \\max_{e} |d'_{b,e} - d_{b,e}|` of the message log-odds :math:`d = m(1) - m(0)`.

        A normalised binary log-message is :math:`m(1) = -\\operatorname{softplus}(-d)`,
        :math:`m(0) = -\\operatorname{softplus}(d)`, whose slopes in :math:`d` lie in :math:`(0, 1)`, so each
        moves by less than :math:`|\\Delta d|`: the fast path's test is the stricter one, and the same binary
        graph may run more steps (and end closer to the fixed point) there than on the general path (which an
        extra factor of arity 3, even an all-zero one, selects).  Both are kept as they are: the fast path
        compares the state it holds, with no extra kernel or host read.

        **Rounding floor.**  A check passes when every :math:`\\delta_b < \\max(\\mathrm{tol}, c\\,\\epsilon\\,s_b)`
        (:mod:`~hybridpgm.infer.rounding_floor`): :math:`\\epsilon` the dtype's machine epsilon, :math:`c = 16`
        (about the roundings one update makes, each half an ulp, twice for a difference), :math:`s_b` the largest
        magnitude of model :math:`b`'s compared messages (log-messages or shifted log-odds), read with the changes
        in the same host read (entries beyond :math:`\\epsilon^{-1/2}`, finite stand-ins for hard constraints, left
        out of :math:`s_b`).  Recomputing a message rounds it, and the general path's :math:`b_v - m_{f \\to v}`
        feeds each message back into its own update, so in ``float32`` messages of magnitude 50 keep moving by
        about :math:`8 \\cdot 10^{-6}` forever, even on a tree where BP is exact: an absolute ``tol = 1e-6`` would
        never be met there.  In ``float64`` the floor is at most :math:`c \\sqrt{\\epsilon} = 2.4 \\cdot 10^{-7}`,
        so the default ``tol`` is the test, unchanged.

        **In a batch.**  Each model's floor comes from its own scale :math:`s_b`: a strongly coupled model beside
        it (messages of magnitude 2500: a ``float32`` floor of :math:`4.8 \\cdot 10^{-3}`) does not stop a weakly
        coupled one early (with one scale over the whole batch it did, leaving that row :math:`5 \\cdot 10^{-4}`
        from its fixed point at ``tol = 1e-6``).  For a batch of one the test is the one above, bit for bit.  The
        test bounds the change of the checked step, not the distance to the fixed point: where the messages
        contract by a factor :math:`\\rho` per step, about :math:`\\delta_b \\rho / (1 - \\rho)` is left, many
        times ``tol`` for slowly converging (strongly coupled, damped) models.  A model kept iterating by a slower
        one in its batch moves on towards its fixed point, so its answer differs from its answer alone by about
        what its own stop leaves when alone, not by ``tol`` (measured: :math:`1.4 \\cdot 10^{-5}` at
        ``tol = 1e-6`` in ``float64``, a damped 6 x 6 Potts grid batched with one that took 2190 steps against its
        130, and the answer alone that far from the fixed point).  ``tol = 0`` (all ``K`` steps for every model)
        gives answers that do not depend on the batch, up to rounding.
    :param int check_every: test convergence every this many steps (each test
        is one device-to-host synchronisation); the last step is always tested.
    :param bool max_product: run max-product (MAP) instead of sum-product.

    Hard constraints may be written as huge finite penalties (``-1e30``): binary pairwise graphs whose tables or
    fields exceed :func:`~hybridpgm.infer.bp_fused.odds_max_spread` (about 90 in ``float32``, :math:`2 \\cdot 10^6`
    in ``float64``) run on the general path, whose per-state messages keep the finite parts next to a penalty, so
    the answer is the one of ``-inf`` penalties (the log-odds path kept only :math:`\\epsilon H` of them).  Sums
    of entries near ``finfo.min`` (several violated constraints of ``finfo.min`` each) still overflow to
    :math:`-\\infty` and the messages to NaN. A convergence check (``tol > 0``; the last step is always checked)
    that finds a NaN message raises :class:`~hybridpgm.errors.ModelSpecError` naming the variable it goes to, at no
    extra host read; with ``tol=0`` nothing is read and such beliefs come back NaN.

    :raises ConfigError: ``num_iters`` or ``check_every`` that is not a positive integer (``2.5``, ``True`` and
        ``0`` are refused, not rounded), ``damping`` that is not a real number in ``[0, 1)``, ``tol`` that is not
        a finite real number ``>= 0`` (``bool``, strings, ``None`` and NaN are refused), or ``max_product`` that
        is not a ``bool``; the message names the option and the value.  The options are attributes
        (:class:`~hybridpgm.options.Option`): assigning one raises the same for the same values.

    >>> mrf = ising_grid(8, 8, coupling=0.3, field=torch.randn(64))  # doctest: +SKIP
    >>> res = BeliefPropagation(num_iters=50)(mrf.factor_graph())   # doctest: +SKIP
    """

    num_iters = Option(lambda self, value: positive_int(value, "BeliefPropagation num_iters"))
    check_every = Option(lambda self, value: positive_int(value, "BeliefPropagation check_every"))
    damping = Option(lambda self, value: damping_of(value, "BeliefPropagation damping"))
    tol = Option(lambda self, value: positive_real(value, "BeliefPropagation tol", allow_zero=True))
    max_product = Option(lambda self, value: flag(value, "BeliefPropagation max_product"))

    @keyword_only_soon("max_product", "check_every")
    def __init__(self, num_iters: int = 50, damping: float = 0.0, tol: float = 1e-6, *,
                 max_product: bool = False, check_every: int = 10):
        self.num_iters, self.check_every, self.damping = num_iters, check_every, damping
        self.tol, self.max_product = tol, max_product
        self._memo = LastGraphPlan()  # the binary structure of the last graph, while it is unchanged

    def _iterate(self, msgs, step, damp, nan_error: Callable[[torch.Tensor, int], Exception],
                 capped: bool = False):
        """Run up to ``K`` steps of ``msgs <- damp(step(msgs), msgs)``; host sync only at checks, where a NaN
        change raises ``nan_error(new messages, step)``.

        ``capped`` says which path runs: the general one, messages ``[B, E, C]`` (batch first), or else the binary
        one, log-odds ``[2F, B]`` (batch last).  A check passes when every model ``b`` (batch row) has its largest
        change below its own ``max(tol, c * eps * s_b)`` (:mod:`~hybridpgm.infer.rounding_floor`), ``s_b`` its
        largest ``|new|``: :func:`~hybridpgm.infer.rounding_floor.check_margin`, one host read for the whole batch.
        ``capped`` (the general path) leaves entries beyond :func:`~hybridpgm.infer.rounding_floor.scale_cap`
        (finite stand-ins for hard constraints) out of ``s_b``.
        """
        converged, it = False, 0
        floor = rounding_floor(msgs.dtype)
        cap = scale_cap(msgs.dtype) if capped else None
        tol, num_iters, damping, check_every = self.tol, self.num_iters, self.damping, self.check_every  # read once
        limit = cached_tol_above(tol, msgs.dtype) if tol > 0 else 0.0  # tol in the dtype: exact
        for it in range(1, num_iters + 1):
            new = damp(step(msgs), msgs, damping, it)
            if tol > 0 and (it % check_every == 0 or it == num_iters):
                margin = step_margin(new.detach(), msgs.detach(), limit, floor, cap)
                if margin != margin and bool(torch.isnan(new).any()):  # not an infinity met by the same one
                    raise nan_error(new.detach(), it)
                msgs = new
                if margin < 0.0:
                    converged = True
                    break
            else:
                msgs = new
        return msgs, converged, it

    def __setstate__(self, state: dict) -> None:
        """Unpickled: an engine pickled by an earlier release (whose memo was ``None``) gets an empty memo."""
        self.__dict__.update(state)
        if not isinstance(self.__dict__.get("_memo"), LastGraphPlan):
            self._memo = LastGraphPlan()

    def _binary_plan(self, fg: FactorGraph):
        """The binary fast path's index structure for ``fg``, or ``None`` where it does not apply; remembered for
        the last graph while it and its tensors are unchanged
        (:class:`~hybridpgm.infer.bp_last_graph.LastGraphPlan`), so that calling again on the same graph skips the
        host check of :meth:`BinaryPairwise.applies` and the structure lookup."""
        return self._memo.get(fg, lambda: _structure(fg.groups[0].variables, fg.num_vars)
                              if BinaryPairwise.applies(fg) else None)

    def __call__(self, fg: FactorGraph) -> BPResult:
        """Run BP on ``fg`` and return a :class:`BPResult`."""
        plan = self._binary_plan(fg)
        result = self._binary(fg, plan) if plan is not None else None
        return result if result is not None else self._general(fg)

    def _general(self, fg: FactorGraph) -> BPResult:
        """The general path: log messages ``[B, E, C]`` on :class:`FlatGraph`."""
        fg, offset = centred_unary(fg)  # the unary maxima out of every message: log Z = log Z~ + offset
        flat = FlatGraph(fg)
        theta = fg.masked_unary()

        def step(msgs):
            return flat.factor_to_var(flat.incoming(flat.beliefs(theta, msgs), msgs), self.max_product)

        msgs, converged, it = self._iterate(
            flat.init(theta), step, damp_log,
            lambda new, it: _nan_messages(fg, flat.edge_var[torch.isnan(new).any(-1).any(0)], it), capped=True)
        total = flat.beliefs(theta, msgs)
        log_b = torch.log_softmax(total, dim=-1)
        log_z_fn = None if self.max_product else (lambda: bethe_log_z(fg, flat, theta, log_b, msgs, offset))
        decode_fn = (lambda: decode_in_layers(fg, msgs.detach())) if self.max_product else None
        return BPResult(log_b.exp(), total.argmax(dim=-1), converged, it, log_z_fn, decode_fn)

    def _binary(self, fg: FactorGraph, structure) -> BPResult | None:
        """The log-odds fast path; ``None`` (nothing run) where the tables or fields are beyond
        :func:`~hybridpgm.infer.bp_fused.odds_max_spread`, which the general path then takes."""
        g = fg.groups[0]
        if torch.is_grad_enabled() and (g.log_potentials.requires_grad or fg.unary.requires_grad):
            eng = BinaryPairwise(fg, self.max_product)
            if not eng.precise:
                return None
            shifted, converged, it = self._iterate(
                eng.init(), eng.step, eng.damp,
                lambda new, it: _nan_messages(fg, eng.edge_var[torch.isnan(new).any(-1)], it))
            L = eng.beliefs(shifted)                               # [V, B] belief log-odds
            marginals = eng.probabilities(L)                       # [B, V, 2]
            d = eng.messages(shifted)                              # [2F, B] log-odds messages
        else:  # nothing to differentiate: one scripted, allocation-free call, the same numbers
            marginals, L, d, converged, it = run_binary_forward(
                g.log_potentials, fg.unary, structure, self.num_iters, self.max_product, self.damping, self.tol,
                self.check_every)
            if it < 0:  # huge finite penalties: the coefficients' one host read said so, before any step
                return None
            if it == 0:  # a check found a NaN message (bp_fused's sentinel: no extra host read)
                raise _nan_messages(fg, structure[0][torch.isnan(d).any(-1)], None)
        F = g.variables.shape[0]

        def log_z():  # the iteration held differences of unaries only; the Bethe sums take them centred
            cfg, offset = centred_unary(fg)
            ls = torch.nn.functional.logsigmoid
            log_b = torch.stack((ls(-L), ls(L)), dim=-1).transpose(0, 1)
            return bethe_log_z(cfg, FlatGraph(cfg), cfg.masked_unary(), log_b, odds_to_flat(d, F), offset)

        decode_fn = ((lambda: decode_in_layers(centred_unary(fg)[0], odds_to_flat(d.detach(), F)))
                     if self.max_product else None)
        return BPResult(marginals, lambda: (L > 0).long().t(), converged, it, None if self.max_product else log_z,
                        decode_fn)


def _nan_messages(fg: FactorGraph, targets: torch.Tensor, step: int | None) -> ModelSpecError | EvidenceError:
    """The error for NaN messages, naming the variable the first one goes to (``targets``: their variables); an
    :class:`~hybridpgm.errors.EvidenceError` naming the evidence where the evidence is impossible through a chain
    of factors (:func:`~hybridpgm.infer.mrf_possible_bound.impossible_evidence_error`: hard constraints written
    as ``finfo.min`` that the evidence contradicts make the messages NaN).

    A :class:`FactorGraph` built by hand with ``-inf`` log-potentials (its contract asks for finite ones;
    :class:`~hybridpgm.graphs.MarkovNet` refuses them) makes NaN at once: a message :math:`m_{f \\to v}(x) = -\\infty`
    meets itself in :math:`n_{v \\to f} = b_v - m_{f \\to v}`, :math:`-\\infty - (-\\infty)`.  The error says so
    (a host read on the error path only)."""
    from hybridpgm.infer.mrf_possible_bound import impossible_evidence_error  # it imports from hybridpgm.infer

    impossible = impossible_evidence_error(fg, "BeliefPropagation")
    if impossible is not None:
        return impossible
    v = int(targets[0]) if targets.numel() else 0
    when = f" at step {step}" if step is not None else ""
    tables = [fg.unary] + [g.log_potentials for g in fg.groups]
    if any(bool(torch.isneginf(t.detach()).any()) for t in tables):
        return ModelSpecError(f"BeliefPropagation: a message to variable {fg.names[v]!r} became NaN{when}: the "
                              f"factor graph holds -inf log-potentials, which belief propagation does not take "
                              f"(a -inf message meets itself in b_v - m_f->v, -inf - -inf); write a hard constraint "
                              f"as a finite penalty (e.g. -1e4, or -1e30: the same answer), or use method='exact'")
    return ModelSpecError(f"BeliefPropagation: a message to variable {fg.names[v]!r} became NaN{when}: the "
                          f"log-potentials' sums or differences overflow {fg.unary.dtype} (entries near finfo.min or "
                          f"finfo.max, e.g. hard constraints); use penalties well inside the range (e.g. -1e4), or "
                          f"method='exact'")
