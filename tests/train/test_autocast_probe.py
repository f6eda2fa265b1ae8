"""The probe of autocast's cache of weight casts (hybridpgm/train/autocast_probe.py) and what fit does with it.

On torch 2.5 a cast made under no_grad inside an autocast region was handed to the next use of the weight with
grad on: ``fit(precision="bf16"|"fp16")`` of a VAE was refused with "returned a tensor without a gradient".
"""

import functools

import pytest
import torch

from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.train import autocast_probe
from hybridpgm.train.player_step import autocast_for

#: what the probe must answer on the torch releases it was checked on (major, minor) -> bug
KNOWN = {(2, 5): True, (2, 13): False}


def _release():
    return tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


@pytest.fixture
def fresh_probe(monkeypatch):
    """The probe asked again in this test (its answer is kept once per process)."""
    monkeypatch.setattr(autocast_probe, "_FOUND", None)


def test_the_probe_answers_as_this_torch_behaves(fresh_probe):
    if _release() not in KNOWN:
        pytest.skip(f"torch {torch.__version__}: not one of the releases checked by hand ({sorted(KNOWN)})")
    assert autocast_probe.autocast_cache_drops_grad() is KNOWN[_release()]
    assert autocast_probe._FOUND is KNOWN[_release()]  # kept for the process


def test_the_probe_reads_and_changes_no_state_of_the_caller(fresh_probe):
    """Asked inside the caller's own autocast region, under no_grad and with a default device: the caller's
    autocast state, grad mode and random state are as they were, and the answer is the one asked plainly."""
    expected = autocast_probe._probe()
    autocast_probe._FOUND = None
    rng = torch.get_rng_state()
    with torch.autocast("cpu", dtype=torch.float16, cache_enabled=False), torch.no_grad(), torch.device("meta"):
        got = autocast_probe.autocast_cache_drops_grad()
        assert (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")) == (True, torch.float16)
        assert not torch.is_autocast_cache_enabled() and not torch.is_grad_enabled()
        assert torch.empty(1).device.type == "meta"
    assert got is expected
    assert torch.equal(torch.get_rng_state(), rng)
    assert not torch.is_autocast_enabled("cpu") and torch.is_autocast_cache_enabled()


class _Recorder:
    """An objective whose loss records autocast's cache flag, in fit's region and in one opened inside it (as
    a deep-kernel GP's network region is)."""

    def __init__(self):
        self.module = torch.nn.Linear(4, 1)
        self.seen = []

    def players(self):
        return {"p": list(self.module.parameters())}

    def loss(self, player, batch):
        outer = torch.is_autocast_cache_enabled()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inner = torch.is_autocast_cache_enabled()
            out = self.module(batch)
        self.seen.append((outer, inner))
        return out.float().pow(2).mean()


@pytest.mark.parametrize("bug", [True, False])
def test_fit_opens_autocast_without_its_cache_only_where_the_probe_finds_the_bug(bug, monkeypatch):
    monkeypatch.setattr(autocast_probe, "_FOUND", bug)
    context = autocast_for("bf16", torch.device("cpu"))
    assert context._cache_enabled is (not bug)
    objective = _Recorder()
    fit(objective, torch.randn(8, 4), batch_size=8, precision="bf16", progress=False, seed=0)
    assert objective.seen == [(not bug, not bug)]
    assert torch.is_autocast_cache_enabled()  # as before the fit


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_of_a_vae_trains_with_the_cache_off(precision, monkeypatch):
    """Where the probe finds the bug (forced here; torch 2.5 finds it) a VAE's loss after its plate-scale check
    (a no-grad trace of the guide in the same region) has a gradient, and the training improves the ELBO."""
    monkeypatch.setattr(autocast_probe, "_FOUND", True)
    torch.manual_seed(0)
    vae = VAE(16, 2, (32,))
    x = torch.bernoulli(torch.full((64, 16), 0.3), generator=torch.Generator().manual_seed(0))
    before = vae.elbo(x, 20).mean()
    result = fit(SVIObjective(vae.model, vae.guide), x, epochs=20, batch_size=32, precision=precision,
                 progress=False, seed=0, optim=functools.partial(torch.optim.Adam, lr=1e-2))
    assert all(torch.isfinite(torch.tensor(result.history.loss["elbo"])))
    assert vae.elbo(x, 20).mean() > before + 1.0
