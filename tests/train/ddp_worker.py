"""Worker launched by tests/train/test_distributed.py under torchrun (gloo, CPU).

    torchrun --standalone --nproc_per_node=2 tests/train/ddp_worker.py MODE OUT [CHECKPOINT]
"""

import functools
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hybridpgm import SVIObjective, fit  # noqa: E402
from tests.train.helpers import LinearRegression, NoiseAsDataVAE, TwoPlayer, regression_data, vae_data  # noqa: E402

SGD = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)


def vae_objective():
    torch.manual_seed(0)
    vae = NoiseAsDataVAE(12, 3, (8,))
    return vae, SVIObjective(vae.model, vae.guide)


def run(mode, batch, checkpoint=None, max_steps=None, callbacks=()):
    """The runs compared by the tests; ``batch`` is per rank."""
    common = dict(progress=False, seed=3, checkpoint=checkpoint, max_steps=max_steps, callbacks=callbacks)
    if mode == "vae":
        vae, objective = vae_objective()
        fit(objective, vae_data(), epochs=2, batch_size=batch, optim=functools.partial(torch.optim.Adam, lr=1e-2),
            checkpoint_every=1 if checkpoint else None, **common)
        return vae.state_dict()
    if mode == "two_player":
        objective = TwoPlayer()
        fit(objective, regression_data(d_in=3), epochs=2, batch_size=batch, optim=SGD, **common)
        return objective.module.state_dict()
    if mode == "accumulate":
        objective = LinearRegression()
        fit(objective, regression_data(), epochs=2, batch_size=batch, accumulate=4, optim=SGD, **common)
        return objective.module.state_dict()
    raise ValueError(mode)


class KillRank:
    def __init__(self, rank, step):
        self.rank, self.step = rank, step

    def on_step_end(self, info):
        if info.step == self.step and int(os.environ.get("RANK", 0)) == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)


def main(mode, out, checkpoint=None):
    if mode == "all":
        results = {m: run(m, 8) for m in ("vae", "two_player", "accumulate")}
    elif mode == "vae_part":  # stop after 3 of 8 steps, leaving a checkpoint
        results = {"vae": run("vae", 8, checkpoint=checkpoint, max_steps=3)}
    elif mode == "vae_resume":
        results = {"vae": run("vae", 8, checkpoint=checkpoint)}
    elif mode == "vae_kill":
        results = {"vae": run("vae", 8, checkpoint=checkpoint, callbacks=[KillRank(1, 5)])}
    elif mode == "mismatch":
        results = {"x": run("two_player", 8 + int(os.environ["RANK"]))}
    else:
        raise ValueError(mode)
    if int(os.environ.get("RANK", 0)) == 0:
        torch.save(results, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
