"""BayesNet context inputs computed in the same Pyro program (a VAE's latent ``z`` as a Neural CPD's context) under
the particle plates of vectorized ELBOs, IWAE and ``Predictive(..., parallel=True)``: the particle dims of the
context are batch dims, not rows."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive, Trace_ELBO, TraceEnum_ELBO

import hybridpgm
from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import IWAE
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

D, Z, N = 6, 2, 5


def _vae_and_bn():
    torch.manual_seed(0)
    vae = hybridpgm.VAE(D, z_dim=Z, hidden=[8], name="vae")
    net = torch.nn.Sequential(torch.nn.Linear(Z, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    bn = BayesNet(name="bn").add("y", cpd.Neural(net, [], 3, context=["z"]))
    x = torch.bernoulli(torch.full((N, D), 0.5))
    y = torch.tensor([0, 1, 2, 1, 0])
    return vae, net, bn, x, y


def _z_of(vae, x):
    with poutine.trace() as tr:
        vae.model(x, prefix="vae/")
    return tr.trace.nodes["vae/z"]["value"]


def _programs(vae, net, bn):
    def bn_model(x, y):
        bn.model({"y": y}, context={"z": _z_of(vae, x)}, prefix="bn/")

    def hand_model(x, y):  # the same network written by hand
        z = _z_of(vae, x)
        with pyro.plate("bn/data", N, dim=-1):
            pyro.sample("bn/y", dist.Categorical(logits=net(z)), obs=y)

    def guide(x, y):
        vae.guide(x, prefix="vae/")

    return bn_model, hand_model, guide


OBJECTIVES = {
    "Trace_ELBO vectorized": lambda: Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
    "TraceEnum_ELBO vectorized": lambda: TraceEnum_ELBO(num_particles=4, vectorize_particles=True,
                                                        max_plate_nesting=1),
    "IWAE": lambda: IWAE(num_particles=4, max_plate_nesting=1),
}


@pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_a_vae_latent_as_context_under_particles_gives_the_loss_of_the_hand_written_model(objective):
    vae, net, bn, x, y = _vae_and_bn()
    bn_model, hand_model, guide = _programs(vae, net, bn)
    losses = []
    for m in (hand_model, bn_model):
        pyro.set_rng_seed(1)
        losses.append(torch.as_tensor(OBJECTIVES[objective]().loss(m, guide, x, y)))
    torch.testing.assert_close(losses[1], losses[0])


def test_the_bayes_net_site_under_a_particle_plate_scores_each_particle_by_its_own_context():
    vae, net, bn, x, y = _vae_and_bn()
    bn_model, hand_model, guide = _programs(vae, net, bn)
    traces = []
    for m in (hand_model, bn_model):
        pyro.set_rng_seed(2)
        with pyro.plate("particles", 4, dim=-2):
            traces.append(poutine.trace(m).get_trace(x, y))
    z = traces[1].nodes["vae/z"]["value"]
    assert z.shape == (4, N, Z)
    torch.testing.assert_close(z, traces[0].nodes["vae/z"]["value"])
    lp = [tr.nodes["bn/y"]["fn"].log_prob(y) for tr in traces]
    assert lp[1].shape == (4, N)
    torch.testing.assert_close(lp[1], lp[0])


def _threshold_program():
    """A VAE with ``z_dim=1`` and a near-deterministic Neural CPD ``y = 1[z > 0]``, one row per draw."""
    torch.manual_seed(0)
    vae = hybridpgm.VAE(6, z_dim=1, hidden=[8], name="vae")
    net = torch.nn.Linear(1, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[-50.0], [50.0]]))
        net.bias.zero_()
    bn = BayesNet(name="bn").add("y", cpd.Neural(net, [], 2, context=["z"]))

    def model():
        with poutine.trace() as tr:
            vae.model(None, prefix="vae/")  # one row: z is [1, 1], [S, 1, 1] under a particle plate
        bn.model(None, context={"z": tr.trace.nodes["vae/z"]["value"]}, prefix="bn/")

    return model


@pytest.mark.parametrize("parallel", [False, True])
def test_predictive_draws_one_row_per_particle_agreeing_with_its_own_context(parallel):
    model = _threshold_program()
    pyro.set_rng_seed(3)
    out = Predictive(model, num_samples=6, parallel=parallel)()
    z, y = out["vae/z"], out["bn/y"]
    assert z.shape == (6, 1, 1)
    assert y.shape == (6, 1)
    assert torch.equal(y, (z[..., 0] > 0).long())
    assert 0 < int(y.sum()) < 6  # both states drawn: the check can fail


def test_a_context_without_particle_dims_broadcasts_over_the_particles():
    vae, net, bn, x, y = _vae_and_bn()
    u = torch.randn(N, Z)
    pyro.set_rng_seed(4)
    with pyro.plate("particles", 4, dim=-2):
        tr = poutine.trace(bn.model).get_trace({"y": y}, context={"z": u})
    lp = tr.nodes["y"]["fn"].log_prob(y)
    assert lp.shape == (4, N)  # the plate expands the site; every particle scores with the one context
    torch.testing.assert_close(lp, dist.Categorical(logits=net(u)).log_prob(y).expand(4, N))


def test_context_features_of_several_dims_are_flattened_outside_any_plate():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    bn = BayesNet().add("y", cpd.Neural(net, [], 2, context=["u"]))
    u, y = torch.randn(3, 2, 2), torch.tensor([0, 1, 1])
    tr = poutine.trace(bn.model).get_trace({"y": y}, context={"u": u})
    torch.testing.assert_close(tr.nodes["y"]["fn"].logits, net(u.reshape(3, 4)).log_softmax(-1))


def test_context_rows_are_read_at_the_data_plate_dim_under_a_particle_plate():
    vae, net, bn, x, y = _vae_and_bn()
    with pyro.plate("particles", 4, dim=-2):
        with pytest.raises(DataError, match=r"different row counts \(data \(1 column\): 5, context input 'z': 3\)"):
            bn.model({"y": y}, context={"z": torch.randn(4, 3, Z)})
        bn.model({"y": y}, context={"z": torch.randn(4, N, Z)})  # 4 particles, 5 rows: accepted


def test_a_context_that_depends_on_an_enumerated_site_gives_the_loss_of_the_hand_written_model():
    """``u = base + shift[c]`` with ``c`` enumerated (dim -2) is ``[2, N, d]``: its enumeration dim is a batch dim."""
    torch.manual_seed(0)
    net = torch.nn.Linear(Z, 3)
    bn = BayesNet(name="bn").add("y", cpd.Neural(net, [], 3, context=["u"]))
    base, shift, y = torch.randn(N, Z), torch.randn(2, Z), torch.tensor([0, 1, 2, 1, 0])

    def context():
        c = pyro.sample("c", dist.Bernoulli(0.3), infer={"enumerate": "parallel"}).long()
        return base + shift[c]

    def bn_model():
        bn.model({"y": y}, context={"u": context()}, prefix="bn/")

    def hand_model():
        u = context()
        with pyro.plate("bn/data", N, dim=-1):
            pyro.sample("bn/y", dist.Categorical(logits=net(u)), obs=y)

    loss = [torch.as_tensor(TraceEnum_ELBO(max_plate_nesting=1).loss(m, lambda: None)) for m in (hand_model, bn_model)]
    torch.testing.assert_close(loss[1], loss[0])


def test_exact_queries_flatten_a_context_of_several_feature_dims_as_documented():
    """``[N, d1, d2]`` context evidence is ``d1 * d2`` features per row in the exact queries, as before (it
    is not read as batch dims: there is no particle plate there)."""
    from hybridpgm.graphs import BayesNet, cpd

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2 + 6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    bn = BayesNet().add("c", cpd.Table([0.4, 0.6])).add("w", cpd.Neural(net, ["c"], 2, context=["u"])).eval()
    u = torch.randn(5, 2, 3)
    got = bn.posterior("c", {"w": torch.tensor([0, 1, 1, 0, 1]), "u": u})
    want = bn.posterior("c", {"w": torch.tensor([0, 1, 1, 0, 1]), "u": u.reshape(5, 6)})
    torch.testing.assert_close(got, want)


def test_an_image_context_keeps_its_rows_first_under_enumeration_and_plates():
    """A context of several feature dims ``[N, 2, 3]`` (no particle dims) is N rows of 6 features under an
    enumerated site before the network, a vectorized ELBO and Predictive(parallel=True), as in a plain trace
    (a review found it read as batch dims [N, 2] there)."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import Predictive, Trace_ELBO, TraceEnum_ELBO

    from hybridpgm.graphs import BayesNet, cpd

    torch.manual_seed(0)
    bn = BayesNet(name="img_bn").add("y", cpd.Neural(torch.nn.Linear(6, 3), [], 3, context=["img"]))
    img, y = torch.randn(4, 2, 3), torch.tensor([0, 1, 2, 1])
    want = -float(pyro.poutine.trace(bn.model).get_trace({"y": y}, context={"img": img}).log_prob_sum())

    def enumerated(y):
        pyro.sample("c", dist.Categorical(torch.tensor([0.5, 0.5])), infer={"enumerate": "parallel"})
        bn.model({"y": y}, context={"img": img})

    assert TraceEnum_ELBO(max_plate_nesting=1).loss(enumerated, lambda y: None, y) == pytest.approx(want, rel=1e-6)
    vectorized = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    assert vectorized.loss(lambda y: bn.model({"y": y}, context={"img": img}), lambda y: None, y) == \
        pytest.approx(want, rel=1e-6)
    draws = Predictive(lambda: bn.model(None, context={"img": img}, num_samples=4), num_samples=3, parallel=True)()
    assert draws["y"].shape == (3, 4)
