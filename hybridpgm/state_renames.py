"""Entries of saved state that a module has renamed since the state was written.

A module's ``_load_from_state_dict`` renames its own old entries when a state dict is loaded into it, so
``load_state_dict`` and :func:`hybridpgm.load` take state of any age.  Names read *outside* ``load_state_dict``
need the same renaming first: the state dict of a training checkpoint, compared with the model's before it is
loaded (:func:`~hybridpgm.train.resume.check_resumable`), and the groups of shared names of a model file
(:func:`~hybridpgm.serialization_ties.retie`).  A module that has renamed entries says so by a method
``_legacy_state_renames()`` returning ``{old name: today's name}`` relative to itself
(:class:`~hybridpgm.graphs.MarkovNet`: its tables, once ``_pot_i``); :func:`renamed_entries` collects them
over a whole model, each with its module's path in front, and :func:`upgrade_state` and :func:`upgrade_ties`
apply them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["renamed_entries", "upgrade_state", "upgrade_ties"]


def renamed_entries(module: nn.Module) -> dict[str, str]:
    """``{old name: today's name}`` of the renamed state entries of every sub-module of ``module`` (itself
    included) that declares some (``_legacy_state_renames()``), with the sub-module's path in front
    (``"0._pot_1"`` -> ``"0.table_potentials.field"`` for a MarkovNet first in an ``nn.ModuleList``)."""
    out = {}
    for path, sub in module.named_modules(remove_duplicate=False):
        renames = getattr(type(sub), "_legacy_state_renames", None)
        if callable(renames):
            prefix = path + "." if path else ""
            out.update({prefix + old: prefix + new for old, new in renames(sub).items()})
    return out


def upgrade_state(module: nn.Module, state_dict: dict) -> dict:
    """``state_dict`` (of ``module``, read from a file) with its old entries renamed (:func:`renamed_entries`);
    ``state_dict`` itself when it holds none.  The copy keeps the order of the entries and the ``_metadata``
    that ``load_state_dict`` reads.  An old entry whose new name is present too is left as it is."""
    renames = {old: new for old, new in renamed_entries(module).items() if old in state_dict and new not in state_dict}
    if not renames:
        return state_dict
    out = type(state_dict)((renames.get(k, k), v) for k, v in state_dict.items())
    if hasattr(state_dict, "_metadata"):
        out._metadata = state_dict._metadata
    return out


def upgrade_ties(module: nn.Module, record: Any) -> Any:
    """A model file's record of shared names (:func:`~hybridpgm.serialization_ties.tie_record`) with the old
    names of ``module``'s entries renamed; anything that is not a dict of lists of groups of names is left as it
    is, for :func:`~hybridpgm.serialization_ties.retie` to name."""
    renames = renamed_entries(module)
    if not renames or not isinstance(record, dict):
        return record
    return {kind: [[renames.get(n, n) for n in group] if isinstance(group, list) else group for group in groups]
            if isinstance(groups, list) else groups for kind, groups in record.items()}
