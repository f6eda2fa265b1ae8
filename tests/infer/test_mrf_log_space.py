"""The log-space and max-sum contractions of float32 MRFs (:mod:`hybridpgm.infer.mrf_log_space`): max-shifted
operands and renormalised steps, so no intermediate carries the running sum of the scores.

Found by a float32 audit: log space (frustrated models under the probability floor, float32 models of more than
about 2^1992 joint states, every exact MAP, log-space sampling) used the log-potentials as they are, so every
step's output carried about (factors) x (score) and was rounded at that scale.  The references are exact: closed
forms, or float64 recursions along a chain.
"""

import math

import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import mrf_exact


def _ring(n: int, coupling: float, field: float, dtype) -> MarkovNet:
    """A ring of ``n`` binary variables, ferromagnetic couplings ``J`` but one antiferromagnetic (frustrated: every
    state breaks a bond, so the shifted partition sum underflows and the queries go to log space), and a field
    on ``x0``."""
    mrf = MarkovNet({f"x{i}": 2 for i in range(n)})
    t = torch.tensor([[coupling, -coupling], [-coupling, coupling]], dtype=torch.float64).expand(n, 2, 2).clone()
    t[-1] = -t[-1]
    mrf.add_factors("pair", [[f"x{i}", f"x{(i + 1) % n}"] for i in range(n)], t.to(dtype))
    return mrf.add_factor("h", ["x0"], torch.tensor([0.0, field], dtype=dtype))


def _near_tie_chain(length: int, dtype=torch.float32) -> tuple[MarkovNet, torch.Tensor]:
    """A binary chain whose pairwise scores are 1000 plus noise of 1e-3, rounded to float32 (those values are the
    model, in ``dtype``: multiples of 2^-14), and the scores ``[T - 1, 2, 2]`` in float64."""
    g = torch.Generator().manual_seed(1)
    pair = (1000 + torch.randn(length - 1, 2, 2, generator=g, dtype=torch.float64) * 1e-3).float()
    mrf = MarkovNet({f"x{i}": 2 for i in range(length)})
    mrf.add_factors("pair", [[f"x{i}", f"x{i + 1}"] for i in range(length - 1)], pair.to(dtype))
    return mrf, pair.double()


def _chain_reference(pair: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Float64 forward-backward along the chain: ``(log Z, p(x_t = 1) [T])``."""
    fwd = [torch.zeros(2, dtype=torch.float64)]
    for t in range(pair.shape[0]):
        fwd.append((fwd[-1][:, None] + pair[t]).logsumexp(0))
    bwd = [torch.zeros(2, dtype=torch.float64)]
    for t in reversed(range(pair.shape[0])):
        bwd.append((pair[t] + bwd[-1][None, :]).logsumexp(1))
    bwd.reverse()
    log_z = fwd[-1].logsumexp(0)
    return log_z.item(), torch.stack([(f + b - log_z)[1].exp() for f, b in zip(fwd, bwd)])


def test_a_frustrated_ring_in_float32_keeps_its_small_field():
    """A ring of 30 binary variables, J = 5000, one antiferromagnetic bond, a field of 0.01 on x0.  Flipping every
    variable leaves the couplings' score as it is, so p(x0 = 1) = sigmoid(h) exactly.  The old float32 log-space
    redo added the field to running sums near 30 J = 150000 (one unit in the last place 0.0156) and gave 0.500721
    for 0.502500.  Tolerance: the terms that matter lie 2J below a step's maximum, where float32's unit in the
    last place is 2^-10 (9.8e-4) in the log-odds, and dp/dlog-odds <= 1/4: 2.5e-4 (measured 1.5e-5)."""
    mrf = _ring(30, 5000.0, 0.01, torch.float32)
    h = float(torch.tensor(0.01, dtype=torch.float32))
    got = mrf.marginals("exact")["x0"][1].item()
    assert abs(got - 1 / (1 + math.exp(-h))) < 2.5e-4


def test_exact_samples_of_a_frustrated_ring_carry_their_exact_log_prob():
    """The exact sampler on the same ring (log space): each sample's log p, the sum of the log conditionals drawn
    from, against its exact float64 value (score less the closed-form log Z, an odd number of broken bonds).  It was
    off by 0.021 (conditionals of entries rounded at 150000); tolerance two units in the last place of 2J = 10^4
    in float32 (2e-3), the scale of the entries the conditionals compare (measured 5e-4)."""
    n, coupling, field = 30, 5000.0, 0.01
    mrf = _ring(n, coupling, field, torch.float32)
    x, log_p = mrf_exact._sample(mrf.factor_graph(), 300, torch.Generator().manual_seed(0), with_log_prob=True)
    x = x[:, 0].double()
    h = float(torch.tensor(field, dtype=torch.float32))
    spins = 2 * x - 1
    bonds = spins * spins.roll(-1, 1)
    bonds[:, -1] = -bonds[:, -1]
    score = coupling * bonds.sum(1) + h * x[:, 0]
    # log Z = log(1 + e^h) + log sum over odd k of C(n, k) e^{J (n - 2k)}
    terms = torch.tensor([math.log(math.comb(n, k)) + coupling * (n - 2 * k) for k in range(1, n + 1, 2)],
                         dtype=torch.float64)
    log_z = math.log1p(math.exp(h)) + terms.logsumexp(0).item()
    assert (log_p[:, 0].double() - (score - log_z)).abs().max() < 2e-3


def test_exact_map_of_a_near_tie_chain_in_float32_is_the_float64_one():
    """A chain of 50 binary variables, pairwise scores 1000 +- 1e-3: the old float32 max-sum carried sums near
    50000 (unit in the last place 0.0039) and its MAP differed from float64's in 14 variables, 0.0066 below the
    best.  On the shifted operands every float32 sum is exact here (multiples of 2^-14 under 1), so the MAP state,
    ties included, and its score are float64's."""
    mrf, pair = _near_tie_chain(50)
    got = mrf.map_assignment(method="exact")
    want = _near_tie_chain(50, torch.float64)[0].map_assignment(method="exact")
    assert all(torch.equal(got[v], want[v]) for v in want)
    x, best = mrf_exact.exact_map(mrf.factor_graph())
    score = pair[torch.arange(49), x[0, :-1], x[0, 1:]].sum()
    assert best.dtype == torch.float32 and best.item() == float(score.float())


def test_a_long_near_tie_chain_in_float32_has_its_log_partition_and_marginals():
    """A float32 chain of 2000 binary variables (more than 2^1992 joint states: log space throughout), pairwise
    scores 1000 +- 1e-3, against a float64 forward-backward.  The old log-space steps carried sums near 2e6
    (rounded to 0.25): log Z was 49 nats off and the marginals 3.6e-3.  Tolerances: log Z near 2.0e6 is returned
    in float32, one unit in the last place 0.125 (half of it from the final rounding, the steps' own rounding
    about 2000 eps on numbers of order one); the marginals 1e-5 (measured 8.5e-7)."""
    mrf, pair = _near_tie_chain(2000)
    log_z, marg = mrf_exact.exact_marginals(mrf.factor_graph())
    want_z, want_p = _chain_reference(pair)
    assert log_z.dtype == torch.float32 and abs(log_z.item() - want_z) <= 0.125
    assert (marg[0, :, 1].double() - want_p).abs().max() < 1e-5


def test_exact_samples_of_a_long_chain_carry_their_exact_log_prob():
    """The exact sampler on the 2000-variable near-tie chain (log space throughout): each sample's log p (about
    -1386) against the exact float64 score less log Z.  It was off by 0.077 (conditionals of the running sums); with
    the operands shifted but the sampler's steps not renormalised, 1.8e-3; with the log conditionals also summed
    in float32, 0.018.  Tolerance 5e-4: half a unit in the last place of 1386 in float32 (6.1e-5, the one final
    rounding) plus 2000 draws of a few float32 roundings on numbers of order one (measured 5.7e-5)."""
    mrf, pair = _near_tie_chain(2000)
    x, log_p = mrf_exact._sample(mrf.factor_graph(), 200, torch.Generator().manual_seed(0), with_log_prob=True)
    x = x[:, 0]
    log_z, _ = _chain_reference(pair)
    exact = pair[torch.arange(1999), x[:, :-1], x[:, 1:]].sum(1) - log_z
    assert log_p.dtype == torch.float32 and (log_p[:, 0].double() - exact).abs().max() < 5e-4
