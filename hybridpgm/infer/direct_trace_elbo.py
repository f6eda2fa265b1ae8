r"""``Trace_ELBO`` without the tracing, for model/guide pairs that can compute it themselves.

:class:`~pyro.infer.Trace_ELBO` runs the guide and the model under Pyro's
effect handlers, records every site in a trace, then sums the sites' log
densities.  For a single sample of a fully reparameterized guide the value is

.. math::

    -\widehat{\mathrm{ELBO}} = -s \sum_{n=1}^{B}\Big(\log p_\theta(x_n, z_n) - \log q_\phi(z_n \mid x_n)\Big),
    \qquad z_n = \mu_\phi(x_n) + \sigma_\phi(x_n) \odot \epsilon_n,\ \epsilon_n \sim \mathcal N(0, I),

with the plate's scale :math:`s = N / B` (1 without subsampling) [1, 2].  A
pair that knows its own structure computes the same expression with a few
torch operations: no traces, no per-site messages, no host synchronisation.
On a small VAE the trace costs about as much as the networks themselves on one
CPU thread.

:class:`DirectTrace_ELBO` is a :class:`pyro.infer.Trace_ELBO`, usable wherever
``Trace_ELBO`` is (``pyro.infer.SVI(model, guide, optim, loss=DirectTrace_ELBO())``
or :class:`~hybridpgm.infer.SVIObjective`, which picks it by default).  It takes
the *direct path* when

* ``model`` and ``guide`` are the bound methods that the owning module's class
  names in its ``direct_elbo_pair`` (``(Class.model, Class.guide)``; a subclass
  that overrides either method falls back), and the owner has
  ``direct_elbo_loss(*args, **kwargs)`` returning the differentiable loss above;
* one particle is drawn (``num_particles=1``), and
* no Pyro effect handler is active other than the parameter-only trace that
  :class:`pyro.infer.SVI` puts around :meth:`loss_and_grads` (a ``condition``,
  ``scale``, ``block`` or a full ``trace`` would change what the model means).

Otherwise it is :class:`~pyro.infer.Trace_ELBO` itself.  The direct path draws
the same :math:`\epsilon` from the same RNG state, so loss and gradients equal
``Trace_ELBO``'s up to float rounding of the loss value (Trace_ELBO adds and
subtracts its value as a Python float).  Under :class:`~pyro.infer.SVI` the
owner's parameters are still announced as ``pyro.param`` sites (the owner's
``direct_elbo_loss`` runs inside its :class:`~pyro.nn.PyroModule` context), so
SVI finds and updates them as it would under ``Trace_ELBO``.  Without any
handler (inside :func:`hybridpgm.fit`, or a hand-written loop over
:meth:`DirectTrace_ELBO.differentiable_loss`) the parameters are not entered
in Pyro's param store: the module's own parameters are what is trained.

References:

1. D. P. Kingma, M. Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
2. D. Wingate, T. Weber, *Automated Variational Inference in Probabilistic
   Programming*, 2013.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from pyro.infer import Trace_ELBO
from pyro.infer.util import torch_item
from pyro.nn import PyroModule, pyro_method
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.trace_messenger import TraceMessenger
from pyro.util import warn_if_nan

__all__ = ["DirectTrace_ELBO", "direct_elbo_path"]


def direct_elbo_path(model: Callable, guide: Callable) -> Callable[..., torch.Tensor] | None:
    """The owner's ``direct_elbo_loss`` when ``(model, guide)`` is a pair that
    declares a direct path (see the module docstring), else ``None``.

    While a Pyro handler is active (SVI's parameter capture), the returned
    function runs inside the owner's :class:`~pyro.nn.PyroModule` context, so
    every parameter it reads is announced as a ``pyro.param`` site, as under
    ``Trace_ELBO``; with no handler to hear them the announcements (param-store
    look-ups, about 3% of a small VAE's step) are skipped.
    """
    owner = getattr(model, "__self__", None)
    if owner is None or getattr(guide, "__self__", None) is not owner:
        return None
    pair = getattr(type(owner), "direct_elbo_pair", None)
    if pair is None or getattr(model, "__func__", None) is not pair[0] \
            or getattr(guide, "__func__", None) is not pair[1]:
        return None
    direct = getattr(type(owner), "direct_elbo_loss", None)
    if not callable(direct):
        return None
    if _PYRO_STACK and isinstance(owner, PyroModule):
        return functools.partial(pyro_method(direct), owner)
    return functools.partial(direct, owner)


def _handlers_allow_direct() -> bool:
    """Whether every active handler only records parameters (SVI's ``param_capture``)."""
    return all(type(h) is TraceMessenger and h.param_only for h in _PYRO_STACK)


class DirectTrace_ELBO(Trace_ELBO):
    """:class:`~pyro.infer.Trace_ELBO` with a direct path for pairs that declare one.

    Takes :class:`~pyro.infer.ELBO`'s arguments; with ``num_particles > 1``
    every call goes through ``Trace_ELBO``.

    >>> import pyro, hybridpgm
    >>> vae = hybridpgm.VAE(784, 50)
    >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), loss=DirectTrace_ELBO())
    """

    def _direct(self, model: Callable, guide: Callable) -> Callable[..., torch.Tensor] | None:
        if self.num_particles != 1 or self.vectorize_particles or not _handlers_allow_direct():
            return None
        return direct_elbo_path(model, guide)

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The negative ELBO as a 0-d tensor to differentiate (no host synchronisation on the direct path).

        :param model: the Pyro model.
        :param guide: its guide.  When ``(model, guide)`` declares a direct path (:func:`direct_elbo_path`), their
            owner's ``direct_elbo_loss(*args, **kwargs)`` runs instead of the two programs; otherwise both are
            traced with ``(*args, **kwargs)``, as by :class:`~pyro.infer.Trace_ELBO`."""
        direct = self._direct(model, guide)
        if direct is None:
            return super().differentiable_loss(model, guide, *args, **kwargs)
        return direct(*args, **kwargs)

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """The negative ELBO as a float (no gradients).

        :param model: the Pyro model.
        :param guide: its guide (the two run as for :meth:`differentiable_loss`)."""
        direct = self._direct(model, guide)
        if direct is None:
            return super().loss(model, guide, *args, **kwargs)
        with torch.no_grad():
            loss = torch_item(direct(*args, **kwargs))
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """The negative ELBO as a float, after back-propagating it into the parameters.

        :param model: the Pyro model.
        :param guide: its guide (the two run as for :meth:`differentiable_loss`)."""
        direct = self._direct(model, guide)
        if direct is None:
            return super().loss_and_grads(model, guide, *args, **kwargs)
        loss = direct(*args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        value = torch_item(loss)
        warn_if_nan(value, "loss")
        return value
