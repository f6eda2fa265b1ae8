"""Two hybridpgm models in one Pyro program: the ``prefix=`` keyword of the models' Pyro programs (site and plate
names) and the ``name=`` of the modules (parameter names in Pyro's global param store).

Before, two BayesNets (or VAEs, or SBNs) could not share a program: unscoped, Pyro refused two sites ``"data"``/
``"b"``; under ``pyro.contrib.autoname.scope`` the plates kept one name and ``TraceEnum_ELBO`` failed with
"contracted dimensions need to match"; and under plain SVI two instances of one class shared their parameters.
"""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO

import hybridpgm
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.generative import VAE, SigmoidBeliefNet
from hybridpgm.graphs import BayesNet, cpd

B1 = {"b": torch.tensor([1, 0])}  # batches of 2 and 3 rows: the plates differ in size
B2 = {"b": torch.tensor([0, 1, 1])}


@pytest.fixture(autouse=True)
def _clean_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def _bn(pa=(0.3, 0.7), pb=((0.8, 0.2), (0.1, 0.9)), **kw) -> BayesNet:
    bn = BayesNet(**kw)
    bn.add("a", cpd.Table(list(pa)))
    return bn.add("b", cpd.Table([list(r) for r in pb], ["a"]))


def _elbo():
    return TraceEnum_ELBO(max_plate_nesting=1)


def _side_by_side(*parts):
    """A model and a guide running each ``(hybridpgm model, prefix)`` of ``parts`` on its own argument, in
    order."""
    def model(*data):
        for (m, prefix), d in zip(parts, data):
            m.model(d, prefix=prefix)

    def guide(*data):
        for (m, prefix), d in zip(parts, data):
            m.guide(d, prefix=prefix)

    return model, guide


# ------------------------------------------------------------------------------------------------ BayesNet
def test_two_bayes_nets_with_the_same_node_names_give_the_sum_of_their_losses():
    bn1, bn2 = _bn(), _bn(pa=(0.6, 0.4), pb=((0.5, 0.5), (0.2, 0.8)))

    model, guide = _side_by_side((bn1, "one/"), (bn2, "two/"))

    both = _elbo().loss(model, guide, B1, B2)
    apart = _elbo().loss(bn1.model, bn1.guide, B1) + _elbo().loss(bn2.model, bn2.guide, B2)
    assert both == pytest.approx(apart, rel=1e-6)
    expected = -(bn1.log_evidence(B1).sum() + bn2.log_evidence(B2).sum())
    assert both == pytest.approx(float(expected.detach()), rel=1e-5)


def test_bayes_net_prefix_names_every_site_and_the_plate_and_default_names_are_unchanged():
    bn = _bn(pa=(0.3, 0.7), pb=((0.8, 0.2), (0.1, 0.9)))
    data = {"a": torch.tensor([0, -1, 1]), "b": torch.tensor([1, 0, 1])}
    plain = poutine.trace(bn.model).get_trace(data)
    named = poutine.trace(bn.model).get_trace(data, prefix="p/")
    sites = [n for n, s in plain.nodes.items() if s["type"] == "sample"]  # the plate, then the sites
    assert sites == ["data", "a_observed", "a_unobserved", "b"]
    assert [n for n, s in named.nodes.items() if s["type"] == "sample"] == ["p/" + n for n in sites]
    assert {f.name for s in named.nodes.values() if s["type"] == "sample" for f in s["cond_indep_stack"]} == {"p/data"}
    assert {f.name for s in plain.nodes.values() if s["type"] == "sample" for f in s["cond_indep_stack"]} == {"data"}


def test_bayes_net_prefixed_impossible_rows_are_still_refused_under_enumeration():
    """The check of impossible rows reads which parents enumeration gave every value, by site name: with a
    prefix it must look for the prefixed names (else a row impossible whatever its missing parent passed)."""
    bn = _bn(pa=(0.5, 0.5), pb=((1.0, 0.0), (1.0, 0.0)))  # b = 1 has probability 0 whatever a
    with pytest.raises(DataError, match=r"row.*\[1\].*node 'b'.*missing parent \['a'\]"):
        _elbo().loss(lambda d: bn.model(d, prefix="p/"), lambda d: bn.guide(d, prefix="p/"),
                     {"b": torch.tensor([0, 1])})


def test_bayes_net_prefix_in_the_guide_check_and_the_clash_check():
    bn = _bn()
    with pytest.raises(ConfigError, match=r"missing entries in \['p/a'\]"):
        Trace_ELBO().loss(lambda d: bn.model(d, prefix="p/"), lambda d: bn.guide(d, prefix="p/"), B1)
    clash = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("a_observed", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match=r"node 'a_observed' \(its site 'p/a_observed' under prefix 'p/'\) "
                                             r"has the name of the Pyro site 'p/a_observed' of node 'a'"):
        clash.model({"a": torch.tensor([0, -1]), "a_observed": torch.tensor([0, 1])}, prefix="p/")
    with pytest.raises(ConfigError, match="prefix must be a string"):
        bn.model(B1, prefix=1)


def test_bayes_nets_of_other_names_keep_their_parameters_apart_under_plain_svi():
    bn1, bn2 = _bn(name="one"), _bn(name="two")
    pyro.set_rng_seed(0)

    def model(d1, d2):
        bn1.model(d1, prefix="one/")
        bn2.model(d2, prefix="two/")

    svi = SVI(model, lambda *a: None, pyro.optim.Adam({"lr": 0.1}), _elbo())
    for _ in range(30):
        svi.step({"a": torch.tensor([0, 0]), "b": torch.tensor([0, 0])}, {"a": torch.tensor([1, 1, 1])})
    store = pyro.get_param_store()
    assert {"one.cpds$$$a.logits", "two.cpds$$$a.logits"} <= set(store.keys())
    # bn1 saw a = 0, bn2 a = 1: each table moved its own way
    assert bn1.cpds["a"].probs[0] > 0.5 > bn2.cpds["a"].probs[0]
    with pytest.raises(ModelSpecError, match="BayesNet name must be a string"):
        BayesNet(name=3)


# ------------------------------------------------------------------------------------------------ VAE
def _vaes():
    torch.manual_seed(0)
    v1 = VAE(6, 2, (5,), name="v1").double()
    torch.manual_seed(1)
    v2 = VAE(6, 2, (5,), name="v2").double()
    x1 = torch.bernoulli(torch.full((2, 6), 0.4, dtype=torch.float64))
    x2 = torch.bernoulli(torch.full((3, 6), 0.6, dtype=torch.float64))
    return v1, v2, x1, x2


def test_two_vaes_under_trace_elbo_give_the_sum_of_their_losses():
    v1, v2, x1, x2 = _vaes()

    model, guide = _side_by_side((v1, "v1/"), (v2, "v2/"))

    pyro.set_rng_seed(3)
    both = Trace_ELBO().loss(model, guide, x1, x2)
    pyro.set_rng_seed(3)  # the guides draw v1's z, then v2's, in both runs
    apart = Trace_ELBO().loss(v1.model, v1.guide, x1) + Trace_ELBO().loss(v2.model, v2.guide, x2)
    assert both == pytest.approx(apart, rel=1e-10)
    trace = poutine.trace(model).get_trace(x1, x2)
    assert [n for n, s in trace.nodes.items() if s["type"] == "sample"] == ["v1/data", "v1/z", "v1/x", "v2/data",
                                                                          "v2/z", "v2/x"]
    assert [n for n, s in poutine.trace(v1.model).get_trace(x1).nodes.items() if s["type"] == "sample"] == \
        ["data", "z", "x"]


def test_two_vaes_train_independently_under_plain_svi():
    v1, v2, x1, x2 = _vaes()
    before = [v.decoder[2].weight.detach().clone() for v in (v1, v2)]

    model, guide = _side_by_side((v1, "v1/"), (v2, "v2/"))

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    for _ in range(3):
        svi.step(x1, x2)
    store = pyro.get_param_store()
    names = set(store.keys())
    assert "v1.decoder$$$0.weight" in names and "v2.decoder$$$0.weight" in names
    # each VAE trains its own tensors (before, the second was handed the first one's)
    assert store["v1.decoder$$$0.weight"] is v1.decoder[0].weight
    assert store["v2.decoder$$$0.weight"] is v2.decoder[0].weight
    assert not torch.equal(v1.decoder[0].weight, v2.decoder[0].weight)
    assert all(not torch.equal(b, v.decoder[2].weight) for b, v in zip(before, (v1, v2)))


def test_a_vae_name_is_saved_and_loaded(tmp_path):
    vae = VAE(6, 2, (5,), name="v1")
    hybridpgm.save(vae, tmp_path / "vae.pt")
    assert hybridpgm.load(tmp_path / "vae.pt")._pyro_name == "v1"
    bn = _bn(name="net")
    hybridpgm.save(bn, tmp_path / "bn.pt")
    assert hybridpgm.load(tmp_path / "bn.pt")._pyro_name == "net"
    hybridpgm.save(_bn(), tmp_path / "plain.pt")  # an unnamed network stays unnamed
    assert hybridpgm.load(tmp_path / "plain.pt")._pyro_name == ""


# ------------------------------------------------------------------------------------------------ SBN
def test_two_sigmoid_belief_nets_enumerated_give_the_sum_of_their_log_likelihoods():
    torch.manual_seed(0)
    s1, s2 = SigmoidBeliefNet([4, 3, 2], name="s1").double(), SigmoidBeliefNet([4, 3, 2], name="s2").double()
    x1 = torch.bernoulli(torch.full((2, 4), 0.4, dtype=torch.float64))
    x2 = torch.bernoulli(torch.full((3, 4), 0.6, dtype=torch.float64))

    def model(a, b):
        s1.enumerated_model(a, prefix="s1/")
        s2.enumerated_model(b, prefix="s2/")

    loss = _elbo().loss(model, lambda *a: None, x1, x2)
    expected = -(s1.exact_log_likelihood(x1).sum() + s2.exact_log_likelihood(x2).sum())
    assert loss == pytest.approx(float(expected.detach()), rel=1e-10)
    trace = poutine.trace(lambda a, b: (s1.model(a, prefix="s1/"), s2.guide(b, prefix="s2/"))).get_trace(x1, x2)
    assert [n for n, s in trace.nodes.items() if s["type"] == "sample"] == ["s1/data", "s1/h2", "s1/h1", "s1/x",
                                                                          "s2/data", "s2/h1", "s2/h2"]


# ------------------------------------------------------------------------------------------------ BN + VAE
def test_a_bayes_net_and_a_vae_in_one_model():
    bn = _bn()
    v1, _, x1, _ = _vaes()
    v1 = v1.float()
    x1 = x1.float()

    model, guide = _side_by_side((bn, "bn/"), (v1, "vae/"))

    pyro.set_rng_seed(5)
    both = _elbo().loss(model, guide, B2, x1)
    pyro.set_rng_seed(5)
    apart = _elbo().loss(bn.model, bn.guide, B2) + Trace_ELBO().loss(v1.model, v1.guide, x1)
    assert both == pytest.approx(apart, rel=1e-5)
