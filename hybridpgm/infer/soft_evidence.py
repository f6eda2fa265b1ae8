"""Soft (virtual) evidence for exact Bayesian-network queries.

A :class:`Likelihood` passed as an evidence value,
``bn.posterior(q, {"wet": Likelihood([0.2, 0.9])})``, conditions on a
likelihood :math:`\\lambda(x_v)` rather than a state [1]; :mod:`hybridpgm.infer.exact`
adds it as a per-row factor over :math:`x_v`, the same way it adds the indicator of a
node observed in some rows only: :math:`\\lambda` itself where the query runs in
probability space, :math:`\\log \\lambda` in log space.

**Gradients at a zero likelihood.** :math:`p(e) = \\sum_k \\lambda_k\\, p(x_v = k, e')` is linear in
:math:`\\lambda`, so :math:`\\partial \\log p(e) / \\partial \\lambda_k = p(x_v = k, e') / p(e)` is finite at
:math:`\\lambda_k = 0` too (:math:`e'` the rest of the evidence). Through :math:`\\log \\lambda` autograd would
multiply a zero posterior weight by :math:`1/\\lambda_k = \\infty`: NaN, which also reaches every other row
sharing :math:`\\lambda` or the network that produced it. So a likelihood given as probabilities (``log=False``)
also enters probability-space queries as it is, up to a constant per row (:func:`soft_likelihood`), where the
gradient is exact, and its logarithm (for log space) is taken by :class:`ZeroSafeLog`, whose gradient at an
exact zero is 0 rather than NaN. Log space answers only the rows whose evidence probability is under the dtype's
floor (:data:`~hybridpgm.infer.bn_spaces.PROBABILITY_FLOOR`), and every row of a network in another dtype
(float16, bfloat16): there the derivative in a zero entry comes out 0, the others' exact.

**Scale and precision.** Only the ratios of :math:`\\lambda` within a row matter to the posterior, and its
scale adds :math:`\\log` of it to :math:`\\log p(e)`.  :func:`soft_likelihood` takes the row maximum
:math:`m_n` of :math:`\\log \\lambda_n` out in the working precision (the likelihood's own dtype or the
network's, at least float32) before narrowing to the network's dtype, so a likelihood of :math:`10^{-200}` in
a float16 or bfloat16 network keeps that dtype's relative precision; the queries add :math:`m_n` back to
:math:`\\log p(e_n)`.

**References**

[1] J. Pearl, *Probabilistic Reasoning in Intelligent Systems*, 1988, §2.2.2 (virtual evidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch

from hybridpgm.checks import torch_readable
from hybridpgm.errors import EvidenceError
from hybridpgm.graphs.contraction_steps import LogOfSum, zero_safe_log
from hybridpgm.infer.bn_evidence_states import read_flags
from hybridpgm.tensor_tracking import carries_tangent

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["Likelihood", "PendingSoft", "SoftEvidence", "ZeroSafeLog", "judged_soft", "soft_checks", "soft_likelihood",
           "soft_log_likelihood", "working_dtype"]

_INTEGER = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


@dataclass(frozen=True, eq=False)
class Likelihood:
    """Soft (virtual) evidence on a discrete node [1]: a likelihood :math:`\\lambda(x_v) \\ge 0`.

    Conditioning on it reweights the joint, :math:`p(x \\mid e) \\propto p(x)\\,\\lambda(x_v)`
    (Pearl's virtual evidence; hard evidence is the one-hot :math:`\\lambda`), and
    :func:`log_evidence` returns :math:`\\log \\sum_x p(x) \\lambda(x_v)`.

    :param values: ``[card]`` (every row) or ``[N, card]`` (one likelihood per row),
        non-negative, not all zero in any row.  Differentiable: the gradient of a query with respect to
        ``values`` is exact, at an entry of exactly 0 too (probability space; see the module docstring for the
        rows answered in log space).
    :param bool log: ``values`` are log-likelihoods (``-inf`` allowed).

    >>> bn.posterior("xray", {"smoke": Likelihood([0.3, 0.7])})  # doctest: +SKIP
    """

    values: object
    log: bool = False


#: :math:`\log \lambda` of a non-negative likelihood with the gradient :math:`1/\lambda` where :math:`\lambda > 0`
#: and 0 where :math:`\lambda = 0` (``torch.log`` gives :math:`\infty` there, and NaN once a zero upstream gradient
#: meets it): the contraction steps' :class:`~hybridpgm.graphs.contraction_steps.LogOfSum`.  A log-space query's
#: gradient in :math:`\log \lambda_k` is the posterior weight of state :math:`k`, exactly 0 where
#: :math:`\lambda_k = 0`, so the true derivative there cannot be recovered from it; 0 keeps the other entries, rows
#: and parameters exact.  Probability-space queries take :math:`\lambda` directly (see the module docstring).
ZeroSafeLog = LogOfSum


class SoftEvidence(NamedTuple):
    """Validated soft evidence on one node (:func:`soft_likelihood`), each tensor ``[card]`` or ``[N, card]``
    (``shift``: ``[]`` or ``[N]``)."""

    #: :math:`\log \lambda_n - m_n` in the network's dtype: the log-likelihood less its row maximum, taken in the
    #: working precision (:func:`working_dtype`) before the narrowing, so its largest entry is exactly 0
    log_lik: torch.Tensor
    #: :math:`\lambda_n / e^{m_n}` in the network's dtype for ``log=False`` (the operand of probability-space
    #: queries, exact in its gradient at a zero entry), ``None`` for ``log=True``
    lik: torch.Tensor | None
    #: :math:`m_n`, the detached row maximum of :math:`\log \lambda_n` in the working precision: what a query adds
    #: back to :math:`\log p(e_n)` (:func:`~hybridpgm.infer.bn_spaces.with_shift`)
    shift: torch.Tensor


def working_dtype(given: torch.dtype, network: torch.dtype) -> torch.dtype:
    """The precision a likelihood is validated and row-scaled in: the wider of its own dtype and the network's,
    at least float32 (a float16 or bfloat16 network's own range and digits are what the scaling protects)."""
    wide = torch.promote_types(given, network)
    return wide if wide in (torch.float32, torch.float64) else torch.promote_types(wide, torch.float32)


def soft_log_likelihood(bn: "BayesNet", name: str, lik: Likelihood, dtype, device) -> torch.Tensor:
    """Validated ``[card]`` or ``[N, card]`` log-likelihood of soft evidence on ``name``, less its row maxima
    (the ``log_lik`` of :func:`soft_likelihood`)."""
    return soft_likelihood(bn, name, lik, dtype, device).log_lik


def soft_likelihood(bn: "BayesNet", name: str, lik: Likelihood, dtype, device) -> SoftEvidence:
    """Validated soft evidence on ``name``: a :class:`SoftEvidence` ``(log_lik, lik, shift)``.

    The values are read and validated in the working precision :math:`w` (:func:`working_dtype`: the wider of
    their dtype and the network's ``dtype``, at least float32; numbers without a dtype of their own, a list, are
    read in it), and scaled row by row there before anything is narrowed to ``dtype``:

    .. math::

        m_n = \\max_k \\log \\lambda_{n,k}, \\qquad
        \\texttt{log\\_lik}_{n,k} = \\mathrm{fl}_{\\mathtt{dtype}}(\\log \\lambda_{n,k} - m_n), \\qquad
        \\texttt{lik}_{n,k} = \\mathrm{fl}_{\\mathtt{dtype}}(\\lambda_{n,k} / \\max_j \\lambda_{n,j}),

    all in :math:`w` until the rounding :math:`\\mathrm{fl}`.  The scaled values lie in :math:`[0, 1]` (in
    :math:`(-\\infty, 0]`), where the network's dtype keeps its relative precision: a float64 likelihood of
    :math:`10^{-200}` in a float16 network would underflow, and its logarithm, :math:`-460.5`, rounded to float16's
    spacing of 0.25 there, would move the posterior by 25%.  :math:`m_n` (detached) is ``shift``, kept in
    :math:`w`; the queries add it back to :math:`\\log p(e_n)` (marginals are ratios within a row and do not see
    it).  ``lik`` is ``None`` for ``log=True`` (probability-space queries exponentiate ``log_lik``).

    One host read (:func:`soft_checks`, then :func:`judged_soft`); a query validating several nodes reads all their
    flags at once (:func:`~hybridpgm.infer.bn_evidence.parse_evidence`).

    :raises EvidenceError: for a name that is no node (a context input), a continuous node, values that are not
        real numbers, a wrong shape, NaN or :math:`+\\infty` log-likelihoods, negative or non-finite likelihoods,
        or a row that is zero in every state.
    """
    pending, flags = soft_checks(bn, name, lik, dtype, device)
    return judged_soft(pending, read_flags([flags])[0])


class PendingSoft(NamedTuple):
    """The soft evidence on one node, computed but not yet judged (:func:`soft_checks`)."""

    name: str
    #: the values in the working precision, ``[card]`` or ``[N, card]`` (for the messages)
    values: torch.Tensor
    log: bool
    evidence: SoftEvidence


def soft_checks(bn: "BayesNet", name: str, lik: Likelihood, dtype, device) -> tuple[PendingSoft, list[torch.Tensor]]:
    """The device half of :func:`soft_likelihood`: ``(pending, flags)``, ``flags`` two 0-d bool tensors (some value
    refused: NaN or :math:`+\\infty` log-likelihoods, negative or non-finite likelihoods; some row zero in every
    state) for :func:`~hybridpgm.infer.bn_evidence_states.read_flags`, ``pending`` the scaled evidence
    :func:`judged_soft` returns once they are read false.  Reads nothing.

    :raises EvidenceError: at once, for what needs no read: a name that is no node (a context input), a continuous
        node, values that are not real numbers, a wrong shape.
    """
    if name not in bn.cpds:  # a context input (or no name of the network): it takes values, not likelihoods
        kind = "a context input" if name in getattr(bn, "input_names", ()) else "not a node of the network"
        raise EvidenceError(f"soft evidence (Likelihood) is for discrete nodes; {name!r:.80} is {kind}")
    card = bn.cardinality(name)
    if card is None:
        raise EvidenceError(f"soft evidence (Likelihood) needs a discrete node; '{name}' is continuous")
    try:
        values = torch_readable(lik.values, f"Likelihood for '{name}'")
    except ValueError as error:  # a masked array with masked entries: its own message
        raise EvidenceError(str(error)) from None
    try:
        # numbers without a dtype of their own (a list) are read in the working precision: the network's dtype
        # (as hard evidence is) when that is float32 or float64
        t = torch.as_tensor(values, device=device,
                            dtype=None if hasattr(values, "dtype") else working_dtype(dtype, dtype))
    except (TypeError, ValueError, RuntimeError):
        raise EvidenceError(f"Likelihood for '{name}' must be numbers, got {type(lik.values).__name__} "
                            f"{lik.values!r:.60}") from None
    if not (torch.is_floating_point(t) or t.dtype in _INTEGER):
        raise EvidenceError(f"Likelihood for '{name}' must be real numbers, got dtype {t.dtype}")
    if t.dim() not in (1, 2) or t.shape[-1] != card:
        raise EvidenceError(f"Likelihood for '{name}' must have shape [{card}] or [N, {card}], "
                            f"got {tuple(t.shape)}")
    t = t.to(working_dtype(t.dtype, dtype))  # validated and scaled before any narrowing to the network's dtype
    if lik.log:
        refused = (torch.isnan(t) | (t == float("inf"))).any()
        log_lik, prob = t, None
    else:
        refused = ~torch.isfinite(t).all() | (t < 0).any()
        # a zero entry's derivative 0, not NaN, in reverse and forward mode (a tangent needs no requires_grad)
        log_lik = zero_safe_log(t) if t.requires_grad or carries_tangent(t) else t.log()
        # divided by its row maxima in the working precision, then narrowed: a float64 likelihood of 1e-45 keeps
        # its digits in a float32 network (a subnormal maximum too; a zero row, refused, divides by 1)
        m = t.detach().amax(-1, keepdim=True)
        prob = (t / torch.where(m > 0, m, torch.ones_like(m))).to(dtype)
    dead = ~torch.isfinite(log_lik).any(-1)
    # the row maxima of the logarithms (finite once a row of -inf is refused), taken out before the cast: values
    # beyond the network dtype's range (1e39 or 1e-46 in float32) have logarithms well within it, and the
    # differences of the remaining ones from 0 keep the dtype's relative precision
    shift = log_lik.detach().amax(-1)
    evidence = SoftEvidence((log_lik - shift[..., None]).to(dtype), prob, shift)
    return PendingSoft(name, t, lik.log, evidence), [refused, dead.any()]


def judged_soft(pending: PendingSoft, values) -> SoftEvidence:
    """The soft evidence of :func:`soft_checks`, once its two flags are read (``values``, as
    :func:`~hybridpgm.infer.bn_evidence_states.read_flags` gives them).

    :raises EvidenceError: naming the node: NaN or :math:`+\\infty` log-likelihoods, negative or non-finite
        likelihoods, or a row that is zero in every state (the rows named: the message reads the values again).
    """
    name, t = pending.name, pending.values.detach()
    if values[0]:
        raise EvidenceError(f"Likelihood for '{name}' holds NaN or +inf log-likelihoods" if pending.log else
                            f"Likelihood for '{name}' must be finite and non-negative")
    if values[1]:
        dead = ~torch.isfinite(t if pending.log else t.log()).any(-1)
        raise EvidenceError(f"Likelihood for '{name}' is zero for every state"
                            f"{' in row(s) ' + str(dead.nonzero().flatten().tolist()[:10]) if t.dim() == 2 else ''}")
    return pending.evidence
