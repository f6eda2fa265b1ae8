"""Argument checks shared by the public API, raising :mod:`hybridpgm.errors` exceptions that name the argument.

Python integers and integer scalars (NumPy, 0-d integer tensors) pass as themselves; ``bool`` and floats are
refused rather than coerced (``2.5`` samples is a mistake, not three samples).
"""

from __future__ import annotations

import operator

from hybridpgm.errors import ConfigError

__all__ = ["sample_count"]


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
