"""The factors' scope indices of a :class:`~hybridpgm.graphs.MarkovNet`: which variables each factor touches.

Each family's scopes are a ``F x k`` long tensor of variable indices (``F`` factors of ``k`` variables), kept
as a non-persistent buffer ``_scope_i`` so that it follows the net to its device: it is structure, derived
from the declaration, not state, so it is not in the ``state_dict``.  That is why a move that leaves buffers
without values (``net.to("meta")`` then ``net.to_empty(device=...)``, the way to build a model without
memory) must not keep them: :class:`ScopeIndices` rebuilds them from the declaration after every
:meth:`~torch.nn.Module._apply` that replaced them (``to``, ``to_empty``, ``cuda`` ...), on the device and with
the dtype each buffer has then, except on the meta device, where there are no values to give.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ScopeIndices"]


class ScopeIndices(nn.Module):
    """Mixin of :class:`~hybridpgm.graphs.MarkovNet` holding the families' scope indices (its ``families``
    records, its ``_index`` of variable positions)."""

    def _register_scopes(self, fam: dict, scopes: list, device: torch.device | None) -> None:
        """Register the ``F x k`` indices of ``scopes`` (sequences of variable names) for the family record
        ``fam`` (which gets their buffer's name as ``fam["scope_key"]``), on ``device``."""
        fam["scope_key"] = f"_scope_{len(self.families)}"
        self.register_buffer(fam["scope_key"], self._scope_tensor(scopes, torch.long, device), persistent=False)

    def _scope_tensor(self, scopes: list, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
        return torch.tensor([[self._index[v] for v in s] for s in scopes], dtype=dtype, device=device)

    def _apply(self, fn, recurse=True):
        """:meth:`torch.nn.Module._apply`, then the scope indices that it replaced rebuilt from the declaration
        where they have a device with values (after ``to_empty`` they would hold uninitialised memory); a move
        that changes nothing (``fn`` returned the same tensor) rebuilds nothing."""
        families = getattr(self, "families", {})
        before = {fam["scope_key"]: self._buffers[fam["scope_key"]] for fam in families.values()}
        super()._apply(fn, recurse)
        for fam in families.values():
            moved = self._buffers[fam["scope_key"]]
            if moved is not before[fam["scope_key"]] and not moved.is_meta:
                self._buffers[fam["scope_key"]] = self._scope_tensor(fam["scopes"], moved.dtype, moved.device)
        return self
