"""The scope every exact Bayesian-network query of :mod:`hybridpgm.infer.exact` runs in.

:func:`exact_query` wraps :func:`~hybridpgm.infer.exact.posterior`, :func:`~hybridpgm.infer.exact.log_evidence`,
:func:`~hybridpgm.infer.exact.map_assignment` and :func:`~hybridpgm.infer.exact.posterior_sample`:

* it runs them in the network's query context (:meth:`BayesNet._query <hybridpgm.graphs.BayesNet._query>`), which
  leaves the CPDs' networks' buffers as they were;
* it names a :func:`torch.func.vmap` over the evidence.  A query reads its evidence on the host (the
  evidence's validation, the choice of probability or log space per row, the groups of rows with the same
  observed nodes), which ``vmap``'s batched tensors cannot give (``.item()`` on a batched tensor is an error),
  and it is already batched: ``N`` evidence rows ``{node: [N] tensor}`` are answered together, in one
  contraction per group of rows.  So where torch refuses such a read under ``vmap``, the query raises
  :class:`~hybridpgm.errors.ConfigError` naming itself and saying what to pass instead, not torch's error from
  deep inside it.  A transform that batches only the tangents of the parameters (:func:`torch.func.hessian`,
  whose forward mode runs under a ``vmap``) reads nothing batched and runs as it did.

  A ``vmap`` over the CPDs' weights (:func:`torch.func.functional_call` with stacked parameters) is refused
  too, the message saying so: the evidence is not batched then, but the query's host reads depend on the
  weights as well, so one answer per weight set would need each of them made per weight set.  They are: in
  float32/float64 the choice of probability or log space per row (:func:`~hybridpgm.infer.bn_spaces.rows_in_prob`,
  a row whose :math:`p(e_n)` is under the floor is redone in log space); the check for evidence of probability
  zero, which raises :class:`~hybridpgm.errors.EvidenceError` (:func:`~hybridpgm.infer.bn_impossible.check_possible`:
  under ``vmap`` it could neither raise for one weight set nor read which); the MAP's back-tracking gradient
  and a sample's draws.  Answering the first two in log space alone, without the check, gives
  :meth:`BayesNet.log_evidence` and :meth:`BayesNet.posterior` the loop's answers on small networks, but an
  impossible row would then be a silent ``NaN`` posterior, and :meth:`BayesNet.map` fails deeper (its
  max-sum contraction's result carries no gradient to back-track under ``vmap``); so the loop over weight sets
  is what the message asks for.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, TypeVar

from hybridpgm.errors import ConfigError
from hybridpgm.transform_scope import under_vmap

__all__ = ["QUERY_METHODS", "exact_query", "refuse_vmap"]

_F = TypeVar("_F", bound=Callable)

#: the :class:`~hybridpgm.graphs.BayesNet` method that calls each query function (named in the errors)
QUERY_METHODS = {"posterior": "posterior", "log_evidence": "log_evidence", "map_assignment": "map",
                 "posterior_sample": "sample"}


def refuse_vmap(name: str, error: Exception | None = None) -> None:
    """Raise :class:`~hybridpgm.errors.ConfigError` (from ``error``, torch's) when called under
    :func:`torch.func.vmap`.

    :param str name: the query function's name (a key of :data:`QUERY_METHODS`).
    :param error: torch's error, chained as the ``ConfigError``'s cause (``raise ... from error``), so that a
        failure under a transform whose ``vmap`` batches nothing the query reads (the tangents of
        :func:`torch.func.jacfwd`, :func:`torch.func.hessian`) still shows what torch refused."""
    if not under_vmap():
        return
    method = QUERY_METHODS.get(name, name)
    raise ConfigError(
        f"BayesNet.{method} (hybridpgm.infer.exact.{name}) does not support torch.func.vmap: an exact query "
        f"reads its evidence on the host, which vmap's batched tensors cannot give.  It is batched already: pass "
        f"the rows as one batch of evidence, {{node: tensor of shape [N]}} (-1 where a row leaves the node "
        f"unobserved), and it answers all N rows at once (a [N, ...] result); for gradients per row, take "
        f"torch.autograd.grad of the [N] result's entries, or of its sum (the rows are independent).  A vmap "
        f"over the CPDs' weights (stacked parameters through torch.func.functional_call) is refused too: the "
        f"query's host reads (probability or log space per row, the check for evidence of probability zero) "
        f"depend on the weights; loop over the weight sets, one query each") from error


def exact_query(query: _F) -> _F:
    """``query(bn, ...)`` run in the network's query context (:meth:`BayesNet._query
    <hybridpgm.graphs.BayesNet._query>`): its CPDs' networks run in the mode they are in (in training mode a batch
    norm normalises with the query batch's statistics) but their buffers (running statistics,
    ``num_batches_tracked``) are left as they were, restored through ``.data`` so that an answer computed through
    them still backpropagates.  Called from a :class:`~hybridpgm.graphs.BayesNet` method, which is already in
    that context, it copies nothing more.  Under :func:`torch.func.vmap` it raises (:func:`refuse_vmap`)."""

    @functools.wraps(query)
    def kept(bn, *args, **kwargs):
        context = getattr(bn, "_query", None)
        try:
            with context() if callable(context) else contextlib.nullcontext():
                return query(bn, *args, **kwargs)
        except RuntimeError as error:  # under vmap, whatever torch's message (a batched tensor read on the host, a
            refuse_vmap(query.__name__, error)  # reverse pass over batched weights): the ConfigError explaining why
            raise

    return kept  # type: ignore[return-value]
