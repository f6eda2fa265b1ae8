"""The warning a :class:`~hybridpgm.graphs.MarkovNet` query gives when its iterative estimate did not converge.

Loopy belief propagation and mean field run at most ``num_iters`` steps and stop early once the largest change of
a message (of :math:`q`) falls below ``tol``, or below the dtype's rounding floor where that is larger
(:mod:`hybridpgm.infer.rounding_floor`: a ``float32`` message of magnitude 50 moves by about one ulp,
:math:`8 \\cdot 10^{-6}`, forever, so a tree, where BP is exact, would otherwise never meet ``tol = 1e-6``
and warn).  On a strongly coupled graph loopy BP may oscillate rather than
converge: on a 10 x 10 Ising grid with couplings 1, 50 steps of undamped BP gave :math:`\\log Z = -46.9` where the
exact value is 182.0 (below even mean field's lower bound), and damping 0.5 converged in 130 steps to 181.94.
The algorithms report it (``converged`` on their results); a query of the net, which returns the estimate alone,
says it with an :class:`~hybridpgm.errors.EstimateWarning`.  So does
:meth:`~hybridpgm.graphs.MarkovNet.map_assignment` where its max-product BP did not converge: on a 3 x 3 spin glass
(couplings ``1.5 * randn``, seed 1) 50 steps decoded an assignment of log-probability -14.33 where the MAP's is
-1.73.  With ``tol=0`` (run all ``num_iters`` steps, no check) nothing is claimed and nothing is said.
"""

from __future__ import annotations

import warnings

from hybridpgm.errors import EstimateWarning
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["warn_map_unconverged", "warn_unconverged"]

_NAMES = {"bp": "belief propagation", "mean_field": "mean field"}
#: why each method may not have converged: undamped, mean field's block coordinate ascent raises its bound at every
#: sweep, so it creeps (slowly towards a fixed point) where loopy BP can oscillate
_REASONS = {"bp": "loopy BP can oscillate on strongly coupled graphs",
            "mean_field": "mean field's coordinate-ascent sweeps can creep slowly on strongly coupled graphs"}


def warn_unconverged(method: str, algorithm, result) -> None:
    """Warn where ``algorithm`` (a :class:`~hybridpgm.infer.BeliefPropagation` or
    :class:`~hybridpgm.infer.MeanField` with ``tol > 0``) ran all its steps without ``result.converged``.

    :param method: the query's ``method`` (``"bp"`` or ``"mean_field"``)."""
    if algorithm.tol <= 0 or result.converged:
        return
    advice = "add damping (damping=0.5), raise num_iters" if method == "bp" else "raise num_iters"
    reason = f" ({_REASONS[method]})" if method in _REASONS else ""
    warnings.warn(f"MarkovNet: {_NAMES.get(method, method)} (method={method!r}) did not converge in "
                  f"{algorithm.num_iters} iterations (a change above tol={algorithm.tol:g} and the dtype's rounding "
                  f"floor at the last check), so its estimate may be far off{reason}; {advice}, "
                  f"or use method='exact' where the graph allows", EstimateWarning, stacklevel=users_stacklevel())


def warn_map_unconverged(algorithm, result) -> None:
    """Warn where the max-product :class:`~hybridpgm.infer.BeliefPropagation` ``algorithm`` of a
    :meth:`~hybridpgm.graphs.MarkovNet.map_assignment` (with ``tol > 0``) ran all its steps without
    ``result.converged``: its decoded assignment may then be far from the MAP."""
    if algorithm.tol <= 0 or result.converged:
        return
    warnings.warn(f"MarkovNet.map_assignment: max-product BP did not converge in {algorithm.num_iters} iterations "
                  f"(a change above tol={algorithm.tol:g} and the dtype's rounding floor at the last check), so the "
                  f"assignment may be far from the MAP (loopy BP can oscillate on strongly coupled graphs); add "
                  f"damping (damping=0.5), raise num_iters, or use method='exact' where the graph allows",
                  EstimateWarning, stacklevel=users_stacklevel())
