"""Where a :class:`~hybridpgm.graphs.MarkovNet` keeps its table log-potentials, under each factor's name.

A factor declared with a tensor or an :class:`~torch.nn.Parameter` is held by the sub-module
``table_potentials`` of the net (a :class:`TablePotentials`), as the buffer or parameter named by the factor
(:func:`table_key`): in ``state_dict()`` and ``named_parameters()`` the family ``"coupling"`` is
``table_potentials.coupling``, as the neural factor ``"horizontal"`` is ``potentials.horizontal...``, and in
Pyro's param store (:meth:`~hybridpgm.graphs.MarkovNet.model` registers the net with ``pyro.module``) it is
``markov_net$$$table_potentials.coupling``.  A state dict is thus matched to the factors by name, whatever order
they were declared in.

**Older state.**  Before, the table of the ``i``-th family declared (neural families counted) was the entry
``_pot_{i}`` of the net itself.  :func:`convert_legacy_tables` renames those entries on load (the net's
``_load_from_state_dict``), exactly as the old code placed them: by declaration order.  That load also refuses a
table holding NaN or an infinity (:func:`refuse_nonfinite_tables`), as declaring it does.
The net's ``_legacy_state_renames`` gives the same renaming to :mod:`hybridpgm.state_renames`, for a state dict
or a record of names read elsewhere (a training checkpoint, the record of shared parameters of a model file).
"""

from __future__ import annotations

import re

import torch
from torch import nn

__all__ = ["LegacyTableNames", "TablePotentials", "convert_legacy_tables", "legacy_table", "refuse_nonfinite_tables",
           "table_key"]

#: the state-dict entry of the ``i``-th family's table before tables were named by their factor
_LEGACY = re.compile(r"_pot_(0|[1-9][0-9]*)")


class TablePotentials(nn.Module):
    """The table log-potentials of one :class:`~hybridpgm.graphs.MarkovNet`: each a buffer (a fixed table) or a
    parameter (an :class:`~torch.nn.Parameter` the caller declared), named ``table_key(factor name)``.  It is
    never called: :meth:`MarkovNet.tables <hybridpgm.graphs.MarkovNet.tables>` reads the tables by name."""

    def table(self, key: str) -> torch.Tensor:
        """The parameter or buffer ``key``."""
        return self._parameters[key] if key in self._parameters else self._buffers[key]


class LegacyTableNames(nn.Module):
    """What :class:`~hybridpgm.graphs.MarkovNet` keeps of the former names ``_pot_i`` of its tables: state saved
    under them loads (:func:`convert_legacy_tables`, on ``load_state_dict``), and ``net._pot_i`` still reads the
    table of the ``i``-th family."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if (table := legacy_table(self, name)) is None:
                raise
            return table

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Rename the entries ``_pot_i`` of older state (:func:`convert_legacy_tables`), then refuse a table holding
        NaN or an infinity (:func:`refuse_nonfinite_tables`: an error of ``load_state_dict`` naming the entry and
        the factor; :func:`hybridpgm.load` names the file too), and load the rest."""
        convert_legacy_tables(state_dict, prefix, self)
        refuse_nonfinite_tables(state_dict, prefix, self, error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _legacy_state_renames(self) -> dict[str, str]:
        """``_pot_{i}`` -> today's name of the ``i``-th family's table (:mod:`hybridpgm.state_renames`)."""
        return _legacy_keys(self)


_PROBE = TablePotentials()  # its attributes are the names a table cannot be registered under


def table_key(name: str, container: nn.Module = _PROBE) -> str:
    """The name under which factor ``name``'s table is registered in :class:`TablePotentials` (or, given
    ``container``, under which ``name`` is registered in a module of that class: NVIL's
    :class:`~hybridpgm.infer.nvil_baselines.SiteNets` registers its networks so).

    The factor's name itself, except where torch would refuse it: ``"%"`` and ``"."`` (which a registered name
    cannot hold) become ``"%25"`` and ``"%2E"``, and a name that is an attribute of ``container`` (of an
    ``nn.Module``: ``"type"``, ``"to"``, ``"training"`` ...) gets its first character written ``%XX``
    (``"%74ype"``).  The escaping is injective: two factors never share a key.  Every ``%`` of a key begins one
    such escape, so decoding each ``%XX`` gives the name back.

    :param str name: the name to register.
    :param container: an (empty) instance of the class the name is registered in; default: a
        :class:`TablePotentials`.

    >>> table_key("coupling"), table_key("h.0"), table_key("type")
    ('coupling', 'h%2E0', '%74ype')
    """
    key = name.replace("%", "%25").replace(".", "%2E")
    if hasattr(container, key):  # attribute names are ASCII identifiers, so the first character fits in %XX
        key = f"%{ord(key[0]):02X}{key[1:]}"
    return key


def _legacy_keys(mrf) -> dict[str, str]:
    """``_pot_{i}`` -> today's name (relative to the net) of the table of the ``i``-th family of ``mrf``."""
    return {f"_pot_{i}": "table_potentials." + fam["key"]
            for i, fam in enumerate(mrf.families.values()) if fam["kind"] == "tensor"}


def legacy_table(mrf, name: str) -> torch.Tensor | None:
    """The table that the old attribute ``name`` (``mrf._pot_1``) of ``mrf`` meant, or ``None``."""
    families = mrf.__dict__.get("families")
    if not _LEGACY.fullmatch(name) or families is None:
        return None
    new = _legacy_keys(mrf).get(name)
    return None if new is None else mrf.table_potentials.table(new.partition(".")[2])


def refuse_nonfinite_tables(state_dict: dict, prefix: str, mrf, error_msgs: list) -> None:
    """Refuse the table entries of ``state_dict`` that hold NaN, ``+inf`` or ``-inf``, which a net's tables never
    hold (:meth:`MarkovNet.add_factor <hybridpgm.graphs.MarkovNet.add_factor>` and every query refuse them; a model
    file's check lets a buffer be infinite, a GPyTorch bound): each adds a message to ``error_msgs`` naming the entry
    and the factor, so ``load_state_dict`` raises, and the net's own table is put in the entry's place (the refused
    one is not copied).  An entry of another shape or a non-floating dtype, or on the meta device, is left to
    ``load_state_dict``'s own checks.

    :param state_dict: the state being loaded (the entries of the net and of its sub-modules), its legacy entries
        renamed already (:func:`convert_legacy_tables`).
    :param str prefix: the net's prefix in it.
    :param mrf: the :class:`~hybridpgm.graphs.MarkovNet`.
    :param list error_msgs: ``load_state_dict``'s list of errors."""
    families = mrf.__dict__.get("families") or {}
    for name, fam in families.items():
        key = prefix + "table_potentials." + fam["key"] if fam["kind"] == "tensor" else None
        saved = state_dict.get(key)
        if not isinstance(saved, torch.Tensor) or saved.is_meta or not torch.is_floating_point(saved):
            continue
        own = mrf.table_potentials.table(fam["key"])
        if tuple(saved.shape) == tuple(own.shape) and not bool(torch.isfinite(saved).all()):
            error_msgs.append(f"{key}: factor {name!r} has non-finite log-potentials (NaN or inf) in the state "
                              "loaded, which a MarkovNet's tables never hold (add_factor and every query refuse "
                              "them; write a hard constraint as a finite penalty, e.g. -1e4); the table was not loaded")
            state_dict[key] = own


def convert_legacy_tables(state_dict: dict, prefix: str, mrf) -> None:
    """Rename, in place, the entries ``prefix + "_pot_{i}"`` of ``state_dict`` (state of ``mrf`` saved before
    tables were named by their factor) to ``prefix + "table_potentials." + table_key(name)`` of the ``i``-th
    family, which the old code stored there.  An entry whose new name is present already, or whose family is
    not a table, is left as it is (a strict load then reports it as unexpected)."""
    for old, new in _legacy_keys(mrf).items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
