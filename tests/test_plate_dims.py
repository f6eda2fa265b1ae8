"""hybridpgm.plate_dims: a model that opens its own data plate at dim -1 (VAE, SigmoidBeliefNet, SVDeepKernelGP)
refuses a caller's plate at dim -1 with a ModelSpecError naming both plates and the remedy, where Pyro raised its raw
"plates collide" ValueError; a caller's plate at dim -2 still works (audit COMPOSE, finding 1)."""
from __future__ import annotations

import warnings

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

import hybridpgm
from hybridpgm.errors import ModelSpecError
from hybridpgm.generative import SigmoidBeliefNet
from hybridpgm.gp import SVDeepKernelGP
from hybridpgm.plate_dims import plate_holding, refuse_caller_plate

N = 4


def _x():
    return torch.randint(0, 2, (N, 6), generator=torch.Generator().manual_seed(0)).float()


def _sv():
    return SVDeepKernelGP(num_features=2, num_data=N, inducing_points=torch.randn(3, 2))


def _calls():
    vae = hybridpgm.VAE(6, z_dim=2, hidden=[8])
    sbn = SigmoidBeliefNet([6, 3])
    sv = _sv()
    x = _x()
    xs, ys = torch.randn(N, 2), torch.randn(N)
    return {
        "VAE.model": (lambda: vae.model(x, prefix="vae_"), "vae_data"),
        "VAE.guide": (lambda: vae.guide(x, prefix="vae_"), "vae_data"),
        "VAE.model(None)": (lambda: vae.model(None, num_data=N, prefix="vae_"), "vae_data"),
        "SigmoidBeliefNet.model": (lambda: sbn.model(x, prefix="sbn_"), "sbn_data"),
        "SigmoidBeliefNet.guide": (lambda: sbn.guide(x, prefix="sbn_"), "sbn_data"),
        "SigmoidBeliefNet.enumerated_model": (lambda: sbn.enumerated_model(x, prefix="sbn_"), "sbn_data"),
        "SVDeepKernelGP.model": (lambda: sv.model(xs, ys), "gp.data_plate"),
        "SVDeepKernelGP.guide": (lambda: sv.guide(xs, ys), "gp.data_plate"),
    }


CALLS = list(_calls())


@pytest.mark.parametrize("name", CALLS)
def test_a_caller_plate_at_dim_minus_one_is_refused_naming_both_plates(name):
    call, own = _calls()[name]
    pyro.clear_param_store()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ModelSpecError) as info, pyro.plate("rows", N):
            call()
    msg = str(info.value)
    assert name.split("(")[0] in msg and "'rows'" in msg and repr(own) in msg
    assert "outside the plate 'rows'" in msg and "dim=-2" in msg


@pytest.mark.parametrize("name", CALLS)
def test_a_caller_plate_at_dim_minus_two_is_still_joined_as_a_batch_dim(name):
    call, own = _calls()[name]
    pyro.clear_param_store()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pyro.poutine.trace() as tr, pyro.plate("groups", 1, dim=-2):
            call()
    plates = {f.name for site in tr.trace.nodes.values() if site["type"] == "sample"
              for f in site["cond_indep_stack"]}
    assert {"groups", own} <= plates


def test_the_semi_supervised_hybrid_of_the_audit_raises_a_hybridpgm_error():
    vae = hybridpgm.VAE(6, z_dim=2, hidden=[8])
    x = _x()

    def model(x):
        with pyro.plate("data", N):
            vae.model(x, prefix="vae_")

    def guide(x):
        with pyro.plate("data", N):
            vae.guide(x, prefix="vae_")

    with pytest.raises(ModelSpecError, match="'data'.*'vae_data'"):
        Trace_ELBO().loss(model, guide, x)

    def apart(x):  # the remedy: the VAE outside the caller's plate
        vae.model(x, prefix="vae_")
        with pyro.plate("data", N):
            pyro.sample("w", pyro.distributions.Normal(0.0, 1.0))

    def apart_guide(x):
        vae.guide(x, prefix="vae_")
        with pyro.plate("data", N):
            pyro.sample("w", pyro.distributions.Normal(0.0, 1.0))

    assert torch.isfinite(torch.tensor(Trace_ELBO().loss(apart, apart_guide, x)))


def test_a_plate_of_the_models_own_name_at_another_dim_is_refused_naming_prefix():
    vae = hybridpgm.VAE(6, z_dim=2, hidden=[8])
    with pytest.raises(ModelSpecError, match="'vae_data'.*prefix="), pyro.plate("vae_data", 1, dim=-2):
        vae.model(_x(), prefix="vae_")


def test_plate_holding_reads_the_allocator_and_a_free_dim_passes():
    assert plate_holding(-1) is None
    refuse_caller_plate("M.model", "m_data")  # nothing holds dim -1: no error
    with pyro.plate("outer", 2, dim=-2):
        assert plate_holding(-2) == "outer" and plate_holding(-1) is None
        refuse_caller_plate("M.model", "m_data")
