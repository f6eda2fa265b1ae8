"""Worker launched by tests/train/test_distributed.py under torchrun (gloo, CPU).

    torchrun --standalone --nproc_per_node=2 tests/train/ddp_worker.py MODE OUT [CHECKPOINT]

Per-rank modes (``per_rank_init``, ``sigterm_rank1``, ``pcd_resume``, ``bad_rank0``) write ``OUT.rank<R>``
on every rank.
"""

import functools
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hybridpgm import SVIObjective, fit  # noqa: E402
from tests.infer.global_share_cases import fit_regression  # noqa: E402
from tests.train.helpers import (LinearRegression, NoiseAsDataVAE, TwoPlayer, UnusedParameter,  # noqa: E402
                                 regression_data, vae_data)

SGD = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)


def vae_objective():
    torch.manual_seed(0)
    vae = NoiseAsDataVAE(12, 3, (8,))
    return vae, SVIObjective(vae.model, vae.guide)


def run(mode, batch, checkpoint=None, max_steps=None, callbacks=(), init_seed=0, lr=0.05, **options):
    """The runs compared by the tests; ``batch`` is per rank."""
    common = dict(progress=False, seed=3, checkpoint=checkpoint, max_steps=max_steps, callbacks=callbacks, **options)
    if mode == "vae":
        vae, objective = vae_objective()
        fit(objective, vae_data(), epochs=2, batch_size=batch, optim=functools.partial(torch.optim.Adam, lr=1e-2),
            checkpoint_every=1 if checkpoint else None, **common)
        return vae.state_dict()
    if mode == "two_player":
        objective = TwoPlayer()
        fit(objective, regression_data(d_in=3), epochs=2, batch_size=batch, optim=SGD, **common)
        return objective.module.state_dict()
    if mode == "unused":  # AdamW's weight decay must leave the never-used layer alone, as in one process
        objective = UnusedParameter()
        optim = functools.partial(torch.optim.AdamW, lr=0.1, weight_decay=0.5)
        fit(objective, regression_data(d_in=3), epochs=2, batch_size=batch, optim=optim, **common)
        return objective.module.state_dict()
    if mode == "accumulate":
        objective = LinearRegression(seed=init_seed)
        optim = functools.partial(torch.optim.SGD, lr=lr, momentum=0.9)
        fit(objective, regression_data(), epochs=2, batch_size=batch, accumulate=4, optim=optim, **common)
        return objective.module.state_dict()
    if mode == "lbfgs":  # every evaluation of L-BFGS's closure all-reduces, in lock-step on every rank
        objective = LinearRegression(seed=init_seed)
        objective.module.double()
        x, y = (t.double() for t in regression_data())
        optim = functools.partial(torch.optim.LBFGS, lr=0.5, max_iter=6, history_size=4)
        fit(objective, (x, y), epochs=2, batch_size=batch, optim=optim, **common)
        return objective.module.state_dict()
    if mode == "bayes_regression":  # a global latent's prior counts once per update over micro-batches and ranks
        return {"loc": fit_regression(batch, accumulate=2)}
    raise ValueError(mode)


def pcd(batch, checkpoint=None, max_steps=None):
    """PersistentCD on an RBM: each rank's persistent chains (buffers) evolve with its own shard and RNG."""
    from hybridpgm.energy import RBM
    from hybridpgm.infer import PersistentCD

    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((32, 12), 0.3), generator=torch.Generator().manual_seed(1))
    rbm = RBM(12, 6)
    with torch.no_grad():
        rbm.weight.normal_(0, 0.5)
    objective = PersistentCD(rbm, k=1, num_chains=8)
    fit(objective, x, epochs=3, batch_size=batch, max_steps=max_steps, seed=0, progress=False, checkpoint=checkpoint,
        optim=functools.partial(torch.optim.SGD, lr=0.1))
    return {k: v.clone() for k, v in objective.module.state_dict().items()}


def bad_rank0():
    """Rank 0's data fails a deferred check, then rank 0's loss alone is NaN, then (the losses finite) rank 1's
    gradient alone is NaN, then each rank's gradient is huge but finite and their sum overflows: each rank's
    error (type, message)."""
    from hybridpgm.graphs import BayesNet, cpd

    class NanOnRank0(LinearRegression):
        def loss(self, player, batch):
            loss = super().loss(player, batch)
            return loss + float("nan") if int(os.environ["RANK"]) == 0 else loss

    class NanGradientOnRank1(LinearRegression):
        def loss(self, player, batch):  # sqrt's derivative at 0 is inf, times 0: NaN, on rank 1 only
            scale = 0.0 if int(os.environ["RANK"]) == 1 else 1.0
            return super().loss(player, batch) + (self.module.weight * scale).pow(2).sum().sqrt()

    class HugeGradients(LinearRegression):
        def loss(self, player, batch):  # adds 0 to the loss and 3e38 to each weight's gradient, on every rank
            weight = self.module.weight
            return super().loss(player, batch) + 3e38 * (weight - weight.detach()).sum()

    net = BayesNet()
    net.add("a", cpd.Table([0.5, 0.5]))
    net.add("b", cpd.Table([[0.5, 0.5, 0.0], [0.3, 0.3, 0.4]], ["a"]))
    rows = torch.tensor([[0, 0], [1, 2], [0, 1], [1, 1], [0, 2], [1, 0], [0, 0], [1, 1]])  # [0, 2]: impossible
    errors = []
    for objective, data in ((SVIObjective(net.model, net.guide), rows), (NanOnRank0(), regression_data()),
                            (NanGradientOnRank1(), regression_data()), (HugeGradients(), regression_data())):
        try:
            fit(objective, data, batch_size=4, max_steps=2, seed=0, shuffle=False, progress=False)
        except Exception as error:  # noqa: BLE001 - the test reads every rank's error
            errors.append((type(error).__name__, str(error)))
    return errors


def nvil(batch, accumulate=1):
    """NVIL on a small SBN in float64, 3 steps; the guide is deterministic (encoder logits +100), so that the ranks
    and one process draw the same latents.  Its running statistics must pool the signals of every rank."""
    from hybridpgm.infer import NVIL
    from tests.generative.sbn_brute_force import binary, deterministic_guide_sbn

    sbn = deterministic_guide_sbn()
    torch.manual_seed(0)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, decay=0.5)
    fit(objective, binary(48, 6, 5).double(), epochs=1, batch_size=batch, accumulate=accumulate, progress=False,
        seed=0, optim=functools.partial(torch.optim.SGD, lr=0.05))
    return {k: v.detach().clone() for k, v in objective.module.state_dict().items()}


class KillRank:
    def __init__(self, rank, step):
        self.rank, self.step = rank, step

    def on_step_end(self, info):
        if info.step == self.step and int(os.environ.get("RANK", 0)) == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalRank:
    def __init__(self, rank, step, signum=signal.SIGTERM):
        self.rank, self.step, self.signum = rank, step, signum

    def on_step_end(self, info):
        if info.step == self.step and int(os.environ.get("RANK", 0)) == self.rank:
            os.kill(os.getpid(), self.signum)


def main(mode, out, checkpoint=None):
    rank = int(os.environ.get("RANK", 0))
    if mode == "per_rank_init":  # every rank initialises from its own seed
        torch.save({"x": run("accumulate", 8, init_seed=rank)}, f"{out}.rank{rank}")
        return
    if mode == "pcd_resume":  # uninterrupted, then 3 steps and a resume, in the same processes
        full = pcd(4)
        pcd(4, checkpoint=checkpoint, max_steps=3)
        torch.save({"full": full, "resumed": pcd(4, checkpoint=checkpoint)}, f"{out}.rank{rank}")
        return
    if mode == "bad_rank0":
        torch.save(bad_rank0(), f"{out}.rank{rank}")
        return
    if mode == "per_rank_lr":
        run("accumulate", 8, lr=0.05 * (1 + rank))
        return
    if mode == "sigterm_rank1":  # only rank 1 is signalled, in step 3
        from hybridpgm.errors import TrainingInterrupted

        try:
            run("vae", 8, checkpoint=checkpoint, callbacks=[SignalRank(1, 3)])
        except TrainingInterrupted as stop:
            torch.save({"step": stop.step, "signum": stop.signum}, f"{out}.rank{rank}")
        return
    if mode == "stall":  # rank 1 freezes in step 3; rank 0 must name it
        run("vae", 8, callbacks=[SignalRank(1, 3, signal.SIGSTOP)], collective_timeout=float(checkpoint))
        return
    if mode == "all":
        results = {m: run(m, 8) for m in ("vae", "two_player", "accumulate", "unused", "lbfgs", "bayes_regression")}
    elif mode == "vae_part":  # stop after 3 of 8 steps, leaving a checkpoint
        results = {"vae": run("vae", 8, checkpoint=checkpoint, max_steps=3)}
    elif mode == "vae_resume":
        results = {"vae": run("vae", 8, checkpoint=checkpoint)}
    elif mode == "vae_kill":
        results = {"vae": run("vae", 8, checkpoint=checkpoint, callbacks=[KillRank(1, 5)])}
    elif mode == "nvil":
        results = {"nvil": nvil(8), "nvil_acc": nvil(8, accumulate=2)}
    elif mode == "mismatch":
        results = {"x": run("two_player", 8 + int(os.environ["RANK"]))}
    elif mode == "mismatch_skip":  # a rank that skips a non-finite step would leave the others in its error path
        results = {"x": run("two_player", 8, skip_nonfinite=int(os.environ["RANK"]) == 1)}
    else:
        raise ValueError(mode)
    if int(os.environ.get("RANK", 0)) == 0:
        torch.save(results, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
