"""``override_hyperparameters=True`` with a new seed, ``shuffle`` or learning rate (hybridpgm/train/resume.py:
epoch_layout, override_hyperparameters, override_scheduler; hybridpgm/train/run_start.py: restore).

Found by an audit: a new seed or ``shuffle`` resumed in the middle of an epoch drew the rest of that epoch from
another order (examples seen twice, others never), and a new ``lr`` under ``ReduceLROnPlateau`` replaced the rate
its reductions had reached (0.00625 became 0.2) where every other scheduler's rate is scaled by new / recorded.
"""

import collections
import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.train.batches import BatchStream, TensorData
from hybridpgm.train.checkpoint import load_checkpoint
from hybridpgm.train.resume import override_hyperparameters, override_scheduler, scheduler_settings
from tests.train.helpers import LinearRegression, rates_of_a_run, regression_data

N, B = 40, 4  # 10 steps an epoch


class _Seen:
    """One player; records the examples (their index: the data are 0..N-1) and a torch draw of each loss call."""

    def __init__(self):
        torch.manual_seed(0)
        self.module, self.seen, self.draws = torch.nn.Linear(1, 1), [], []

    def players(self):
        return {"m": list(self.module.parameters())}

    def loss(self, player, batch):
        self.seen.extend(int(v) for v in batch[:, 0])
        self.draws.append(float(torch.rand(())))
        return self.module(batch).pow(2).mean()


class _Epochs:
    def __init__(self):
        self.epochs = []

    def on_step_end(self, info):
        self.epochs.extend([info.epoch] * B)


def _fit(path, epochs=2, **kwargs):
    objective, log = _Seen(), _Epochs()
    options = dict(epochs=epochs, batch_size=B, seed=0, progress=False, checkpoint=path, callbacks=[log])
    result = fit(objective, torch.arange(float(N)).unsqueeze(1), **{**options, **kwargs})
    return result, objective, log.epochs


def _by_epoch(*runs):
    """The examples each epoch took over ``runs`` (pairs of objective and epochs)."""
    out = collections.defaultdict(list)
    for objective, epochs in runs:
        for example, epoch in zip(objective.seen, epochs):
            out[epoch].append(example)
    return dict(out)


def _order(seed, shuffle, epoch):
    """Epoch ``epoch``'s order of the examples (one batch of ``N`` an epoch: step ``epoch`` takes it whole)."""
    return BatchStream(TensorData(torch.arange(N)), N, seed=seed, shuffle=shuffle).batch(epoch).tolist()


@pytest.mark.parametrize("change, named, seed, shuffle", [(dict(seed=1), "seed 0 -> 1", 1, True),
                                                          (dict(shuffle=False), "shuffle True -> False", 0, False)])
def test_a_new_data_order_mid_epoch_starts_at_the_next_epoch(tmp_path, capsys, change, named, seed, shuffle):
    """Before, the last 8 steps of epoch 0 came from the new order: some of its examples were seen twice in
    epoch 0 and others never, and the resume line said nothing."""
    ckpt = tmp_path / "c.pt"
    _, first, first_epochs = _fit(ckpt, max_steps=2)
    result, rest, rest_epochs = _fit(ckpt, override_hyperparameters=True, **change)
    epochs = _by_epoch((first, first_epochs), (rest, rest_epochs))
    assert all(max(collections.Counter(seen).values()) == 1 for seen in epochs.values())  # none twice in an epoch
    assert f"the epochs are laid out anew ({named}): the last 8 of the 10 steps of epoch 0 are skipped, and " \
           "epoch 1 starts at step 2" in capsys.readouterr().err
    assert sorted(epochs) == [0, 1] and len(epochs[0]) == 2 * B and result.steps == 12
    assert epochs[1] == _order(seed, shuffle, 1)  # epoch 1, whole, in the new order
    assert load_checkpoint(ckpt)["epoch_layout"] == [2, 1] and load_checkpoint(ckpt)["seed"] == seed


def test_a_new_seed_at_an_epoch_boundary_skips_nothing(tmp_path, capsys):
    ckpt = tmp_path / "c.pt"
    _fit(ckpt, epochs=1)
    result, rest, _ = _fit(ckpt, seed=1, override_hyperparameters=True)
    assert "the epochs are laid out anew (seed 0 -> 1); epoch 1 starts at step 10" in capsys.readouterr().err
    assert result.steps == 20 and rest.seen == _order(1, True, 1)


def test_a_new_seed_without_shuffling_keeps_the_layout(tmp_path, capsys):
    """A guard (it passed before the fix too): without shuffling the seed draws no order, so the interrupted
    epoch goes on where it stopped."""
    ckpt = tmp_path / "c.pt"
    _, first, _ = _fit(ckpt, shuffle=False, max_steps=2)
    result, rest, _ = _fit(ckpt, shuffle=False, seed=1, override_hyperparameters=True)
    assert "laid out anew" not in capsys.readouterr().err
    assert first.seen + rest.seen == list(range(N)) * 2 and result.steps == 20


def test_a_new_seed_changes_only_the_data_order(tmp_path):
    """A guard (it passed before the fix too): the RNG streams go on from the checkpoint's states whatever seed
    is asked for, so a loss's random draws after the resume are those of a resume with the checkpoint's seed."""
    import shutil

    ckpt, copy = tmp_path / "c.pt", tmp_path / "copy.pt"
    _fit(ckpt, epochs=1)
    shutil.copy(ckpt, copy)
    _, same, _ = _fit(ckpt)
    _, new, _ = _fit(copy, seed=1, override_hyperparameters=True)
    assert new.draws == same.draws and new.seen != same.seen
    assert load_checkpoint(copy)["seed"] == 1 and load_checkpoint(ckpt)["seed"] == 0


def test_the_layout_compares_the_seed_only_while_shuffling():
    from hybridpgm.train.resume import epoch_layout

    config = {"global_batch_size": B, "num_examples": N, "drop_last": False, "steps_per_epoch": 10, "shuffle": True}
    saved = {"config": config, "seed": 0}
    assert epoch_layout(saved, config, 13, seed=3) == ((13, 2), "the epochs are laid out anew (seed 0 -> 3): the last "
                                                                "7 of the 10 steps of epoch 1 are skipped, and epoch 2 "
                                                                "starts at step 13")
    assert epoch_layout(saved, config, 13, seed=0) == ((0, 0), None)
    assert epoch_layout(saved, config, 13) == ((0, 0), None)  # no seed given: unchanged
    unshuffled = {**config, "shuffle": False}
    assert epoch_layout({**saved, "config": unshuffled}, unshuffled, 13, seed=3) == ((0, 0), None)


def _lr_run(ckpt, scheduler, lr=0.1, **kwargs):
    objective = LinearRegression()
    result = fit(objective, regression_data(), batch_size=16, seed=0, checkpoint=ckpt, progress=False,
                 optim=functools.partial(torch.optim.SGD, lr=lr), lr_scheduler=scheduler, **kwargs)
    return result.optimizers["fit"].param_groups[0]["lr"]


def _plateau(min_lr=0.0):  # a loss never improves by 1000 %: every step halves the rate, down to min_lr
    return functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0, factor=0.5, threshold=10.0,
                             min_lr=min_lr)


def test_a_new_lr_scales_the_plateau_rate_as_it_scales_a_schedule(tmp_path):
    """Before, 0.1 halved four times by ReduceLROnPlateau (0.00625) became 0.2 on a resume asking for lr 0.2,
    where StepLR's 0.00625 became 0.0125 (the docstring's rule: scaled by new / recorded)."""
    step_lr = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    for name, scheduler in (("step", step_lr), ("plateau", _plateau())):
        ckpt = tmp_path / f"{name}.pt"
        assert _lr_run(ckpt, scheduler, max_steps=4) == pytest.approx(0.1 * 0.5 ** 4)
        resumed = _lr_run(ckpt, scheduler, lr=0.2, max_steps=4, override_hyperparameters=True)  # no step run
        assert resumed == pytest.approx(0.2 * 0.5 ** 4)
        assert _lr_run(ckpt, scheduler, lr=0.2, max_steps=6) == pytest.approx(0.2 * 0.5 ** 6)  # it goes on


def test_a_new_min_lr_under_the_plateau_applies(tmp_path):
    """Before, the requested ``min_lr`` (a list, ``min_lrs``, in the scheduler) was not put back: the rate stayed
    at the checkpoint's floor 0.01."""
    ckpt = tmp_path / "c.pt"
    assert _lr_run(ckpt, _plateau(0.01), max_steps=4) == pytest.approx(0.01)  # 0.05, 0.025, 0.0125, 0.01
    assert _lr_run(ckpt, _plateau(0.001), max_steps=6, override_hyperparameters=True) == pytest.approx(0.0025)


@pytest.mark.parametrize("new, min_lr, expected", [
    (0.2, 0.0, 0.0125),  # scaled
    (0.05, 0.004, 0.004),  # scaled to 0.003125, below the floor its reductions keep
    (0.002, 0.004, 0.002),  # a new rate below the floor is not raised above itself (also so before)
])
def test_the_scaled_plateau_rate_keeps_its_floor(new, min_lr, expected):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, min_lr=min_lr)
    optimizer.param_groups[0]["lr"] = 0.00625  # 0.1 halved four times
    override_hyperparameters(optimizer, scheduler, {"param_groups": [{"lr": new}]}, {"param_groups": [{"lr": 0.1}]})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected) and scheduler.min_lrs == [min_lr]
    assert "initial_lr" not in optimizer.param_groups[0]


def test_override_scheduler_puts_back_a_list_of_numbers_only():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, min_lr=0.01)
    was = scheduler_settings(plateau)
    override_scheduler(plateau, scheduler_settings(torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), min_lr=0.001)), was)
    assert plateau.min_lrs == [0.001]
    steps = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 4])
    override_scheduler(steps, {"settings": {"milestones": {"3": 1}}}, {"settings": {"milestones": {"2": 1, "4": 1}}})
    assert dict(steps.milestones) == {2: 1, 4: 1}  # a mapping is left as the checkpoint has it


def test_a_raised_min_lr_alone_floors_the_plateau_rate(tmp_path):
    """Found by a review: a raised ``min_lr`` with the same ``lr`` left the rate its reductions had reached below
    it for good (torch's reductions never raise a rate); the same resume nudging ``lr`` floored it."""
    ckpt = tmp_path / "c.pt"
    assert _lr_run(ckpt, _plateau(0.01), max_steps=6) == pytest.approx(0.01)
    assert _lr_run(ckpt, _plateau(0.05), max_steps=12, override_hyperparameters=True) == pytest.approx(0.05)


def test_a_private_list_of_a_scheduler_is_left_as_the_checkpoint_has_it():
    """Found by a review: ``SequentialLR``'s ``_milestones`` (steps, not one number per param group) was replaced
    when its length happened to match, skipping the reset at the milestone."""
    def sequential(milestones):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [
            torch.optim.lr_scheduler.ConstantLR(optimizer, factor=0.5, total_iters=100),
            torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.9)], milestones=milestones)

    scheduler = sequential([10])
    was = scheduler_settings(scheduler)
    override_scheduler(scheduler, scheduler_settings(sequential([5])), was)
    assert scheduler._milestones == [10]


_S = torch.optim.lr_scheduler


def _sequential(optimizer):  # half the rate up to its milestone at step 4, then halved every step from the full rate
    return _S.SequentialLR(optimizer, [_S.ConstantLR(optimizer, factor=0.5, total_iters=100),
                                       _S.ExponentialLR(optimizer, 0.5)], milestones=[4])


def _chained(optimizer):
    return _S.ChainedScheduler([_S.ConstantLR(optimizer, factor=0.5, total_iters=3), _S.ExponentialLR(optimizer, 0.5)])


_SCHEDULERS = {"step": functools.partial(_S.StepLR, step_size=1, gamma=0.5), "plateau": _plateau(),
               "cosine": functools.partial(_S.CosineAnnealingLR, T_max=10), "sequential": _sequential,
               "chained": _chained}


@pytest.mark.parametrize("kind", sorted(_SCHEDULERS))
def test_get_last_lr_reports_the_overridden_rate(tmp_path, kind):
    """Found by an audit: after a resume asking for lr 0.2 (0.1 recorded) the scheduler's ``get_last_lr()`` still
    reported the checkpoint's rate until its next step (StepLR: 0.025 where the optimizer ran 0.05; the plateau's,
    the cosine's, SequentialLR's and ChainedScheduler's alike, and those of the schedulers the last two hold)."""
    made = []

    def factory(optimizer):
        made.append(_SCHEDULERS[kind](optimizer))
        return made[-1]

    ckpt = tmp_path / "c.pt"
    before = _lr_run(ckpt, factory, max_steps=2)
    assert made[-1].get_last_lr() == [before]
    lr = _lr_run(ckpt, factory, lr=0.2, max_steps=2, override_hyperparameters=True)  # no step run
    assert lr == pytest.approx(2 * before)
    for scheduler in [made[-1], *getattr(made[-1], "_schedulers", [])]:
        assert scheduler.get_last_lr() == [lr], type(scheduler).__name__


def test_a_sequential_schedule_restarts_at_its_milestone_from_the_new_rate(tmp_path):
    """Found by an audit: the schedulers a ``SequentialLR`` holds kept the checkpoint's base rate, so at the
    milestone (after step 3) ExponentialLR restarted from 0.1 where a resume asking for lr 0.2 restarts from 0.2:
    the rates after steps 3-5 were 0.1, 0.05 and 0.025 instead of 0.2, 0.1 and 0.05."""
    def rates(ckpt, lr, **kwargs):
        return rates_of_a_run(ckpt, lr, lr_scheduler=_sequential, **kwargs)

    whole = rates(None, 0.2, max_steps=6)
    assert whole == pytest.approx([0.1, 0.1, 0.1, 0.2, 0.1, 0.05])  # the rate after each step
    ckpt = tmp_path / "c.pt"
    first = rates(ckpt, 0.1, max_steps=2)
    rest = rates(ckpt, 0.2, max_steps=6, override_hyperparameters=True)
    assert first == pytest.approx([r / 2 for r in whole[:2]]) and rest == pytest.approx(whole[2:])


def test_a_scheduler_of_another_class_reports_the_rate_it_starts_from(tmp_path):
    """Found by an audit: an overriding ExponentialLR (StepLR in the checkpoint: it starts afresh from the rate in
    use, 0.25) reported the rate it was built with, 1.0, until its first step."""
    made = []

    def exponential(optimizer):
        made.append(_S.ExponentialLR(optimizer, gamma=0.5))
        return made[-1]

    ckpt = tmp_path / "c.pt"
    assert _lr_run(ckpt, functools.partial(_S.StepLR, step_size=2, gamma=0.5), lr=1.0, max_steps=4) == 0.25
    assert _lr_run(ckpt, exponential, lr=1.0, max_steps=4, override_hyperparameters=True) == 0.25
    assert made[-1].get_last_lr() == [0.25]


def _cyclic_then_step(optimizer):  # a cycle between 0.01 and 0.1 (whatever the optimizer's lr), then StepLR
    return _S.SequentialLR(optimizer, [_S.CyclicLR(optimizer, base_lr=0.01, max_lr=0.1, step_size_up=3),
                                       _S.StepLR(optimizer, 2, 0.5)], milestones=[10])


def _chained_cyclic(optimizer):
    return _S.ChainedScheduler([_S.CyclicLR(optimizer, base_lr=0.01, max_lr=0.1, step_size_up=3),
                                _S.ExponentialLR(optimizer, 0.9)])


@pytest.mark.parametrize("scheduler", [_cyclic_then_step, _chained_cyclic, functools.partial(
    _S.CyclicLR, base_lr=0.01, max_lr=0.1, step_size_up=3)], ids=["sequential", "chained", "cyclic"])
def test_a_new_lr_scales_schedules_whose_base_is_not_the_groups_lr(tmp_path, scheduler):
    """Found by a review: the base rates of the schedulers a SequentialLR or ChainedScheduler holds were set to the
    new lr, 0.2, not scaled (0.01 recorded there, 0.02 asked for): StepLR restarted from 0.2 at the milestone, and
    a CyclicLR's cycle ran inverted between 0.2 and 0.1 (alone too, before this session: its base set to 0.2).  Each
    rate of the schedule is now scaled by new / recorded lr, 2, as the docstring says."""
    def rates(ckpt, lr, **kwargs):
        return rates_of_a_run(ckpt, lr, momentum=0.9, lr_scheduler=scheduler, **kwargs)

    whole = rates(None, 0.1, max_steps=16)
    ckpt = tmp_path / "c.pt"
    assert rates(ckpt, 0.1, max_steps=7) == pytest.approx(whole[:7])
    rest = rates(ckpt, 0.2, max_steps=16, override_hyperparameters=True)
    assert rest == pytest.approx([2 * r for r in whole[7:]])


@pytest.mark.parametrize("three_phase", [False, True])
def test_a_new_lr_scales_a_one_cycle_schedule(tmp_path, three_phase):
    """Found by an audit: OneCycleLR keeps its bounds (``initial_lr``, ``max_lr``, ``min_lr``) in the param groups,
    which the checkpoint's optimizer state brought back, so a resume asking for lr 0.02 (0.01 recorded) ran the
    checkpoint's schedule (0.0908 after step 4, not 0.1817), and its ``initial_lr`` became 0.02 (not 0.008, the
    base of the third phase).  Each rate is now new / recorded, 2, times the uninterrupted run's."""
    def rates(ckpt, lr, **kwargs):
        return rates_of_a_run(ckpt, lr, momentum=0.9, lr_scheduler=functools.partial(
            _S.OneCycleLR, max_lr=0.1, total_steps=20, three_phase=three_phase), **kwargs)

    whole = rates(None, 0.01, max_steps=20)
    ckpt = tmp_path / "c.pt"
    assert rates(ckpt, 0.01, max_steps=3) == pytest.approx(whole[:3])
    rest = rates(ckpt, 0.02, max_steps=20, override_hyperparameters=True)
    assert rest == pytest.approx([2 * r for r in whole[3:]])
