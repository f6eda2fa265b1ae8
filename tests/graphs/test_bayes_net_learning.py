"""Learning a BayesNet from incomplete data (hybridpgm/graphs/bayes_net.py): tables recovered with 30% missing,
the Dirichlet prior's MAP estimate, neural CPDs, and the running statistics of batch-norm CPDs under queries
and training steps."""

import functools

import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

import hybridpgm
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import SVIObjective
from tests.graphs.bn_helpers import brute_joint, random_bn, single_thread  # noqa: F401 (autouse fixture)
from tests.graphs.bn_chain import TRUE, _chain, _with_missing


def _fit(bn, data, steps, lr=0.1, **model_kwargs):
    objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1), **model_kwargs)
    hybridpgm.fit(objective, bn.split_missing(data), epochs=steps, batch_size=len(data), device="cpu", seed=0,
                  progress=False, optim=functools.partial(torch.optim.Adam, lr=lr))


def test_learning_with_30_percent_missing_recovers_tables():
    truth = _chain()
    torch.manual_seed(0)
    n = 3000
    data = _with_missing(truth.to_tensor(truth.sample(n)), 0.3, seed=1)
    g = torch.Generator().manual_seed(2)
    learner = BayesNet()
    learner.add("a", cpd.Table.random(2, generator=g))
    learner.add("b", cpd.Table.random(3, [2], ["a"], generator=g))
    learner.add("c", cpd.Table.random(2, [3], ["b"], generator=g))
    _fit(learner, data, steps=100, lr=0.15)
    parent_marginal = {"a": torch.ones(1), "b": TRUE["a"], "c": truth.posterior("b").detach()}
    for v in learner.nodes:
        learned = learner.cpds[v].probs.detach()
        # rows where parent and child are both observed: a lower bound on the information per row
        n_row = n * 0.7 * (0.7 if v != "a" else 1.0) * parent_marginal[v]
        tol = 4 * torch.sqrt(0.25 / n_row)[..., None]
        assert torch.all((learned - TRUE[v]).abs() < tol), (v, learned, TRUE[v])


def test_dirichlet_prior_gives_the_map_estimate():
    counts = torch.tensor([5, 12, 3])
    data = torch.repeat_interleave(torch.arange(3), counts).float()[:, None]
    alpha = torch.tensor([2.0, 3.0, 1.5])
    bn = BayesNet().add("x", cpd.Table.uniform(3, prior=alpha))
    _fit(bn, data, steps=150, lr=0.2, num_data=len(data))
    ref = (counts + alpha - 1) / (counts.sum() + alpha.sum() - 3)
    torch.testing.assert_close(bn.cpds["x"].probs.detach(), ref, atol=2e-3, rtol=0)


def test_neural_cpd_learns_a_conditional_from_incomplete_data():
    truth = _chain()
    torch.manual_seed(0)
    data = _with_missing(truth.to_tensor(truth.sample(2000))[:, :2], 0.3, seed=3)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    bn = BayesNet().add("a", cpd.Table.uniform(2)).add("b", cpd.Neural(net, ["a"], 3))
    _fit(bn, data, steps=120, lr=0.1)
    learned = bn.cpds["b"].log_table().exp().detach()
    assert learned.shape == (2, 3)
    n_row = 2000 * 0.7 * 0.7 * TRUE["a"]
    assert torch.all((learned - TRUE["b"]).abs() < 4 * torch.sqrt(0.25 / n_row)[:, None])


def test_neural_cpd_with_context_and_linear_gaussian_in_the_model():
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("z", cpd.Neural(torch.nn.Linear(1, 2), [], 2, context=["u"]))
    bn.add("y", cpd.LinearGaussian(torch.tensor([0.0, 3.0]), scale=1.0, parents=["z"]))
    u = torch.randn(6, 1)
    s = bn.sample(6, context=u)
    assert s["z"].shape == (6,) and s["y"].dtype == torch.get_default_dtype()
    # the posterior of z given y and the context u, by Bayes' rule
    prior = torch.nn.functional.log_softmax(bn.cpds["z"].net(u), -1)
    lik = torch.distributions.Normal(torch.tensor([0.0, 3.0]), 1.0).log_prob(s["y"][:, None])
    torch.testing.assert_close(bn.posterior("z", {"y": s["y"], "u": u}), (prior + lik).softmax(-1))
    data = torch.stack([torch.full((6,), float("nan")), s["y"]], -1)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, data, None, u)
    torch.testing.assert_close(loss, -(prior + lik).logsumexp(-1).sum())


# ---------------------------------------------------------------- audit 11: learning


def _batch_norm_net(inputs: int = 3):
    """A BayesNet ``c -> w`` whose ``w`` is a Neural CPD with a batch norm (context ``u``), in training mode."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(inputs, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 2))
    bn = BayesNet()
    bn.add("c", cpd.Table([0.3, 0.7]))
    bn.add("w", cpd.Neural(net, ["c"], 2, context=["u"] if inputs == 3 else ()))
    return bn.train(), net[1]


@pytest.mark.parametrize("query", ["posterior", "log_evidence", "map", "sample", "sample_evidence",
                                   "compile_evidence"])
def test_queries_in_training_mode_leave_the_running_statistics_as_they_were(query):
    """Queries use the batch's statistics in training mode but leave the running statistics (posterior moved them
    by 0.0975); the training losses (model, log_prob) still update them."""
    bn, norm = _batch_norm_net(2 if query == "compile_evidence" else 3)
    ev = {"w": torch.ones(5, dtype=torch.long), "u": torch.randn(5, 1) * 3 + 2}
    run = {"posterior": lambda: bn.posterior("c", ev),
           "log_evidence": lambda: bn.log_evidence(ev),
           "map": lambda: bn.map(ev),
           "sample": lambda: bn.sample(5, {"u": ev["u"]}),
           "sample_evidence": lambda: bn.sample(3, evidence=ev),
           "compile_evidence": lambda: bn.compile_evidence(["w"]).posterior("c", {"w": 1})}[query]
    before = {n: b.clone() for n, b in norm.named_buffers()}
    run()
    assert all(torch.equal(b, norm.get_buffer(n)) for n, b in before.items()), query
    assert norm.training


def test_a_training_step_still_updates_the_running_statistics():
    bn, norm = _batch_norm_net()
    data = {"c": torch.tensor([0, 1, 1, 0]), "w": torch.tensor([1, 1, 0, 0])}
    u = torch.randn(4, 1) * 3 + 2
    bn.log_prob(data, {"u": u})
    assert int(norm.num_batches_tracked) == 1
    mean = norm.running_mean.clone()
    pyro.clear_param_store()
    svi = pyro.infer.SVI(bn.model, bn.guide, pyro.optim.Adam({"lr": 0.01}), TraceEnum_ELBO(max_plate_nesting=1))
    svi.step(torch.stack([data["c"], data["w"]], 1), None, {"u": u})  # a training step of the Pyro model
    assert int(norm.num_batches_tracked) == 2 and not torch.equal(norm.running_mean, mean)
