"""Vectorized generation from a hybrid BayesNet (hybridpgm/graphs/bayes_net.py): Predictive(parallel=True) draws
as the sequential Predictive does and matches the exact moments."""

import math

import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import brute_joint, random_bn, single_thread  # noqa: F401 (autouse fixture)


# -- vectorized generation: Predictive(parallel=True) -------------------------------------------------------
def _hybrid_net() -> BayesNet:
    """D discrete; X | D linear Gaussian (a discrete parent); Y | D, X linear Gaussian (a discrete and a
    continuous parent); E | X neural with p(E = 1 | x) = sigmoid(0.8 x - 0.5) (a continuous parent)."""
    bn = BayesNet()
    bn.add("D", cpd.Table([0.3, 0.7]))
    bn.add("X", cpd.LinearGaussian(bias=[-1.0, 2.0], scale=[0.5, 1.0], parents=["D"]))
    bn.add("Y", cpd.LinearGaussian(bias=[0.5, -0.5], weight=[[1.5], [-2.0]], scale=0.3, parents=["D", "X"]))
    net = torch.nn.Linear(1, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0], [0.8]]))
        net.bias.copy_(torch.tensor([0.0, -0.5]))
    bn.add("E", cpd.Neural(net, ["X"], cardinality=2))
    return bn


def _exact_moments() -> dict:
    """Exact expectations of the statistics checked below (E[E] by quadrature on a fine grid, error < 1e-8)."""
    x = torch.linspace(-10.0, 14.0, 48001, dtype=torch.float64)
    density = sum(w * torch.distributions.Normal(m, s).log_prob(x).exp()
                  for w, m, s in ((0.3, -1.0, 0.5), (0.7, 2.0, 1.0)))
    p_e = torch.trapezoid(density * torch.sigmoid(0.8 * x - 0.5), x).item()
    # E[Y] = sum_d p(d) (b_d + w_d E[X | d]); the residual Y - b_D - w_D X is N(0, 0.3^2) given D, X
    return {"D": 0.7, "X": 0.3 * -1.0 + 0.7 * 2.0, "Y": 0.3 * (0.5 + 1.5 * -1.0) + 0.7 * (-0.5 - 2.0 * 2.0),
            "E": p_e, "residual": 0.0, "residual^2": 0.09}


def _statistics(s: dict) -> dict:
    d = s["D"]
    residual = s["Y"] - torch.where(d == 1, -0.5, 0.5) - torch.where(d == 1, -2.0, 1.5) * s["X"]
    return {"D": s["D"].double(), "X": s["X"].double(), "Y": s["Y"].double(), "E": s["E"].double(),
            "residual": residual.double(), "residual^2": residual.double() ** 2}


@pytest.mark.parametrize("num_samples,rows", [(250, 40), (60, 60)])
def test_parallel_predictive_matches_sequential_and_the_exact_moments(num_samples, rows):
    """Predictive(parallel=True) runs the model under a particle plate, so a continuous parent's value is
    [S, N]: the CPDs must keep both dims.  Before, S != N raised an IndexError and S == N gave silently wrong
    samples (Y paired with other rows' X).  Both ways must give [S, N] samples of the same distribution: each
    statistic's mean over the S * N independent draws is within 5 standard errors of its exact expectation
    (a false alarm has probability < 1e-6 per statistic; the seed is fixed anyway), and the residual
    Y - b_D - w_D X checks that every Y is drawn given its own row's D and X."""
    import pyro
    from pyro.infer import Predictive

    bn = _hybrid_net()
    exact = _exact_moments()
    shapes = {}
    for parallel in (True, False):
        pyro.set_rng_seed(0)
        with torch.no_grad():
            out = Predictive(bn.model, num_samples=num_samples, parallel=parallel)(None, num_samples=rows)
        shapes[parallel] = {v: tuple(out[v].shape) for v in bn.nodes}
        for name, f in _statistics(out).items():
            se = f.std().item() / math.sqrt(f.numel())
            assert abs(f.mean().item() - exact[name]) < 5 * se, (parallel, name, f.mean().item(), exact[name], se)
    assert shapes[True] == shapes[False] == {v: (num_samples, rows) for v in bn.nodes}
