"""BayesNet Dirichlet priors (``Table(prior=alpha)``) under fit's gradient accumulation.

Without ``num_data`` the model adds the whole :math:`\\log \\mathrm{Dir}(\\theta; \\alpha)` per call when the batch
stands for the whole data set.  fit with ``accumulate = M`` calls it once per micro-batch: the prior once counted
``M`` times per optimizer step (``p(a=F)`` 0.4773 -> 0.5893 on the data below), then was refused with a
ConfigError.  Now each micro-batch adds its share :math:`m_i / B` of it
(:func:`~hybridpgm.train.update_scope.micro_batch_share`), so accumulation trains exactly as one batch does, with
``num_data`` or without, for ``SVIObjective``'s ``per_example`` True and False.
"""

import functools

import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

import hybridpgm
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import SVIObjective
from hybridpgm.train.update_scope import micro_batch
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

ALPHA = torch.tensor([5.0, 1.0])
#: the MAP estimate of p(a) with alpha = (5, 1) on 17 zeros of 40: (17 + 4) / (40 + 4)
MAP_A = torch.tensor([21 / 44, 23 / 44], dtype=torch.float64)


def _data() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 2, (40, 2)).double()  # 17 of 40 zeros in column a


def _bn(prior=ALPHA) -> BayesNet:
    bn = BayesNet()
    bn.add("a", cpd.Table([0.5, 0.5], prior=prior), states=["F", "T"])
    bn.add("b", cpd.Table([[0.5, 0.5], [0.5, 0.5]], ["a"]))
    return bn.double()


def _tables(bn: BayesNet) -> torch.Tensor:
    """``p(a)`` and ``p(b | a)``, flattened."""
    return torch.cat([bn.posterior("a", {}).detach(), bn.cpds["b"].log_table({}).detach().exp().flatten()])


def _train(bn: BayesNet, accumulate: int, epochs: int = 40, num_particles: int = 1, per_example: bool = True,
           **model_kwargs) -> torch.Tensor:
    """The tables after ``fit`` on the 40 rows in one batch of 40, split into ``accumulate`` micro-batches.

    ``per_example=True`` (a mean over the rows) trains with Adam.  ``per_example=False`` (a sum over the rows)
    trains with SGD at a learning rate ``accumulate`` times larger: fit weights micro-batch ``i`` of ``m_i`` rows by
    ``m_i / B``, so that summed loss, split into ``M`` equal micro-batches, is ``1 / M`` times the unsplit one
    (its data term and, exactly, its prior), which SGD's ``M`` times larger rate undoes (``M`` a power of 2:
    without rounding)."""
    elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=num_particles)
    objective = SVIObjective(bn.model, bn.guide, elbo, per_example=per_example, **model_kwargs)
    optim = (functools.partial(torch.optim.Adam, lr=0.05) if per_example
             else functools.partial(torch.optim.SGD, lr=0.002 * accumulate))
    hybridpgm.fit(objective, _data(), epochs=epochs, batch_size=40, accumulate=accumulate, progress=False, seed=0,
                  optim=optim)
    return _tables(bn)


@pytest.mark.parametrize("per_example", [True, False])
def test_prior_without_num_data_is_exact_under_accumulation_as_with_num_data(per_example):
    """accumulate = 1, 2, 4 find the same tables (float64, to 1e-10), with num_data=40 and without it (the batch
    being the whole data set, the two are one objective).  Before, accumulate > 1 without num_data raised a
    ConfigError (and before that counted the prior once per micro-batch: p(a=F) 0.5893 instead of 0.4773)."""
    reference = _train(_bn(), accumulate=1, per_example=per_example, num_data=40)
    for accumulate in (1, 2, 4):
        for kwargs in ({}, {"num_data": 40}):
            tables = _train(_bn(), accumulate=accumulate, per_example=per_example, **kwargs)
            assert tables.dtype == torch.float64
            torch.testing.assert_close(tables, reference, rtol=1e-10, atol=1e-10,
                                       msg=f"accumulate={accumulate} {kwargs}")
    assert not torch.allclose(reference[:2], torch.tensor([0.5, 0.5], dtype=torch.float64), atol=1e-2)  # trained


def test_prior_without_num_data_in_unequal_micro_batches_reaches_the_map_estimate():
    """40 rows in 3 micro-batches (14, 13, 13 rows: shares that are not powers of 2) train as one batch of 40,
    and long enough to reach the MAP estimate (n_a0 + alpha_0 - 1) / (n + sum(alpha) - K) = 21 / 44."""
    one = _train(_bn(), accumulate=1, epochs=300)
    three = _train(_bn(), accumulate=3, epochs=300)
    torch.testing.assert_close(three, one, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(three[:2], MAP_A, rtol=0, atol=1e-4)


def test_prior_without_num_data_with_several_particles_per_micro_batch():
    """Several ELBO particles (several model calls on one micro-batch) each weigh the prior by the micro-batch's
    share: accumulate=2 still equals accumulate=1."""
    one = _train(_bn(), accumulate=1, epochs=10, num_particles=2)
    two = _train(_bn(), accumulate=2, epochs=10, num_particles=2)
    torch.testing.assert_close(two, one, rtol=1e-10, atol=1e-10)


def test_accumulation_without_num_data_is_exact_for_a_network_without_priors():
    one = _train(_bn(prior=None), accumulate=1)
    four = _train(_bn(prior=None), accumulate=4)
    torch.testing.assert_close(four, one, rtol=1e-10, atol=1e-10)


def test_plain_svi_outside_fit_adds_the_whole_prior_once_per_call():
    """Outside fit (no micro-batch share) nothing changes: weight 1 without num_data, B / N with it, call after
    call."""
    bn, data = _bn(), _data()
    for _ in range(2):  # two calls on different batches, as two SVI steps would make
        for rows in (data[:10], data[10:]):
            trace = poutine.trace(bn.model).get_trace(rows)
            torch.testing.assert_close(trace.nodes["a_prior"]["fn"].log_factor, bn.cpds["a"].log_prior())
    trace = poutine.trace(bn.model).get_trace(data[:10], num_data=40)
    torch.testing.assert_close(trace.nodes["a_prior"]["fn"].log_factor, bn.cpds["a"].log_prior() / 4)


def test_a_micro_batch_weighs_the_prior_by_its_share_without_num_data_only():
    """Inside a micro-batch of share 1/4 the prior weighs 1/4 without num_data; with num_data it weighs
    rows / num_data whatever the share."""
    bn, data = _bn(), _data()
    with micro_batch(0.25):
        trace = poutine.trace(bn.model).get_trace(data[:10])
        torch.testing.assert_close(trace.nodes["a_prior"]["fn"].log_factor, bn.cpds["a"].log_prior() * 0.25)
        trace = poutine.trace(bn.model).get_trace(data[:10], num_data=20)
        torch.testing.assert_close(trace.nodes["a_prior"]["fn"].log_factor, bn.cpds["a"].log_prior() / 2)


def _gradients_of_an_update(bn: BayesNet, rows: torch.Tensor, accumulate: int, context, monkeypatch=None,
                            other_bucket=None) -> list:
    """The gradients ``Player.update`` leaves (after its rank average) for one step on ``rows``, with SGD at
    learning rate 0 so the parameters stay; a 2-rank ``context`` reduces with ``other_bucket`` (the other rank's
    gradient bucket), captured into ``other_bucket`` instead when that is an empty list."""
    from hybridpgm.train.micro_batches import split_batch
    from hybridpgm.train.player_step import Player

    if other_bucket is not None:
        def fake_all_reduce(flat):
            if other_bucket:
                flat += other_bucket[0]
            else:
                other_bucket.append(flat.clone())
        monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
    objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1))
    params = objective.players()["elbo"]
    player = Player("elbo", params, torch.optim.SGD(params, lr=0.0))
    player.update(objective, split_batch(rows, accumulate), step=0, context=context, precision=None,
                  device=torch.device("cpu"), clip_grad_norm=None)
    return [p.grad.clone() for p in params]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_ranks_without_num_data_weigh_the_prior_as_one_process_of_their_union_batch(monkeypatch, accumulate):
    """fit on 2 ranks of 20 rows each (gradients averaged over the ranks) takes the step of one process on the 40
    rows: the micro-batch share is m_i / (B R), so the prior counts once per update, not once per rank."""
    from hybridpgm.train.distributed import DistributedContext

    data, bn = _data(), _bn()
    single = _gradients_of_an_update(bn, data, accumulate, DistributedContext())
    bucket: list = []
    _gradients_of_an_update(bn, data[20:], accumulate, DistributedContext(rank=1, world_size=2), monkeypatch,
                            bucket)  # rank 1: its bucket captured
    ranks = _gradients_of_an_update(bn, data[:20], accumulate, DistributedContext(rank=0, world_size=2),
                                    monkeypatch, bucket)  # rank 0: its bucket plus rank 1's, halved
    for g_ranks, g_single in zip(ranks, single):
        torch.testing.assert_close(g_ranks, g_single, rtol=1e-12, atol=1e-12)
    assert any(g.abs().max() > 1e-3 for g in single)
