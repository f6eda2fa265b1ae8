"""The declaration checks of a :class:`~hybridpgm.graphs.MarkovNet`: factor names, scopes, tables, options.

Everything :meth:`MarkovNet.add_factor <hybridpgm.graphs.MarkovNet.add_factor>` refuses is refused here, before
anything is registered (a refused call leaves the net as it was), with a
:class:`~hybridpgm.errors.ModelSpecError` naming the factor; the options of the query methods are checked
against the algorithm's signature; and :func:`call_potential` hands a neural potential its context in the network's
dtype (or a :class:`~hybridpgm.errors.DataError` naming the factor), through :func:`call_in_dtype`, which
:class:`~hybridpgm.infer.CRFLikelihood` shares for its tagger.
"""

from __future__ import annotations

import inspect
import itertools
import re
import weakref

import numpy as np
import torch
from torch import nn

from hybridpgm.checks import torch_readable
from hybridpgm.data.validation import as_model_dtype
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.graphs.mrf_sites import factor_site, factor_what, internal_clash
from hybridpgm.graphs.mrf_tables import table_key
from hybridpgm.tensor_arguments import described_value
from hybridpgm.tensor_tracking import carries_tangent
from hybridpgm.transform_scope import vmap_reads_refused
from hybridpgm.train.micro_batches import _TORCH_ONE_ROW  # torch's refusal of one row under batch norm

__all__ = ["call_in_dtype", "call_potential", "check_factor", "check_table", "table_buffer"]

#: per MarkovNet, ``id(tensor) -> (weak reference to it, the id of its buffer copy, that buffer's key)``
#: (see :func:`table_buffer`)
_TABLE_SOURCES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _no_options(method: str, kwargs: dict) -> None:
    """Raise :class:`ModelSpecError` for options passed to a method that takes none."""
    if kwargs:
        raise ModelSpecError(f"MarkovNet: method={method!r} takes no options, got {sorted(kwargs)}")


def _check_options(method: str, algorithm: type, kwargs: dict) -> None:
    """Raise :class:`ModelSpecError` for options that ``algorithm`` does not take, listing those it does."""
    signature = inspect.signature(algorithm)
    params = signature.parameters
    try:
        signature.bind(**kwargs)
    except TypeError:
        raise ModelSpecError(f"MarkovNet: method {method!r} has no option(s) {sorted(set(kwargs) - set(params))}; "
                             f"its options: {list(params)}") from None


def _names(scope) -> list:
    """A factor's scope as a list of names: a bare string is one name, as a CPD's parents take it."""
    return [scope] if isinstance(scope, str) else list(scope)


def _check_sites(self, name, count, single):
    """Refuse factor sites of :meth:`MarkovNet.model <hybridpgm.graphs.MarkovNet.model>` that are another factor's or
    its own (variables: in ``model``)."""
    for f in range(count):
        site = factor_site(name, f, single)
        clash = internal_clash(site)
        if clash is None and site in self._factor_sites:
            clash = f"{factor_what(*self._factor_sites[site])}, the same Pyro site of MarkovNet.model"
        if clash is not None:
            raise ModelSpecError(f"MarkovNet: {factor_what(name, f, single)} clashes with {clash}; "
                                 f"rename the factor")


def check_factor(self, name, scopes, pot, single) -> dict:
    """The family record ``{"scopes", "cards", "single", "kind"[, "key"]}`` of a factor declaration on the
    MarkovNet ``self``, after every check of :meth:`~hybridpgm.graphs.MarkovNet.add_factors` (nothing registered);
    ``"key"``, of a table, is its name in ``self.table_potentials`` (:func:`~hybridpgm.graphs.mrf_tables.table_key`).

    :raises ModelSpecError: naming the factor (see :meth:`~hybridpgm.graphs.MarkovNet.add_factor`).
    """
    if not isinstance(name, str) or not name:
        raise ModelSpecError(f"MarkovNet: a factor needs a non-empty name (a str), got {name!r}")
    if name in self.families:
        raise ModelSpecError(f"MarkovNet: factor {name!r} is already defined")
    if not scopes or not scopes[0]:
        raise ModelSpecError(f"MarkovNet: factor {name!r} has an empty scope")
    arity = len(scopes[0])
    for s in scopes:
        for v in s:
            if not isinstance(v, str) or v not in self.cards:
                raise ModelSpecError(f"MarkovNet: factor {name!r} uses unknown variable {v!r}")
        if len(s) != arity or len(set(s)) != len(s):
            raise ModelSpecError(f"MarkovNet: factor {name!r} has scope {s}: scopes of a family "
                                 f"need the same arity {arity} and no repeated variable")
    cards = tuple(self.cards[v] for v in scopes[0])
    for s in scopes:
        if tuple(self.cards[v] for v in s) != cards:
            raise ModelSpecError(f"MarkovNet: factor {name!r} mixes cardinalities {cards} and "
                                 f"{tuple(self.cards[v] for v in s)}")
    _check_sites(self, name, len(scopes), single)
    fam = {"scopes": scopes, "cards": cards, "single": single}
    if isinstance(pot, nn.Module):
        if "." in name:  # a ModuleDict key cannot hold a dot
            raise ModelSpecError(f"MarkovNet: factor {name!r} has a neural potential, so its name cannot "
                                 f"contain '.' (it names the module in the net's state dict)")
        if hasattr(self.potentials, name):  # nn.ModuleDict would refuse it with a raw KeyError
            raise ModelSpecError(f"MarkovNet: factor {name!r} has a neural potential, so its name cannot be "
                                 f"{name!r}: MarkovNet holds the networks in a torch.nn.ModuleDict, of which "
                                 f"{name!r} is an attribute ({type(getattr(self.potentials, name)).__name__}); "
                                 f"rename the factor")
        fam["kind"] = "module"
    elif isinstance(pot, torch.Tensor):
        check_table(name, fam, pot)
        fam["kind"], fam["key"] = "tensor", table_key(name)  # the entry table_potentials.<key>
    else:
        raise ModelSpecError(f"MarkovNet: factor {name!r} needs a Tensor or nn.Module, got {type(pot).__name__}")
    return fam


def check_table(name: str, fam: dict, t: torch.Tensor) -> None:
    """Raise :class:`ModelSpecError` naming factor ``name`` for a table ``t`` of the wrong shape, dtype, with
    NaN or inf entries, or on the meta device (no values): :func:`check_table_form`, then one host read."""
    check_table_form(name, fam, t)
    with vmap_reads_refused(f"MarkovNet: factor {name!r} cannot be declared inside torch.func.vmap (its table's "
                            "check reads it on the host); declare the factor once with a table of a leading batch "
                            "dimension (batch_shape + cards: one model per row), which every query answers at once"):
        finite = bool(torch.isfinite(t).all())
    if not finite:
        raise ModelSpecError(f"MarkovNet: factor {name!r} has non-finite log-potentials (NaN or inf)")


def check_table_form(name: str, fam: dict, t: torch.Tensor) -> None:
    """Raise :class:`ModelSpecError` naming factor ``name`` for a table ``t`` of the wrong shape or dtype, or on the
    meta device (no values): the checks of :func:`check_table` that read no value (a neural potential's table
    leaves its finiteness to :func:`~hybridpgm.graphs.mrf_finite.check_finite_tables`, one read for every
    family)."""
    tail = (() if fam["single"] else (None,)) + fam["cards"]
    ok = t.dim() >= len(tail) and all(
        want is None and got in (1, len(fam["scopes"])) or got == want
        for got, want in zip(t.shape[t.dim() - len(tail):], tail))
    if not ok:
        want = "batch_shape + " + ("" if fam["single"] else f"({len(fam['scopes'])} or 1,) + ") + str(fam["cards"])
        raise ModelSpecError(f"MarkovNet: factor {name!r} has log-potentials of shape {tuple(t.shape)}, "
                             f"expected {want}")
    if not torch.is_floating_point(t):
        raise ModelSpecError(f"MarkovNet: factor {name!r} has non-float log-potentials ({t.dtype})")
    if t.is_meta:
        raise ModelSpecError(f"MarkovNet: factor {name!r} has log-potentials on the meta device, whose tensors hold "
                             "no values to check or query (torch.set_default_device('meta') or a "
                             "torch.device('meta') block puts there a tensor made without a device); declare the "
                             "factor with a table on a device that holds data (torch.set_default_device(None) "
                             "restores the CPU)")


def call_potential(name: str, mod: nn.Module, context):
    """``mod(context)``: the neural potential of factor ``name`` on ``context``.  A floating ``context`` of lower
    precision than the network's floating dtype (its first floating parameter's or buffer's) is widened to it
    first, which is exact (:func:`~hybridpgm.data.validation.as_model_dtype`); any other context (integers or
    ``bool``: category indices for an embedding, or numbers; a floating context of higher precision, which the
    network may cast itself) is passed as it is, and a network that fails on it is named.

    :raises DataError: the network fails on a context of a dtype other than its own, naming the factor and both
        dtypes (see :meth:`MarkovNet.tables <hybridpgm.graphs.MarkovNet.tables>`).
    :raises ConfigError: the network normalises its batch (a torch batch norm in training mode) and the context
        has one row, which torch refuses: naming the factor and the fixes (``mrf.eval()``, more rows).
    """
    try:
        return _called(name, mod, context)
    except ValueError as e:
        if type(e) is not ValueError or _TORCH_ONE_ROW not in str(e):
            raise
        raise ConfigError(f"MarkovNet: the neural potential of factor {name!r} normalises its batch (batch norm in "
                          f"training mode) and got a context of one row, whose batch statistics are not defined; "
                          f"call mrf.eval() to query with the running statistics, or pass two rows or more "
                          f"(in fit: batch_size >= 2, drop_last=True)") from e


def _called(name: str, mod: nn.Module, context):
    """:func:`call_potential` but for torch's refusal of one row under batch norm.  A NumPy array or a pandas
    object is read as a tensor first (:func:`~hybridpgm.checks.torch_readable`), then follows the dtype rule as a
    tensor does; any other context (a dict or tuple for a network of several inputs, a list) is passed as it is.
    A ``TypeError`` of the network that names the context's type (torch's "must be Tensor, not list") is a
    :class:`~hybridpgm.errors.DataError` naming the factor, which advises ``torch.as_tensor(context)`` only where
    that reads the context (numbers, not a dict or a tuple of tensors); any other ``TypeError`` is the network's
    own (a dict context it takes, with a bad entry) and is raised as it is, a note naming the factor added."""
    what = f"MarkovNet: the neural potential of factor {name!r}"
    if isinstance(context, np.ndarray) or callable(getattr(context, "to_numpy", None)):  # NumPy, pandas
        try:
            context = torch.as_tensor(torch_readable(context, f"{what}: the context"))
        except (TypeError, ValueError, RuntimeError) as e:
            raise DataError(f"{what}: the context, {described_value(context)}, is not numbers: {e}") from None
    if not isinstance(context, torch.Tensor):
        try:
            return mod(context)
        except TypeError as e:
            kind = type(context).__name__
            if not re.search(rf"\b{re.escape(kind)}\b", str(e)):  # the network's own error, on a context it takes
                if hasattr(e, "add_note"):  # Python 3.11+
                    e.add_note(f"{what}, called on a context of type {kind}")
                raise
            fix = ("pass a tensor: torch.as_tensor(context)" if _tensor_readable(context) else
                   f"pass the network the input it takes (a {kind} is passed to it as it is)")
            raise DataError(f"{what} fails on a context of type {kind} ({e}); {fix}") from e
    return call_in_dtype(mod, context, what=f"MarkovNet: the neural potential of factor {name!r}", arg="a context")


def _tensor_readable(context) -> bool:
    """Whether ``torch.as_tensor(context)`` reads ``context`` (nested lists of numbers), the advice given."""
    try:
        torch.as_tensor(context)
    except (TypeError, ValueError, RuntimeError):
        return False
    return True


def call_in_dtype(mod: nn.Module, x: torch.Tensor, *rest, what: str, arg: str):
    """``mod(x, *rest)``, ``x`` in the network's floating dtype (its first floating parameter's or buffer's) where
    that is exact: a floating ``x`` of lower precision is widened (:func:`~hybridpgm.data.validation.as_model_dtype`),
    and passed as it is if the network fails on the widened one (a network of several dtypes: a float64
    :class:`~hybridpgm.graphs.CRFHead` registered before the float32 layer that takes ``x``); any other ``x``
    (integers or ``bool``: category indices for an embedding; a float of higher precision, which the network may
    cast itself) is passed as it is, and a network that fails on it is named.  Used for a
    :class:`~hybridpgm.graphs.MarkovNet`'s neural potentials (:func:`call_potential`) and
    :class:`~hybridpgm.infer.CRFLikelihood`'s tagger.

    :param x: the network's (first) input; ``rest``: its further positional arguments, passed as they are.
    :param str what: the network, as messages name it (``"MarkovNet: the neural potential of factor 'ab'"``).
    :param str arg: ``x``, as messages name it, with its article (``"a context"``).
    :raises DataError: the network fails (a ``RuntimeError``) on an ``x`` of a dtype other than its own, naming
        ``what``, ``arg`` and both dtypes; where ``x`` was widened, naming both tries (the widened one's error
        as the cause).
    """
    ref = next((t for t in itertools.chain(mod.parameters(), mod.buffers()) if t.is_floating_point()), None)
    if ref is None or x.dtype == ref.dtype:
        return mod(x, *rest)
    widened = None
    if x.is_floating_point() and torch.promote_types(x.dtype, ref.dtype) == ref.dtype:
        try:
            return mod(as_model_dtype(x, ref.dtype, f"{what}: {arg}"), *rest)
        except RuntimeError as e:
            if isinstance(e, torch.OutOfMemoryError):
                raise
            widened = e
    try:  # the network decides: an embedding takes indices, a forward may cast its input
        return mod(x, *rest)
    except RuntimeError as e:
        if isinstance(e, torch.OutOfMemoryError):
            raise
        if widened is not None:
            raise DataError(f"{what} fails on {arg} of dtype {x.dtype} widened to {ref.dtype} (its first floating "
                            f"parameter's dtype): {widened}; and on {arg} as given ({x.dtype}): {e}; pass {arg} of "
                            "the dtype the network's input layer takes") from widened
        fix = (f"convert it exactly or pass {arg} of the network's dtype" if x.is_floating_point()
               else f"pass {arg} of floats (.to({ref.dtype})), or give the network a layer that takes {x.dtype} "
               f"(an nn.Embedding for category indices)")
        raise DataError(f"{what} fails on {arg} of dtype {x.dtype} (its parameters are {ref.dtype}): {e}; "
                        f"{fix}") from e


def table_buffer(net: nn.Module, pot: torch.Tensor, key: str) -> torch.Tensor:
    """The buffer ``key`` of :class:`~hybridpgm.graphs.MarkovNet` ``net``'s ``table_potentials`` for the table
    tensor ``pot``.

    A fixed table (no ``requires_grad``) is copied (dense), so the caller's tensor is not what
    ``load_state_dict`` writes into and an expanded table loads; one copy per tensor object the caller
    declares, so that a table given to several factors stays one buffer (saved and loaded tied,
    :mod:`hybridpgm.serialization_ties`).  The copy is shared only while it is what a new copy would be: the
    buffer made for ``pot`` is still registered (the same tensor object) and holds ``pot``'s current values, of
    its shape, dtype and device.  A table changed between two declarations (in place, or through ``.data``),
    or whose buffer was changed since (``load_state_dict``, an in-place edit, ``.double()``), gets a copy of
    its own, holding the values ``pot`` has now; that copy is the one shared from then on.  The comparison
    reads the table once, as the declaration's finiteness check does.  The net's record of which tensor each
    copy came from holds a weak reference to the table and the id of the copy, outside the module (nothing to
    pickle): a tensor freed since cannot be mistaken for another that reuses its ``id``, and the copy, registered
    under its key while it is alive, has no weak reference (``torch.utils.swap_tensors``, which ``load_state_dict``
    uses under ``torch.__future__.set_swap_module_params_on_conversion(True)``, refuses a tensor that has one);
    its values are compared anyway.  A tensor that requires grad is registered as it
    is: a leaf the caller optimises is the table itself, so the model sees the optimiser's updates; a tensor
    computed from one (``ising_grid(coupling=J)`` for a gradient check) is a snapshot whose graph
    backpropagates once -- to train, declare an :class:`~torch.nn.Parameter` or a neural potential, which are
    evaluated at every call.  A tensor with a forward-mode derivative
    (:func:`~hybridpgm.tensor_tracking.carries_tangent`: a :mod:`torch.autograd.forward_ad` dual, or a net built
    inside :func:`torch.func.jvp` / :func:`torch.func.jacfwd` from their input) is copied without detaching it
    (a contiguous clone, which keeps the derivative and not the caller's storage).
    """
    if pot.requires_grad:
        return pot
    if carries_tangent(pot):  # a copy that keeps the forward-mode derivative (a detached one would drop it), and
        return pot.clone(memory_format=torch.contiguous_format)  # is neither the caller's tensor nor a stride-0 view
    sources = _TABLE_SOURCES.setdefault(net, {})
    earlier = sources.get(id(pot))
    if earlier is not None and earlier[0]() is pot:
        copy = net.table_potentials._buffers.get(earlier[2])
        if copy is not None and id(copy) == earlier[1] and _holds(copy, pot):
            return copy
    copy = pot.detach().clone(memory_format=torch.contiguous_format)
    sources[id(pot)] = (weakref.ref(pot), id(copy), key)
    return copy


def _holds(copy: torch.Tensor, pot: torch.Tensor) -> bool:
    """Whether ``copy`` is what a new copy of ``pot`` would be: its shape, dtype, device and values."""
    return copy.shape == pot.shape and copy.dtype == pot.dtype and copy.device == pot.device and \
        bool(torch.equal(copy, pot.detach()))
