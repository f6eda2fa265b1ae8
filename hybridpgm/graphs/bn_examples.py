"""The forms of the rows :meth:`BayesNet.log_prob <hybridpgm.graphs.BayesNet.log_prob>` scores beside ``[N]``
columns: a single example (a mapping of 0-d values, a pandas ``Series``), 0-d values shared by the rows, and the rows
of a network without nodes.  Helpers of :class:`~hybridpgm.graphs.bn_model.BayesNetModel`.
"""

from __future__ import annotations

import numpy as np
import torch

from hybridpgm.graphs.bn_values import _is_table

__all__ = ["entries", "one_row", "rows_of_no_node", "shared_values", "single_example"]


def rows_of_no_node(values) -> tuple[int, ...]:
    """The shape of the rows ``values`` holds for a network without nodes (whose
    :meth:`~hybridpgm.graphs.BayesNet.columns` are ``{}``, the rows lost): ``(N,)`` for an ``[N, 0]`` tensor or
    array, a list of ``N`` empty rows or a data frame of ``N`` rows (the first of a ``(values, mask)`` pair), ``()``
    for a mapping of no entry or ``None`` (one example of no value)."""
    if isinstance(values, (tuple, list)) and len(values) == 2 and all(map(_is_table, values)):
        values = values[0]  # (values, mask), as columns() reads the pair
    if values is None or (hasattr(values, "items") and not hasattr(values, "columns")):
        return ()
    return (int(values.shape[0]),) if hasattr(values, "shape") else (len(values),)


def single_example(values) -> bool:
    """Whether ``values`` is one example: a dict (anything with ``items`` but no ``columns``: not a data frame)
    holding at least one value, every value 0-d (a 0-d tensor or array, a number, a state name, a missing
    marker)."""
    if not hasattr(values, "items") or hasattr(values, "columns"):
        return False
    items = [x for _, x in values.items()]  # a pandas Series too (whose ``values`` is its array, not a method)
    return bool(items) and all(map(_zero_d, items))


def entries(values) -> list:
    """The ``(key, value)`` pairs of the mapping ``values``. A pandas ``Series`` of a floating NumPy dtype (a data
    frame's row, whose columns pandas has made one dtype: int64 beside float32 gives float64) gives each entry as a
    Python number where float32 holds it exactly, and as a NumPy scalar of the row's dtype where it does not, whose
    dtype :meth:`~hybridpgm.graphs.BayesNet.columns` then checks (a float64 value a float32 network would round is
    refused, as its column is; review D: a float32 column's row was refused as float64)."""
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return [(k, float(v) if np.float32(v) == v else v) for k, v in zip(values.keys(), np.asarray(values))]
    return list(values.items())


def _zero_d(x) -> bool:
    return _ndim(x) == 0


def _ndim(x) -> int | None:
    """The dims of value ``x``, ``None`` where it has none (a ragged list of lists, which
    :meth:`~hybridpgm.graphs.BayesNet.columns` refuses)."""
    if torch.is_tensor(x):
        return x.dim()
    try:
        return np.ndim(x)
    except ValueError:  # NumPy's "inhomogeneous shape"
        return None


def shared_values(values):
    """A mapping of ``[N]`` columns among which some values are 0-d, with each 0-d value repeated in every row (a value
    shared by the rows, as the queries read 0-d evidence beside ``[N]`` rows); ``values`` as it is where no value is
    0-d, or where the others are not all 1-d of one length ``N`` (:meth:`~hybridpgm.graphs.BayesNet.columns` names
    them: an ``[N, 1]`` column is no ``[N]`` one, and its scores beside the repeated value would be ``[N, N]``)."""
    if not hasattr(values, "items") or hasattr(values, "columns"):
        return values
    items = dict(values.items())
    dims = {k: _ndim(x) for k, x in items.items()}
    rows = [x for k, x in items.items() if dims[k] != 0]
    if len(rows) == len(items) or any(dims[k] not in (0, 1) for k in items) or len({len(x) for x in rows}) != 1:
        return values
    n = len(rows[0])
    return {k: _repeated(x, n) if dims[k] == 0 else x for k, x in items.items()}


def _repeated(x, n: int):
    """The 0-d value ``x`` as a column of ``n`` entries, read as :func:`one_row` reads it for one example: a tensor
    or array (a NumPy scalar too) of its dtype, a list of ``n`` entries for anything else (a number, a state
    name)."""
    if torch.is_tensor(x):
        return x[None].expand(n)
    return one_row(x).repeat(n) if isinstance(x, (np.ndarray, np.generic)) else [x] * n


def one_row(x):
    """``x`` with a row dim of one in front: ``x[None]`` for a tensor or array, a NumPy scalar as a one-entry array
    of its dtype (``np.float64(0.1)`` is float64 data, refused for a float32 network as a float64 column is),
    ``[x]`` for anything else (a number or state name: a column of one entry, built as
    :meth:`~hybridpgm.graphs.BayesNet.columns` builds lists)."""
    if isinstance(x, np.generic):
        return np.asarray(x)[None]
    return x[None] if torch.is_tensor(x) or isinstance(x, np.ndarray) else [x]
