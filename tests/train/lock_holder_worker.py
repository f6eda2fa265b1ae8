"""Worker launched by tests/train/test_checkpoint_lock.py: a ``fit`` that holds its checkpoint.

    python tests/train/lock_holder_worker.py CHECKPOINT FOLDER (wait | kill)

After its first step (checkpointed: ``checkpoint_every=1``) it touches ``FOLDER/started``, then either waits for
``FOLDER/go`` and finishes (``wait``), or kills itself with SIGKILL (``kill``: the run a node's OOM killer or a
scheduler ends without a grace period).
"""

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hybridpgm import fit  # noqa: E402
from tests.train.helpers import LinearRegression, regression_data  # noqa: E402

checkpoint, folder, how = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


class Hold:
    def on_step_end(self, info):
        if info.step != 1:
            return
        (folder / "started").touch()
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        deadline = time.monotonic() + 300
        while not (folder / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.02)


fit(LinearRegression(), regression_data(), checkpoint=checkpoint, checkpoint_every=1, epochs=2, batch_size=16,
    progress=False, seed=0, callbacks=[Hold()])
