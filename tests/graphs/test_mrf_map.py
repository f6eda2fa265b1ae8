"""MAP decoding of a compiled MRF (:mod:`hybridpgm.graphs.mrf_map`) against brute-force enumeration."""

from __future__ import annotations

import warnings

import pytest
import torch

from hybridpgm.errors import EstimateWarning, ModelSpecError
from hybridpgm.graphs.mrf_map import map_of, tied_rows
from tests.graphs.mrf_brute_force import assignments, random_mrf


def _brute_force_map(mrf):
    values, rows = assignments(mrf)
    return rows[int(mrf.score(values).argmax())]


@pytest.mark.parametrize("method", ["exact", "bp", "auto"])
def test_map_of_a_tree_is_the_enumerated_argmax(method):
    mrf = random_mrf(3, 6, max_card=3, tree=True)
    with torch.no_grad():
        got = map_of(mrf.factor_graph(), method, {}, list(mrf.cards))
    assert list(got) == list(mrf.cards)
    assert torch.equal(torch.stack([got[v] for v in mrf.cards]), _brute_force_map(mrf))


def test_map_of_exact_on_a_loopy_model_is_the_enumerated_argmax():
    mrf = random_mrf(5, 6, max_card=3, num_factors=7)
    got = map_of(mrf.factor_graph(), "exact", {}, list(mrf.cards))
    assert torch.equal(torch.stack([got[v] for v in mrf.cards]), _brute_force_map(mrf))


def test_map_of_refuses_max_product_as_a_bp_option():
    mrf = random_mrf(1, 3, tree=True)
    with pytest.raises(ModelSpecError, match="max_product is not an option"):
        map_of(mrf.factor_graph(), "bp", {"max_product": True}, list(mrf.cards))


def test_tied_rows_flags_rows_whose_top_two_max_marginals_tie():
    m = torch.tensor([[[0.5, 0.5], [0.9, 0.1]],      # first variable ties
                      [[0.6, 0.4], [0.2, 0.8]],      # no tie
                      [[0.3, 0.7], [0.45, 0.45]]])   # second variable ties
    assert tied_rows(m).tolist() == [True, False, True]
    assert tied_rows(torch.ones(4, 2, 1)).tolist() == [False] * 4  # one state: nothing can tie


def _spin_glass(seed, scale):
    """A 3 x 3 binary grid, couplings ``scale * randn`` (mixed signs: frustrated), fields ``0.1 * randn``."""
    from hybridpgm.graphs import ising_grid

    g = torch.Generator().manual_seed(seed)
    return ising_grid(3, 3, scale * torch.randn(12, generator=g), 0.1 * torch.randn(9, generator=g))


@pytest.mark.parametrize("method", ["bp", "auto"])  # "auto" takes BP where BP options are given
def test_an_unconverged_max_product_map_warns_at_the_callers_line(method):
    """Found by an audit of warnings: on this spin glass 50 steps of max-product BP did not converge and decoded an
    assignment of log-probability -14.33 where the MAP's is -1.73, silently (marginals('bp') warned, the MAP did
    not read the result's converged)."""
    mrf = _spin_glass(1, 1.5)
    with pytest.warns(EstimateWarning, match=r"max-product BP did not converge in 50 iterations .*far from the "
                                             r"MAP.*add damping \(damping=0.5\), raise num_iters, or use "
                                             r"method='exact'") as caught:
        got = mrf.map_assignment(method=method, num_iters=50)
    assert len(caught) == 1 and caught[0].filename == __file__  # points at the caller's line
    exact = mrf.map_assignment(method="exact")
    assert float(mrf.log_prob(got)) == pytest.approx(-14.329, abs=1e-3)  # the assignment it warned about
    assert float(mrf.log_prob(exact)) == pytest.approx(-1.726, abs=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mrf.map_assignment(method="bp", num_iters=50, tol=0)  # no check asked for: nothing claimed, nothing said


def test_a_converged_max_product_map_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weak = _spin_glass(1, 0.2)  # weakly coupled: BP converges, to the exact MAP
        got = weak.map_assignment(method="bp", num_iters=50)
        exact = weak.map_assignment(method="exact")
        assert all(torch.equal(got[v], exact[v]) for v in exact)
        tree = random_mrf(3, 6, max_card=3, tree=True)
        with torch.no_grad():
            tree.map_assignment(method="bp")
