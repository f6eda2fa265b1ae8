"""Estimates that fit's micro-batches cannot split are refused before fit sets the run up
(hybridpgm/infer/split_refusal.py); TraceTMC_ELBO with every latent in the data plate splits and is not refused.

Before, IWAE or an enumerated site with a global latent under accumulate=2 was refused only at step 1, after fit had
taken the checkpoint's lock, resumed the checkpoint (its "resuming" line printed) and run the callbacks'
on_fit_start; IWAE with a ``pyro.factor`` outside the data plate (one importance weight for the whole batch) was not
refused at all and trained another bound.
"""

import contextlib
import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, TraceTMC_ELBO
from pyro.nn import PyroModule, PyroParam, pyro_method

import hybridpgm.infer.svi as svi_module
from hybridpgm import SVIObjective, fit
from hybridpgm.errors import ConfigError
from hybridpgm.infer import IWAE
from hybridpgm.infer.split_refusal import refuse_unsplit_estimates
from hybridpgm.train import Callback
from tests.infer.global_share_cases import regression
from tests.infer.test_global_share_sites import GlobalChoice
from tests.infer.test_global_share_weights import GlobalAndLocal

K = 4


class Starts(Callback):
    """Counts ``on_fit_start`` calls."""

    def __init__(self):
        super().__init__()
        self.started = 0

    def on_fit_start(self, info):
        self.started += 1


def _iwae(m=None):
    m = GlobalAndLocal() if m is None else m
    return SVIObjective(m.model, m.guide, IWAE(K))


def _enum():
    m = GlobalChoice()
    return SVIObjective(m.model, m.guide, TraceEnum_ELBO(max_plate_nesting=1))


CASES = {"IWAE": (_iwae, lambda: regression(32), r"SVIObjective with IWAE: the latent site\(s\) \['w'\] lie outside "
                                                    r"the batch's plate.*share 0\.5.*accumulate=1"),
         "enumerated": (_enum, lambda: torch.randn(16, generator=torch.Generator().manual_seed(0)),
                        r"the enumerated site 'c' lies outside the batch's plate.*share of the update: 0\.5.*"
                        r"accumulate=1")}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_before_the_checkpoint_is_resumed_or_a_callback_starts(case, tmp_path, capsys):
    """A run of accumulate=1 leaves a checkpoint; the same run under accumulate=2 (override_hyperparameters) is
    refused with the step's message before it resumes (no "resuming" line), runs on_fit_start or touches the
    checkpoint or its lock."""
    make, data, message = CASES[case]
    path = tmp_path / "run.pt"
    fit(make(), data(), epochs=1, batch_size=8, progress=False, seed=0, checkpoint=path)
    written = path.read_bytes()
    capsys.readouterr()
    starts = Starts()
    with pytest.raises(ConfigError, match=message):
        fit(make(), data(), epochs=2, batch_size=8, accumulate=2, progress=False, seed=0, checkpoint=path,
            override_hyperparameters=True, callbacks=[starts])
    assert starts.started == 0
    assert "resuming" not in capsys.readouterr().out
    assert path.read_bytes() == written and sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


def test_a_batch_of_one_row_is_not_split_and_not_refused():
    """A data set of one row under batch_size=2, accumulate=2: one micro-batch of share 1 (as at the step): IWAE
    trains it."""
    m = GlobalAndLocal()
    fit(_iwae(m), regression(1), epochs=2, batch_size=2, accumulate=2, progress=False, seed=0)
    assert not torch.equal(m.loc.detach(), torch.zeros(3))


class LocalFactor(PyroModule):
    """No global latent: ``z`` and ``x`` in the plate, a ``pyro.factor`` of the parameter ``mu`` outside it."""

    def __init__(self):
        super().__init__()
        self.mu = PyroParam(torch.tensor(0.5))
        self.enc = torch.nn.Linear(1, 1)

    @pyro_method
    def model(self, x):
        pyro.factor("l2", -self.mu ** 2)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(self.mu, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    @pyro_method
    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.enc(x[:, None]).squeeze(-1), 1.0))


def test_iwae_with_a_factor_outside_the_plate_is_refused_under_a_share():
    """IWAE gives the batch one importance weight for any site outside the data plate, an observed one too: the
    bound F + log mean_k prod_b w_bk is no sum over micro-batches.  Before, trained silently; accumulate=1 trains."""
    x = torch.randn(16, generator=torch.Generator().manual_seed(0))
    m = LocalFactor()
    fit(SVIObjective(m.model, m.guide, IWAE(K)), x, epochs=1, batch_size=8, progress=False, seed=0)
    with pytest.raises(ConfigError, match=r"SVIObjective with IWAE: the site\(s\) \['l2'\] lie outside the batch's "
                                          r"plate.*share 0\.5"):
        fit(SVIObjective(m.model, m.guide, IWAE(K)), x, epochs=1, batch_size=8, accumulate=2, progress=False,
            seed=0)


ACCEPTED = {"IWAE, local latents": lambda: _iwae(GlobalAndLocal(global_latent=False)),
            "TraceEnum, local enumerated site": lambda: _local_enum()}


def _local_enum():
    class LocalChoice(GlobalChoice):
        @pyro_method
        def model(self, x):
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"})
                pyro.sample("x", dist.Normal(self.shift[z], 1.0), obs=x)

    m = LocalChoice()
    return SVIObjective(m.model, m.guide, TraceEnum_ELBO(max_plate_nesting=1))


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_an_accepted_run_trains_bit_for_bit_as_without_the_probe(case, monkeypatch):
    """The probe of an accepted run (IWAE or TraceEnum without a global site, accumulate=2) uses up none of the
    caller's random numbers and changes no result: losses, parameters and the RNG state after the run are those of
    the same run with the probe switched off."""
    data = regression(32) if case.startswith("IWAE") else torch.randn(16, generator=torch.Generator().manual_seed(0))

    def run():
        torch.manual_seed(3)
        objective = ACCEPTED[case]()
        result = fit(objective, data, epochs=2, batch_size=8, accumulate=2, progress=False,
                     optim=functools.partial(torch.optim.SGD, lr=0.01))
        return ([p.detach().clone() for p in objective.module.parameters()], result.history.loss["elbo"],
                torch.get_rng_state())

    probed = run()
    monkeypatch.setattr(svi_module, "refuse_unsplit_estimates", lambda *args, **kwargs: None)
    plain = run()
    assert all(torch.equal(a, b) for a, b in zip(probed[0], plain[0]))
    assert probed[1] == plain[1] and torch.equal(probed[2], plain[2])


def test_the_probe_uses_up_no_random_numbers():
    objective = _iwae(GlobalAndLocal(global_latent=False))
    state = torch.get_rng_state()
    refuse_unsplit_estimates(objective, regression(8), accumulate=2, world_size=1, name="SVIObjective")
    assert torch.equal(torch.get_rng_state(), state)


class FixedNormal(dist.Normal):
    """A normal whose draws are ``loc + scale * eps`` for ``eps`` given (``[B, K]``): TMC's ``K`` draws of each row
    (and one draw, ``eps[:, 0]``, for a plain trace), held fixed so that the estimate is a function of the batch."""

    def __init__(self, loc, scale, eps):
        super().__init__(loc, scale)
        self.eps = eps

    def rsample(self, sample_shape=torch.Size()):
        if tuple(sample_shape) == (K,):
            return self.loc + self.scale * self.eps.T
        return self.loc + self.scale * self.eps[:, 0]

    def expand(self, batch_shape, _instance=None):
        return FixedNormal(self.loc.expand(batch_shape), self.scale.expand(batch_shape), self.eps)


class LocalTMC(PyroModule):
    """``z_b ~ N(mu, 1)``, ``x_b ~ N(z_b, 1)`` in the plate; the guide ``N(a x_b + c, 1)``, ``K`` draws per row."""

    def __init__(self):
        super().__init__()
        self.a, self.c, self.mu = (PyroParam(torch.tensor(v)) for v in (0.3, 0.1, 0.5))

    @pyro_method
    def model(self, x, eps):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(self.mu, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    @pyro_method
    def guide(self, x, eps):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", FixedNormal(self.a * x + self.c, torch.ones_like(x), eps),
                        infer={"enumerate": "parallel", "num_samples": K})


def test_tmc_without_a_global_latent_splits_over_micro_batches():
    """TraceTMC_ELBO takes one log-mean-exp over the K draws per row (not one weight for the batch): with the draws
    held fixed, the loss of a batch is the sum of its halves' and fit's update under accumulate=2 and 4 is
    accumulate=1's (to float rounding); the draws matter (another eps, another loss)."""
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(8, generator=g) + 1.0, torch.randn(8, K, generator=g)
    m, elbo = LocalTMC(), TraceTMC_ELBO(max_plate_nesting=1)
    whole = elbo.differentiable_loss(m.model, m.guide, x, eps)
    halves = sum(elbo.differentiable_loss(m.model, m.guide, x[i:i + 4], eps[i:i + 4]) for i in (0, 4))
    assert torch.allclose(whole, halves, rtol=1e-6, atol=0)
    assert not torch.allclose(whole, elbo.differentiable_loss(m.model, m.guide, x, eps.flip(1).roll(1, 0)))

    def run(accumulate):
        m = LocalTMC()
        fit(SVIObjective(m.model, m.guide, TraceTMC_ELBO(max_plate_nesting=1)), (x, eps), epochs=2, batch_size=8,
            accumulate=accumulate, optim=functools.partial(torch.optim.SGD, lr=0.1), progress=False, seed=0)
        return torch.stack([m.a, m.c, m.mu]).detach()

    one = run(1)
    assert not torch.equal(one, torch.tensor([0.3, 0.1, 0.5]))
    for accumulate in (2, 4):
        torch.testing.assert_close(run(accumulate), one, rtol=1e-6, atol=1e-7)


def test_several_ranks_are_refused_without_accumulate():
    """On R = 2 ranks a batch of 8 rows is a share 8 / (8 R) = 0.5 of the update, with accumulate=1."""
    with pytest.raises(ConfigError, match=r"the latent site\(s\) \['w'\].*share 0\.5"):
        refuse_unsplit_estimates(_iwae(), regression(8), accumulate=1, world_size=2, name="SVIObjective")
    refuse_unsplit_estimates(_iwae(), regression(8), accumulate=1, world_size=1, name="SVIObjective")


def test_enumerated_sites_as_pyro_enumerates_them():
    """A model's enumerated site that the guide samples is replayed, not enumerated; a guide's is enumerated; one
    added inside weighted_per_update is the model's own (not refused, as at the step)."""
    from hybridpgm.infer.split_refusal import enumerated_sites
    from hybridpgm.train.update_scope import weighted_per_update

    def model(x, weighted=False, with_d=True):
        with weighted_per_update() if weighted else contextlib.nullcontext():
            c = pyro.sample("c", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"})
        d = pyro.sample("d", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"}) if with_d else 0
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(c + d, 1.0), obs=x)

    def guide(x):
        pyro.sample("d", dist.Categorical(torch.ones(2) / 2))
        pyro.sample("e", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"})

    x = torch.zeros(4)
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert enumerated_sites(guide_trace, model_trace) == ("e", "c")

    class Weighted(torch.nn.Module):
        def model(self, x):
            model(x, weighted=True, with_d=False)

        def guide(self, x):
            pass

    holder = Weighted()
    objective = SVIObjective(holder.model, holder.guide, TraceEnum_ELBO(max_plate_nesting=1), module=holder)
    refuse_unsplit_estimates(objective, torch.zeros(8), accumulate=2, world_size=1, name="SVIObjective")  # no c
    unweighted = SVIObjective(lambda x: model(x, with_d=False), holder.guide, TraceEnum_ELBO(max_plate_nesting=1),
                              module=holder)
    with pytest.raises(ConfigError, match="the enumerated site 'c'"):
        refuse_unsplit_estimates(unweighted, torch.zeros(8), accumulate=2, world_size=1, name="SVIObjective")
