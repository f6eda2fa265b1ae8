"""What :meth:`SVDeepKernelGP.objective <hybridpgm.gp.SVDeepKernelGP.objective>` trains with: an
:class:`~hybridpgm.infer.SVIObjective` that keeps the GP out of autocast, and a handler masking the inducing
site for a KL weight of 0."""

from __future__ import annotations

from typing import Any

import torch
from pyro.poutine.messenger import Messenger

from hybridpgm.infer import SVIObjective

__all__ = ["MaskSite", "SVDKLObjective"]


class MaskSite(Messenger):
    """Mask the sample site ``name``: its log-density (and the KL term of a mean-field ELBO) counts zero, the site
    stays in the trace.  A KL weight ``beta = 0``, which :func:`pyro.poutine.scale` refuses."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] == self.name:
            msg["mask"] = False


class SVDKLObjective(SVIObjective):
    """:meth:`SVDeepKernelGP.objective <hybridpgm.gp.SVDeepKernelGP.objective>`: an
    :class:`~hybridpgm.infer.SVIObjective` whose loss -- the traces and the ELBO's log-densities and KL terms,
    evaluated after the programs ran -- keeps the GP out of autocast (``SVDeepKernelGP._gp_precision``); the
    feature extractor runs under it."""

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        with self.module._gp_precision():
            return super().loss(player, batch)
