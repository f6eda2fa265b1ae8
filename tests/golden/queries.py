"""The models of the golden files and the deterministic query that checks each one after loading.

:func:`build` makes every model (fixed seeds, parameters moved off their initial values so that a parameter that
loads wrongly, or not at all, shows); :data:`QUERIES` maps each name to a function of the loaded model whose
result, a dict of tensors, the golden answers record.  ``make_golden.py`` writes the files and the answers with
the hybridpgm of its day; ``tests/test_golden_files.py`` loads them with today's.
"""

from __future__ import annotations

import torch


def _moved(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``module`` with every floating parameter and buffer moved by a seeded draw (scale 0.3), as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            if t.is_floating_point() and t.numel():
                t.add_(0.3 * torch.randn(t.shape, generator=g, dtype=t.dtype))
    return module


def _data(shape, seed, binary=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    return torch.bernoulli(x, generator=g) if binary else x


def build() -> dict[str, torch.nn.Module]:
    """Every model family ``hybridpgm.save`` writes, small."""
    from torch import nn

    import hybridpgm
    from hybridpgm.energy import DBM, DBN, RBM
    from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator
    from hybridpgm.generative.sbn import SigmoidBeliefNet
    from hybridpgm.gp import GPLSTM, DeepKernelGP
    from hybridpgm.gp.sv_deep_kernel import SVDeepKernelGP
    from hybridpgm.graphs import BayesNet, cpd, load_network
    from hybridpgm.graphs.crf import CRFHead
    from hybridpgm.graphs.grids import ising_grid
    from hybridpgm.recipes.models import CRFTagger

    torch.manual_seed(0)
    models = {
        "vae_bernoulli": hybridpgm.VAE(6, 2, [5]),
        "vae_gaussian": hybridpgm.VAE(6, 2, [5], likelihood="gaussian"),
        "sbn": SigmoidBeliefNet([6, 3, 2]),
        "rbm": RBM(6, 4),
        "rbm_gaussian": RBM(5, 3, visible="gaussian", sigma=0.5),
        "dbn": DBN([6, 4, 3]),
        "dbm": DBM([5, 4, 3]),
        "crf_head": CRFHead(4),
        "crf_tagger": CRFTagger(7, 3, hidden=5),
        "gan_generator": MLPGenerator(3, 6, hidden=(5,)),
        "gan_discriminator": MLPDiscriminator(6, hidden=(5,)),
        "bayes_net_asia": load_network("asia"),
        "markov_net_ising": ising_grid(3, 3, 0.4, 0.1),
    }
    hybrid = BayesNet()
    hybrid.add("a", cpd.Table(torch.tensor([0.3, 0.7])), states=["no", "yes"])
    hybrid.add("x", cpd.LinearGaussian(torch.tensor([0.1, -0.4]), scale=torch.tensor([0.8, 1.2]), parents=["a"]))
    hybrid.add("b", cpd.Neural(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)), ["a", "x"], 3))
    models["bayes_net_hybrid"] = hybrid.check()
    x, y = _data((20, 3), 1), _data((20,), 2)
    models["deep_kernel_gp"] = DeepKernelGP(x, y, nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
    models["deep_kernel_gp_grid"] = DeepKernelGP(x, y, nn.Sequential(nn.Linear(3, 1), nn.Tanh()), grid_size=16)
    models["sv_deep_kernel_gp"] = SVDeepKernelGP(nn.Sequential(nn.Linear(3, 2)), num_features=2, num_data=20,
                                                 inducing_points=_data((5, 2), 3))
    with torch.no_grad():  # GPyTorch initialises the variational distribution at the first call, at random:
        models["sv_deep_kernel_gp"].predict(_data((2, 3), 6))  # a trained model's file holds it initialised
    models["gp_lstm"] = GPLSTM(_data((12, 4, 1), 4), _data((12,), 5), hidden_size=3, num_features=2)
    for i, (name, model) in enumerate(sorted(models.items())):
        if not name.startswith("bayes_net_asia") and not name.startswith("markov_net"):
            _moved(model, 100 + i)
    return models


def _gp(model, x):
    prediction = model.predict(x)
    return {"mean": prediction.mean, "variance": prediction.variance}


#: name -> the query of the loaded model (a dict of tensors), deterministic: no random numbers
QUERIES = {
    "vae_bernoulli": lambda m: {"reconstruct": m.reconstruct(_data((4, 6), 10, binary=True))},
    "vae_gaussian": lambda m: {"reconstruct": m.reconstruct(_data((4, 6), 11)),
                               "scale": m.state_dict()["log_scale"].exp()},
    "sbn": lambda m: {"exact_log_likelihood": m.exact_log_likelihood(_data((4, 6), 12, binary=True))},
    "rbm": lambda m: {"free_energy": m.free_energy(_data((4, 6), 13, binary=True)),
                      "log_partition": m.log_partition().reshape(1)},
    "rbm_gaussian": lambda m: {"free_energy": m.free_energy(_data((4, 5), 14)),
                               "log_partition": m.log_partition().reshape(1)},
    "dbn": lambda m: {"transform": m.transform(_data((4, 6), 15, binary=True))},
    "dbm": lambda m: {f"mean_field_{i}": t for i, t in enumerate(m.mean_field(_data((4, 5), 16, binary=True)))},
    "crf_head": lambda m: {"log_prob": m(_data((2, 5, 4), 17)).log_prob(torch.tensor([[0, 1, 2, 3, 0],
                                                                                      [3, 3, 2, 1, 0]]))},
    "crf_tagger": lambda m: {"log_prob": m(torch.tensor([[1, 2, 3, 4], [6, 5, 0, 0]]), torch.tensor([4, 2])).log_prob(
        torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]]))},
    "gan_generator": lambda m: {"forward": m.eval()(_data((4, 3), 18))},
    "gan_discriminator": lambda m: {"forward": m.eval()(_data((4, 6), 19))},
    "bayes_net_asia": lambda m: {"log_evidence": m.log_evidence({"asia": torch.tensor([0, 1]),
                                                                 "dysp": torch.tensor([1, 0])})},
    "bayes_net_hybrid": lambda m: {"log_evidence": m.log_evidence({"x": torch.tensor([0.2, -1.0]),
                                                                   "b": torch.tensor([2, 0])})},
    "markov_net_ising": lambda m: {"log_partition": m.log_partition("exact").reshape(-1)},
    "deep_kernel_gp": lambda m: _gp(m, _data((3, 3), 20)),
    "deep_kernel_gp_grid": lambda m: _gp(m, _data((3, 3), 21)),
    "sv_deep_kernel_gp": lambda m: _gp(m, _data((3, 3), 22)),
    "gp_lstm": lambda m: _gp(m, _data((3, 4, 1), 23)),
}


def checkpoint_run(path, max_steps: int):
    """The run of the golden checkpoint: a VAE with a plateau scheduler (whose state holds ``inf``) and early
    stopping (callback state), checkpointing every step to ``path``."""
    import functools

    import hybridpgm
    from hybridpgm.train.callbacks import EarlyStopping

    torch.manual_seed(0)
    vae = hybridpgm.VAE(6, 2, [5])
    return hybridpgm.fit(hybridpgm.SVIObjective(vae.model, vae.guide), _data((32, 6), 30, binary=True),
                         batch_size=8, max_steps=max_steps, seed=0, checkpoint=path, checkpoint_every=1,
                         progress=False, callbacks=[EarlyStopping("elbo", patience=50)],
                         lr_scheduler=functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=1))
