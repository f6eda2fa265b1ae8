"""Argument checks shared by the public API, raising :mod:`hybridpgm.errors` exceptions that name the argument.

Python integers and integer scalars (NumPy, 0-d integer tensors) pass as themselves; ``bool`` and floats are
refused rather than coerced (``2.5`` samples is a mistake, not three samples).
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

from hybridpgm.errors import ConfigError

__all__ = ["positive_count", "positive_number", "sample_count", "sample_shape_of"]


def sample_count(value, what: str) -> int:
    """``value`` as a number of samples: a non-negative integer (zero gives empty results).

    :param what: the argument, as the message should name it (``"BayesNet.sample num_samples"``).
    :raises ConfigError: for a negative number, a ``bool`` or a non-integer.
    """
    if not isinstance(value, bool):
        try:
            n = operator.index(value)
        except TypeError:
            n = None
        if n is not None and n >= 0:
            return n
    raise ConfigError(f"{what} must be a non-negative integer, got {value!r}")


def sample_shape_of(sample_shape, what: str) -> torch.Size:
    """A distribution's ``sample_shape`` (a size, a tuple of sizes, or one integer) as a ``torch.Size`` of checked
    counts (:func:`sample_count`)."""
    sizes = sample_shape if isinstance(sample_shape, (tuple, list)) else (sample_shape,)
    return torch.Size(sample_count(n, f"{what} sample_shape entries") for n in sizes)


def positive_count(value, what: str) -> int:
    """``value`` as a count of at least one (epochs, a batch size, a step interval): an integer as for
    :func:`sample_count`, refused when zero.

    :raises ConfigError: for zero, a negative number, a ``bool`` or a non-integer.
    """
    try:
        n = sample_count(value, what)
    except ConfigError:
        n = 0
    if n >= 1:
        return n
    raise ConfigError(f"{what} must be a positive integer, got {value!r}")


def positive_number(value, what: str) -> float:
    """``value`` as a finite positive real number (a norm bound, a timeout in seconds): a Python or NumPy real,
    not a ``bool``.

    :raises ConfigError: for zero, a negative, infinite or NaN number, a ``bool``, or a non-number.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        x = float(value)
        if math.isfinite(x) and x > 0:
            return x
    raise ConfigError(f"{what} must be a positive finite number, got {value!r}")
