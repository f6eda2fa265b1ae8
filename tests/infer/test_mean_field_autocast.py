"""Mean field under :func:`torch.autocast`: the sweeps run with autocast off, in at least float32.

Found by an audit: under ``torch.autocast("cpu", torch.bfloat16)`` (and ``fit(precision="bf16")``) the field's
:func:`~hybridpgm.graphs.factor_graph.expected_factor` einsum ran in bfloat16, and ``index_add`` of that bfloat16
message into the float32 field raised torch's raw ``RuntimeError: index_add_(): self (Float) and source
(BFloat16) must have the same scalar type`` from :meth:`MarkovNet.marginals("mean_field") <MarkovNet.marginals>`,
``log_partition("mean_field")`` and a mean-field loss trained with ``fit(precision="bf16")``.  Belief propagation
gives the float32 answer there; mean field now does too, bit for bit.
"""

import functools

import torch
from torch import nn

from hybridpgm import fit
from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.infer import MeanField
from tests.graphs.mrf_brute_force import random_mrf
from tests.infer.mean_field_cases import with_dtype


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _queries(mrf: MarkovNet, evidence=None):
    log_z = mrf.log_partition("mean_field", evidence=evidence, num_iters=20)
    marg = mrf.marginals("mean_field", evidence=evidence, num_iters=20)
    return log_z, marg


def test_marginals_and_log_z_under_autocast_equal_float32_exactly():
    g = torch.Generator().manual_seed(0)
    grid = ising_grid(3, 3, torch.randn(12, generator=g), torch.randn(9, generator=g))
    triples = random_mrf(3, 5, num_factors=4, max_arity=3, batch=(2,), dtype=torch.float32)
    for mrf, evidence in [(grid, None), (grid, {"x_1_1": torch.tensor([0, 1, -1])}), (triples, None)]:
        want_z, want_marg = _queries(mrf, evidence)
        with _bf16():
            got_z, got_marg = _queries(mrf, evidence)
        assert got_z.dtype == torch.float32 and torch.equal(got_z, want_z)
        for v in want_marg:
            assert got_marg[v].dtype == torch.float32 and torch.equal(got_marg[v], want_marg[v]), v


def _learnt_grid(seed: int) -> MarkovNet:
    """A 3x3 grid whose pairwise and unary tables are parameters."""
    g = torch.Generator().manual_seed(seed)
    names = [f"x{i}" for i in range(9)]
    edges = [(i, i + 1) for i in range(9) if i % 3 < 2] + [(i, i + 3) for i in range(6)]
    mrf = MarkovNet({n: 2 for n in names})
    mrf.add_factors("pair", [[names[a], names[b]] for a, b in edges], nn.Parameter(torch.randn(12, 2, 2, generator=g)))
    mrf.add_factors("unary", [[n] for n in names], nn.Parameter(torch.randn(9, 2, generator=g)))
    return mrf


def test_gradients_through_the_sweeps_under_autocast_equal_float32():
    mrf = _learnt_grid(1)

    def loss():
        return mrf.log_partition("mean_field", num_iters=5, tol=0.0) + mrf.marginals(
            "mean_field", num_iters=5, tol=0.0)["x4"][1]

    want = torch.autograd.grad(loss(), list(mrf.parameters()))
    with _bf16():  # the forward pass under autocast, the backward pass after it (as fit and torch's docs do)
        under = loss()
    got = torch.autograd.grad(under, list(mrf.parameters()))
    assert len(want) == 2 and all(torch.equal(a, b) for a, b in zip(got, want))


def test_bfloat16_potentials_and_init_under_autocast_run_in_float32():
    """Half-precision potentials (what networks return under autocast) are promoted: the answer is mean field on
    the float32 copy of the graph, in float32."""
    g = torch.Generator().manual_seed(2)
    fg32 = ising_grid(3, 3, torch.randn(12, generator=g), torch.randn(9, generator=g)).factor_graph()
    fg16 = with_dtype(fg32, torch.bfloat16)
    init = torch.rand(1, 9, 2, generator=g)
    want = MeanField(num_iters=30)(with_dtype(fg16, torch.float32), init.to(torch.bfloat16).float())
    with _bf16():
        got = MeanField(num_iters=30)(fg16, init.to(torch.bfloat16))
        elbo = MeanField.elbo(fg16, want.marginals)
    assert got.marginals.dtype == got.log_z.dtype == torch.float32
    assert torch.equal(got.marginals, want.marginals) and torch.equal(got.log_z, want.log_z)
    assert torch.equal(elbo, want.log_z)


def test_a_neural_potential_still_runs_under_autocast():
    """Only the sweeps leave autocast: the network computing a potential from the context runs in bfloat16."""
    net = nn.Linear(2, 2)
    seen = []
    net.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("ab", ["a", "b"], torch.tensor([[0.5, -0.5], [-0.5, 0.5]]))
    mrf.add_factor("a", ["a"], net)
    with _bf16():
        marg = mrf.marginals("mean_field", context=torch.ones(3, 2))
    assert seen == [torch.bfloat16] and marg["b"].dtype == torch.float32 and marg["b"].shape == (3, 2)


class _MeanFieldLoss:
    """Cross-entropy of the mean-field beliefs of a 3x3 grid with learnt tables (player ``"mrf"``)."""

    def __init__(self):
        self.module = _learnt_grid(3)

    def players(self):
        return {"mrf": list(self.module.parameters())}

    def loss(self, player, batch):
        marg = self.module.marginals("mean_field", num_iters=3, tol=0.0)
        beliefs = torch.stack([marg[v] for v in self.module.variables], dim=0)  # [9, 2]
        return -beliefs.gather(-1, batch.long().T).clamp_min(1e-6).log().mean()


def test_fit_of_a_mean_field_objective_in_bf16_runs_and_matches_float32():
    """A tabular model has no network to run in bfloat16: its losses under ``precision="bf16"`` are the float32
    run's (before, the first step raised torch's ``index_add_`` dtype error)."""
    data = (torch.arange(16 * 9).reshape(16, 9) % 3 == 0).float()

    def losses(precision):
        objective = _MeanFieldLoss()
        result = fit(objective, data, max_steps=2, batch_size=8, device="cpu", seed=0, progress=False,
                     precision=precision, optim=functools.partial(torch.optim.Adam, lr=0.05))
        return result.history.loss["mrf"]

    want = losses("fp32")
    assert losses("bf16") == want and len(want) == 2
