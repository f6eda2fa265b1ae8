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
