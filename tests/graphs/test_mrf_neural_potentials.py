"""MarkovNet with neural potentials: one forward pass per training loss (the score and log Z from the same tables),
the context's dtype and rows, and queries that leave the networks' running statistics alone."""

import itertools

import pyro
import pytest
import torch
from torch import nn

from hybridpgm.errors import DataError, EvidenceError
from hybridpgm.graphs import MarkovNet

STATES = torch.tensor(list(itertools.product(range(2), range(3))))  # [6, 2]: every state of (a, b)


class Potential(nn.Module):
    """``context [..., 3] -> [..., 2, 3]`` log-potentials through ``layer`` (dropout, batch norm); counts calls."""

    def __init__(self, layer: nn.Module, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, width), layer, nn.ReLU(), nn.Linear(width, 6))
        self.calls = 0

    def forward(self, context):
        self.calls += 1
        return self.net(context).reshape(context.shape[:-1] + (2, 3))


def _net(layer):
    pot = Potential(layer).train()
    return MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], pot), pot


def test_log_prob_with_dropout_in_training_mode_is_normalised_and_runs_the_network_once():
    """The score and log Z came from two forward passes (two dropout masks): sum_x p(x) was 0.62."""
    torch.manual_seed(0)
    mrf, pot = _net(nn.Dropout(0.5))
    context = torch.randn(1, 3)
    pot.calls = 0
    lp = mrf.log_prob({"a": STATES[:, :1], "b": STATES[:, 1:]}, context=context)  # [6, 1]
    assert pot.calls == 1
    assert torch.allclose(lp.exp().sum(0), torch.ones(1), atol=1e-5)
    for method in ("bp", "mean_field"):  # any method: the same tables for the score and the estimate
        pot.calls = 0
        mrf.log_prob({"a": STATES[:, :1], "b": STATES[:, 1:]}, context=context, method=method)
        assert pot.calls == 1


def test_model_with_dropout_runs_the_network_once_and_its_factors_are_normalised():
    """Each run of MarkovNet.model scores and normalises with one set of tables: with the dropout mask fixed by
    the seed, exp(log_prob_sum) of the six one-row programs sums to one."""
    mrf, pot = _net(nn.Dropout(0.5))
    torch.manual_seed(0)
    context = torch.randn(1, 3)
    total = 0.0
    for x in STATES:
        torch.manual_seed(1)  # the same mask in every run
        pot.calls = 0
        tr = pyro.poutine.trace(mrf.model).get_trace({"a": x[:1], "b": x[1:]}, context=context)
        assert pot.calls == 1
        total += tr.log_prob_sum().exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_a_training_loss_counts_one_batch_norm_update_per_call():
    mrf, pot = _net(nn.BatchNorm1d(16))
    bn = pot.net[1]
    values = {"a": torch.tensor([0, 1, 1, 0, 1]), "b": torch.tensor([2, 0, 1, 1, 0])}
    context = torch.randn(5, 3)
    mrf.log_prob(values, context=context)
    assert int(bn.num_batches_tracked) == 1
    pyro.poutine.trace(mrf.model).get_trace(values, context=context)
    assert int(bn.num_batches_tracked) == 2
    mrf.distribution(context=context).log_prob(STATES[:, None, :])
    assert int(bn.num_batches_tracked) == 3


def _buffers(module):
    return {n: b.clone() for n, b in module.named_buffers()}


@pytest.mark.parametrize("query", ["log_partition", "log_partition_bp", "marginals", "map_bp", "map_exact",
                                   "sample_exact", "sample_gibbs"])
def test_queries_in_training_mode_leave_the_running_statistics_as_they_were(query):
    """Queries use the batch's statistics in training mode but do not count the batch (they moved the running
    statistics by 0.19); the network stays in training mode."""
    torch.manual_seed(0)
    mrf, pot = _net(nn.BatchNorm1d(16))
    context = torch.randn(6, 3) * 2 + 1
    run = {"log_partition": lambda: mrf.log_partition(context=context),
           "log_partition_bp": lambda: mrf.log_partition("bp", context=context),
           "marginals": lambda: mrf.marginals("bp", context=context),
           "map_bp": lambda: mrf.map_assignment(context=context, method="bp"),
           "map_exact": lambda: mrf.map_assignment(context=context, method="exact"),
           "sample_exact": lambda: mrf.sample(3, method="exact", context=context),
           "sample_gibbs": lambda: mrf.sample(3, num_sweeps=2, context=context)}[query]
    before = _buffers(pot)
    run()
    after = _buffers(pot)
    assert all(torch.equal(before[n], after[n]) for n in before), query
    assert pot.training and pot.calls == 1
    # in training mode the query normalised with the batch's statistics: eval mode gives another answer
    z_train = mrf.log_partition(context=context)
    pot.eval()
    assert not torch.allclose(mrf.log_partition(context=context), z_train)


@pytest.mark.parametrize("query", ["log_partition_exact", "log_partition_bp", "sample", "score", "log_prob",
                                   "model", "distribution"])
def test_a_context_of_higher_precision_than_the_potential_is_a_named_data_error(query):
    """float64 context into a float32 network that does not cast it: torch's 'mat1 and mat2 must have the same
    dtype' before."""
    torch.manual_seed(0)
    mrf, _ = _net(nn.Identity())
    context = torch.randn(3, 3, dtype=torch.float64)
    values = {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([0, 2, 1])}
    run = {"log_partition_exact": lambda: mrf.log_partition(context=context),
           "log_partition_bp": lambda: mrf.log_partition("bp", context=context),
           "sample": lambda: mrf.sample(2, context=context),
           "score": lambda: mrf.score(values, context=context),
           "log_prob": lambda: mrf.log_prob(values, context=context),
           "model": lambda: mrf.model(values, context=context),
           "distribution": lambda: mrf.distribution(context=context)}[query]
    with pytest.raises(DataError, match=r"potential of factor 'ab' fails on a context of dtype torch.float64 \(its "
                                        r"parameters are torch.float32\)"):
        run()


class _Casting(nn.Module):
    """A potential that casts its context to its own dtype."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 6)

    def forward(self, ctx):
        return self.lin(ctx.to(self.lin.weight.dtype)).view(-1, 2, 3)


def test_a_context_of_higher_precision_reaches_a_potential_that_casts_it():
    """The first fix refused every float64 context of a float32 network, also one the network casts itself."""
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3})
    mrf.add_factor("ab", ["a", "b"], _Casting())
    context = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(mrf.log_partition(context=context), mrf.log_partition(context=context.float()))


def test_a_context_of_lower_precision_is_widened_exactly():
    torch.manual_seed(0)
    mrf, _ = _net(nn.Identity())
    context = torch.randn(3, 3).to(torch.bfloat16)
    values = {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([0, 2, 1])}
    want = mrf.log_prob(values, context=context.float())
    got = mrf.log_prob(values, context=context)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert torch.equal(mrf.log_partition(context=context.to(torch.float16).float()),
                       mrf.log_partition(context=context.to(torch.float16)))


def test_an_integer_context_reaches_an_embedding_and_a_linear_layer_fails_with_a_named_error():
    class Embedded(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(4, 6)

        def forward(self, context):
            return self.emb(context).reshape(context.shape + (2, 3))

    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], Embedded())
    assert mrf.log_partition(context=torch.tensor([0, 3])).shape == (2,)
    linear, _ = _net(nn.Identity())
    with pytest.raises(DataError, match=r"factor 'ab' fails on a context of dtype torch.int64 \(its parameters are "
                                        r"torch.float32\)"):
        linear.log_partition(context=torch.ones(3, 3, dtype=torch.long))


def test_a_context_with_another_number_of_rows_than_the_values_is_named():
    torch.manual_seed(0)
    mrf, _ = _net(nn.Identity())
    values = {"a": torch.tensor([0, 1, 1, 0, 1]), "b": torch.tensor([0, 2, 1, 1, 1])}
    with pytest.raises(EvidenceError, match=r"MarkovNet.model: the values .* tables \(from a context of shape "
                                            r"\(3, 3\)\), of \[3\] row\(s\), need one number of rows, got \[3, 5\]"):
        mrf.model(values, context=torch.randn(3, 3))
    with pytest.raises(EvidenceError, match=r"values' batch shape \(5,\) .* does not broadcast with the tables' "
                                            r"batch shape \(3,\)"):
        mrf.log_prob(values, context=torch.randn(3, 3))
