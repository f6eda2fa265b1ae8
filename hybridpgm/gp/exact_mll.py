"""The training objective of exact deep kernel learning and its recipe.

:class:`ExactMLLObjective` is the negative exact log marginal likelihood per example of a
:class:`~hybridpgm.gp.DeepKernelGP`,

.. math::

    -\\frac1n \\log p(y \\mid X) = \\frac1{2n} (y - m)^\\top (K + \\sigma^2 I)^{-1} (y - m)
        + \\frac1{2n} \\log |K + \\sigma^2 I| + \\tfrac12 \\log 2\\pi ,

as a :func:`hybridpgm.fit` objective (one player, ``"mll"``: the network weights and the hyperparameters
together); :func:`train_deep_kernel` is the DKL recipe built on it (full-batch training with early stopping on
held-out examples, :mod:`hybridpgm.gp.validation`).  Both are importable from
:mod:`hybridpgm.gp.deep_kernel` as before.

References:

1. A. G. Wilson, Z. Hu, R. Salakhutdinov, E. P. Xing, *Deep Kernel Learning*, AISTATS 2016.
2. H. Chen, L. Zheng, R. Al Kontar, G. Raskutti, *Stochastic Gradient Descent
   in Correlated Settings: A Study on Gaussian Processes*, NeurIPS 2020.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch

from hybridpgm.checks import check_player, positive_real
from hybridpgm.errors import DataError
from hybridpgm.rng_scope import keeping_global_rngs

if TYPE_CHECKING:  # the model module imports this one (it re-exports the objective)
    from hybridpgm.gp.deep_kernel import DeepKernelGP

__all__ = ["ExactMLLObjective", "train_deep_kernel"]


class ExactMLLObjective:
    """Negative exact log marginal likelihood per example of a :class:`~hybridpgm.gp.DeepKernelGP`,
    one player ``"mll"`` (network weights and hyperparameters together).

    The batch is ``(x, y)``.  With ``batch_size >= N`` in :func:`hybridpgm.fit`
    every step is a full-data step of the exact objective (the marginal
    likelihood does not depend on the order of the examples); smaller batches
    give the subset-likelihood SGD of Chen et al. [2], biased but consistent.
    Under KISS-GP such a step maps its batch onto the grid with the recorded range widened to cover the batch
    (:meth:`~hybridpgm.gp.DeepKernelGP.gp_inputs`), so the range kept for prediction covers every batch, not
    the last one.

    The marginal likelihood couples every pair of examples of the batch through
    the kernel matrix, so it is not the mean of the likelihoods of parts of the
    batch: the objective is not *decomposable* (``decomposable = False``, see
    :mod:`hybridpgm.train.objective`), and :func:`hybridpgm.fit` refuses
    ``accumulate > 1`` and multi-process (``torchrun``) runs for it with a
    :class:`~hybridpgm.errors.ConfigError`, instead of silently training the
    mean of the micro-batches' or the ranks' likelihoods.

    :param model: the :class:`~hybridpgm.gp.DeepKernelGP` to train (also the objective's ``module``).
    """

    #: the loss of a batch is not the mean of its parts' losses: fit neither accumulates nor shards it
    decomposable = False

    def __init__(self, model: DeepKernelGP):
        self.model = model
        self.module = model

    def players(self) -> dict[str, list[torch.nn.Parameter]]:
        """The one player ``"mll"``: every parameter of the model that requires a gradient."""
        return {"mll": [p for p in self.model.parameters() if p.requires_grad]}

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """The negative exact log marginal likelihood per example of the batch (GPyTorch's stochastic probes, if
        any, drawn from the caller's streams: inside :func:`hybridpgm.fit`, the run's seeded ones).

        :param player: ``"mll"``.
        :param batch: ``(x, y)``: inputs ``B x ...`` and targets ``B``.
        :raises ConfigError: an unknown ``player``.
        :raises DataError: a batch that is not ``(x, y)`` (see
            :meth:`~hybridpgm.gp.DeepKernelGP.marginal_log_likelihood`)."""
        check_player(player, ("mll",), "ExactMLLObjective")
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise DataError(f"ExactMLLObjective batches are (x, y), got {_describe(batch)}")
        x, y = batch
        return -self.model._marginal_log_likelihood(x, y)  # fit's seeded stream draws GPyTorch's probes


def train_deep_kernel(x: torch.Tensor, y: torch.Tensor, feature_extractor: torch.nn.Module | None = None, *,
                      validation: float = 0.2, max_steps: int = 300, eval_every: int = 5, patience: int = 10,
                      lr: float = 0.01, seed: int | None = 0, device: str = "cpu",
                      **model_kwargs: Any) -> tuple[DeepKernelGP, Any]:
    """The DKL recipe: full-batch exact marginal likelihood (:class:`ExactMLLObjective`) on all
    but the last ``validation`` fraction of the examples, early stopping on their predictive NLL,
    best weights restored, then the GP conditioned on every example (see
    :mod:`hybridpgm.gp.validation`).  Shuffle i.i.d. data first: the held-out examples are the last rows.

    :param x: inputs ``N x ...``.
    :param y: targets ``N``.
    :param feature_extractor: the network :math:`g_w` of the deep kernel (``None``: the identity, a plain GP).
    :param float validation: the held-out fraction (the last rows).
    :param int max_steps: optimizer steps at most.
    :param int eval_every: steps between two validation checks (default 5).
    :param int patience: validation checks without improvement that end the run early (default 10).
    :param float lr: Adam's learning rate.
    :param seed: the network's initialisation and the training run's; the caller's global RNGs are left as they
        were (:func:`~hybridpgm.rng_scope.keeping_global_rngs`).  ``None``: drawn from, and advancing, them.
    :param device: where to train (``"cpu"``, ``"cuda"``, ``"auto"``, as :func:`hybridpgm.fit` takes it).
    :param model_kwargs: passed to :class:`~hybridpgm.gp.DeepKernelGP` (``kernel``, ``grid_size``, ...).
    :returns: the trained :class:`~hybridpgm.gp.DeepKernelGP` and the :class:`~hybridpgm.gp.validation.ValidatedFit`.
    :raises ConfigError: ``lr`` is not a positive finite number, or a bad ``validation``/``max_steps``/...
    :raises DataError: see :class:`~hybridpgm.gp.DeepKernelGP` and :func:`~hybridpgm.gp.validation.split_tail`.
    """
    from hybridpgm.gp.deep_kernel import DeepKernelGP  # here: that module imports this one
    from hybridpgm.gp.validation import fit_validated, split_tail

    positive_real(lr, "lr")

    x_fit, y_fit, x_val, y_val = split_tail(x, y, validation)
    with keeping_global_rngs(seed, what="train_deep_kernel seed"):
        model = DeepKernelGP(x_fit, y_fit, feature_extractor, **model_kwargs)
        run = fit_validated(ExactMLLObjective(model), (x_fit, y_fit), x_val, y_val, max_steps=max_steps,
                            eval_every=eval_every, patience=patience, refit=(x, y), batch_size=x_fit.shape[0],
                            seed=seed, device=device, optim=functools.partial(torch.optim.Adam, lr=lr),
                            shuffle=False)  # full batch: the order changes nothing but costs a copy per step
    return model, run


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} element(s)"
    return f"a {type(value).__name__}"
