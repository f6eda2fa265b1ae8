"""Worker of tests/train/test_distributed_checks.py under torchrun (2 gloo ranks): what fit refuses on several
ranks (hybridpgm/train/distributed_checks.py).  Writes ``OUT.rank<R>``: case -> ``"ErrorType: message"`` or
``"ok"``.

    torchrun --standalone --nproc_per_node=2 tests/train/ddp_refusals_worker.py OUT
"""

import functools
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hybridpgm import fit  # noqa: E402
from tests.train.helpers import LinearRegression, regression_data  # noqa: E402

SGD = functools.partial(torch.optim.SGD, lr=0.1)


class Embedded:
    """An embedding table; ``sparse_module``: an ``nn.Embedding(sparse=True)``, else a plain parameter read with
    ``F.embedding(..., sparse=True)`` in the loss (a sparse gradient no module declares)."""

    def __init__(self, sparse_module):
        torch.manual_seed(0)
        self.sparse_module = sparse_module
        self.module = torch.nn.ModuleDict({"emb": torch.nn.Embedding(10, 2, sparse=sparse_module)})

    def players(self):
        return {"fit": list(self.module.parameters())}

    def loss(self, player, batch):
        weight = self.module["emb"].weight
        rows = self.module["emb"](batch) if self.sparse_module else torch.nn.functional.embedding(batch, weight,
                                                                                                   sparse=True)
        return rows.pow(2).mean()


def outcome(run):
    try:
        run()
        return "ok"
    except Exception as error:  # noqa: BLE001 - the type and message are what the test checks
        return f"{type(error).__name__}: {error}"


def regression(data=None, **options):
    fit(LinearRegression(), regression_data(n=16) if data is None else data, epochs=1, batch_size=4, optim=SGD,
        progress=False, seed=0, **options)


def main(out):
    rank = int(os.environ["RANK"])
    x, y = regression_data(n=16)
    own = (x[8 * rank:8 * rank + 8], y[8 * rank:8 * rank + 8])  # each rank its own shard, of one size
    results = {
        "device_cpu": outcome(lambda: regression(device="cpu")),
        "device_bogus": outcome(lambda: regression(device="bogus")),
        "device_cuda": outcome(lambda: regression(device="cuda")),
        "own_shards": outcome(lambda: regression(own)),
        "sparse_module": outcome(lambda: fit(Embedded(True), torch.arange(10), epochs=1, batch_size=2, optim=SGD,
                                             progress=False, seed=0)),
        "sparse_loss": outcome(lambda: fit(Embedded(False), torch.arange(10), epochs=1, batch_size=2, optim=SGD,
                                           progress=False, seed=0)),
    }
    torch.save(results, f"{out}.rank{rank}")


if __name__ == "__main__":
    main(*sys.argv[1:])
