"""Greedy layer-wise pretraining of a :class:`~hybridpgm.energy.dbm.DBM` [1], as a mixin of it.

Each pair of adjacent layers is trained as an RBM by CD-``k`` on the layer below's doubled bottom-up
probabilities, with the inputs a layer misses in the stack doubled (:mod:`hybridpgm.energy.doubled_rbm`); the DBM
then takes the RBMs' weights and, for a middle layer, the mean of the two biases the layer has in the RBMs.

References:

1. R. Salakhutdinov, G. Hinton, "Deep Boltzmann machines", AISTATS 2009.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from hybridpgm.energy.layer_seed import layer_seed
from hybridpgm.energy.rbm import RBM
from hybridpgm.errors import ModelSpecError
from hybridpgm.rng_scope import keeping_global_rngs

__all__ = ["DBMPretraining"]


class DBMPretraining:
    """Greedy layer-wise pretraining of a :class:`~hybridpgm.energy.dbm.DBM` and the composition of pretrained
    RBMs into it (a mixin: it uses the DBM's sizes, parameters and data checks)."""

    def pretrain(self, data: torch.Tensor, *, epochs: int | None = None, k: int = 1,
                 checkpoints: Sequence[str | os.PathLike] | None = None, **fit_kwargs) -> list:
        """Greedy layer-wise pretraining with the weight-doubling scheme of [1].

        RBM ``l`` (between layers ``l`` and ``l+1``) is trained by CD-``k`` with its bottom-up input doubled
        unless ``l+1`` is the top layer and its top-down input doubled unless ``l = 0``; layer ``l+1``'s data are
        the doubled bottom-up probabilities.  The DBM takes the RBMs' weights; a middle layer's bias is the mean
        of the hidden bias below and the visible bias above.

        :param data: ``N x V`` training data.
        :param int k: Gibbs steps of each layer's CD-``k`` (default ``1``).
        :param epochs: passes over the data per layer, as :func:`hybridpgm.fit`'s ``epochs`` (``None``: one
            pass, or ``max_steps`` steps per layer where ``fit_kwargs`` give it).
        :param checkpoints: one checkpoint path per layer's RBM (``resume``, ``overwrite``, ... in ``fit_kwargs``
            apply to each): a preempted pretraining resumes in the layer it stopped in, finished layers load.
        :param fit_kwargs: passed to :func:`hybridpgm.fit` (``batch_size``, ``optim``, ``seed`` ...) for each
            layer; not ``checkpoint`` (use ``checkpoints``).  With a ``seed`` each layer's RBM is also
            initialised from it (and the layer's index), outside the caller's streams, so the result depends only
            on the seed; without one the initialisation draws from torch's global generator.
        :returns: the :class:`~hybridpgm.train.FitResult` of each layer.
        :raises ConfigError: ``checkpoints`` is not one path per layer, ``fit_kwargs`` holds ``checkpoint``, or
            a ``seed`` that is not an integer."""
        from hybridpgm.energy.doubled_rbm import DoubledRBM
        from hybridpgm.energy.greedy_stages import GreedyStages
        from hybridpgm.infer.contrastive_divergence import ContrastiveDivergence

        x = self.check_visible(data, "data")
        results, rbms = [], []
        stages = GreedyStages(checkpoints, self.num_layers, "DBM", fit_kwargs)  # warns of a layer resumed on new inputs
        for l, path in zip(range(self.num_layers), stages.paths):
            # its initial weights: from the seed (and l), not from the caller's stream
            with keeping_global_rngs(layer_seed(fit_kwargs.get("seed"), l, "DBM.pretrain seed")):
                rbm = RBM(self.sizes[l], self.sizes[l + 1], probabilities=l > 0 or self.probabilities)
            rbm.to(self.weights[0])
            doubled = DoubledRBM(rbm, up=2.0 if l + 1 < self.num_layers else 1.0, down=2.0 if l > 0 else 1.0)
            results.append(stages.fit(l, ContrastiveDivergence(doubled, k), x, epochs=epochs, **path, **fit_kwargs))
            rbm.to(self.weights[0].device)
            rbms.append(rbm)
            with torch.no_grad():
                x = doubled.hidden_mean(x.to(self.weights[0].device))
        self.load_rbms(rbms)
        return results

    @torch.no_grad()
    def load_rbms(self, rbms: Sequence[RBM]) -> None:
        """Compose pretrained RBMs (layer ``l`` to ``l+1`` each): take their weights; a middle
        layer's bias is the mean of the hidden bias below and the visible bias above [1].

        :param rbms: one Bernoulli :class:`~hybridpgm.energy.RBM` per pair of layers, bottom first.
        :raises ModelSpecError: not one Bernoulli :class:`~hybridpgm.energy.RBM` per pair of layers, of
            matching sizes."""
        rbms = list(rbms)
        odd = [type(r).__name__ if not isinstance(r, RBM) else "a Gaussian RBM" for r in rbms
               if not isinstance(r, RBM) or r.gaussian]
        if odd:
            raise ModelSpecError(f"DBM.load_rbms needs Bernoulli RBMs, got {odd}")
        if len(rbms) != self.num_layers or any(
                (r.num_visible, r.num_hidden) != (self.sizes[l], self.sizes[l + 1]) for l, r in enumerate(rbms)):
            got = [(r.num_visible, r.num_hidden) for r in rbms]
            raise ModelSpecError(f"DBM {self.sizes} cannot take RBMs of sizes {got}")
        for l, rbm in enumerate(rbms):
            self.weights[l].copy_(rbm.weight)
        self.biases[0].copy_(rbms[0].visible_bias)
        self.biases[-1].copy_(rbms[-1].hidden_bias)
        for l in range(1, self.num_layers):
            self.biases[l].copy_((rbms[l - 1].hidden_bias + rbms[l].visible_bias) / 2)

