import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from hybridpgm.diagnostics.plots import plot_coverage, plot_image_grid, plot_khat, plot_log_weights, plot_loss_curves
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.train import History


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _history():
    history = History()
    for step in range(1, 5):
        history.record(step, {"wake": 1.0 / step, "sleep": 2.0 / step, "elbo": 3.0 / step}, float(step), 10.0)
    history.log_metric("eval", 4, 0.5)
    return history


PLOTS = {
    "loss": lambda p: plot_loss_curves(_history(), p),
    "grid": lambda p: plot_image_grid(torch.rand(10, 64), (8, 8), p, title="t"),
    "khat": lambda p: plot_khat(np.array([0.1, 0.6, 0.9]), p),
    "log_weights": lambda p: plot_log_weights(torch.randn(200), p),
    "coverage": lambda p: plot_coverage(torch.randn(100), torch.zeros(100), torch.ones(100), p),
}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_every_plot_returns_a_figure_and_writes_only_when_given_a_path(name, tmp_path):
    fig = PLOTS[name](None)
    assert isinstance(fig, Figure) and fig.axes
    assert not list(tmp_path.iterdir())
    path = tmp_path / f"{name}.png"
    assert isinstance(PLOTS[name](path), Figure)
    assert _is_png(path) and path.stat().st_size > 1000
    nested = tmp_path / "new" / "folder" / f"{name}.png"  # before, matplotlib's raw FileNotFoundError
    PLOTS[name](nested)
    assert _is_png(nested)


@pytest.mark.parametrize("name", sorted(PLOTS) + ["sequence_marginals"])
def test_every_plot_is_an_image_in_ipython_without_the_inline_backend(name):
    """Before, IPython showed these pyplot-less figures as '<Figure size ...>' unless %matplotlib inline ran."""
    from IPython.core.formatters import DisplayFormatter

    from hybridpgm.diagnostics.plots import plot_sequence_marginals

    fig = plot_sequence_marginals(torch.full((4, 3), 1 / 3), [0, 1, 2, 0]) if name == "sequence_marginals" \
        else PLOTS[name](None)
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n" and data["text/plain"].startswith("<Figure size")


def test_loss_legend_names_the_player_not_a_quantity_unless_told():
    """Found by an audit: every "elbo" curve was labelled "loss = -ELBO (nats per example)", false for a
    BayesianRegressor trained with per_example=False (the whole data set's -ELBO), for IWAE and VIMCO (the
    negative importance-weighted bound) and others.  The default names the player only; the caller who knows
    the quantity passes ``labels``."""
    labels = [t.get_text() for t in plot_loss_curves(_history()).axes[0].get_legend().get_texts()]
    assert labels == ["wake loss (as recorded by fit)", "sleep loss (as recorded by fit)",
                      "elbo loss (as recorded by fit)", "eval"]
    told = plot_loss_curves(_history(), labels={"elbo": "-L_5, nats per example"})
    assert [t.get_text() for t in told.axes[0].get_legend().get_texts()] == \
        ["wake loss (as recorded by fit)", "sleep loss (as recorded by fit)", "-L_5, nats per example", "eval"]


def test_plotting_changes_no_matplotlib_state():
    code = ("import matplotlib, torch; before = matplotlib.get_backend(); "
            "import matplotlib.pyplot as plt; n = len(plt.get_fignums()); "
            "from hybridpgm.diagnostics.plots import plot_image_grid; plot_image_grid(torch.rand(4, 64), (8, 8)); "
            "assert matplotlib.get_backend() == before and len(plt.get_fignums()) == n, (before, n)")
    subprocess.run([sys.executable, "-c", code], check=True, env={"MPLBACKEND": "svg", "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("call", [
    lambda p: plot_image_grid(torch.rand(3, 10), (8, 8), p),
    lambda p: plot_log_weights(torch.zeros(1), p),
    lambda p: plot_coverage(torch.zeros(3), torch.zeros(2), torch.ones(3), p),
])
def test_bad_shapes_are_named(call, tmp_path):
    with pytest.raises(DataError):
        call(tmp_path / "x.png")


def test_image_grid_of_no_images_is_named():
    with pytest.raises(DataError, match="at least one image, got shape \\(0, 64\\)"):
        plot_image_grid(torch.zeros(0, 64), (8, 8))


@pytest.mark.parametrize("std, match", [(np.full(5, -1.0), "5 of 5 are not \\(first at index 0: -1.0\\)"),
                                        (np.array([1.0, 1.0, 0.0, 1.0, 1.0]), "1 of 5 are not \\(first at index 2"),
                                        (np.array([1.0, np.nan, 1.0, 1.0, 1.0]), "first at index 1: nan")])
def test_coverage_refuses_a_std_that_is_not_positive(std, match):
    with pytest.raises(DataError, match=match):
        plot_coverage(np.zeros(5), np.zeros(5), std)


def test_coverage_of_no_points_is_named():
    with pytest.raises(DataError, match="at least one point"):
        plot_coverage([], [], [])


@pytest.mark.parametrize("labels, match", [(["a", "b", "c"], "labels must be integers, got list"),
                                           (torch.tensor([0.0, 1.0, 2.0]), "integers, got dtype torch.float32"),
                                           ([0, 1, 3], "must lie in \\[0, 3\\).*from 0 to 3"),
                                           ([0, -1, 2], "from -1 to 2")])
def test_sequence_marginals_refuse_labels_that_are_not_label_indices(labels, match):
    from hybridpgm.diagnostics.plots import plot_sequence_marginals

    with pytest.raises(DataError, match=match):
        plot_sequence_marginals(torch.full((3, 3), 1 / 3), labels=labels)


@pytest.mark.parametrize("log_weights, match", [([0.0, float("nan"), 1.0], "1 NaN, 0 \\+inf and 2 finite of 3"),
                                                ([0.0, float("inf")], "0 NaN, 1 \\+inf"),
                                                ([float("-inf")] * 3, "0 finite of 3")])
def test_log_weights_plot_refuses_nan_inf_and_all_zero(log_weights, match):
    with pytest.raises(DataError, match=match):
        plot_log_weights(log_weights)


def test_tensors_that_require_grad_are_plotted():
    """plot_log_weights and plot_coverage called .numpy() on the tensors as given, which fails for one that
    requires grad (a GP's predictive mean outside no_grad, IWAE log-weights) as for one on CUDA."""
    g = torch.Generator().manual_seed(0)
    lw = torch.randn(40, generator=g, dtype=torch.float64).requires_grad_()
    assert isinstance(plot_log_weights(lw), Figure)
    y, mean = torch.randn(30, generator=g), torch.randn(30, generator=g).requires_grad_()
    assert isinstance(plot_coverage(y, mean, torch.ones(30).requires_grad_()), Figure)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="plots CUDA tensors")
def test_cuda_tensors_are_plotted():
    g = torch.Generator().manual_seed(0)
    assert isinstance(plot_log_weights(torch.randn(40, generator=g).cuda()), Figure)
    y, mean = torch.randn(30, generator=g).cuda(), torch.randn(30, generator=g).cuda()
    assert isinstance(plot_coverage(y, mean, torch.ones(30).cuda()), Figure)


@pytest.mark.parametrize("name", ["y", "mean"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_coverage_refuses_y_or_mean_that_is_not_finite(name, bad):
    """Before, NaN in y or mean counted as a point outside every interval: half the y NaN gave a coverage of
    0.498 at 0.99 where the finite half gives 0.996, without a word."""
    rng = np.random.default_rng(0)
    args = {"y": rng.normal(size=1000), "mean": np.zeros(1000)}
    args[name][:500] = bad
    with pytest.raises(DataError, match=rf"{name} must be finite; 500 of 1000 are not \(first at index 0: {bad}\)"):
        plot_coverage(args["y"], args["mean"], np.ones(1000))


@pytest.mark.parametrize("khat, match", [([], "at least one k-hat, got none"),
                                         ([np.nan, np.nan], "got 2 k-hat\\(s\\), all NaN")])
def test_khat_plot_refuses_no_k_hats(khat, match):
    """Before, an empty figure came back without a word."""
    with pytest.raises(DataError, match=match):
        plot_khat(khat)


def test_khat_plot_names_nan_k_hats_and_draws_infinite_ones_at_the_edges():
    with pytest.warns(UserWarning, match=r"1 of 4 k-hats are NaN \(first at index 1\); they are not drawn"):
        fig = plot_khat([0.2, np.nan, -np.inf, np.inf])
    ax = fig.axes[0]
    assert "1 NaN k-hat(s) not drawn" in ax.get_xlabel()
    points = np.concatenate([np.asarray(c.get_offsets()) for c in ax.collections])
    points = points[np.argsort(points[:, 0])]
    # the finite k-hat; -inf below it and 0, +inf above it and the 0.7 threshold
    np.testing.assert_allclose(points, [[0.0, 0.2], [2.0, -0.1], [3.0, 0.8]])


def _tiles(fig, n, image_shape, columns):
    """The ``n`` images of ``plot_image_grid``'s one mosaic, read at their places (row by row, ``columns`` per
    row) with the separator width the mosaic's size gives; its gaps and empty cells checked NaN."""
    (ax,) = fig.axes
    (image,) = ax.images
    mosaic = np.ma.filled(image.get_array().astype(float), np.nan)
    (h, w), rows = image_shape, -(-n // columns)
    pad = (mosaic.shape[1] - columns * w) // max(columns - 1, 1)
    assert mosaic.shape == (rows * (h + pad) - pad, columns * (w + pad) - pad)
    tiles, seen = [], np.zeros(mosaic.shape, bool)
    for i in range(rows * columns):
        r, c = divmod(i, columns)
        at = (slice(r * (h + pad), r * (h + pad) + h), slice(c * (w + pad), c * (w + pad) + w))
        seen[at] = i < n
        if i < n:
            tiles.append(mosaic[at])
    assert np.isnan(mosaic[~seen]).all()
    return tiles


def test_image_grid_takes_array_likes():
    """Before, a NumPy array gave a raw AttributeError ('numpy.ndarray' object has no attribute 'detach')."""
    images = np.linspace(0, 1, 3 * 16).reshape(3, 16)
    for value in (images, images.tolist(), images > 0.5):
        shown = _tiles(plot_image_grid(value, (4, 4)), 3, (4, 4), 2)
        np.testing.assert_allclose(shown[2], np.asarray(value, dtype=float)[2].reshape(4, 4))
    with pytest.raises(DataError, match="images must be a tensor or an array of numbers, got list"):
        plot_image_grid([["a", "b"]], (1, 2))


@pytest.mark.parametrize("kwargs, match", [({"image_shape": 4}, r"image_shape must be a pair \(H, W\).*got 4"),
                                           ({"image_shape": (4, 4, 1)}, r"pair \(H, W\).*got \(4, 4, 1\)"),
                                           ({"image_shape": (4, 0)}, r"image_shape\[1\] must be a positive integer"),
                                           ({"image_shape": (4.0, 4)}, r"image_shape\[0\] must be a positive"),
                                           ({"columns": -1}, "columns must be a positive integer, got -1"),
                                           ({"columns": 0}, "columns must be a positive integer, got 0"),
                                           ({"columns": 1.5}, "columns must be a positive integer, got 1.5")])
def test_image_grid_refuses_a_bad_image_shape_or_columns(kwargs, match):
    """Before: a raw TypeError ('int' object is not subscriptable) for image_shape=4, and matplotlib's ValueError
    (figure size must be positive) for columns=-1."""
    kwargs = {"image_shape": (4, 4), **kwargs}
    with pytest.raises(ConfigError, match=match):
        plot_image_grid(torch.rand(3, 16), **kwargs)
    assert plot_image_grid(torch.rand(3, 16), (np.int64(4), 4), columns=np.int64(2)).axes


def test_khat_and_log_weights_plots_take_bfloat16():
    """Before: plot_khat said 'needs numbers, got Tensor (Got unsupported ScalarType BFloat16)'."""
    khat = torch.tensor([0.1, 0.6, 0.9, float("inf")]).to(torch.bfloat16)
    fig = plot_khat(khat)
    assert isinstance(fig, Figure) and len(fig.axes[0].collections) == 2  # three points, one edge marker
    assert isinstance(plot_log_weights(torch.randn(40).to(torch.bfloat16)), Figure)


@pytest.mark.parametrize("scale", ["uint8", "float255", "negative"])
def test_image_grid_refuses_grey_levels_outside_the_unit_interval(scale):
    # before, 0..255 pixels were drawn clipped at vmax=1: a white silhouette instead of the image
    grey = np.random.default_rng(0).uniform(0, 1, size=(4, 64))
    images = {"uint8": (grey * 255).astype(np.uint8), "float255": grey * 255, "negative": grey - 0.5}[scale]
    hint = r"pass images / 255" if scale != "negative" else r"dtype torch.float64\)$"
    with pytest.raises(DataError, match=r"grey levels in \[0, 1\], got values in .*" + hint):
        plot_image_grid(images, (8, 8))
    assert plot_image_grid(grey, (8, 8)).axes and plot_image_grid(np.array([[0, 1, 1, 0]], np.uint8), (2, 2)).axes


def test_image_grid_checks_the_range_of_the_pixels_other_than_nan():
    """Before, one NaN pixel made the range NaN, which compares false with 0 and 1: a 0..255 image with a NaN
    was drawn clipped (255 and 128 white) instead of refused.  NaN pixels stay allowed (drawn as gaps)."""
    with pytest.raises(DataError, match=r"got values in \[0.0, 255.0\] \(dtype torch.float32\); 8-bit pixels"):
        plot_image_grid(torch.tensor([[0.0, 255.0, 128.0, float("nan")]]), (2, 2))
    with pytest.raises(DataError, match=r"got values in \[-0.5, 0.5\]"):
        plot_image_grid(np.array([[np.nan, -0.5, 0.5, np.nan]]), (2, 2))
    drawn = plot_image_grid(torch.tensor([[0.0, 1.0, 0.25, float("nan")]]), (2, 2)).axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.ma.filled(drawn, -1.0), [[0.0, 1.0], [0.25, -1.0]])  # NaN: a masked gap
    assert plot_image_grid(torch.full((2, 4), float("nan")), (2, 2)).axes  # all gaps


def test_khat_plot_draws_the_sample_size_dependent_threshold():
    """With num_samples the lower line and the colours follow check_vi's min(1 - 1/log10 S, 0.7) (ArviZ's
    good_k): at S = 200 a k-hat of 0.55 is green and the line is at 0.565; before, the line was a fixed 0.5 and
    0.55 was orange."""
    from matplotlib.colors import to_rgba

    fig = plot_khat([0.1, 0.55, 0.65, 0.9], num_samples=200)
    ax = fig.axes[0]
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines())
    assert levels == pytest.approx([1 - 1 / np.log10(200), 0.7])
    colours = [tuple(c) for c in ax.collections[0].get_facecolors()]
    assert colours == [to_rgba(c) for c in ("tab:green", "tab:green", "tab:orange", "tab:red")]
    with pytest.raises(ConfigError, match="num_samples"):
        plot_khat([0.1], num_samples=1)


def test_image_grid_draws_many_images_as_one_image_on_one_axes():
    """Before, one matplotlib axes and imshow per image (about 20 ms each: 23 s for 1024 images, which the
    CLI's ``sample --num-samples`` draws): here 150 axes.  Now one axes and one imshow of the tiled images,
    each at its place (row by row), with thin NaN gaps (drawn in the background colour) between them."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(150, 6 * 5, generator=g, dtype=torch.float64)
    images[7, 3] = float("nan")  # a NaN pixel stays one (drawn as a gap)
    fig = plot_image_grid(images, (6, 5), title="many")
    assert len(fig.axes) == 1 and len(fig.axes[0].images) == 1 and not fig.axes[0].axison
    tiles = _tiles(fig, 150, (6, 5), 13)  # ceil(sqrt(150)) columns
    for i in range(150):
        np.testing.assert_array_equal(tiles[i], images[i].reshape(6, 5).float().numpy())  # grey levels to show
    assert fig._suptitle.get_text() == "many"
    np.testing.assert_allclose(fig.get_size_inches(), [13 * 0.8, 12 * 0.8 + 0.4])


def test_image_grid_keeps_the_columns_asked_for_and_a_gap_between_images():
    """Guard (passes before and after): ``columns`` images per row, row by row, and a gap between images."""
    images = torch.linspace(0, 1, 5 * 64).reshape(5, 64)
    fig = plot_image_grid(images, (8, 8), columns=2)
    tiles = _tiles(fig, 5, (8, 8), 2) if len(fig.axes) == 1 else [
        np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]
    assert len(tiles) == 5
    for i in range(5):
        np.testing.assert_allclose(tiles[i], images[i].reshape(8, 8).numpy(), rtol=1e-6)
    if len(fig.axes) == 1:
        mosaic = fig.axes[0].images[0].get_array()
        assert mosaic.shape[1] > 2 * 8 and np.ma.getmaskarray(mosaic)[:, 8].all()  # a gap column after column 0
    np.testing.assert_allclose(fig.get_size_inches(), [2 * 0.8, 3 * 0.8])


@pytest.mark.parametrize("num_positions, num_labels", [(2000, 10), (12, 600)])
def test_sequence_marginals_figure_is_capped_for_a_long_chain(num_positions, num_labels):
    """Before, the figure was 0.25 inch wide per position (and 0.35 high per label): 501.5 inches for T = 2000,
    410 KiB of RAM per position once drawn (6.6 GB for T = 16000).  Now its sides are capped (at 24 inches) and
    the positions share pixels: the image still holds every position's marginals, the scatter every label."""
    from hybridpgm.diagnostics.plots import plot_sequence_marginals

    g = torch.Generator().manual_seed(0)
    marginals = torch.rand(num_positions, num_labels, generator=g, dtype=torch.float64)
    labels = torch.randint(0, num_labels, (num_positions,), generator=g)
    fig = plot_sequence_marginals(marginals, labels)
    width, height = fig.get_size_inches()
    assert width <= 30 and height <= 30, (width, height)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), marginals.T.numpy())
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.stack([np.arange(num_positions), labels], 1))


def test_sequence_marginals_figure_of_a_short_chain_is_unchanged():
    """Guard (passes before and after): below the cap the figure is 0.25 inch per position + 1.5 (at least 4)
    wide and 0.35 inch per label + 1.5 high, showing the marginals as given."""
    from hybridpgm.diagnostics.plots import plot_sequence_marginals

    for length, labels in ((12, 3), (40, 5), (80, 60)):
        marginals = torch.full((length, labels), 1 / labels, dtype=torch.float64)
        fig = plot_sequence_marginals(marginals, torch.arange(length) % labels)
        np.testing.assert_allclose(fig.get_size_inches(), [max(4, 0.25 * length + 1.5), 0.35 * labels + 1.5])
        np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), marginals.T.numpy())
