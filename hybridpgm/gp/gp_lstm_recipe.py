"""The GP-LSTM recipe: a :class:`~hybridpgm.gp.GPLSTM` trained semi-stochastically with early stopping on a
held-out tail of the series (:class:`~hybridpgm.gp.gp_lstm.SemiStochasticObjective`,
:func:`~hybridpgm.gp.validation.fit_validated`)."""

from __future__ import annotations

import functools
from typing import Any

import torch

from hybridpgm.checks import positive_real
from hybridpgm.gp.gp_lstm import GPLSTM, SemiStochasticObjective
from hybridpgm.gp.validation import fit_validated, split_tail
from hybridpgm.rng_scope import keeping_global_rngs

__all__ = ["train_gp_lstm"]


def train_gp_lstm(x: torch.Tensor, y: torch.Tensor, *, validation: float = 0.2, hidden_size: int = 16,
                  num_features: int = 2, max_steps: int = 300, eval_every: int = 5, patience: int = 10,
                  lr: float = 0.01, batch_size: int = 32, seed: int | None = 0, device: str = "cpu",
                  **model_kwargs: Any) -> tuple[GPLSTM, Any]:
    """The GP-LSTM recipe: semi-stochastic training on all but a held-out validation tail,
    early stopping on its predictive NLL, best weights restored, then the GP conditioned
    on every window (see :mod:`hybridpgm.gp.validation`).

    :param x: windows ``N x T x D`` in time order.
    :param y: targets ``N``.
    :param float validation: the fraction of the most recent windows held out.
    :param int hidden_size: LSTM width (:class:`~hybridpgm.gp.GPLSTM`).
    :param int num_features: ``F``, the GP's input dimension (:class:`~hybridpgm.gp.GPLSTM`).
    :param int max_steps: at most this many steps.
    :param int eval_every: steps between two validation checks (default 5).
    :param int patience: validation checks without improvement that end the run early (default 10).
    :param float lr: the learning rate of :class:`torch.optim.Adam` (both players).
    :param int batch_size: windows per mini-batch of the network player's gradient estimate
        (:class:`~hybridpgm.gp.gp_lstm.SemiStochasticObjective`; the GP player uses every window).
    :param seed: the network's initialisation and the training run's; the caller's global RNGs are left as they
        were (:func:`~hybridpgm.rng_scope.keeping_global_rngs`).  ``None``: drawn from, and advancing, them.
    :param str device: where to train, as :func:`hybridpgm.fit`'s ``device``.
    :param model_kwargs: passed to :class:`~hybridpgm.gp.GPLSTM` (``grid_size``, ``kernel``, ...).
    :returns: the trained :class:`~hybridpgm.gp.GPLSTM` and the :class:`~hybridpgm.gp.validation.ValidatedFit`.
    :raises ConfigError: ``lr`` is not a positive finite number, ``seed`` is not ``None`` nor an integer torch
        accepts, or a bad ``validation``/``max_steps``/...
    :raises DataError: see :class:`~hybridpgm.gp.GPLSTM` and :func:`~hybridpgm.gp.validation.split_tail`.
    :raises ModelSpecError: see :class:`~hybridpgm.gp.GPLSTM`.

    >>> from hybridpgm.data import make_windows, synthetic_series
    >>> x, y = make_windows(synthetic_series(80, seed=0).float(), 8)
    >>> model, run = train_gp_lstm(x, y, max_steps=4, eval_every=2, hidden_size=4)
    >>> model.train_x.shape[0] == x.shape[0], run.best_step in (2, 4)
    (True, True)
    """
    positive_real(lr, "lr")
    x_fit, y_fit, x_val, y_val = split_tail(x, y, validation)
    with keeping_global_rngs(seed, what="train_gp_lstm seed"):
        model = GPLSTM(x_fit, y_fit, hidden_size=hidden_size, num_features=num_features, **model_kwargs)
        objective = SemiStochasticObjective(model)
        run = fit_validated(objective, objective.dataset(), x_val, y_val, max_steps=max_steps, eval_every=eval_every,
                            patience=patience, refit=(x, y), batch_size=batch_size, seed=seed, device=device,
                            optim=functools.partial(torch.optim.Adam, lr=lr))
    return model, run
