"""The data view of a :class:`~hybridpgm.graphs.BayesNet`: columns, missing entries, context inputs.

:class:`BayesNetData` is a mixin of :class:`~hybridpgm.graphs.BayesNet` that turns what a user passes as
data into what the Pyro model and the exact queries consume (``N`` rows, ``V`` nodes):

* :meth:`~BayesNetData.columns` -- a dict name -> ``[N]`` column or a pandas DataFrame (state names read by the nodes'
  :attr:`state_names <hybridpgm.graphs.BayesNet.state_names>`), an ``[N, V]`` tensor or NumPy array whose columns
  follow :attr:`BayesNet.nodes <hybridpgm.graphs.BayesNet.nodes>`, or a list of ``N`` rows of ``V`` values, optionally
  with a mask (``True`` where observed) or as the pair ``(values, mask)``, becomes a dict name -> ``[N]`` tensor on
  the network's device, a missing entry being ``NaN`` (or ``-1`` in signed integer data, and in a discrete node's
  floating column, where it becomes ``NaN``; unsigned integers such as ``uint8`` have no missing marker);
* :meth:`~BayesNetData.split_missing` -- ``[N, V]`` data with missing entries becomes
  ``(values [N, V] with missing set to 0, mask [N, V])``, what :func:`hybridpgm.fit` can batch;
* :meth:`~BayesNetData.to_tensor` -- the dict form stacked back into ``[N, V]`` floats;
* per column, the observed values (discrete states checked) with the observed mask, and the context inputs
  of neural CPDs as a dict name -> ``[N]`` or ``[*B, N, F]`` (particle dims ``B`` in front, features flat);
* :attr:`~BayesNetData.dtype` and :attr:`~BayesNetData.device` -- where data is placed: those of the
  network's floating-point parameters and buffers (the default dtype and the CPU without any).

It relies on the network's ``cpds``, ``nodes``, ``cardinality`` and ``input_names``; the masks are read by
:class:`~hybridpgm.graphs.bn_masks.BayesNetMasks`, the data checks of :meth:`BayesNet.model
<hybridpgm.graphs.BayesNet.model>` are :class:`~hybridpgm.graphs.bn_checks.BayesNetChecks`, the context inputs
:class:`~hybridpgm.graphs.bn_inputs.BayesNetInputs`, the missing markers :mod:`hybridpgm.graphs.bn_values`.
"""

from __future__ import annotations

import numpy as np
import torch

from hybridpgm.checks import torch_readable
from hybridpgm.data.validation import as_model_dtype
from hybridpgm.errors import DataError
from hybridpgm.graphs.bn_checks import _SCORING, BayesNetChecks
from hybridpgm.graphs.bn_inputs import BayesNetInputs
from hybridpgm.graphs.bn_masks import BayesNetMasks
from hybridpgm.graphs.bn_values import (_bad_state, _continuous, _described, _holds_names, _is_missing_entry,
                                        _is_table, _length, _missing, _plain, _refuse_duplicates, bool_states,
                                        missing_as_nan, refuse_ambiguous_numbers, state_indices)
from hybridpgm.train.deferred_checks import check_or_defer, checks_read_once, read_checks_once

__all__ = ["BayesNetData"]
# re-exported: the names this module held before the masks, checks and value helpers moved out
_REEXPORTED = (_SCORING, _continuous, _described, _is_table, _length, _missing, _plain)


class BayesNetData(BayesNetChecks, BayesNetMasks, BayesNetInputs):
    """Mixin of :class:`~hybridpgm.graphs.BayesNet`: normalising data, missing entries and context inputs."""

    @property
    def dtype(self) -> torch.dtype:
        t = next(self._tensors(), None)
        return t.dtype if t is not None else torch.get_default_dtype()

    @property
    def device(self) -> torch.device:
        t = next(self._tensors(), None)
        return t.device if t is not None else torch.device("cpu")

    def _tensors(self):
        yield from (t for t in self.parameters() if torch.is_floating_point(t))
        yield from (t for t in self.buffers() if torch.is_floating_point(t))

    @read_checks_once  # the columns' deferred checks (integer ranges, integer masks): one host read
    def columns(self, data, mask=None) -> dict:
        """Normalise data to a dict name -> ``[N]`` tensor (``NaN``/``-1`` = missing).

        A continuous node's column comes back in the network's :attr:`dtype`, converted only where that is exact (the
        rule of :func:`~hybridpgm.data.validation.as_model_dtype`: integers, bool and lower-precision floats are
        converted; a number list is built in the network's dtype); the states of a discrete node may have any real
        dtype.  A missing entry is ``NaN`` in floating-point data, ``-1`` in signed integer data and in a discrete
        node's floating column (returned as ``NaN``; in a continuous node's column ``-1.0`` is a value; any other
        negative state is refused by :meth:`model`), ``None``, ``NaN``, ``pd.NA`` or ``pd.NaT`` in a column of state
        names or objects, or an entry where ``mask`` is false; unsigned integer data (``uint8``, ...) has no missing
        marker (255 is a state, or a value out of range).  Where ``mask`` covers a column, the mask wins over the marker
        ``-1``: an entry it marks observed keeps its ``-1`` (as ``-1.0``), which :meth:`model` refuses as outside the
        states (``NaN`` stays missing).  A column of state names (a list, a NumPy string or object array, a
        pandas ``Series`` of strings or a ``Categorical``) is read by :attr:`state_names`.

        :param data: dict name -> ``[N]`` column (a tensor, an array, a list of numbers, or for a discrete node
            with :attr:`state_names` a column of names, ``None`` where missing), or a pandas DataFrame of such
            columns (anything with ``items()``, or with ``columns`` and ``data[name]``: pandas is not imported);
            or an ``[N, len(nodes)]`` tensor or NumPy array (numbers, or a string or object array of names)
            whose columns follow :attr:`nodes`; or a list of ``N`` rows of ``len(nodes)`` values
            (numbers or state names, in the order of :attr:`nodes`); or the pair ``(values, mask)`` of any of
            these with its mask (a tuple or list of two whole data sets, as :meth:`split_missing` returns).
        :param mask: ``True`` where observed: an ``[N, len(nodes)]`` bool tensor or array (or of the integers
            0 and 1; ``N`` the rows of the data), or a dict node -> ``[N]`` such column whose keys are nodes
            with a data column.  A node without a data column is missing in every row whatever the mask says.
        :raises DataError: a column that is not a node (a context input's saying ``context=``), a name that is not a
            state of its node (naming the node, the value and the states), a name in the column of a node without state
            names, a column that holds neither numbers nor names, a column of more than one dim (``[N, 1]``), columns of
            different lengths, array data that is not ``[N, len(nodes)]`` (or a row of another length), a mask that is
            not ``[N, len(nodes)]`` (or names a key that is not a node, or has a column of another length), a dict mask
            marking a node without a data column observed (an entry True: checked like an integer mask's values; an
            all-False entry for such a node agrees with the data and is accepted), a mask of a dtype other than bool or
            integer (a float mask: ``0.5`` is neither observed nor missing), an integer mask holding a value other than
            0 and 1 (checked like a state's range: at once, or inside :func:`hybridpgm.fit`'s step), a mask without
            data, or a continuous node's column of a floating dtype finer than the network's (float64 data for a float32
            network: converting rounds it; the message names the node, both dtypes and the fix, ``data.to(dtype)`` or
            ``bn.to(dtype)``).
        """
        if data is None:
            if mask is not None:
                raise DataError(f"a mask ({_described(mask)}) was given without data")
            return {}
        if isinstance(data, (tuple, list)) and len(data) == 2 and mask is None and all(map(_is_table, data)):
            data, mask = data
        data = self._data_columns(data)
        masks = self._mask_columns(mask, data)
        out = {}
        dtype, device = self.dtype, self.device
        for v, t in data.items():
            if v not in self._cpd_map:
                context = f"; '{v}' is a context input: pass it as context={{{v!r}: ...}}" \
                    if v in self.input_names else ""
                raise DataError(f"data has column '{v}', which is not a node (nodes: {self.nodes}){context}")
            discrete = self.cardinality(v) is not None
            named = None  # in a column of state names, where a name is missing (None, pd.NA): -1 there
            if discrete:
                t, named = self._discrete_column(v, t, device)
            else:
                t = _continuous(t, dtype, device, f"data column '{v}' (a continuous node)")
            if t.dim() > 1:  # every node's value is one number (a state, a real): [N, 1] would score [N, N]
                raise DataError(f"data column '{v}' has shape {tuple(t.shape)}: a column is [N], one number per row")
            if v in masks:  # the mask says where a state is observed: a -1 it marks observed is refused by model
                m = self._mask_column(v, masks[v], t)
                # NaN (unequal to itself) is never a state, nor a missing name's -1
                keep = m & (t == t) if torch.is_floating_point(t) else (m & ~named if named is not None else m)
                t = torch.where(keep, t.to(dtype), torch.full_like(t, float("nan"), dtype=dtype))
            elif discrete:
                t = missing_as_nan(t)  # a float -1: missing, as NaN is (a continuous -1 is a value)
            out[v] = t
        lengths = {int(t.shape[0]) if t.dim() else None for t in out.values()}  # ints, also under a JIT trace
        if len(lengths) > 1 or None in lengths:
            raise DataError(f"data columns must be [N] and of one length N: "
                            f"{ {v: tuple(t.shape) for v, t in out.items()} }")
        return out

    def _data_columns(self, data) -> dict:
        """``data`` as a dict name -> raw column: a mapping (anything with ``items``, a pandas DataFrame too) as it
        is, a data frame without ``items`` (an object with ``columns``, each column read by ``data[name]``) by its
        columns, an ``[N, V]`` array-like split into its columns (a NumPy string or object array too: names,
        numbers and missing markers), a list of rows transposed."""
        if hasattr(data, "items"):
            items = list(data.items())
            _refuse_duplicates([k for k, _ in items])
            return dict(items)
        if hasattr(data, "columns") and not torch.is_tensor(data) and not isinstance(data, np.ndarray):
            _refuse_duplicates(list(data.columns))
            return {c: data[c] for c in data.columns}
        nodes = self.nodes
        if not torch.is_tensor(data) and not isinstance(data, (list, tuple)):
            data = torch_readable(data, "data")  # an xarray DataArray, a masked or big-endian array: NumPy
        # names, or bools (True / False may name states): each column is read by its node
        if isinstance(data, np.ndarray) and data.dtype.kind in "OUSb":
            if data.ndim != 2 or data.shape[1] != len(nodes):
                raise DataError(f"array data must be [N, {len(nodes)}] (columns {nodes}), got {_described(data)}")
            return {v: data[:, i] for i, v in enumerate(nodes)}
        if isinstance(data, (list, tuple)):  # rows: transposed, so each column keeps its own kind of values
            for i, row in enumerate(data):
                if isinstance(row, (str, bytes)) or _length(row) != len(nodes):
                    raise DataError(f"data given as a list of rows: row {i} is {row!r:.60}, not a row of "
                                    f"{len(nodes)} values (one per node of {nodes})")
            return {v: [row[j] for row in data] for j, v in enumerate(nodes)}
        if isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == len(nodes):
            for i, v in enumerate(nodes):  # numbers for states named by other numbers: ambiguous, refused
                refuse_ambiguous_numbers(v, data[:, i], self.state_names.get(v))
        try:
            t = torch.as_tensor(data)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(f"data must be a dict node -> [N] column, an [N, {len(nodes)}] tensor or array "
                            f"(columns {nodes}) or a list of rows, got {_described(data)}") from None
        if t.dim() != 2 or t.shape[1] != len(nodes) or t.is_complex():
            raise DataError(f"tensor data must be [N, {len(nodes)}] real numbers (columns {nodes}), "
                            f"got shape {tuple(t.shape)} and dtype {t.dtype}")
        return {v: t[:, i] for i, v in enumerate(nodes)}

    def split_missing(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values [N, V] with missing entries set to 0, mask [N, V] true where observed)``.

        The pair is what :func:`hybridpgm.fit` can batch (it rejects NaN) and :meth:`model` accepts as
        ``model(values, mask)``.  An ``[N, V]`` tensor or numeric array keeps its dtype; a ``bool`` array (whose
        ``True`` / ``False`` may name states) and any other form of :meth:`columns` become floats, missing markers
        (``-1``, ``None``) mask ``False``.  A discrete column's ``-1`` is missing in a float tensor too (a
        continuous one's is a value), but not in a ``(values, mask)`` pair, whose mask says what is missing.

        :param data: ``N`` rows in any form of :meth:`columns`, the pair ``(values, mask)`` included.
        :raises DataError: as :meth:`columns`.
        """
        if not torch.is_tensor(data) and hasattr(data, "__array__") and not hasattr(data, "items") \
                and not hasattr(data, "columns"):
            data = torch_readable(data, "data")  # an xarray DataArray, a masked or big-endian array: NumPy
        bools = isinstance(data, np.ndarray) and data.dtype.kind == "b"  # read by state name where so named
        if torch.is_tensor(data) or (isinstance(data, np.ndarray) and not bools and not _holds_names(data)):
            self._data_columns(data)  # the shape check; for an array, numbers for number-named states refused
            x = torch.as_tensor(data)
        else:
            x = self._stacked(data)  # a -1 a pair's mask marks observed stays, with the mask, for model to refuse
        masked = isinstance(data, (tuple, list)) and len(data) == 2 and all(map(_is_table, data))
        missing = _missing(x)
        if torch.is_floating_point(x) and not masked:  # -1 in a discrete column: missing (continuous: a value)
            discrete = torch.tensor([self.cardinality(v) is not None for v in self.nodes], device=x.device)
            missing = missing | ((x == -1) & discrete)
        mask = ~missing
        return torch.where(mask, x, torch.zeros_like(x)), mask

    def to_tensor(self, values) -> torch.Tensor:
        """Stack the columns of ``values`` (any form of :meth:`columns`) into ``[N, len(nodes)]`` floats of the
        network's dtype, every missing entry (``NaN``, ``-1`` in signed integer data or in a discrete node's
        column, ``None``, mask false, an absent column) as ``NaN``.

        The result carries no mask, so a discrete node's ``-1.0`` in it reads as missing wherever it is used again:
        a ``-1`` a pair's mask marks observed (a bad state) is refused here, as :meth:`model` refuses it.  Other
        values outside a node's states (``-2``, ``0.5``) stay, for :meth:`model` and the queries to refuse.

        :param values: ``N`` rows in any form of :meth:`columns`, the pair ``(values, mask)`` included.
        :raises DataError: as :meth:`columns`; data of no column; a ``-1`` the mask marks observed in a discrete
            node's column, naming the node, the value and its row.
        """
        x = self._stacked(values)
        discrete = torch.tensor([self.cardinality(v) is not None for v in self.nodes], device=x.device)
        bad = (x == -1) & discrete  # columns() made every other discrete -1 NaN (a float) or kept it missing (int)
        if bool(bad.any()):  # one host read; the error path names the first such column
            i = int(bad.any(0).nonzero()[0, 0])
            v = self.nodes[i]
            raise DataError(f"to_tensor: {_bad_state(v, x[:, i], self.cardinality(v), bad[:, i])}")
        return x

    def _stacked(self, values) -> torch.Tensor:
        """:meth:`to_tensor` without its check of a ``-1`` the mask marks observed (for :meth:`split_missing`)."""
        cols = self.columns(values)
        if not cols:
            raise DataError(f"to_tensor got data of no column (nodes: {self.nodes})")
        n = next(iter(cols.values())).shape[0]
        nan = torch.full((n,), float("nan"), dtype=self.dtype, device=self.device)
        return torch.stack([torch.where(_missing(cols[v]), nan, cols[v].to(self.dtype)) if v in cols else nan
                            for v in self.nodes], -1)

    def _observed_columns(self, cols: dict) -> dict:
        """Per column ``(values with missing entries filled by 0, observed mask)``.

        The mask is ``None`` when every entry of the column is observed and ``False`` when none is (the three cases
        give the model different Pyro sites); which case holds is read from the device once for all columns together,
        not once per column (:meth:`_missing_pattern`; a traced function checks that later batches keep it), and in
        the same read the discrete columns' states (:meth:`_fill_missing`'s checks, the first bad column named;
        inside :func:`hybridpgm.fit`'s step they join the step's read instead).
        """
        block = checks_read_once()  # the discrete columns' states (_fill_missing): none in fit's step
        with block:
            split = {v: self._fill_missing(v, t) for v, t in cols.items()}
            if not split:
                return {}
            own = block.entered[-1]  # (checks, token) where the block reads them itself; None in fit's step
            checks = own[0] if own is not None and own[0].flags else None
            flags, passed = self._missing_pattern(split, None if checks is None else checks.all_passed(
                checks.flags[0].device))  # one host read, the states' checks with the pattern
            if checks is not None:
                if not passed:
                    checks.raise_first_failure()
                checks.flags.clear()  # read: nothing left for the block's exit to read
                checks.errors.clear()
        return {v: (filled, None if not some else (False if every else ~m))
                for (v, (filled, m)), (some, every) in zip(split.items(), flags)}

    def _discrete_column(self, v: str, t, device) -> tuple[torch.Tensor, bool]:
        """The column of discrete node ``v`` as a tensor of states: a tensor, an array or a list of numbers as
        it is; a column of state names (a list, a NumPy string or object array, a pandas ``Series`` of strings or
        a ``Categorical``: its values, not its codes), which may mix names with state indices, read by
        :attr:`state_names`, a missing entry (``None``, ``NaN``, ``pd.NA``, ``pd.NaT``) becoming ``-1``
        (:func:`~hybridpgm.graphs.bn_values.state_indices`).  ``True`` / ``False`` (a ``bool`` column of
        ``pd.read_csv``) read as the states named true / false
        (:func:`~hybridpgm.graphs.bn_values.bool_states`); numbers for a node whose states are named by other
        numbers are refused (:func:`~hybridpgm.graphs.bn_values.refuse_ambiguous_numbers`).  A floating column's
        ``-1`` stays: :meth:`columns` reads it as missing (``NaN``) where no mask is given for the column.
        Returns ``(states, named)``, ``named`` (for a column of names, else ``None``) a bool tensor marking the
        missing names: missing whatever a mask says, while a number ``-1`` there yields to the mask.

        :raises DataError: a name that is not a state of ``v`` (naming the node, the value and the states), a
            name in the column of a node without state names, or a value that is neither a number nor a name,
            naming the node and the value.
        """
        states = self.state_names.get(v)
        t = bool_states(v, t, states)
        refuse_ambiguous_numbers(v, t, states)
        t = torch_readable(t, f"data column '{v}'")  # a pandas column: its values, whatever its index
        named = None
        if _holds_names(t):
            entries = t.tolist() if isinstance(t, np.ndarray) else list(t)
            named = [_is_missing_entry(s) for s in entries]  # where a name is missing (state_indices: -1 there)
            t = state_indices(v, entries, states)
        try:
            t = torch.as_tensor(t, device=device)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(f"data column '{v}' must hold states (numbers, or names of {self.state_names.get(v)}), "
                            f"got {type(t).__name__} {t!r:.60}") from None
        return t, (None if named is None else torch.tensor(named, dtype=torch.bool, device=device))

    def _fill_missing(self, v, t):
        """``(values with missing filled by 0, missing mask)``.

        A discrete column's check (whole states ``0..card-1`` where observed) is one flag, deferred inside
        :func:`hybridpgm.fit`'s step (:func:`~hybridpgm.train.deferred_checks.check_or_defer`); only its error path
        reads the values, to name the first bad one and its row (:func:`~hybridpgm.graphs.bn_values._bad_state`).
        """
        missing = _missing(t)
        card = self.cardinality(v)
        filled = torch.where(missing, torch.zeros_like(t), t)
        if card is not None:
            filled = filled.long()
            bad = (~missing) & ((filled < 0) | (filled >= card) | (t != filled.to(t.dtype)))  # 0.5, -2, inf, 1e20
            check_or_defer(~bad.any(), lambda: _bad_state(v, t, card, bad),
                           f"BayesNet: column '{v}' holds an observed value outside the states 0..{card - 1}")
            filled = filled.clamp(0, card - 1)  # until a deferred check is read (an index out of range asserts)
        else:  # columns() gave it the network's dtype already: this refuses only a column that bypassed it
            filled = as_model_dtype(filled, self.dtype, f"data column '{v}' (a continuous node)")
        return filled, missing
