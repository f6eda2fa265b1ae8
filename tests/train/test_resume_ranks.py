"""A resume under torchrun where the ranks ask for different seeds (hybridpgm/train/trainer.py: fit;
hybridpgm/train/distributed.py: DistributedContext.agree_on_seed), launched with torchrun on 2 CPU processes.

Found by an audit: each rank laid out the epochs of a resume with ``override_hyperparameters=True`` from the
seed it had asked for, and only then took rank 0's.  A rank asking for the checkpoint's seed went on with the
interrupted epoch (drawn from rank 0's new seed) while the other started the next one: in the first resumed
epoch the ranks' shards overlapped and left examples out.  Every rank now takes rank 0's seed before any layout
is made, and lays the epochs out as rank 0 does.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hybridpgm.train.batches import BatchStream, TensorData
from hybridpgm.train.distributed import DistributedContext
from hybridpgm.train.checkpoint import load_checkpoint
from tests.train.resume_seed_worker import B, CASES, FIRST, LAST, N

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "train" / "resume_seed_worker.py"


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Each rank's steps, per case of the worker, and the folder of the checkpoints."""
    folder = tmp_path_factory.mktemp("seeds")
    env = dict(os.environ, OMP_NUM_THREADS="1", HYBRIDPGM_DIST_TIMEOUT="60", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
               str(folder / "out"), str(folder)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(folder / f"out.rank{r}", weights_only=True) for r in (0, 1)], folder


@pytest.mark.parametrize("case, layout, note", [
    ("new_seed_on_rank_0", (FIRST, 1), "rank 0's new seed: the rest of epoch 0 is skipped on both ranks"),
    ("new_seed_on_rank_1", (0, 0), "rank 0 keeps the checkpoint's seed: epoch 0 goes on, on both ranks")])
def test_ranks_asking_for_different_seeds_resume_with_rank_0s_seed_and_layout(ranks, case, layout, note):
    """Before, in ``new_seed_on_rank_0`` rank 1 went on with epoch 0 at step 2 (from seed 1's order) while rank
    0 started epoch 1: epoch 0 took examples 2, 6, 11 and 20 twice and 16 others never; in ``new_seed_on_rank_1``
    rank 1 alone skipped the rest of epoch 0 (12 of its examples never seen) and ran an epoch ahead of rank 0."""
    runs, folder = ranks
    seed = CASES[case][0]  # rank 0's
    data = TensorData(torch.arange(N))
    by_epoch = {}
    for rank, run in enumerate(runs):
        streams = {"first": BatchStream(data, B, seed=0, rank=rank, world_size=2),
                   "resumed": BatchStream(data, B, seed=seed, rank=rank, world_size=2, layout=layout)}
        for part in ("first", "resumed"):
            steps = run[case][part]
            assert [s for s, _, _ in steps] == list(range(*((0, FIRST) if part == "first" else (FIRST, LAST))))
            for step, epoch, seen in steps:
                assert seen == streams[part].batch(step).tolist(), (note, rank, part, step)
                assert epoch == streams[part].epoch_of(step), (note, rank, part, step)
                by_epoch.setdefault(epoch, []).extend(seen)
    # the ranks' shards of each epoch are disjoint, and the whole epoch (0, or 1 from its start) takes every example
    assert all(len(set(seen)) == len(seen) for seen in by_epoch.values()), note
    whole = 1 if layout[0] == FIRST else 0
    assert sorted(by_epoch[whole]) == list(range(N)), note
    saved = load_checkpoint(folder / f"{case}.pt")
    assert saved["seed"] == seed and tuple(saved["epoch_layout"]) == layout and saved["step"] == LAST


@pytest.mark.parametrize("sent, mine", [(5, None), (None, 5), (2**32 - 1, 0), (0, 3)])
def test_agree_on_seed_takes_rank_0s_seed_or_its_none(monkeypatch, sent, mine):
    """Rank 0's ``None`` (no seed asked for: a resume takes the checkpoint's) is every rank's ``None``."""
    cpu, box = torch.device("cpu"), []
    monkeypatch.setattr(torch.distributed, "broadcast", lambda t, src: box.append((t.clone(), src)))
    assert DistributedContext(rank=0, world_size=2, device=cpu).agree_on_seed(sent) == sent
    monkeypatch.setattr(torch.distributed, "broadcast", lambda t, src: t.copy_(box[0][0]))  # what rank 0 sent
    assert DistributedContext(rank=1, world_size=2, device=cpu).agree_on_seed(mine) == sent and box[0][1] == 0
    assert DistributedContext().agree_on_seed(None) is None and DistributedContext().agree_on_seed(7) == 7
