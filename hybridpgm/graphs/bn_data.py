"""The data view of a :class:`~hybridpgm.graphs.BayesNet`: columns, missing entries, context inputs.

:class:`BayesNetData` is a mixin of :class:`~hybridpgm.graphs.BayesNet` that turns what a user passes as
data into what the Pyro model and the exact queries consume (``N`` rows, ``V`` nodes):

* :meth:`~BayesNetData.columns` -- a dict name -> ``[N]`` tensor, or an ``[N, V]`` tensor whose columns
  follow :attr:`BayesNet.nodes <hybridpgm.graphs.BayesNet.nodes>`, optionally with a mask (``True`` where
  observed) or as the pair ``(values, mask)``, becomes a dict name -> ``[N]`` tensor on the network's
  device, a missing entry being ``NaN`` (or ``-1`` in integer data);
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

from collections.abc import Mapping

import torch

from hybridpgm.data.validation import as_model_dtype
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["BayesNetData"]


def _missing(t: torch.Tensor) -> torch.Tensor:
    """Where ``t`` marks a missing entry: ``NaN`` in floating-point data, ``-1`` in integer data (any other
    negative integer is a bad value, refused by the range check, not a missing entry)."""
    return torch.isnan(t) if torch.is_floating_point(t) else t == -1


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
        may have any real dtype.

        :param data: dict name -> ``[N]`` tensor (for a discrete node with :attr:`state_names` also a list of
            names, ``None`` where missing), or a ``[N, len(nodes)]`` tensor whose columns follow :attr:`nodes`.
        :param mask: optional dict name -> ``[N]`` bool (or ``[N, len(nodes)]``),
            ``True`` where observed.
        :raises DataError: a column that is not a node, a name that is not a state of its node, a column that
            holds neither numbers nor names, columns of different lengths, tensor data that is not
            ``[N, len(nodes)]``, or a continuous node's column of a floating dtype of higher precision than the
            network's (float64 data for a float32 network: converting would round it; the message names the
            node, both dtypes and the fix, ``data.to(dtype)`` or ``bn.to(dtype)``).
        """
        if data is None:
            return {}
        if isinstance(data, (tuple, list)) and len(data) == 2 and mask is None:
            data, mask = data
        if torch.is_tensor(data):
            if data.dim() != 2 or data.shape[1] != len(self.cpds):
                raise DataError(f"tensor data must be [N, {len(self.cpds)}] (columns {self.nodes}), "
                                f"got {tuple(data.shape)}")
            data = {v: data[:, i] for i, v in enumerate(self.nodes)}
        if torch.is_tensor(mask):
            mask = {v: mask[:, i] for i, v in enumerate(self.nodes)}
        out = {}
        dtype, device = self.dtype, self.device
        for v, t in data.items():
            if v not in self.cpds:
                raise DataError(f"data has column '{v}', which is not a node (nodes: {self.nodes})")
            if self.cardinality(v) is None:
                t = _continuous(t, dtype, device, f"data column '{v}' (a continuous node)")
            else:
                t = self._discrete_column(v, t, device)
            if mask is not None and v in mask:
                m = torch.as_tensor(mask[v], device=t.device, dtype=torch.bool)
                t = torch.where(m, t.to(dtype), torch.full_like(t, float("nan"), dtype=dtype))
            out[v] = t
        lengths = {t.shape[0] for t in out.values()}
        if len(lengths) > 1:
            raise DataError(f"data columns differ in length: { {v: t.shape[0] for v, t in out.items()} }")
        return out

    def split_missing(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values [N, V] with missing entries set to 0, mask [N, V] true where observed)``.

        The pair is what :func:`hybridpgm.fit` can batch (it rejects NaN) and what
        :meth:`model` accepts as ``model(values, mask)``.
        """
        x = self.to_tensor(data) if not torch.is_tensor(data) else data
        mask = ~_missing(x)
        return torch.where(mask, x, torch.zeros_like(x)), mask

    def to_tensor(self, values: Mapping) -> torch.Tensor:
        """Stack a dict of ``[N]`` columns into ``[N, len(nodes)]`` floats (``NaN`` = missing)."""
        cols = self.columns(values)
        n = next(iter(cols.values())).shape[0]
        nan = torch.full((n,), float("nan"), dtype=self.dtype, device=self.device)
        return torch.stack([cols[v].to(self.dtype) if v in cols else nan for v in self.nodes], -1)

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
        it is; a list of state names (``None`` for a missing entry) by :attr:`state_names`.

        :raises DataError: a name that is not a state of ``v`` (or ``v`` has no state names), or a value that is
            neither a number nor a name, naming the node and the value.
        """
        if not isinstance(t, torch.Tensor) and isinstance(t, (list, tuple)) and any(isinstance(s, str) for s in t):
            states = self.state_names.get(v)
            unknown = [s for s in t if s is not None and (states is None or s not in states)]
            if unknown:
                raise DataError(f"data column '{v}' holds {unknown[0]!r}, which is not a state of '{v}' "
                                f"(states: {states})")
            return torch.tensor([-1 if s is None else states.index(s) for s in t], device=device)
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
