"""benchmarks/gp_scaling.py times fit's steps between device synchronisations, not off ``history.wall_time``."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gp_scaling  # noqa: E402

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
)


def test_each_step_is_timed_after_a_device_synchronisation(monkeypatch):
    """One synchronisation before the first step and one after each step, every one before the clock is read;
    the median is taken over the clock's steps after the warm-up ones."""
    events = []
    monkeypatch.setattr(gp_scaling, "_sync", lambda device: events.append(("sync", device)))
    ticks = iter(range(1000))

    def clock():  # 0, 1, 3, 6, 10: steps of 1, 2, 3, 4 seconds
        events.append(("clock", None))
        t = next(ticks)
        return t * (t + 1) / 2

    monkeypatch.setattr(gp_scaling, "_clock", clock)
    args = gp_scaling.parse_args(["--sizes", "32", "--grid-size", "16", "--iters", "3", "--warmup", "1",
                                  "--window", "4"])
    per_step = gp_scaling.seconds_per_iteration(32, args.grid_size, args)
    assert per_step == 3.0  # the median of the clock's steps after the warm-up one (2, 3, 4 s; 2.5 with it)
    assert events == [("sync", torch.device("cpu")), ("clock", None)] * 5


def test_the_clock_synchronises_cuda_and_leaves_the_cpu_alone(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    gp_scaling._sync(torch.device("cpu"))
    assert synced == []
    gp_scaling._sync(torch.device("cuda", 0))
    assert synced == [torch.device("cuda", 0)]


def test_the_clock_follows_the_resolved_device(monkeypatch):
    """``--device auto`` is resolved before timing (the clock needs a device to wait for)."""
    seen = []
    monkeypatch.setattr(gp_scaling, "_sync", lambda device: seen.append(device))
    args = gp_scaling.parse_args(["--sizes", "16", "--grid-size", "16", "--iters", "1", "--warmup", "0",
                                  "--window", "4", "--device", "auto"])
    assert gp_scaling.seconds_per_iteration(16, args.grid_size, args) > 0
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert seen and all(device.type == expected.type for device in seen)
