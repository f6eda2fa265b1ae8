"""Script run by tests/test_main_module.py as ``python tests/main_module_worker.py FOLDER``: its classes are
``__main__.X`` here and ``__mp_main__.X`` in its ``spawn`` child, which re-runs this file under that name.

The parent saves a model and trains one epoch with a stateful callback and an optimizer of this script; the child
loads that model, saves its own and resumes the run to epoch 2; the parent loads the child's model.  Prints one
line per journey, ``ok`` or the error, and exits 0 only when all are ok.
"""

import functools
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hybridpgm  # noqa: E402
from hybridpgm.serialization import serializable  # noqa: E402
from hybridpgm.train.callbacks import Callback  # noqa: E402


@serializable
class Net(torch.nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.lin = torch.nn.Linear(2, width)

    def forward(self, x):
        return self.lin(x)


class CountSteps(Callback):
    def __init__(self):
        self.steps = 0

    def on_step_end(self, info):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class MySGD(torch.optim.SGD):
    """An optimizer class of the script."""


class Regression:
    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.Linear(3, 1)

    def players(self):
        return {"mse": list(self.module.parameters())}

    def loss(self, player, batch):
        x, y = batch
        return ((self.module(x).squeeze(-1) - y) ** 2).mean()


def train(path: str, epochs: int) -> int:
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    callback = CountSteps()
    hybridpgm.fit(Regression(), (x, x.sum(-1)), epochs=epochs, batch_size=8, checkpoint=path, seed=0,
                  progress=False, optim=functools.partial(MySGD, lr=0.1), callbacks=[callback])
    return callback.steps


def answer(path: str) -> torch.Tensor:
    return hybridpgm.load(path)(torch.ones(1, 2)).detach()


def save(model: torch.nn.Module, path: str) -> bool:
    hybridpgm.save(model, path)
    return True


def in_child(folder: str) -> dict:
    out = {"module": Net.__module__}
    for name, journey in [("child loads the parent's model", lambda: answer(os.path.join(folder, "parent.pt"))),
                          ("child saves", lambda: save(Net(4), os.path.join(folder, "child.pt"))),
                          ("child resumes the parent's run", lambda: train(os.path.join(folder, "run.pt"), 2))]:
        try:
            out[name] = journey()
        except Exception as error:  # reported to the parent, which prints it
            out[name] = f"{type(error).__name__}: {error}"
    return out


if __name__ == "__main__":
    folder = sys.argv[1]
    torch.manual_seed(0)
    hybridpgm.save(Net(3), os.path.join(folder, "parent.pt"))
    train(os.path.join(folder, "run.pt"), 1)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        child = pool.submit(in_child, folder).result()
    results = {"the child's script is __mp_main__": child["module"] == "__mp_main__",
               "child loads the parent's model": torch.is_tensor(child["child loads the parent's model"])
               and torch.equal(child["child loads the parent's model"], answer(os.path.join(folder, "parent.pt"))),
               "child resumes the parent's run": child["child resumes the parent's run"] == 8}
    try:
        answer(os.path.join(folder, "child.pt"))
        results["parent loads the child's model"] = child["child saves"] is True
    except Exception as error:
        results["parent loads the child's model"] = f"{type(error).__name__}: {error}"
    for name, ok in results.items():
        print(name, "ok" if ok is True else f"FAILED {child.get(name, ok)}")
    sys.exit(0 if all(ok is True for ok in results.values()) else 1)
