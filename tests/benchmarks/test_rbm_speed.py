"""The RBM speed benchmark's two hand-written references compute the same CD-1 update."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from rbm_speed import HandWrittenCD1, HandWrittenCD1WithOptimizer  # noqa: E402


def test_the_optimizer_reference_applies_the_written_out_update():
    x = (torch.rand(50, 20, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    written, optimized = HandWrittenCD1(x, 7, 10, 0.1, 0), HandWrittenCD1WithOptimizer(x, 7, 10, 0.1, 0)
    start = written.w.clone()
    for step in range(3):  # the same random draws for both
        torch.manual_seed(step)
        written()
        torch.manual_seed(step)
        optimized()
    assert not torch.equal(written.w, start)  # the steps moved the weights
    for mine, theirs in zip((written.w, written.b, written.c), optimized.params):
        torch.testing.assert_close(mine, theirs.detach(), rtol=0, atol=1e-6)


def test_the_bare_hybridpgm_loop_applies_the_same_update_from_the_gradients_written_out():
    from rbm_speed import HybridpgmLoop

    x = (torch.rand(50, 20, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    written, ours = HandWrittenCD1(x, 7, 10, 0.1, 0), HybridpgmLoop(x, 7, 10, 0.1, 0)
    rbm = ours.objective.model
    with torch.no_grad():
        rbm.weight.copy_(written.w)
    assert torch.equal(ours.order, written.order)  # the same batches
    for step in range(3):
        torch.manual_seed(step)
        written()
        torch.manual_seed(step)
        ours()
    for mine, theirs in zip((written.w, written.b, written.c), (rbm.weight, rbm.visible_bias, rbm.hidden_bias)):
        torch.testing.assert_close(mine, theirs.detach(), rtol=0, atol=1e-6)


def test_the_epoch_interleaved_protocol_times_every_loop_once_a_round(tmp_path):
    import json

    from rbm_speed import main, parse_args

    out = tmp_path / "epochs.json"
    # the bundled digits: the protocol is the same on any data, and Fashion-MNIST's 70,000 images took most of
    # the test's time to read (and skipped it where the Debian package is not installed)
    main(parse_args(["--interleave", "epoch", "--dataset", "digits", "--num-examples", "300", "--hidden", "8",
                     "--rounds", "3", "--out", str(out)]))
    record = json.loads(out.read_text())
    assert record["benchmark"] == "rbm_speed_epochs" and record["config"]["steps_per_epoch"] == 3
    times = record["epoch_seconds_all"]
    assert set(times) == {"hybridpgm_fit", "hand_written_torch", "hand_written_torch_optim", "hybridpgm_loop",
                          "sklearn"}
    assert all(len(t) == 3 and min(t) > 0 for t in times.values())
    hand = sorted(times["hand_written_torch"])[1]
    assert record["ratio_hybridpgm_fit_over_hand_written_epoch"] == sorted(times["hybridpgm_fit"])[1] / hand


def test_the_fit_epoch_equivalent_counts_the_first_step_once(tmp_path):
    """fit's per-call overhead holds its first (untimed) step, so the epoch-equivalent adds the median step
    for the other ``steps - 1`` steps only."""
    import json

    import pytest

    from rbm_speed import main, parse_args

    out = tmp_path / "steps.json"
    main(parse_args(["--dataset", "digits", "--num-examples", "300", "--hidden", "8", "--rounds", "2",
                     "--skip-sklearn", "--out", str(out)]))  # the bundled digits, as above
    record = json.loads(out.read_text())
    steps = record["config"]["steps_per_epoch"]
    assert record["steps_timed_each"]["hybridpgm_fit"] == 2 * (steps - 1)
    assert record["steps_timed_each"]["hand_written_torch"] == 2 * steps
    fit = record["epoch_seconds_equivalent"]["hybridpgm_fit"]
    expected = (steps - 1) * record["step_ms_median"]["hybridpgm_fit"] / 1000 + record["fit_call_overhead_s_median"]
    assert fit == pytest.approx(expected, rel=1e-12)
