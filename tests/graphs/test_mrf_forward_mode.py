"""Forward-mode derivatives of a :class:`~hybridpgm.graphs.MarkovNet` whose table is given as a tensor
(:func:`hybridpgm.graphs.mrf_declare.table_buffer`): a net built inside :func:`torch.func.jacfwd` /
:func:`torch.func.jvp`, or from a :mod:`torch.autograd.forward_ad` dual, keeps the table's tangent.

Before, such a table (``requires_grad=False``: a forward-mode tangent is not ``requires_grad``) was copied
detached, so ``jacfwd`` and ``jvp`` gave exactly 0 and ``forward_ad`` a tangent of ``None`` for ``"exact"``,
``"bp"`` and ``"mean_field"``, where reverse mode (``jacrev``) gave derivatives up to 0.79."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import forward_ad
from torch.func import jacfwd, jacrev, jvp

from hybridpgm.graphs import MarkovNet, ising_grid

D = torch.float64
FIXED = torch.tensor([[0.1, 0.5], [-0.3, 0.2], [0.7, -1.0]], dtype=D)
#: "bp" on this net (cardinalities 2, 3, 2: not binary pairwise) runs the general message passing
METHODS = {"exact": {}, "bp": {"num_iters": 30, "tol": 0.0}, "mean_field": {"num_iters": 30, "tol": 0.0}}


def _log_z(table: torch.Tensor, method: str) -> torch.Tensor:
    """``log Z`` of a chain ``a - b - c`` declared from ``table`` (the ``[2, 3]`` factor of ``a, b``)."""
    m = MarkovNet({"a": 2, "b": 3, "c": 2})
    m.add_factor("ab", ["a", "b"], table)
    m.add_factor("bc", ["b", "c"], FIXED)
    return m.log_partition(method, **METHODS[method])


def _marginal_a(table: torch.Tensor, method: str) -> torch.Tensor:
    m = MarkovNet({"a": 2, "b": 3, "c": 2})
    m.add_factor("ab", ["a", "b"], table)
    m.add_factor("bc", ["b", "c"], FIXED)
    return m.marginals(method, **METHODS[method])["a"]


def _point() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, dtype=D, generator=g), torch.randn(2, 3, dtype=D, generator=g)


@pytest.mark.parametrize("method", list(METHODS))
def test_jacfwd_of_log_z_equals_jacrev(method):
    table, _ = _point()
    reverse = jacrev(lambda t: _log_z(t, method))(table)
    forward = jacfwd(lambda t: _log_z(t, method))(table)
    assert reverse.abs().max() > 0.05
    torch.testing.assert_close(forward, reverse, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("query", [_log_z, _marginal_a], ids=["log_z", "marginal"])
@pytest.mark.parametrize("method", list(METHODS))
def test_jvp_and_forward_ad_equal_the_reverse_mode_directional_derivative(method, query):
    table, tangent = _point()
    reverse = jacrev(lambda t: query(t, method))(table)
    expected = (reverse * tangent).sum((-2, -1))  # J v
    value, by_jvp = jvp(lambda t: query(t, method), (table,), (tangent,))
    torch.testing.assert_close(by_jvp, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(value, query(table, method))
    with forward_ad.dual_level():
        by_dual = forward_ad.unpack_dual(query(forward_ad.make_dual(table, tangent), method)).tangent
    assert by_dual is not None
    torch.testing.assert_close(by_dual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["exact", "mean_field"])
def test_jacfwd_of_an_ising_grid_built_inside_equals_jacrev(method):
    """The audit's case: ``ising_grid(3, 3, J, h)`` built inside the transformed function."""
    g = torch.Generator().manual_seed(1)
    coupling, field = 0.5 * torch.randn(12, dtype=D, generator=g), 0.3 * torch.randn(9, dtype=D, generator=g)

    def log_z(j):
        return ising_grid(3, 3, j, field).log_partition(method, **METHODS[method])

    reverse = jacrev(log_z)(coupling)
    assert reverse.abs().max() > 0.2
    torch.testing.assert_close(jacfwd(log_z)(coupling), reverse, rtol=1e-10, atol=1e-12)


def test_forward_mode_through_binary_fused_bp_raises_instead_of_a_zero():
    """A binary pairwise net takes BP's fused path, whose gather has no forward-mode derivative: torch's
    ``NotImplementedError`` (as docs/markov_nets.md says), where a silent 0 came before."""
    g = torch.Generator().manual_seed(1)
    coupling, field = 0.5 * torch.randn(12, dtype=D, generator=g), 0.3 * torch.randn(9, dtype=D, generator=g)
    with pytest.raises(NotImplementedError):
        jacfwd(lambda j: ising_grid(3, 3, j, field).log_partition("bp", num_iters=20, tol=0.0))(coupling)


def test_a_fixed_table_is_still_copied():
    """A table with no derivative is a buffer of its own (the caller's tensor is not what a load writes into)."""
    table, _ = _point()
    m = MarkovNet({"a": 2, "b": 3})
    m.add_factor("ab", ["a", "b"], table)
    buffer = m.table_potentials.table(m.families["ab"]["key"])
    assert buffer is not table
    table.add_(1.0)
    torch.testing.assert_close(buffer, table - 1.0)


def test_a_dual_table_is_copied_not_aliased():
    """reviewA: a dual table was registered as the caller's own tensor, so an in-place edit of it after the dual
    level changed the net (log Z 2.1493 -> 3.1549), and an expanded one became a stride-0 buffer that the net's own
    ``load_state_dict`` refused; a contiguous clone keeps the tangent and neither."""
    t = torch.randn(1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(t, torch.ones_like(t)).expand(2, 3)
        net = MarkovNet({"a": 2, "b": 3})
        net.add_factor("ab", ["a", "b"], dual)
        tangent = forward_ad.unpack_dual(net.log_partition("exact")).tangent
    assert tangent is not None and torch.isclose(tangent, torch.tensor(1.0, dtype=torch.float64))
    before = net.log_partition("exact")
    net.load_state_dict({k: v.clone() for k, v in net.state_dict().items()})
    t.add_(1.0)
    assert torch.equal(net.log_partition("exact"), before)
