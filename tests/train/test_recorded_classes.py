"""A checkpoint's classes across a ``spawn`` boundary (hybridpgm/train/recorded_classes.py, and the records of
train/callback_states.py, train/resume.py and train/scheduler_settings.py): a callback, optimizer or scheduler class
of the script is ``__main__.<name>`` in the parent and ``__mp_main__.<name>`` in a spawn child, and a run resumes
whichever process wrote the checkpoint; a checkpoint an older release wrote in a child (``__mp_main__``) resumes in
either.  The child is faked by the class's ``__module__`` (tests/test_main_module.py runs a real one)."""

from __future__ import annotations

import functools

import torch

import hybridpgm
from hybridpgm.train.callbacks import Callback
from hybridpgm.train.recorded_classes import upgrade_class_names


def _script_classes(module: str) -> tuple[type, type, type]:
    """The callback, optimizer and scheduler classes of the script, as the process whose script is ``module``
    defines them (one qualified name in both processes)."""
    def __init__(self):
        self.steps = 0

    def on_step_end(self, info):
        self.steps += 1

    count = type("CountSteps", (Callback,), {
        "__init__": __init__, "on_step_end": on_step_end, "state_dict": lambda self: {"steps": self.steps},
        "load_state_dict": lambda self, state: setattr(self, "steps", state["steps"])})
    sgd = type("MySGD", (torch.optim.SGD,), {})
    step = type("MyStepLR", (torch.optim.lr_scheduler.StepLR,), {})
    for cls in (count, sgd, step):
        cls.__module__ = module
    return count, sgd, step


class _Regression:
    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.Linear(3, 1)

    def players(self):
        return {"mse": list(self.module.parameters())}

    def loss(self, player, batch):
        x, y = batch
        return ((self.module(x).squeeze(-1) - y) ** 2).mean()


def _train(path, epochs: int, module: str) -> int:
    count, sgd, step = _script_classes(module)
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    callback = count()
    hybridpgm.fit(_Regression(), (x, x.sum(-1)), epochs=epochs, batch_size=8, checkpoint=path, seed=0,
                  progress=False, optim=functools.partial(sgd, lr=0.1), callbacks=[callback],
                  lr_scheduler=functools.partial(step, step_size=3))
    return callback.steps


def test_a_child_resumes_the_parents_run_and_the_reverse(tmp_path):
    """Before: ``CheckpointError: ... callbacks ['__main__.CountSteps'], but this run has ...
    ['__mp_main__.CountSteps']`` (and the optimizer's and scheduler's class as other hyperparameters)."""
    for first, then in (("__main__", "__mp_main__"), ("__mp_main__", "__main__")):
        path = tmp_path / f"{first}.pt"
        assert _train(path, 1, first) == 4
        assert _train(path, 2, then) == 8
        saved = torch.load(path, weights_only=False)
        assert saved["callbacks"][0]["class"].startswith("__main__.")
        assert saved["config"]["optimizers"]["mse"]["class"].startswith("__main__.")
        assert saved["config"]["schedulers"]["mse"]["class"].startswith("__main__.")


def _as_an_older_child_wrote_it(path) -> None:
    state = torch.load(path, weights_only=False)
    for record in (state["callbacks"][0], state["config"]["optimizers"]["mse"], state["config"]["schedulers"]["mse"]):
        record["class"] = "__mp_main__." + record["class"].partition(".")[2]
    torch.save(state, path)


def test_a_checkpoint_an_older_release_wrote_in_a_child_resumes_in_a_child_and_in_the_parent(tmp_path):
    for then in ("__mp_main__", "__main__"):
        path = tmp_path / f"{then}.pt"
        _train(path, 1, "__main__")
        _as_an_older_child_wrote_it(path)
        assert _train(path, 2, then) == 8


def test_upgrade_class_names_rewrites_only_the_script_classes():
    state = {"config": {"optimizers": {"a": {"class": "__mp_main__.MySGD"}, "b": {"class": "torch.optim.sgd.SGD"}},
                        "schedulers": {"a": None, "b": {"class": "__mp_main__.Outer.Step"}}},
             "callbacks": [None, {"class": "__mp_main__.CountSteps", "state": {"class": "__mp_main__.X"}}]}
    assert upgrade_class_names(state) is state
    assert state == {"config": {"optimizers": {"a": {"class": "__main__.MySGD"},
                                               "b": {"class": "torch.optim.sgd.SGD"}},
                                "schedulers": {"a": None, "b": {"class": "__main__.Outer.Step"}}},
                     "callbacks": [None, {"class": "__main__.CountSteps", "state": {"class": "__mp_main__.X"}}]}
    for odd in (None, [], {"config": None, "callbacks": None}, {"config": {"optimizers": [1]}, "callbacks": {}}):
        assert upgrade_class_names(odd) == odd


def test_the_names_kept_for_display_name_a_child_scripts_class_as_main():
    """``FitResult``'s kept optimizer and a checkpoint's dataset entry name a class of the script as ``__main__.``
    in a spawn child as in the parent (``__mp_main__.`` before)."""
    from hybridpgm.train.dataset_states import dataset_entry
    from hybridpgm.train.history import OptimizerState

    sgd = type("ChildSGD", (torch.optim.SGD,), {"__module__": "__mp_main__"})
    kept = OptimizerState(sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    assert kept.optimizer_type == "__main__.ChildSGD"

    data = type("ChildData", (), {"__module__": "__mp_main__", "__len__": lambda self: 1,
                                  "__getitem__": lambda self, i: torch.zeros(1),
                                  "state_dict": lambda self: {}, "load_state_dict": lambda self, s: None})()
    assert dataset_entry(data, [{}])["dataset"]["class"] == "__main__.ChildData"
