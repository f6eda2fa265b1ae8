"""Plots of nothing are refused as the other plot functions refuse empty input (audit_empty: an empty history
and a chain of no positions drew empty figures, with matplotlib's warnings)."""

import warnings

import pytest
import torch

from hybridpgm.diagnostics.plots import plot_loss_curves, plot_sequence_marginals
from hybridpgm.errors import DataError
from hybridpgm.train import History


def test_a_history_of_no_steps_is_refused():
    with pytest.raises(DataError, match=r"plot_loss_curves got a history of no steps \(History\(no steps\)\)"):
        plot_loss_curves(History())
    empty_player = History(loss={"elbo": []})
    with pytest.raises(DataError, match="no loss or metric to plot"):
        plot_loss_curves(empty_player)
    metric_only = History()
    metric_only.log_metric("eval", 1, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(plot_loss_curves(metric_only).axes[0].get_lines()) == 1  # a metric alone is drawn


@pytest.mark.parametrize("shape", [(0, 2), (3, 0), (0, 0)])
def test_marginals_of_no_positions_or_labels_are_refused(shape):
    with pytest.raises(DataError, match=rf"marginals must be T x L with at least one position and one label, got "
                                        rf"shape \({shape[0]}, {shape[1]}\)"):
        plot_sequence_marginals(torch.ones(shape))


def test_a_loss_of_one_step_is_drawn_as_a_point():
    """A history of one step (``fit(max_steps=1)``, ``hybridpgm train dkl --epochs 1``) drew each loss as a line of
    one point with no marker: nothing visible (audit of degenerate sizes, session 37); longer runs stay lines."""
    one = History(loss={"elbo": [1.5]}, step=[1])
    (line,) = plot_loss_curves(one).axes[0].get_lines()
    assert list(line.get_xdata()) == [1] and line.get_marker() == "o"
    two = History(loss={"elbo": [1.5, 1.2]}, step=[1, 2])
    assert plot_loss_curves(two).axes[0].get_lines()[0].get_marker() in (None, "None", "")
