"""Worker launched by tests/train/test_resume_ranks.py under torchrun (gloo, CPU).

    torchrun --standalone --nproc_per_node=2 tests/train/resume_seed_worker.py OUT FOLDER

For each case of :data:`CASES`, every rank trains 2 steps with seed 0 (a checkpoint in ``FOLDER``), then resumes
with ``override_hyperparameters=True`` asking for its own seed (the ranks differ) and runs to step 7.  Each rank
writes ``OUT.rank<R>``: per case, the examples (their index: the data are ``0..N-1``) and the epoch of each step.
"""

import functools
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hybridpgm import fit  # noqa: E402

N, B = 40, 4  # 2 ranks of 20 examples: 5 steps an epoch
FIRST, LAST = 2, 7  # the checkpoint's step, and the step the resumed run ends at

#: case -> the seed each rank asks for on the resume (the checkpoint's is 0)
CASES = {"new_seed_on_rank_0": (1, 0), "new_seed_on_rank_1": (0, 1)}


class Seen:
    """One player; records the examples of each loss call."""

    def __init__(self):
        torch.manual_seed(0)
        self.module, self.seen = torch.nn.Linear(1, 1), []

    def players(self):
        return {"m": list(self.module.parameters())}

    def loss(self, player, batch):
        self.seen.append([int(v) for v in batch[:, 0]])
        return self.module(batch).pow(2).mean()


class Epochs:
    def __init__(self):
        self.epochs = []

    def on_step_end(self, info):
        self.epochs.append(info.epoch)


def run(checkpoint, seed, max_steps, **options):
    """``(step, epoch, examples)`` of each step the run took."""
    objective, log = Seen(), Epochs()
    result = fit(objective, torch.arange(float(N)).unsqueeze(1), batch_size=B, seed=seed, max_steps=max_steps,
                 checkpoint=checkpoint, progress=False, callbacks=[log], collective_timeout=30.0,
                 optim=functools.partial(torch.optim.SGD, lr=0.01), **options)
    first = result.steps - len(objective.seen)
    return [(first + i, epoch, seen) for i, (epoch, seen) in enumerate(zip(log.epochs, objective.seen))]


def main(out, folder):
    rank = int(os.environ["RANK"])
    results = {}
    for case, seeds in CASES.items():
        checkpoint = Path(folder) / f"{case}.pt"
        first = run(checkpoint, 0, FIRST)
        resumed = run(checkpoint, seeds[rank], LAST, override_hyperparameters=True)
        results[case] = {"first": first, "resumed": resumed}
    torch.save(results, f"{out}.rank{rank}")


if __name__ == "__main__":
    main(*sys.argv[1:])
