"""The dtype of the weights a :class:`~hybridpgm.bayesian_nn.BayesianRegressor` is given by a guide, checked.

A guide (or posterior samples) replays its draws into the weight sites of the bayesianized network.  A model cast
for serving (``model.to(torch.bfloat16)``) with its guide left in float32 then got float32 weights for bfloat16
inputs, and torch refused the first layer with its raw ``RuntimeError`` ("mat1 and mat2 must have the same
dtype"), after Pyro's dump of the trace's shapes.  :class:`WeightDtypes`, around the network's run, names the
site, both dtypes and the remedy instead: one dtype comparison per site, no host read.
"""

from __future__ import annotations

import torch
from pyro.poutine.messenger import Messenger

from hybridpgm.errors import DataError

__all__ = ["WeightDtypes"]


class WeightDtypes(Messenger):
    """Refuse a floating-point draw at a sample site of the network run within it whose dtype is not ``dtype``
    (the network's weights), after every handler has set it (a guide's replay, ``condition`` on posterior
    samples): :class:`~hybridpgm.errors.DataError` naming the site, both dtypes and the remedy.  Within the
    network's run the sample sites are its weights (:func:`~hybridpgm.bayesian_nn.bayesianize`); integer and
    boolean draws are not weights and pass.

    :param dtype: the floating dtype of the network's weights (its ``_prior_scale`` buffers).
    :param str owner: who runs the network, for the message (``"BayesianRegressor"``)."""

    def __init__(self, dtype: torch.dtype, owner: str):
        super().__init__()
        self.dtype = dtype
        self.owner = owner

    def _postprocess_message(self, msg) -> None:
        value = msg["value"]
        if (msg["type"] == "sample" and isinstance(value, torch.Tensor) and value.dtype != self.dtype
                and value.is_floating_point()):
            raise DataError(f"{self.owner}: the weight site {msg['name']!r} was given a draw of dtype {value.dtype} "
                            f"(by the guide or the posterior samples), but the network's weights are {self.dtype}; "
                            f"cast the guide with the model (guide.to({self.dtype}), as model.to({self.dtype})), or "
                            f"serve the model in {value.dtype}")
