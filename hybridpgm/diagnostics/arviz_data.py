"""``arviz.from_dict`` for both ArviZ generations, refusing what it would silently drop or change.

Everything hybridpgm hands to ArviZ is built through :func:`make_inference_data`, so the same code gives an
``InferenceData`` under ArviZ 0.x and a ``DataTree`` under ArviZ 1.x (whose ``from_dict`` takes one dict of groups
instead of keyword groups).  Arrays are NumPy with the leading ``(chain, draw)`` dimensions ArviZ expects.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import arviz as az
import numpy as np

from hybridpgm.diagnostics.host_arrays import as_host_array
from hybridpgm.errors import ConfigError, DataError

__all__ = ["GROUPS", "make_inference_data"]

_KEYWORD_STYLE = "posterior" in inspect.signature(az.from_dict).parameters


#: the ArviZ groups :func:`make_inference_data` takes: those ArviZ 0.x's ``from_dict`` takes as keywords, all of
#: which ArviZ 1.x's takes too (0.x drops any other name without a word, 1.x keeps any name)
GROUPS = ("posterior", "posterior_predictive", "predictions", "log_likelihood", "sample_stats", "prior",
          "prior_predictive", "sample_stats_prior", "observed_data", "constant_data", "predictions_constant_data",
          "warmup_posterior", "warmup_posterior_predictive", "warmup_predictions", "warmup_log_likelihood",
          "warmup_sample_stats")

#: groups whose arrays have no leading ``(chain, draw)`` dimensions (under ArviZ 1.x: those named ``*data*``)
_UNSAMPLED_GROUPS = ("observed_data", "constant_data", "predictions_constant_data")

#: ArviZ's sample dims, leading every array of the other groups
_SAMPLE_DIMS = ("chain", "draw")


def make_inference_data(groups: Mapping[str, Mapping[str, Any]], dims: Mapping[str, list[str]] | None = None,
                        coords: Mapping[str, Any] | None = None):
    """``arviz.from_dict`` for both ArviZ generations, refusing what it would silently drop or change.

    The same call gives an ``InferenceData`` under ArviZ 0.x and a ``DataTree`` under ArviZ 1.x, with the same
    groups, variables, dims and coords: ``dims`` and ``coords`` apply to the ``predictions`` groups too (ArviZ
    1.x takes those from separate ``pred_dims``/``pred_coords``, ArviZ 0.x from ``dims``), and ``warmup_*``
    groups are kept (both drop them by default).

    :param groups: group name -> variable -> array (a tensor in any dtype, ``bfloat16`` included, or an array).
        The group names are those of :data:`GROUPS` (the groups ArviZ 0.x's ``from_dict`` takes, all of which
        ArviZ 1.x takes too).  Arrays have leading dimensions ``(chain, draw)``, except in ``observed_data``,
        ``constant_data`` and ``predictions_constant_data``.  A group with no variables is left out.
    :param dims: variable -> names of its dims after ``(chain, draw)``; an axis without a name gets ArviZ's
        ``<variable>_dim_<i>``.
    :param coords: dim name -> coordinate values.
    :raises ConfigError: for a group name that is not in :data:`GROUPS` (such as a misspelt ``"posteriour"``).
    :raises DataError: for ``groups`` that is not a mapping group -> mapping, or a group that is not a mapping
        variable -> array (an array given directly as ``{"posterior": array}``); an array of a sampled group with
        fewer than two dims (no ``(chain, draw)``); a
        variable given more dim names than its array has dims after ``(chain, draw)``; a variable named like a
        dim of its group (``chain``, ``draw``, a name in ``dims``, ``<other>_dim_0``), which xarray would turn
        into a coordinate, losing the variable; a tensor in a dtype NumPy cannot hold; under ArviZ 1.x, a name
        holding ``/`` (a ``DataTree`` path separator).
    """
    _check_mappings(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ConfigError(f"unknown ArviZ group(s) {unknown}; make_inference_data takes {list(GROUPS)}")
    groups = {g: {k: as_host_array(v) for k, v in variables.items()} for g, variables in groups.items() if variables}
    dims = dict(dims or {})
    _check_lead_dims(groups)
    _check_dims(groups, dims)
    _check_names(groups, dims)
    if not _KEYWORD_STYLE:
        _check_no_slash(groups, dims)
    if _KEYWORD_STYLE:  # ArviZ 0.x: its predictions groups take `dims` (and `coords`) when pred_dims is not given
        data = az.from_dict(**groups, dims=dims, coords=coords, save_warmup=True)
    else:  # ArviZ >= 1.0: its predictions groups take pred_dims and pred_coords only
        data = az.from_dict(groups, dims=dims, coords=coords, pred_dims=dims, pred_coords=coords, save_warmup=True)
    _check_kept(data, groups)
    return data


def _check_mappings(groups) -> None:
    """Raise :class:`DataError` unless ``groups`` is a mapping of group names to mappings (an array in place of
    either would reach ``if variables`` as NumPy's or torch's truth-value error)."""
    if not isinstance(groups, Mapping):
        raise DataError(f"make_inference_data needs a mapping group -> (variable -> array), got "
                        f"{type(groups).__name__}")
    for group, variables in groups.items():
        if not isinstance(variables, Mapping):
            raise DataError(f"make_inference_data group {group!r} must be a mapping variable -> array, got "
                            f"{type(variables).__name__} (for one variable: {{{group!r}: {{'x': array}}}})")


def _check_lead_dims(groups: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Raise :class:`DataError` for an array of a sampled group without ``(chain, draw)`` dims (ArviZ 0.x
    silently reads a ``K`` array as one chain of ``K`` draws, ArviZ 1.x raises a bare ``ValueError``)."""
    for group, variables in groups.items():
        if group in _UNSAMPLED_GROUPS:
            continue
        for name, array in variables.items():
            if array.ndim < 2:
                raise DataError(f"variable {name!r} in group {group!r} has shape {array.shape}; the arrays of a "
                                f"sampled group lead with (chain, draw) dims: for one chain of K draws pass shape "
                                f"(1, K, ...)")


def _check_dims(groups: Mapping[str, Mapping[str, np.ndarray]], dims: Mapping[str, list[str]]) -> None:
    """Raise :class:`DataError` for a variable named with more dims than its array has (ArviZ raises a bare
    ``KeyError`` deep inside)."""
    for group, variables in groups.items():
        lead = 0 if group in _UNSAMPLED_GROUPS else 2
        for name, array in variables.items():
            if name in dims and len(dims[name]) > max(array.ndim - lead, 0):
                raise DataError(f"dims {list(dims[name])} name {len(dims[name])} dims of variable {name!r} in group "
                                f"{group!r}, whose array of shape {array.shape} has {max(array.ndim - lead, 0)} "
                                f"after {'(chain, draw)' if lead else 'none'}")


def _group_dims(group: str, variables: Mapping[str, np.ndarray], dims: Mapping[str, list[str]]) -> dict[str, str]:
    """Every dim name the variables of ``group`` may get -> the variable that brings it.  An unnamed axis is
    ``<variable>_dim_<i>``, where ArviZ 0.x counts ``i`` over the axes after ``(chain, draw)`` and ArviZ 1.x
    over the unnamed ones: both names are listed."""
    lead = 0 if group in _UNSAMPLED_GROUPS else 2
    out = {} if group in _UNSAMPLED_GROUPS else {d: "(every variable)" for d in _SAMPLE_DIMS}
    for name, array in variables.items():
        given = list(dims.get(name, []))
        for i in range(array.ndim - lead):
            if i < len(given) and given[i] is not None:
                out.setdefault(given[i], name)
            else:
                unnamed = sum(1 for d in given[:i] if d is None) + max(i - len(given), 0)
                out.setdefault(f"{name}_dim_{i}", name)
                out.setdefault(f"{name}_dim_{unnamed}", name)
    return out


def _check_names(groups: Mapping[str, Mapping[str, np.ndarray]], dims: Mapping[str, list[str]]) -> None:
    """Raise :class:`DataError` for a variable named like a dim of its group: xarray makes it that dim's
    coordinate, and the variable is lost without a word."""
    for group, variables in groups.items():
        group_dims = _group_dims(group, variables, dims)
        for name in variables:
            if name in group_dims:
                owner = group_dims[name]
                what = "ArviZ's sample dim" if owner == "(every variable)" else f"a dim of variable {owner!r}"
                raise DataError(f"variable {name!r} in group {group!r} has the name of {what}, {name!r}; xarray "
                                f"would make it that dim's coordinate and lose the variable: rename the variable "
                                f"or the dim")


def _check_no_slash(groups: Mapping[str, Mapping[str, np.ndarray]], dims: Mapping[str, list[str]]) -> None:
    """Raise :class:`DataError` for a variable or dim name holding ``/``, which ArviZ 1.x's ``DataTree`` cannot
    store (a path separator there; xarray raises a bare ``ValueError``), naming them: Pyro site names from a
    ``prefix="left/"`` have one."""
    names = sorted({name for variables in groups.values() for name in variables if "/" in name}
                   | {d for names in dims.values() for d in names if "/" in d})
    if names:
        raise DataError(f"ArviZ 1.x (a DataTree) cannot hold '/' in a variable or dim name: {names}; give the "
                        f"models a prefix with another separator (prefix='left_' rather than 'left/'), or use "
                        f"ArviZ 0.x")


def _check_kept(data, groups: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Raise :class:`DataError` if ArviZ left out a group or variable it was given (a safety net behind the
    checks above)."""
    for group, variables in groups.items():
        try:
            kept = set(data[group].data_vars)
        except KeyError:
            kept = set()
        lost = [name for name in variables if name not in kept]
        if lost:
            raise DataError(f"ArviZ dropped variable(s) {lost} of group {group!r} (shapes "
                            f"{ {n: variables[n].shape for n in lost} }); rename them")
