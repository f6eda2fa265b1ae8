"""Readable reprs of the model/guide objectives (svi.py, model_guide_objective.py) and of IWAE (iwae.py), as the
GAN family's: the class and its main options, not ``<... object at 0x...>``."""

import pytest

from hybridpgm import VAE, SigmoidBeliefNet
from hybridpgm.infer import IWAE, NVIL, RWS, VIMCO, SVIObjective, WakeSleep


@pytest.fixture(scope="module")
def nets():
    return VAE(64, z_dim=4, hidden=[16]), SigmoidBeliefNet([64, 8])


def test_svi_objective_shows_its_programs_and_elbo(nets):
    vae, _ = nets
    assert repr(SVIObjective(vae.model, vae.guide)) == (
        "SVIObjective(model=VAE.model, guide=VAE.guide, elbo='DirectTrace_ELBO', num_particles=1, "
        "vectorize_particles=False, per_example=True)")
    assert repr(SVIObjective(vae.model, vae.guide, IWAE(5), per_example=False)) == (
        "SVIObjective(model=VAE.model, guide=VAE.guide, elbo='IWAE', num_particles=5, vectorize_particles=True, "
        "per_example=False)")


@pytest.mark.parametrize("make, options", [
    (lambda m, g: WakeSleep(m, g), "elbo='WakeSleepELBO', num_particles=1, vectorize_particles=False, "
                                   "num_sleep_particles=1, detach_guide=True, plate_name=None"),
    (lambda m, g: RWS(m, g, num_particles=5, joint=False),
     "elbo='ReweightedWakeSleepELBO', num_particles=5, vectorize_particles=False, num_sleep_particles=5, "
     "wake_phi=True, sleep_phi=False, detach_guide=True, plate_name=None, joint=False"),
    (lambda m, g: NVIL(m, g), "elbo='NVIL_ELBO', num_particles=1, vectorize_particles=False, "
                              "variance_normalization=True, centering=True"),
    (lambda m, g: VIMCO(m, g, num_particles=3), "elbo='VIMCO_ELBO', num_particles=3, vectorize_particles=False, "
                                                "detach_guide=True, plate_name=None"),
], ids=["WakeSleep", "RWS", "NVIL", "VIMCO"])
def test_model_guide_objectives_show_their_options(nets, make, options):
    _, sbn = nets
    objective = make(sbn.model, sbn.guide)
    assert repr(objective) == (f"{type(objective).__name__}(model=SigmoidBeliefNet.model, "
                               f"guide=SigmoidBeliefNet.guide, {options}, per_example=True)")


def test_iwae_shows_its_particles():
    assert repr(IWAE(5)) == "IWAE(num_particles=5, max_plate_nesting=None)"
    assert repr(IWAE(2, max_plate_nesting=1)) == "IWAE(num_particles=2, max_plate_nesting=1)"
