import numpy as np
import pytest
import torch

from hybridpgm.diagnostics.plots import plot_coverage, plot_image_grid, plot_khat, plot_log_weights, plot_loss_curves
from hybridpgm.errors import DataError
from hybridpgm.train import History


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_plot_writes_a_png(tmp_path):
    history = History()
    for step in range(1, 5):
        history.record(step, {"wake": 1.0 / step, "sleep": 2.0 / step}, float(step), 10.0)
    history.log_metric("eval", 4, 0.5)
    paths = [
        plot_loss_curves(history, tmp_path / "loss.png"),
        plot_image_grid(torch.rand(10, 64), (8, 8), tmp_path / "grid.png", title="t"),
        plot_khat(np.array([0.1, 0.6, 0.9]), tmp_path / "khat.png"),
        plot_log_weights(torch.randn(200), tmp_path / "lw.png"),
        plot_coverage(torch.randn(100), torch.zeros(100), torch.ones(100), tmp_path / "cov.png"),
    ]
    assert all(_is_png(p) and p.stat().st_size > 1000 for p in paths)


@pytest.mark.parametrize("call", [
    lambda p: plot_image_grid(torch.rand(3, 10), (8, 8), p),
    lambda p: plot_log_weights(torch.zeros(1), p),
    lambda p: plot_coverage(torch.zeros(3), torch.zeros(2), torch.ones(3), p),
])
def test_bad_shapes_are_named(call, tmp_path):
    with pytest.raises(DataError):
        call(tmp_path / "x.png")
