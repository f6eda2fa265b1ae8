"""Pieces shared by the deep-kernel models: the exact GP over features, the
default kernels, input checks and the prediction record (the grid scaling:
:mod:`hybridpgm.gp.grid_scaling`)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import gpytorch
import torch

from hybridpgm.checks import as_integer, unit_fraction
from hybridpgm.data.validation import as_model_dtype, defer_finite
from hybridpgm.errors import DataError, DeviceError, ModelSpecError
from hybridpgm.gp.grid_scaling import RunningScaleToGrid, ScaleToGrid  # noqa: F401 (their former home: pickles)
from hybridpgm.portable_result import PortableResult
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["FeatureGP", "GPPrediction", "check_gp_dtype", "check_grid_bounds", "check_inputs", "check_module",
           "check_inputs_deferred", "check_targets", "check_training_batch", "default_kernel", "extractor_input_dtype",
           "grid_kernel"]

#: KISS-GP grids with more points than this are refused (memory ~ grid points).
MAX_GRID_POINTS = 2**20


class GPPrediction(NamedTuple):
    """Predictive distribution of the targets at test inputs (shapes ``n``).

    ``to``, ``cpu`` and ``to_dict`` are :class:`~hybridpgm.portable_result.PortableResult`'s (a NamedTuple takes
    no base class).

    :param mean: the predictive means, ``n``.
    :param variance: the predictive variances, ``n``.
    """

    mean: torch.Tensor
    variance: torch.Tensor

    to = PortableResult.to
    cpu = PortableResult.cpu
    to_dict = PortableResult.to_dict

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.clamp_min(0).sqrt()

    def interval(self, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """Central Gaussian interval ``(lower, upper)`` of probability ``level``.

        :param float level: a number strictly between 0 and 1.
        :raises ConfigError: ``level`` is not a number in ``(0, 1)`` (a string, a ``bool``, NaN or a tensor of
            several levels refused)."""
        level = unit_fraction(level, "GPPrediction.interval level")
        z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2)).item()
        return self.mean - z * self.stddev, self.mean + z * self.stddev


class FeatureGP(gpytorch.models.ExactGP):
    """An exact GP whose inputs are already features ``n x F``:
    :math:`f \\sim \\mathcal{GP}(m(h), k(h, h'))`.

    The data it is conditioned on (``train_inputs``/``train_targets``, set by ``set_train_data``: the training
    features that :meth:`DeepKernelGP.condition <hybridpgm.gp.DeepKernelGP.condition>` gives it) are not part of
    the state dict.  ``gp.to("meta")`` keeps their shapes only, and ``to_empty`` plus ``load_state_dict`` do not
    bring their values back: from that move until ``set_train_data`` (``model.condition()`` of the deep-kernel
    model, once its own data are set again) a posterior call in eval mode raises :class:`DataError` instead of
    conditioning on whatever memory ``to_empty`` handed out.  Train mode and ``gpytorch.settings.prior_mode`` do
    not read those data and work as before.

    :param likelihood: the GPyTorch likelihood of the targets.
    :param mean: the GPyTorch mean function :math:`m` on features.
    :param kernel: the GPyTorch kernel :math:`k` on features.
    """

    def __init__(self, likelihood: gpytorch.likelihoods.Likelihood, mean: gpytorch.means.Mean,
                 kernel: gpytorch.kernels.Kernel):
        super().__init__(None, None, likelihood)
        self.mean_module = mean
        self.covar_module = kernel
        self._conditioning_lost = False  # True once the conditioning data went to the meta device

    def forward(self, h: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        """Prior over the latent function at features ``h``: an MVN of mean :math:`m(h)` and covariance
        :math:`k(h, h)`.

        :param h: features ``n x F``.
        """
        return gpytorch.distributions.MultivariateNormal(self.mean_module(h), self.covar_module(h))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """GPyTorch's call (the prior in train mode, the posterior in eval mode).

        :raises DataError: in eval mode (outside ``prior_mode``), when the conditioning data went to the meta
            device and were not set again since."""
        if (getattr(self, "_conditioning_lost", False) and not self.training
                and not gpytorch.settings.prior_mode.on()):
            raise DataError("FeatureGP's (model.gp's) conditioning data (the training features model.condition() "
                            "gave it) were moved to the meta device, which holds no values, and are not part of the "
                            "state dict, so to_empty and load_state_dict do not bring them back; give the model its "
                            "training data (model.set_train_data(x, y)) and call model.condition() again")
        return super().__call__(*args, **kwargs)

    def _apply(self, fn):
        """GPyTorch's ``_apply`` (``to``, ``to_empty``, ...), which moves the conditioning data too, recording a
        move of them to the meta device."""
        result = super()._apply(fn)
        data = [*(self.train_inputs or ()), *([self.train_targets] if self.train_targets is not None else [])]
        if any(t.is_meta for t in data):
            self._conditioning_lost = True
        return result

    def set_train_data(self, inputs: Any = None, targets: Any = None, strict: bool = True) -> None:
        """GPyTorch's ``set_train_data``; inputs and targets given together clear the refusal of data lost to the
        meta device (one of them alone leaves the other's lost values in place).

        :param inputs: the new training features ``n x F`` (a tensor or a tuple of one), or ``None`` to keep them.
        :param targets: the new training targets ``n``, or ``None`` to keep them.
        :param strict: refuse inputs or targets of another shape, dtype or device than the current ones (default
            ``True``; GPyTorch's check).
        """
        super().set_train_data(inputs, targets, strict)
        if inputs is not None and targets is not None:
            self._conditioning_lost = False


def check_grid_bounds(grid_bounds: Any) -> tuple[float, float]:
    """``grid_bounds`` as ``(lower, upper)``: two finite reals with ``lower < upper``.

    :raises ModelSpecError: otherwise, naming the value given.
    """
    try:
        lower, upper = (float(b) for b in grid_bounds)
        ok = (not any(isinstance(b, (bool, str, bytes)) for b in grid_bounds) and math.isfinite(lower)
              and math.isfinite(upper) and lower < upper)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ModelSpecError(f"grid_bounds must be (lower, upper) with finite lower < upper, got {grid_bounds!r}")
    return lower, upper


def check_module(value: Any, kind: type, what: str) -> Any:
    """Raise :class:`ModelSpecError` unless ``value`` is ``None`` or a ``kind`` (a GPyTorch kernel, mean,
    likelihood); a ``kind`` class given for an instance is named, with the call to make one."""
    if value is not None and not isinstance(value, kind):
        if isinstance(value, type) and issubclass(value, kind):
            raise ModelSpecError(f"{what} is the class {value.__name__}, not an instance: pass {value.__name__}(...)")
        got = f"the class {value.__qualname__}" if isinstance(value, type) else type(value).__name__
        raise ModelSpecError(f"{what} must be a {kind.__module__}.{kind.__qualname__}, got {got}")
    return value


def default_kernel(num_features: int, grid_size: int | None,
                   grid_bounds: tuple[float, float]) -> gpytorch.kernels.Kernel:
    """``ScaleKernel(RBF)`` with one lengthscale per feature; under KISS-GP
    (``grid_size`` given) it is the base kernel of a
    :class:`~gpytorch.kernels.GridInterpolationKernel` on a fixed grid over
    ``grid_bounds`` in every one of the ``F`` feature dimensions, the layout of
    GPyTorch's own deep-kernel example:

    .. math::

        K \\approx W \\Bigl(\\bigotimes_{d=1}^{F} s\\, T_d\\Bigr) W^\\top
          = s^F \\, W \\Bigl(\\bigotimes_{d=1}^{F} T_d\\Bigr) W^\\top ,

    with :math:`T_d` the Toeplitz RBF matrix of grid axis :math:`d`: GPyTorch
    evaluates the base kernel one grid axis at a time and takes the Kronecker
    product, so the outputscale :math:`s` multiplies each axis's ``m``-point
    Toeplitz column and the prior variance is :math:`s^F` (``s`` itself for one
    feature).  The other layout, ``ScaleKernel(GridInterpolationKernel(RBF))``
    (prior variance :math:`s`, the same family of matrices), wraps the
    Kronecker operator in a lazy constant multiple whose outputscale
    derivative costs one more grid-space (FFT) product per backward pass and
    whose row fetches (for the pivoted-Cholesky preconditioner) pass one more
    operator layer: about 15% of a DKL training iteration (``benchmarks/dkl_step.py``).
    A fixed grid also spares the per-call bounds check (two device-host
    synchronisations) of a grid fitted to the data.

    :raises ModelSpecError: a ``grid_size`` that is not an integer, below 4 or too large for ``num_features``,
        or ``grid_bounds`` that are not finite ``(lower, upper)`` with ``lower < upper``.
    """
    base = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=num_features))
    return base if grid_size is None else grid_kernel(base, num_features, grid_size, grid_bounds)


def grid_kernel(base: gpytorch.kernels.Kernel, num_features: int, grid_size: Any,
                grid_bounds: Any) -> gpytorch.kernels.Kernel:
    """KISS-GP with base kernel ``base``:
    ``GridInterpolationKernel(base, grid_size, num_dims=F, grid_bounds=[grid_bounds] * F)`` on a fixed grid.

    A ``base`` that already holds a grid (a :class:`~gpytorch.kernels.GridKernel`, e.g. a
    ``ScaleKernel(GridInterpolationKernel(...))`` built by hand) is returned as given when that grid is fixed
    (not fitted to the data) with ``grid_size`` points per feature over ``grid_bounds``.

    :raises ModelSpecError: a ``grid_size`` that is not an integer, below 4 or too large for ``num_features``,
        ``grid_bounds`` that are not finite ``(lower, upper)`` with ``lower < upper``, a ``base`` kernel that is
        not stationary (GPyTorch's grid evaluates it as a Toeplitz matrix), or one holding a grid of another
        size or bounds.
    """
    if as_integer(grid_size) is None:
        raise ModelSpecError(f"grid_size (KISS-GP grid points per feature) must be an integer >= 4, got {grid_size!r}")
    grid_size = as_integer(grid_size)
    grid_bounds = check_grid_bounds(grid_bounds)
    if grid_size < 4 or grid_size ** num_features > MAX_GRID_POINTS:
        raise ModelSpecError(f"KISS-GP grid of {grid_size}^{num_features} points is not usable "
                             f"(need grid_size >= 4 and at most {MAX_GRID_POINTS} points); reduce the number "
                             "of features (KISS-GP suits 1-3) or the grid size")
    grids = [m for m in base.modules() if isinstance(m, gpytorch.kernels.GridKernel)]
    if grids:
        wanted = ([grid_size] * num_features, [grid_bounds] * num_features)
        for grid in grids:
            found = (list(getattr(grid, "grid_sizes", [])),
                     [tuple(float(b) for b in bounds) for bounds in getattr(grid, "grid_bounds", [])])
            if getattr(grid, "grid_is_dynamic", True) or found != wanted:
                raise ModelSpecError(
                    f"kernel holds a {type(grid).__name__} with grid sizes {found[0]} over {found[1]}, but "
                    f"grid_size={grid_size} and grid_bounds={grid_bounds} ask for {wanted[0]} over {wanted[1]} "
                    "(a fixed grid); pass the base kernel and let grid_size build the grid, or drop grid_size")
        return base
    if not base.is_stationary:
        raise ModelSpecError(f"kernel {type(base).__name__} is not stationary, so grid_size={grid_size} cannot "
                             "interpolate it from a KISS-GP grid (GPyTorch's grid kernel needs a stationary "
                             "base kernel such as RBF, Matern or their ScaleKernel); drop grid_size for an exact GP")
    return gpytorch.kernels.GridInterpolationKernel(base, grid_size=grid_size, num_dims=num_features,
                                                    grid_bounds=[tuple(grid_bounds)] * num_features)


def check_gp_dtype(dtype: torch.dtype, what: str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``what`` if a GP would compute in ``dtype`` and that is a 16-bit float: its Cholesky
    factors and solves need float32 or float64 (torch has no 16-bit Cholesky on the CPU, and in 16 bits a kernel
    matrix is not even numerically positive definite).  Low precision is for the network, under autocast."""
    if dtype in (torch.float16, torch.bfloat16):
        raise error(f"{what} has dtype {dtype}: the GP would compute in it, and its Cholesky factors and solves "
                    "need float32 or float64; build the model from float32 data (x.float(), y.float()) and train "
                    'with hybridpgm.fit(..., precision="bf16" or "fp16"), which runs the network in 16 bits and '
                    "keeps the GP in float32")


def _check_place(t: torch.Tensor, name: str, dtype: torch.dtype | None, device: torch.device | None,
                 widen: bool = False, defer: bool = False) -> torch.Tensor:
    """``t`` on ``device`` and of ``dtype`` (each when given): ``t`` itself, or with ``widen`` and a floating
    ``dtype`` its exact conversion by :func:`~hybridpgm.data.validation.as_model_dtype` (``bool``, integers in
    range, a coarser float; ``defer``: its integer range flag read with :func:`hybridpgm.fit`'s step)."""
    if device is not None and t.device != torch.device(device):
        raise DeviceError(f"{name} is on {t.device}, the model on {device}; move it with .to({str(device)!r})")
    if dtype is not None and t.dtype != dtype:
        if widen and dtype.is_floating_point:
            return as_model_dtype(t, dtype, name, defer=defer)
        raise DataError(f"{name} has dtype {t.dtype}, expected {dtype} (the model's data); convert it with "
                        f".to({dtype}) or convert the model, rather than have it rounded or cast silently")
    return t


def check_targets(y: torch.Tensor, n: int, name: str = "train_y", finite: bool = True,
                  dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Raise unless ``y`` is a floating vector of length ``n`` (of ``dtype`` and on ``device`` when given, and
    finite with ``finite``).

    :raises DataError: a wrong shape or dtype (integer and ``bool`` targets are refused), or NaN/inf values.
    :raises DeviceError: ``y`` is not on ``device``.
    """
    if require_tensor(y, name).dim() != 1 or y.shape[0] != n:
        raise DataError(f"{name} has shape {tuple(y.shape)}, expected ({n},)")
    if not y.is_floating_point():
        raise DataError(f"{name} has dtype {y.dtype}, expected a floating dtype (regression targets); "
                        f"convert it with .to({dtype or torch.get_default_dtype()})")
    _check_place(y, name, dtype, device)
    if finite and not bool(torch.isfinite(y).all()):
        raise DataError(f"{name} (shape {tuple(y.shape)}) holds {int((~torch.isfinite(y)).sum())} NaN/inf value(s)")
    return y


def check_inputs(x: torch.Tensor, example_shape: tuple[int, ...] | None, name: str = "x",
                 finite: bool = True, dtype: torch.dtype | None = None,
                 device: torch.device | None = None, *, widen: bool = False, defer: bool = False) -> torch.Tensor:
    """Raise unless ``x`` is ``N x example_shape`` (of ``dtype`` and on ``device`` when given, and finite with
    ``finite``); return ``x``.

    With ``widen`` (test inputs of a model) and a floating ``dtype``, ``x`` of another dtype is converted where
    that is exact, the library's dtype rule (:func:`~hybridpgm.data.validation.as_model_dtype`: ``bool``,
    integers within :math:`\\pm 2^p`, float32 into a float64 model) and the converted copy returned; float64 data
    for a float32 model stay refused.  ``defer`` reads the integers' range flag with :func:`hybridpgm.fit`'s step.

    :raises DataError: a wrong shape or dtype, or NaN/inf values; a 1-d ``x`` with a message saying that it is
        ambiguous (``N`` one-feature points or one example) and showing ``x[:, None]`` and ``x[None]``.
    :raises DeviceError: ``x`` is not on ``device``.
    """
    if require_tensor(x, name).dim() < 2:
        n = x.shape[0] if x.dim() == 1 else 0
        one = (f": a 1-d input is ambiguous ({n} one-feature points, or one example of {n} features), so a GP "
               "takes no example without its batch dimension; pass x[:, None] for the points, x[None] for the one "
               "example") if x.dim() == 1 else ""
        raise DataError(f"{name} has shape {tuple(x.shape)}, expected (N, ...) with at least two dimensions{one}")
    if example_shape is not None and tuple(x.shape[1:]) != tuple(example_shape):
        one = (": one example without its batch dimension; pass x[None]"
               if tuple(x.shape) == tuple(example_shape) else "")
        raise DataError(f"{name} has shape {tuple(x.shape)}, expected (N, {', '.join(map(str, example_shape))})"
                        f"{one}")
    x = _check_place(x, name, dtype, device, widen, defer)
    if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise DataError(f"{name} (shape {tuple(x.shape)}) holds {int((~torch.isfinite(x)).sum())} NaN/inf value(s)")
    return x


def check_training_batch(x: torch.Tensor, y: torch.Tensor, example_shape: tuple[int, ...],
                         dtype: torch.dtype | None = None, device: torch.device | None = None) -> None:
    """:func:`check_inputs` and :func:`check_targets` of one training batch: the
    shapes at once, the finiteness of both as one flag, which inside
    :func:`hybridpgm.fit`'s step joins the step's single host read
    (:func:`~hybridpgm.train.deferred_checks.check_or_defer`) and elsewhere
    costs one synchronisation.  A failure raises the per-tensor check's
    :class:`DataError` (naming ``x`` or ``y``, its shape and NaN/inf count).
    The shape, dtype and device checks (free) also refuse an empty batch, on which the
    marginal likelihood per example is NaN.

    :raises DataError: a wrong shape or dtype, an empty batch, or NaN/inf values.
    :raises DeviceError: ``x`` or ``y`` is not on ``device``."""
    from hybridpgm.train.deferred_checks import check_or_defer

    check_inputs(x, example_shape, "x", finite=False, dtype=dtype, device=device)
    check_targets(y, x.shape[0], "y", finite=False, dtype=x.dtype if x.is_floating_point() else None,
                  device=x.device)
    if x.shape[0] == 0:
        raise DataError(f"x has shape {tuple(x.shape)}: an empty batch (the marginal likelihood needs examples)")
    finite = torch.isfinite(y).all()
    if x.is_floating_point():
        finite = finite & torch.isfinite(x).all()

    def named_error() -> Exception:
        check_inputs(x, example_shape, "x")
        check_targets(y, x.shape[0], "y")
        return DataError(f"x {tuple(x.shape)} or y {tuple(y.shape)} is not finite")  # not reached: a check raised

    check_or_defer(finite, named_error, "x or y holds NaN or inf")


def check_inputs_deferred(x: torch.Tensor, example_shape: tuple[int, ...] | None, name: str = "x",
                          dtype: torch.dtype | None = None, device: torch.device | None = None, *,
                          widen: bool = False) -> torch.Tensor:
    """:func:`check_inputs` whose finiteness check waits for :func:`hybridpgm.fit`'s one host read per step
    (:func:`~hybridpgm.train.deferred_checks.check_or_defer`; outside ``fit`` it reads at once), as does the
    range check of integers converted with ``widen``.  The shape, dtype and device checks are free and raise at
    once.  Returns ``x``, with ``widen`` converted as :func:`check_inputs` converts it.

    :raises DataError: a wrong shape or dtype, or NaN/inf values (named as :func:`check_inputs` names them).
    :raises DeviceError: ``x`` is not on ``device``.
    """
    x = check_inputs(x, example_shape, name, finite=False, dtype=dtype, device=device, widen=widen, defer=True)
    return defer_finite(x, name)


def extractor_input_dtype(extractor: torch.nn.Module, gp_dtype: torch.dtype) -> torch.dtype:
    """The floating dtype inputs of ``extractor`` are converted to (where exact): its floating parameters' one dtype
    (an extractor that computes in another dtype than the GP and casts its features), else ``gp_dtype`` (no
    parameters: the identity; parameters of several dtypes)."""
    dtypes = {p.dtype for p in extractor.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else gp_dtype
