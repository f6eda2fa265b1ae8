"""Data-parallel scaling, memory saved by accumulation, and all-reduce counts.

1. **Throughput**: examples/s of the VAE under ``hybridpgm.fit`` with 1 and 2
   processes (``torchrun``; gloo on CPU, NCCL on GPUs), one thread each.
2. **Memory**: activation memory of a training step at batch K in one pass,
   as M accumulated micro-batches, and with activation checkpointing: on CPU
   the bytes autograd saves for backward in the largest micro-batch (unique
   storages, via ``saved_tensors_hooks``; the process's peak RSS is recorded
   too but glibc's allocator makes it noisy), on GPU
   ``torch.cuda.max_memory_allocated``.  A fresh process per configuration.
3. **All-reduce calls per optimizer step** with M micro-batches: hybridpgm's
   ``fit`` (one flattened gradient all-reduce per player per step), against a
   plain ``DistributedDataParallel`` loop with and without ``no_sync()``
   (counted with a DDP communication hook).

Results go to ``results/ddp_scaling.json``.

    python benchmarks/ddp_scaling.py
    python benchmarks/ddp_scaling.py --steps 5 --memory-batch 1024   # quick
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker_throughput(args) -> None:
    import hybridpgm
    from hybridpgm.train.distributed import current

    context = current()
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((args.batch_size * args.steps * 2, 784), 0.3))
    vae = hybridpgm.VAE(784, 50, [400])
    objective = hybridpgm.SVIObjective(vae.model, vae.guide)
    hybridpgm.fit(objective, x, batch_size=args.batch_size, max_steps=2, progress=False, seed=0)  # warm-up
    start = time.perf_counter()
    hybridpgm.fit(objective, x, batch_size=args.batch_size, max_steps=args.steps, progress=False, seed=1)
    seconds = time.perf_counter() - start
    if context.is_main:
        examples = args.batch_size * args.steps * context.world_size
        print(json.dumps({"processes": context.world_size, "examples_per_s": examples / seconds}))


class SavedForBackward:
    """Wraps an objective; records the bytes autograd saves for backward in
    each micro-batch's loss (unique storages): the activation memory."""

    def __init__(self, inner):
        self.inner, self.module, self.peak_bytes = inner, inner.module, 0

    def players(self):
        return self.inner.players()

    def loss(self, player, batch):
        seen: dict[int, int] = {}

        def pack(t):
            if isinstance(t, torch.Tensor) and not isinstance(t, torch.nn.Parameter):
                storage = t.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = self.inner.loss(player, batch)
        self.peak_bytes = max(self.peak_bytes, sum(seen.values()))
        return loss


def worker_memory(args) -> None:
    import hybridpgm

    device = hybridpgm.train.device.resolve_device(args.device)
    torch.manual_seed(0)
    vae = hybridpgm.VAE(784, 50, [args.hidden] * 3, checkpoint_activations=args.checkpoint_activations)
    x = torch.bernoulli(torch.full((args.memory_batch, 784), 0.3))
    objective = SavedForBackward(hybridpgm.SVIObjective(vae.model, vae.guide))
    optim = functools.partial(torch.optim.SGD, lr=1e-3)
    hybridpgm.fit(objective, x[:8], batch_size=8, max_steps=1, progress=False, seed=0, device=device, optim=optim)
    objective.peak_bytes = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.max_memory_allocated() / 2**20
    base_rss = _rss_mb()
    hybridpgm.fit(objective, x, batch_size=args.memory_batch, accumulate=args.accumulate, max_steps=2,
                  progress=False, seed=0, device=device, optim=optim)
    result = {"saved_for_backward_mb": objective.peak_bytes / 2**20,
              "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss}
    if device.type == "cuda":
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20 - base
    print(json.dumps(result))


def worker_allreduce(args) -> None:
    import torch.distributed as dist

    import hybridpgm
    from hybridpgm.train import distributed
    from hybridpgm.train.distributed import current

    context = current()
    calls = {"hybridpgm": 0}
    original = distributed.DistributedContext.all_reduce_gradients

    def counting(self, params):
        calls["hybridpgm"] += 1
        return original(self, params)

    distributed.DistributedContext.all_reduce_gradients = counting
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((256, 784), 0.3))
    vae = hybridpgm.VAE(784, 50, [400])
    hybridpgm.fit(hybridpgm.SVIObjective(vae.model, vae.guide), x, batch_size=64, accumulate=args.accumulate,
                  max_steps=2, progress=False, seed=0)
    per_step = calls["hybridpgm"] / 2

    # reference: a plain DDP loop over the same micro-batches, with and without no_sync
    torch.manual_seed(0)
    net = torch.nn.parallel.DistributedDataParallel(hybridpgm.nn.mlp([784, 400, 784]))
    counted = {"n": 0}

    def hook(state, bucket):
        counted["n"] += 1
        return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda f: f.value()[0])

    net.register_comm_hook(None, hook)
    results = {}
    for use_no_sync in (False, True):
        counted["n"] = 0
        for m, micro in enumerate(x[:64].chunk(args.accumulate)):
            last = m == args.accumulate - 1
            ctx = net.no_sync() if (use_no_sync and not last) else torch.enable_grad()
            with ctx:
                net(micro).pow(2).mean().backward()
        results["ddp_no_sync" if use_no_sync else "ddp_without_no_sync"] = counted["n"]
    if context.is_main:
        print(json.dumps({"accumulate": args.accumulate, "hybridpgm_gradient_allreduces_per_step": per_step,
                          "ddp_bucket_allreduces_per_step_without_no_sync": results["ddp_without_no_sync"],
                          "ddp_bucket_allreduces_per_step_with_no_sync": results["ddp_no_sync"]}))


def _last_json(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"worker printed no result:\n{output[-3000:]}")
    return json.loads(lines[-1])


def _launch(worker: str, processes: int, extra: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    script = [str(HERE / "ddp_scaling.py"), "--worker", worker, *extra]
    if processes == 1 and worker != "allreduce":
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   *script]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return _last_json(proc.stdout)


def main(args) -> dict:
    sys.path.insert(0, str(HERE))
    from common import write_result

    common = ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    throughput = {n: _launch("throughput", n, common)["examples_per_s"] for n in (1, 2)}
    memory = []
    for accumulate in args.accumulate:
        for ckpt in (False, True):
            extra = ["--memory-batch", str(args.memory_batch), "--accumulate", str(accumulate),
                     "--hidden", str(args.hidden), "--device", args.device]
            extra += ["--checkpoint-activations"] if ckpt else []
            memory.append({"accumulate": accumulate, "checkpoint_activations": ckpt, **_launch("memory", 1, extra)})
    key = "cuda_max_allocated_mb" if "cuda_max_allocated_mb" in memory[0] else "saved_for_backward_mb"
    one_pass = next(m[key] for m in memory if m["accumulate"] == 1 and not m["checkpoint_activations"])
    for m in memory:
        m["reduction_vs_one_pass"] = one_pass / max(m[key], 1e-9)
    allreduce = _launch("allreduce", 2, ["--accumulate", str(max(args.accumulate))])
    payload = {
        "backend": "nccl" if torch.cuda.is_available() else "gloo",
        "model": "VAE 784-400-50 (throughput), 784-(hidden x3)-50 (memory)",
        "throughput_examples_per_s": {str(k): v for k, v in throughput.items()},
        "scaling_2_over_1": throughput[2] / throughput[1],
        "memory": memory,
        "memory_batch": args.memory_batch,
        "memory_measure": key,
        "allreduce_per_optimizer_step": allreduce,
    }
    write_result("ddp_scaling", payload, args.out)
    return payload


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["throughput", "memory", "allreduce"], default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--memory-batch", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--accumulate", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--checkpoint-activations", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker is None:
        main(arguments)
    else:
        if isinstance(arguments.accumulate, list):
            arguments.accumulate = arguments.accumulate[0]
        {"throughput": worker_throughput, "memory": worker_memory, "allreduce": worker_allreduce}[arguments.worker](
            arguments)
