"""Sigmoid belief networks with a bottom-up recognition network (Helmholtz machine).

A sigmoid belief net [1] over visible units :math:`x \\in \\{0,1\\}^{D}` and
hidden layers :math:`h_1, \\dots, h_L` (:math:`h_l \\in \\{0,1\\}^{H_l}`) is the
directed model

.. math::

    p(h_L) = \\prod_j \\mathrm{Bern}(h_{L j}; \\sigma(b_{L j})), \\qquad
    p(h_{l-1} \\mid h_l) = \\prod_i \\mathrm{Bern}(h_{l-1, i}; \\sigma(W_l h_l + b_{l-1})_i),

with :math:`h_0 = x`.  Inference is hard because units of one layer are
co-parents of the layer below and compete to explain it ("explaining away").
A Helmholtz machine [2] pairs it with an amortized, bottom-up recognition model

.. math::

    q(h_l \\mid h_{l-1}) = \\prod_j \\mathrm{Bern}(h_{l j}; \\sigma(R_l h_{l-1} + c_l)_j),

trained by wake-sleep [2], reweighted wake-sleep [3] or NVIL [4]
(:mod:`hybridpgm.infer`).  The model and guide are ordinary Pyro programs, so
Pyro's own inference (``TraceGraph_ELBO``, ``ReweightedWakeSleep``) runs on them.

References:

1. R. M. Neal, *Connectionist learning of belief networks*, Artificial Intelligence 1992.
2. G. E. Hinton, P. Dayan, B. J. Frey, R. M. Neal, *The wake-sleep algorithm for
   unsupervised neural networks*, Science 1995.
3. J. Bornschein, Y. Bengio, *Reweighted Wake-Sleep*, ICLR 2015.
4. A. Mnih, K. Gregor, *Neural Variational Inference and Learning in Belief Networks*, ICML 2014.
5. C. J. Maddison, A. Mnih, Y. W. Teh, *The Concrete Distribution: A Continuous Relaxation of
   Discrete Random Variables*, ICLR 2017.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.nn import PyroModule, pyro_method
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.ops.contract import contract_to_tensor
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli as _TorchLogitRelaxedBernoulli

from hybridpgm.checks import (as_integer, check_device, flag, module_name, positive_int, positive_real,
                              sample_count, site_prefix)
from hybridpgm.checks import layer_sizes as _layer_sizes
from hybridpgm.data.validation import as_model_dtype, check_no_extra_arguments, check_num_data
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.handler_scope import isolated_from_handlers
from hybridpgm.param_store_scope import own_param_store
from hybridpgm.serialization import serializable
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["SigmoidBeliefNet"]

#: the keyword options of :meth:`SigmoidBeliefNet.model` and ``guide``, named when positional ones are refused
_KEYWORDS = "batch_size=..., num_data=..., temperature=..."

#: Largest number of joint states of two adjacent layers that exact enumeration accepts.
MAX_ENUM_STATES = 2**24

#: Largest number of elements of one enumerated tensor that :meth:`SigmoidBeliefNet.exact_log_likelihood` builds
#: at a time (read at each call, so it can be changed, e.g. monkeypatched in a test): the observed site's
#: log-density has :math:`2^{H_1} \cdot B \cdot D` elements for a batch of ``B`` rows (and the site of
#: :math:`h_l`, :math:`2^{H_l + H_{l+1}} \cdot B`), so the rows go through in chunks of at most
#: ``MAX_ENUM_ELEMENTS // (2**H_1 * D)`` rows (rows are independent: the result is that of one pass).
#: 2**26 elements are 256 MiB in float32 per tensor.
MAX_ENUM_ELEMENTS = 2**26


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


class LogitRelaxedBernoulli(_TorchLogitRelaxedBernoulli, TorchDistributionMixin):
    """Concrete relaxation of a Bernoulli in logit space [5] (torch's, made a reparameterized Pyro distribution)."""

    has_rsample = True


@serializable
class SigmoidBeliefNet(PyroModule):
    """A sigmoid belief net with a recognition network, as one ``PyroModule``.

    Sample sites: ``"h{L}"``, ..., ``"h1"`` (latent, ``[B, H_l]``) and ``"x"``
    (observed, ``[B, D]``), all inside ``pyro.plate("data")``; with the ``prefix`` keyword of :meth:`model`,
    :meth:`guide` and :meth:`enumerated_model`, ``prefix + "h1"``, ... inside ``pyro.plate(prefix + "data")``.

    :param layer_sizes: ``(D, H_1, ..., H_L)``: visible size first, top layer last.
    :param bool validate_data: check that data are binary and of the right shape.
    :param str name: the :class:`~pyro.nn.PyroModule` name: under Pyro's global param store (plain
        :class:`pyro.infer.SVI`) the parameters are ``"<name>.prior_logits"``, ``"<name>.decoders$$$0.weight"``,
        ... instead of ``"prior_logits"``, ..., so two nets keep their parameters apart in one program (see
        :doc:`/pyro_native`).  Saved and loaded with the net.
    :raises ModelSpecError: ``layer_sizes`` is not a sequence of at least two positive integers
        (``bool`` and floats are refused), ``validate_data`` is not ``True`` or ``False``, or ``name`` is not a
        string.

    >>> sbn = SigmoidBeliefNet([64, 20, 10])
    >>> x = torch.bernoulli(torch.full((5, 64), 0.3))
    >>> sbn.log_likelihood(x, num_samples=10).shape
    torch.Size([5])
    """

    def __init__(self, layer_sizes: Sequence[int], validate_data: bool = True, name: str = ""):
        super().__init__(module_name(name, "SigmoidBeliefNet"))
        if isinstance(layer_sizes, Sequence) and not isinstance(layer_sizes, str) and len(layer_sizes) < 2:
            raise ModelSpecError(f"layer_sizes needs the visible size and at least one hidden layer, "
                                 f"got {list(layer_sizes)}")
        sizes = _layer_sizes(layer_sizes, "SigmoidBeliefNet layer_sizes", error=ModelSpecError)
        self.layer_sizes = sizes
        self.num_layers = len(sizes) - 1
        self.validate_data = flag(validate_data, "SigmoidBeliefNet validate_data", error=ModelSpecError)
        #: logits :math:`b_L` of the factorized prior over the top layer
        self.prior_logits = nn.Parameter(torch.zeros(sizes[-1]))
        #: ``decoders[l-1]``: :math:`h_l \\to` logits of layer ``l-1`` (``l = 1..L``)
        self.decoders = nn.ModuleList(nn.Linear(sizes[l], sizes[l - 1]) for l in range(1, len(sizes)))
        #: ``encoders[l-1]``: :math:`h_{l-1} \\to` logits of :math:`q(h_l \\mid h_{l-1})`
        self.encoders = nn.ModuleList(nn.Linear(sizes[l - 1], sizes[l]) for l in range(1, len(sizes)))

    # ---------------------------------------------------------------- helpers
    @property
    def latent_sites(self) -> list[str]:
        """Names of the latent sample sites, bottom-up: ``["h1", ..., "hL"]``."""
        return [f"h{l}" for l in range(1, self.num_layers + 1)]

    def model_parameters(self) -> list[nn.Parameter]:
        """Generative parameters :math:`\\theta` (prior logits and decoders)."""
        return [self.prior_logits, *self.decoders.parameters()]

    def guide_parameters(self) -> list[nn.Parameter]:
        """Recognition parameters :math:`\\phi` (the encoders)."""
        return list(self.encoders.parameters())

    def check_data(self, x: torch.Tensor) -> torch.Tensor:
        """Validate ``x`` (``[..., B, D]``, binary, finite) and return it in the model's dtype,
        converted by the rule of :func:`hybridpgm.data.validation.as_model_dtype` (bool
        and integers exactly; float64 data for a float32 model are refused).

        :raises DataError: naming the expected and actual shape, or the bad values (inside
            :func:`hybridpgm.fit`'s step the value check joins the step's one host read).
        :raises DeviceError: ``x`` is not on the parameters' device.
        """
        if not isinstance(x, torch.Tensor):
            raise DataError(f"SigmoidBeliefNet data must be a tensor [B, {self.layer_sizes[0]}], "
                            f"got {type(x).__name__}")
        d = self.layer_sizes[0]
        if x.dim() < 2 or x.shape[-1] != d:
            raise DataError(f"SigmoidBeliefNet site 'x' expects data of shape [B, {d}], got {tuple(x.shape)}")
        check_device(x, self.prior_logits, "SigmoidBeliefNet site 'x'")
        x = as_model_dtype(x, self.prior_logits.dtype, "SigmoidBeliefNet site 'x'")
        if self.validate_data:
            given = x

            def not_binary() -> DataError:
                bad = given[(given != 0) & (given != 1)].flatten()[:3].tolist()
                return DataError(f"SigmoidBeliefNet site 'x' expects binary data in {{0, 1}}, found values such "
                                 f"as {bad}")

            # inside fit's step the flag joins the step's one host read; until it is read, bad entries are
            # given as 0 (a NaN would reach torch.bernoulli in the guide: a device assert on CUDA)
            binary = (x == 0) | (x == 1)
            check_or_defer(binary.all(), not_binary)
            x = torch.where(binary, x, 0.0)
        return x

    def _plate(self, batch: int, num_data: int | None, prefix: str = ""):
        if not batch:
            raise DataError("SigmoidBeliefNet site 'x' got an empty batch (0 rows): a Pyro plate needs at least "
                            "one row")
        if num_data is None:
            return pyro.plate(prefix + "data", batch, dim=-1)
        if as_integer(num_data) is not None and num_data < batch:
            raise ConfigError(f"num_data={num_data} is smaller than the batch size {batch}")
        num_data = check_num_data(num_data, batch, model="SigmoidBeliefNet")
        rows = torch.arange(batch, device=self.prior_logits.device)
        return pyro.plate(prefix + "data", num_data, subsample=rows, dim=-1)

    # ----------------------------------------------------------- Pyro programs
    @staticmethod
    def _check_temperature(temperature):
        if isinstance(temperature, torch.Tensor):  # inside fit, in the step's one host read
            shown = temperature.detach()

            def not_positive() -> ConfigError:
                return ConfigError(f"SigmoidBeliefNet temperature must be finite numbers > 0, got {shown!r:.80}")

            check_or_defer((torch.isfinite(shown) & (shown > 0)).all(), not_positive)
        elif temperature is not None:
            positive_real(temperature, "SigmoidBeliefNet temperature")

    @staticmethod
    def _latent(logits: torch.Tensor, temperature: float | None):
        if temperature is None:
            return dist.Bernoulli(logits=logits).to_event(1)
        return LogitRelaxedBernoulli(torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device),
                                     logits=logits).to_event(1)

    @staticmethod
    def _unit_values(h: torch.Tensor, temperature: float | None) -> torch.Tensor:
        return h if temperature is None else torch.sigmoid(h)

    @pyro_method
    def model(self, x: torch.Tensor | None = None, *labels, batch_size: int | None = None,
              num_data: int | None = None, temperature: float | None = None, prefix: str = ""):
        """Generative model :math:`p(x, h)`.

        :param x: observed data ``[B, D]``, or ``None`` to dream ``batch_size`` samples.
        :param int num_data: full data size :math:`N` when ``x`` is a mini-batch
            (the plate then scales log-densities by :math:`N / B`).
        :param float temperature: when given, every hidden layer is relaxed to
            a Concrete (logistic) variable at this temperature [5]: the site
            holds the *logits* :math:`y_l` and the layer below sees
            :math:`\\sigma(y_l)`; reparameterizable, so the
            :class:`~hybridpgm.infer.IWAE` bound trains it.  Must match the guide's.
        :param str prefix: prepended to the names of the sites and of the plate (``prefix + "h1"``, ...,
            ``prefix + "x"``, ``prefix + "data"``), so that two models can share one Pyro program; the guide
            takes the same ``prefix``.  ``""`` (the default): the names above.
        :returns: the visible units ``[B, D]``.
        :raises DataError: bad ``x`` (see :meth:`check_data`; an empty batch included) or ``num_data``, or a
            positional argument after ``x`` (a batch ``(x, labels)`` unpacked into the call).
        :raises ConfigError: ``batch_size`` is not a positive integer, ``num_data`` is smaller than the batch,
            ``temperature`` is not a finite positive number, or ``prefix`` is not a string.
        """
        check_no_extra_arguments(labels, model="SigmoidBeliefNet", method="model", keywords=_KEYWORDS)
        prefix = site_prefix(prefix, "SigmoidBeliefNet.model")
        self._check_temperature(temperature)
        if batch_size is not None:
            batch_size = positive_int(batch_size, "SigmoidBeliefNet.model batch_size")
        if x is not None:
            x = self._check_rows(x, "model")  # [B, D]: one hidden draw per row (a [K, B, D] x shared them)
            batch = x.shape[-2]
            if batch_size is not None and batch_size != batch:
                raise ConfigError(f"SigmoidBeliefNet.model batch_size={batch_size} contradicts x of "
                                  f"{batch} rows; give one of them")
        else:
            batch = 1 if batch_size is None else batch_size
        L = self.num_layers
        with self._plate(batch, num_data, prefix):
            t = temperature
            h = pyro.sample(f"{prefix}h{L}", self._latent(self.prior_logits.expand(batch, -1), t))
            for l in range(L, 0, -1):
                logits = self.decoders[l - 1](self._unit_values(h, t))
                if l > 1:
                    h = pyro.sample(f"{prefix}h{l - 1}", self._latent(logits, t))
                else:
                    h = pyro.sample(prefix + "x", dist.Bernoulli(logits=logits).to_event(1), obs=x)
        return h

    @pyro_method
    def guide(self, x: torch.Tensor, *labels, batch_size: int | None = None, num_data: int | None = None,
              temperature: float | None = None, prefix: str = ""):
        """Recognition model :math:`q(h \\mid x) = \\prod_l q(h_l \\mid h_{l-1})`.

        :param x: data ``[..., B, D]`` (leading dims allowed for dreamed particles).
        :param int batch_size: ignored (model and guide take the same keywords).
        :param int num_data: as in :meth:`model`.
        :param float temperature: Concrete relaxation, as in :meth:`model`.
        :param str prefix: as in :meth:`model`.
        :returns: the top layer's sample ``[..., B, H_L]``.
        :raises DataError: bad ``x`` (see :meth:`check_data`; an empty batch included) or ``num_data``, or a
            positional argument after ``x`` (see :meth:`model`).
        :raises ConfigError: as :meth:`model`.
        """
        check_no_extra_arguments(labels, model="SigmoidBeliefNet", method="guide", keywords=_KEYWORDS)
        prefix = site_prefix(prefix, "SigmoidBeliefNet.guide")
        self._check_temperature(temperature)
        x = self.check_data(x)
        h = x
        with self._plate(x.shape[-2], num_data, prefix):
            for l in range(1, self.num_layers + 1):
                below = h if l == 1 else self._unit_values(h, temperature)
                h = pyro.sample(f"{prefix}h{l}", self._latent(self.encoders[l - 1](below), temperature))
        return h

    def forward(self, x: torch.Tensor | None = None, **kwargs):
        return self.model(x, **kwargs)

    @isolated_from_handlers
    @own_param_store
    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Ancestral samples of the visible units, ``[num_samples, D]``.

        A prior draw whatever handlers the caller runs under: the model runs as a program of its own
        (:func:`~hybridpgm.handler_scope.isolated_from_handlers`), so an outer ``poutine.condition`` does not
        condition it and an outer trace records none of its sites."""
        n = sample_count(num_samples, "SigmoidBeliefNet.sample num_samples")
        return self.model(None, batch_size=max(n, 1))[:n]  # a Pyro plate cannot be empty

    # -------------------------------------------------------------- evaluation
    @isolated_from_handlers
    @own_param_store
    def log_likelihood(self, x: torch.Tensor, num_samples: int = 1000, chunk_size: int = 100) -> torch.Tensor:
        """Importance-sampled :math:`\\log p(x)` with the recognition network as proposal.

        See :func:`hybridpgm.infer.particle_elbo.importance_log_likelihood`.  Isolated from the caller's
        effect handlers (:func:`~hybridpgm.handler_scope.isolated_from_handlers`).

        :param x: ``[B, D]`` binary data; an empty batch gives an empty result.
        :returns: ``[B]``.
        :raises DataError: bad ``x`` (see :meth:`check_data`), or ``x`` not two-dimensional.
        """
        from hybridpgm.infer.particle_elbo import importance_log_likelihood

        x = self._check_rows(x, "log_likelihood")
        if not x.shape[0]:
            return x.new_zeros(0)
        return importance_log_likelihood(self.model, self.guide, x, num_samples=num_samples,
                                         chunk_size=chunk_size, plate_name="data", max_plate_nesting=1)

    def enumerated_model(self, x: torch.Tensor, *, prefix: str = ""):
        """The same model with each hidden layer as one ``Categorical`` site over its
        :math:`2^{H_l}` joint states, marked for parallel enumeration, so that
        ``TraceEnum_ELBO`` (with an empty guide) or :meth:`exact_log_likelihood`
        sums the hidden layers out exactly.  Under ``TraceEnum_ELBO`` the whole batch is one enumerated tensor
        of :math:`2^{H_1} B D` elements (:meth:`exact_log_likelihood` chunks the rows; a training batch is
        the caller's to size).

        :param x: ``[B, D]`` binary data.
        :param str prefix: as in :meth:`model` (sites ``prefix + "h1"``, ..., ``prefix + "x"``, plate
            ``prefix + "data"``).
        :raises DataError: bad ``x`` (see :meth:`check_data`; an empty batch included), or ``x`` not
            two-dimensional.
        :raises ConfigError: a model too wide to enumerate (see :meth:`exact_log_likelihood`), or a ``prefix``
            that is not a string.
        """
        prefix = site_prefix(prefix, "SigmoidBeliefNet.enumerated_model")
        x = self._check_rows(x, "enumerated_model")
        if not x.shape[0]:
            self._plate(0, None)  # raises: a plate cannot be empty
        self._check_enumerable()
        L = self.num_layers
        # the joint states of the hidden layers only (``states[l]`` for ``h_l``): the visible layer is observed,
        # never enumerated (its 2**D states overflowed for a wide visible layer)
        states = [None] + [binary_states(self.layer_sizes[l], x) for l in range(1, L + 1)]
        with pyro.plate(prefix + "data", x.shape[-2], dim=-1):
            logits = self.prior_logits.unsqueeze(0)
            s = pyro.sample(f"{prefix}h{L}", dist.Categorical(logits=bernoulli_state_logits(logits, states[L])),
                            infer={"enumerate": "parallel"})
            h = states[L][s]
            for l in range(L, 1, -1):
                table = bernoulli_state_logits(self.decoders[l - 1](h), states[l - 1])
                s = pyro.sample(f"{prefix}h{l - 1}", dist.Categorical(logits=table),
                                infer={"enumerate": "parallel"})
                h = states[l - 1][s]
            pyro.sample(prefix + "x", dist.Bernoulli(logits=self.decoders[0](h)).to_event(1), obs=x)

    def _check_rows(self, x: torch.Tensor, method: str) -> torch.Tensor:
        """:meth:`check_data`, and ``x`` must be ``[B, D]`` (these methods take no leading dimensions)."""
        x = self.check_data(x)
        if x.dim() != 2:
            raise DataError(f"SigmoidBeliefNet.{method} expects x of shape [B, {self.layer_sizes[0]}], "
                            f"got {tuple(x.shape)}")
        return x

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
                f"hybridpgm.generative.sbn.MAX_ENUM_ELEMENTS={MAX_ENUM_ELEMENTS}; use log_likelihood() "
                f"(importance sampling) instead, or raise that limit")
        return per_row

    @isolated_from_handlers
    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x) = \\log \\sum_{h} p(x, h)` per datapoint.

        Runs :meth:`enumerated_model` under ``poutine.enum`` and contracts the
        enumerated layers with Pyro's tensor-variable elimination
        (``pyro.ops.contract``), keeping the data plate.  Cost grows as
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

        :param x: ``[B, D]`` binary data; an empty batch gives an empty result.
        :returns: ``[B]``.
        :raises DataError: bad ``x`` (see :meth:`check_data`), or ``x`` not two-dimensional.
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
        """:meth:`exact_log_likelihood` of one chunk of rows ``[B, D]`` (checked), in one enumerated pass."""
        enum_model = poutine.enum(self.enumerated_model, first_available_dim=-2)
        trace = poutine.trace(enum_model).get_trace(x)
        trace.compute_log_prob()
        trace.pack_tensors()
        data_symbol = trace.plate_to_symbol["data"]
        tree: OrderedDict = OrderedDict()
        sum_dims = set()
        for site in trace.nodes.values():
            if site["type"] != "sample":
                continue
            term = site["packed"]["log_prob"]
            ordinal = frozenset(trace.plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized)
            tree.setdefault(ordinal, []).append(term)
            sum_dims.update(set(term._pyro_dims) - ordinal)
        # a one-row batch: pack_tensors drops the size-1 data dim, so no term names its symbol, and the contraction
        # cannot keep it (pyro.ops.contract raised KeyError); the whole sum is that row's log p(x)
        target = frozenset({data_symbol}) if x.shape[-2] > 1 else frozenset()
        result = contract_to_tensor(tree, sum_dims, target_ordinal=target)
        return result.expand(x.shape[-2])
