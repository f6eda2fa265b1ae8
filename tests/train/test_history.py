"""The run's record and its health check (hybridpgm/train/history.py)."""

import functools
import math
import warnings

import torch

from hybridpgm import fit
from hybridpgm.train.history import EXPLOSION_FACTOR, FitResult, History, loss_explosions


def test_loss_explosions_compare_the_last_finite_loss_with_the_first():
    history = History(loss={
        "steady": [2.0, 1.0, 0.5],
        "exploded": [2.0, float("nan"), 2.0 * EXPLOSION_FACTOR + 1],   # the NaN step was skipped
        "small_start": [1e-4, 900.0],                                   # floored at 1: 900 < 1000
        "rose_from_negative": [-5.0, 6000.0],                            # 6000 > 1000 * |-5|
        "fell_far_below_zero": [-3.0, -1e5],                             # an improvement, not an explosion
        "fell_from_about_zero": [0.0167, -2195.7],                       # the audit's NLL (r9)
        "rose_not_far_enough": [-5.0, 4999.0],
        "skipped_last": [2.0, 1.0, float("inf")],
        "one_step": [1e9],
    })
    found = loss_explosions(history)
    assert found == {"exploded": (2.0, 2001.0), "rose_from_negative": (-5.0, 6000.0)}
    assert all(math.isfinite(v) for pair in found.values() for v in pair)


class TightGaussianNLL:
    """The mean Gaussian negative log-likelihood of data clustered within 1e-3 of 0 in ``d`` dimensions, with a
    learned log-scale: about 0 at the start, far below -1000 at the optimum (a legitimate improvement)."""

    def __init__(self, d):
        self.module = torch.nn.Module()
        self.module.log_scale = torch.nn.Parameter(torch.full((d,), -0.9189))

    def players(self):
        return {"nll": [self.module.log_scale]}

    def loss(self, player, batch):
        return -torch.distributions.Normal(0.0, self.module.log_scale.exp()).log_prob(batch).sum(-1).mean()


def test_a_loss_that_improves_far_below_zero_is_not_an_explosion():
    """Found by an audit: the NLL falling from 0.017 to -2196 was reported as exploded (diverged=True, and a
    RuntimeWarning), since the health check compared magnitudes."""
    x = 0.001 * torch.randn(256, 400, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = fit(TightGaussianNLL(400), x, epochs=60, batch_size=256, progress=False, seed=0,
                     optim=functools.partial(torch.optim.Adam, lr=0.2))
    losses = result.history.loss["nll"]
    assert abs(losses[0]) < 1.0 and losses[-1] < -1000.0
    assert not result.diverged and result.loss_explosions == {}


def test_the_repr_of_a_long_history_stays_short_and_names_the_last_values():
    """A notebook cell ending in ``fit(...)`` shows the FitResult: before, its repr printed every per-step list
    (7 MB after 100000 steps)."""
    history = History()
    assert repr(history) == "History(no steps)"
    for i in range(100_000):
        history.record(i + 1, {"elbo": 1000.0 - i / 1000, "critic": 2.5}, 0.01 * i, 50.0)
    history.log_metric("val", 50_000, 3.25)
    history.log_metric("val", 100_000, 3.125)
    text = repr(history)
    assert len(text) < 300
    assert "steps=100000 (1..100000)" in text and "'elbo': 900.001" in text and "'critic': 2.5" in text
    assert "'val': 2 points, last 3.125" in text
    result = FitResult(history, 100_000, {}, torch.device("cpu"))
    assert len(repr(result)) < 600 and text in repr(result)
    # a history read from a damaged checkpoint may hold anything: its repr still does not raise
    assert "'a': 'high'" in repr(History(step=[1], loss={"a": ["high"]}, wall_time=[0.1], examples_per_second=[1.0]))


def test_the_repr_of_a_history_without_steps_names_what_it_holds():
    """Found by an audit: a history with metrics (or losses) but no step printed ``History(no steps)``, hiding
    them."""
    history = History(metrics={"val": [(0, 3.5)], "acc": [(0, 0.25), (10, 0.75)], "empty": []})
    assert repr(history) == "History(no steps, metrics={'val': 1 point, last 3.5, 'acc': 2 points, last 0.75})"
    assert repr(History(loss={"elbo": [2.0, 1.5]})) == "History(no steps, last loss={'elbo': 1.5})"
    assert repr(History(wall_time=[0.5])) == "History(no steps, wall_time=0.5 s)"
    assert repr(History(loss={"elbo": []}, metrics={"val": []})) == "History(no steps)"
    # with steps, as before
    history.record(1, {"elbo": 2.0}, 0.125, 8.0)
    assert repr(history) == ("History(steps=1 (1..1), last loss={'elbo': 2}, metrics={'val': 1 point, last 3.5, "
                             "'acc': 2 points, last 0.75}, wall_time=0.125 s)")


def test_the_repr_of_a_result_names_each_optimizer_by_its_class_on_one_line():
    """Before, the dataclass repr printed each optimizer's multi-line ``torch.optim`` repr (every parameter group's
    settings): about 15 lines per player in a notebook cell."""
    params = [torch.nn.Parameter(torch.zeros(2))]
    result = FitResult(History(), 3, {"elbo": torch.optim.Adam(params), "disc": torch.optim.SGD(params, lr=0.1)},
                       torch.device("cpu"))
    assert repr(result) == ("FitResult(steps=3, history=History(no steps), optimizers={'elbo': Adam, 'disc': SGD}, "
                            "device=device(type='cpu'), stopped_early=False, skipped_steps={}, loss_explosions={})")
