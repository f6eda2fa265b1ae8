"""NVIL on a subsampled data plate (``num_data=N`` on batches of ``B < N`` rows): the learning signals, the
baselines and the running statistics are per datapoint, the plate's ``N / B`` multiplies the score-function
term afterwards (checked against exact enumeration of a tiny SBN)."""

import functools

import pyro
import pytest
import torch

import hybridpgm
from hybridpgm.infer import NVIL
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import flat_grads, mc_check, single_thread  # noqa: F401

N = 8


@pytest.fixture(autouse=True)
def float64():
    """Everything in float64 (the model, the enumeration and the data), so that exact identities hold to 1e-12."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def _sbn(seed=0):
    return bf.random_sbn([3, 2], seed, scale=0.5), bf.binary(N, 3, seed)


@pytest.mark.parametrize("batch_size", [8, 4, 2])
def test_expected_gradient_is_the_full_data_gradient_at_every_batch_size(batch_size):
    """Statistics warmed up on batches of B of the N = 8 rows (``num_data=8``), then frozen: the expected
    gradient of a pass over the N / B batches, divided by N / B, is the exact full-data ELBO gradient for
    theta *and* phi at B = 8, 4 and 2.  The per-datapoint signal's variance v is below 1 here, so
    max(1, sqrt(v)) = 1 at every B; before, the statistics were fitted to the N / B-scaled signal, v grew as
    (N / B)^2 and phi's expected gradient shrank with B."""
    sbn, x = _sbn()
    params = list(sbn.parameters())
    exact = flat_grads(-bf.elbo(sbn, x).sum(), params)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, num_particles=100, model_kwargs={"num_data": N},
                     per_example=False)
    batches = x.split(batch_size)
    torch.manual_seed(0)
    with torch.no_grad():  # each loss call folds the batch's signals into the running statistics
        for _ in range(20):
            for batch in batches:
                objective.loss("elbo", batch)
    objective.baselines.eval()  # frozen: the estimate below is unbiased for the frozen scale
    pyro.set_rng_seed(1)
    estimates = torch.stack([sum(flat_grads(objective.loss("elbo", b), params) for b in batches) / len(batches)
                             for _ in range(20)])
    mc_check(estimates, exact)
    assert objective.baselines.var.item() < 0.7  # per datapoint: max(1, sqrt(v)) = 1 at every B


def _without_and_with_num_data(sbn, seed):
    """Two NVIL objectives of ``sbn``, without ``num_data`` and with ``num_data=N``, whose baselines start from
    the same networks (drawn after seeding ``seed``); yielded one at a time, as each run follows its creation."""
    for kwargs in ({}, {"num_data": N}):
        objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, model_kwargs=kwargs, per_example=False)
        torch.manual_seed(seed)
        objective.baselines.load_state_dict(NVIL(sbn.model, sbn.guide, hidden_dim=4).baselines.state_dict())
        yield objective


def test_num_data_scales_loss_and_gradients_and_leaves_signals_and_statistics_per_datapoint():
    """The same B = 4 rows and draws with ``num_data=8`` and without: the loss and every gradient (theta, phi
    and the baselines' psi) are exactly N / B = 2 times larger, and the running statistics are the same."""
    sbn, x = _sbn(1)
    runs = []
    for objective in _without_and_with_num_data(sbn, seed=3):
        params = list(objective.module.parameters())
        pyro.set_rng_seed(4)
        losses, grads = [], []
        for _ in range(3):  # the statistics move between calls: the later calls use the updated ones
            loss = objective.loss("elbo", x[:4])
            losses.append(loss.detach())
            grads.append(flat_grads(loss, params))
        runs.append((torch.stack(losses), torch.stack(grads), objective.baselines.mean.clone(),
                     objective.baselines.var.clone()))
    (loss1, grad1, mean1, var1), (loss2, grad2, mean2, var2) = runs
    torch.testing.assert_close(loss2, 2 * loss1, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(grad2, 2 * grad1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(mean2, mean1, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(var2, var1, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("steps", [1, 3])
def test_fit_with_accumulate_equals_one_micro_batch_on_a_subsampled_plate(steps):
    """fit(batch_size=8, accumulate=2) on 8 of num_data=16 rows gives the running statistics and parameters
    of accumulate=1 (one layer: both draw the same samples), as docs/sbn.md promises; before, each
    micro-batch of 4 rows scaled its signals by 16/4 rather than 16/8 and the encoder moved 11% off."""
    results = []
    for accumulate in (1, 2):
        sbn, x = _sbn(2)
        objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, model_kwargs={"num_data": 2 * N}, per_example=False)
        hybridpgm.fit(objective, x, batch_size=N, accumulate=accumulate, max_steps=steps, seed=0, progress=False,
                      shuffle=False, device="cpu", optim=functools.partial(torch.optim.SGD, lr=1e-2))
        results.append({k: v.detach().clone() for k, v in objective.module.state_dict().items()})
    assert not torch.equal(results[0]["baselines.mean"], torch.zeros(1, dtype=torch.float64))
    for key, value in results[0].items():
        torch.testing.assert_close(results[1][key], value, rtol=0.0, atol=1e-12, msg=key)


def test_a_full_batch_run_is_bit_identical_with_and_without_a_plate_of_its_size():
    """Guard (passes before and after): num_data equal to the batch size (scale 1) and no num_data give the
    same loss, gradients and statistics bit for bit: the per-datapoint path does no arithmetic at scale 1."""
    sbn, x = _sbn(3)
    runs = []
    for objective in _without_and_with_num_data(sbn, seed=0):
        pyro.set_rng_seed(5)
        loss = objective.loss("elbo", x)
        runs.append((loss.detach(), flat_grads(loss, list(objective.module.parameters())),
                     objective.baselines.var.clone()))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


class _SiteScale(pyro.poutine.messenger.Messenger):
    """Multiplies the scale of the named sites (a KL weight, or a per-row weight tensor), as users anneal."""

    def __init__(self, names, weight):
        super().__init__()
        self.names, self.weight = names, weight

    def _process_message(self, msg):
        if msg["name"] in self.names:
            msg["scale"] = self.weight * msg["scale"]


def _weighted(fn, weight):
    def program(*args, **kwargs):
        with _SiteScale({"h1"}, weight):
            return fn(*args, **kwargs)
    return program


@pytest.mark.parametrize("weight", [0.1, "rows with a zero"])
def test_a_weight_of_the_users_own_stays_in_the_signal_and_only_the_plate_factor_is_divided_out(weight):
    """A KL weight (``poutine.scale`` on the latent site of the model and the guide) is part of the cost the
    baselines track, as before: only the subsampled plate's N / B is divided out.  Dividing by the whole scale
    made the statistics track cost / beta (v 120 times larger at beta = 0.1, the phi step 10 times smaller) and a
    per-row weight of 0 a NaN (0 / 0) in the loss and the statistics for good."""
    sbn, x = _sbn()
    w = 0.1 if weight == 0.1 else torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0])
    plain = NVIL(sbn.model, sbn.guide, hidden_dim=4, num_particles=10, per_example=False)
    weighted = NVIL(_weighted(sbn.model, w), _weighted(sbn.guide, w), module=sbn, hidden_dim=4, num_particles=10,
                    per_example=False, sites=plain.elbo.baselines.sites,
                    model_parameters=plain.theta, guide_parameters=plain.phi)
    weighted.baselines.load_state_dict(plain.baselines.state_dict())
    with pyro.validation_enabled(False):  # Pyro refuses a zero scale with validation on
        for objective in (plain, weighted):
            pyro.set_rng_seed(0)
            with torch.no_grad():
                losses = [objective.loss("elbo", x) for _ in range(5)]
            assert all(torch.isfinite(loss) for loss in losses)
    mean_plain, _ = plain.baselines.statistics("h1")
    mean_weighted, var_weighted = weighted.baselines.statistics("h1")
    assert torch.isfinite(mean_weighted) and torch.isfinite(var_weighted)
    if weight == 0.1:  # the cost scaled by 0.1 where the KL weight applies, not divided by it: smaller, not 10x
        assert mean_weighted.abs() < mean_plain.abs()
