"""Resuming under a scheduler that keeps settings outside its state: OneCycleLR (its bounds and momenta in the
param groups) and CyclicLR (its base rate) (hybridpgm/train/scheduler_settings.py; hybridpgm/train/run_start.py:
restore).

Found by an audit: a resume asking for another ``max_lr`` (0.1 -> 0.2), ``div_factor``, ``final_div_factor``,
``max_momentum`` or ``base_momentum`` of a OneCycleLR, or another ``base_lr`` of a CyclicLR, was not compared and
ran the checkpoint's schedule (0.0908 after step 4 where a run with ``max_lr=0.2`` has 0.1817); under
``override_hyperparameters`` a new ``pct_start`` or ``total_steps`` kept the checkpoint's phases, a momentum override
was set back by the scheduler at the next step, and a OneCycleLR replacing another scheduler failed with
``KeyError: 'max_lr'``.
"""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from hybridpgm.train import save_checkpoint
from hybridpgm.train.checkpoint import load_checkpoint
from tests.train.helpers import LinearRegression, regression_data

_S = torch.optim.lr_scheduler


def _trace(ckpt, scheduler, *, lr=0.01, momentum=0.9, adam=False, **fit_options):
    """``(lr, momentum)`` of the param group after each step of a ``fit`` of :class:`LinearRegression` with SGD
    (Adam with ``betas=(momentum, 0.999)`` where ``adam``; its momentum is ``betas[0]``)."""
    made, seen = [], []

    def optim(params):
        made.append(torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999)) if adam
                    else torch.optim.SGD(params, lr=lr, momentum=momentum))
        return made[-1]

    class Record:
        def on_step_end(self, info):
            group = made[-1].param_groups[0]
            seen.append((group["lr"], group["betas"][0] if adam else group["momentum"]))

    fit(LinearRegression(), regression_data(), batch_size=16, seed=0, checkpoint=ckpt, progress=False, optim=optim,
        callbacks=[Record()], lr_scheduler=scheduler, **fit_options)
    return seen


def _one_cycle(**changes):
    return functools.partial(_S.OneCycleLR, **{"max_lr": 0.1, "total_steps": 20, **changes})


def _cyclic(**changes):
    return functools.partial(_S.CyclicLR, **{"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3, **changes})


_REFUSED = [(_one_cycle, {"max_lr": 0.2}, "['max_lr']: checkpoint 0.1, requested 0.2"),
            (_one_cycle, {"div_factor": 10.0}, "['initial_lr']: checkpoint 0.004, requested 0.01"),
            (_one_cycle, {"final_div_factor": 100.0}, "['min_lr']: checkpoint 4e-07, requested 4e-05"),
            (_one_cycle, {"max_momentum": 0.99}, "['max_momentum']: checkpoint 0.95, requested 0.99"),
            (_one_cycle, {"base_momentum": 0.5}, "['base_momentum']: checkpoint 0.85, requested 0.5"),
            (_cyclic, {"base_lr": 0.05}, "['base_lrs']: checkpoint [0.01], requested [0.05]")]


@pytest.mark.parametrize("kind, change, named", _REFUSED, ids=[next(iter(c)) for _, c, _ in _REFUSED])
def test_a_changed_bound_is_refused_naming_it(tmp_path, kind, change, named):
    ckpt = tmp_path / "c.pt"
    _trace(ckpt, kind(), max_steps=3)
    with pytest.raises(CheckpointError, match="other hyperparameters") as raised:
        _trace(ckpt, kind(**change), max_steps=6)
    assert named in str(raised.value)


_ONE_CYCLE_CHANGES = [{"max_lr": 0.2}, {"div_factor": 10.0}, {"final_div_factor": 100.0}, {"pct_start": 0.5},
                      {"total_steps": 30}, {"max_momentum": 0.99}, {"base_momentum": 0.5},
                      {"max_lr": 0.2, "three_phase": True}]


@pytest.mark.parametrize("change", _ONE_CYCLE_CHANGES, ids=lambda c: "-".join(c))
@pytest.mark.parametrize("adam", [False, True], ids=["sgd", "adam"])
def test_an_overridden_one_cycle_schedule_runs_as_a_run_with_it_from_the_start(tmp_path, change, adam):
    """Each rate and momentum after the resumed step is the one a run with the requested settings has there."""
    whole = _trace(None, _one_cycle(**change), adam=adam, max_steps=20)
    ckpt = tmp_path / "c.pt"
    _trace(ckpt, _one_cycle(), adam=adam, max_steps=5)
    assert _trace(ckpt, _one_cycle(**change), adam=adam, max_steps=20, override_hyperparameters=True) == whole[5:]


def test_a_new_lr_beside_new_bounds_does_not_scale_them(tmp_path):
    """The requested schedule is taken as asked (its rates do not depend on the optimizer's ``lr``); a new ``lr``
    alone scales the checkpoint's schedule (tests/train/test_resume_override.py)."""
    whole = _trace(None, _one_cycle(max_lr=0.2), lr=0.04, max_steps=20)
    ckpt = tmp_path / "c.pt"
    _trace(ckpt, _one_cycle(), lr=0.01, max_steps=5)
    assert _trace(ckpt, _one_cycle(max_lr=0.2), lr=0.04, max_steps=20, override_hyperparameters=True) == whole[5:]


@pytest.mark.parametrize("change", [{"base_lr": 0.05}, {"max_lr": 0.2}, {"base_momentum": 0.5}],
                         ids=lambda c: next(iter(c)))
def test_an_overridden_cyclic_schedule_runs_as_a_run_with_it_from_the_start(tmp_path, change):
    whole = _trace(None, _cyclic(**change), max_steps=12)
    ckpt = tmp_path / "c.pt"
    _trace(ckpt, _cyclic(), max_steps=4)
    assert _trace(ckpt, _cyclic(**change), max_steps=12, override_hyperparameters=True) == whole[4:]


def test_a_one_cycle_schedule_replacing_another_starts_afresh(tmp_path):
    whole = _trace(None, _one_cycle(), max_steps=10)
    ckpt = tmp_path / "c.pt"
    _trace(ckpt, functools.partial(_S.StepLR, step_size=2), max_steps=3)
    assert _trace(ckpt, _one_cycle(), max_steps=13, override_hyperparameters=True) == whole


@pytest.mark.parametrize("kind", [_one_cycle, _cyclic])
def test_a_momentum_override_under_a_cycling_scheduler_is_refused(tmp_path, kind):
    """The scheduler sets the momentum from ``base_momentum`` and ``max_momentum`` at every step: the requested
    0.5 would have been set back to the schedule's at the next step."""
    ckpt = tmp_path / "c.pt"
    _trace(ckpt, kind(), max_steps=3)
    before = load_checkpoint(ckpt)["step"]
    with pytest.raises(CheckpointError, match=r"'fit' asks for momentum 0\.5 in param group 0 \(checkpoint 0\.9\), "
                                              r"but its \w+ cycles the momentum"):
        _trace(ckpt, kind(), momentum=0.5, max_steps=6, override_hyperparameters=True)
    assert load_checkpoint(ckpt)["step"] == before


def test_an_adam_beta1_override_under_one_cycle_is_refused_and_beta2_applies(tmp_path):
    ckpt = tmp_path / "c.pt"
    _trace(ckpt, _one_cycle(), adam=True, max_steps=3)
    with pytest.raises(CheckpointError, match=r"asks for betas\[0\] 0\.5 in param group 0 \(checkpoint 0\.9\)"):
        _trace(ckpt, _one_cycle(), adam=True, momentum=0.5, max_steps=6, override_hyperparameters=True)
    made = []

    def adam(params):
        made.append(torch.optim.Adam(params, lr=0.01, betas=(0.9, 0.99)))
        return made[-1]

    fit(LinearRegression(), regression_data(), batch_size=16, seed=0, checkpoint=ckpt, progress=False, optim=adam,
        lr_scheduler=_one_cycle(), max_steps=6, override_hyperparameters=True)
    assert made[-1].param_groups[0]["betas"][1] == 0.99


def test_a_one_cycle_schedule_ending_before_the_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    _trace(ckpt, _one_cycle(), max_steps=8)
    with pytest.raises(CheckpointError, match=r"OneCycleLR asks for total_steps=5, but the checkpoint's schedule "
                                              r"is at step 8"):
        _trace(ckpt, _one_cycle(total_steps=5), max_steps=9, override_hyperparameters=True)


@pytest.mark.parametrize("kind, change, record", [(_one_cycle, {"max_lr": 0.2}, ("param_groups",)),
                                                  (_cyclic, {"base_lr": 0.05}, ("settings", "base_lrs"))],
                         ids=["one_cycle", "cyclic"])
def test_a_checkpoint_without_the_bounds_record_resumes_as_before(tmp_path, kind, change, record):
    """Written before the bounds were recorded: they are not compared, and the checkpoint's schedule goes on."""
    ckpt = tmp_path / "c.pt"
    whole = _trace(None, kind(), max_steps=8)
    _trace(ckpt, kind(), max_steps=3)
    state = load_checkpoint(ckpt)
    entry = state["config"]["schedulers"]["fit"]
    del functools.reduce(dict.__getitem__, record[:-1], entry)[record[-1]]  # as written before the record
    save_checkpoint(ckpt, state)
    assert _trace(ckpt, kind(**change), max_steps=8) == whole[3:]


def test_a_momentum_override_without_cycling_applies(tmp_path):
    ckpt = tmp_path / "c.pt"
    _trace(ckpt, _one_cycle(cycle_momentum=False), max_steps=3)
    rest = _trace(ckpt, _one_cycle(cycle_momentum=False), momentum=0.5, max_steps=6, override_hyperparameters=True)
    assert [m for _, m in rest] == [0.5, 0.5, 0.5]
