"""Soft (virtual) evidence for exact Bayesian-network queries.

A :class:`Likelihood` passed as an evidence value,
``bn.posterior(q, {"wet": Likelihood([0.2, 0.9])})``, conditions on a
likelihood :math:`\\lambda(x_v)` rather than a state [1]; :mod:`hybridpgm.infer.exact`
adds :math:`\\log \\lambda` as a per-row factor over :math:`x_v`, the same way
it adds the indicator of a node observed in some rows only.

**References**

[1] J. Pearl, *Probabilistic Reasoning in Intelligent Systems*, 1988, §2.2.2 (virtual evidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hybridpgm.errors import EvidenceError

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["Likelihood", "soft_log_likelihood"]

_INTEGER = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


@dataclass(frozen=True)
class Likelihood:
    """Soft (virtual) evidence on a discrete node [1]: a likelihood :math:`\\lambda(x_v) \\ge 0`.

    Conditioning on it reweights the joint, :math:`p(x \\mid e) \\propto p(x)\\,\\lambda(x_v)`
    (Pearl's virtual evidence; hard evidence is the one-hot :math:`\\lambda`), and
    :func:`log_evidence` returns :math:`\\log \\sum_x p(x) \\lambda(x_v)`.

    :param values: ``[card]`` (every row) or ``[N, card]`` (one likelihood per row),
        non-negative, not all zero in any row.
    :param bool log: ``values`` are log-likelihoods (``-inf`` allowed).

    >>> bn.posterior("xray", {"smoke": Likelihood([0.3, 0.7])})  # doctest: +SKIP
    """

    values: object
    log: bool = False


def soft_log_likelihood(bn: "BayesNet", name: str, lik: Likelihood, dtype, device) -> torch.Tensor:
    """Validated ``[card]`` or ``[N, card]`` log-likelihood of soft evidence on ``name``."""
    card = bn.cardinality(name)
    if card is None:
        raise EvidenceError(f"soft evidence (Likelihood) needs a discrete node; '{name}' is continuous")
    try:
        # numbers without a dtype of their own (a list) are read in the network's, as hard evidence is
        t = torch.as_tensor(lik.values, device=device, dtype=None if hasattr(lik.values, "dtype") else dtype)
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
        log_lik = t
    else:
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise EvidenceError(f"Likelihood for '{name}' must be finite and non-negative")
        log_lik = t.log()
    dead = ~torch.isfinite(log_lik).any(-1)
    if bool(dead.any()):
        raise EvidenceError(f"Likelihood for '{name}' is zero for every state"
                            f"{' in row(s) ' + str(dead.nonzero().flatten().tolist()[:10]) if t.dim() == 2 else ''}")
    # the logarithm is taken before the cast: values beyond the network dtype's range (1e39 or 1e-46 in
    # float32) have logarithms well within it
    return log_lik.to(dtype)
