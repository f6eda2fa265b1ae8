"""What VIMCO, RWS and wake-sleep (hybridpgm/infer/particle_elbo.py, rws.py, vimco.py, wake_sleep.py) refuse, and
how they say it: a sequential plate inside the data plate named as the data plate, a plate nesting that grows after
the first batch (or a value broadcast against the particle dim), stochastic control flow under vectorized particles,
sites of different scales."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm import IWAE, fit
from hybridpgm.errors import ObjectiveError
from hybridpgm.infer import RWS, VIMCO, SVIObjective
from hybridpgm.infer.direct_trace_elbo import DirectTrace_ELBO
from hybridpgm.infer.particle_elbo import ParticleELBO
from hybridpgm.infer.rws import ReweightedWakeSleepELBO
from hybridpgm.infer.vimco import VIMCO_ELBO
from hybridpgm.infer.wake_sleep import WakeSleepELBO
from tests.infer.test_iwae_plates import _growing_guide, _growing_model  # the model whose nesting grows

ELBOS = {"vimco": lambda **kw: VIMCO_ELBO(3, **kw), "rws": lambda **kw: ReweightedWakeSleepELBO(3, **kw),
         "particle": lambda **kw: ParticleELBO(3, **kw)}


@pytest.mark.parametrize("name", list(ELBOS))
def test_a_sequential_plate_inside_the_vectorized_data_plate_named_as_the_data_plate_is_refused(name):
    """Its iterations index time steps within each data point.  HEAD said "the data plate 'steps' is sequential
    ... write the data plate as a with-block"; a sequential data plate is weighed per iteration now
    (tests/infer/test_particle_sequential.py), and the plate to name here is the vectorized one."""
    x = torch.randn(2, 4)

    def model(x):
        with pyro.plate("data", 4):
            for t in pyro.plate("steps", 2):
                z = pyro.sample(f"z{t}", dist.Normal(0.0, 1.0))
                pyro.sample(f"x{t}", dist.Normal(z, 1.0), obs=x[t])

    def guide(x):
        with pyro.plate("data", 4):
            for t in pyro.plate("steps", 2):
                pyro.sample(f"z{t}", dist.Normal(0.0, 1.0))

    with pytest.raises(ObjectiveError, match=r"the data plate 'steps' is a sequential plate \(for i in pyro.plate"
                                             r"\(...\)\) inside a vectorized plate .*name the vectorized data plate"):
        ELBOS[name](plate_name="steps").loss(model, guide, x)
    ELBOS[name](plate_name="data").loss(model, guide, x)  # the time steps are summed within each data point


@pytest.mark.parametrize("validation", [False, True])
@pytest.mark.parametrize("name", list(ELBOS))
def test_a_plate_nesting_that_grows_after_the_first_batch_is_refused_naming_the_site(name, validation):
    """Before, with Pyro's validation off the second batch's value was wrong (17.34 against 14.49: the feature
    plate went left of the particles), with it on Pyro's "Try increasing max_plate_nesting to at least 3"
    counted the particle plate (2 is the fix)."""
    x1, x2 = torch.randn(3), torch.randn(3, 3)
    with pyro.validation_enabled(validation):
        elbo = ELBOS[name]()
        elbo.loss(_growing_model, _growing_guide, x1)
        with pytest.raises(ObjectiveError, match=r"site 'x' .*max_plate_nesting=1 .*pass max_plate_nesting= .*"
                                                 r"at least 2"):
            elbo.loss(_growing_model, _growing_guide, x2)
        pyro.set_rng_seed(0)
        given = ELBOS[name](max_plate_nesting=2).loss(_growing_model, _growing_guide, x2)
        pyro.set_rng_seed(0)
        assert given == ELBOS[name]().loss(_growing_model, _growing_guide, x2)  # guessed on this batch: 2


_P = torch.nn.Parameter(torch.tensor(0.0))


def _flow_model(x):
    """Stochastic control flow: the number of sites is a sampled value."""
    with pyro.plate("data", 1):
        n = pyro.sample("n", dist.Geometric(0.5))
        s = 0.0
        for i in range(int(n)):
            s = s + pyro.sample(f"z{i}", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(s, 1.0), obs=x)


def _flow_guide(x):
    with pyro.plate("data", 1):
        n = pyro.sample("n", dist.Geometric(torch.sigmoid(_P)))
        for i in range(int(n)):
            pyro.sample(f"z{i}", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize("make", [lambda: VIMCO(_flow_model, _flow_guide, 5, module=torch.nn.Module(),
                                                model_parameters=[], guide_parameters=[_P]),
                                  lambda: RWS(_flow_model, _flow_guide, 5, module=torch.nn.Module(),
                                              model_parameters=[], guide_parameters=[_P])])
def test_stochastic_control_flow_is_refused_explaining_the_vectorized_particles(make):
    """Before: torch's raw "only one element tensors can be converted to Python scalars"."""
    objective = make()
    pyro.set_rng_seed(0)
    with pytest.raises(ObjectiveError, match=r"once for all K=5 particles, vectorized .*stochastic control flow") \
            as raised:
        objective.loss(objective.schedule[0], torch.tensor([1.5]))
    assert isinstance(raised.value.__cause__, ValueError) and "only one element" in str(raised.value.__cause__)


def test_stochastic_control_flow_in_the_sleep_phase_is_refused_alike():
    pyro.set_rng_seed(0)
    with pytest.raises(ObjectiveError, match=r"WakeSleepELBO runs the model and the guide once for all K=2"):
        WakeSleepELBO(1, 2).sleep_loss(_flow_model, _flow_guide, torch.tensor([1.5]))


@pytest.mark.parametrize("name", ["vimco", "rws"])
def test_sites_of_different_scales_are_named(name):
    """Before: "sites carry different poutine scales [1.0, 2.0]", naming no site."""
    x = torch.randn(4, 3)

    def model(x):
        with pyro.plate("docs", 4, dim=-2):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.plate("words", 6, subsample=torch.arange(3), dim=-1):
                pyro.sample("w", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("docs", 4, dim=-2):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ObjectiveError, match=r"the model's sites carry different poutine scales \('z' 1, 'w' 2\)"):
        ELBOS[name]().loss(model, guide, x)

    def subsampled_guide(x):
        with pyro.plate("docs", 8, subsample=torch.arange(4), dim=-2):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    def plain_model(x):
        with pyro.plate("docs", 4, dim=-2):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.plate("words", 3, dim=-1):
                pyro.sample("w", dist.Normal(z, 1.0), obs=x)

    with pytest.raises(ObjectiveError, match=r"the model's site 'z' 1, the guide's site 'z' 2"):
        ELBOS[name]().loss(plain_model, subsampled_guide, x)


def test_stochastic_control_flow_is_pointed_to_what_fit_runs_one_particle_at_a_time():
    """HEAD advised TraceGraph_ELBO or ReweightedWakeSleep(vectorize_particles=False), both of which fit refuses
    (no differentiable_loss); the SVIObjective the message names now runs these programs in fit."""
    pyro.set_rng_seed(0)
    with pytest.raises(ObjectiveError, match=r"In hybridpgm.fit, SVIObjective\(model, guide\) with its default "
                                             r"DirectTrace_ELBO\(num_particles=K\) draws the particles one by one .*"
                                             r"under pyro.infer.SVI, pyro.infer.TraceGraph_ELBO"):
        ParticleELBO(5).loss(_flow_model, _flow_guide, torch.tensor([1.5]))
    module = torch.nn.Module()
    module.p = _P
    result = fit(SVIObjective(_flow_model, _flow_guide, DirectTrace_ELBO(num_particles=5), module=module),
                 torch.tensor([1.5, 0.2]), batch_size=1, max_steps=2, seed=0, progress=False)
    assert all(math.isfinite(v) for losses in result.history.loss.values() for v in losses)


def _broadcasting_model(x):
    """``z.unsqueeze(0)`` is right for one particle (``[1, B]`` against ``x [B]``) but puts a dim left of the
    particles' (``[1, K, B]``): a larger max_plate_nesting moves the particle dim and the program adds one again."""
    with pyro.plate("data", 4):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z.unsqueeze(0), 1.0), obs=x)


def _broadcasting_guide(x):
    with pyro.plate("data", 4):
        pyro.sample("z", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize("name", ["iwae"] + list(ELBOS))
def test_a_value_broadcast_against_the_particle_dim_is_named_as_a_cause_beside_a_deeper_plate(name):
    """HEAD said only "this batch entered a deeper plate" and advised max_plate_nesting=2, which refuses again."""
    elbo = IWAE(3) if name == "iwae" else ELBOS[name]()
    with pytest.raises(ObjectiveError, match=r"site 'x' has a log-density of shape \(1, 3, 4\), .*either this batch "
                                             r"entered a deeper plate.*, or the program reshaped a sampled value as "
                                             r"though it had no particle dim in front"):
        elbo.loss(_broadcasting_model, _broadcasting_guide, torch.tensor([0.3, -1.2, 0.8, 2.0]))
