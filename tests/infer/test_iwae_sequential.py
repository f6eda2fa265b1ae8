"""IWAE with sequential plates (hybridpgm/infer/iwae.py, particle_sequential.py): a sequential plate around the
vectorized data plate, a sequential data plate iterated twice in one call (or left with ``break`` and entered again),
loops left early, a plate object reused across calls and by both programs."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from hybridpgm import IWAE
from hybridpgm.errors import ObjectiveError
from hybridpgm.infer.iwae import importance_log_weights
from hybridpgm.infer.vimco import VIMCO_ELBO

N, T, K = 3, 2, 4
X = torch.tensor([[1.5, -0.3, 2.2], [0.4, -1.7, 0.9]])  # [T, N]
LOC = torch.tensor([[0.2, -0.1, 0.8], [0.0, -0.6, 0.3]])
# the guides are Deltas at LOC + EPS: the particles are the rows of EPS, so the weights have exact references
EPS = torch.randn(K, T, N, generator=torch.Generator().manual_seed(0))


def _exact_log_weights():
    """``[K, T, N]``: :math:`\\log p(x_{tn}, z_{tn}) - \\log q(z_{tn})` with :math:`q` a Delta."""
    z = LOC + EPS
    return dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(X)


def test_a_sequential_plate_around_the_vectorized_data_plate_is_summed_within_a_data_point():
    """HEAD took the outer ``time`` plate for the data plate: one weight per time step, shape (K, T) = (4, 2),
    loss 18.7334 against 17.2202 with one weight per data point (as before cf5a563)."""
    def model(eps):
        data = pyro.plate("data", N)
        for t in pyro.plate("time", T):
            with data:
                z = pyro.sample(f"z_{t}", dist.Normal(0.0, 1.0))
                pyro.sample(f"x_{t}", dist.Normal(z, 1.0), obs=X[t])

    def guide(eps):
        data = pyro.plate("data", N)
        for t in pyro.plate("time", T):
            with data:
                pyro.sample(f"z_{t}", dist.Delta(LOC[t] + eps[:, t]))

    log_w, scale = importance_log_weights(model, guide, EPS, num_particles=K, max_plate_nesting=1)
    expected = _exact_log_weights().sum(1)  # [K, N]: each data point's time steps summed
    assert log_w.shape == (K, N) and scale == 1.0
    torch.testing.assert_close(log_w, expected)
    bound = (torch.logsumexp(expected, 0) - math.log(K)).sum()
    assert IWAE(K, max_plate_nesting=1).loss(model, guide, EPS) == pytest.approx(-bound.item(), rel=1e-6)


def _model_two_loops(eps):
    data = pyro.plate("data", N)
    z = {}
    for i in data:
        z[i] = pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))
    for i in data:  # Pyro's counter goes on: iterations 4..6 of a size-3 plate
        pyro.sample(f"x_{i}", dist.Normal(z[i], 1.0), obs=X[0, i])


def _guide_one_loop(eps):
    for i in pyro.plate("data", N):
        pyro.sample(f"z_{i}", dist.Delta(LOC[0, i] + eps[:, 0, i]))


def test_a_sequential_data_plate_iterated_twice_is_refused_naming_the_plate():
    """HEAD made 6 groups of the size-3 plate (the latents apart from their observations): bound -9.1199 here,
    above the per-point bound -9.2715 of these particles: not the IWAE bound."""
    with pytest.raises(ObjectiveError, match=r"sequential plate 'data' \(size 3\) span 6 of its iterations"):
        importance_log_weights(_model_two_loops, _guide_one_loop, EPS, num_particles=K, max_plate_nesting=0)


def _programs_on(data_model, data_guide):
    def model(eps):
        for i in data_model:
            z = pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))
            pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=X[0, i])

    def guide(eps):
        for i in data_guide:
            pyro.sample(f"z_{i}", dist.Delta(LOC[0, i] + eps[:, 0, i]))

    return model, guide


def test_a_plate_object_reused_across_calls_and_by_both_programs_weighs_each_data_point():
    """HEAD grouped by the raw counter: with one plate object for both programs the guide's iterations (1..3) and
    the model's (4..6) were 6 data points of a size-3 plate; a second call counts on (7..12)."""
    expected = _exact_log_weights()[:, 0]  # [K, N]
    shared = pyro.plate("data", N)
    for programs in (_programs_on(shared, shared), _programs_on(pyro.plate("data", N), pyro.plate("data", N))):
        for _ in range(2):  # the second call's counters continue from the first's
            log_w, _ = importance_log_weights(*programs, EPS, num_particles=K, max_plate_nesting=0)
            torch.testing.assert_close(log_w, expected)


@pytest.mark.filterwarnings("ignore:Found plate statements in guide but not model")  # Pyro's, as the frames differ
def test_iterations_that_do_not_match_between_the_programs_are_refused_naming_the_plate():
    """The guide samples the data points' latents in reverse order: HEAD put the guide's ``z_2`` against the
    model's ``z_0`` in one weight."""
    def guide(eps):
        for i in pyro.plate("data", N):
            j = N - 1 - i
            pyro.sample(f"z_{j}", dist.Delta(LOC[0, j] + eps[:, 0, j]))

    model, _ = _programs_on(pyro.plate("data", N), None)
    with pytest.raises(ObjectiveError, match=r"iterations of the sequential plate 'data' do not match one to one"):
        importance_log_weights(model, guide, EPS, num_particles=K, max_plate_nesting=0)


def _model_two_loops_left_early(last):
    """The latents' loop left after data point 0, the observations' loop after data point ``last``: Pyro's counter
    goes on across the two loops (iterations 1, then 2..), so the counts stay within the plate's size."""
    def model(eps):
        data = pyro.plate("data", N)
        for i in data:
            z0 = pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))
            break
        for i in data:
            pyro.sample(f"x_{i}", dist.Normal(z0, 1.0), obs=X[0, i])
            if i == last:
                break
    return model


def _guide_left_early(eps):
    for i in pyro.plate("data", N):
        pyro.sample(f"z_{i}", dist.Delta(LOC[0, i] + eps[:, 0, i]))
        break


def _make(name):
    return IWAE(K, max_plate_nesting=0) if name == "iwae" else VIMCO_ELBO(K, max_plate_nesting=0)


@pytest.mark.parametrize("name", ["iwae", "vimco"])
def test_a_loop_left_and_entered_again_is_refused_naming_the_plate_and_the_counts(name):
    """HEAD weighed ``z_0`` and ``x_0`` apart (iterations 1 and 2 of the size-3 plate, within its span): bound
    -2.6183, above the per-point bound -2.7729 of these particles, silently."""
    with pytest.raises(ObjectiveError, match=rf"{name.upper()}\w*: 2 of the 3 iterations of the sequential data "
                                             r"plate 'data' hold sites \(the model's 2, the guide's 1\)"):
        _make(name).loss(_model_two_loops_left_early(0), _guide_left_early, EPS)


@pytest.mark.parametrize("name", ["iwae", "vimco"])
def test_a_second_loop_as_long_as_the_plate_is_refused_by_its_iteration_without_data(name):
    """1 + 2 iterations fill the size-3 plate; HEAD made 3 weights, ``z_0`` apart from ``x_0`` (bound -4.0691)."""
    with pytest.raises(ObjectiveError, match=r"iteration\(s\) \[0\] of the sequential data plate 'data' \(size 3\) "
                                             r"hold no observed site of the model"):
        _make(name).loss(_model_two_loops_left_early(1), _guide_left_early, EPS)


def test_programs_that_break_early_under_subsampling_are_refused_naming_the_counts():
    """Both programs leave the loop after 2 of the 3 data points of the batch: HEAD scaled 2 data points by the
    plate's N / B = 6 / 3 (bound -10.2214), an estimate of 2/3 of the data set's bound."""
    idx = torch.tensor([0, 1, 2])

    def model(eps):
        for i in pyro.plate("data", 6, subsample=idx):
            if i == 2:
                break
            z = pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))
            pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=X[0, i])

    def guide(eps):
        for i in pyro.plate("data", 6, subsample=idx):
            if i == 2:
                break
            pyro.sample(f"z_{i}", dist.Delta(LOC[0, i] + eps[:, 0, i]))

    with pytest.raises(ObjectiveError, match=r"IWAE: 2 of the 3 iterations of the sequential data plate 'data' hold "
                                             r"sites \(the model's 2, the guide's 2\)"):
        importance_log_weights(model, guide, EPS, num_particles=K, max_plate_nesting=0)


def _model_with_observation(observe):
    """A model whose iteration ``i`` samples ``z_i`` and calls ``observe(i, z_i)``."""
    def model(eps):
        for i in pyro.plate("data", N):
            observe(i, pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0)))
    return model


def _guide_every_point(eps):
    for i in pyro.plate("data", N):
        pyro.sample(f"z_{i}", dist.Delta(LOC[0, i] + eps[:, i]))


@pytest.mark.parametrize("name", ["iwae", "vimco"])
def test_a_missing_observation_masked_weighs_the_latents_alone_and_one_skipped_or_shifted_is_refused(name):
    """Review D: a rule that weighed an iteration without an observed site where every iteration samples a latent let
    through observations shifted by one iteration (``x_{i-1}`` observed in iteration ``i``), whose "bound" rose above
    log p(x) (-3.81 at K=100 against -6.34): from the counters a shifted and a skipped observation look the same, so
    both are refused, and a missing observation is masked: equal to the vectorized program with it masked."""
    eps = torch.randn(K, N, generator=torch.Generator().manual_seed(3))

    def masked(i, z):
        with poutine.mask(mask=i != 1):
            pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=X[0, i])

    def vectorized_model(eps):
        with pyro.plate("data", N):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0).mask(torch.arange(N) != 1), obs=X[0])

    def vectorized_guide(eps):
        with pyro.plate("data", N):
            pyro.sample("z", dist.Delta(LOC[0] + eps))

    vectorized = IWAE(K, max_plate_nesting=1) if name == "iwae" else VIMCO_ELBO(K, max_plate_nesting=1)
    # the same particles (Delta guides), the sums taken in another order: float32 rounding of a few terms
    torch.testing.assert_close(_make(name).loss(_model_with_observation(masked), _guide_every_point, eps),
                               vectorized.loss(vectorized_model, vectorized_guide, eps), rtol=1e-6, atol=0.0)

    def skipped(i, z):
        if i != 1:
            pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=X[0, i])

    def shifted(i, z):
        if i > 0:
            pyro.sample(f"x_{i - 1}", dist.Normal(0.0, 1.0), obs=X[0, i - 1])

    for observe, empty in ((skipped, 1), (shifted, 0)):
        with pytest.raises(ObjectiveError, match=rf"iteration\(s\) \[{empty}\] of the sequential data plate 'data' "
                                                 r"\(size 3\) hold no observed site of the model.*mask a missing "
                                                 r"observation rather than skip it"):
            _make(name).loss(_model_with_observation(observe), _guide_every_point, eps)
