"""The most probable assignment of a compiled Markov random field, by exact max-sum or max-product BP.

:meth:`hybridpgm.MarkovNet.map_assignment` compiles the network into a
:class:`~hybridpgm.graphs.factor_graph.FactorGraph` and calls :func:`map_of`, which returns

.. math:: \\hat x = \\arg\\max_x \\sum_f \\theta_f(x_f)

per model of the batch: exactly by the max-sum contraction
(:func:`~hybridpgm.infer.mrf_exact.exact_map`), or by max-product belief propagation
(:class:`~hybridpgm.infer.BeliefPropagation` with ``max_product=True``; exact on trees [1]).
Where BP's max-marginals tie in a row, the argmax of each variable alone need not be a joint
maximiser, so that row is decoded a layer at a time, each variable given those before it
(:attr:`~hybridpgm.infer.belief_propagation.BPResult.decoded_assignment`).  Where BP ran all its steps without
converging (``tol > 0``), the assignment may be far from the MAP, and an :class:`~hybridpgm.errors.EstimateWarning`
says so (:func:`~hybridpgm.graphs.mrf_convergence.warn_map_unconverged`).

**References**

[1] D. Koller, N. Friedman, *Probabilistic Graphical Models: Principles and
Techniques*, 2009, sec. 13.3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.mrf_convergence import warn_map_unconverged
from hybridpgm.graphs.mrf_declare import _check_options, _no_options

__all__ = ["map_of", "tied_rows"]


def map_of(fg: FactorGraph, method: str, kwargs: dict, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The MAP assignment ``name -> batch_shape`` long of the compiled ``fg`` whose variables are ``names``.

    :param method: ``"exact"``, ``"bp"`` or ``"auto"`` (exact where
        :func:`~hybridpgm.infer.mrf_exact.exact_is_cheap` and no BP options are given, else BP).
    :param kwargs: options of :class:`~hybridpgm.infer.BeliefPropagation` (``max_product`` excepted).
    :returns: for a graph of 0 rows (evidence or tables of 0 rows), empty ``batch_shape`` columns, after the
        options are checked, running nothing.
    :raises ModelSpecError: an option the chosen method does not take.
    :raises EvidenceError: a model whose evidence has probability zero (every assignment it allows scores
        :math:`-\\infty`), naming it, by either method: the exact best score, or for BP
        :func:`~hybridpgm.infer.mrf_possible_bound.impossible_rows` (one host read for the batch).
    :warns EstimateWarning: BP's messages did not converge (with ``tol > 0``).
    """
    from hybridpgm.infer.belief_propagation import BeliefPropagation
    from hybridpgm.infer.mrf_exact import exact_is_cheap, exact_map
    from hybridpgm.infer.mrf_possible_bound import check_possible

    if method == "auto":
        method = "bp" if kwargs or not exact_is_cheap(fg) else "exact"
    if method == "exact":
        _no_options(method, kwargs)
    else:
        if "max_product" in kwargs:
            raise ModelSpecError("MarkovNet.map_assignment: method 'bp' runs max-product BP; max_product is not "
                                 "an option here (marginals('bp') runs sum-product)")
        _check_options("bp", BeliefPropagation, kwargs)
        algorithm = BeliefPropagation(max_product=True, **kwargs)
    if not fg.batch_size:  # 0 rows: no model to run on (the max-sum contraction has no reduction over none)
        return _named(fg.unflatten(torch.zeros(0, fg.num_vars, dtype=torch.long, device=fg.unary.device)), names)
    if method == "exact":
        x = exact_map(fg)[0]
    else:
        result = algorithm(fg)
        check_possible(fg, "MarkovNet.map_assignment")  # as exact_map refuses it (an argmax of -inf max-marginals)
        warn_map_unconverged(algorithm, result)
        tied, x = tied_rows(result.marginals), result.assignment
        if bool(tied.any()):  # those rows decoded a layer at a time; the others keep their argmaxes
            x = torch.where(tied[:, None], result.decoded_assignment, x)
    return _named(fg.unflatten(x), names)


def _named(x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """``name -> batch_shape`` columns of the ``batch_shape + (V,)`` assignment ``x``."""
    return {v: x[..., i] for i, v in enumerate(names)}


def tied_rows(max_marginals: torch.Tensor, rtol: float = 1e-6) -> torch.Tensor:
    """``[B]`` bool: whether some variable's top two max-marginals ``[B, V, C]`` tie (to ``rtol``) in a row."""
    if max_marginals.shape[-1] < 2:
        return torch.zeros(max_marginals.shape[0], dtype=torch.bool, device=max_marginals.device)
    top = max_marginals.topk(2, dim=-1).values
    return ((top[..., 0] - top[..., 1]) <= rtol * top[..., 0]).any(-1)
