"""Ising and Potts models on 4-connected 2-D grids.

Ising (spins :math:`s \\in \\{-1, +1\\}`, state 0 is :math:`-1`):

.. math:: \\log \\tilde p(s) = \\sum_{(i,j) \\in E} J_{ij} s_i s_j + \\sum_i h_i s_i.

Potts with :math:`K` states: :math:`\\log \\tilde p(x) = \\sum_{(i,j)} \\beta_{ij}
[x_i = x_j] + \\sum_i \\theta_i(x_i)` [1].

Variables are named ``"x_{row}_{col}"`` and listed row-major, so the greedy
colouring of :meth:`MarkovNet.colors` is the checkerboard.

**References**

[1] R. B. Potts, *Some generalized order-disorder transformations*, 1952.
"""

from __future__ import annotations

import torch

from hybridpgm.checks import positive_int, torch_readable
from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs.markov_net import MarkovNet

__all__ = ["grid_edges", "ising_grid", "potts_grid"]


def grid_edges(height: int, width: int) -> list[tuple[int, int]]:
    """Row-major index pairs of the 4-neighbour edges: all horizontal, then all vertical.

    :param int height: rows of the grid.
    :param int width: columns of the grid (variable ``r * width + c`` is at row ``r``, column ``c``).
    :returns: ``E = height * (width - 1) + (height - 1) * width`` pairs ``(a, b)``, ``a < b``.
    :raises ModelSpecError: ``height`` or ``width`` is not a positive integer (``bool`` and floats included).
    """
    height, width = _size(height, width, "grid_edges")
    horiz = [(r * width + c, r * width + c + 1) for r in range(height) for c in range(width - 1)]
    vert = [(r * width + c, (r + 1) * width + c) for r in range(height - 1) for c in range(width)]
    return horiz + vert


def _names(height, width):
    return [f"x_{r}_{c}" for r in range(height) for c in range(width)]


def _edgeless_coupling(beta: torch.Tensor, num_states: int, what: str) -> torch.Tensor:
    """The ``batch_shape + (1, K)`` zero log-potentials that carry the coupling's batch shape on a 1x1 grid.

    Such a grid has no edge, so the coupling adds nothing to the energy, but its batch dims still mean
    independent models (as on any other grid).  Built from ``beta`` (``batch_shape + (1,)``), so a
    non-float or non-finite coupling is refused as on a larger grid.
    """
    if beta.shape[-1] != 1:
        raise ModelSpecError(f"{what} of shape {tuple(beta.shape)}: a 1x1 grid has no edge, so the coupling must "
                             "be a number or a tensor batch_shape + (1,)")
    return beta[..., None] * torch.zeros(num_states, dtype=beta.dtype, device=beta.device)


def _size(height, width, what):
    return (positive_int(height, f"{what} height", error=ModelSpecError),
            positive_int(width, f"{what} width", error=ModelSpecError))


def _as_tensor(x, like=None, what="coupling"):
    if isinstance(x, torch.Tensor):
        return x  # its dtype and shape are checked by MarkovNet.add_factors
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    device = like.device if like is not None else None
    if isinstance(x, (bool, str, bytes)):
        raise ModelSpecError(f"{what} must be a number or a float tensor, got {x!r}")
    try:
        return torch.as_tensor(torch_readable(x), dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ModelSpecError(f"{what} must be a number or a float tensor, got {type(x).__name__}: {e}") from None


def potts_grid(height: int, width: int, num_states: int, coupling, unary=None) -> MarkovNet:
    """A Potts grid.

    :param int height: rows of the grid (``H``).
    :param int width: columns of the grid (``W``; ``H * W`` variables ``x_r_c``).
    :param int num_states: :math:`K \\ge 2` states per variable.
    :param coupling: :math:`\\beta`, a float or tensor ``batch_shape + (E,)`` or
        ``batch_shape + (1,)`` (``E = grid_edges`` count), or an ``nn.Module``
        returning ``batch_shape + (E or 1, K, K)`` pairwise log-potentials.
    :param unary: ``None``, a tensor ``batch_shape + (H*W, K)``, or an
        ``nn.Module`` returning that from a context.
    :raises ModelSpecError: sizes that are not positive integers (``num_states`` >= 2; ``bool`` and floats
        refused), a coupling that is not a number or float tensor, or potentials of the wrong shape.

    A 1x1 grid has no edge: a tensor coupling (``batch_shape + (1,)``) is still checked and its batch shape
    kept, by a ``"coupling"`` family of zero log-potentials over the one variable.  A module coupling is not
    called there, so it is not checked and not part of the net.
    """
    height, width = _size(height, width, "potts_grid")
    num_states = positive_int(num_states, "potts_grid num_states", error=ModelSpecError, minimum=2)
    names = _names(height, width)
    mrf = MarkovNet({n: num_states for n in names})
    edges = grid_edges(height, width)
    if not isinstance(coupling, torch.nn.Module):  # checked, and its batch shape kept, with or without edges
        beta = _as_tensor(coupling, unary if isinstance(unary, torch.Tensor) else None, "potts_grid coupling")
        if beta.dim() == 0:
            beta = beta.reshape(1)
        if not edges:
            mrf.add_factors("coupling", [[names[0]]], _edgeless_coupling(beta, num_states, "potts_grid coupling"))
    if edges:
        if isinstance(coupling, torch.nn.Module):
            pair = coupling
        else:
            eye = torch.eye(num_states, dtype=beta.dtype, device=beta.device)
            pair = beta[..., None, None] * eye
        mrf.add_factors("coupling", [[names[a], names[b]] for a, b in edges], pair)
    if unary is not None:
        mrf.add_factors("field", [[n] for n in names], unary)
    return mrf


def ising_grid(height: int, width: int, coupling, field=None) -> MarkovNet:
    """An Ising grid with couplings :math:`J` and fields :math:`h`.

    :param int height: rows of the grid (``H``).
    :param int width: columns of the grid (``W``; ``H * W`` variables ``x_r_c``, states ``0, 1`` for spins
        :math:`-1, +1`).
    :param coupling: float or tensor ``batch_shape + (E or 1,)``.
    :param field: ``None``, float, or tensor ``batch_shape + (H*W or 1,)``.
    :returns: a :class:`MarkovNet` with factor families ``"coupling"`` and, with a ``field``, ``"field"`` (on a
        1x1 grid, which has no edge, ``"coupling"`` is zero log-potentials over the one variable that keep the
        coupling's batch shape; the coupling is then ``batch_shape + (1,)``).
    :raises ModelSpecError: ``height``/``width`` not positive integers (``bool`` and floats refused), a
        coupling or field that is not a number or float tensor, or one of the wrong shape.
    """
    height, width = _size(height, width, "ising_grid")
    J = _as_tensor(coupling, field if isinstance(field, torch.Tensor) else None, "ising_grid coupling")
    if J.dim() == 0:
        J = J.reshape(1)
    spin = torch.tensor([-1.0, 1.0], dtype=J.dtype, device=J.device)
    pair = J[..., None, None] * spin[:, None] * spin[None, :]
    unary = None
    if field is not None:
        h = _as_tensor(field, J, "ising_grid field")
        if h.dim() == 0:
            h = h.reshape(1)
        unary = h[..., None] * spin
    names = _names(height, width)
    mrf = MarkovNet({n: 2 for n in names})
    edges = grid_edges(height, width)
    if edges:
        mrf.add_factors("coupling", [[names[a], names[b]] for a, b in edges], pair)
    else:
        mrf.add_factors("coupling", [[names[0]]], _edgeless_coupling(J, 2, "ising_grid coupling"))
    if unary is not None:
        mrf.add_factors("field", [[n] for n in names], unary)
    return mrf
