"""The update scope of fit (hybridpgm/train/update_scope.py): the update token and the micro-batch share."""

import functools

import torch

from hybridpgm import fit
from hybridpgm.train.update_scope import current_update, micro_batch, micro_batch_share, one_update


class Recorder:
    """A mean-squares loss that records, per call, the rows, the update token and the micro-batch share."""

    def __init__(self):
        self.module = torch.nn.Module()
        self.module.w = torch.nn.Parameter(torch.zeros(2))
        self.calls = []

    def players(self):
        return {"fit": [self.module.w]}

    def loss(self, player, batch):
        self.calls.append((batch.shape[0], current_update(), micro_batch_share()))
        return ((batch - self.module.w) ** 2).sum(-1).mean()


def test_outside_fit_there_is_no_update_and_no_share():
    assert current_update() is None
    assert micro_batch_share() is None


def test_micro_batch_sets_the_share_and_restores_it():
    with one_update() as token:
        assert current_update() is token
        with micro_batch(0.25):
            assert micro_batch_share() == 0.25
            with micro_batch(1.0):
                assert micro_batch_share() == 1.0
            assert micro_batch_share() == 0.25
        assert micro_batch_share() is None
    assert current_update() is None


def test_fit_gives_each_micro_batch_its_share_of_the_update():
    """40 rows in batches of 20, accumulate=3: micro-batches of 7, 7, 6 rows with shares m_i / 20 summing to 1;
    accumulate=1: share 1.  None again after fit."""
    data = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    for accumulate, rows in ((3, [7, 7, 6]), (1, [20])):
        objective = Recorder()
        fit(objective, data, epochs=1, batch_size=20, accumulate=accumulate, shuffle=False, progress=False, seed=0,
            optim=functools.partial(torch.optim.SGD, lr=0.1))
        assert [m for m, _, _ in objective.calls] == rows * 2
        assert [s for _, _, s in objective.calls] == [m / 20 for m in rows] * 2
        tokens = [t for _, t, _ in objective.calls]
        assert all(t is not None for t in tokens)
        assert len({id(t) for t in tokens[:len(rows)]}) == 1 and tokens[0] is not tokens[len(rows)]
        assert micro_batch_share() is None


def test_on_two_ranks_the_share_is_divided_by_the_world_size(monkeypatch):
    """Player.update on rank 0 of 2 (the all-reduce faked as a sum with an identical rank) runs each micro-batch
    under share m_i / (B R): 20 rows in micro-batches of 10 have share 1/4."""
    from hybridpgm.train.micro_batches import split_batch
    from hybridpgm.train.distributed import DistributedContext
    from hybridpgm.train.player_step import Player

    monkeypatch.setattr(torch.distributed, "all_reduce", lambda flat: flat.mul_(2))
    objective = Recorder()
    params = objective.players()["fit"]
    player = Player("fit", params, torch.optim.SGD(params, lr=0.1))
    batch = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    player.update(objective, split_batch(batch, 2), step=0, context=DistributedContext(rank=0, world_size=2),
                  precision=None, device=torch.device("cpu"), clip_grad_norm=None)
    assert [s for _, _, s in objective.calls] == [0.25, 0.25]
    assert micro_batch_share() is None
