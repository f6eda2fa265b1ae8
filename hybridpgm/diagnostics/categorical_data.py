"""ArviZ data of exact categorical posteriors (e.g. of a ``BayesNet``): :func:`from_categorical`."""

from __future__ import annotations

from typing import Mapping

import torch

from hybridpgm.checks import torch_readable
from hybridpgm.diagnostics.arviz_data import make_inference_data
from hybridpgm.errors import DataError

__all__ = ["from_categorical"]


def _check_probability_rows(name: str, probs: torch.Tensor) -> None:
    """Raise :class:`DataError` unless every row of ``probs`` (``N x card``) is a probability vector."""
    if not probs.is_floating_point():
        raise DataError(f"posterior of {name!r} must hold floating-point probabilities, got dtype {probs.dtype}")
    p = probs.detach()
    bad = (torch.isnan(p) | (p < 0)).any(-1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise DataError(f"posterior of {name!r} has negative or NaN probabilities in row(s) {rows[:10]}")
    total = p.sum(-1, dtype=torch.float64)
    off = (total - 1).abs() > torch.finfo(p.dtype).eps ** 0.5
    if bool(off.any()):
        rows = off.nonzero().flatten().tolist()
        raise DataError(f"posterior of {name!r} has rows that do not sum to one: row(s) {rows[:10]} sum to "
                        f"{[round(float(total[r]), 6) for r in rows[:3]]}")


def from_categorical(probabilities: Mapping[str, torch.Tensor]):
    """ArviZ data of exact categorical posteriors.

    The values are exact probabilities :math:`P(X = j \\mid e_n)`, not draws: ArviZ keeps them in
    ``posterior`` as one chain of one draw so that they travel with other ArviZ data and are selected by name,
    row and state (``idata.posterior["rain"].sel(chain=0, draw=0)`` is the ``N x cardinality`` table, and
    ``az.summary(idata, kind="stats")``'s ``mean`` column lists them).  What ArviZ computes *across draws* does
    not apply to them: in ``az.summary`` the ``sd`` (and ``mcse``, ``ess_*``, ``r_hat``) is NaN, with ArviZ's
    "Shape validation failed" and NumPy's "Degrees of freedom <= 0" warnings, and ``hdi_*`` equals the
    probability; ``az.hdi``, ``az.ess``, ``az.rhat``, ``az.loo`` say nothing about an exact answer; and
    ``az.plot_posterior`` / ``az.plot_trace`` draw point masses at the probabilities, not distributions over
    states.  To check a sampler against them, compare its posterior mean of the indicator :math:`[X = j]` (e.g.
    ``from_mcmc(mcmc).posterior["rain"].mean()`` for a binary node sampled by
    :class:`~hybridpgm.infer.Gibbs`, evidence fixed) with the probability of state 1.

    :param probabilities: variable -> ``N x cardinality`` (or ``cardinality``)
        probabilities, one row per evidence row, as returned by
        ``BayesNet.posterior``.
    :returns: ``posterior`` with one chain and one draw, variable dims
        ``(row, <variable>_state)``.  A dim name that is also a variable's name (a node named ``row``, or nodes
        ``x`` and ``x_state``) gets underscores appended until it is free (``row_``, ``x_state_``), so no
        variable becomes a coordinate and is lost.
    :raises DataError: for ``probabilities`` that is not a mapping (one tensor, as ``BayesNet.posterior`` returns
        for a single name: wrap it as ``{name: tensor}``), no variables, a variable named ``chain`` or ``draw``
        (ArviZ's sample dims), a shape that is not ``N x cardinality``, or rows that are not probability vectors
        (a non-float dtype, a negative or NaN entry, or a sum off one by more than :math:`\\sqrt{\\epsilon}` of
        the dtype).
    """
    if not isinstance(probabilities, Mapping):
        raise DataError(f"from_categorical needs a mapping variable -> N x cardinality probabilities, got "
                        f"{type(probabilities).__name__} (BayesNet.posterior returns a tensor for one name: pass "
                        "{name: probs})")
    if not probabilities:
        raise DataError("from_categorical needs at least one variable's probabilities, got none")
    posterior = {}
    for name, probs in probabilities.items():
        probs = torch.as_tensor(torch_readable(probs))
        if probs.dim() == 1:
            probs = probs.unsqueeze(0)
        if probs.dim() != 2:
            raise DataError(f"posterior of {name!r} must be N x cardinality, got shape {tuple(probs.shape)}")
        _check_probability_rows(name, probs)
        posterior[name] = probs.reshape((1, 1) + tuple(probs.shape))
    rows = {name: p.shape[2] for name, p in posterior.items()}
    if len(set(rows.values())) > 1:
        raise DataError(f"every variable needs the same number of evidence rows; got {rows}")
    taken = set(posterior)
    row = _free_name("row", taken)
    dims = {}
    for name in posterior:
        dims[name] = [row, _free_name(f"{name}_state", taken | {row})]
        taken.add(dims[name][1])
    return make_inference_data({"posterior": posterior}, dims=dims)


def _free_name(name: str, taken: set) -> str:
    """``name``, with underscores appended until it is not in ``taken``."""
    while name in taken:
        name += "_"
    return name
