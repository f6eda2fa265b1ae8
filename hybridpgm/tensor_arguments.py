"""Tensor-only arguments: a clear refusal of anything else, never a silent conversion.

The GP, time-series and energy-model APIs take tensors only (the :class:`~hybridpgm.graphs.BayesNet` APIs read
NumPy and pandas as well).  A NumPy array -- the output of scikit-learn's ``StandardScaler().transform`` -- or a
pandas ``Series`` given there is refused by :func:`require_tensor`, whose message says what was given (its type,
shape and dtype: ``train_x is a numpy.ndarray of shape (50, 64) and dtype float64``), that a ``torch.Tensor`` is
needed and how to make one, rather than printing the type where a shape belongs.  The conversion is left to the
caller: the dtype and device it picks are the caller's choice.
"""

from __future__ import annotations

from typing import Any

import torch

from hybridpgm.checks import type_name
from hybridpgm.errors import DataError

__all__ = ["described_value", "require_tensor"]


def described_value(x: Any) -> str:
    """What ``x`` is, for an error message: ``"a numpy.ndarray of shape (50, 64) and dtype float64"``,
    ``"a list of length 3"``, ``"None"``, ``"a float"``."""
    if x is None:
        return "None"
    text = f"a {type_name(x)}"
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    if shape is not None:
        try:
            text += f" of shape {tuple(shape)}"
        except TypeError:  # a shape that is not a sequence
            pass
    elif isinstance(x, (list, tuple)):
        text += f" of length {len(x)}"
    return text + (f" and dtype {dtype}" if dtype is not None and shape is not None else "")


def _conversion(x: Any, arg: str) -> str:
    """The call that makes a tensor of ``x`` (named ``arg``), for the message.  ``torch.tensor`` cannot make one
    of a dataset or a loader: a :class:`~hybridpgm.data.binarize.DynamicBinarized` is pointed to its grey levels
    (a new binary draw at every read is no fixed tensor), a :class:`~torch.utils.data.DataLoader` to its dataset,
    a map-style :class:`~torch.utils.data.Dataset` to the stack of its examples."""
    from hybridpgm.data.binarize import DynamicBinarized  # not at import: data imports this module

    if isinstance(x, DynamicBinarized):
        return (f"{arg}.x, its grey levels in [0, 1] (to a model built with probabilities=True), or one fixed "
                f"binarization, torch.bernoulli({arg}.x) (load_dataset(..., binarize='static').train.x)")
    if isinstance(x, torch.utils.data.DataLoader):
        return f"the tensor behind {arg}.dataset (a TensorDataset: {arg}.dataset.tensors[0])"
    if isinstance(x, torch.utils.data.TensorDataset):
        return f"{arg}.tensors[0]"
    if isinstance(x, torch.utils.data.Dataset):
        return (f"torch.stack([{arg}[i] for i in range(len({arg}))]) (the examples as one tensor; for (x, y) "
                f"pairs, the x of each)")
    if callable(getattr(x, "to_numpy", None)):  # pandas: its values
        return f"torch.as_tensor({arg}.to_numpy())"
    if isinstance(x, (list, tuple)) or getattr(x, "shape", None) is None:
        return f"torch.tensor({arg})"
    return f"torch.as_tensor({arg})"


def require_tensor(x: Any, what: str, *, arg: str | None = None, error: type[Exception] = DataError) -> torch.Tensor:
    """``x`` itself if it is a :class:`torch.Tensor`; anything else is refused, never converted.

    :param x: the argument.
    :param what: what the message calls it (``"train_x"``, ``"RBM visible data 'v'"``).
    :param arg: the name the suggested conversion uses (default: the last name quoted in ``what``, else ``what``
        when it is an identifier, else ``x``).
    :raises error: (:class:`~hybridpgm.errors.DataError` by default) for a non-tensor (``None`` included),
        saying what it is (:func:`described_value`) and how to pass a tensor: ``"train_x is a numpy.ndarray of
        shape (50, 64) and dtype float64, not a torch.Tensor: pass torch.as_tensor(train_x)"``.
    """
    if isinstance(x, torch.Tensor):
        return x
    if x is None:
        raise error(f"{what} is None: pass a torch.Tensor")
    if arg is None:  # "RBM visible data 'v'": v
        quoted = [w for w in what.split("'")[1::2] if w.isidentifier()]
        arg = quoted[-1] if quoted else what if what.isidentifier() else "x"
    raise error(f"{what} is {described_value(x)}, not a torch.Tensor: pass {_conversion(x, arg)}")
