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

**References**

[1] J. Pearl, *Probabilistic Reasoning in Intelligent Systems*, 1988, §2.2.2 (virtual evidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hybridpgm.checks import torch_readable
from hybridpgm.errors import EvidenceError
from hybridpgm.graphs.contraction_steps import LogOfSum

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["Likelihood", "ZeroSafeLog", "soft_likelihood", "soft_log_likelihood"]

_INTEGER = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


@dataclass(frozen=True)
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


def soft_log_likelihood(bn: "BayesNet", name: str, lik: Likelihood, dtype, device) -> torch.Tensor:
    """Validated ``[card]`` or ``[N, card]`` log-likelihood of soft evidence on ``name`` (the first of
    :func:`soft_likelihood`)."""
    return soft_likelihood(bn, name, lik, dtype, device)[0]


def soft_likelihood(bn: "BayesNet", name: str, lik: Likelihood, dtype, device):
    """Validated soft evidence on ``name``: ``(log_lik, lik)``, each ``[card]`` or ``[N, card]`` in ``dtype``.

    ``log_lik`` is the log-likelihood (the values themselves for ``log=True``, else their
    :class:`ZeroSafeLog`); ``lik`` the likelihood in probability space for ``log=False``: the values as
    given, divided row by row by their (detached) largest value :math:`m_n` in their own precision and then cast
    to ``dtype`` (the operand of probability-space queries, exact in its gradient at a zero entry, and kept
    away from the narrow dtype's underflow; the queries add back :math:`\\log m_n`, the row maximum of
    ``log_lik``: :func:`~hybridpgm.infer.bn_factors.factors`); ``None`` for ``log=True`` (those queries
    exponentiate ``log_lik`` shifted by its row maxima).

    :raises EvidenceError: for a continuous node, values that are not real numbers, a wrong shape, NaN or
        :math:`+\\infty` log-likelihoods, negative or non-finite likelihoods, or a row that is zero in every state.
    """
    card = bn.cardinality(name)
    if card is None:
        raise EvidenceError(f"soft evidence (Likelihood) needs a discrete node; '{name}' is continuous")
    try:
        values = torch_readable(lik.values, f"Likelihood for '{name}'")
    except ValueError as error:  # a masked array with masked entries: its own message
        raise EvidenceError(str(error)) from None
    try:
        # numbers without a dtype of their own (a list) are read in the network's, as hard evidence is
        t = torch.as_tensor(values, device=device, dtype=None if hasattr(values, "dtype") else dtype)
    except (TypeError, ValueError, RuntimeError):
        raise EvidenceError(f"Likelihood for '{name}' must be numbers, got {type(lik.values).__name__} "
                            f"{lik.values!r:.60}") from None
    if not (torch.is_floating_point(t) or t.dtype in _INTEGER):
        raise EvidenceError(f"Likelihood for '{name}' must be real numbers, got dtype {t.dtype}")
    if t.dim() not in (1, 2) or t.shape[-1] != card:
        raise EvidenceError(f"Likelihood for '{name}' must have shape [{card}] or [N, {card}], "
                            f"got {tuple(t.shape)}")
    t = t.to(torch.promote_types(t.dtype, dtype))  # validated before any narrowing to the network's dtype
    if lik.log:
        if torch.isnan(t).any() or (t == float("inf")).any():
            raise EvidenceError(f"Likelihood for '{name}' holds NaN or +inf log-likelihoods")
        log_lik, prob = t, None
    else:
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise EvidenceError(f"Likelihood for '{name}' must be finite and non-negative")
        log_lik = ZeroSafeLog.apply(t) if t.requires_grad else t.log()
        # divided by its row maxima in the input's precision, then narrowed: a float64 likelihood of 1e-45 keeps
        # its digits in a float32 network (the maxima's logarithms, those of log_lik, are added back by the query)
        # (a subnormal maximum too: its logarithm is the one added back; a zero row, refused below, divides by 1)
        m = t.detach().amax(-1, keepdim=True)
        prob = (t / torch.where(m > 0, m, torch.ones_like(m))).to(dtype)
    dead = ~torch.isfinite(log_lik).any(-1)
    if bool(dead.any()):
        raise EvidenceError(f"Likelihood for '{name}' is zero for every state"
                            f"{' in row(s) ' + str(dead.nonzero().flatten().tolist()[:10]) if t.dim() == 2 else ''}")
    # the logarithm is taken before the cast: values beyond the network dtype's range (1e39 or 1e-46 in
    # float32) have logarithms well within it
    return log_lik.to(dtype), prob
