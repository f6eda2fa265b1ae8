"""Construction-time checks of a user's GPyTorch kernel and mean against the GP's features.

GPyTorch checks a kernel's ``ard_num_dims`` against its input only when the kernel is called (and only under
``gpytorch.settings.debug``; inside a :class:`~gpytorch.kernels.ScaleKernel` the base kernel's lengthscale
simply fails to broadcast), so a kernel built for another number of features used to be accepted by the
deep-kernel GPs and fail at the first marginal likelihood or prediction with GPyTorch's own message, which names
neither the kernel's place nor the feature extractor.  A batch-shaped kernel or mean (``batch_shape=[2]``) makes a
batch of GPs: a single-output GP then predicts ``(2, B)`` silently.  :func:`check_kernel_features` and
:func:`check_single_output` refuse both when the model is built.

The features a kernel sees: the GP's ``F`` features, narrowed by each kernel's ``active_dims`` on the way down
(GPyTorch selects them in :meth:`Kernel.__call__ <gpytorch.kernels.Kernel.__call__>`; a ``ScaleKernel`` takes its
base kernel's ``active_dims`` as its own).  The walk follows the kernels whose parts see their input as it is --
:class:`~gpytorch.kernels.ScaleKernel`, :class:`~gpytorch.kernels.AdditiveKernel`,
:class:`~gpytorch.kernels.ProductKernel` (``k1 + k2``, ``k1 * k2``) -- and the base kernel of a
:class:`~gpytorch.kernels.GridKernel` (KISS-GP), which sees the grid's ``num_dims``; the parts of other kernels
are left to GPyTorch.
"""

from __future__ import annotations

import gpytorch
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.gp.feature_gp import check_module

__all__ = ["check_gp_parts", "check_kernel_features", "check_single_output"]

_SAME_INPUT = (gpytorch.kernels.ScaleKernel, gpytorch.kernels.AdditiveKernel, gpytorch.kernels.ProductKernel)


def _parts(kernel: gpytorch.kernels.Kernel, path: str, width: int):
    """``(path, part, features its input has, whether the part selects its own active_dims)`` of the kernels inside
    ``kernel`` (given ``width`` features after its own selection) whose input is known (module docstring).  A
    ``ScaleKernel`` runs its base kernel's ``forward``, which skips the base's ``active_dims`` (the ``ScaleKernel``
    took them as its own and selected them already); the other parts are called, and select theirs."""
    if isinstance(kernel, gpytorch.kernels.GridKernel):
        base = getattr(kernel, "base_kernel", None)
        if isinstance(base, gpytorch.kernels.Kernel):
            yield f"{path}.base_kernel", base, kernel.num_dims, True
    elif isinstance(kernel, _SAME_INPUT):
        select = not isinstance(kernel, gpytorch.kernels.ScaleKernel)
        for name, child in kernel.named_children():
            if isinstance(child, gpytorch.kernels.Kernel):
                yield f"{path}.{name}", child, width, select
            elif isinstance(child, torch.nn.ModuleList):
                for i, k in enumerate(child):
                    if isinstance(k, gpytorch.kernels.Kernel):
                        yield f"{path}.{name}[{i}]", k, width, select


def _features(num_features: int, told: bool) -> str:
    """Where ``F`` comes from, for a message."""
    return f"num_features={num_features}" if told else f"the feature extractor gives F={num_features} features"


def _count(width: int) -> str:
    """``"1 feature"``, ``"2 features"``."""
    return f"{width} feature" + ("" if width == 1 else "s")


def check_gp_parts(kernel, mean, num_features: int, owner: str, *, told: bool = False) -> None:
    """The checks of a user's ``kernel`` and ``mean`` (``None``: the default) for a single-output GP on ``F``
    features: GPyTorch types (:func:`~hybridpgm.gp.feature_gp.check_module`), :func:`check_single_output` and
    :func:`check_kernel_features`.

    :param told: ``F`` is the model's ``num_features`` argument (else the feature extractor's output width).
    :raises ModelSpecError: as those checks do.
    """
    check_module(kernel, gpytorch.kernels.Kernel, f"{owner} kernel")
    check_module(mean, gpytorch.means.Mean, f"{owner} mean")
    check_single_output(kernel, mean, owner, num_features, told=told)
    check_kernel_features(kernel, num_features, owner, told=told)


def check_kernel_features(kernel: gpytorch.kernels.Kernel | None, num_features: int, owner: str, *,
                          told: bool = False) -> None:
    """Refuse a kernel whose ``ard_num_dims`` or ``active_dims`` do not fit the ``F = num_features`` features it
    is given, at any depth the walk reaches (module docstring): ``active_dims`` must be features ``0..w-1`` of the
    ``w`` its kernel receives, and ``ard_num_dims`` (where set) the number it then sees, ``len(active_dims)`` or
    ``w``.

    :param kernel: the user's kernel (``None``: the default, built for ``F``; nothing to check).
    :param num_features: ``F``.
    :param owner: the model's name for the message (``"DeepKernelGP"``).
    :param told: ``F`` is the model's ``num_features`` argument (else the feature extractor's output width).
    :raises ModelSpecError: naming the kernel's path (``kernel.base_kernel``, ``kernel.kernels[1]``) and class, its
        ``ard_num_dims`` or ``active_dims``, the features it sees and ``F``.
    """
    if kernel is None:
        return
    todo = [("kernel", kernel, num_features, True)]
    while todo:
        path, k, width, select = todo.pop()
        where = f"{owner} {path} ({type(k).__name__})"
        given = _features(num_features, told)
        active = getattr(k, "active_dims", None) if select else None
        if active is not None:
            dims = [int(d) for d in active.reshape(-1).tolist()]
            if any(d < 0 or d >= width for d in dims):
                raise ModelSpecError(f"{where} has active_dims {dims}, but it is given {_count(width)} "
                                     f"({given}): active_dims must be among 0..{width - 1}")
            width = len(dims)
        ard = getattr(k, "ard_num_dims", None)
        if ard is not None and ard != width:
            seen = f"active_dims {[int(d) for d in active.reshape(-1).tolist()]} select" if active is not None \
                else "it is given"
            alone = "" if ard == 1 else " or without ard_num_dims (one lengthscale)"  # a default of 1: no way out
            raise ModelSpecError(f"{where} has ard_num_dims={ard}, but {seen} {_count(width)} ({given}): "
                                 f"build it with ard_num_dims={width} (one lengthscale per feature){alone}")
        todo.extend(_parts(k, path, width))


def _path(root: str, name: str) -> str:
    """``kernel.kernels[0]`` for the module ``kernels.0`` of ``kernel`` (as :func:`_parts` names it)."""
    return root + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in name.split(".") if part)


def _batch_shape(module) -> tuple | None:
    """The batch shape of a kernel or mean, ``None`` where it says none (a ``LinearMean``: its weights')."""
    shape = getattr(module, "batch_shape", None)
    if shape is None and isinstance(module, gpytorch.means.LinearMean):
        shape = module.weights.shape[:-2]
    return None if shape is None else tuple(shape)


def check_single_output(kernel: gpytorch.kernels.Kernel | None, mean: gpytorch.means.Mean | None, owner: str,
                        num_features: int | None = None, *, told: bool = False) -> None:
    """Refuse a batch-shaped kernel (at any depth) or mean for a single-output GP, and a ``LinearMean`` whose
    ``input_size`` is not ``F``.

    :param num_features: ``F``, to check a :class:`~gpytorch.means.LinearMean` against (``None``: not checked).
    :param told: ``F`` is the model's ``num_features`` argument (for the message).
    :raises ModelSpecError: naming the part (``kernel.base_kernel``, ``mean``), its class and batch shape (or
        input size), as a :class:`~gpytorch.likelihoods.MultitaskGaussianLikelihood` is refused.
    """
    parts = [(_path("kernel", name), m) for name, m in (kernel.named_modules() if kernel is not None else ())
             if isinstance(m, gpytorch.kernels.Kernel)]
    parts += [(_path("mean", name), m) for name, m in (mean.named_modules() if mean is not None else ())
              if isinstance(m, gpytorch.means.Mean)]
    for path, part in parts[::-1]:  # the innermost first: a wrapper takes its parts' batch shape
        shape = _batch_shape(part)
        if shape:
            raise ModelSpecError(f"{owner} {path} ({type(part).__name__}) has batch_shape {shape}, which makes a "
                                 f"batch of GPs of that shape: {owner} is a single-output GP (train_y of shape "
                                 f"N); build it without batch_shape, or use one {owner} per output")
        if num_features is not None and isinstance(part, gpytorch.means.LinearMean) and \
                part.weights.shape[-2] != num_features:
            raise ModelSpecError(f"{owner} {path} (LinearMean) has input_size {part.weights.shape[-2]}, but "
                                 f"{_features(num_features, told)}: build it with LinearMean({num_features})")
