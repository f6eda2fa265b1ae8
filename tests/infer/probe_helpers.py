"""Shared checks for the probe traces that guess ``max_plate_nesting``: they must leave no mark (random
state, module buffers) and log no Pyro line, so a resumed run ends as an uninterrupted one."""

import contextlib
import logging

import pyro
import torch

from hybridpgm import VAE, fit

X = torch.bernoulli(torch.full((16, 6), 0.4), generator=torch.Generator().manual_seed(0))


@contextlib.contextmanager
def pyro_elbo_log():
    """Collect the messages Pyro's ELBO logger emits at any level (it logs "Guessed max_plate_nesting")."""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler, log = Keep(level=logging.DEBUG), logging.getLogger("pyro.infer.elbo")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def guessed(records):
    return [r for r in records if "max_plate_nesting" in r]


def batch_norm_vae():
    return VAE(6, 2, [5], batch_norm=True)


def train(make_objective, path=None, max_steps=None, epochs=2):
    """Train a fresh batch-norm VAE (4 batches of 4 rows per epoch); return it and the fit result."""
    with pyro.get_param_store().scope():
        torch.manual_seed(0)
        vae = batch_norm_vae()
        result = fit(make_objective(vae), X, epochs=epochs, batch_size=4, progress=False, device="cpu", seed=0,
                     checkpoint=path, max_steps=max_steps)
    return vae, result


def whole_and_resumed(make_objective, tmp_path):
    """An uninterrupted 8-step run and one stopped after 3 steps and resumed from its checkpoint."""
    whole, _ = train(make_objective, tmp_path / "whole.pt")
    train(make_objective, tmp_path / "cut.pt", max_steps=3)
    resumed, result = train(make_objective, tmp_path / "cut.pt")
    assert result.steps == 8
    return whole, resumed


def same_state(a, b):
    """Every buffer and parameter of ``a`` and ``b`` bitwise equal."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def batches_tracked(vae):
    return {name: m.num_batches_tracked.item() for name, m in vae.named_modules()
            if isinstance(m, torch.nn.BatchNorm1d)}


def guessing_matches_given(make_objective, max_plate_nesting=1):
    """Train with ``max_plate_nesting`` guessed and given; return the two VAEs and the log of the guessing run.

    :param make_objective: ``(vae, max_plate_nesting) -> objective``.
    """
    with pyro_elbo_log() as records:
        guessing, _ = train(lambda vae: make_objective(vae, None), epochs=1)
    given, _ = train(lambda vae: make_objective(vae, max_plate_nesting), epochs=1)
    return guessing, given, records
