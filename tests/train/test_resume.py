"""Explicit resume (hybridpgm/train/resume.py): say so, refuse what differs, never replace silently."""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError, ConfigError
from hybridpgm.train import load_checkpoint
from tests.train.helpers import LinearRegression, regression_data


def sgd(lr=0.05, momentum=0.0):
    return functools.partial(torch.optim.SGD, lr=lr, momentum=momentum)


def run(ckpt, objective=None, data=None, **kwargs):
    options = dict(epochs=2, batch_size=16, optim=sgd(), checkpoint=ckpt, progress=False, seed=0)
    options.update(kwargs)
    objective = objective or LinearRegression()
    return objective, fit(objective, data if data is not None else regression_data(), **options)


def test_resuming_says_so_with_step_and_file(tmp_path, capsys):
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=3)
    assert "resuming" not in capsys.readouterr().err
    _, result = run(ckpt)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"hybridpgm: resuming LinearRegression from {str(ckpt)!r} at step 3" in err
    assert result.steps == 8


def test_a_changed_model_is_refused_naming_the_differences(tmp_path):
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    with pytest.raises(CheckpointError) as info:
        run(ckpt, objective=LinearRegression(d_in=3), data=regression_data(d_in=3))
    message = str(info.value)
    assert str(ckpt) in message and "'weight' has shape (1, 5) in the checkpoint, (1, 3) in the model" in message
    assert "overwrite=True" in message
    with pytest.raises(CheckpointError, match="'weight' has shape"):  # overriding hyperparameters is not enough
        run(ckpt, objective=LinearRegression(d_in=3), data=regression_data(d_in=3), override_hyperparameters=True)
    _, result = run(ckpt, objective=LinearRegression(d_in=3), data=regression_data(d_in=3), overwrite=True)
    assert result.steps == 8 and load_checkpoint(ckpt)["module"]["weight"].shape == (1, 3)


def test_a_model_of_another_dtype_is_refused_naming_the_entries(tmp_path):
    """Audit: a float64 checkpoint resumed into a float32 model (and back) ran on, load_state_dict casting the weights
    (rounded by up to 1.4e-8) and the optimizer's state silently; now the entries and both dtypes are named."""
    ckpt = tmp_path / "r.pt"
    wide = LinearRegression()
    wide.module.double()
    x, y = regression_data()
    run(ckpt, objective=wide, data=(x.double(), y.double()), max_steps=2)
    with pytest.raises(CheckpointError, match=r"'weight' is torch.float64 in the checkpoint, torch.float32 in the "
                                              r"model"):
        run(ckpt)


@pytest.mark.parametrize("change, difference", [
    (dict(optim=sgd(lr=0.5)), "optimizers['fit']['param_groups'][0]['lr']: checkpoint 0.05, requested 0.5"),
    (dict(optim=sgd(momentum=0.9)), "['momentum']: checkpoint 0.0, requested 0.9"),
    (dict(optim=functools.partial(torch.optim.Adam, lr=0.05)), "['class']: checkpoint 'torch.optim.sgd.SGD'"),
    (dict(batch_size=8), "global_batch_size: checkpoint 16, requested 8"),
    (dict(accumulate=2), "accumulate: checkpoint 1, requested 2"),
    (dict(seed=1), "seed: checkpoint 0, requested 1"),
])
def test_changed_hyperparameters_are_refused_unless_overridden(tmp_path, change, difference):
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    with pytest.raises(CheckpointError) as info:
        run(ckpt, **change)
    assert str(ckpt) in str(info.value) and difference in str(info.value)
    assert "override_hyperparameters=True" in str(info.value)
    assert load_checkpoint(ckpt)["step"] == 2  # refused before anything was written


def test_an_overridden_learning_rate_is_the_one_in_use(tmp_path):
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    _, result = run(ckpt, optim=sgd(lr=0.01), override_hyperparameters=True)
    assert result.optimizers["fit"].param_groups[0]["lr"] == 0.01
    assert load_checkpoint(ckpt)["config"]["optimizers"]["fit"]["param_groups"][0]["lr"] == 0.01


def test_an_overridden_lr_under_a_scheduler_resets_its_base_rate(tmp_path):
    ckpt = tmp_path / "r.pt"
    step_lr = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=100, gamma=0.5)
    run(ckpt, max_steps=2, lr_scheduler=step_lr)
    _, result = run(ckpt, optim=sgd(lr=0.01), lr_scheduler=step_lr, override_hyperparameters=True)
    group = result.optimizers["fit"].param_groups[0]
    assert group["lr"] == group["initial_lr"] == 0.01


def test_more_epochs_is_not_a_difference(tmp_path):
    ckpt = tmp_path / "r.pt"
    run(ckpt)
    _, result = run(ckpt, epochs=4)
    assert result.steps == 16


def test_a_fresh_run_never_replaces_an_existing_checkpoint(tmp_path):
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    for resume in (False, "never"):
        with pytest.raises(CheckpointError, match="exists and this run would replace it.*overwrite=True"):
            run(ckpt, resume=resume)
    assert load_checkpoint(ckpt)["step"] == 2
    _, result = run(ckpt, resume=False, overwrite=True)
    assert result.steps == 8 and len(result.history.step) == 8  # started afresh


def test_require_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="resume='require' but checkpoint .*missing.pt' does not exist"):
        run(tmp_path / "missing.pt", resume="require")
    assert not (tmp_path / "missing.pt").exists()
    run(tmp_path / "there.pt", max_steps=2)
    _, result = run(tmp_path / "there.pt", resume="require")
    assert result.steps == 8


@pytest.mark.parametrize("kwargs, message", [
    (dict(resume="sometimes"), "resume must be"),
    (dict(resume="require", overwrite=True), "cannot be combined"),
    (dict(resume="require", checkpoint=None), "needs a checkpoint path"),
])
def test_bad_resume_options_are_config_errors(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        run(kwargs.pop("checkpoint", tmp_path / "r.pt"), **kwargs)


def test_equivalent_spellings_and_implementation_switches_are_not_differences(tmp_path):
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    _, result = run(ckpt, precision="fp32", optim=functools.partial(torch.optim.SGD, lr=0.05, foreach=False))
    assert result.steps == 8


def test_overriding_another_hyperparameter_keeps_the_learning_rate_schedule(tmp_path):
    """Before, override_hyperparameters=True put every requested value back, the scheduled lr too: a resume
    that changed only clip_grad_norm restarted StepLR's rate at 0.1 (0.01 by then), ending at 0.01 instead of
    0.001.  A new lr scales the schedule from where it was."""
    step_lr = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=4, gamma=0.1)

    def rates(ckpt, lr=0.1, **kwargs):
        seen, made = [], []

        def optim(params):
            made.append(torch.optim.SGD(params, lr=lr))
            return made[-1]

        class Record:
            def on_step_end(self, info):
                seen.append(made[-1].param_groups[0]["lr"])

        return seen, run(ckpt, optim=optim, lr_scheduler=step_lr, callbacks=[Record()], **kwargs)[1]

    whole, _ = rates(None, epochs=3)
    ckpt = tmp_path / "r.pt"
    first, _ = rates(ckpt, epochs=3, max_steps=5)
    rest, _ = rates(ckpt, epochs=3, clip_grad_norm=10.0, override_hyperparameters=True)
    assert first + rest == pytest.approx(whole) and whole[4] < whole[0] and whole[-1] < whole[5]  # it decays
    ckpt2 = tmp_path / "r2.pt"
    first, _ = rates(ckpt2, epochs=3, max_steps=5)
    rest, _ = rates(ckpt2, lr=0.2, epochs=3, override_hyperparameters=True)
    assert first + rest == pytest.approx(whole[:5] + [2 * r for r in whole[5:]])


def test_a_checkpoint_of_another_epoch_length_is_refused_and_an_older_file_resumes(tmp_path):
    """Before, a run resumed on another number of ranks whose epoch had another number of steps (N = 17,
    global batch 8: 2 steps on 2 ranks, 3 on one) read the step as another epoch and batch, skipping or
    repeating batches.  Files written before the record resume as they did."""
    from hybridpgm.train import save_checkpoint

    x, y = regression_data()
    data = (x[:17], y[:17])
    ckpt = tmp_path / "r.pt"
    run(ckpt, data=data, batch_size=8, max_steps=2)
    state = load_checkpoint(ckpt)
    assert state["config"]["steps_per_epoch"] == 3
    state["config"]["steps_per_epoch"] = 2  # as two ranks of 4 rows would have recorded it
    save_checkpoint(ckpt, state)
    with pytest.raises(CheckpointError, match="steps_per_epoch: checkpoint 2, requested 3"):
        run(ckpt, data=data, batch_size=8)
    del state["config"]["steps_per_epoch"]
    save_checkpoint(ckpt, state)
    _, result = run(ckpt, data=data, batch_size=8)
    assert result.steps == 6


def _step_lr(gamma):
    return functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=gamma)


@pytest.mark.parametrize("requested, difference", [
    (_step_lr(0.1), r"schedulers\['fit'\]\['settings'\]\['gamma'\]: checkpoint 0.5, requested 0.1"),
    (None, r"schedulers\['fit'\]: checkpoint \{'class': 'torch.optim.lr_scheduler.StepLR'.*requested None"),
    (functools.partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.5),
     r"schedulers\['fit'\]\['class'\]: checkpoint 'torch.optim.lr_scheduler.StepLR', requested "
     r"'torch.optim.lr_scheduler.ExponentialLR'")])
def test_another_scheduler_is_refused_naming_the_difference(tmp_path, requested, difference):
    """Found by an audit: the scheduler was not recorded; a resume asking for gamma 0.1 ran the checkpoint's 0.5
    (loading its state replaced the requested settings), and one asking for none silently stopped the schedule."""
    ckpt = tmp_path / "r.pt"
    run(ckpt, optim=sgd(lr=1.0), lr_scheduler=_step_lr(0.5), max_steps=4)
    with pytest.raises(CheckpointError, match=difference):
        run(ckpt, optim=sgd(lr=1.0), lr_scheduler=requested, max_steps=8)
    _, result = run(ckpt, optim=sgd(lr=1.0), lr_scheduler=_step_lr(0.5), max_steps=8)  # the same one resumes
    assert result.optimizers["fit"].param_groups[0]["lr"] == pytest.approx(1.0 * 0.5 ** 4)


@pytest.mark.parametrize("requested, lr", [(_step_lr(0.1), 0.25 * 0.1 ** 2),  # the new gamma from where it was
                                           (None, 0.25),  # the schedule dropped: the rate stays where it was
                                           (functools.partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.5),
                                            0.25 * 0.5 ** 4)])  # another class starts afresh at the current rate
def test_an_overridden_scheduler_is_the_one_that_runs(tmp_path, requested, lr):
    ckpt = tmp_path / "r.pt"
    run(ckpt, optim=sgd(lr=1.0), lr_scheduler=_step_lr(0.5), max_steps=4)  # lr 1 -> 0.25 after 4 steps
    _, result = run(ckpt, optim=sgd(lr=1.0), lr_scheduler=requested, max_steps=8, override_hyperparameters=True)
    assert result.optimizers["fit"].param_groups[0]["lr"] == pytest.approx(lr)


def test_a_checkpoint_without_the_scheduler_record_resumes(tmp_path):
    from hybridpgm.train import save_checkpoint

    ckpt = tmp_path / "r.pt"
    run(ckpt, optim=sgd(lr=1.0), lr_scheduler=_step_lr(0.5), max_steps=4)
    state = load_checkpoint(ckpt)
    del state["config"]["schedulers"]  # as written before the record
    save_checkpoint(ckpt, state)
    _, result = run(ckpt, optim=sgd(lr=1.0), lr_scheduler=_step_lr(0.5), max_steps=8)
    assert result.steps == 8


def test_resume_mode_refuses_an_overwrite_that_is_not_a_bool():
    """Before, resume_mode read overwrite="no" as True (start afresh, deleting the checkpoint)."""
    from hybridpgm.train.resume import resume_mode

    assert resume_mode("auto", False, "x.pt") == "auto" and resume_mode("auto", True, "x.pt") == "never"
    with pytest.raises(ConfigError, match="fit overwrite must be True or False, got 'no'"):
        resume_mode("auto", "no", "x.pt")


def test_a_changed_config_is_refused_naming_the_key_unless_overridden(tmp_path):
    """Before, ``fit`` had no ``config``: the settings that shaped the model, objective and data (an IWAE's
    particles, a CRF's longest sequence) were neither recorded nor compared, so a resume with others went
    on silently."""
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2, config={"particles": 5, "hidden": (8, 4), "data": "digits"})
    assert load_checkpoint(ckpt)["config"]["config"] == {"particles": 5, "hidden": [8, 4], "data": "digits"}
    with pytest.raises(CheckpointError) as info:
        run(ckpt, config={"particles": 10, "hidden": [8, 4], "data": "digits"})
    message = str(info.value)
    assert str(ckpt) in message and "config['particles']: checkpoint 5, requested 10" in message
    assert "override_hyperparameters=True" in message and "hidden" not in message
    with pytest.raises(CheckpointError, match=r"config\['extra'\]: checkpoint '<absent>', requested 1"):
        run(ckpt, config={"particles": 5, "hidden": [8, 4], "data": "digits", "extra": 1})
    with pytest.raises(CheckpointError, match=r"config\['particles'\]: checkpoint 5, requested '<absent>'"):
        run(ckpt, config={"hidden": [8, 4], "data": "digits"})
    assert load_checkpoint(ckpt)["step"] == 2  # untouched
    _, result = run(ckpt, config={"particles": 10, "hidden": [8, 4], "data": "digits"},
                    override_hyperparameters=True)
    assert result.steps == 8 and load_checkpoint(ckpt)["config"]["config"]["particles"] == 10  # re-recorded
    _, result = run(ckpt, epochs=3, config={"particles": 10, "hidden": [8, 4], "data": "digits"})
    assert result.steps == 12


def test_no_config_resumes_as_before_and_an_older_file_is_not_compared(tmp_path):
    from hybridpgm.train import save_checkpoint

    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    assert load_checkpoint(ckpt)["config"]["config"] == {}
    _, result = run(ckpt, max_steps=4)
    assert result.steps == 4
    with pytest.raises(CheckpointError, match=r"config\['k'\]: checkpoint '<absent>', requested 1"):
        run(ckpt, config={"k": 1})
    state = load_checkpoint(ckpt)
    del state["config"]["config"]  # as a checkpoint written before config was recorded
    save_checkpoint(ckpt, state)
    _, result = run(ckpt, config={"k": 1})
    assert result.steps == 8 and load_checkpoint(ckpt)["config"]["config"] == {"k": 1}


@pytest.mark.parametrize("config, message", [
    ([("a", 1)], "must be a mapping"),
    ({1: 2}, "keys must be strings"),
    ({"a": {"b": 1}}, "'a' is a dict"),
    ({"a": [1, object()]}, r"'a'\[1\] is a object"),
    ({"a": float("nan")}, "'a' is nan"),
    ({"a": torch.tensor(1.0)}, "'a' is a Tensor"),
])
def test_a_config_that_is_not_json_like_is_refused_before_the_checkpoint_is_touched(tmp_path, config, message):
    ckpt = tmp_path / "r.pt"
    with pytest.raises(ConfigError, match=message):
        run(ckpt, config=config)
    assert not ckpt.exists()


class _OtherRegression(LinearRegression):
    """Another objective class over the same module and players (a GAN's checkpoint read by an IWGAN)."""


def test_another_objective_class_is_refused_unless_overridden_and_an_older_file_is_not_compared(tmp_path):
    """Before, the objective's class was not recorded: a checkpoint resumed silently under another objective."""
    from hybridpgm.train import save_checkpoint

    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    assert load_checkpoint(ckpt)["config"]["objective"] == "LinearRegression"
    with pytest.raises(CheckpointError, match=r"objective: checkpoint 'LinearRegression', "
                                              r"requested '_OtherRegression'"):
        run(ckpt, objective=_OtherRegression(), max_steps=4)
    assert load_checkpoint(ckpt)["step"] == 2  # untouched
    _, result = run(ckpt, objective=_OtherRegression(), max_steps=4, override_hyperparameters=True)
    assert result.steps == 4 and load_checkpoint(ckpt)["config"]["objective"] == "_OtherRegression"
    state = load_checkpoint(ckpt)
    del state["config"]["objective"]  # as a checkpoint written before the objective's class was recorded
    save_checkpoint(ckpt, state)
    _, result = run(ckpt, max_steps=6)
    assert result.steps == 6


def test_the_objective_class_is_recorded_without_its_module(tmp_path):
    """A run started as ``python train.py`` (its objective class in ``__main__``) resumes where ``train`` is
    imported (the review of the first version, which recorded ``module.QualifiedName``, found it refused)."""
    from tests.train.helpers import LinearRegression

    ckpt = tmp_path / "r.pt"
    as_main = type("LinearRegression", (LinearRegression,), {"__module__": "__main__"})
    run(ckpt, objective=as_main(), max_steps=2)
    imported = type("LinearRegression", (LinearRegression,), {"__module__": "train"})
    _, result = run(ckpt, objective=imported(), max_steps=4)
    assert result.steps == 4
