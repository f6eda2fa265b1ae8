"""CPDs: Table (validation at declaration, normalised tables, structural zeros, priors) and the cpd module's names;
Neural and LinearGaussian in test_cpd_neural.py and test_cpd_gaussian.py."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
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


@pytest.mark.parametrize("alpha", [1.0, 2.0, [1.5, 2.0, 3.0]])
def test_dirichlet_log_prior_of_a_table_with_structural_zeros_is_over_each_rows_support(alpha):
    """Found by an audit: the zeros' -inf entered (alpha - 1) log theta (clamped to the dtype's minimum), so the
    prior was -inf for alpha > 1 and +1.8e308 below, and fit diverged at its first step.  (An alpha < 1, once
    checked here too, is now refused by log_prior: it has no MAP.)"""
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3], [0.0, 0.4, 0.6]], dtype=torch.float64)
    table = cpd.Table(probs, ["p"], prior=alpha)
    a = torch.as_tensor(alpha, dtype=torch.float64).expand(3)
    # row 0: one possible state (a point: density 1); row 1: Dir(a); row 2: Dir(a[1:]) over states 1 and 2
    want = (torch.distributions.Dirichlet(a).log_prob(probs[1])
            + torch.distributions.Dirichlet(a[1:]).log_prob(probs[2, 1:]))
    got = table.log_prior()
    torch.testing.assert_close(got, want)
    got.backward()
    assert bool(torch.isfinite(table.logits.grad).all())


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


# -- structural zeros in the state dict -------------------------------------------------------------------
def _two_nodes(table):
    bn = BayesNet()
    bn.add("A", cpd.Table([0.5, 0.5]))
    bn.add("B", table)
    return bn


ZEROS = [[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]


def test_a_state_dict_round_trip_keeps_the_structural_zeros():
    """Loading a table's state dict into a skeleton (Table.uniform) gives it the same zeros.  Before, the mask
    was a non-persistent buffer: the skeleton reported 'All keys matched' and turned p(B|A=0) = [1, 0, 0] into
    [1/3, 1/3, 1/3]."""
    src = _two_nodes(cpd.Table(ZEROS, ["A"]))
    dst = _two_nodes(cpd.Table.uniform(3, [2], ["A"]))
    result = dst.load_state_dict(src.state_dict())  # strict
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(dst.cpds["B"].probs, src.cpds["B"].probs)
    assert dst.log_prob({"A": torch.tensor([0]), "B": torch.tensor([1])}).item() == float("-inf")
    # the loaded zeros are structural: no gradient reaches their logits
    dst.cpds["B"].log_table()[0, 0].backward()
    assert torch.equal(dst.cpds["B"].logits.grad[0, 1:], torch.zeros(2))
    # and a table without zeros loaded into one with zeros takes its (lack of) zeros too
    back = _two_nodes(cpd.Table(ZEROS, ["A"]))
    back.load_state_dict(_two_nodes(cpd.Table.uniform(3, [2], ["A"])).state_dict())
    torch.testing.assert_close(back.cpds["B"].probs, torch.full((2, 3), 1 / 3))


def test_the_structural_zeros_survive_torch_save_with_weights_only(tmp_path):
    src = _two_nodes(cpd.Table(ZEROS, ["A"], learnable=False))
    torch.save(src.state_dict(), tmp_path / "bn.pt")
    dst = _two_nodes(cpd.Table.random(3, [2], ["A"], learnable=False))
    dst.load_state_dict(torch.load(tmp_path / "bn.pt", weights_only=True))
    assert torch.equal(dst.cpds["B"].probs, src.cpds["B"].probs)


@pytest.mark.parametrize("skeleton", [ZEROS, [[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]])
def test_an_older_state_dict_without_the_support_mask_still_loads(skeleton):
    """A state dict written before the mask was saved has no 'support' key: it loads strictly, and the
    receiving table keeps its own zeros."""
    old = _two_nodes(cpd.Table(ZEROS, ["A"])).state_dict()
    del old["cpds.B.support"], old["cpds.A.support"]
    dst = _two_nodes(cpd.Table(skeleton, ["A"]))
    result = dst.load_state_dict(old)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(dst.cpds["B"].support, torch.tensor(skeleton) > 0)
    torch.testing.assert_close(dst.cpds["B"].logits, _two_nodes(cpd.Table(ZEROS, ["A"])).cpds["B"].logits)


def test_a_support_mask_with_an_impossible_row_is_refused():
    state = _two_nodes(cpd.Table(ZEROS, ["A"])).state_dict()
    state["cpds.B.support"] = torch.tensor([[True, False, False], [False, False, False]])
    dst = _two_nodes(cpd.Table.uniform(3, [2], ["A"]))
    with pytest.raises(RuntimeError, match="cpds.B.support.*no possible state"):
        dst.load_state_dict(state)
    assert dst.cpds["B"].support.all()  # not copied


@pytest.mark.skipif(not torch.cuda.is_available(), reason="builds a table on CUDA")
def test_a_table_from_a_cuda_tensor_keeps_its_prior_there():
    """Found in a CUDA audit: a Dirichlet prior given as a number was stored on the CPU beside CUDA logits, so
    log_prior failed ('Expected all tensors to be on the same device')."""
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    on_cpu, on_cuda = cpd.Table(probs, ["a"], prior=2.0), cpd.Table(probs.cuda(), ["a"], prior=2.0)
    assert {t.device.type for t in on_cuda.state_dict().values()} == {"cuda"}
    assert torch.allclose(on_cuda.log_prior().cpu(), on_cpu.log_prior())


def test_a_random_table_of_any_concentration_follows_its_generator_alone():
    """Before, a concentration other than 1 drew from torch's global stream whatever the generator: two
    tables from equal generators differed, and the caller's global stream moved."""
    before = torch.get_rng_state()
    first, second = (cpd.Table.random(4, [3], ["A"], concentration=0.5, generator=torch.Generator().manual_seed(7))
                     for _ in range(2))
    assert torch.equal(first.probs, second.probs)
    assert torch.equal(torch.get_rng_state(), before)
    other = cpd.Table.random(4, [3], ["A"], concentration=0.5, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(first.probs, other.probs)
    assert torch.allclose(first.probs.sum(-1), torch.ones(3))


@pytest.mark.parametrize("concentration", [0.0, -1.0, float("nan"), float("inf"), True])
def test_a_random_table_refuses_a_concentration_that_is_not_positive(concentration):
    """Before, 0, -1 and NaN gave a table of NaN probabilities without a word."""
    with pytest.raises(ModelSpecError, match="Table.random concentration must be a finite number > 0"):
        cpd.Table.random(3, concentration=concentration)


def test_an_in_place_edit_of_the_logits_reaches_the_next_query():
    """The documented ways to change a table between queries (an audit found that an edit through ``.data``
    is invisible to the version counter the query cache keys on; the docs say to clear the cache then)."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=torch.float64)))
    bn.add("b", cpd.Table(torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64), ["a"]))
    new = torch.tensor([0.8, 0.2], dtype=torch.float64)
    joint = new * torch.tensor([0.1, 0.8], dtype=torch.float64)
    with torch.no_grad():
        bn.posterior("a", {"b": 1})  # cached
        bn.cpds["a"].logits.copy_(new.log())
        torch.testing.assert_close(bn.posterior("a", {"b": 1}), joint / joint.sum())
        bn.cpds["a"].logits.data.copy_(torch.tensor([0.5, 0.5], dtype=torch.float64).log())
        bn.plan_cache.clear()
        torch.testing.assert_close(bn.posterior("a", {"b": 1}), torch.tensor([0.1, 0.8], dtype=torch.float64) / 0.9)


@pytest.mark.parametrize("prior", [0.5, [1.0, 0.99], torch.tensor([2.0, 0.5])])
def test_a_dirichlet_prior_below_one_is_refused_where_it_is_used_it_has_no_map(prior):
    """Audit 11: with alpha < 1 the MAP objective (alpha - 1) log theta grows without bound as a state without data
    goes to probability 0 (fit drove it to 7e-168 and the loss to -37), so log_prior (the MAP term) and hence
    fitting refuse it, naming the node.  Review A: declaring such a table (for inference only) is accepted again;
    refusing it there also refused loading a model saved before.  alpha = 1 (maximum likelihood) and an
    alpha < 1 at a structural zero (not a state of its row) are fine."""
    from pyro.infer import TraceEnum_ELBO

    bn = BayesNet().add("x", cpd.Table([0.5, 0.5], prior=prior))
    with pytest.raises(ModelSpecError, match=r"node 'x': Dirichlet prior concentration (0.5|0.99) < 1 \(argument"):
        bn.cpds["x"].log_prior()
    with pytest.raises(ModelSpecError, match=r"node 'x': Dirichlet prior .* < 1"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(bn.model, bn.guide, {"x": torch.tensor([0, 1])})
    with pytest.raises(ModelSpecError, match=r"a Table not added to any network: Dirichlet prior .* < 1"):
        cpd.Table([0.5, 0.5], prior=prior).log_prior()
    torch.testing.assert_close(bn.log_evidence({"x": torch.tensor([1])}), torch.tensor([0.5]).log())
    assert bn.sample(4)["x"].shape == (4,)
    torch.testing.assert_close(bn.log_prob({"x": torch.tensor([0])}), torch.tensor([0.5]).log())
    BayesNet().add("x", cpd.Table([0.5, 0.5], prior=1.0)).cpds["x"].log_prior()
    BayesNet().add("x", cpd.Table([0.0, 1.0], prior=[0.5, 1.0])).cpds["x"].log_prior()


def test_a_network_with_a_prior_below_one_saves_loads_and_answers_exact_queries(tmp_path):
    """Review A: a BayesNet saved with Table(prior=0.5) could not be loaded (the table's rebuild refused the
    prior), although the prior plays no part in exact queries."""
    import hybridpgm

    bn = BayesNet().add("a", cpd.Table([0.3, 0.7], prior=0.5))
    bn.add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    hybridpgm.save(bn, tmp_path / "bn.pt")
    loaded = hybridpgm.load(tmp_path / "bn.pt")
    evidence = {"b": torch.tensor([1])}
    torch.testing.assert_close(loaded.log_evidence(evidence), torch.tensor([0.3 * 0.1 + 0.7 * 0.8]).log())
    torch.testing.assert_close(loaded.posterior(["a"], evidence)["a"], bn.posterior(["a"], evidence)["a"])
    with pytest.raises(ModelSpecError, match=r"node 'a': Dirichlet prior concentration 0.5 < 1"):
        loaded.cpds["a"].log_prior()


def test_the_cpd_classes_keep_their_saved_names_after_the_split(tmp_path):
    """The CPD classes moved to cpd_table / cpd_neural / cpd_gaussian; model files and pickles name them
    ``hybridpgm.graphs.cpd.<class>`` (as files saved before the split do), and such a file loads."""
    import hybridpgm
    from hybridpgm.serialization_registry import _REGISTRY

    for cls in (cpd.Table, cpd.Neural, cpd.LinearGaussian):
        assert cls.__module__ == "hybridpgm.graphs.cpd" and _REGISTRY[f"hybridpgm.graphs.cpd.{cls.__name__}"] is cls
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("x", cpd.LinearGaussian([0.0, 1.0], parents=["a"]))
    bn.add("b", cpd.Neural(torch.nn.Sequential(torch.nn.Linear(3, 2)), ["a", "x"], 2))
    path = tmp_path / "bn.pt"
    hybridpgm.save(bn, path)
    saved = str(torch.load(path, weights_only=True))
    assert all(f"'hybridpgm.graphs.cpd.{k}'" in saved for k in ("Table", "Neural", "LinearGaussian"))
    loaded = hybridpgm.load(path)
    assert [type(c) for c in loaded.cpds.values()] == [cpd.Table, cpd.LinearGaussian, cpd.Neural]
    torch.save(bn, tmp_path / "pickled.pt")
    assert type(torch.load(tmp_path / "pickled.pt", weights_only=False).cpds["a"]) is cpd.Table


def test_neural_reads_a_context_input_with_particle_dims_as_batch_dims_and_its_last_dim_as_features():
    """A context ``[S, N, d]`` (a VAE's latent under a particle plate) gives ``[S, N, K]`` logits, each particle's
    rows those of the ``[N, d]`` slice, not one row per particle of ``N * d`` features."""
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 3)
    bn = BayesNet().add("y", cpd.Neural(net, [], 3, context=["z"]))
    z = torch.randn(4, 5, 2)
    table = bn.cpds["y"].log_table({"z": z})
    assert table.shape == (4, 5, 3)
    torch.testing.assert_close(table, net(z).log_softmax(-1))
    for s in range(4):
        torch.testing.assert_close(table[s], bn.cpds["y"].log_table({"z": z[s]}))


def test_a_network_cpd_table_under_cpu_autocast_is_normalised_in_float32():
    """Before, CPU autocast kept a bfloat16 network output's ``log_softmax`` in bfloat16 (CUDA autocast runs it
    in float32): the table's rows summed to 1 only to about 1e-2, and Pyro's enumeration then mixed bfloat16 and
    float32 tables ("expected scalar type BFloat16 but found Float").  The network still runs in bfloat16."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 5))
    node = cpd.Neural(net, ["a"], 5)
    node.bind("b", {"a": 3})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(torch.eye(3)).dtype == torch.bfloat16
        table = node.log_table()
    assert table.dtype == torch.float32 and table.shape == (3, 5)
    torch.testing.assert_close(table.logsumexp(-1), torch.zeros(3), atol=1e-6, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = net(torch.eye(3)).float().log_softmax(-1)
    torch.testing.assert_close(table, rounded, atol=1e-6, rtol=0)  # the bfloat16 logits, normalised in float32


def test_a_network_cpd_lets_out_of_memory_reach_the_caller_as_it_is():
    """Before, any RuntimeError of a network with a context input became a DataError blaming the number of input
    features, torch.OutOfMemoryError included (a caller's retry on it no longer worked)."""

    class OutOfMemory(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    bn = BayesNet().add("c", cpd.Table([0.3, 0.7])).add("w", cpd.Neural(OutOfMemory(), ["c"], 2, context=["u"]))
    evidence = {"w": torch.tensor([0, 1]), "u": torch.randn(2, 1, generator=torch.Generator().manual_seed(0))}
    for query in (lambda: bn.log_evidence(evidence), lambda: bn.posterior(["c"], evidence)):
        with pytest.raises(torch.OutOfMemoryError, match="out of memory") as info:
            query()
        assert not isinstance(info.value, ValueError)
