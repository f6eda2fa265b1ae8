"""Forward-mode derivatives of the log-space contraction steps (:func:`~hybridpgm.graphs.contraction_steps.
zero_safe_log`; :class:`~hybridpgm.graphs.contraction_steps.LogOfSum` with a vmap rule).

Before, the steps took the log by ``LogOfSum``, which has no ``jvp`` (and had no vmap rule): ``torch.func.jvp``
and :mod:`torch.autograd.forward_ad` through a MarkovNet answered in log space raised torch's
``NotImplementedError``, and ``jacfwd`` / ``hessian`` a ``ConfigError`` that wrongly blamed a host read under
``vmap``."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from torch.autograd import forward_ad
from torch.func import hessian, jacfwd, jacrev, jvp, vjp

from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.contraction import ContractionPlan
from hybridpgm.graphs.contraction_steps import LogOfSum, zero_safe_log
from hybridpgm.infer import bn_contract

D = torch.float64
FIXED = torch.tensor([[0.1, 0.5], [-0.3, 0.2], [0.7, -1.0]], dtype=D)


@pytest.fixture
def log_space():
    """Every exact MarkovNet query in log space (no dtype is contracted in probability space)."""
    with mock.patch.dict(bn_contract.PROBABILITY_FLOOR, {}, clear=True):
        yield


def _net(table: torch.Tensor) -> MarkovNet:
    m = MarkovNet({"a": 2, "b": 3, "c": 2})
    m.add_factor("ab", ["a", "b"], table)
    m.add_factor("bc", ["b", "c"], FIXED)
    return m


def _log_z(table: torch.Tensor) -> torch.Tensor:
    return _net(table).log_partition("exact")


def _marginals(table: torch.Tensor) -> torch.Tensor:
    marg = _net(table).marginals("exact")
    return torch.cat([marg["a"], marg["b"], marg["c"]])


def _point() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 3, dtype=D, generator=g), torch.randn(2, 3, dtype=D, generator=g),
            torch.randn(7, dtype=D, generator=g))


@pytest.mark.parametrize("query", [_log_z, _marginals], ids=["log_z", "marginals"])
def test_jvp_of_a_log_space_markov_net_matches_finite_differences_and_the_vjp(log_space, query):
    table, tangent, cotangent = _point()
    value, by_jvp = jvp(query, (table,), (tangent,))
    torch.testing.assert_close(value, query(table), rtol=0, atol=0)
    h = 1e-5
    central = (query(table + h * tangent) - query(table - h * tangent)) / (2 * h)
    assert by_jvp.abs().max() > 0.1
    torch.testing.assert_close(by_jvp, central, rtol=0, atol=1e-9)
    out, pull = vjp(query, table)
    u = cotangent[: out.numel()].reshape(out.shape)
    torch.testing.assert_close((by_jvp * u).sum(), (pull(u)[0] * tangent).sum(), rtol=0, atol=1e-14)
    with forward_ad.dual_level():
        by_dual = forward_ad.unpack_dual(query(forward_ad.make_dual(table, tangent))).tangent
    torch.testing.assert_close(by_dual, by_jvp, rtol=0, atol=1e-14)


@pytest.mark.parametrize("query", [_log_z, _marginals], ids=["log_z", "marginals"])
def test_jacfwd_of_a_log_space_markov_net_equals_jacrev(log_space, query):
    table, _, _ = _point()
    torch.testing.assert_close(jacfwd(query)(table), jacrev(query)(table), rtol=0, atol=1e-14)


def test_second_derivatives_of_a_log_space_markov_net_in_every_mode(log_space):
    """``hessian`` (forward over reverse) and ``jacfwd(jacfwd)`` (forward over forward: torch runs a ``Function``'s
    ``jvp`` with forward mode off, so ``LogOfSum.jvp`` alone gave a Hessian 0.235 off) against ``jacrev(jacrev)``."""
    table, _, _ = _point()
    want = jacrev(jacrev(_log_z))(table)
    assert want.abs().max() > 0.1
    torch.testing.assert_close(hessian(_log_z)(table), want, rtol=0, atol=1e-14)
    torch.testing.assert_close(jacfwd(jacfwd(_log_z))(table), want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("c", [300.0, 600.0])
def test_forward_mode_second_derivatives_of_a_tiny_shifted_sum_are_finite(c):
    """The step of ``test_log_space_second_derivatives_are_exact_where_a_shifted_sum_is_tiny`` (shifted sum about
    :math:`e^{-c}`, :math:`x^2` underflowing at 600) in forward mode: against ``torch.logsumexp``'s Hessian."""
    plan = ContractionPlan([("k",), ("k",)], (), {"k": 3})
    x = torch.tensor([0.0, -c, -c + 0.5], dtype=D)
    y = torch.tensor([-c, 0.0, 0.2], dtype=D)

    def step(x):
        return plan([x, y], "log")

    want = hessian(lambda x: torch.logsumexp(x + y, 0))(x)
    torch.testing.assert_close(jacfwd(step)(x), jacrev(step)(x), rtol=0, atol=1e-15)
    torch.testing.assert_close(hessian(step)(x), want, rtol=0, atol=1e-14)
    torch.testing.assert_close(jacfwd(jacfwd(step))(x), want, rtol=0, atol=1e-14)


def test_a_zero_sum_has_a_zero_tangent():
    """An impossible configuration (:math:`x = 0`): value ``-inf``, tangent exactly 0 (no NaN), in
    :func:`zero_safe_log` (one and two forward levels) and through a log step."""
    x = torch.tensor([0.0, 2.0, 1e-300], dtype=D)
    dx = torch.tensor([1.0, 1.0, 1e-300], dtype=D)
    want = torch.tensor([0.0, 0.5, 1.0], dtype=D)
    for log in (zero_safe_log,):
        value, tangent = jvp(log, (x,), (dx,))
        assert torch.equal(value, x.log())
        torch.testing.assert_close(tangent, want, rtol=1e-15, atol=0)
        torch.testing.assert_close(jacfwd(log)(x), torch.diag(1 / x).nan_to_num(posinf=0.0), rtol=1e-15, atol=0)
    second = jacfwd(jacfwd(zero_safe_log))(x)
    assert torch.equal(second[0], torch.zeros(3, 3, dtype=D))
    torch.testing.assert_close(second[1, 1, 1], torch.tensor(-0.25, dtype=D))
    inf = float("-inf")
    plan = ContractionPlan([("k",), ("k",)], (), {"k": 2})
    a, b = torch.tensor([0.0, inf], dtype=D), torch.tensor([inf, 0.0], dtype=D)
    value, tangent = jvp(lambda a: plan([a, b], "log"), (a,), (torch.ones(2, dtype=D),))
    assert value.item() == inf and tangent.item() == 0.0


def test_log_of_sum_compiles_into_one_graph_with_gradients():
    """Review: a ``jvp`` on the Function (forward mode, now :func:`zero_safe_log`'s) made ``torch.compile`` break
    its graph there wherever the sum requires grad (soft evidence's ``ZeroSafeLog``, every log-space step)."""
    import torch._dynamo

    x = torch.tensor([0.5, 2.0], dtype=D, requires_grad=True)
    explanation = torch._dynamo.explain(lambda x: LogOfSum.apply(x * 2).sum())(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
