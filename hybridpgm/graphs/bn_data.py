"""The data view of a :class:`~hybridpgm.graphs.BayesNet`: columns, missing entries, context inputs.

:class:`BayesNetData` is a mixin of :class:`~hybridpgm.graphs.BayesNet` that turns what a user passes as
data into what the Pyro model and the exact queries consume (``N`` rows, ``V`` nodes):

* :meth:`~BayesNetData.columns` -- a dict name -> ``[N]`` column, an ``[N, V]`` tensor or NumPy array whose
  columns follow :attr:`BayesNet.nodes <hybridpgm.graphs.BayesNet.nodes>`, or a list of ``N`` rows of ``V``
  values, optionally with a mask (``True`` where observed) or as the pair ``(values, mask)``, becomes a dict
  name -> ``[N]`` tensor on the network's device, a missing entry being ``NaN`` (or ``-1`` in signed integer
  data; unsigned integers such as ``uint8`` have no missing marker);
* :meth:`~BayesNetData.split_missing` -- ``[N, V]`` data with missing entries becomes
  ``(values [N, V] with missing set to 0, mask [N, V])``, what :func:`hybridpgm.fit` can batch;
* :meth:`~BayesNetData.to_tensor` -- the dict form stacked back into ``[N, V]`` floats;
* per column, the observed values (states ``0..K-1`` of a discrete node, checked) with the observed
  mask, and the context inputs of neural CPDs as a dict name -> ``[N, ...]``;
* :attr:`~BayesNetData.dtype` and :attr:`~BayesNetData.device` -- where data is placed: those of the
  network's floating-point parameters and buffers (the default dtype and the CPU without any).

It relies on the network's ``cpds``, ``nodes``, ``cardinality`` and ``input_names``.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
from pyro.infer.util import is_validation_enabled
from pyro.poutine.block_messenger import BlockMessenger
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.runtime import _PYRO_STACK

from hybridpgm.checks import positive_int
from hybridpgm.data.validation import as_model_dtype
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["BayesNetData"]

#: set while :meth:`BayesNet.log_prob` traces the model: a row of probability 0 then scores ``-inf``, not an error
_SCORING: contextvars.ContextVar[bool] = contextvars.ContextVar("hybridpgm_bn_scoring", default=False)


def _missing(t: torch.Tensor) -> torch.Tensor:
    """Where ``t`` marks a missing entry: ``NaN`` in floating-point data, ``-1`` in signed integer data (any
    other negative integer is a bad value, refused by the range check, not a missing entry).  Unsigned integers
    (``uint8``, ...) and ``bool`` cannot hold ``-1``: none of their entries is missing (comparing a ``uint8``
    with ``-1`` would match 255, a state of a 256-state node or a bad value, never a missing entry)."""
    if torch.is_floating_point(t):
        return torch.isnan(t)
    if not t.is_signed():
        return torch.zeros_like(t, dtype=torch.bool)
    return t == -1


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
    """Continuous values ``t`` in the network's ``dtype`` on ``device``: a tensor (or array) keeps its own dtype,
    which is converted only where that is exact (:func:`~hybridpgm.data.validation.as_model_dtype`, whose
    :class:`DataError` names ``what``); a number or list of numbers is built in ``dtype``."""
    t = torch.as_tensor(t, device=device, dtype=None if hasattr(t, "dtype") else dtype)
    return as_model_dtype(t, dtype, what)


class BayesNetData:
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

    def columns(self, data, mask=None) -> dict:
        """Normalise data to a dict name -> ``[N]`` tensor (``NaN``/``-1`` = missing).

        A continuous node's column comes back in the network's :attr:`dtype`, converted only where that is
        exact (the rule of :func:`~hybridpgm.data.validation.as_model_dtype`: integers, bool and lower-precision
        floats are converted; a number list is built in the network's dtype); the states of a discrete node
        may have any real dtype.  A missing entry is ``NaN`` in floating-point data, ``-1`` in signed integer
        data, ``None`` in a list of state names, or an entry where ``mask`` is false; unsigned integer data
        (``uint8``, ...) has no missing marker (255 is a state, or a value out of range).

        :param data: dict name -> ``[N]`` column (a tensor, an array, a list of numbers, or for a discrete node
            with :attr:`state_names` a list of names, ``None`` where missing); or an ``[N, len(nodes)]`` tensor or
            NumPy array whose columns follow :attr:`nodes`; or a list of ``N`` rows of ``len(nodes)`` values
            (numbers or state names, in the order of :attr:`nodes`); or the pair ``(values, mask)`` of any of
            these with its mask (a tuple or list of two whole data sets, as :meth:`split_missing` returns).
        :param mask: ``True`` where observed: an ``[N, len(nodes)]`` bool tensor or array (or of the integers
            0 and 1; ``N`` the rows of the data), or a dict node -> ``[N]`` such column whose keys are nodes
            with a data column.  A node without a data column is missing in every row whatever the mask says.
        :raises DataError: a column that is not a node, a name that is not a state of its node, a column that
            holds neither numbers nor names, columns of different lengths, array data that is not
            ``[N, len(nodes)]`` (or a row of another length), a mask that is not ``[N, len(nodes)]`` (or names a
            key that is not a node, or has a column of another length), a dict mask marking a node without a
            data column observed (an entry True: checked like an integer mask's values; an all-False entry for
            such a node agrees with the data and is accepted), a mask of a dtype
            other than bool or integer (a float mask: ``0.5`` is neither observed nor missing), an integer mask
            holding a value other than 0 and 1 (checked like a state's range: at once, or inside
            :func:`hybridpgm.fit`'s step), a mask without data, or a continuous node's column of a floating
            dtype of higher precision than the network's (float64 data for a float32 network: converting
            would round it; the message names the node, both dtypes and the fix, ``data.to(dtype)`` or
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
            if v not in self.cpds:
                raise DataError(f"data has column '{v}', which is not a node (nodes: {self.nodes})")
            if self.cardinality(v) is None:
                t = _continuous(t, dtype, device, f"data column '{v}' (a continuous node)")
            else:
                t = self._discrete_column(v, t, device)
            if v in masks:
                m = self._mask_column(v, masks[v], t)
                t = torch.where(m & ~_missing(t), t.to(dtype), torch.full_like(t, float("nan"), dtype=dtype))
            out[v] = t
        lengths = {int(t.shape[0]) if t.dim() else None for t in out.values()}  # ints, also under a JIT trace
        if len(lengths) > 1 or None in lengths:
            raise DataError(f"data columns must be [N] and of one length N: "
                            f"{ {v: tuple(t.shape) for v, t in out.items()} }")
        return out

    def _data_columns(self, data) -> dict:
        """``data`` as a dict name -> raw column: a mapping (anything with ``items``, a DataFrame too) as it is,
        an ``[N, V]`` array-like split into its columns, a list of rows transposed."""
        if hasattr(data, "items"):
            return dict(data.items())
        nodes = self.nodes
        if isinstance(data, (list, tuple)):  # rows: transposed, so each column keeps its own kind of values
            for i, row in enumerate(data):
                if isinstance(row, (str, bytes)) or _length(row) != len(nodes):
                    raise DataError(f"data given as a list of rows: row {i} is {row!r:.60}, not a row of "
                                    f"{len(nodes)} values (one per node of {nodes})")
            return {v: [row[j] for row in data] for j, v in enumerate(nodes)}
        try:
            t = torch.as_tensor(data)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(f"data must be a dict node -> [N] column, an [N, {len(nodes)}] tensor or array "
                            f"(columns {nodes}) or a list of rows, got {_described(data)}") from None
        if t.dim() != 2 or t.shape[1] != len(nodes) or t.is_complex():
            raise DataError(f"tensor data must be [N, {len(nodes)}] real numbers (columns {nodes}), "
                            f"got shape {tuple(t.shape)} and dtype {t.dtype}")
        return {v: t[:, i] for i, v in enumerate(nodes)}

    def _mask_columns(self, mask, data: dict) -> dict:
        """``mask`` as a dict node -> raw ``[N]`` column (empty without a mask), its keys and shape checked."""
        if mask is None:
            return {}
        nodes = self.nodes
        if hasattr(mask, "items"):
            mask = dict(mask.items())
            stray = [k for k in mask if k not in self.cpds]
            if stray:
                raise DataError(f"mask names {stray!r}, which {'are' if len(stray) > 1 else 'is'} not a node "
                                f"(nodes: {nodes}; data columns: {list(data)})")
            for v in [k for k in mask if k not in data]:  # no column: missing everywhere, as its mask must say
                self._absent_mask(v, mask.pop(v), {_length(c) for c in data.values()})
            return mask
        try:
            m = torch.as_tensor(mask)
        except (TypeError, ValueError, RuntimeError):
            m = None
        rows = {_length(c) for c in data.values()}  # ints (a shape under a JIT trace holds tensors)
        if m is None or m.dim() != 2 or m.shape[1] != len(nodes) or {int(m.shape[0])} != rows:
            n = next(iter(rows)) if len(rows) == 1 else "N"
            raise DataError(f"mask must be an [N, {len(nodes)}] = [{n}, {len(nodes)}] bool tensor or array (True "
                            f"where observed; columns {nodes}) or a dict node -> [N] bool, got {_described(mask)}")
        return {v: m[:, i] for i, v in enumerate(nodes) if v in data}

    @staticmethod
    def _absent_mask(v: str, m, rows: set) -> None:
        """Check the dict-mask entry ``m`` of node ``v``, which has no data column: ``[N]`` (``N`` the data's
        rows), bool or 0/1 integers, and all False (missing, as the absent column is).  The "all False" check
        is deferred inside :func:`hybridpgm.fit`'s step like an integer mask's values (no host read there).

        :raises DataError: naming the node, for a mask that is not ``[N]`` bool/integer or marks a row observed.
        """
        try:
            m = torch.as_tensor(m)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(f"mask of node '{v}' must be [N] bool, got {_described(m)}") from None
        if m.dim() != 1 or (len(rows) == 1 and None not in rows and {int(m.shape[0])} != rows):
            raise DataError(f"mask of node '{v}' has shape {tuple(m.shape)}, the data columns "
                            f"{sorted(r for r in rows if r is not None)} rows")
        if m.dtype != torch.bool and (torch.is_floating_point(m) or m.is_complex()):
            raise DataError(f"mask of node '{v}' must be bool (or the integers 0 and 1), got dtype {m.dtype}: "
                            "a mask says observed (True) or missing (False), nothing between")
        check_or_defer(~(m != 0).any(),
                       lambda: DataError(f"mask of node '{v}' marks rows observed (True) but the data has no "
                                         f"column '{v}': give its column, or mark it missing (False)"))

    def _mask_column(self, v: str, m, t: torch.Tensor) -> torch.Tensor:
        """The mask ``m`` of column ``v`` (data ``t``) as ``[N]`` bool on ``t``'s device.

        :raises DataError: a mask that is not ``[N]``, of a dtype other than bool or integer, or an integer mask
            holding a value other than 0 and 1 (a deferred check, like a state's range).
        """
        try:
            m = torch.as_tensor(m, device=t.device)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(f"mask of column '{v}' must be [N] bool, got {_described(m)}") from None
        if tuple(m.shape) != tuple(t.shape):
            raise DataError(f"mask of column '{v}' has shape {tuple(m.shape)}, its data column {tuple(t.shape)}")
        if m.dtype == torch.bool:
            return m
        if torch.is_floating_point(m) or m.is_complex():
            raise DataError(f"mask of column '{v}' must be bool (or the integers 0 and 1), got dtype {m.dtype}: "
                            "a mask says observed (True) or missing (False), nothing between")
        check_or_defer(((m == 0) | (m == 1)).all(),
                       lambda: DataError(f"mask of column '{v}' holds integers other than 0 and 1 (dtype {m.dtype})"))
        return m == 1

    def split_missing(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values [N, V] with missing entries set to 0, mask [N, V] true where observed)``.

        The pair is what :func:`hybridpgm.fit` can batch (it rejects NaN) and what
        :meth:`model` accepts as ``model(values, mask)``.  An ``[N, V]`` tensor or array keeps its dtype; any
        other form of :meth:`columns` goes through :meth:`to_tensor` (floats), its missing markers (``-1``,
        ``None``) becoming mask ``False``.

        :raises DataError: as :meth:`columns`.
        """
        if torch.is_tensor(data) or (hasattr(data, "__array__") and not hasattr(data, "items")):
            x = torch.as_tensor(data)
            self._data_columns(x)  # the shape check
        else:
            x = self.to_tensor(data)
        mask = ~_missing(x)
        return torch.where(mask, x, torch.zeros_like(x)), mask

    def to_tensor(self, values) -> torch.Tensor:
        """Stack the columns of ``values`` (any form of :meth:`columns`) into ``[N, len(nodes)]`` floats of the
        network's dtype, every missing entry (``NaN``, ``-1`` in signed integer data, ``None``, mask false,
        an absent column) as ``NaN``.

        :raises DataError: as :meth:`columns`, or data of no column.
        """
        cols = self.columns(values)
        if not cols:
            raise DataError(f"to_tensor got data of no column (nodes: {self.nodes})")
        n = next(iter(cols.values())).shape[0]
        nan = torch.full((n,), float("nan"), dtype=self.dtype, device=self.device)
        return torch.stack([torch.where(_missing(cols[v]), nan, cols[v].to(self.dtype)) if v in cols else nan
                            for v in self.nodes], -1)

    def _observed_columns(self, cols: dict) -> dict:
        """Per column ``(values with missing entries filled by 0, observed mask)``.

        The mask is ``None`` when every entry of the column is observed and ``False`` when none is
        (the three cases give the model different Pyro sites); which case holds is read from the device
        once for all columns together, not once per column.
        """
        split = {v: self._fill_missing(v, t) for v, t in cols.items()}
        if not split:
            return {}
        missing = [m for _, m in split.values()]
        flags = torch.stack([torch.stack([m.any(), m.all()]) for m in missing]).tolist()  # one host read
        return {v: (filled, None if not some else (False if every else ~m))
                for (v, (filled, m)), (some, every) in zip(split.items(), flags)}

    def _discrete_column(self, v: str, t, device) -> torch.Tensor:
        """The column of discrete node ``v`` as a tensor of states: a tensor, an array or a list of numbers as
        it is; a list of state names (or of names and state indices), ``None`` for a missing entry, by
        :attr:`state_names`.

        :raises DataError: a name that is not a state of ``v`` (or ``v`` has no state names), or a value that is
            neither a number nor a name, naming the node and the value.
        """
        if isinstance(t, (list, tuple)) and any(s is None or isinstance(s, str) for s in t):
            states = self.state_names.get(v)
            unknown = [s for s in t if isinstance(s, str) and (states is None or s not in states)]
            if unknown:
                raise DataError(f"data column '{v}' holds {unknown[0]!r}, which is not a state of '{v}' "
                                f"(states: {states})")
            none = float("nan") if any(isinstance(s, float) for s in t) else -1  # the missing marker of the dtype
            t = [none if s is None else states.index(s) if isinstance(s, str) else s for s in t]
        try:
            return torch.as_tensor(t, device=device)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(f"data column '{v}' must hold states (numbers, or names of {self.state_names.get(v)}), "
                            f"got {type(t).__name__} {t!r:.60}") from None

    def _check_site_names(self, observed: dict) -> None:
        """Refuse a node named like a site :meth:`model` derives from another node's name for these data (Pyro
        refuses two sites of one name): ``"<v>_prior"`` (the prior factor of a node with a Dirichlet prior),
        ``"<v>_observed"`` and ``"<v>_unobserved"`` (a column with some entries missing).

        :raises ModelSpecError: naming the node, the site and the node it derives from.
        """
        derived = {f"{v}_prior": v for v, c in self.cpds.items() if getattr(c, "prior", None) is not None}
        for v, (_, mask) in observed.items():
            if isinstance(mask, torch.Tensor):
                derived.update({f"{v}_observed": v, f"{v}_unobserved": v})
        clash = next((site for site in derived if site in self.cpds), None)
        if clash is not None:
            v = derived[clash]
            why = "its prior factor" if clash.endswith("_prior") else "its sites for a column with missing entries"
            raise ModelSpecError(f"BayesNet.model: node {clash!r} has the name of the Pyro site {clash!r} of node "
                                 f"{v!r} ({why}); Pyro refuses two sites of one name, so rename node {clash!r}")

    def _fill_missing(self, v, t):
        """``(values with missing filled by 0, missing mask)``; a discrete column's range check is deferred."""
        missing = _missing(t)
        card = self.cardinality(v)
        filled = torch.where(missing, torch.zeros_like(t), t)
        if card is not None:
            filled = filled.long()
            bad = (~missing) & ((filled < 0) | (filled >= card) | (t != filled.to(t.dtype)))
            check_or_defer(~bad.any(), lambda: DataError(f"column '{v}' holds a value outside 0..{card - 1}"))
            filled = filled.clamp(0, card - 1)  # until a deferred check is read (an index out of range asserts)
        else:  # columns() gave it the network's dtype already: this refuses only a column that bypassed it
            filled = as_model_dtype(filled, self.dtype, f"data column '{v}' (a continuous node)")
        return filled, missing

    def _inputs(self, inputs) -> dict:
        names = self.input_names
        if inputs is None:
            return {}
        if torch.is_tensor(inputs):
            if len(names) != 1:
                raise DataError(f"pass inputs as a dict; the network has context inputs {names}")
            inputs = {names[0]: inputs}
        unknown = set(inputs) - set(names)
        if unknown:
            raise DataError(f"unknown context input(s) {sorted(unknown)}; expected {names}")
        dtype, device = self.dtype, self.device
        return {k: _continuous(t, dtype, device, f"context input '{k}'") for k, t in inputs.items()}

    def _rows(self, cols: dict, ctx: dict, num_samples: int | None) -> int:
        """The number of rows ``N`` of :meth:`model`'s plate: that of the data and of the context inputs (a 0-d
        input broadcasts), else ``num_samples`` (1 by default).

        :raises DataError: context inputs with another number of rows than the data (or than each other),
            naming every row count.
        """
        sizes = {f"data ({len(cols)} column{'s' if len(cols) != 1 else ''})": int(t.shape[0])
                 for t in list(cols.values())[:1]}
        sizes.update({f"context input '{k}'": int(t.shape[0]) for k, t in ctx.items() if t.dim() > 0})
        if len(set(sizes.values())) > 1:
            counts = ", ".join(f"{what}: {n}" for what, n in sizes.items())
            raise DataError(f"BayesNet.model: the data and the context inputs must have one row each per example, "
                            f"got different row counts ({counts})")
        return next(iter(sizes.values()), 1 if num_samples is None else num_samples)

    @staticmethod
    def _prior_weight(num_data, n: int) -> float:
        """The weight :math:`B / N_{\\rm data}` of the Dirichlet priors for a batch of ``n`` rows.

        :raises ConfigError: a ``num_data`` that is not a positive integer (``bool``, float, string refused).
        :raises DataError: a ``num_data`` smaller than the batch (the full data set holds every batch).
        """
        if num_data is None:
            return 1.0
        num_data = positive_int(num_data, "BayesNet.model num_data (the size of the full data set)",
                                error=ConfigError)
        if num_data < n:
            raise DataError(f"BayesNet.model num_data={num_data} (the size of the full data set) is smaller than "
                            f"the {n} rows of this batch")
        return n / num_data

    @staticmethod
    @contextlib.contextmanager
    def _scoring():
        """Within the block :meth:`_check_possible` lets impossible rows through (their score is ``-inf``)."""
        token = _SCORING.set(True)
        try:
            yield
        finally:
            _SCORING.reset(token)

    def _check_possible(self, v: str, fn, obs: torch.Tensor, seen: torch.Tensor | None, observed: dict) -> None:
        """Under Pyro's validation, refuse rows in which ``v`` and its parents are observed and the observed state
        of ``v`` has probability 0 given its parents' (a structural zero of a
        :class:`~hybridpgm.graphs.cpd.Table`: the row's likelihood is 0, its loss ``+inf``;
        :meth:`BayesNet.log_prob` scores such a row ``-inf``).  Only CPDs with structural zeros are checked; the
        check is deferred inside :func:`hybridpgm.fit`'s step
        (:func:`~hybridpgm.train.deferred_checks.check_or_defer`), so it costs no extra host read there.  A row
        with a missing parent is not checked (the parent's value may be a sample, as under Gibbs, not every
        value as under enumeration): if no value of it makes the row possible, its loss is ``+inf``.

        :param seen: ``[N]`` where ``v`` is observed (``None``: every row).
        :param observed: :meth:`_observed_columns` of the data (whose masks say where the parents are observed).
        :raises DataError: naming the rows (of the batch) and the node.
        """
        if _SCORING.get() or not is_validation_enabled() or not self.cpds[v]._has_zero():
            return
        for p in self.cpds[v].discrete_parents:
            parent_seen = observed.get(p, (None, False))[1]
            if parent_seen is False:
                return
            if parent_seen is not None:
                seen = parent_seen if seen is None else seen & parent_seen
        lp = fn.log_prob(obs)
        impossible = (lp == float("-inf")).reshape(-1, lp.shape[-1]).all(0)
        if seen is not None:
            impossible = impossible & seen

        def error():
            rows = impossible.nonzero().flatten().tolist()
            shown = rows[:10] + (["..."] if len(rows) > 10 else [])
            plural = len(rows) > 1
            return DataError(f"BayesNet.model: row{'s' if plural else ''} {shown} of the data (of the batch, "
                             f"inside fit) {'are' if plural else 'is'} impossible under the model: node '{v}' is "
                             f"observed in a state of probability 0 (a structural zero of its table) given its "
                             f"parents' values in that row, so the likelihood is 0 and the loss +inf; fix or drop the "
                             f"row{'s' if len(rows) > 1 else ''}, or give that table entry a non-zero probability")
        check_or_defer(~impossible.any(), error)

    def _check_enumerated(self, data, mask) -> None:
        """:meth:`BayesNet.guide`'s check: the empty guide is right only when every missing discrete entry of
        ``data`` is enumerated, so without an enumeration handler (Pyro's ``EnumMessenger``, which
        :class:`~pyro.infer.TraceEnum_ELBO` puts around model and guide) such data are refused.  A run under
        :func:`pyro.poutine.block` (the probe trace of Pyro's ``_guess_max_plate_nesting``, whose sites reach
        no objective) is let through; it reads nothing from the device."""
        if data is None or any(isinstance(m, (EnumMessenger, BlockMessenger)) for m in _PYRO_STACK):
            return
        cols = self.columns(data, mask)
        latent = [v for v in self.nodes if self.cardinality(v) is not None
                  and (v not in cols or bool(_missing(cols[v]).any()))]
        if latent:
            raise ConfigError(
                f"BayesNet.guide is empty: it is exact only when the missing discrete entries are enumerated, and "
                f"the data have missing entries in {latent} with no enumeration active, so an ELBO would sample "
                f"them from the model instead of summing them out (a biased fit).  Train with "
                f"SVIObjective(bn.model, bn.guide, pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)) (the model "
                f"marks its latent sites for enumeration); for samples of the missing entries given the observed "
                f"ones use bn.sample(n, evidence=...) or pyro.infer.infer_discrete(bn.model, first_available_dim=-2)")
