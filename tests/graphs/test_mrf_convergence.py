"""A MarkovNet query whose loopy BP or mean field did not converge says so (hybridpgm/graphs/mrf_convergence.py)."""

import warnings

import pytest
import torch

from hybridpgm.errors import EstimateWarning
from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.grids import ising_grid


def _ising(n=10, coupling=1.0):
    """An n x n binary Ising grid, couplings ``coupling``, random fields of scale 0.5 (seed 0)."""
    field = torch.randn(n * n, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5
    return ising_grid(n, n, torch.tensor(coupling, dtype=torch.float64), field=field)


def test_an_unconverged_bp_estimate_warns_naming_the_method_and_the_fixes():
    """Found by a float32 audit: on a 10 x 10 grid with couplings 1, 50 undamped BP steps gave log Z -46.9 for
    the exact 182.0, silently (the algorithm's converged=False was dropped by the query)."""
    mrf = _ising()
    with pytest.warns(EstimateWarning, match=r"belief propagation \(method='bp'\) did not converge in 50 "
                                             r"iterations.*add damping \(damping=0.5\)") as caught:
        value = mrf.log_partition("bp")
    assert caught[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        converged = mrf.log_partition("bp", num_iters=500, damping=0.5)
        mrf.log_partition("bp", tol=0)  # all the steps asked for, no check: nothing claimed, nothing said
    assert float(converged) - float(value) > 10  # the estimate it warned about was indeed far off (156.9, 177.7)
    assert abs(float(converged) - float(mrf.log_partition())) < 5  # the Bethe estimate, near the exact 181.3


def test_marginals_and_mean_field_warn_alike_and_a_tree_does_not():
    with pytest.warns(EstimateWarning, match="belief propagation"):
        _ising().marginals("bp")
    with pytest.warns(EstimateWarning, match=r"mean field \(method='mean_field'\) did not converge in 1 "):
        _ising(coupling=0.5).log_partition("mean_field", num_iters=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chain = MarkovNet({"a": 2, "b": 2})
        chain.add_factor("ab", ["a", "b"], torch.eye(2))
        chain.marginals("bp")


def test_a_float32_tree_query_does_not_warn():
    """Found by review: 12 of 40 float32 trees with log-potentials 5 * randn warned 'did not converge ... may be
    far off' although BP is exact on a tree (messages of magnitude ~50 move by an ulp, 8e-6, forever; the test
    now allows for float rounding, hybridpgm/infer/rounding_floor.py)."""
    g = torch.Generator().manual_seed(4)
    net = MarkovNet({f"v{i}": 4 for i in range(15)})
    for i in range(1, 15):
        net.add_factor(f"f{i}", [f"v{(i - 1) // 2}", f"v{i}"], 5 * torch.randn(4, 4, generator=g))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = net.log_partition("bp")
    assert value.dtype == torch.float32
    exact = float(net.double().log_partition("exact"))
    assert abs(float(value) - exact) <= 8 * torch.finfo(torch.float32).eps * abs(exact)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_loopy_oscillation_still_warns_in_either_dtype(dtype):
    """Guard (warned before the rounding floor too): undamped BP on the 10 x 10 grid oscillates by far more than
    float rounding, so float32 warns as float64 does."""
    mrf = _ising().to(dtype)
    with pytest.warns(EstimateWarning, match="belief propagation"):
        mrf.log_partition("bp")


def test_the_mean_field_warning_gives_its_own_reason_not_bp_s():
    """Found by a settings audit: mean field's warning said "(loopy BP can oscillate on strongly coupled graphs)",
    the reason of the other method; mean field's sweeps creep, and damping is no advice for it."""
    with pytest.warns(EstimateWarning) as caught:
        _ising(coupling=0.5).log_partition("mean_field", num_iters=1)
    message = str(caught[0].message)
    assert "BP" not in message and "damping" not in message
    assert "(mean field's coordinate-ascent sweeps can creep slowly on strongly coupled graphs); raise num_iters" \
        in message
    with pytest.warns(EstimateWarning, match=r"\(loopy BP can oscillate on strongly coupled graphs\); add damping"):
        _ising().log_partition("bp")
