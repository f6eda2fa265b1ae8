"""NVIL's input-dependent baselines and running statistics, and how they reach Pyro.

:class:`NVILBaselines` holds, per latent site :math:`h_l` of the guide, a baseline network
:math:`C_{\\psi_l}(x)` and the running mean :math:`c_l` and variance :math:`v_l` of the centred learning
signal :math:`\\ell_l - C_{\\psi_l}(x)` that :class:`~hybridpgm.infer.nvil.NVIL_ELBO` centres and scales
with [1].  :class:`_AttachBaselines` hands the networks to Pyro's
:class:`~pyro.infer.TraceGraph_ELBO` through each site's ``infer["baseline"]``, and
:func:`_register_baselines` puts their parameters in Pyro's param store so that plain
:class:`pyro.infer.SVI` trains them.

Under :func:`hybridpgm.fit` with ``accumulate = M`` the statistics belong to the optimizer update, not to
the micro-batch (:meth:`NVILBaselines.update`).

References:

1. A. Mnih, K. Gregor, *Neural Variational Inference and Learning in Belief
   Networks*, ICML 2014.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import pyro
import torch
from pyro.params import param_with_module_name
from pyro.poutine.messenger import Messenger
from torch import nn

from hybridpgm.checks import positive_int, positive_real
from hybridpgm.errors import ConfigError, ObjectiveError
from hybridpgm.train.update_scope import current_update

__all__ = ["BASELINES_MODULE_NAME", "NVILBaselines"]

#: The name under which :class:`NVIL_ELBO` registers the baseline networks with ``pyro.module``, so that
#: plain :class:`pyro.infer.SVI` trains them: their parameters are ``"nvil_baselines$$$<site>.<param>"``
#: in Pyro's param store (e.g. ``"nvil_baselines$$$h1.0.weight"``).
BASELINES_MODULE_NAME = "nvil_baselines"


def _register_baselines(baselines: NVILBaselines) -> None:
    """Register the networks of ``baselines`` with ``pyro.module`` under :data:`BASELINES_MODULE_NAME`.

    Called by :class:`NVIL_ELBO` inside the guide it runs, so that the param capture of
    :class:`pyro.infer.SVI` sees the baselines' parameters and its optimizer steps them.  Entries of that
    name left in the store by *other* baselines (an earlier ``NVIL_ELBO`` in the same session) are
    replaced by these: Pyro would otherwise hand back the old tensors, and SVI would step those while these
    baselines, which compute the loss, never changed.

    Frozen parameters (``requires_grad=False``) are not registered, and Pyro's warning about each of them
    (which advises ``.train(False)``, a switch that would also stop the baselines' running statistics) is
    silenced; with no trainable parameter at all nothing is registered.
    """
    store = pyro.get_param_store()
    trainable = False
    for local, param in baselines.nets.named_parameters():
        if not param.requires_grad:
            continue
        trainable = True
        name = param_with_module_name(BASELINES_MODULE_NAME, local)
        if name in store and store.param_name(param) != name:
            del store[name]
    if not trainable:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was not registered in the param store because requires_grad=False")
        pyro.module(BASELINES_MODULE_NAME, baselines.nets)


class NVILBaselines(nn.Module):
    """Input-dependent baselines :math:`C_{\\psi_l}(x)` and running statistics per latent site.

    :param sites: names of the guide's latent sites.
    :param int input_dim: size of the baseline input :math:`x` (``[B, input_dim]``).
    :param int hidden_dim: width of each baseline's hidden layer (0: linear).
    :param float decay: decay :math:`\\alpha` of the running mean and variance.
    :raises ConfigError: no site names (or a string instead of a sequence of them), a site name with a ``.``
        (a module name cannot hold one), a size that is not a positive integer (``hidden_dim`` may be 0), or
        ``decay`` outside ``[0, 1)``.
    """

    #: the ``fit`` update (:func:`~hybridpgm.train.update_scope.current_update`) the buffers hold so far, the
    #: buffers ``(mean, var)`` before it, and per site index the pooled ``(count, mean, sum of squared
    #: deviations)`` of its signals; class-level defaults, so that an instance pickled before they existed loads
    _update: object | None = None
    _before: tuple[torch.Tensor, torch.Tensor] | None = None
    _pooled: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}  # replaced, never mutated, per instance

    def __init__(self, sites: Sequence[str], input_dim: int, hidden_dim: int = 100, decay: float = 0.8):
        super().__init__()
        if isinstance(sites, (str, bytes)) or not sites or not all(isinstance(s, str) for s in sites):
            raise ConfigError(f"NVILBaselines sites must be a non-empty sequence of site names, got {sites!r}")
        dotted = [s for s in sites if "." in s]
        if dotted:  # the baselines are an nn.ModuleDict keyed by site, and torch refuses "." in a module's name
            raise ConfigError(f"NVILBaselines: site names {dotted} contain '.', which a module name cannot hold; "
                              f"use another separator in the model's prefix= (e.g. 'left/' rather than 'left.')")
        input_dim = positive_int(input_dim, "NVIL input_dim")
        hidden_dim = positive_int(hidden_dim, "NVIL hidden_dim", minimum=0)
        decay = positive_real(decay, "NVIL decay", allow_zero=True)
        if decay >= 1.0:
            raise ConfigError(f"NVIL decay must be in [0, 1), got {decay!r}")
        self.sites = list(sites)
        self.decay = decay

        def net():
            if hidden_dim:
                return nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, 1),
                                     nn.Flatten(-2))
            return nn.Sequential(nn.Linear(input_dim, 1), nn.Flatten(-2))

        self.nets = nn.ModuleDict({name: net() for name in self.sites})
        self.register_buffer("mean", torch.zeros(len(self.sites)))
        self.register_buffer("var", torch.ones(len(self.sites)))
        self._update, self._before, self._pooled = None, None, {}

    def index(self, site: str) -> int:
        return self.sites.index(site)

    def reference(self) -> torch.Tensor:
        """A parameter of the networks: their dtype and device."""
        return self.nets[self.sites[0]][0].weight

    def statistics(self, site: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The running mean :math:`c_l` and variance :math:`v_l` to centre and scale ``site``'s signal with.

        Outside :func:`hybridpgm.fit` (:func:`~hybridpgm.train.update_scope.current_update` is ``None``) and
        for the first micro-batch of an update, the buffers ``mean[l]`` and ``var[l]``; for the later
        micro-batches of an update, their values from before it (the buffers already hold the update's
        signals so far).

        :returns: two scalar tensors (copies), in the buffers' dtype and on their device.
        """
        i = self.index(site)
        update = current_update()
        if update is not None and update is self._update:
            mean, var = self._before
        else:
            mean, var = self.mean, self.var
        return mean[i].clone(), var[i].clone()

    @torch.no_grad()
    def update(self, site: str, signal: torch.Tensor) -> None:
        """Fold the centred signal :math:`s = \\ell_l - C_{\\psi_l}(x)` (any shape, e.g. ``[B]`` or
        ``[P, B]``) into the running statistics:

        .. math:: c_l \\leftarrow \\alpha c_l + (1 - \\alpha)\\,\\bar s, \\qquad
                  v_l \\leftarrow \\alpha v_l + (1 - \\alpha)\\,\\overline{(s - \\bar s)^2}.

        Outside :func:`hybridpgm.fit` each call is one such step.  Within one optimizer update of ``fit``
        (:func:`~hybridpgm.train.update_scope.current_update`), the signals of all its micro-batches are
        pooled (count, mean and sum of squared deviations, combined as in Chan et al.'s parallel variance)
        and the buffers hold one step from their values before the update with the pooled mean and
        (biased) variance: after the last micro-batch, exactly the step ``accumulate=1`` takes on the whole
        batch.
        """
        i = self.index(site)
        a = self.decay
        update = current_update()
        if update is None:
            self.mean[i] = a * self.mean[i] + (1 - a) * signal.mean()
            self.var[i] = a * self.var[i] + (1 - a) * signal.var(unbiased=False)
            return
        if update is not self._update:  # the first micro-batch of this update: keep the statistics before it
            self._update, self._before, self._pooled = update, (self.mean.clone(), self.var.clone()), {}
        n = signal.numel()
        mean = signal.mean()
        squares = (signal - mean).pow(2).sum()
        if i in self._pooled:
            count, pooled_mean, pooled_squares = self._pooled[i]
            total = count + n
            delta = mean - pooled_mean
            mean = pooled_mean + delta * (n / total)
            squares = pooled_squares + squares + delta.pow(2) * (count * n / total)
            n = total
        self._pooled[i] = (n, mean, squares)
        before_mean, before_var = self._before
        self.mean[i] = a * before_mean[i].to(self.mean) + (1 - a) * mean
        self.var[i] = a * before_var[i].to(self.var) + (1 - a) * squares / n


class _AttachBaselines(Messenger):
    """Sets ``infer["baseline"]`` of the guide's latent sites to the NVIL networks."""

    def __init__(self, baselines: NVILBaselines, baseline_input: torch.Tensor):
        super().__init__()
        self.baselines = baselines
        self.baseline_input = baseline_input

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["name"] not in self.baselines.nets:
            return
        if "baseline" in msg["infer"]:
            raise ObjectiveError(f"guide site {msg['name']!r} already sets infer['baseline']; NVIL sets its own")
        msg["infer"] = dict(msg["infer"], baseline={"nn_baseline": self.baselines.nets[msg["name"]],
                                                    "nn_baseline_input": self.baseline_input})


