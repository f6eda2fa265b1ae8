"""``global_factor`` on 2 ranks (hybridpgm/infer/global_share.py): the ridge term counts once per update, as in one
process on the ranks' rows together, where a plain ``pyro.factor`` counts once per rank.

Measured (3 epochs of SGD, 16 rows, 4 per rank): ``global_factor`` within 2e-7 of one process of 8 rows; a plain
``pyro.factor`` 0.057 away.  tests/infer/test_global_share_factor.py checks ``accumulate``; this is the share's
:math:`R` (:math:`m_i / (B R)`).
"""

import functools
import os
import subprocess
import sys
from pathlib import Path

import torch

from hybridpgm import SVIObjective, fit
from tests.infer.test_global_share_factor import Regularised, _data

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "infer" / "global_factor_rank_worker.py"


def fitted(marked: bool, batch: int) -> torch.Tensor:
    """The ridge-regularised weights after 3 epochs of SGD on batches of ``batch`` rows (per rank)."""
    m = Regularised(marked)
    fit(SVIObjective(m.model, m.guide), _data(), epochs=3, batch_size=batch,
        optim=functools.partial(torch.optim.SGD, lr=0.05), progress=False, seed=0)
    return m.w.detach().clone()


def test_a_global_factor_counts_once_per_update_over_two_ranks(tmp_path):
    out = tmp_path / "ranks.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", HYBRIDPGM_DIST_TIMEOUT="60", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(WORKER), str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = torch.load(out, weights_only=True)
    one = fitted(True, 8)
    torch.testing.assert_close(ranks["global_factor"], one, rtol=1e-6, atol=1e-6)
    assert (ranks["pyro_factor"] - one).abs().max() > 1e-2  # the marking is what counts it once per update
