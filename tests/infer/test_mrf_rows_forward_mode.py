"""Forward-mode derivatives of the exact MRF queries computed as gradients: the entropy
(:mod:`hybridpgm.infer.mrf_entropy`) and :func:`~hybridpgm.infer.mrf_exact.exact_marginals`' :math:`\\log Z`.

Potentials that carry a forward-mode tangent (:func:`torch.func.jacfwd`, :func:`torch.func.jvp`, a
:mod:`torch.autograd.forward_ad` dual) need not require grad; before, the queries took them for potentials
needing no derivative (:func:`~hybridpgm.infer.mrf_rows.needs_graph`) and returned the entropy and
:math:`\\log Z` detached: ``jacfwd`` gave exactly 0 and a dual's tangent was ``None``.  Now the tangent stays
(:func:`~hybridpgm.infer.mrf_rows.carries_tangents`), and a batch over
:data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES` still runs in chunks of rows (forward mode keeps no graph),
not refused as a differentiable batch is.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import forward_ad
from torch.func import jacfwd, jacrev

from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.infer import exact_marginals, mrf_exact
from hybridpgm.infer.mrf_entropy import exact_entropy
from tests.infer.test_mrf_entropy import _EIGHT_MODELS, _grid_batch
from tests.infer.test_mrf_exact import _contractions

D = torch.float64
_G = torch.Generator().manual_seed(0)
_TABLES = [torch.randn(*s, dtype=D, generator=_G) for s in [(2, 3), (3, 2), (2, 3), (3, 2), (2,)]]
_EVIDENCE = {"a": torch.tensor([0, -1, 1])}


def _net(ab: torch.Tensor) -> MarkovNet:
    """A loopy net over a, b, c, d, ``ab`` its first table."""
    m = MarkovNet({"a": 2, "b": 3, "c": 2, "d": 3})
    for (name, scope), t in zip([("ab", ["a", "b"]), ("bc", ["b", "c"]), ("cd", ["c", "d"]), ("da", ["d", "a"]),
                                 ("a", ["a"])], [ab] + _TABLES[1:]):
        m.add_factor(name, scope, t)
    return m


def _entropy(ab: torch.Tensor) -> torch.Tensor:
    """The exact entropy given ``a`` in rows 0 and 2 (``MarkovNet.distribution(...).entropy()``)."""
    return _net(ab).distribution(evidence=_EVIDENCE).entropy()


def _log_z(ab: torch.Tensor) -> torch.Tensor:
    return exact_marginals(_net(ab).factor_graph(_EVIDENCE))[0]


def _marginals(ab: torch.Tensor) -> torch.Tensor:
    return exact_marginals(_net(ab).factor_graph(_EVIDENCE))[1]


@pytest.mark.parametrize("query", [_entropy, _log_z, _marginals], ids=["entropy", "log_z", "marginals"])
def test_jacfwd_and_a_dual_equal_reverse_mode(query):
    x = _TABLES[0]
    rev = jacrev(query)(x)
    assert rev.abs().max() > 0.05
    torch.testing.assert_close(jacfwd(query)(x), rev, rtol=1e-9, atol=1e-12)
    v = torch.randn(x.shape, dtype=D, generator=torch.Generator().manual_seed(1))
    for grad_mode in (True, False):  # forward mode ignores grad mode
        with torch.set_grad_enabled(grad_mode), forward_ad.dual_level():
            out = query(forward_ad.make_dual(x, v))
            primal, tangent = forward_ad.unpack_dual(out)
        assert not out.requires_grad  # no graph where none was asked for
        assert tangent is not None
        torch.testing.assert_close(tangent, (rev * v).sum((-2, -1)), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(primal, query(x), rtol=0, atol=0)


def _grid_queries(J, h, ev) -> tuple:
    fg = ising_grid(5, 5, coupling=J, field=h).factor_graph(ev)
    log_z, marg = exact_marginals(fg)
    return exact_entropy(fg), log_z, marg


def test_a_forward_mode_batch_over_the_limit_runs_in_chunks(monkeypatch):
    """16 models over the limit (8 fit): with a dual on the couplings (no ``requires_grad``) the entropy and
    :func:`exact_marginals` run in chunks of 8 rows, not refused, and give the tangents of the whole batch's one
    contraction (at the default limit), which are reverse mode's."""
    J, h, ev = _grid_batch(16, seed=6)
    v = torch.randn(J.shape, dtype=D, generator=torch.Generator().manual_seed(2))
    with forward_ad.dual_level():
        whole = [forward_ad.unpack_dual(t) for t in _grid_queries(forward_ad.make_dual(J, v), h, ev)]
    Jr = J.clone().requires_grad_()
    entropy = _grid_queries(Jr, h, ev)[0]
    (g,) = torch.autograd.grad(entropy.sum(), Jr)  # the rows are independent: row b's derivative is in J[b] alone
    torch.testing.assert_close(whole[0].tangent, (g * v).sum(-1), rtol=1e-9, atol=1e-12)
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", _EIGHT_MODELS)
    with forward_ad.dual_level(), _contractions() as seen:
        chunked = [forward_ad.unpack_dual(t) for t in _grid_queries(forward_ad.make_dual(J, v), h, ev)]
    assert seen and all(models == 8 for _, models, _ in seen)
    for a, b in zip(chunked, whole):
        assert a.tangent is not None
        torch.testing.assert_close(a.primal, b.primal, rtol=0, atol=0)
        torch.testing.assert_close(a.tangent, b.tangent, rtol=1e-12, atol=1e-12)
