"""What fit checks under torchrun (hybridpgm/train/distributed_checks.py): the collective timeout from
``HYBRIDPGM_DIST_TIMEOUT``, ``fit(device=...)``, sparse gradients and ranks passing their own shards.

Before: ``HYBRIDPGM_DIST_TIMEOUT=abc`` raised a raw ``ValueError`` and ``inf`` a raw ``OverflowError``; under 2
ranks ``device="bogus"`` and ``device="cuda"`` (no CUDA) trained on the CPU silently; a sparse gradient failed with
torch's raw "reshape is not implemented for sparse tensors"; ranks passing rows 0..7 and 8..15 trained on half of
them, sharded again.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hybridpgm.errors import ConfigError, DeviceError
from hybridpgm.train import distributed_checks
from hybridpgm.train.distributed import DistributedContext, _timeout
from hybridpgm.train.distributed_checks import (data_fingerprint, rank_device, refuse_sparse_gradients,
                                                sparse_gradient_error)

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "train" / "ddp_refusals_worker.py"


@pytest.mark.parametrize("text", ["abc", "inf", "1e400", "nan", "0", "-5", "-inf"])
def test_a_bad_timeout_variable_is_a_config_error_naming_it(monkeypatch, text):
    monkeypatch.setenv("HYBRIDPGM_DIST_TIMEOUT", text)
    with pytest.raises(ConfigError, match=f"HYBRIDPGM_DIST_TIMEOUT='{text}'"):
        _timeout(None, "gloo")


def test_the_timeout_variable_and_the_defaults_still_apply(monkeypatch):
    monkeypatch.setenv("HYBRIDPGM_DIST_TIMEOUT", "12.5")
    assert _timeout(None, "gloo") == 12.5
    assert _timeout(3, "gloo") == 3.0  # fit's own collective_timeout wins
    monkeypatch.delenv("HYBRIDPGM_DIST_TIMEOUT")
    assert _timeout(None, "gloo") == 60.0 and _timeout(None, "nccl") == 300.0
    with pytest.raises(ConfigError, match="positive finite"):
        _timeout(float("inf"), "gloo")


def test_one_process_resolves_the_device_as_before():
    assert rank_device("auto", torch.device("cpu"), 1) == torch.device("cpu")
    assert rank_device("cpu", torch.device("cpu"), 1) == torch.device("cpu")
    with pytest.raises(ConfigError, match="bogus"):
        rank_device("bogus", torch.device("cpu"), 1)


def test_a_rank_validates_the_device_and_trains_on_its_own():
    cpu = torch.device("cpu")
    assert rank_device("auto", cpu, 2) == cpu and rank_device(None, cpu, 2) == cpu and rank_device("cpu", cpu, 2) == cpu
    with pytest.raises(ConfigError, match="bogus"):
        rank_device("bogus", cpu, 2)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            rank_device("cuda", cpu, 2)


def test_a_device_contradicting_the_ranks_names_both(monkeypatch):
    monkeypatch.setattr(distributed_checks, "resolve_device", torch.device)  # as on a machine with 2 GPUs
    gpu0 = torch.device("cuda", 0)
    assert rank_device("cuda", gpu0, 2) == gpu0 and rank_device("cuda:0", gpu0, 2) == gpu0
    for asked in ("cpu", "cuda:1"):
        with pytest.raises(ConfigError, match=f"device='{asked}'.*NCCL.*'cuda:0'"):
            rank_device(asked, gpu0, 2)
    with pytest.raises(ConfigError, match="device='cuda'.*gloo.*'cpu'"):
        rank_device("cuda", torch.device("cpu"), 2)


def test_a_sparse_module_is_refused_on_several_ranks_only():
    module = torch.nn.ModuleDict({"dense": torch.nn.Embedding(4, 2), "table": torch.nn.Embedding(4, 2, sparse=True)})
    refuse_sparse_gradients(module, "M.module", 1)
    with pytest.raises(ConfigError, match=r"M.module has sparse gradients \('table': sparse=True\)"):
        refuse_sparse_gradients(module, "M.module", 2)
    refuse_sparse_gradients(torch.nn.Embedding(4, 2), "M.module", 2)


def test_a_sparse_gradient_in_the_all_reduce_names_the_parameter(monkeypatch):
    dense, table = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(5, 2))
    dense.grad = torch.ones(3)
    torch.nn.functional.embedding(torch.tensor([1, 3]), table, sparse=True).sum().backward()
    assert sparse_gradient_error([dense], 2) is None
    assert "#1 of shape (5, 2)" in str(sparse_gradient_error([dense, table], 2))
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: None)  # never reached
    with pytest.raises(ConfigError, match=r"#1 of shape \(5, 2\) \(torch.sparse_coo\) have sparse gradients"):
        DistributedContext(rank=0, world_size=2).all_reduce_gradients([dense, table])


def test_the_data_checksum_tells_own_shards_from_the_whole_data_set():
    x = torch.arange(32.0).reshape(16, 2)
    whole = torch.utils.data.TensorDataset(x, x[:, 0])
    assert data_fingerprint(whole, 1) is None  # one process reads nothing
    assert data_fingerprint(whole, 2) == data_fingerprint(torch.utils.data.TensorDataset(x.clone(), x[:, 0]), 2)
    shards = [data_fingerprint(torch.utils.data.TensorDataset(x[i:i + 8], x[i:i + 8, 0]), 2) for i in (0, 8)]
    assert shards[0] != shards[1]
    with_nan = torch.utils.data.TensorDataset(torch.full((3, 2), float("nan")))
    assert data_fingerprint(with_nan, 2) == data_fingerprint(with_nan, 2) == 0.0  # NaN != NaN would fail every run


def test_two_ranks_refuse_what_one_process_would_and_what_sharding_cannot_do(tmp_path):
    out = tmp_path / "refusals"
    env = dict(os.environ, OMP_NUM_THREADS="1", HYBRIDPGM_DIST_TIMEOUT="60", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
               str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        seen = torch.load(f"{out}.rank{rank}", weights_only=True)
        assert seen["device_cpu"] == "ok"
        assert seen["device_bogus"].startswith("ConfigError: unknown device 'bogus'")
        if not torch.cuda.is_available():
            assert seen["device_cuda"].startswith("DeviceError:")
        assert seen["own_shards"].startswith("ConfigError: ranks disagree on the configuration: data")
        assert "every rank passes the whole data set" in seen["own_shards"]
        assert seen["sparse_module"].startswith("ConfigError: Embedded.module has sparse gradients ('emb'")
        assert seen["sparse_loss"].startswith("ConfigError: the player's parameter(s) #0 of shape (10, 2)")
