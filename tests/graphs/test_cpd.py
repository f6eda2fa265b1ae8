"""CPDs: validation at declaration, normalised tables, neural and linear-Gaussian conditionals."""

import pytest
import torch

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


MALFORMED = [
    ([0.5, 0.6], (), "sum to 1"),
    ([1.2, -0.2], (), "negative"),
    ([[0.5, 0.5], [1.2, -0.2]], ["p"], "negative"),
    ([0.5, 0.5], ["Alpha"], "needs 2 dims"),
    ([[0.5, float("nan")]], ["p"], "NaN"),
]


@pytest.mark.parametrize("probs,parents,match", MALFORMED)
def test_malformed_table_is_refused_at_add_naming_the_node(probs, parents, match):
    bn = BayesNet().add("p", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match=f"node 'Rain': .*{match}"):
        bn.add("Rain", cpd.Table(probs, parents))
    assert "Rain" not in bn.cpds
    with pytest.raises(ModelSpecError, match=f"node 'Rain': .*{match}"):
        BayesNet({"Rain": cpd.Table(probs, parents)})


@pytest.mark.parametrize("probs,parents,match", MALFORMED)
def test_malformed_table_outside_a_network_fails_when_used(probs, parents, match):
    table = cpd.Table(probs, parents)
    for use in (lambda: table.probs, table.log_table, table.log_prior):
        with pytest.raises(ModelSpecError, match=f"not added to any network: .*{match}"):
            use()


def test_table_binding_names_node_and_parent():
    bn = BayesNet().add("p", cpd.Table([0.2, 0.3, 0.5]))
    with pytest.raises(ModelSpecError, match="node 'c'.*parent 'p' has cardinality 3"):
        bn.add("c", cpd.Table([[0.5, 0.5]] * 2, ["p"]))
    bn.add("y", cpd.LinearGaussian(0.0))
    with pytest.raises(ModelSpecError, match="node 'd'.*continuous parent 'y'"):
        bn.add("d", cpd.Table([[0.5, 0.5]] * 2, ["y"]))
    with pytest.raises(ModelSpecError, match="duplicate"):
        cpd.Table([[[0.5, 0.5]] * 2] * 2, ["p", "p"])


@pytest.mark.parametrize("shape", [(3,), (2, 4), (2, 3, 2)])
def test_table_log_table_is_normalised_and_round_trips(shape):
    g = torch.Generator().manual_seed(0)
    t = cpd.Table.random(shape[-1], shape[:-1], [f"p{i}" for i in range(len(shape) - 1)], generator=g)
    lt = t.log_table()
    assert lt.shape == shape
    torch.testing.assert_close(lt.exp().sum(-1), torch.ones(shape[:-1]))
    probs = torch.rand(shape, generator=g)
    probs = probs / probs.sum(-1, keepdim=True)
    torch.testing.assert_close(cpd.Table(probs, [f"p{i}" for i in range(len(shape) - 1)]).probs, probs)
    assert not cpd.Table(probs, [f"p{i}" for i in range(len(shape) - 1)], learnable=False).logits.requires_grad


def test_dirichlet_log_prior_matches_torch():
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    alpha = torch.tensor([1.5, 2.0, 3.0])
    t = cpd.Table(probs, ["p"], prior=alpha)
    ref = torch.distributions.Dirichlet(alpha).log_prob(probs).sum()
    torch.testing.assert_close(t.log_prior(), ref)
    with pytest.raises(ModelSpecError, match="node 'c': Dirichlet prior concentration must be positive"):
        BayesNet().add("p", cpd.Table([0.5, 0.5])).add("c", cpd.Table(probs, ["p"], prior=0.0))
    assert cpd.Table(probs, ["p"]).log_prior() == 0


def test_neural_table_shapes_and_values():
    torch.manual_seed(0)
    net = torch.nn.Linear(2 + 3 + 1, 4)
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Table([0.2, 0.3, 0.5]))
    bn.add("y", cpd.LinearGaussian(0.0))
    bn.add("c", cpd.Neural(net, ["a", "b", "y"], 4))
    c = bn.cpds["c"]
    assert c.discrete_parents == ("a", "b") and c.inputs == ("y",) and c.is_batched
    y = torch.tensor([0.5, -1.0])
    lt = c.log_table({"y": y})
    assert lt.shape == (2, 2, 3, 4)
    x = torch.cat([torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0, 1.0]), y[1:]])  # a=1, b=2, y=-1
    torch.testing.assert_close(lt[1, 1, 2], net(x).log_softmax(-1))
    with pytest.raises(EvidenceError, match="'y'"):
        c.log_table({})


def test_neural_declaration_is_checked_by_a_dry_run():
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match="node 'b'.*2 features"):
        bn.add("b", cpd.Neural(torch.nn.Linear(5, 3), ["a"], 3))
    with pytest.raises(ModelSpecError, match="node 'b'.*outputs 4 logits"):
        bn.add("b", cpd.Neural(torch.nn.Linear(2, 4), ["a"], 3))
    with pytest.raises(ModelSpecError, match="cardinality"):
        cpd.Neural(torch.nn.Linear(2, 4), ["a"], 0)


def test_linear_gaussian_density_and_checks():
    lg = cpd.LinearGaussian(torch.tensor([1.0, -2.0]), torch.tensor([[0.5, 2.0], [1.0, 0.0]]),
                            torch.tensor([1.0, 3.0]), ["d", "u", "v"])
    BayesNet().add("d", cpd.Table([0.4, 0.6])).add("u", cpd.LinearGaussian(0.0)) \
        .add("v", cpd.LinearGaussian(1.0)).add("x", lg)
    vals = {"u": torch.tensor([0.3]), "v": torch.tensor([-1.0])}
    dens = lg.log_density(torch.tensor([0.7]), vals)
    assert dens.shape == (1, 2)
    mean = torch.tensor([1.0 + 0.5 * 0.3 - 2.0, -2.0 + 0.3])
    ref = torch.distributions.Normal(mean, torch.tensor([1.0, 3.0])).log_prob(torch.tensor(0.7))
    torch.testing.assert_close(dens[0], ref)
    with pytest.raises(ModelSpecError, match="parents"):
        cpd.LinearGaussian(torch.zeros(2), torch.zeros(2, 1), parents=["d"])
    with pytest.raises(ModelSpecError, match="positive"):
        cpd.LinearGaussian(0.0, scale=-1.0)
    bn = BayesNet().add("u", cpd.LinearGaussian(0.0)).add("d", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match="node 'x'.*discrete parents first"):
        bn.add("x", cpd.LinearGaussian(torch.zeros(2), torch.zeros(2, 1), parents=["u", "d"]))


def test_the_cpd_base_class_is_importable_from_cpd():
    from hybridpgm.graphs.cpd_base import CPD

    assert cpd.CPD is CPD and all(issubclass(k, CPD) for k in (cpd.Table, cpd.Neural, cpd.LinearGaussian))


def test_a_learnable_table_with_structural_zeros_trains_and_saves(tmp_path):
    """A zero in a learnable table stays exactly zero under training and the table can be saved.  Before,
    its logit was a -inf parameter: fit stopped at once ('parameters are not finite') and save refused it."""
    import functools

    from pyro.infer import TraceEnum_ELBO

    import hybridpgm
    from hybridpgm.infer import SVIObjective

    torch.manual_seed(0)
    truth = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]], ["a"]))
    rows = truth.sample(2000)
    data = torch.stack([rows["a"], rows["b"]], -1)
    learner = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    learner.add("b", cpd.Table([[0.5, 0.0, 0.5], [1 / 3, 1 / 3, 1 / 3]], ["a"]))
    hybridpgm.fit(SVIObjective(learner.model, learner.guide, TraceEnum_ELBO(max_plate_nesting=1)), data,
                  epochs=200, batch_size=2000, progress=False, seed=0,
                  optim=functools.partial(torch.optim.Adam, lr=0.05))
    b = learner.cpds["b"]
    assert torch.isfinite(b.logits).all()
    assert b.probs[0, 1] == 0 and b.log_table()[0, 1] == float("-inf")
    counts = torch.stack([torch.bincount(data[data[:, 0] == j, 1], minlength=3) for j in range(2)]).float()
    assert torch.allclose(b.probs[1], counts[1] / counts[1].sum(), atol=0.02)  # the free row learns
    assert torch.allclose(b.probs[0], torch.tensor([1.0, 0.0, 0.0]), atol=0.02)  # its zero stays zero
    hybridpgm.save(learner, tmp_path / "bn.pt")
    loaded = hybridpgm.load(tmp_path / "bn.pt")
    torch.testing.assert_close(loaded.cpds["b"].log_table(), b.log_table())
    torch.testing.assert_close(loaded.posterior("a", {"b": torch.tensor([1, 2])}),
                               learner.posterior("a", {"b": torch.tensor([1, 2])}))
