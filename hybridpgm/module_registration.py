"""Register a network's trainable parameters with Pyro, as ``pyro.module`` does, without its warning of the frozen.

``pyro.module(name, net)`` puts each parameter of ``net`` with ``requires_grad=True`` in Pyro's param store as
``"<name>$$$<parameter's dotted name>"`` and leaves the frozen ones out; but while ``net`` is in training mode it
also warns of each frozen one ("... was not registered in the param store because requires_grad=False. You can
silence this warning by calling my_module.train(False)"), at every call.  A model with a frozen part (fine-tuning
a VAE's decoder with the encoder frozen, a pretrained feature extractor under a GP) ran ``pyro.module`` at every
step, through :func:`hybridpgm.fit` and through plain :class:`pyro.infer.SVI`, and printed a warning per frozen
parameter per step; the advice it gives is wrong here, since ``train(False)`` also switches batch norm to its
running statistics and turns dropout off.  Freezing is a supported workflow (:mod:`hybridpgm.serialization_frozen`),
so hybridpgm registers its networks with :func:`register_module`, which registers exactly what ``pyro.module``
registers, under the same names, and does not warn.

A :class:`~pyro.nn.PyroModule` calls ``pyro.module`` itself when a plain :class:`torch.nn.Module` it holds is read
as an attribute inside one of its Pyro methods (``self.encoder``); :func:`frozen_aware_module` makes such an
attribute a property that registers the network with :func:`register_module` instead, as
:func:`~hybridpgm.param_store_scope.frozen_aware_parameter` does for a parameter the module holds directly.

Each such read registers every parameter of the network, so a Pyro method that reads the attribute once per node
or layer (a Bayes net's model reads its CPD map in each look-up of a node) made ``reads x parameters`` ``param``
statements per call: 2,600 for the 20 parameters of a 20-node chain, quadratic in the nodes.
:func:`registers_once` makes a method register the network once, on entry, and read it plainly within the call.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable

import pyro
from pyro.nn import PyroModule
from pyro.params.param_store import param_with_module_name
from torch import nn

__all__ = ["frozen_aware_module", "register_module", "registers_once"]

#: per thread, the ``(id(owner), attribute name)`` of the networks registered for a call of :func:`registers_once`
#: running in that thread (Pyro's handler stack is one per process, but a read in another thread is not this call's)
_REGISTERED = threading.local()


def register_module(name: str, module: nn.Module) -> nn.Module:
    """``pyro.module(name, module)`` without the warning of the frozen parameters: each parameter of ``module`` with
    ``requires_grad=True`` goes through ``pyro.param("<name>$$$<its dotted name>", parameter)`` (so a handler, a
    trace and the param capture of :class:`pyro.infer.SVI` see it, and Pyro's store holds it under the name
    ``pyro.module`` gives); a frozen one is neither registered nor unfrozen.

    :param name: the module's name in the param store (checked by the caller: Pyro's ``"$$$"`` separator is not
        allowed in it).
    :param module: the network.
    :returns: ``module`` itself (as ``pyro.module`` returns it, its parameters unchanged).
    :raises ValueError: as ``pyro.module`` (Pyro's store refuses a parameter of a lazy module never run).
    """
    for local, param in module.named_parameters():
        if param.requires_grad:
            pyro.param(param_with_module_name(name, local), param)
    return module


def frozen_aware_module(name: str, doc: str) -> property:
    """A read-only property for the sub-module ``name`` of a :class:`~pyro.nn.PyroModule`
    (``self.<name> = nn.Sequential(...)``) that registers it as ``PyroModule.__getattr__`` does, under the same
    names, but with :func:`register_module`: a frozen part of it is not warned of at every read.

    Inside one of the owner's Pyro methods under Pyro's global parameter mode, a plain :class:`torch.nn.Module`
    is registered with :func:`register_module` under ``PyroModule._pyro_get_fullname(name)`` (what
    ``PyroModule.__getattr__`` gives ``pyro.module``); otherwise -- outside such a method, under
    ``module_local_params`` (Pyro's stand-in ``param`` statements, which do not warn), a sub-module that is itself a
    ``PyroModule``, or anything else put under the name -- the read goes through ``PyroModule.__getattr__``
    unchanged.  The module stays in ``_modules``, so its state-dict keys are those of a plain attribute, and
    assigning it works as before (``nn.Module.__setattr__`` keeps a module in ``_modules``).

    Within a method wrapped by :func:`registers_once` for ``name`` (which registered the network on entry), a read
    returns the network without registering it again.

    :param name: the attribute name.
    :param doc: the property's docstring.
    :returns: the property, to be assigned in the class body (``encoder = frozen_aware_module(...)``).
    """

    def read(self: PyroModule) -> Any:
        module = self.__dict__.get("_modules", {}).get(name)  # none yet (unpickling): nn.Module's error
        if isinstance(module, nn.Module) and not isinstance(module, PyroModule):
            if not self._pyro_context.active or (id(self), name) in _registered():
                return module  # as PyroModule.__getattr__ outside the owner's Pyro methods; or registered already
            if not pyro.settings.get("module_local_params"):
                return register_module(self._pyro_get_fullname(name), module)
        # Pyro's stand-in statements (module_local_params), a PyroModule's own registration, nn.Module's
        # AttributeError (nothing under the name), or whatever else is there (None)
        return PyroModule.__getattr__(self, name)

    read.__name__ = name
    return property(read, doc=doc)


def _registered() -> set:
    """This thread's set of :data:`_REGISTERED` keys."""
    held = getattr(_REGISTERED, "keys", None)
    if held is None:
        held = _REGISTERED.keys = set()
    return held


def registers_once(name: str) -> Callable:
    """Decorator of a Pyro method of a :class:`~pyro.nn.PyroModule` that reads the :func:`frozen_aware_module`
    attribute ``name`` (``self.<name>``) many times: the method reads it once on entry, which registers the network
    as every read did (each trainable parameter's ``param`` statement, or Pyro's stand-in statements under
    ``module_local_params``), and within the call, in the same thread, every further read of ``self.<name>`` -- by
    the method or by any helper it calls -- returns the network without registering it again.  The param store and
    the handlers around the call (a trace, :class:`pyro.infer.SVI`'s param capture) see each parameter once per call
    instead of once per read; the frozen parameters are left out as before.  A nested call of the method (or of
    another one wrapped for the same ``name`` of the same object) does not register again.

    Put it under ``@pyro_method`` (``@pyro_method`` then ``@registers_once("cpds")``), so that the entry read runs
    inside the owner's Pyro context, where reads register.

    :param name: the attribute, made by :func:`frozen_aware_module`.
    :returns: the decorator.
    """

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapped(self: PyroModule, *args: Any, **kwargs: Any) -> Any:
            key, held = (id(self), name), _registered()
            if key in held:
                return method(self, *args, **kwargs)
            getattr(self, name)  # the call's one registration
            held.add(key)
            try:
                return method(self, *args, **kwargs)
            finally:
                held.discard(key)

        return wrapped

    return decorate
