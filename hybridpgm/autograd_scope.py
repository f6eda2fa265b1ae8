"""Queries computed as gradients, also under :func:`torch.inference_mode`.

Several exact queries are gradients of a log-partition function (marginals as :math:`\\partial \\log Z /
\\partial \\theta`, a linear-chain CRF's pairwise marginals and entropy) or back-track a max-sum contraction
through autograd (a MAP state).  ``torch.enable_grad()`` re-enables autograd under ``torch.no_grad()``, but not
in inference mode, and autograd cannot save a tensor created in inference mode for backward.
:func:`with_autograd` runs such a query so that it works in either.

The other way round, an input made under inference mode (a request decoded there) and queried outside it, with
grad mode on, fails the same way in a query that is differentiable in the model's parameters (an RBM's free
energy, a Bayes net's posterior): :func:`usable_with_grad`, called once by the query's input check, clones it.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

__all__ = ["usable_with_grad", "with_autograd"]


def _normal(x):
    """``x`` with every inference tensor in it (also inside lists, tuples, named tuples, dicts and dataclass
    instances, and the attributes of a list subclass such as the Bayes net's ``ScaledFactors``) cloned into a
    normal tensor; ``x`` itself where it holds none."""
    if isinstance(x, torch.Tensor):
        return x.clone() if x.is_inference() else x
    if isinstance(x, (list, tuple)):
        items = [_normal(v) for v in x]
        attributes = getattr(x, "__dict__", {})  # a list subclass's own attributes (none on list and tuple)
        extra = {k: _normal(v) for k, v in attributes.items()}
        if all(a is b for a, b in zip(items, x)) and all(extra[k] is v for k, v in attributes.items()):
            return x
        if type(x) in (list, tuple):
            return type(x)(items)
        if isinstance(x, tuple):  # a named tuple (another tuple subclass is rebuilt from its items likewise)
            return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)
        copied = copy.copy(x)  # a list subclass: its class and attributes, with the normal items and values
        copied[:] = items
        copied.__dict__.update(extra)
        return copied
    if type(x) is dict:
        items = {k: _normal(v) for k, v in x.items()}
        return items if any(items[k] is not v for k, v in x.items()) else x
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        fields = {f.name: getattr(x, f.name) for f in dataclasses.fields(x) if f.init}
        changed = {k: n for k, v in fields.items() if (n := _normal(v)) is not v}
        return dataclasses.replace(x, **changed) if changed else x
    return x


def with_autograd(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with autograd recording, also under :func:`torch.inference_mode`: for the queries
    computed as gradients (marginals as the gradient of :math:`\\log Z`, a MAP state back-tracked through a
    max-sum contraction).

    ``torch.enable_grad()`` alone re-enables autograd under ``torch.no_grad()``, but not in inference mode, and
    autograd cannot save a tensor created in inference mode for backward.  So ``fn`` runs under
    ``torch.inference_mode(False)`` and ``torch.enable_grad()``, on its arguments with every inference tensor among
    them (also inside lists, tuples, dicts and dataclass instances such as a
    :class:`~hybridpgm.graphs.factor_graph.FactorGraph`) cloned into a normal tensor.  Arguments without inference
    tensors are passed as they are, so outside inference mode this costs nothing and gradients still reach the
    caller's parameters.  Tensors ``fn`` creates are normal tensors, usable in and out of inference mode.
    """
    with torch.inference_mode(False), torch.enable_grad():
        return fn(*_normal(list(args)), **_normal(kwargs))


def usable_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``x``, or a normal clone of it where it is an inference tensor (created under :func:`torch.inference_mode`)
    and autograd records (grad mode on, outside inference mode).

    An operation of ``x`` with a parameter that requires grad (``v @ visible_bias``, indexing a table by
    evidence) saves ``x`` for backward, which torch refuses for an inference tensor ("Inference tensors cannot be
    saved for backward"); the clone can be saved, and gradients reach the parameters as for any input.  Only
    metadata are read: a normal tensor, or any tensor under ``torch.no_grad()`` or in inference mode, is returned
    as it is at no cost.

    :param x: a query's input, already checked.
    """
    if x.is_inference() and torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
        return x.clone()
    return x
