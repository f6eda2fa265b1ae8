"""Each model family of hybridpgm, built small and trained a few steps, with the outputs it gives: the models of
the save/load tests (tests/test_serialization*.py)."""

import torch
from torch import nn

import hybridpgm
from hybridpgm.energy import DBM, DBN, RBM
from hybridpgm.generative import VAE, SigmoidBeliefNet
from hybridpgm.generative.gan import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator
from hybridpgm.gp import GPLSTM, DeepKernelGP, SVDeepKernelGP
from hybridpgm.graphs import BayesNet, MarkovNet, cpd
from hybridpgm.graphs.crf import CRFHead
from hybridpgm.infer import RWS, ContrastiveDivergence, SVIObjective


def _steps(module, loss_fn, n=3, lr=0.05):
    """A few Adam steps on ``loss_fn()`` so the weights leave their initial values."""
    params = [p for p in module.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=lr)
    for _ in range(n):
        optim.zero_grad()
        loss_fn().backward()
        optim.step()


def _binary(n, d, seed=0):
    return torch.bernoulli(torch.full((n, d), 0.3), generator=torch.Generator().manual_seed(seed))


def _vae():
    vae = VAE(12, 3, [8])
    hybridpgm.fit(SVIObjective(vae.model, vae.guide), _binary(32, 12), epochs=1, batch_size=8, progress=False,
                  device="cpu", seed=0)
    x = _binary(5, 12, 1)
    return vae, lambda m: (m.reconstruct(x), m.decoder(torch.ones(2, 3)), m.encoder(x))


def _sbn():
    sbn = SigmoidBeliefNet([12, 6, 3])
    hybridpgm.fit(RWS(sbn.model, sbn.guide, num_particles=2, max_plate_nesting=1), _binary(16, 12), epochs=1,
                  batch_size=8, progress=False, device="cpu", seed=0)
    x = _binary(4, 12, 1)
    return sbn, lambda m: tuple(p for p in m.parameters()) + (m.check_data(x),)


def _rbm():
    rbm = RBM(10, 4)
    hybridpgm.fit(ContrastiveDivergence(rbm, 1), _binary(16, 10), epochs=1, batch_size=8, progress=False,
                  device="cpu", seed=0)
    x = _binary(6, 10, 1)
    return rbm, lambda m: (m.free_energy(x), m.log_partition("exact"))


def _dbn():
    dbn = DBN([10, 6, 4])
    dbn.pretrain(_binary(16, 10), epochs=1, batch_size=8, progress=False)
    x = _binary(6, 10, 1)
    return dbn, lambda m: (m.transform(x),)


def _dbm():
    dbm = DBM([8, 4, 3])
    x = _binary(6, 8, 1)
    _steps(dbm, lambda: dbm.energy([x, torch.full((6, 4), 0.5), torch.full((6, 3), 0.5)]).mean())
    return dbm, lambda m: (m.mean_field(x)[-1], m.log_partition("exact"))


def _mlp_gan():
    g, d = MLPGenerator(3, 12, hidden=[8]), MLPDiscriminator(12, hidden=[8])
    z = torch.randn(5, 3)
    _steps(nn.ModuleList([g, d]), lambda: d(g(z)).mean())
    return g, d, lambda gd: (gd[0].eval()(z), gd[1].eval()(_binary(5, 12)))


def _conv_gan():
    g, d = ConvGenerator(3, (8, 8), width=4), ConvDiscriminator((8, 8), width=4)
    z = torch.randn(5, 3)
    _steps(nn.ModuleList([g, d]), lambda: d(g(z)).mean())
    return g, d, lambda gd: (gd[0].eval()(z), gd[1].eval()(_binary(5, 64)))


def _dkl():
    x, y = torch.randn(20, 3), torch.randn(20)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    gp = DeepKernelGP(x, y, net)
    _steps(gp, lambda: -gp.marginal_log_likelihood())
    xt = torch.randn(4, 3)
    return gp, lambda m: (m.predict(xt).mean, m.predict(xt).variance)


def _sv_dkl():
    x, y = torch.randn(20, 3), torch.randn(20)
    gp = SVDeepKernelGP(nn.Sequential(nn.Linear(3, 2)), num_features=2, num_data=20, inducing_points=torch.randn(6, 2))
    _steps(gp, lambda: gp.features(x).pow(2).mean() + 0 * y.sum())
    xt = torch.randn(4, 3)
    return gp, lambda m: (m.predict(xt).mean, m.predict(xt).variance)


def _gp_lstm():
    x, y = torch.randn(12, 5, 1), torch.randn(12)
    gp = GPLSTM(x, y, hidden_size=4, num_features=2)
    _steps(gp, lambda: -gp.marginal_log_likelihood())
    xt = torch.randn(3, 5, 1)
    return gp, lambda m: (m.predict(xt).mean, m.predict(xt).variance)


def _bayes_net():
    bn = BayesNet()
    bn.add("rain", cpd.Table([0.8, 0.2]), states=["no", "yes"])
    bn.add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], parents=["rain"]))
    bn.add("alarm", cpd.Neural(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)), parents=["wet"]))
    _steps(bn, lambda: -bn.log_evidence({"alarm": torch.tensor([1, 0, 1])}).sum())
    return bn, lambda m: (m.posterior("rain", {"alarm": torch.tensor([1, 0])}),
                          m.posterior("wet", {"rain": "yes"}))


def _crf():
    head = CRFHead(3)
    unary = torch.randn(2, 4, 3)
    tags = torch.randint(0, 3, (2, 4), generator=torch.Generator().manual_seed(0))
    _steps(head, lambda: -head(unary).log_prob(tags).mean())
    return head, lambda m: (m(unary).log_prob(tags), m(unary).argmax())


def _markov_net():
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], nn.Parameter(torch.randn(2, 3)))
    mrf.add_factors("pairs", [["a", "c"], ["c", "a"]], torch.randn(2, 2, 2))
    _steps(mrf, lambda: mrf.log_partition(method="exact"))
    return mrf, lambda m: (m.log_partition(method="exact"),)


FAMILIES = {"vae": _vae, "sbn": _sbn, "rbm": _rbm, "dbn": _dbn, "dbm": _dbm, "dkl": _dkl, "sv-dkl": _sv_dkl,
            "gp-lstm": _gp_lstm, "bayes-net": _bayes_net, "crf": _crf, "markov-net": _markov_net}


def _assert_equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert torch.equal(torch.as_tensor(u), torch.as_tensor(v))
