"""Callbacks of fit and their checkpointed state (hybridpgm/train/callbacks.py)."""

import functools
import math

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError, ConfigError, TrainingInterrupted
from hybridpgm.train import EarlyStopping, EvaluateEvery
from hybridpgm.train.callbacks import callback_buffer_paths, callback_states, load_callback_states
from tests.train.helpers import LinearRegression, TermAt, regression_data


class Counter:
    """A stateful callback: counts the steps it saw."""

    def __init__(self):
        self.count = 0

    def on_step_end(self, info):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]



def _run(ckpt=None, callbacks=(), **kwargs):
    """An SGD regression whose evaluated training MSE stops improving (lr too large)."""
    objective = LinearRegression()
    x, y = regression_data()
    evaluate = EvaluateEvery(1, lambda obj: ((obj.module(x) - y) ** 2).mean().item(), name="mse")
    stopper = EarlyStopping("mse", patience=2)
    kwargs = {"epochs": 50, **kwargs}
    result = fit(objective, (x, y), batch_size=16, progress=False, seed=0, checkpoint=ckpt,
                 callbacks=[evaluate, stopper, *callbacks], optim=functools.partial(torch.optim.SGD, lr=0.2),
                 **kwargs)
    return objective, result, stopper


def test_early_stopping_state_round_trips_without_infinity():
    stopper = EarlyStopping("loss", patience=3, mode="max")
    assert stopper.state_dict() == {"best": None, "bad_rounds": 0, "seen": 0}  # -inf is not stored
    other = EarlyStopping("loss", patience=3, mode="max")
    other.best, other.bad_rounds, other._seen = 2.5, 2, 7
    stopper.load_state_dict(other.state_dict())
    assert (stopper.best, stopper.bad_rounds, stopper._seen) == (2.5, 2, 7)
    stopper.load_state_dict({"best": None, "bad_rounds": 0, "seen": 0})
    assert stopper.best == -math.inf


def test_callback_states_name_the_class_and_skip_stateless_callbacks():
    counter = Counter()
    counter.count = 4
    states = callback_states([TermAt(1), counter])
    assert states == [None, {"class": "tests.train.test_callbacks.Counter", "state": {"count": 4}}]
    fresh = Counter()
    load_callback_states("run.pt", [fresh, TermAt(3)], states)  # matched among the stateful ones, in order
    assert fresh.count == 4
    load_callback_states("run.pt", [fresh], None)  # a checkpoint written before callbacks were saved
    assert fresh.count == 4


def test_a_mismatched_callback_list_is_refused_naming_both():
    states = callback_states([Counter()])
    with pytest.raises(CheckpointError, match=r"'run.pt'.*Counter.*EarlyStopping.*overwrite=True"):
        load_callback_states("run.pt", [EarlyStopping("x")], states)
    with pytest.raises(CheckpointError, match=r"callbacks \[\]"):
        load_callback_states("run.pt", [Counter()], [None])


def test_a_non_finite_float_in_a_state_is_refused():
    counter = Counter()
    counter.count = float("nan")
    with pytest.raises(CheckpointError, match=r"Counter.state_dict\(\).*\['count'\].*None"):
        callback_states([counter])


def test_module_copies_in_a_state_may_hold_infinite_buffers_only():
    states = [None, {"class": "K", "state": {"module": {"b": torch.tensor(math.inf)}}}, {"class": "C", "state": {}}]
    assert callback_buffer_paths(states, frozenset({"['module']['b']"})) == {"['callbacks'][1]['state']['module']['b']"}


def test_a_signalled_run_resumes_its_early_stopping_bit_identically(tmp_path):
    uninterrupted, reference, _ = _run()
    assert reference.stopped_early and 6 < reference.steps < 200
    ckpt = tmp_path / "run.pt"
    with pytest.raises(TrainingInterrupted):
        _run(ckpt, callbacks=[Counter(), TermAt(reference.steps - 1)])
    saved = torch.load(ckpt, weights_only=True)
    assert saved["callbacks"][1]["state"]["bad_rounds"] == 1 and saved["callbacks"][2]["state"]["count"] == \
        reference.steps - 1
    counter = Counter()
    resumed, result, stopper = _run(ckpt, callbacks=[counter])
    assert counter.count == reference.steps and stopper.bad_rounds == 2 and result.stopped_early
    assert result.history.step == reference.history.step and result.history.metrics == reference.history.metrics
    assert all(torch.equal(a, b) for a, b in zip(resumed.module.parameters(), uninterrupted.module.parameters()))
    with pytest.raises(CheckpointError, match="stateful callbacks"):
        _run(ckpt, epochs=60)  # Counter is missing


def test_a_run_stopped_by_a_callback_is_finished_when_resumed(tmp_path):
    ckpt = tmp_path / "run.pt"
    first, reference, _ = _run(ckpt)
    assert reference.stopped_early and torch.load(ckpt, weights_only=True)["stopped_early"] is True
    again, result, _ = _run(ckpt, epochs=100)
    assert result.stopped_early and result.steps == reference.steps
    assert result.history.step == reference.history.step
    assert all(torch.equal(a, b) for a, b in zip(again.module.parameters(), first.module.parameters()))


@pytest.mark.parametrize("build, match", [
    (lambda: EvaluateEvery(True, lambda objective: 0.0), "EvaluateEvery every must be a positive integer, got True"),
    (lambda: EvaluateEvery(2.5, lambda objective: 0.0), "EvaluateEvery every must be a positive integer, got 2.5"),
    (lambda: EvaluateEvery("3", lambda objective: 0.0), "got '3'"),
    (lambda: EvaluateEvery(2, "mse"), "EvaluateEvery fn must be a callable taking the objective, got str"),
    (lambda: EvaluateEvery(2, lambda objective: 0.0, name=""), "name must be a non-empty string"),
    (lambda: EarlyStopping("fit", patience=True), "EarlyStopping patience must be a positive integer, got True"),
    (lambda: EarlyStopping("fit", patience=1.5), "got 1.5"),
    (lambda: EarlyStopping("fit", min_delta=-0.1), "EarlyStopping min_delta must be a finite number >= 0, got -0.1"),
    (lambda: EarlyStopping("fit", min_delta=float("nan")), "min_delta must be a finite number >= 0, got nan"),
    (lambda: EarlyStopping(3), "EarlyStopping monitor must be a metric or player name, got 3"),
])
def test_callback_options_are_checked(build, match):
    """Before, True and 2.5 were taken as counts (every step; steps 5, 10, ...), a NaN min_delta meant the
    metric never improved, and a string fn failed only at the first evaluation."""
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        build()


def _counting_evaluator(x, y, every=3, name="mse"):
    calls = []

    def mse(objective):
        calls.append(1)
        return ((objective.module(x) - y) ** 2).mean().item()

    return EvaluateEvery(every, mse, name=name), calls


def test_a_misspelt_monitor_is_refused_once_every_evaluator_has_logged():
    """Before, the name was checked only at the end of the run, after all its steps (here 200)."""
    x, y = regression_data()
    evaluate, calls = _counting_evaluator(x, y, every=3)
    with pytest.raises(ConfigError, match=r"monitored 'msee', which is neither a logged metric \['mse'\] "
                                          r"nor a player \['fit'\]"):
        fit(LinearRegression(), (x, y), batch_size=16, epochs=50, progress=False, seed=0,
            callbacks=[evaluate, EarlyStopping("msee")])
    assert len(calls) == 1  # step 4: one step after the evaluator's first evaluation


def test_a_monitor_no_callback_can_log_is_refused_before_the_first_step():
    objective = LinearRegression()
    before = [p.detach().clone() for p in objective.module.parameters()]
    with pytest.raises(ConfigError, match=r"monitors 'val', which is not a player \['fit'\], and no callback"):
        fit(objective, regression_data(), batch_size=16, epochs=5, progress=False, seed=0,
            callbacks=[EarlyStopping("val")])
    assert all(torch.equal(a, b) for a, b in zip(before, objective.module.parameters()))


def test_an_evaluator_after_the_stopper_and_a_users_callback_are_not_refused_early():
    """An EvaluateEvery listed after the EarlyStopping logs a step later: still in time.  A callback of
    the user's may log the metric itself, so with one the name is checked at the end only."""
    x, y = regression_data()
    evaluate, _ = _counting_evaluator(x, y, every=1)
    _, result, _ = _run()  # the reference: the evaluator first
    late = fit(LinearRegression(), (x, y), batch_size=16, epochs=50, progress=False, seed=0,
               callbacks=[EarlyStopping("mse", patience=2), evaluate],
               optim=functools.partial(torch.optim.SGD, lr=0.2))
    assert late.stopped_early and late.steps == result.steps + 1  # it sees each evaluation a step later
    counter = Counter()
    with pytest.raises(ConfigError, match="monitored 'msee'"):
        fit(LinearRegression(), (x, y), batch_size=16, epochs=2, progress=False, seed=0,
            callbacks=[_counting_evaluator(x, y, every=1)[0], EarlyStopping("msee"), counter])
    assert counter.count == 8  # every step ran: 2 epochs of 4 batches


def test_callbacks_reused_in_a_fresh_fit_start_afresh():
    """Before, a second fit with the same EarlyStopping and EvaluateEvery objects (no checkpoint) kept the
    first run's best value, bad rounds and count of values seen, and stopped at once."""
    x, y = regression_data()
    values = iter([5.0, 4.0, 4.5, 4.6] + [9.0, 8.0, 7.0, 6.0, 5.0, 4.5, 4.2, 4.1, 4.0, 3.9])
    evaluate = EvaluateEvery(1, lambda obj: next(values), name="score")
    stopper = EarlyStopping("score", patience=2)
    options = dict(batch_size=16, progress=False, seed=0, callbacks=[evaluate, stopper],
                   optim=functools.partial(torch.optim.SGD, lr=0.01))
    first = fit(LinearRegression(), (x, y), epochs=50, max_steps=10, **options)
    assert first.stopped_early and first.steps == 4
    second = fit(LinearRegression(), (x, y), epochs=50, max_steps=10, **options)
    assert not second.stopped_early and second.steps == 10
    assert stopper.state_dict() == {"best": 3.9, "bad_rounds": 0, "seen": 10}
    assert [step for step, _ in second.history.metrics["score"]] == list(range(1, 11))


def test_an_evaluation_that_draws_random_numbers_does_not_change_the_trained_model():
    """EvaluateEvery isolated modes and gradients but not the RNGs: a Monte Carlo metric (a VAE's ELBO) moved
    torch's stream, so fit(seed=1) trained a different model with the callback than without it."""
    import random

    import numpy as np

    from hybridpgm.generative import VAE
    from hybridpgm.infer import SVIObjective

    x = (torch.rand(32, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()

    def run(with_callback):
        torch.manual_seed(0)
        vae = VAE(6, 2, hidden=[4])

        def evaluate(objective):
            np.random.rand(), random.random()  # the other streams fit seeds are left alone too
            return {"elbo": float(vae.elbo(x[:4]).mean())}

        callbacks = [EvaluateEvery(2, evaluate)] if with_callback else []
        fit(SVIObjective(vae.model, vae.guide), x, epochs=3, batch_size=8, seed=1, progress=False,
            optim=functools.partial(torch.optim.Adam, lr=0.01), callbacks=callbacks)
        after = torch.rand(()), np.random.rand(), random.random()  # where training left the streams
        return torch.cat([p.detach().flatten() for p in vae.parameters()]), after

    (plain, plain_after), (evaluated, evaluated_after) = run(False), run(True)
    assert torch.equal(plain, evaluated)
    assert torch.equal(plain_after[0], evaluated_after[0]) and plain_after[1:] == evaluated_after[1:]
