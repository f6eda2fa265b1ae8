"""Evaluation methods over any batch shape: ``[..., D]`` in, ``[...]`` out.

The evaluation methods of the model families compute on rows, ``rows x D`` (:meth:`VAE.log_likelihood
<hybridpgm.generative.vae.VAE.log_likelihood>`, :meth:`SigmoidBeliefNet.exact_log_likelihood
<hybridpgm.generative.sbn.SigmoidBeliefNet.exact_log_likelihood>`, :meth:`DBM.log_likelihood
<hybridpgm.energy.dbm.DBM.log_likelihood>`, ...).  :func:`over_batch_shape` lets such a method take a batch of any
shape, as :class:`~hybridpgm.energy.rbm.RBM`, :class:`~hybridpgm.graphs.bayes_net.BayesNet`,
:class:`~hybridpgm.graphs.markov_net.MarkovNet` and :class:`~hybridpgm.graphs.crf.LinearChainCRF` do: the batch
dimensions of ``x`` (``batch_shape x D``) are flattened into one row dimension (a view of a contiguous ``x``), the
method runs on those ``prod(batch_shape)`` rows, and the result's row dimension is unflattened into
``batch_shape``.  So one example ``[D]`` gives the result of ``x[None]`` without its row dimension (a 0-d
log-likelihood), and ``[A, B, D]`` that of ``x.reshape(A * B, D)`` reshaped to ``[A, B]``: the same rows in the
same call, hence, with generators seeded alike, the same draws and exactly the same numbers.  A ``rows x D`` input
(zero rows included) reaches the method as it is.

The training programs (a Pyro ``model`` and ``guide``, a differentiable loss) keep needing a row dimension, over
which their ``pyro.plate`` runs: :func:`refuse_one_example` is their refusal of one example ``[D]``, a
:class:`~hybridpgm.errors.DataError` that says the batch dimension is missing and shows ``x[None]``.  (A Gaussian
process refuses one example too: its ``[N]`` input would be ambiguous with ``N`` one-feature points.)
"""

from __future__ import annotations

import contextvars
import functools
import math
from typing import Any, Callable

import torch

from hybridpgm.data.validation import describe_origin
from hybridpgm.errors import DataError

__all__ = ["as_given", "over_batch_shape", "refuse_one_example"]

#: the shape the caller gave the innermost :func:`over_batch_shape` call that flattened its input, else ``None``
_GIVEN: contextvars.ContextVar[tuple[int, ...] | None] = contextvars.ContextVar("hybridpgm_given_shape", default=None)


def over_batch_shape(model: str, width: Callable[[Any], int], *, row_dim: int = 0,
                     name: str = "x") -> Callable[[Callable], Callable]:
    """Decorate a method ``method(self, x, ...)`` of ``rows x D`` data whose result holds one entry per row along
    ``row_dim`` to take ``x`` of shape ``batch_shape x D`` (see the module docstring).

    .. math:: f(x)_{i_1 \\dots i_k} = f\\big(\\operatorname{reshape}(x, [\\textstyle\\prod_j n_j, D])\\big)_{r(i)},
        \\qquad r(i) \\text{ the row-major index of } (i_1, \\dots, i_k) \\in [n_1] \\times \\dots \\times [n_k].

    A 2-d ``x`` and anything that is not a tensor go to the method as they are (its checks name them); a 0-d
    tensor, or one of another number of dimensions whose last one is not ``D``, is refused here, naming the
    caller's shape and ``(..., D)``.  While the method runs on the flattened rows, :func:`as_given` gives its data
    checks the caller's shape back.

    :param str model: the model's name for messages (``"VAE"``); with the method's name, ``"VAE.log_likelihood"``.
    :param width: ``width(self)`` is ``D``, the model's data dimension.
    :param int row_dim: the result's dimension that runs over the rows: ``0`` for a ``[rows]`` or
        ``[rows, D]`` result, ``1`` for ``[K, rows]`` (samples first); it becomes ``batch_shape``.
    :param str name: the argument's name for messages (``"x"``, ``"v"``).
    :returns: the decorator.
    :raises DataError: (from the decorated method) a 0-d ``x``, or one of other than two dimensions whose last one
        is not ``D``, naming the call, the shape and ``D``.
    """
    def decorate(method: Callable) -> Callable:
        call = f"{model}.{method.__name__}"

        @functools.wraps(method)
        def on_rows(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(x, torch.Tensor) or x.dim() == 2:
                return method(self, x, *args, **kwargs)
            features = width(self)
            if x.dim() == 0 or x.shape[-1] != features:
                raise DataError(f"{call}: {name}{describe_origin()} has shape {tuple(x.shape)}, expected "
                                f"(..., {features}): one example ({features},) or a batch of any shape "
                                f"(..., {features})")
            batch = x.shape[:-1]
            token = _GIVEN.set(tuple(x.shape))
            try:  # math.prod, not -1: a batch shape holding 0 reshapes too
                out = method(self, x.reshape(math.prod(batch), features), *args, **kwargs)
            finally:
                _GIVEN.reset(token)
            return out.reshape((*out.shape[:row_dim], *batch, *out.shape[row_dim + 1:]))

        return on_rows
    return decorate


def as_given(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the shape the caller gave it: inside a method decorated by :func:`over_batch_shape` that flattened
    the caller's ``batch_shape x D`` into ``rows x D``, an ``x`` of those rows is reshaped back (a view), so that a
    data check's message (:func:`~hybridpgm.data.validation.check_finite`: the shape and the first bad row) names
    the caller's tensor; any other ``x`` is returned as it is.

    :param x: the data a method checks.
    :returns: ``x``, or its view in the caller's shape."""
    given = _GIVEN.get()
    if given is None or x.dim() != 2 or tuple(x.shape) != (math.prod(given[:-1]), given[-1]):
        return x
    return x.reshape(given)


def refuse_one_example(x: Any, features: int, what: str, evaluation: str) -> None:
    """Refuse one example ``[D]`` given to a program that needs a row dimension (a Pyro ``model`` or ``guide``, a
    loss); anything else is left to the caller's checks.

    :param x: the argument.
    :param int features: ``D``, the model's data dimension.
    :param str what: the argument as the message names it (``"VAE argument 'x'"``).
    :param str evaluation: the model's methods that take one example as it is, for the message
        (``"log_likelihood, elbo, log_weights and reconstruct"``).
    :raises DataError: ``x`` is a 1-d tensor of ``features`` entries: the message says that the batch dimension
        is missing and shows ``x[None]``."""
    if isinstance(x, torch.Tensor) and x.dim() == 1 and x.shape[0] == features:
        raise DataError(f"{what}{describe_origin()} has shape ({features},), expected (batch, {features}): one "
                        "example without the batch dimension, which this method needs (a Pyro program's plate runs "
                        f"over the rows); pass x[None], of shape (1, {features}) (the evaluation methods, "
                        f"{evaluation}, take one example as it is)")
