"""The base of objectives over a model and a guide (hybridpgm/infer/model_guide_objective.py)."""

import pytest
import torch


def test_an_owner_whose_parameter_groups_leave_one_out_is_refused_naming_it():
    """Before, a VAE subclass's learnable prior mean was in neither ``model_parameters()`` nor
    ``guide_parameters()``: WakeSleep and RWS silently never trained it (SVIObjective did)."""
    import pyro
    import pyro.distributions as dist
    from pyro.nn import pyro_method

    import hybridpgm
    from hybridpgm.errors import ConfigError
    from hybridpgm.infer import RWS, WakeSleep

    class PriorVAE(hybridpgm.VAE):
        def __init__(self):
            super().__init__(8, z_dim=2, hidden=[8])
            self.prior_loc = torch.nn.Parameter(torch.zeros(2))

        @pyro_method
        def model(self, x=None, num_data=None, *, prefix=""):
            with pyro.plate(prefix + "data", x.shape[0]):
                z = pyro.sample(prefix + "z", dist.Normal(self.prior_loc.expand(x.shape[0], 2), 1.0).to_event(1))
                return pyro.sample(prefix + "x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    for objective in (WakeSleep, RWS):
        vae = PriorVAE()
        with pytest.raises(ConfigError, match=r"PriorVAE.model_parameters\(\) and guide_parameters\(\) leave out "
                                              r"\['prior_loc'\]"):
            objective(vae.model, vae.guide)
        theta = [*vae.model_parameters(), vae.prior_loc]
        assert objective(vae.model, vae.guide, model_parameters=theta, guide_parameters=vae.guide_parameters())
        assert objective(vae.model, vae.guide, model_parameters=theta)  # the other group defaulted (review A)
        # a group given explicitly says what is trained: leaving a layer out freezes it (review C)
        assert objective(vae.model, vae.guide, model_parameters=vae.model_parameters()[:-2])
        vae.prior_loc.requires_grad_(False)  # frozen: no player needs it
        assert objective(vae.model, vae.guide)


def _objectives(sbn, **options):
    """The four ModelGuideObjectives, each with its first player."""
    from hybridpgm.infer import NVIL, RWS, VIMCO, WakeSleep

    return [(RWS(sbn.model, sbn.guide, 3, **options), "rws"),
            (RWS(sbn.model, sbn.guide, 3, joint=False, **options), "sleep"),
            (VIMCO(sbn.model, sbn.guide, 3, **options), "elbo"),
            (NVIL(sbn.model, sbn.guide, **options), "elbo"),
            (WakeSleep(sbn.model, sbn.guide, **options), "wake")]


@pytest.mark.parametrize("which", range(5))
def test_per_example_on_a_subsampled_plate_is_refused_on_the_first_and_on_a_smaller_batch(which):
    """Before, RWS, VIMCO, NVIL and WakeSleep divided the N / B-scaled loss of ``num_data=N`` by B again
    (per_example=True, the default): the expected loss on 4 of 8 rows was twice that on all 8 and fit's
    accumulate=2 doubled the update.  Now their loss refuses it as SVIObjective does: on the first batch, and
    on a batch smaller than any probed (a batch of all N rows is not subsampled); per_example=False passes."""
    from hybridpgm.errors import ConfigError
    from hybridpgm.generative import SigmoidBeliefNet

    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([3, 2])
    x = torch.bernoulli(torch.full((8, 3), 0.5))
    objective, player = _objectives(sbn, model_kwargs={"num_data": 8})[which]
    name = type(objective).__name__
    message = rf"{name}: the model's plate 'data' subsamples the batch's 4 row\(s\) from 8 .*per_example=False"
    with pytest.raises(ConfigError, match=message):
        objective.loss(player, x[:4])
    objective, player = _objectives(sbn, model_kwargs={"num_data": 8})[which]
    objective.loss(player, x)  # all 8 rows: scale 1, nothing to refuse
    with pytest.raises(ConfigError, match=r"subsamples the batch's 2 row\(s\) from 8"):
        objective.loss(player, x[:2])  # a smaller batch is probed again
    objective, player = _objectives(sbn, model_kwargs={"num_data": 8}, per_example=False)[which]
    assert torch.isfinite(objective.loss(player, x[:4]))
    objective, player = _objectives(sbn)[which]  # no num_data: the plate is the batch, per_example is right
    assert torch.isfinite(objective.loss(player, x[:4]))


def test_the_per_example_probe_uses_up_no_random_numbers_and_runs_once_per_smaller_batch(monkeypatch):
    """The probe leaves torch's random stream alone (the loss of a probed call equals an unprobed one with the
    same seed), and runs on the first batch and on smaller ones only."""
    from hybridpgm.generative import SigmoidBeliefNet
    from hybridpgm.infer import RWS, subsample_scale

    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([3, 2])
    x = torch.bernoulli(torch.full((8, 3), 0.5))
    probed = RWS(sbn.model, sbn.guide, 3)
    unprobed = RWS(sbn.model, sbn.guide, 3, per_example=False)
    torch.manual_seed(1)
    a = probed.loss("rws", x)
    torch.manual_seed(1)
    b = unprobed.loss("rws", x) / 8
    assert torch.equal(a, b)
    calls = []
    real = subsample_scale.check_plate_scale  # called by subsample_scale.probe_batch, shared with SVIObjective
    monkeypatch.setattr(subsample_scale, "check_plate_scale", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    for rows in (8, 4, 8, 4, 2, 8, 3):
        probed.loss("rws", x[:rows])
    assert calls == [4, 2]
