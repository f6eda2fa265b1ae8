"""Neural CPDs: log-tables from a network, the dry run at declaration, leading batch dims."""

import warnings

import pyro
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO

import hybridpgm
from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import SVIObjective
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


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


def test_linear_gaussian_and_neural_keep_every_batch_dim_of_a_continuous_parent():
    """Values of a continuous parent of shape [S, N] (what Predictive(parallel=True) gives) make tables with the
    leading dims [S, N], each slice the table of that slice's values.  Before, [S, N] was read as N = S rows of
    N features: a wrong mean table, or an error."""
    bn = BayesNet()
    bn.add("D", cpd.Table([0.4, 0.6]))
    bn.add("X", cpd.LinearGaussian())
    bn.add("Y", cpd.LinearGaussian(bias=[0.5, -0.5], weight=[[1.5], [-2.0]], scale=[0.3, 0.2], parents=["D", "X"]))
    torch.manual_seed(0)
    bn.add("E", cpd.Neural(torch.nn.Linear(3, 3), ["D", "X"], cardinality=3))
    x = torch.randn(4, 5)  # [S, N]
    for node, extra in (("Y", ()), ("E", (3,))):
        c = bn.cpds[node]
        table = c.mean_table({"X": x}) if node == "Y" else c.log_table({"X": x})
        assert table.shape == (4, 5, 2, *extra)
        for s in range(4):
            one = c.mean_table({"X": x[s]}) if node == "Y" else c.log_table({"X": x[s]})
            torch.testing.assert_close(table[s], one)
    dens = bn.cpds["Y"].log_density(x + 1, {"X": x})
    assert dens.shape == (4, 5, 2)
    torch.testing.assert_close(dens[2], bn.cpds["Y"].log_density(x[2] + 1, {"X": x[2]}))


def test_neural_broadcasts_a_context_input_over_the_batch_dims_of_a_continuous_parent():
    torch.manual_seed(0)
    bn = BayesNet().add("X", cpd.LinearGaussian())
    bn.add("E", cpd.Neural(torch.nn.Linear(3, 2), ["X"], cardinality=2, context=["u"]))
    x, u = torch.randn(4, 5), torch.randn(5, 2)  # parent [S, N], context [N, d]
    table = bn.cpds["E"].log_table({"X": x, "u": u})
    assert table.shape == (4, 5, 2)
    for s in range(4):
        torch.testing.assert_close(table[s], bn.cpds["E"].log_table({"X": x[s], "u": u}))
    with pytest.raises(EvidenceError, match="node 'E'.*do not broadcast"):
        bn.cpds["E"].log_table({"X": x, "u": torch.randn(3, 2)})


class _FixedLinear(torch.nn.Module):
    """A frozen network holding its weights as buffers: no parameters."""

    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.tensor([[0.5, -1.0], [2.0, 0.25], [-0.5, 1.5], [1.0, 0.0]]))
        self.register_buffer("b", torch.tensor([0.1, -0.2]))

    def forward(self, x):
        return x @ self.w + self.b


def _parameter_free(net, card):
    """``c -> s, c -> r, (s, r) -> w`` with ``w`` a Neural CPD over the parameter-free ``net``."""
    bn = BayesNet().add("c", cpd.Table([0.3, 0.7]))
    bn.add("s", cpd.Table([[0.5, 0.5], [0.9, 0.1]], ["c"])).add("r", cpd.Table([[0.8, 0.2], [0.25, 0.75]], ["c"]))
    return bn.add("w", cpd.Neural(net, ["s", "r"], card))


def _hand_log_joint(net, card):
    """``[2, 2, 2, card]`` log p(c, s, r, w) computed here: the one-hot parents through ``net`` by hand."""
    pc = torch.tensor([0.3, 0.7])
    ps = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    pr = torch.tensor([[0.8, 0.2], [0.25, 0.75]])
    logits = torch.empty(2, 2, card)
    for s in range(2):
        for r in range(2):
            x = torch.zeros(4)
            x[s], x[2 + r] = 1.0, 1.0
            logits[s, r] = x if isinstance(net, torch.nn.Identity) else x @ net.w + net.b
    pw = logits.log_softmax(-1)
    return (pc.log()[:, None, None, None] + ps.log()[:, :, None, None] + pr.log()[:, None, :, None]
            + pw[None])


@pytest.mark.parametrize("net,card", [(torch.nn.Identity(), 4), (_FixedLinear(), 2)], ids=["Identity", "buffers"])
def test_a_network_without_parameters_answers_as_brute_force_and_trains(net, card):
    """A Neural CPD whose network holds no parameter (nn.Identity, or fixed weights kept as buffers) builds its
    one-hot input in a floating dtype.  Before, the input stayed int64 (its dtype was taken from the parameters
    alone): every query and fit failed with torch's raw "not implemented for 'Long'" / "expected m1 and m2 to have
    the same dtype"."""
    bn = _parameter_free(net, card)
    joint = _hand_log_joint(net, card)
    post = joint[:, :, :, 1].logsumexp((0, 1)).softmax(-1)  # p(r | w = 1)
    torch.testing.assert_close(bn.posterior("r", {"w": 1}).detach(), post)
    torch.testing.assert_close(bn.log_prob(torch.tensor([[0, 1, 1, 1], [1, 0, 1, 0]])).detach(),
                               torch.stack([joint[0, 1, 1, 1], joint[1, 0, 1, 0]]))
    # the model path (TraceEnum_ELBO, r missing in the second row: enumerated) is the exact NLL
    data = torch.tensor([[0, 1, 1, 1], [1, 0, -1, 0]])
    nll = -(joint[0, 1, 1, 1] + joint[1, 0, :, 0].logsumexp(0))
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(bn.model, bn.guide, data)
    assert loss == pytest.approx(float(nll), rel=1e-6)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    result = hybridpgm.fit(SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1)), data, epochs=2,
                           batch_size=2, progress=False, seed=0)
    assert result.steps == 2
    assert not torch.equal(bn.cpds["c"].logits, before["cpds.c.logits"])  # the tables trained
    for k, v in bn.cpds["w"].state_dict().items():  # the fixed network did not move
        assert torch.equal(v, before[f"cpds.w.{k}"])


def test_a_parameter_free_network_computes_in_its_inputs_dtype():
    """Without floating tensors of its own, the network's input takes the dtype of its continuous inputs (the
    network's dtype: a float64 network's evidence is float64), so a float64 network answers in float64."""
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Neural(torch.nn.Identity(), ["a"], 3,
                                                                         context=["u"]))
    u = torch.tensor([[0.5], [-1.0]])
    b = torch.tensor([0, 2])
    for dtype in (torch.float32, torch.float64):
        bn.to(dtype)
        got = bn.posterior("a", {"b": b, "u": u.to(dtype)})
        assert got.dtype == dtype
        # p(a | b, u) with logits [onehot(a), u]: p(b = k | a) = softmax over the 3 entries
        logits = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]], [[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]]],
                              dtype=dtype)  # [row, a, k]
        want = logits.log_softmax(-1)[torch.arange(2), :, b].softmax(-1)
        torch.testing.assert_close(got.detach(), want)


def test_a_network_returning_a_tuple_is_refused_when_added():
    """Before: torch's raw "'tuple' object has no attribute 'shape'" from the dry run's shape check."""

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x), x

    bn = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match=r"node 'b': the network must return one tensor, got a tuple of "
                                             r"Tensor, Tensor"):
        bn.add("b", cpd.Neural(Pair(), ["a"], 2))


def test_a_frozen_neural_cpd_is_not_warned_of_at_every_step():
    """PyroModule.__getattr__ ran pyro.module("cpds", ...) at each read of bn.cpds (21 per trace here), which warned
    of each frozen parameter ("... was not registered in the param store because requires_grad=False"); the
    trainable CPDs keep their names in the store, the frozen network stays out and frozen."""
    torch.manual_seed(0)
    frozen, trained = torch.nn.Linear(2, 3), torch.nn.Linear(3, 2)
    bn = BayesNet(name="bn").add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Neural(frozen, ["a"], 3))
    bn.add("c", cpd.Neural(trained, ["b"], 2))
    frozen.requires_grad_(False)
    data = {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([1, 2, 0]), "c": torch.tensor([0, 1, 1])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
            svi = SVI(bn.model, bn.guide, pyro.optim.SGD({"lr": 0.1}), TraceEnum_ELBO(max_plate_nesting=1))
            for _ in range(2):
                svi.step(data)
            store = dict(pyro.get_param_store().items())
    assert [str(w.message) for w in caught if "not registered in the param store" in str(w.message)] == []
    assert sorted(store) == ["bn.cpds$$$a.logits", "bn.cpds$$$c.net.bias", "bn.cpds$$$c.net.weight"]
    assert store["bn.cpds$$$c.net.weight"] is trained.weight and not frozen.weight.requires_grad
