"""How NVIL's baselines reach Pyro and fit (hybridpgm/infer/nvil_baselines.py): trained under plain SVI, frozen
ones silent, stepped once per fit step with no param-store entry, and Python's warning record left alone."""

import math

import pyro
import pytest
import torch

import hybridpgm  # noqa: F401
from hybridpgm.infer import NVIL, NVIL_ELBO, NVILBaselines
from tests.generative.sbn_brute_force import (binary, deterministic_guide_sbn, flat_grads, mc_check,  # noqa: F401
                                             random_sbn, single_thread)
from tests.infer.nvil_helpers import _setup


def test_plain_svi_trains_the_learned_baselines():
    """Found by an audit: under plain pyro.infer.SVI the baseline networks were never registered with Pyro, so
    SVI's param capture never saw them: they never changed and their .grad grew without bound."""
    import pyro

    from hybridpgm.infer.nvil import BASELINES_MODULE_NAME

    with pyro.get_param_store().scope():
        for run in range(2):  # a second NVIL_ELBO in the same session trains its own baselines, not the first's
            sbn, x = _setup(run)
            torch.manual_seed(run)
            baselines = NVILBaselines(sbn.latent_sites, input_dim=3, hidden_dim=4)
            before = {name: p.detach().clone() for name, p in baselines.named_parameters()}
            svi = pyro.infer.SVI(sbn.model, sbn.guide, pyro.optim.Adam({"lr": 0.05}), NVIL_ELBO(baselines))
            for _ in range(3):
                assert math.isfinite(svi.step(x))
            for name, p in baselines.named_parameters():
                assert not torch.equal(before[name], p.detach()), name
                assert p.grad is None or not p.grad.abs().sum(), name  # zeroed by SVI after each step
            store = pyro.get_param_store()
            for site in sbn.latent_sites:
                weight = baselines.nets[site][0].weight
                assert store.param_name(weight) == f"{BASELINES_MODULE_NAME}$$${site}.0.weight"


@pytest.mark.parametrize("frozen", ["all", "one_site"])
def test_plain_svi_with_frozen_baselines_warns_nothing(frozen):
    """Found by a review: frozen baseline parameters (requires_grad=False) were handed to pyro.module, which
    warned once per parameter per step, advising .train(False), a switch that would also stop the baselines'
    running statistics.  Trainable baselines next to frozen ones are still registered and trained."""
    import warnings

    import pyro

    with pyro.get_param_store().scope():
        sbn, x = _setup(0)
        torch.manual_seed(0)
        baselines = NVILBaselines(sbn.latent_sites, input_dim=3, hidden_dim=4)
        frozen_sites = sbn.latent_sites if frozen == "all" else sbn.latent_sites[:1]
        for site in frozen_sites:
            baselines.nets[site].requires_grad_(False)
        before = {name: p.detach().clone() for name, p in baselines.named_parameters()}
        svi = pyro.infer.SVI(sbn.model, sbn.guide, pyro.optim.Adam({"lr": 0.05}), NVIL_ELBO(baselines))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                assert math.isfinite(svi.step(x))
        assert not [str(w.message) for w in caught if "registered" in str(w.message)]
        assert baselines.training and baselines.mean.abs().sum() > 0  # running statistics still updated
        for name, p in baselines.named_parameters():
            site = name.split(".")[1] if name.startswith("nets.") else None
            if site in frozen_sites:
                assert torch.equal(before[name], p.detach()), name
            elif site is not None:
                assert not torch.equal(before[name], p.detach()), name
        keys = [k for k in pyro.get_param_store().keys() if "nvil" in k]
        assert all(k.split("$$$")[1].split(".")[0] not in frozen_sites for k in keys)
        assert bool(keys) == (frozen != "all")


def test_fit_steps_the_baselines_once_per_step_and_leaves_no_param_store_entry():
    """Under fit the baselines are parameters of the "elbo" player, stepped once by fit's optimizer (not also
    through Pyro's param store), and neither fit nor a direct call of loss registers them in the user's store."""
    import functools

    import pyro

    from hybridpgm.infer.nvil import BASELINES_MODULE_NAME

    lr = 0.1
    sbn, x = _setup(7)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    params = list(objective.baselines.parameters())
    assert sum(any(p is q for q in objective.players()["elbo"]) for p in params) == len(params)
    assert len({id(p) for p in objective.players()["elbo"]}) == len(objective.players()["elbo"])
    grads = []

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            grads.append([p.grad.clone() for p in params])
            return super().step(closure)

    before = [p.detach().clone() for p in params]
    hybridpgm.fit(objective, x.repeat(2, 1), epochs=1, batch_size=4, progress=False, device="cpu", seed=0,
                  optim=functools.partial(RecordingSGD, lr=lr))
    assert len(grads) == 1 and all(g.abs().sum() > 0 for g in grads[0])
    for p, b, g in zip(params, before, grads[0]):
        torch.testing.assert_close(p.detach(), b - lr * g)
    objective.loss("elbo", x)
    assert not [name for name in pyro.get_param_store().keys() if name.startswith(BASELINES_MODULE_NAME)]


def _times_a_per_step_warning_shows(make_elbo) -> int:
    """Under Python's default filters, how many of 10 SVI steps show a warning the model raises at every step."""
    import warnings

    from pyro.infer import SVI

    from hybridpgm.generative import SigmoidBeliefNet

    pyro.clear_param_store()
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([6, 3])
    x = torch.randint(0, 2, (8, 6)).float()

    def model(x):
        warnings.warn("a note of the user's model")
        return sbn.model(x)

    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
        svi = SVI(model, sbn.guide, pyro.optim.Adam({"lr": 1e-3}), make_elbo(sbn))
        for _ in range(10):
            svi.step(x)
    pyro.clear_param_store()
    return sum("a note of the user's model" in s for s in shown)


def test_the_baselines_do_not_make_a_once_shown_warning_show_at_every_step():
    """Before, registering the baselines entered ``warnings.catch_warnings()`` at every step, which resets Python's
    record of the warnings shown: a warning shown once under Pyro's own ELBO showed at all 10 steps."""
    from pyro.infer import TraceGraph_ELBO

    reference = _times_a_per_step_warning_shows(lambda sbn: TraceGraph_ELBO())
    assert 1 <= reference < 10
    assert _times_a_per_step_warning_shows(
        lambda sbn: NVIL_ELBO(NVILBaselines(sbn.latent_sites, input_dim=6, hidden_dim=4))) == reference
