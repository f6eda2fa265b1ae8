"""MarkovNet (hybridpgm/graphs/markov_net.py): exact inference against brute force, batches, grids, neural
potentials, Gibbs against exact, evidence, and the denoising example."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hybridpgm.errors import ConfigError, EvidenceError, ModelSpecError
from hybridpgm.graphs import MarkovNet, grid_edges, ising_grid, potts_grid
from tests.graphs.mrf_brute_force import brute_force, random_mrf
from tests.graphs.test_mrf_declare import _pair


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(1, 4), num_factors=st.integers(1, 5),
       batch=st.sampled_from([(), (2,)]))
def test_exact_matches_brute_force(seed, num_vars, num_factors, batch):
    mrf = random_mrf(seed, num_vars, num_factors=num_factors, batch=batch)
    log_z, marg = brute_force(mrf, len(batch))
    assert torch.allclose(mrf.log_partition("exact"), log_z, atol=1e-10)
    got = mrf.marginals("exact")
    for v in mrf.variables:
        assert got[v].shape == marg[v].shape
        assert torch.allclose(got[v], marg[v], atol=1e-10)


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 10_000), num_vars=st.integers(2, 4))
def test_exact_with_batched_partial_evidence(seed, num_vars):
    mrf = random_mrf(seed, num_vars, num_factors=4)
    v0, v1 = mrf.variables[0], mrf.variables[1]
    evidence = {v0: torch.tensor([-1, 0, mrf.cards[v0] - 1]), v1: torch.tensor([0, -1, 0])}
    log_z, marg = brute_force(mrf, 1, evidence)
    assert torch.allclose(mrf.log_partition("exact", evidence=evidence), log_z, atol=1e-10)
    got = mrf.marginals("exact", evidence=evidence)
    for v in mrf.variables:
        assert torch.allclose(got[v], marg[v], atol=1e-10)
    assert torch.allclose(got[v1][0], torch.nn.functional.one_hot(torch.tensor(0), mrf.cards[v1]).double())


def test_independent_models_batched_like_separate():
    g = torch.Generator().manual_seed(1)
    E = len(grid_edges(2, 3))
    J = torch.randn(3, E, generator=g, dtype=torch.double)
    h = torch.randn(3, 6, generator=g, dtype=torch.double)
    batched = ising_grid(2, 3, J, h).log_partition("exact")
    single = torch.stack([ising_grid(2, 3, J[i], h[i]).log_partition("exact") for i in range(3)])
    assert batched.shape == (3,)
    assert torch.allclose(batched, single)
    log_z, _ = brute_force(ising_grid(2, 3, J, h), 1)
    assert torch.allclose(batched, log_z)


def test_ising_and_potts_grids():
    mrf = ising_grid(3, 4, coupling=0.7, field=0.2)
    assert len(mrf.variables) == 12 and len(mrf.families["coupling"]["scopes"]) == 17
    colors = torch.tensor(mrf.colors()).reshape(3, 4)
    assert torch.equal(colors, (torch.arange(3)[:, None] + torch.arange(4)) % 2)
    # Ising J s_i s_j equals a Potts coupling 2J [x_i = x_j] up to a constant per edge
    potts = potts_grid(3, 4, 2, coupling=1.4, unary=torch.tensor([[-0.2, 0.2]]))
    assert torch.allclose(potts.log_partition() - 17 * 0.7, mrf.log_partition(), atol=1e-5)
    log_z, _ = brute_force(mrf)
    assert torch.allclose(mrf.log_partition(), log_z, atol=1e-4)


class _Neural(nn.Module):
    """Context [N, 4] -> log-potentials [N, 1, 2, 2] for one edge family."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4).double()

    def forward(self, ctx):
        return self.lin(ctx).reshape(-1, 1, 2, 2)


def test_neural_potentials_batch_over_context_and_gradients():
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factors("pair", [["a", "b"], ["b", "c"]], _Neural())
    mrf.add_factor("u", ["a"], nn.Parameter(torch.zeros(2, dtype=torch.double)))
    ctx = torch.randn(5, 4, dtype=torch.double)
    log_z = mrf.log_partition("exact", context=ctx)
    assert log_z.shape == (5,)
    ref, _ = brute_force(mrf, 1, context=ctx)
    assert torch.allclose(log_z, ref)
    marg = mrf.marginals("exact", context=ctx)["c"]
    marg[:, 1].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mrf.parameters())


def test_exact_log_partition_gradcheck():
    g = torch.Generator().manual_seed(3)
    table = torch.randn(2, 3, 2, generator=g, dtype=torch.double, requires_grad=True)

    def f(t):
        mrf = MarkovNet({"a": 2, "b": 3, "c": 2, "d": 2})
        mrf.add_factor("abc", ["a", "b", "c"], t)
        mrf.add_factor("cd", ["c", "d"], t[:, 0])
        return mrf.log_partition("exact"), mrf.marginals("exact")["d"]

    assert torch.autograd.gradcheck(f, (table,))


def test_gibbs_marginals_match_exact_within_mc_error():
    g = torch.Generator().manual_seed(0)
    mrf = ising_grid(3, 3, coupling=0.4, field=0.5 * torch.randn(9, generator=g))
    exact = mrf.marginals("exact")
    n = 2000
    samples = mrf.sample(n, num_sweeps=20, generator=torch.Generator().manual_seed(1))
    for v in mrf.variables:
        p = exact[v][1]
        se = math.sqrt(float(p * (1 - p)) / n)
        assert abs(samples[v].float().mean() - p) < 4 * se, v


def test_exact_sampling_joint_frequencies():
    mrf = random_mrf(11, 3, max_card=3, num_factors=3)
    n = 6000
    s = mrf.sample(n, method="exact", evidence={mrf.variables[0]: torch.tensor([-1, 0])},
                   generator=torch.Generator().manual_seed(0))
    values = {v: torch.tensor([0, 0]) for v in mrf.variables}
    p = (mrf.score(values) - mrf.log_partition(evidence={mrf.variables[0]: torch.tensor([-1, 0])})).exp()
    freq = torch.stack([v == 0 for v in s.values()]).all(0).double().mean(0)  # P(all zero), per batch entry
    se = (p * (1 - p) / n).sqrt()
    assert s[mrf.variables[0]].shape == (n, 2) and bool((s[mrf.variables[0]][:, 1] == 0).all())
    assert bool(((freq - p).abs() < 4 * se + 1e-12).all())


def test_gibbs_respects_evidence():
    mrf = ising_grid(2, 2, coupling=1.0)
    s = mrf.sample(50, evidence={"x_0_0": torch.tensor([0, 1])}, num_sweeps=5)
    assert s["x_0_0"].shape == (50, 2)
    assert torch.equal(s["x_0_0"], torch.tensor([0, 1]).expand(50, 2))


def test_variables_as_pairs_keep_their_order():
    assert MarkovNet([("b", 3), ("a", 2)]).variables == ["b", "a"]
    assert MarkovNet([("b", 3), ("a", 2)]).cards == {"b": 3, "a": 2}


def test_neural_output_checked():
    m = MarkovNet({"a": 2, "b": 2})
    m.add_factor("nn", ["a", "b"], nn.Linear(3, 3))
    with pytest.raises(ModelSpecError, match="'nn'.*shape"):
        m.log_partition(context=torch.zeros(1, 3))


def test_bad_evidence_raises_evidence_error():
    m = _pair(torch.zeros(2, 2))
    with pytest.raises(EvidenceError, match="'a'.*outside"):
        m.marginals(evidence={"a": torch.tensor(2)})
    with pytest.raises(EvidenceError, match="unknown variable 'z'"):
        m.marginals(evidence={"z": torch.tensor(0)})
    with pytest.raises(EvidenceError, match="'b'"):
        m.score({"a": torch.tensor(0), "b": torch.tensor(5)})
    with pytest.raises(ConfigError):
        m.marginals("bp", num_iters=0)


@pytest.mark.slow
@pytest.mark.parametrize("inference", ["mean_field", "bp"])
def test_denoising_example_beats_noisy_and_untrained(inference):
    import runpy
    from pathlib import Path

    example = runpy.run_path(str(Path(__file__).parents[2] / "examples" / "mrf_denoising.py"))
    out = example["main"](example["parse_args"](["--device", "cpu", "--inference", inference]))
    assert out["trained"] < out["noisy"] - 0.03 and out["trained"] < out["untrained"]
