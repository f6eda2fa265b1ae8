"""Raw data values of a :class:`~hybridpgm.graphs.BayesNet` as tensors: the missing markers and the shapes.

A missing entry is ``NaN`` in floating-point data and ``-1`` in signed integer data (:func:`_missing`), and ``-1``
in a discrete node's floating column too (:func:`missing_as_nan`); unsigned integers and ``bool`` have no missing
marker.  The helpers here say what a raw value is (a whole data set or one
row, its length, a description for an error message), build continuous columns in the network's dtype, and read
columns of state names: a list, a NumPy string or object array, or a pandas ``Series`` / ``Categorical``
(anything with ``to_numpy()``; pandas itself is never imported) whose entries are state names, state indices or
missing markers -- ``None``, ``NaN``, ``pd.NA``, ``pd.NaT`` -- becomes the node's state indices, a missing entry
``-1`` (``NaN`` when the column also holds floats; a non-integral one is refused by the range check).
"""

from __future__ import annotations

import itertools
import math
import numbers
import weakref

import numpy as np
import torch

from hybridpgm.checks import torch_readable
from hybridpgm.data.validation import as_model_dtype
from hybridpgm.errors import DataError

__all__ = ["bool_states", "context_batch_features", "missing_as_nan", "outer_batch_dims", "refuse_ambiguous_numbers",
           "state_indices"]


def _plain(x):
    """``x`` as NumPy when it is a pandas-like column (a ``Series``, an ``Index``, a ``Categorical``: anything
    with ``to_numpy()`` that is not a tensor), else ``x`` itself.  A pandas column gives its values, not its
    codes (a ``Categorical`` of names gives the names), whatever its index; a read-only array (pandas'
    copy-on-write views) is copied, which torch would otherwise warn about
    (:func:`~hybridpgm.checks.torch_readable`)."""
    if torch.is_tensor(x) or not callable(getattr(x, "to_numpy", None)):
        return x
    return torch_readable(x)


def _numeric_name(s) -> bool:
    """Whether the state name ``s`` reads as a number (``"1"``, ``"2.5"``)."""
    try:
        float(s)
    except (TypeError, ValueError):
        return False
    return True


def _names_are_indices(states: list) -> bool:
    """Whether the state names read as the state indices: ``"0"`` .. ``"K-1"`` in order (how pgmpy names the
    states of integer-coded data), so a number means the same state read as a name or as an index."""
    return all(_numeric_name(s) for s in states) and [float(s) for s in states] == list(range(len(states)))


def _is_bool(s) -> bool:
    """Whether ``s`` is a Python or NumPy ``bool`` (``numbers.Integral`` includes Python's ``bool``)."""
    return isinstance(s, (bool, np.bool_))


def _entries(values):
    """The entries of a column (a NumPy array, a list or a tuple) as an iterable, or ``None`` for anything else
    (a tensor, a number)."""
    if isinstance(values, np.ndarray):
        return values.flat
    return values if isinstance(values, (list, tuple)) else None


def _holds_bools(values) -> bool:
    """Whether the column ``values`` holds ``True`` / ``False``: a NumPy ``bool`` array, or an object array (a
    pandas column of bools with a gap, a nullable ``boolean`` column), a list or a tuple with a ``bool`` in it."""
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        return values.dtype.kind == "b" and values.size > 0
    entries = _entries(values)
    return entries is not None and any(_is_bool(s) for s in entries)


def _truth_states(states: list | None) -> tuple[int, int] | None:
    """``(index of the state named "true", index of the state named "false")`` (names compared without case
    or surrounding blanks), or ``None`` unless ``states`` has exactly one of each."""
    names = [str(s).strip().lower() for s in states or ()]
    if names.count("true") != 1 or names.count("false") != 1:
        return None
    return names.index("true"), names.index("false")


def bool_states(v: str, column, states: list | None, what: str = "data column"):
    """The column of node ``v`` with its ``True`` / ``False`` entries read as the states named ``"true"`` /
    ``"false"`` (any case: BIF networks name them ``"TRUE"``, ``"FALSE"`` in that order, and ``pd.read_csv``
    turns such a column into ``bool``): the state indices of those names, a missing entry kept as it is.  A
    column without ``bool`` entries, a tensor, and a node without state names (a bool is the index 0 or 1) are
    returned as they are; so is a node whose names read as indices (``["0", "1"]``).

    :returns: ``column`` itself, or a NumPy integer array (a ``bool`` array) or a list (an object column, a
        list: missing entries kept) of state indices.
    :raises DataError: ``bool`` entries for a node with state names other than ``true`` / ``false`` or the
        indices, naming ``what``, the node and its states.
    """
    if not states or torch.is_tensor(column):
        return column
    # a masked array is refused here, before its mask could be lost (its hidden values read as data)
    values = torch_readable(column, f"{what} '{v}'") if isinstance(column, np.ndarray) else _plain(column)
    if not _holds_bools(values):
        return column
    truth = _truth_states(states)
    if truth is None:
        if _names_are_indices(states):
            return column
        raise DataError(f"{what} '{v}' holds True/False, but the states of '{v}' are {states}, not named "
                        f"true/false: pass state names or state indices 0..{len(states) - 1}")
    true, false = truth
    if isinstance(values, np.ndarray) and values.dtype.kind == "b":
        return np.where(values, true, false)
    return [(true if s else false) if _is_bool(s) else s for s in _entries(values)]


def _is_number_entry(s) -> bool:
    """Whether one entry of a column is a number that could be a state index (not a ``bool``, not a missing
    marker such as ``NaN``)."""
    return isinstance(s, numbers.Real) and not _is_bool(s) and not _is_missing_entry(s)


def refuse_ambiguous_numbers(v: str, column, states: list | None, what: str = "data column") -> None:
    """Refuse a column of numbers for node ``v`` whose state names read as numbers other than the state indices
    (``["1", "2", "3"]``): its entries could be the names or the indices (``1`` is state ``"2"``), and reading
    them one way silently answers another question.  The column is a pandas column (what ``pd.read_csv``
    makes of a column ``1, 2, 1``, a ``category`` column of numbers too), a NumPy array (``df.to_numpy()``, an
    object array when the frame mixes names and numbers), a list or a tuple (``.tolist()``) holding a number
    (missing markers aside), or a single Python or NumPy number (``{"grade": 1}``, ``df["grade"].iloc[0]``:
    pgmpy reads it as the name); a tensor, 0-d too, is state indices by definition.  Names ``"0"`` .. ``"K-1"``
    in order (as pgmpy names the states of integer-coded data) read the same both ways and pass.  ``True`` /
    ``False`` entries are refused likewise unless the states are named true/false (:func:`bool_states` reads
    those by name) or read as indices.

    :raises DataError: naming the node, the states and the two ways to say which is meant.
    """
    if not states or torch.is_tensor(column) or _names_are_indices(states):
        return
    values = _plain(column)
    if _holds_bools(values) and _truth_states(states) != (1, 0):  # ["False", "True"] read as indices too
        raise DataError(f"{what} '{v}' holds True/False and the states of '{v}' are {states}: the entries would "
                        f"be read as state indices 0 and 1, not as names; pass state names")
    if not all(_numeric_name(s) for s in states):
        return
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        numeric = values.size > 0
    elif _is_number_entry(values):  # a single number: the same question as a column of one
        x = values.item() if isinstance(values, np.generic) else values
        name = next((repr(s) for s in states if float(s) == x), None)
        way = (f"it could be a name or a state index; pass the name ({name}) or the index as a tensor "
               f"(torch.tensor({x!r}))" if name is not None else f"no state is named {x!r}; " + (
                   "for a node not observed leave it out (or pass None)" if x == -1 else
                   f"for the state index pass a tensor (torch.tensor({x!r}))"))
        raise DataError(f"{what} '{v}' is the number {x!r} and the states of '{v}' are named by numbers {states}: "
                        + way)
    else:
        entries = _entries(values) if not isinstance(values, np.ndarray) or values.dtype.kind == "O" else None
        numeric = entries is not None and any(_is_number_entry(s) for s in entries)
    if numeric:
        raise DataError(f"{what} '{v}' holds numbers and the states of '{v}' are named by numbers {states}: "
                        f"the entries could be names or state indices; pass names (column.astype(str)) or "
                        f"indices 0..{len(states) - 1} as a tensor (torch.as_tensor(column.to_numpy()))")


def _is_missing_entry(s) -> bool:
    """Whether one entry of an object column marks a missing value: ``None``, ``NaN`` (Python or NumPy),
    ``pd.NA`` (its truth value is ambiguous) or ``pd.NaT`` (like ``NaN``, unequal to itself)."""
    if s is None:
        return True
    if isinstance(s, (str, bytes, numbers.Integral)):
        return False
    try:
        return bool(s != s)
    except (TypeError, ValueError):  # pd.NA: "boolean value of NA is ambiguous"
        return True


def _holds_names(t) -> bool:
    """Whether the column ``t`` must be read entry by entry (state names or missing markers in it): a NumPy
    string, bytes or object array, or a list or tuple holding a string or a missing marker other than ``NaN``
    (a list of numbers with ``NaN`` is read by torch as it is)."""
    if isinstance(t, np.ndarray):
        return t.dtype.kind in "OUS"
    return isinstance(t, (list, tuple)) and any(isinstance(s, str) or (
        _is_missing_entry(s) and not isinstance(s, float)) for s in t)


def state_indices(v: str, column, states: list | None) -> list:
    """The entries of a column of node ``v`` read one by one: a state name becomes its index in ``states``, a
    missing marker (:func:`_is_missing_entry`) ``-1`` (``NaN`` where the column holds floats), and
    any other entry (a state index) is kept.

    :raises DataError: a name that is not in ``states``, or a name in the column of a node without state names,
        naming the node, the value and the allowed states.
    """
    index = {s: i for i, s in enumerate(states or ())}
    out, fractional = [], False
    for s in column:
        if isinstance(s, (str, bytes)):
            if states is None:
                raise DataError(f"data column '{v}' holds the name {s!r}, but node '{v}' has no state names: "
                                f"declare them (BayesNet(..., state_names={{'{v}': [...]}}) or bn.add('{v}', ..., "
                                f"states=[...])) or give the states as indices 0..K-1")
            i = index.get(s)
            if i is None:
                raise DataError(f"data column '{v}' holds {s!r}, which is not a state of '{v}' (states: {states})")
            out.append(i)
        elif _is_missing_entry(s):
            out.append(None)
        else:
            fractional = fractional or (isinstance(s, numbers.Real) and not isinstance(s, numbers.Integral))
            out.append(s)
    none = float("nan") if fractional else -1  # the missing marker of the column's dtype
    return [none if s is None else s for s in out]


def _missing(t: torch.Tensor) -> torch.Tensor:
    """Where ``t`` marks a missing entry: ``NaN`` in floating-point data, ``-1`` in signed integer data (any
    other negative integer is a bad value, refused by the range check, not a missing entry).  Unsigned integers
    (``uint8``, ...) and ``bool`` cannot hold ``-1``: none of their entries is missing (comparing a ``uint8``
    with ``-1`` would match 255, a state of a 256-state node or a bad value, never a missing entry).  A discrete
    node's floating column has its ``-1`` entries turned into ``NaN`` first (:func:`missing_as_nan`) where no mask
    covers it; in a continuous node's column ``-1.0`` is a value."""
    if torch.is_floating_point(t):
        return torch.isnan(t)
    if not t.is_signed():
        return torch.zeros_like(t, dtype=torch.bool)
    return t == -1


def missing_as_nan(t: torch.Tensor) -> torch.Tensor:
    """A discrete node's column (or evidence) ``t`` with the missing marker ``-1`` of a floating tensor as ``NaN``
    (``t`` itself where it is not floating): ``-1`` or ``NaN`` marks a missing state in an integer or a floating
    tensor alike, the convention of :class:`~hybridpgm.graphs.MarkovNet`'s evidence too.  Any other negative value
    stays, for the range check to refuse.  Two kernels (a comparison and a fill); :meth:`BayesNet.columns
    <hybridpgm.graphs.BayesNet.columns>` skips it for a column a mask covers (the mask says what is missing)."""
    if not torch.is_floating_point(t):
        return t
    return t.masked_fill(t == -1, float("nan"))


def _bad_state(v: str, t: torch.Tensor, card: int, bad: torch.Tensor) -> DataError:
    """The error for discrete column ``v`` (``[N]``) of ``card`` states, naming its first ``bad`` value and its
    row: a non-integer (``0.5``), or a value outside ``0..card-1`` (an infinity, or a whole number other than the
    missing marker ``-1``; a ``-1`` left in ``t`` is one a mask marks observed, which wins over the marker).  Built
    on the error path only (it reads the values)."""
    i = int(bad.nonzero()[0, 0])
    value = t[i].item()
    missing = " (NaN or -1 where missing)" if torch.is_floating_point(t) else \
        " (-1 where missing)" if t.is_signed() else ""  # an unsigned or bool column has no missing marker
    if value == -1:  # BayesNet.columns turned every other -1 into NaN (or reads it as missing)
        missing = ", an entry the mask marks observed: where a mask is given, -1 is not read as missing (set the " \
                  "mask False there)"
    if math.isfinite(value) and value != round(value):
        return DataError(f"column '{v}' holds a non-integer value: {value} in row {i} of the data; the states of "
                         f"'{v}' are the whole numbers 0..{card - 1}{missing}")
    return DataError(f"column '{v}' holds a value outside 0..{card - 1}: {value} in row {i} of the data{missing}")


def _refuse_duplicates(labels: list) -> None:
    """Refuse data whose column labels repeat (``pd.concat([left, right], axis=1)``, a join without suffixes):
    two columns for one node, of which a dict would silently keep the last.

    :raises DataError: naming the repeated labels.
    """
    seen, repeated = set(), []
    for k in labels:
        if k in seen and k not in repeated:
            repeated.append(k)
        seen.add(k)
    if repeated:
        raise DataError(f"data has more than one column labelled {', '.join(map(repr, repeated))} (columns "
                        f"{labels}): keep one per node (df.loc[:, ~df.columns.duplicated()] keeps the first)")


def _is_table(x) -> bool:
    """Whether ``x`` is a whole data set (a mapping of columns, a 2-D array, a list of rows), not one row."""
    return (hasattr(x, "items") or getattr(x, "ndim", None) == 2
            or (isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], (list, tuple))))


def _length(x) -> int | None:
    """``len(x)``, or ``None`` for a value without a length (a number, a 0-d tensor)."""
    try:
        return int(len(x))
    except TypeError:
        return None


def _described(x) -> str:
    """``x``'s type, with its shape and dtype when it has them, for an error message."""
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    return type(x).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "") + \
        (f" and dtype {dtype}" if dtype is not None else "")


def _continuous(t, dtype: torch.dtype, device, what: str) -> torch.Tensor:
    """Continuous values ``t`` in the network's ``dtype`` on ``device``: a tensor (or array, or pandas column)
    keeps its own dtype, which is converted only where that is exact
    (:func:`~hybridpgm.data.validation.as_model_dtype`, whose :class:`DataError` names ``what``; the range check of
    integers deferred: it joins the read of the caller's ``read_checks_once`` or of fit's step); a number, a
    list of numbers or an object array (``None`` / ``pd.NA`` in it as ``NaN``) is built in ``dtype``.

    :raises DataError: values that are not numbers, naming ``what``.
    """
    t = torch_readable(t, what)
    if isinstance(t, np.ndarray) and t.dtype.kind == "O":
        t = [float("nan") if _is_missing_entry(s) else s for s in t.tolist()]
    try:
        t = torch.as_tensor(t, device=device, dtype=None if hasattr(t, "dtype") else dtype)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"{what} must hold numbers, got {_described(t)}: {t!r:.60}") from None
    return as_model_dtype(t, dtype, what, defer=True)


def outer_batch_dims() -> int:
    """How many tensor dims left of the data plate's (dim ``-1``) the enclosing Pyro program claims.

    They are the dims of the vectorized plates on Pyro's handler stack (the particle plate of a vectorized ELBO
    or of ``pyro.infer.Predictive(..., parallel=True)`` at dim ``-2`` gives 1) and the enumeration dims already
    allocated by an active ``poutine.enum`` (those of sites enumerated before the call); 0 outside any.  The
    enumeration dims are the global ones (sites outside ``pyro.markov``, recorded by Pyro's allocator) and the
    local ones that ``pyro.markov`` hands out and recycles (recorded per site by the ``EnumMessenger``): an HMM's
    hidden state ``z_t`` enumerated inside ``pyro.markov`` holds such a dim.  A context input computed in the
    same program (a VAE's latent ``z``, ``[S, N, d]`` under the particle plate; a one-hot ``z_t``, ``[K, N, K]``)
    carries these dims in front of its row dim.
    """
    from pyro.poutine.enum_messenger import EnumMessenger
    from pyro.poutine.indep_messenger import IndepMessenger
    from pyro.poutine.runtime import _ENUM_ALLOCATOR, _PYRO_STACK

    depth = 1
    for m in _PYRO_STACK:
        if isinstance(m, IndepMessenger) and m.dim is not None:
            depth = max(depth, -m.dim)
        elif isinstance(m, EnumMessenger):  # the dims of the sites enumerated so far (model and guide)
            depth = max([depth, *(-d for d in getattr(_ENUM_ALLOCATOR, "dim_to_id", {})), _local_enum_depth(m)])
    return depth - 1


#: per active ``EnumMessenger``: ``(its _value_dims dict, how many of its sites were read, their deepest dim)``
_LOCAL_DEPTHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _local_enum_depth(m) -> int:
    """The deepest enumeration dim (as a positive count, ``-dim``) that a value sampled under the
    ``EnumMessenger`` ``m`` holds, 0 for none: where ``pyro.markov`` enumerates a site, Pyro allocates a local
    dim that its global allocator does not record; ``m`` keeps the dims of each site's value (``_value_dims``,
    a dict filled site by site and replaced when ``m`` is entered again).  Only the sites added since the last
    call are read, so a chain of ``T`` steps costs ``O(T)`` over all its calls, not ``O(T^2)``."""
    dims = getattr(m, "_value_dims", None)
    if not dims:
        return 0
    seen, n, depth = _LOCAL_DEPTHS.get(m, (None, 0, 0))
    if seen is not dims or n > len(dims):
        n, depth = 0, 0
    for site in itertools.islice(reversed(dims.values()), len(dims) - n):  # the newest sites, last in the dict
        depth = max(depth, *(-d for d in site), 0)
    _LOCAL_DEPTHS[m] = (dims, len(dims), depth)
    return depth


def context_batch_features(t: torch.Tensor, outer: int) -> torch.Tensor:
    r"""A context input ``t`` as ``[*B, N, F]``: its batch dims (the particle or enumeration dims of the enclosing
    program, then the row dim ``N``, aligned at the right with the data plate) and its features flattened.

    A 0-dim value (one row, one feature) and an ``[N]`` column (one feature per row) are returned as they are.  A
    value of ``k >= 2`` dims has :math:`b = \min(k - 1, 1 + \mathrm{outer})` batch dims: ``[N, d...]`` outside
    any plate (``outer = 0``: ``prod(d)`` features), ``[S, N, d...]`` under one particle plate, and an ``[N, d]``
    value that does not vary across particles stays ``[N, d]`` (it broadcasts).  Under ``outer`` such dims a
    context with several feature dims must carry them all (size 1 where it does not vary): ``[N, d1, d2]`` would
    read as ``[S, N]`` batch dims.  A scalar per row with particle dims is ``[S, N, 1]``.

    :param outer: :func:`outer_batch_dims` at the call of :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>`.
    """
    if t.dim() < 2:
        return t
    b = min(t.dim() - 1, 1 + outer)
    return t.reshape(*t.shape[:b], math.prod(t.shape[b:]))
