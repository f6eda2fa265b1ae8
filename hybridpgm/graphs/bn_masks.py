"""The masks of :class:`~hybridpgm.graphs.BayesNet` data: ``True`` where an entry is observed.

:class:`BayesNetMasks` is a mixin of :class:`~hybridpgm.graphs.bn_data.BayesNetData`: a mask given beside the data
(an ``[N, V]`` bool or 0/1 array, or a dict node -> ``[N]``) is split into per-node ``[N]`` bool columns, its keys,
shape and dtype checked; an integer mask's values (0 and 1 only) are checked without a host read inside
:func:`hybridpgm.fit`'s step (:func:`~hybridpgm.train.deferred_checks.check_or_defer`).
"""

from __future__ import annotations

import torch

from hybridpgm.checks import torch_readable
from hybridpgm.errors import DataError
from hybridpgm.graphs.bn_values import _described, _length, _plain
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["BayesNetMasks"]


class BayesNetMasks:
    """Mixin of :class:`~hybridpgm.graphs.bn_data.BayesNetData`: the masks of the data (``True`` = observed)."""

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
            m = torch.as_tensor(torch_readable(_plain(mask)))
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
            m = torch.as_tensor(torch_readable(_plain(m)))
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
                                         f"column '{v}': give its column, or mark it missing (False)"),
                       f"mask of node '{v}' marks rows observed (True) but the data has no column '{v}'")

    def _mask_column(self, v: str, m, t: torch.Tensor) -> torch.Tensor:
        """The mask ``m`` of column ``v`` (data ``t``) as ``[N]`` bool on ``t``'s device.

        :raises DataError: a mask that is not ``[N]``, of a dtype other than bool or integer, or an integer mask
            holding a value other than 0 and 1 (a deferred check, like a state's range).
        """
        try:
            m = torch.as_tensor(torch_readable(_plain(m)), device=t.device)
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
                       lambda: DataError(f"mask of column '{v}' holds integers other than 0 and 1 (dtype {m.dtype})"),
                       f"mask of column '{v}' holds integers other than 0 and 1 (dtype {m.dtype})")
        return m == 1

