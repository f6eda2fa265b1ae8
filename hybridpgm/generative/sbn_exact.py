"""Exact likelihood of a :class:`~hybridpgm.generative.sbn.SigmoidBeliefNet` by enumerating its hidden layers.

:class:`SBNExactLikelihood` is a mixin of :class:`~hybridpgm.generative.sbn.SigmoidBeliefNet`.  For a net with
visible units :math:`x \\in \\{0,1\\}^D` and hidden layers :math:`h_l \\in \\{0,1\\}^{H_l}` the marginal

.. math::

    p(x) = \\sum_{h_1, \\dots, h_L} p(h_L) \\prod_{l=2}^{L} p(h_{l-1} \\mid h_l) \\; p(x \\mid h_1)

is a sum over :math:`\\prod_l 2^{H_l}` joint states.  :meth:`~SBNExactLikelihood.enumerated_model` makes each hidden
layer one ``Categorical`` site over its :math:`2^{H_l}` states (:func:`binary_states`, scored by
:func:`bernoulli_state_logits`), marked for parallel enumeration, and
:meth:`~SBNExactLikelihood.exact_log_likelihood` sums them out layer by layer, keeping the data plate, so one row
costs :math:`2^{H_1} D + \\sum_l 2^{H_l + H_{l+1}}` numbers instead of the product.

The sum is hybridpgm's exact log-space contraction (a cached
:class:`~hybridpgm.graphs.contraction.ContractionPlan` in the ``"log"`` semiring, as for
:class:`~hybridpgm.graphs.markov_net.MarkovNet` and :class:`~hybridpgm.graphs.bayes_net.BayesNet`), not Pyro's
``pyro.ops.contract``: Pyro's ``torch_log`` einsum shifts each term by its own maximum, so where the prior
and the likelihood peak on different hidden states (a near-deterministic net, or data explained only by a state
the prior calls rare) its shifted sum underflows to :math:`-\\infty`, and its ``safe_log`` clamps
:math:`d \\log s / d s` at :math:`1/\\epsilon`, which shrank the gradient (0.02 for 1.0).  The steps of
:mod:`hybridpgm.graphs.contraction_steps` redo underflowed entries exactly and take the gradient of the log
as exactly :math:`1/s`.  (``TraceEnum_ELBO`` on :meth:`~SBNExactLikelihood.enumerated_model` is Pyro's own
contraction, with Pyro's limits.)

Memory budget: two adjacent layers may have at most :data:`MAX_ENUM_STATES` joint states, and the rows go
through in chunks of at most ``MAX_ENUM_ELEMENTS // per_row`` rows, ``per_row`` the larger of
:math:`2^{H_1} D` (the observed site's log-density of one row) and :math:`\\max_l 2^{H_l + H_{l+1}}`.  Rows are
independent, so the chunks give the result of one pass.  Both budgets are read from *this* module at each
call (``hybridpgm.generative.sbn_exact.MAX_ENUM_ELEMENTS``; :mod:`hybridpgm.generative.sbn` re-exports their
default values under the old names, but assigning there changes nothing).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.nn import pyro_method
from pyro.poutine.util import site_is_subsample
from torch import nn
from torch.utils.checkpoint import checkpoint

from hybridpgm.batch_shapes import over_batch_shape
from hybridpgm.checks import site_prefix
from hybridpgm.errors import ConfigError
from hybridpgm.graphs.contraction import PlanCache
from hybridpgm.handler_scope import isolated_from_handlers
from hybridpgm.plate_dims import refuse_caller_plate
from hybridpgm.precision_scope import exact_precision

__all__ = ["MAX_ENUM_ELEMENTS", "MAX_ENUM_STATES", "SBNExactLikelihood", "bernoulli_state_logits", "binary_states"]

#: Largest number of joint states of two adjacent layers that exact enumeration accepts.
MAX_ENUM_STATES = 2**24

#: Largest number of elements of one enumerated tensor that :meth:`SigmoidBeliefNet.exact_log_likelihood` builds
#: at a time (read at each call, so it can be changed, e.g. monkeypatched in a test): the observed site's
#: log-density has :math:`2^{H_1} \cdot B \cdot D` elements for a batch of ``B`` rows (and the site of
#: :math:`h_l`, :math:`2^{H_l + H_{l+1}} \cdot B`), so the rows go through in chunks of at most
#: ``MAX_ENUM_ELEMENTS // (2**H_1 * D)`` rows (rows are independent: the result is that of one pass).
#: 2**26 elements are 256 MiB in float32 per tensor.
MAX_ENUM_ELEMENTS = 2**26

#: the contraction plans of the enumerated terms, one per pattern (the terms' dims and sizes: a net's layer
#: sizes and a chunk's row count), least recently used dropped first; a plan holds no tensors
_PLANS = PlanCache(maxsize=64)


def binary_states(n: int, like: torch.Tensor) -> torch.Tensor:
    """All :math:`2^n` binary vectors of length ``n``, shape ``[2**n, n]`` (bit 0 first)."""
    codes = torch.arange(2**n, device=like.device)
    bits = torch.arange(n, device=like.device)
    return ((codes.unsqueeze(-1) >> bits) & 1).to(like.dtype)


def bernoulli_state_logits(logits: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """:math:`\\log \\prod_i \\mathrm{Bern}(s_i; \\sigma(a_i))` for every state ``s``.

    :param logits: ``[..., n]``.
    :param states: ``[S, n]``.
    :returns: ``[..., S]``.
    """
    return nn.functional.logsigmoid(logits) @ states.T + nn.functional.logsigmoid(-logits) @ (1 - states).T


class SBNExactLikelihood:
    """Mixin of :class:`~hybridpgm.generative.sbn.SigmoidBeliefNet`: the enumerated model and the exact
    :math:`\\log p(x)`.  It relies on the net's ``layer_sizes``, ``num_layers``, ``prior_logits``, ``decoders``,
    ``_check_rows`` and ``_plate``."""

    @pyro_method
    def enumerated_model(self, x: torch.Tensor, *, prefix: str = ""):
        """The same model with each hidden layer as one ``Categorical`` site over its
        :math:`2^{H_l}` joint states, marked for parallel enumeration, so that
        ``TraceEnum_ELBO`` (with an empty guide) or :meth:`exact_log_likelihood`
        sums the hidden layers out exactly.  Under ``TraceEnum_ELBO`` the whole batch is one enumerated tensor
        of :math:`2^{H_1} B D` elements (:meth:`exact_log_likelihood` chunks the rows; a training batch is
        the caller's to size).

        :param x: ``[B, D]`` binary data (one example ``[D]`` is refused: pass ``x[None]``).
        :param str prefix: as in :meth:`model` (sites ``prefix + "h1"``, ..., ``prefix + "x"``, plate
            ``prefix + "data"``).
        :raises DataError: bad ``x`` (see :meth:`check_data`; an empty batch included), or ``x`` not
            two-dimensional.
        :raises ConfigError: a model too wide to enumerate (see :meth:`exact_log_likelihood`), or a ``prefix``
            that is not a string.
        :raises ModelSpecError: called inside a caller's plate at dim ``-1``, as :meth:`model`.

        It is a ``pyro_method``: the net's parameters are Pyro parameters inside it, so plain ``SVI`` (jitted or
        not) trains them, as with :meth:`model`.
        """
        return self._enumerated_program(x, prefix=prefix)

    def _enumerated_program(self, x: torch.Tensor, *, prefix: str = ""):
        """:meth:`enumerated_model`'s program, reading the parameters as plain tensors (no param-store entry):
        what :meth:`exact_log_likelihood` contracts."""
        prefix = site_prefix(prefix, "SigmoidBeliefNet.enumerated_model")
        x = self._check_rows(x, "enumerated_model")
        if not x.shape[0]:
            self._plate(0, None)  # raises: a plate cannot be empty
        self._check_enumerable()
        refuse_caller_plate("SigmoidBeliefNet.enumerated_model", prefix + "data")
        L = self.num_layers
        # the joint states of the hidden layers only (``states[l]`` for ``h_l``): the visible layer is observed,
        # never enumerated (its 2**D states overflowed for a wide visible layer)
        states = [None] + [binary_states(self.layer_sizes[l], x) for l in range(1, L + 1)]
        with pyro.plate(prefix + "data", x.shape[-2], dim=-1):
            logits = self.prior_logits.unsqueeze(0)
            s = pyro.sample(f"{prefix}h{L}", dist.Categorical(logits=bernoulli_state_logits(logits, states[L])),
                            infer={"enumerate": "parallel"})
            h = states[L][s]
            decoders = self.decoders  # registered once, not once per layer (quadratic in L)
            for l in range(L, 1, -1):
                table = bernoulli_state_logits(decoders[l - 1](h), states[l - 1])
                s = pyro.sample(f"{prefix}h{l - 1}", dist.Categorical(logits=table),
                                infer={"enumerate": "parallel"})
                h = states[l - 1][s]
            pyro.sample(prefix + "x", dist.Bernoulli(logits=decoders[0](h)).to_event(1), obs=x)

    def _check_enumerable(self) -> int:
        """Check that exact enumeration fits the limits; returns the elements one row adds to the largest
        enumerated tensor, :math:`\\max(2^{H_1} D, \\max_l 2^{H_l + H_{l+1}})`.

        :raises ConfigError: two adjacent layers of more than :data:`MAX_ENUM_STATES` joint states, or one row
            whose enumerated tensor exceeds :data:`MAX_ENUM_ELEMENTS` (naming ``H_1``, ``D`` and the limit)."""
        sizes = self.layer_sizes
        for l in range(1, self.num_layers + 1):
            pair = 2 ** sizes[l] * (2 ** sizes[l + 1] if l < self.num_layers else 1)
            if pair > MAX_ENUM_STATES:
                raise ConfigError(
                    f"exact enumeration of layer h{l} ({sizes[l]} units) needs {pair} joint states "
                    f"(limit {MAX_ENUM_STATES}); use log_likelihood() (importance sampling) instead"
                )
        observed = 2 ** sizes[1] * sizes[0]
        per_row = max([observed] + [2 ** (sizes[l] + sizes[l + 1]) for l in range(1, self.num_layers)])
        if per_row > MAX_ENUM_ELEMENTS:
            raise ConfigError(
                f"exact enumeration of one data row needs a tensor of {per_row} elements (2**{sizes[1]} states "
                f"of h1 x D={sizes[0]} visible units, or two adjacent hidden layers), more than "
                f"hybridpgm.generative.sbn_exact.MAX_ENUM_ELEMENTS={MAX_ENUM_ELEMENTS}; use log_likelihood() "
                f"(importance sampling) instead, or raise that limit")
        return per_row

    @over_batch_shape("SigmoidBeliefNet", lambda sbn: sbn.layer_sizes[0])
    @isolated_from_handlers
    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x) = \\log \\sum_{h} p(x, h)` per datapoint.

        Runs :meth:`enumerated_model` under ``poutine.enum`` and contracts the
        enumerated layers with hybridpgm's exact log-space contraction (see the module docstring: exact where
        the prior and the likelihood peak on different states, value and gradient), keeping the data plate.
        Cost grows as
        :math:`2^{H_1} D + \\sum_l 2^{H_l + H_{l+1}}` per datapoint: small models only.  The rows go through
        in chunks of at most ``MAX_ENUM_ELEMENTS // per_row`` rows (:data:`MAX_ENUM_ELEMENTS`, ``per_row`` the
        larger of :math:`2^{H_1} D` and :math:`\\max_l 2^{H_l + H_{l+1}}`), so the memory is bounded whatever
        the batch; rows are independent, so the result is the same as in one pass.  With gradients enabled and
        several chunks, each chunk is recomputed in the backward pass (:func:`torch.utils.checkpoint.checkpoint`)
        instead of keeping its enumerated tensors for it: the gradients are those of one pass too.

        The enumerated program runs as one of its own
        (:func:`~hybridpgm.handler_scope.isolated_from_handlers`): the value is the same under any handler of the
        caller (``poutine.scale``, ``condition``, an outer ``pyro.plate``), and a user's model can score data
        with it, ``pyro.factor("ll", sbn.exact_log_likelihood(x).sum())``, without its enumerated sites leaking
        into the model's trace.
        Under :func:`torch.autocast` (``fit(precision="bf16"/"fp16")``) the enumeration runs with autocast off
        (:class:`~hybridpgm.precision_scope.exact_precision`), in the net's dtype: float32 for a float32 net.
        The result has the net's dtype, as :meth:`log_likelihood` and :meth:`sample` (bfloat16 for a bfloat16
        net: the enumeration runs in it, so a float32 result would hold no more digits).

        :param x: ``[..., D]`` binary data: ``[B, D]`` (an empty batch gives an empty result), one example ``[D]``
            (a 0-d result, that of ``x[None]`` without its row dimension) or any batch shape (its rows flattened
            and the result reshaped: :func:`~hybridpgm.batch_shapes.over_batch_shape`).
        :returns: ``[...]``, the batch shape of ``x``.
        :raises DataError: bad ``x`` (see :meth:`check_data`; a last dimension other than ``D``).
        :raises ConfigError: two adjacent layers of more than :data:`MAX_ENUM_STATES` joint states, or a single
            row beyond :data:`MAX_ENUM_ELEMENTS`.
        """
        x = self._check_rows(x, "exact_log_likelihood")
        if not x.shape[0]:
            return x.new_zeros(0)
        chunks = x.split(max(1, MAX_ENUM_ELEMENTS // self._check_enumerable()))
        if len(chunks) == 1:
            return self._exact_rows(x)
        if torch.is_grad_enabled():  # the autograd graph would keep every chunk's enumerated tensors
            return torch.cat([checkpoint(self._exact_rows, chunk, use_reentrant=False) for chunk in chunks])
        return torch.cat([self._exact_rows(chunk) for chunk in chunks])

    @isolated_from_handlers  # also when the backward pass recomputes it, under whatever handlers are active then
    def _exact_rows(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`exact_log_likelihood` of one chunk of rows ``[B, D]`` (checked), in one enumerated pass, with
        autocast off."""
        with exact_precision(device=x.device):
            return self._contract_rows(x)

    def _contract_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The enumerated contraction of :meth:`_exact_rows`: every sample site's packed log-density (all of them
        in the one data plate, over the enumerated dims of its layers and the data dim) is an operand of

        .. math:: \\log p(x_b) = \\log \\sum_{h} \\exp \\sum_{s} \\log p(s \\mid \\mathrm{pa}(s)) \\quad
            (s \\text{ over the sites}),

        contracted in the ``"log"`` semiring of a cached :class:`~hybridpgm.graphs.contraction.ContractionPlan`
        (:mod:`hybridpgm.graphs.contraction_steps`).  Returns ``[B]``."""
        enum_model = poutine.enum(self._enumerated_program, first_available_dim=-2)
        trace = poutine.trace(enum_model).get_trace(x)
        trace.compute_log_prob()
        trace.pack_tensors()
        data_symbol = trace.plate_to_symbol["data"]
        operands, dims = [], []
        for site in trace.nodes.values():
            # the data plate's own site adds a zero of the default dtype: a bfloat16 net's answer came in float32
            if site["type"] == "sample" and not site_is_subsample(site):
                term = site["packed"]["log_prob"]
                operands.append(term)
                dims.append(tuple(term._pyro_dims))
        sizes = {d: n for names, term in zip(dims, operands) for d, n in zip(names, term.shape)}
        # a one-row batch: pack_tensors drops the size-1 data dim, so no term names its symbol; the whole sum is
        # that row's log p(x)
        target = (data_symbol,) if data_symbol in sizes else ()
        plan = _PLANS.get(dims, target, sizes, key_extra=tuple(sorted(sizes.items())))
        return plan(operands, "log").expand(x.shape[-2])
