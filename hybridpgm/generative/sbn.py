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
Pyro's own inference (``TraceGraph_ELBO``, ``ReweightedWakeSleep``) runs on them.  The exact
:math:`\\log p(x)` of small nets, by enumerating the hidden layers, is the mixin
:class:`~hybridpgm.generative.sbn_exact.SBNExactLikelihood`; ancestral samples and the importance-sampled
:math:`\\log p(x)` the mixin :class:`~hybridpgm.generative.sbn_evaluation.SBNEvaluation`.

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

from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, pyro_method
from pyro.distributions.torch_distribution import TorchDistributionMixin
from torch import nn
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli as _TorchLogitRelaxedBernoulli

from hybridpgm.batch_shapes import refuse_one_example
from hybridpgm.checks import as_integer, check_device, flag, module_name, positive_int, positive_real, site_prefix
from hybridpgm.checks import layer_sizes as _layer_sizes
from hybridpgm.data.validation import as_model_dtype, check_no_extra_arguments, check_num_data
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.keyword_alias import keyword_only_soon
# the exact enumeration part; the names stay importable from here (the budgets are read from sbn_exact)
from hybridpgm.generative.sbn_exact import (MAX_ENUM_ELEMENTS, MAX_ENUM_STATES, SBNExactLikelihood,  # noqa: F401
                                            bernoulli_state_logits, binary_states)
# ancestral samples and the importance-sampled log p(x), run with autocast off
from hybridpgm.generative.sbn_evaluation import SBNEvaluation
from hybridpgm.module_registration import frozen_aware_module
from hybridpgm.options import PARAMETERS_BUILT, Option
from hybridpgm.param_store_scope import frozen_aware_parameter
from hybridpgm.plate_dims import refuse_caller_plate
from hybridpgm.serialization import serializable
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["SigmoidBeliefNet"]

#: the keyword options of :meth:`SigmoidBeliefNet.model` and ``guide``, named when positional ones are refused
_KEYWORDS = "batch_size=..., num_data=..., temperature=..."

#: the methods that take one example ``[D]`` (and any batch shape ``[..., D]``), named by the refusal of one example
_EVALUATION = "log_likelihood and exact_log_likelihood"


class LogitRelaxedBernoulli(_TorchLogitRelaxedBernoulli, TorchDistributionMixin):
    """Concrete relaxation of a Bernoulli in logit space [5] (torch's, made a reparameterized Pyro distribution)."""

    has_rsample = True


@serializable
class SigmoidBeliefNet(SBNExactLikelihood, SBNEvaluation, PyroModule):
    """A sigmoid belief net with a recognition network, as one ``PyroModule``.

    Sample sites: ``"h{L}"``, ..., ``"h1"`` (latent, ``[B, H_l]``) and ``"x"``
    (observed, ``[B, D]``), all inside ``pyro.plate("data")``; with the ``prefix`` keyword of :meth:`model`,
    :meth:`guide` and :meth:`enumerated_model`, ``prefix + "h1"``, ... inside ``pyro.plate(prefix + "data")``.

    :param layer_sizes: ``(D, H_1, ..., H_L)``: visible size first, top layer last.
    :param bool validate_data: check that data are binary and of the right shape (the attribute may be changed
        later; ``layer_sizes`` is fixed).
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

    prior_logits = frozen_aware_parameter("prior_logits", """Logits :math:`b_L` of the factorized prior over the top
        layer, ``[H_L]`` (a parameter frozen by ``requires_grad_(False)`` stays frozen under ``fit`` and Pyro: see
        :func:`~hybridpgm.param_store_scope.frozen_aware_parameter`).""")

    decoders = frozen_aware_module("decoders", """``decoders[l-1]``: :math:`h_l \\to` logits of layer ``l-1``
        (``l = 1..L``), a :class:`~torch.nn.ModuleList` of ``Linear`` layers; a part frozen by
        ``requires_grad_(False)`` is left out of Pyro's param store without a warning
        (:func:`~hybridpgm.module_registration.frozen_aware_module`).""")
    encoders = frozen_aware_module("encoders", """``encoders[l-1]``: :math:`h_{l-1} \\to` logits of
        :math:`q(h_l \\mid h_{l-1})`; frozen parts as for ``decoders``.""")

    layer_sizes = Option(fixed=PARAMETERS_BUILT, doc="""``[D, H_1, ..., H_L]`` (fixed: it decides the parameters'
        shapes; build a new net for other sizes).""")
    num_layers = Option(fixed=PARAMETERS_BUILT, doc="""``L``, the number of hidden layers (fixed, as
        ``layer_sizes``).""")
    validate_data = Option(
        lambda sbn, value: flag(value, "SigmoidBeliefNet validate_data", error=ModelSpecError),
        """Whether data are checked (binary, the right shape), read at each call.  Assigning checks the value as
        the constructor does and :func:`hybridpgm.save` records it.

        :raises ModelSpecError: (on assignment) a value that is not ``True`` or ``False``.""")

    @keyword_only_soon("validate_data", "name")
    def __init__(self, layer_sizes: Sequence[int], *, validate_data: bool = True, name: str = ""):
        super().__init__(module_name(name, "SigmoidBeliefNet"))
        if isinstance(layer_sizes, Sequence) and not isinstance(layer_sizes, str) and len(layer_sizes) < 2:
            raise ModelSpecError(f"layer_sizes needs the visible size and at least one hidden layer, "
                                 f"got {list(layer_sizes)}")
        sizes = _layer_sizes(layer_sizes, "SigmoidBeliefNet layer_sizes", error=ModelSpecError)
        self.layer_sizes = sizes
        self.num_layers = len(sizes) - 1
        self.validate_data = validate_data  # checked by its setter
        self.prior_logits = nn.Parameter(torch.zeros(sizes[-1]))
        self.decoders = nn.ModuleList(nn.Linear(sizes[l], sizes[l - 1]) for l in range(1, len(sizes)))
        self.encoders = nn.ModuleList(nn.Linear(sizes[l - 1], sizes[l]) for l in range(1, len(sizes)))

    # ---------------------------------------------------------------- helpers
    @property
    def latent_sites(self) -> list[str]:
        """Names of the latent sample sites, bottom-up: ``["h1", ..., "hL"]``; :meth:`model` and :meth:`guide`
        called with ``prefix=`` name them ``prefix + "h1"``, ... (as :class:`~hybridpgm.infer.NVIL`'s default
        ``sites`` do, see :func:`~hybridpgm.infer.nvil.default_sites`)."""
        return [f"h{l}" for l in range(1, self.num_layers + 1)]

    def model_parameters(self) -> list[nn.Parameter]:
        """Generative parameters :math:`\\theta` (prior logits and decoders)."""
        return [self.prior_logits, *self.decoders.parameters()]

    def guide_parameters(self) -> list[nn.Parameter]:
        """Recognition parameters :math:`\\phi` (the encoders)."""
        return list(self.encoders.parameters())

    def check_data(self, x: torch.Tensor) -> torch.Tensor:
        """Validate ``x`` and return it in the model's dtype, converted by the rule of
        :func:`hybridpgm.data.validation.as_model_dtype` (bool and integers exactly; float64 data for a float32
        model are refused).

        :param x: data ``[..., B, D]``, binary (the values are checked when ``validate_data`` is on).
        :raises DataError: naming the expected and actual shape (one example ``[D]`` without the batch
            dimension: the message shows ``x[None]``), or the bad values (inside :func:`hybridpgm.fit`'s step the
            value check joins the step's one host read).
        :raises DeviceError: ``x`` is not on the parameters' device.
        """
        if not isinstance(x, torch.Tensor):
            raise DataError(f"SigmoidBeliefNet data must be a tensor [B, {self.layer_sizes[0]}], "
                            f"got {type(x).__name__}")
        d = self.layer_sizes[0]
        refuse_one_example(x, d, "SigmoidBeliefNet site 'x'", _EVALUATION)
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
            check_or_defer(binary.all(), not_binary, "SigmoidBeliefNet site 'x' holds values other than 0 and 1")
            x = torch.where(binary, x, 0.0)
        return x

    def _plate(self, batch: int, num_data: int | None, prefix: str = "", what: str = "SigmoidBeliefNet.model"):
        if not batch:
            raise DataError("SigmoidBeliefNet site 'x' got an empty batch (0 rows): a Pyro plate needs at least "
                            "one row")
        refuse_caller_plate(what, prefix + "data")  # ModelSpecError inside a caller's plate at dim -1
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

            check_or_defer((torch.isfinite(shown) & (shown > 0)).all(), not_positive,
                           "SigmoidBeliefNet temperature is not finite and > 0", ConfigError, about_data=False)
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

        :param x: observed data ``[B, D]`` (one example ``[D]`` is refused: pass ``x[None]``), or ``None`` to dream
            ``batch_size`` samples.
        :param int batch_size: with ``x=None``, the number of rows to dream (default ``1``); with ``x`` it must
            be ``None`` or ``B``.
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
            ``temperature`` is not a finite positive number, or ``prefix`` is not a string; a ``batch_size``
            that contradicts the rows of ``x``.
        :raises ModelSpecError: called inside a caller's plate at dim ``-1``, where the model opens its own
            (:func:`~hybridpgm.plate_dims.refuse_caller_plate`; "Two models in one program", docs/pyro_native.md).
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
            decoders = self.decoders  # registered once, not once per layer (quadratic in L)
            for l in range(L, 0, -1):
                logits = decoders[l - 1](self._unit_values(h, t))
                if l > 1:
                    h = pyro.sample(f"{prefix}h{l - 1}", self._latent(logits, t))
                else:
                    h = pyro.sample(prefix + "x", dist.Bernoulli(logits=logits).to_event(1), obs=x)
        return h

    @pyro_method
    def guide(self, x: torch.Tensor, *labels, batch_size: int | None = None, num_data: int | None = None,
              temperature: float | None = None, prefix: str = ""):
        """Recognition model :math:`q(h \\mid x) = \\prod_l q(h_l \\mid h_{l-1})`.

        :param x: data ``[..., B, D]`` (leading dims allowed for dreamed particles; one example ``[D]`` is refused:
            pass ``x[None]``).
        :param int batch_size: ignored (model and guide take the same keywords).
        :param int num_data: as in :meth:`model`.
        :param float temperature: Concrete relaxation, as in :meth:`model`.
        :param str prefix: as in :meth:`model`.
        :returns: the top layer's sample ``[..., B, H_L]``.
        :raises DataError: bad ``x`` (see :meth:`check_data`; an empty batch included) or ``num_data``, or a
            positional argument after ``x`` (see :meth:`model`).
        :raises ConfigError: as :meth:`model`.
        :raises ModelSpecError: as :meth:`model`.
        """
        check_no_extra_arguments(labels, model="SigmoidBeliefNet", method="guide", keywords=_KEYWORDS)
        prefix = site_prefix(prefix, "SigmoidBeliefNet.guide")
        self._check_temperature(temperature)
        x = self.check_data(x)
        h = x
        with self._plate(x.shape[-2], num_data, prefix, "SigmoidBeliefNet.guide"):
            encoders = self.encoders  # registered once, not once per layer (quadratic in L)
            for l in range(1, self.num_layers + 1):
                below = h if l == 1 else self._unit_values(h, temperature)
                h = pyro.sample(f"{prefix}h{l}", self._latent(encoders[l - 1](below), temperature))
        return h

    def forward(self, x: torch.Tensor | None = None, **kwargs):
        """:meth:`model`: ``self(x, **kwargs)`` is ``self.model(x, **kwargs)``.

        :param x: observed data ``[B, D]``, or ``None`` (see :meth:`model`, which takes ``kwargs``)."""
        return self.model(x, **kwargs)

    def _check_rows(self, x: torch.Tensor, method: str) -> torch.Tensor:
        """:meth:`check_data`, and ``x`` must be ``[B, D]`` (the Pyro programs take no leading dimensions; the
        evaluation methods flatten them into rows before they get here)."""
        x = self.check_data(x)
        if x.dim() != 2:
            raise DataError(f"SigmoidBeliefNet.{method} expects x of shape [B, {self.layer_sizes[0]}], "
                            f"got {tuple(x.shape)}")
        return x
