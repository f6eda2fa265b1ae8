"""Running a deep kernel's feature extractor, with its failures named.

A deep kernel [1] feeds the inputs through a network :math:`g_\\phi` and the GP sees only the features
:math:`h = g_\\phi(x)`, ``B x F``.  A network that cannot take the inputs fails inside torch with a message about
its own layers; :func:`extract_features` says which inputs it was given, and, under :func:`hybridpgm.fit`'s mixed
precision, that the network ran under autocast (a CPU LSTM, for one, has no bfloat16 or float16 kernel).

[1] A. G. Wilson, Z. Hu, R. Salakhutdinov, E. P. Xing, *Deep Kernel Learning*, AISTATS 2016.
"""

from __future__ import annotations

import torch

from hybridpgm.autograd_scope import usable_with_grad
from hybridpgm.errors import DataError
from hybridpgm.network_checks import check_output

__all__ = ["extract_features"]


def extract_features(extractor: torch.nn.Module, x: torch.Tensor, shape: tuple | None = None) -> torch.Tensor:
    """``extractor(x)``, or a :class:`DataError` naming the shape and dtype of ``x`` (and the autocast precision,
    where one is on, or else the network's parameters' dtype where it is another) with the network's own message.

    Inputs created under :func:`torch.inference_mode` and run here with grad mode on (a request decoded in
    inference mode, a posterior asked outside it) are cloned first
    (:func:`~hybridpgm.autograd_scope.usable_with_grad`): autograd cannot save them for backward.

    :param x: the inputs, ``B x ...``.
    :param shape: the inputs' shape as the message names it (default ``x``'s): a probe of the first rows of the
        training inputs names the training inputs' shape, not the probe's.
    :raises DataError: the network raised a :class:`RuntimeError` (a shape, dtype or kernel error); one about
        inference tensors (the network's own parameters made under inference mode) says so rather than blame the
        inputs' shape.
    :raises ModelSpecError: the network returned something else than one tensor (a tuple, a dict).
    :raises torch.OutOfMemoryError: the network ran out of memory (re-raised as it is).
    """
    try:
        return check_output(extractor(usable_with_grad(x)), "the feature extractor")
    except RuntimeError as err:
        if isinstance(err, torch.OutOfMemoryError):  # not the inputs' fault: a caller's retry catches it as it is
            raise
        if "Inference tensors" in str(err):  # the inputs are cloned: the network's own tensors are
            raise DataError(f"the feature extractor {type(extractor).__name__} holds tensors created under "
                            f"torch.inference_mode() (a model built or loaded there), which autograd cannot use "
                            f"with grad mode on: query it under torch.inference_mode() or torch.no_grad(), or "
                            f"build or load it outside inference mode: {err}") from err
        kind = x.device.type
        autocast = ""
        if torch.is_autocast_enabled(kind):
            low = torch.get_autocast_dtype(kind)
            autocast = (f" under autocast to {low} on {kind} (fit's precision): the network may have no {low} "
                        f"kernel there, train it in full precision (precision=None, CLI --precision fp32)")
        raise DataError(f"feature extractor cannot take inputs of shape {tuple(x.shape if shape is None else shape)} "
                        f"and dtype {x.dtype}"
                        f"{autocast or _other_dtype(extractor, x)}: {err}") from err


def _other_dtype(extractor: torch.nn.Module, x: torch.Tensor) -> str:
    """Where the network's floating parameters share one dtype that is not the inputs' (a ``.double()`` model
    given float32 inputs): that dtype and the cast that fixes it, else ``""``."""
    dtypes = {p.dtype for p in extractor.parameters() if p.is_floating_point()}
    if len(dtypes) != 1 or x.dtype in dtypes or not x.is_floating_point():
        return ""
    (dtype,) = dtypes
    return f" (the network's parameters are {dtype}: pass the inputs in that dtype, x.to({dtype}))"

