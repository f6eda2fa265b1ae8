"""The running statistics of NVIL's baselines per update of fit (hybridpgm/infer/nvil_baselines.py): micro-batches
and ranks pool their signals, a resumed run ends as an uninterrupted one, an older pickle still trains."""

import math

import pytest
import torch

import hybridpgm  # noqa: F401
from hybridpgm.infer import NVIL, NVIL_ELBO, NVILBaselines
from tests.generative.sbn_brute_force import (binary, deterministic_guide_sbn, flat_grads, mc_check,  # noqa: F401
                                             random_sbn, single_thread)


def _micro_updates(baselines, elbo, x, cost, accumulate, steps=3):
    """Drive ``elbo._learning_signal`` as ``fit(accumulate=...)`` does: per step one update scope, the batch
    (``x [B, D]``, per-row ``cost [B]``, shifted each step) split into ``accumulate`` micro-batches.
    Returns the signals and baseline losses of every step and the buffers after each step."""
    from hybridpgm.train.update_scope import one_update

    signals, losses, buffers = [], [], []
    for step in range(steps):
        with one_update():
            parts = [elbo._learning_signal("h", {"infer": {"baseline": {"nn_baseline": baselines.nets["h"],
                                                                          "nn_baseline_input": xs}}}, cs + 3.0 * step)
                     for xs, cs in zip(x.chunk(accumulate), cost.chunk(accumulate))]
        signals.append(torch.cat([s for s, _ in parts]))
        losses.append(sum(l for _, l in parts).detach())
        buffers.append(torch.cat([baselines.mean, baselines.var]).clone())
    return signals, losses, buffers


@pytest.mark.parametrize("accumulate", [4, 16])
def test_micro_batches_of_one_fit_update_share_the_statistics_and_pool_them(accumulate):
    """Under fit's update scope, every micro-batch is centred and scaled with the statistics from before the
    update, and the buffers take one decay step per update with the pooled mean and variance: signals, the
    baselines' loss and the buffers equal those of one micro-batch (accumulate=1), in float64."""
    g = torch.Generator().manual_seed(0)
    x, cost = torch.randn(16, 3, generator=g, dtype=torch.float64), 5.0 * torch.randn(16, generator=g).double()
    runs = []
    for acc in (1, accumulate):
        torch.manual_seed(0)
        baselines = NVILBaselines(["h"], 3, hidden_dim=2, decay=0.6).double()
        with torch.no_grad():
            baselines.mean.fill_(0.5), baselines.var.fill_(4.0)  # the scale max(1, sqrt(v)) = 2 is in play
        runs.append(_micro_updates(baselines, NVIL_ELBO(baselines), x, cost, acc))
    for whole, micro in zip(*runs):
        for a, b in zip(whole, micro):
            torch.testing.assert_close(b, a, rtol=0.0, atol=1e-12)
    assert (runs[0][2][-1][1] > 1.0).all()  # the variance stays above 1: scaling matters at every step


def test_fit_with_accumulate_gives_the_buffers_and_parameters_of_one_micro_batch():
    """fit(batch_size=16) with accumulate 1, 4 and 16 (one-row micro-batches) leaves the same running
    statistics and parameters (float64).  The guide is made deterministic (encoder logits +100) so that
    all runs see the same samples whatever order they draw them in; the baselines' squared-error gradient
    still depends on the centring constant of each micro-batch."""
    import functools

    results = []
    for accumulate in (1, 4, 16):
        sbn = deterministic_guide_sbn()
        torch.manual_seed(0)
        objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, decay=0.5)
        hybridpgm.fit(objective, binary(48, 6, 5).double(), epochs=1, batch_size=16, accumulate=accumulate,
                      progress=False, device="cpu", seed=0, optim=functools.partial(torch.optim.SGD, lr=0.05))
        results.append({k: v.detach().clone() for k, v in objective.module.state_dict().items()})
    assert not torch.equal(results[0]["baselines.mean"], torch.zeros(2, dtype=torch.float64))
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for key, value in results[0].items():
            torch.testing.assert_close(other[key], value, rtol=0.0, atol=1e-12, msg=key)


def test_a_resumed_accumulating_run_ends_with_the_state_of_an_uninterrupted_one(tmp_path):
    """The running statistics are checkpointed; the per-update pooling state is not needed across steps: a
    run with accumulate=4 stopped after 2 steps and resumed ends bitwise as the uninterrupted one."""
    def train(path, max_steps=None):
        sbn = random_sbn([6, 4, 3], 6, scale=1.0)
        torch.manual_seed(0)
        objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
        hybridpgm.fit(objective, binary(64, 6, 6), epochs=1, batch_size=16, accumulate=4, progress=False,
                      device="cpu", seed=0, checkpoint=path, max_steps=max_steps)
        return objective.module.state_dict()

    whole = train(tmp_path / "whole.pt")
    train(tmp_path / "cut.pt", max_steps=2)
    resumed = train(tmp_path / "cut.pt")
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not torch.equal(whole["baselines.var"], torch.ones(2))


def test_baselines_pickled_before_the_per_update_statistics_still_train():
    """An NVILBaselines saved whole (pickle) before it kept per-update statistics has none of those attributes;
    fit with accumulation still runs on it."""
    import io

    from hybridpgm.generative import SigmoidBeliefNet
    from hybridpgm.infer import SVIObjective

    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([6, 3])
    baselines = NVILBaselines(sbn.latent_sites, 6, hidden_dim=4)
    for name in ("_update", "_before", "_pooled"):
        baselines.__dict__.pop(name, None)  # as unpickled from a file written before they existed
    buffer = io.BytesIO()
    torch.save(baselines, buffer)
    buffer.seek(0)
    old = torch.load(buffer, weights_only=False)
    assert "_update" not in old.__dict__
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    result = hybridpgm.fit(SVIObjective(sbn.model, sbn.guide, NVIL_ELBO(old)), x, batch_size=8, accumulate=2,
                           progress=False, seed=0)
    assert result.steps == 1 and math.isfinite(result.history.loss["elbo"][0])


def test_ranks_pool_their_signals_whatever_order_they_visit_the_sites(monkeypatch):
    """Under fit on 2 ranks (collectives faked: the other rank's tables come from its own calls), one
    ``all_gather`` per ``update`` call pools both ranks' signals, even though the other rank visits the sites
    in the opposite order: the buffers after each update equal one process's on the union batch (float64,
    2 micro-batches per update, 2 updates).  Outside fit no collective runs."""
    from hybridpgm.train.update_scope import one_update

    g = torch.Generator().manual_seed(0)
    # signals[update][micro-batch][rank][site]: per-rank micro-batches of 3 and 5 rows with different scales
    signals = [[[[(2.0 + site) * torch.randn(3 + 2 * rank, generator=g, dtype=torch.float64) + 4.0 * rank
                  for site in range(2)] for rank in range(2)] for _ in range(2)] for _ in range(2)]

    def fresh():
        torch.manual_seed(0)
        return NVILBaselines(["h1", "h2"], 3, hidden_dim=2, decay=0.6).double()

    single, expected = fresh(), []
    for update in signals:
        with one_update():
            for micro in update:
                for site in (0, 1):
                    single.update(f"h{site + 1}", torch.cat([micro[0][site], micro[1][site]]))
        expected.append(torch.cat([single.mean, single.var]).clone())

    other = []  # the tables the other rank sends: it visits h2 before h1
    for update in signals:
        for micro in update:
            for site in (1, 0):
                s = micro[1][site]
                table = torch.zeros(2, 3, dtype=torch.float64)
                table[site] = torch.stack([torch.tensor(float(s.numel()), dtype=torch.float64), s.mean(),
                                           (s - s.mean()).pow(2).sum()])
                other.append(table)
    sent = iter(other)

    def fake_all_gather(tables, local):
        assert len(tables) == 2 and local.shape == (2, 3)
        tables[0].copy_(local)
        tables[1].copy_(next(sent))

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_gather", fake_all_gather)
    ranks = fresh()
    for update, want in zip(signals, expected):
        with one_update():
            for micro in update:
                for site in (0, 1):
                    ranks.update(f"h{site + 1}", micro[0][site])
        torch.testing.assert_close(torch.cat([ranks.mean, ranks.var]), want, rtol=0.0, atol=1e-12)
    assert next(sent, None) is None  # one collective per call
    assert (expected[-1][2:] > 1.5).all()  # the variances moved far from their start
    ranks.update("h1", signals[0][0][0][0])  # outside fit: a step of its own, no collective (none is left)
