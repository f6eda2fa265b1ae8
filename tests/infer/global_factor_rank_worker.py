"""Worker launched by tests/infer/test_global_share_factor_ranks.py under torchrun (2 ranks, gloo, CPU):

    torchrun --standalone --nproc_per_node=2 tests/infer/global_factor_rank_worker.py OUT

Fits :class:`tests.infer.test_global_share_factor.Regularised` with its ridge term as ``global_factor`` and as a
plain ``pyro.factor``, 4 rows per rank, and writes rank 0's weights to ``OUT``."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.infer.test_global_share_factor_ranks import fitted  # noqa: E402

if __name__ == "__main__":
    results = {"global_factor": fitted(True, 4), "pyro_factor": fitted(False, 4)}
    if int(os.environ["RANK"]) == 0:
        torch.save(results, sys.argv[1])
