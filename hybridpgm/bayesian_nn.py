"""Bayesian neural networks: Gaussian weight priors on any torch module, and
MC dropout as the cheap alternative.

:func:`bayesianize` turns every parameter :math:`w` of a module into a latent
variable with prior :math:`w \\sim \\mathcal N(0, s^2 I)` (a
:class:`~pyro.nn.PyroSample` of a :class:`~pyro.nn.PyroModule`), so the module's
forward pass becomes a Pyro program that samples its weights [1].
:class:`BayesianRegressor` adds a Gaussian likelihood under a subsampled data
plate; with an autoguide (e.g. :class:`~pyro.infer.autoguide.AutoNormal`,
mean-field Bayes by backprop [2]) it trains through :func:`hybridpgm.fit`.

MC dropout [3] keeps dropout on at test time: the spread of
:math:`T` stochastic forward passes approximates a variational posterior
predictive (:func:`mc_dropout_predict`).

References:

1. R. M. Neal, *Bayesian Learning for Neural Networks*, 1996; D. J. C. MacKay,
   *A Practical Bayesian Framework for Backpropagation Networks*, 1992.
2. C. Blundell, J. Cornebise, K. Kavukcuoglu, D. Wierstra, *Weight Uncertainty
   in Neural Networks*, ICML 2015.
3. Y. Gal, Z. Ghahramani, *Dropout as a Bayesian Approximation: Representing
   Model Uncertainty in Deep Learning*, ICML 2016.
"""

from __future__ import annotations

import copy
from typing import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoCallable, AutoGuide
from pyro.nn import PyroModule, PyroSample
from pyro.nn.module import to_pyro_module_
from torch import nn

from hybridpgm.bayesian_nn_dtypes import WeightDtypes
from hybridpgm.bayesian_nn_plates import apply_under_plates, place_data_dim, vectorized_plates
from hybridpgm.checks import generator_or_none, module_name, positive_int, positive_real
from hybridpgm.data.validation import as_model_dtype, defer_finite
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.handler_scope import isolated_from_handlers
from hybridpgm.module_modes import keeping_modes
from hybridpgm.network_checks import refuse_uninitialized
from hybridpgm.param_store_scope import frozen_aware_parameter, modules_own_their_params
from hybridpgm.rng_scope import seeded_from_generator, seeded_globally_from

# NB: no import of hybridpgm.nn here -- it re-exports bayesianize (import cycle).

__all__ = ["BayesianRegressor", "bayesianize", "mc_dropout_predict", "predictive_samples"]


class _WeightPrior:
    """The prior :math:`\\mathcal N(0, s^2 I)` of one weight of shape ``weight_shape``, as a
    :class:`~pyro.nn.PyroSample` calls it: ``prior(module)``, :math:`s` the module's ``_prior_scale`` buffer
    (so the distribution follows the module's device and dtype).

    A class of this module rather than a closure, so that a bayesianized network pickles (a ``spawn`` or
    ``forkserver`` child, ``MCMC(..., num_chains=4, mp_context="spawn")``, :func:`torch.save`).  An instance has no
    ``__name__``, so :class:`~pyro.nn.PyroSample` renames nothing.  :func:`hybridpgm.save` reads ``weight_shape`` to
    rebuild the network.

    :param shape: the weight's shape."""

    def __init__(self, shape: torch.Size | tuple[int, ...]):
        self.weight_shape = tuple(shape)

    def __call__(self, module: PyroModule) -> dist.Distribution:
        scale = module._prior_scale  # a buffer: follows the module's device and dtype
        shape = torch.Size(self.weight_shape)
        return dist.Normal(scale.new_zeros(()), scale).expand(shape).to_event(len(shape))

    def __repr__(self) -> str:
        return f"_WeightPrior(weight_shape={self.weight_shape})"


def bayesianize(module: nn.Module, prior_scale: float = 1.0) -> PyroModule:
    """A copy of ``module`` whose parameters are latent with Gaussian priors.

    .. math:: w_j \\sim \\mathcal N(0, s^2) \\quad \\text{for every entry of every parameter.}

    The copy is a :class:`~pyro.nn.PyroModule` (converted in place with
    :func:`pyro.nn.module.to_pyro_module_`); each call of its ``forward``
    samples the weights at sites named after the parameters
    (``"0.weight"``, ``"0.bias"``, ...).  Buffers (batch-norm statistics) stay
    deterministic.  The original module is not modified.

    :param module: any torch module.
    :param float prior_scale: :math:`s > 0`, finite.
    :returns: the Bayesian copy.
    :raises ModelSpecError: ``module`` is not a module or has no parameters, holds a lazy module's parameters
        that nothing has initialised (their shapes, which the priors take, are unknown), a parameter is shared by
        several sub-modules (tied weights: each would get its own sample site, untying them; the message
        names every path of it), ``module`` holds an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (its forward reads its
        weights from a flat list, not its attributes: the message names the layer and its cell, which works),
        or ``prior_scale`` is not a finite number > 0 (``bool`` and strings refused).

    >>> net = bayesianize(torch.nn.Linear(3, 1), prior_scale=1.0)
    >>> with pyro.poutine.trace() as tr:
    ...     _ = net(torch.zeros(2, 3))
    >>> sorted(n for n in tr.trace.nodes if tr.trace.nodes[n]["type"] == "sample")
    ['bias', 'weight']
    """
    if not isinstance(module, nn.Module):
        raise ModelSpecError(f"bayesianize needs a torch.nn.Module, got {type(module).__name__}")
    prior_scale = positive_real(prior_scale, "bayesianize prior_scale", error=ModelSpecError)
    if not any(True for _ in module.parameters()):
        raise ModelSpecError(f"{type(module).__name__} has no parameters to put priors on")
    refuse_uninitialized(module, f"the network given to bayesianize ({type(module).__name__})")  # shapes unknown
    _refuse_shared_parameters(module)
    _refuse_recurrent_layers(module)
    net = copy.deepcopy(module)
    to_pyro_module_(net)
    for sub in net.modules():
        params = list(sub.named_parameters(recurse=False))
        if not params:
            continue
        reference = params[0][1]
        sub.register_buffer("_prior_scale", torch.tensor(float(prior_scale), dtype=reference.dtype,
                                                         device=reference.device))
        for name, param in params:
            delattr(sub, name)
            setattr(sub, name, PyroSample(_WeightPrior(param.shape)))
    return net


def _refuse_recurrent_layers(module: nn.Module) -> None:
    """Raise :class:`ModelSpecError` naming an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` of ``module``: its forward reads
    its weights from a flat list that it keeps for cuDNN (``_flat_weights``), not from its attributes, so a
    :class:`~pyro.nn.PyroSample` in place of a weight would never be sampled (and torch's ``__setattr__`` of
    these layers refuses one: ``AttributeError: ... no attribute '_flat_weights'``)."""
    for path, layer in module.named_modules():
        if isinstance(layer, nn.RNNBase):
            kind = next((c.__name__ for c in (nn.LSTM, nn.GRU, nn.RNN) if isinstance(layer, c)), "RNN")
            name = type(layer).__name__
            where = f"the layer {path!r} ({name}) of {type(module).__name__}" if path else f"the {name} given"
            # torch.vmap (vectorized plates) has no batching rule for aten::lstm_cell; RNN/GRU cells fall back
            batched = " (one draw at a time: torch.vmap, which vectorized plates use, cannot batch it)" * (
                kind == "LSTM")
            raise ModelSpecError(f"bayesianize: {where} is a recurrent layer of torch whose forward reads its weights "
                                 f"from a flat list kept for cuDNN, not from its attributes: a prior on them would "
                                 f"never be sampled. Loop over the time steps with nn.{kind}Cell, which reads its "
                                 f"weights as attributes{batched}, or write the recurrence with nn.Linear layers")


def _refuse_shared_parameters(module: nn.Module) -> None:
    """Raise :class:`ModelSpecError` naming the paths of a parameter that ``module`` holds under several names."""
    paths: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        paths.setdefault(id(param), []).append(name)
    shared = [names for names in paths.values() if len(names) > 1]
    if shared:
        tied = "; ".join(" and ".join(repr(n) for n in names) for names in shared)
        raise ModelSpecError(f"bayesianize: {type(module).__name__} shares a parameter between {tied} (tied "
                             "weights); each path would get its own prior and sample site, untying them. "
                             "Give each layer its own parameter, or write the Pyro model with one sample site "
                             "used by both layers")


class BayesianRegressor(PyroModule):
    """Regression with a Bayesian network: :math:`y_i \\sim \\mathcal N(f_w(x_i), \\sigma^2)`,
    :math:`w \\sim \\mathcal N(0, s^2 I)`, with a learned noise :math:`\\sigma`.

    :param net: a network mapping ``B x D`` to ``B x 1`` (or ``B``); bayesianized here.
    :param int num_data: ``N``, the training set size (scales the mini-batch likelihood).
    :param float prior_scale: :math:`s`.
    :param float noise: initial :math:`\\sigma`.
    :param str name: the :class:`~pyro.nn.PyroModule` name, keyword-only, so that two regressors can share one Pyro
        program (see :doc:`/pyro_native`): with ``name="left"`` the weight sites are ``"left.net.weight"``, ...,
        the noise parameter ``"left.raw_noise"`` in Pyro's global param store, the data plate ``"left.data"`` and
        the likelihood site ``"left.y"``.  ``""`` (the default): ``"net.weight"``, ``"raw_noise"``, ``"data"`` and
        ``"y"``.  Held as an attribute of a :class:`~pyro.nn.PyroModule`, the regressor's weights and noise are
        named by that attribute (Pyro's rule, ``"<attribute>.net.weight"``) and its plate and likelihood by
        ``name``.
    :raises ModelSpecError: ``num_data`` is not a positive integer, or ``noise`` or ``prior_scale``
        is not a finite number > 0, or ``name`` is not a string or holds ``"$$$"``.

    It is an ordinary vectorisable Pyro model: ``Trace_ELBO(num_particles=P, vectorize_particles=True)``,
    ``Predictive(..., parallel=True)`` and ``arviz.from_pyro`` over an MCMC run (its ``log_likelihood`` group,
    for ``az.loo``) give what the draws run one at a time give (see :meth:`forward`).

    Training: the data plate of a batch of ``B`` rows is a subsample of the ``N = num_data`` training rows, its
    likelihood scaled by ``N / B``, so the loss is already an unbiased estimate of the full-data negative ELBO
    :math:`\\mathrm{KL}(q(w) \\| p(w)) - \\frac{N}{B} \\sum_{i=1}^{B} \\mathbb E_q \\log p(y_i \\mid x_i, w)`.  Train
    it with ``SVIObjective(model, guide, per_example=False)``: the default ``per_example=True`` would divide that
    estimate by ``B`` once more (the update then changing with the batch size and ``fit``'s ``accumulate``),
    and :class:`~hybridpgm.infer.SVIObjective` refuses it with a :class:`~hybridpgm.errors.ConfigError`:

    >>> import hybridpgm
    >>> from pyro.infer.autoguide import AutoNormal
    >>> model = BayesianRegressor(torch.nn.Linear(2, 1), num_data=64)
    >>> x, y = torch.randn(64, 2), torch.randn(64)
    >>> result = hybridpgm.fit(hybridpgm.SVIObjective(model, AutoNormal(model), per_example=False), (x, y),
    ...                        batch_size=16, epochs=1, progress=False, seed=0)

    :func:`hybridpgm.save` writes the model (the network's layers when they are standard torch layers, as in
    :func:`~hybridpgm.nn.mlp`, the prior scale, the noise, batch-norm statistics); the posterior is the guide's,
    saved beside it as its state dict and loaded into a guide of the loaded model once that guide has run:

    >>> import os, tempfile
    >>> from pyro.infer.autoguide import AutoNormal
    >>> model = BayesianRegressor(torch.nn.Linear(2, 1), num_data=4)
    >>> guide = AutoNormal(model)
    >>> x, y = torch.zeros(4, 2), torch.zeros(4)
    >>> with pyro.get_param_store().scope():
    ...     _ = guide(x, y)
    ...     state = guide.state_dict()
    >>> path = hybridpgm.save(model, os.path.join(tempfile.mkdtemp(), "regressor.pt"))
    >>> loaded = hybridpgm.load(path)
    >>> with pyro.get_param_store().scope():
    ...     restored = AutoNormal(loaded)
    ...     _ = restored(x, y)
    ...     _ = restored.load_state_dict(state)
    """

    raw_noise = frozen_aware_parameter("raw_noise", """:math:`\\log \\sigma`, a scalar parameter (frozen by
        ``requires_grad_(False)``, it stays frozen under ``fit`` and Pyro: see
        :func:`~hybridpgm.param_store_scope.frozen_aware_parameter`).""")

    #: the constructor's ``name``, which names the plate and the likelihood (a supermodule renames ``_pyro_name``
    #: only); a class-level default for regressors pickled before it existed
    _module_name = ""

    def __init__(self, net: nn.Module, num_data: int, prior_scale: float = 1.0, noise: float = 0.1, *,
                 name: str = ""):
        super().__init__(module_name(name, "BayesianRegressor"))
        self._module_name = name
        num_data = positive_int(num_data, "BayesianRegressor num_data", error=ModelSpecError)
        noise = positive_real(noise, "BayesianRegressor noise", error=ModelSpecError)
        self.net = bayesianize(net, prior_scale)
        self.num_data = num_data
        like = next(net.parameters())  # bayesianize refuses a net without parameters
        # the network's device and dtype (a float64 network: 0.1 is not rounded to float32)
        self.raw_noise = nn.Parameter(torch.tensor(float(noise), dtype=like.dtype, device=like.device).log())

    @property
    def noise(self) -> torch.Tensor:
        return self.raw_noise.exp()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pyro model.  ``x`` is ``B x D``, ``y`` ``B`` (or ``None`` to sample), the site ``"y"`` in the plate
        ``"data"`` (``"<name>.y"``, ``"<name>.data"`` for a regressor of a ``name``).
        Returns the network output ``B`` for the sampled weights.  With ``y``, the batch is a mini-batch of
        the ``N = num_data`` training rows and its likelihood is scaled by ``N / B``; without, ``B`` may
        exceed ``N`` (predictions on a test grid).

        Inside vectorized plates (``vectorize_particles=True``, ``Predictive(..., parallel=True)``, which
        ``arviz.from_pyro`` runs for its log-likelihood, a plate of the caller's) each weight is drawn with the
        plates' batch shape :math:`E` (``(P, 1)`` for ``P`` particles at dim ``-2``) and the network runs once
        per draw (:func:`~hybridpgm.bayesian_nn_plates.apply_under_plates`, :func:`torch.vmap`): the output and
        the site ``"y"`` have :math:`E`'s sizes with ``B`` at the data plate's dim (``P x B``), each draw's row
        the one the draw gives run alone.  A batch norm of the network must then be in eval mode.

        :raises DataError: ``x`` is not a tensor with a batch dimension, has no rows (``B = 0``: the data plate
            has no mini-batch to scale), holds more rows than ``num_data`` while ``y`` is given, or NaN/inf;
            ``y`` does not match ``x`` or holds NaN/inf; ``x`` or ``y`` has a dtype the network's weights do not
            take exactly (:func:`~hybridpgm.data.validation.as_model_dtype`: ``bool``, integers within
            :math:`\\pm 2^p` and narrower floats are converted; float64 data for float32 weights are refused); a
            weight site is given a draw of another floating dtype than the network's (a guide not cast with the
            model: :class:`~hybridpgm.bayesian_nn_dtypes.WeightDtypes`).
        :raises ModelSpecError: the network's output is not ``B`` or ``B x 1`` (for a 1-D ``x`` the message says
            that one example's batch dimension may be missing); inside vectorized plates, a weight's draw does not
            have the plates' batch shape or a batch norm of the network is in training mode."""
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else f"a {type(x).__name__}"
            raise DataError(f"BayesianRegressor x: got {got}, expected a tensor of shape (batch, features)")
        if x.shape[0] == 0:
            raise DataError(f"BayesianRegressor x has shape {tuple(x.shape)}: no rows; it needs at least one (a "
                            f"mini-batch of none has no likelihood to scale)")
        if y is not None and x.shape[0] > self.num_data:
            raise DataError(f"BayesianRegressor x holds {x.shape[0]} training rows, more than num_data="
                            f"{self.num_data} (the training set size given to the constructor)")
        if y is not None and not isinstance(y, torch.Tensor):
            raise DataError(f"BayesianRegressor y is a {type(y).__name__}, expected a tensor of shape ({x.shape[0]},)")
        if y is not None and (y.dim() != 1 or y.shape[0] != x.shape[0]):
            raise DataError(f"y has shape {tuple(y.shape)}, expected ({x.shape[0]},) to match x {tuple(x.shape)}")
        weights = next((b.dtype for n, b in self.net.named_buffers() if n.endswith("_prior_scale")), x.dtype)
        if weights.is_floating_point:  # the dtype rule: bool, exact integers, narrower floats converted
            x = as_model_dtype(x, weights, "BayesianRegressor x", defer=True)
            y = None if y is None else as_model_dtype(y, weights, "BayesianRegressor y", defer=True)
        defer_finite(x, "BayesianRegressor x")
        if y is not None:
            defer_finite(y, "BayesianRegressor y")
        frames = vectorized_plates()  # the weights take their dims: the network runs once per draw (vmap)
        with WeightDtypes(weights, "BayesianRegressor"):  # a guide's draws of another dtype: named, not torch's
            out, plates = apply_under_plates(self.net, x, frames) if frames else (self.net(x), ())
        per_draw = tuple(out.shape[len(plates):])
        if per_draw not in ((x.shape[0],), (x.shape[0], 1)):
            one = (f"; if x is one example of {x.shape[0]} features, its batch dimension is missing: give x[None] "
                   f"(x.unsqueeze(0))" if x.dim() == 1 else "")
            raise ModelSpecError(f"BayesianRegressor: the network maps x of shape {tuple(x.shape)} to "
                                 f"{per_draw}; it must give ({x.shape[0]},) or ({x.shape[0]}, 1){one}")
        mean = out.reshape(plates + (x.shape[0],))
        # a mini-batch of the N training rows is scaled by N / B; predictions (y None) at more points than
        # N have no training set to be a part of, and take a plate of their own size
        size = x.shape[0] if y is None and x.shape[0] > self.num_data else self.num_data
        prefix = f"{self._module_name}." if self._module_name else ""
        data = pyro.plate(prefix + "data", size, subsample_size=x.shape[0])
        with data:
            if frames:  # the rows at the data plate's dim, the weight draws at the caller's plates' dims
                mean = place_data_dim(mean, len(plates), data.dim)
                y = None if y is None else y.reshape((x.shape[0],) + (1,) * (-1 - data.dim))
            # unvalidated: NaN data reach the loss, and the deferred check names them before any update
            pyro.sample(prefix + "y", dist.Normal(mean, self.noise.to(mean.dtype), validate_args=False), obs=y)
        return mean


@isolated_from_handlers
@modules_own_their_params
def predictive_samples(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 100, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Network outputs under ``num_samples`` posterior draws of the guide,
    ``num_samples x B`` (the model's return value, via :class:`pyro.infer.Predictive`).  The model and guide
    run as programs of their own (:func:`~hybridpgm.handler_scope.isolated_from_handlers`): no handler of the
    caller sees or alters their sites.

    :param generator: a :class:`torch.Generator` for the draws; ``None`` draws from torch's global stream, as
        Pyro does (``pyro.set_rng_seed``).  Pyro's sample statements take no generator: the guide and model
        run with torch's global streams seeded from one draw of it and restored afterwards
        (:func:`~hybridpgm.rng_scope.seeded_globally_from`), so the outputs are a function of
        its state and the caller's streams (torch's, NumPy's, Python's) do not move.
    :raises ConfigError: ``num_samples`` is not a positive integer, ``generator`` is neither a
        :class:`torch.Generator` nor ``None``, or ``guide`` is a Pyro autoguide that has never run (no
        ``prototype_trace``, :class:`~pyro.infer.autoguide.AutoCallable` excepted: it has not been trained, so it
        holds no posterior; Pyro's :class:`~pyro.infer.Predictive` would draw from its initial values, or fail with
        a shape error of a network model).
    :raises ModelSpecError: the model returns ``None`` (there is no output to sample)."""
    num_samples = positive_int(num_samples, "predictive_samples num_samples")
    generator = generator_or_none(generator, "predictive_samples generator")
    # an AutoCallable wraps the user's own guide and never traces a prototype: it cannot be told unrun so
    if (isinstance(guide, AutoGuide) and not isinstance(guide, AutoCallable)
            and getattr(guide, "prototype_trace", None) is None):
        raise ConfigError(f"predictive_samples: the {type(guide).__name__} guide has never run, so it has no "
                          f"parameters and holds no posterior; train it first (hybridpgm.fit with an SVIObjective, "
                          f"or pyro.infer.SVI), or run it once on the data before loading a trained state dict")

    def returning(*args, **kwargs):
        out = model(*args, **kwargs)
        if out is None:  # else a bare TypeError from Predictive stacking the Nones
            name = getattr(model, "__qualname__", type(model).__name__)
            raise ModelSpecError(f"predictive_samples: the model {name} returned None; it must return the "
                                 "network output (a tensor of shape B, e.g. `return mean` at its end), which is "
                                 "what is sampled here. For its sample sites use pyro.infer.Predictive(model, "
                                 "guide=guide, num_samples=...) directly")
        return out

    predictive = pyro.infer.Predictive(returning, guide=guide, num_samples=num_samples, return_sites=["_RETURN"])
    with torch.no_grad(), seeded_globally_from(generator):  # no scope without a generator
        return predictive(x)["_RETURN"]


def mc_dropout_predict(module: nn.Module, x: torch.Tensor, num_samples: int = 100, *,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MC-dropout predictive mean and variance [3] of ``module`` at ``x``.

    Runs ``num_samples`` forward passes with the dropout layers in training
    mode and every other layer (batch norm, ...) in eval mode; afterwards every
    sub-module is back in the mode it was in.

    :param x: inputs ``B x ...``.
    :param generator: a :class:`torch.Generator` for the draws; ``None`` draws from torch's global stream.
        Dropout takes no generator: the passes run with torch's global streams seeded from one draw of it and
        restored afterwards (:func:`~hybridpgm.rng_scope.seeded_from_generator`).
    :returns: ``(mean, variance)``, each of the module's output shape (empty, without torch's warning, for an
        output of no entries, such as ``x`` of no rows).
    :raises ModelSpecError: if ``module`` has no dropout layer.
    :raises ConfigError: ``num_samples`` is not an integer >= 2 (one pass has no variance), or ``generator`` is
        neither a :class:`torch.Generator` nor ``None``.
    """
    num_samples = positive_int(num_samples, "mc_dropout_predict num_samples", minimum=2)
    generator = generator_or_none(generator, "mc_dropout_predict generator")
    dropouts = [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if not dropouts:
        raise ModelSpecError(f"{type(module).__name__} has no dropout layer; MC dropout needs one")
    with keeping_modes(module), torch.no_grad():  # each one's own mode after: a frozen batch norm stays frozen
        module.eval()
        for m in dropouts:
            m.train()
        with seeded_from_generator(generator, [module]):  # the dropouts' masks from the generator
            samples = torch.stack([module(x) for _ in range(num_samples)])
    if samples.numel() == 0:  # no rows: empty results (torch's var of no entries warns "degrees of freedom")
        return samples.sum(0), samples.sum(0)
    return samples.mean(0), samples.var(0)
