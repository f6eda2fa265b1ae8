r"""Deep Boltzmann machine: binary layers :math:`x_0 = v, x_1, \dots, x_L` with

.. math::

    E(x) = -\sum_{l=0}^{L} b_l^\top x_l - \sum_{l=0}^{L-1} x_l^\top W_l\, x_{l+1},
    \qquad p(x) = e^{-E(x)}/Z .

Each layer is conditionally independent given its neighbours, :math:`p(x_{l} = 1 \mid x_{l\pm1}) = \sigma(a_l)`,
:math:`a_l = b_l + x_{l-1}^\top W_{l-1} + W_l x_{l+1}`, so odd and even layers are updated in two Gibbs blocks and
either set can be summed out analytically (exact :math:`\log Z` and AIS use this).

Training [1]: the positive phase uses the fully factorised mean-field posterior
:math:`q(h \mid v) = \prod_l \prod_j \mu_{lj}^{h_{lj}} (1-\mu_{lj})^{1-h_{lj}}`, found by the fixed-point updates
:math:`\mu_l \leftarrow \sigma(b_l + \mu_{l-1}^\top W_{l-1} + W_l \mu_{l+1})`; the negative phase uses persistent
Gibbs chains (:class:`~hybridpgm.infer.PersistentCD` trains a DBM directly); layer-wise pretraining doubles the
inputs that a layer misses (see :mod:`hybridpgm.energy.doubled_rbm`).
The variational lower bound

.. math::

    \log p(v) \ge -E(v, \mu) + \sum_{l \ge 1} \mathcal H(\mu_l) - \log Z

uses :math:`\log Z` from AIS [1, 2] (or exact enumeration on small models); :math:`\log Z` and the
likelihoods are in :mod:`hybridpgm.energy.dbm_likelihood`.

References:

1. R. Salakhutdinov, G. Hinton, "Deep Boltzmann machines", AISTATS 2009.
2. R. Salakhutdinov, I. Murray, "On the quantitative analysis of deep belief networks", ICML 2008.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hybridpgm.autograd_scope import usable_with_grad
from hybridpgm.checks import (check_device, generator_keywords, generator_or_none, layer_sizes, positive_int,
                              positive_real, sample_count)
from hybridpgm.data.validation import as_model_dtype, check_unit_values
from hybridpgm.energy.dbm_likelihood import DBMLikelihood
from hybridpgm.energy.dbm_pretraining import DBMPretraining
from hybridpgm.energy.machine_options import DBMOptions
from hybridpgm.energy.rbm_chains import without_autocast
from hybridpgm.energy.sampling import bernoulli
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.infer.rounding_floor import rounding_floor
from hybridpgm.serialization import serializable
from hybridpgm.softplus import softplus
from hybridpgm.tensor_arguments import require_tensor
from hybridpgm.train.deferred_checks import reading_is_free

__all__ = ["DBM"]


@serializable
class DBM(DBMOptions, DBMLikelihood, DBMPretraining, nn.Module):
    """Deep Boltzmann machine with Bernoulli units.

    :math:`\\log Z`, :math:`\\log p(v)` and the mean-field bound come from
    :class:`~hybridpgm.energy.dbm_likelihood.DBMLikelihood`; greedy layer-wise pretraining (:meth:`pretrain`,
    :meth:`load_rbms`) from :class:`~hybridpgm.energy.dbm_pretraining.DBMPretraining`.

    :param sizes: layer sizes ``[V, H1, H2, ...]`` (at least two hidden layers
        for a *deep* BM; ``[V, H]`` is an RBM and is accepted).
    :param int mean_field_steps: fixed-point sweeps of the mean-field posterior.
    :param float init_scale: standard deviation of the initial weights.
    :param bool probabilities: accept visible data in ``[0, 1]``.  This and ``mean_field_steps`` may be changed
        later as attributes (checked, and saved with the model); ``sizes`` is fixed.
    :raises ModelSpecError: ``sizes`` is not a sequence of at least two positive integers (``bool`` and floats
        are refused), ``mean_field_steps`` is not a positive integer, ``init_scale`` is not a finite
        non-negative number, or ``probabilities`` is not ``True`` or ``False``.
    """

    def __init__(self, sizes: Sequence[int], *, mean_field_steps: int = 10, init_scale: float = 0.01,
                 probabilities: bool = False):
        super().__init__()
        sizes = layer_sizes(sizes, "DBM sizes [V, H1, ...]", error=ModelSpecError, minimum_length=2)
        self.mean_field_steps = mean_field_steps  # checked by the setters, as probabilities below
        init_scale = positive_real(init_scale, "DBM init_scale", error=ModelSpecError, allow_zero=True)
        self.probabilities, self.sizes = probabilities, sizes
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(a, b).mul_(init_scale))
                                        for a, b in zip(sizes, sizes[1:]))
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(s)) for s in sizes])

    @property
    def num_layers(self) -> int:
        """Number of hidden layers ``L``."""
        return len(self.sizes) - 1

    def extra_repr(self) -> str:
        """``sizes=[V, H1, ...]``, shown by ``repr``."""
        return f"sizes={self.sizes}"

    # ------------------------------------------------------------------ checks
    def check_parameters(self) -> None:
        """Raise :class:`ModelSpecError` naming the first parameter holding NaN/inf."""
        for name, param in self.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise ModelSpecError(f"DBM parameter {name!r} (shape {tuple(param.shape)}) has non-finite entries")

    def check_visible(self, v: torch.Tensor, name: str = "v") -> torch.Tensor:
        """Validate visible data and return it in the model's dtype, converted by the rule of
        :func:`hybridpgm.data.validation.as_model_dtype` (bool and integers exactly; float64 data for a float32
        model are refused).

        :param v: ``batch x V`` visible data (binary, or in ``[0, 1]`` with ``probabilities=True``).
        :param str name: what the error messages call ``v`` (default ``"v"``).
        :raises DataError: wrong last dimension or dtype, NaN/inf, or values that are not binary (outside
            ``[0, 1]`` with ``probabilities=True``); the value check costs one host read, and inside
            :func:`hybridpgm.fit`'s step none of its own (:func:`~hybridpgm.data.validation.check_unit_values`).
        :raises DeviceError: ``v`` is not on the device of the parameters."""
        require_tensor(v, f"DBM visible data {name!r}", arg=name)
        if v.dim() < 1 or v.shape[-1] != self.sizes[0]:
            raise DataError(f"DBM visible data {name!r} must have shape (..., {self.sizes[0]}), got {tuple(v.shape)}")
        check_device(v, self.weights[0], f"DBM visible data {name!r}")
        what = f"DBM visible data {name!r}"
        binary = v.dtype == torch.bool  # exactly 0/1: nothing to read
        v = as_model_dtype(v, self.weights[0].dtype, what)
        if not binary:
            check_unit_values(v, what, gaussian=False, probabilities=self.probabilities, model="DBM")
        return usable_with_grad(v)  # made under inference_mode, queried with grad on: a clone autograd can save

    def check_state(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Validate a state and return it in the model's dtype (the rule of
        :func:`~hybridpgm.data.validation.as_model_dtype`).

        :param x: the state ``[v, h1, ...]``, one ``batch x n_l`` tensor per layer, values in ``[0, 1]``.
        :raises DataError: not a list of one tensor per layer, a wrong width or dtype, batch shapes that
            do not broadcast, or values outside ``[0, 1]`` (NaN included).
        :raises DeviceError: a layer not on the device of the parameters."""
        if isinstance(x, torch.Tensor) or not isinstance(x, Sequence):
            what = f"a tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"DBM state must be a list of {len(self.sizes)} layer tensors [v, h1, ...], got {what}")
        if len(x) != len(self.sizes):
            raise DataError(f"DBM state must hold {len(self.sizes)} layers, got {len(x)}")
        out = []
        for l, (t, size) in enumerate(zip(x, self.sizes)):
            require_tensor(t, f"DBM layer {l}", arg=f"x[{l}]")
            if t.dim() < 1 or t.shape[-1] != size:
                raise DataError(f"DBM layer {l} must have shape (..., {size}), got {tuple(t.shape)}")
            check_device(t, self.weights[0], f"DBM layer {l}")
            out.append(usable_with_grad(as_model_dtype(t, self.weights[0].dtype, f"DBM layer {l}")))
        try:
            torch.broadcast_shapes(*(t.shape[:-1] for t in out))
        except RuntimeError:
            raise DataError(f"DBM state layers have batch shapes that do not match: "
                            f"{[tuple(t.shape) for t in out]}") from None
        for l, t in enumerate(out):
            if not bool(((t >= 0) & (t <= 1)).all()):
                raise DataError(f"DBM layer {l} must hold values in [0, 1] (NaN/inf refused)")
        return out

    # ------------------------------------------------------------- the maths
    def layer_logits(self, x: Sequence[torch.Tensor], l: int) -> torch.Tensor:
        """:math:`a_l = b_l + x_{l-1}^\\top W_{l-1} + W_l x_{l+1}` (``batch x n_l``) from the neighbours in ``x``.

        :param x: the layers ``[v, h1, ...]`` (each ``batch x n_l``; no checks).
        :param int l: the layer, ``0`` (visible) to ``L``."""
        a = self.biases[l]
        if l > 0:
            a = a + x[l - 1] @ self.weights[l - 1]
        if l < self.num_layers:
            a = a + x[l + 1] @ self.weights[l].T
        return a

    def energy(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        """:math:`E(x)`; returns ``batch``.

        :param x: the layers ``[v, h1, ...]``, each ``batch x n_l``.
        :raises DataError: a bad state (see :meth:`check_state`)."""
        return self._energy(self.check_state(x))

    def _energy(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        e = -sum(x[l] @ self.biases[l] for l in range(len(x)))
        for l in range(self.num_layers):
            e = e - ((x[l] @ self.weights[l]) * x[l + 1]).sum(-1)
        return e

    def _summed_out(self, x: Sequence[torch.Tensor], keep: int) -> torch.Tensor:
        """:math:`-\\log \\sum e^{-E}` over the layers of parity ``1 - keep`` given the others."""
        out = -sum(x[l] @ self.biases[l] for l in range(keep, len(self.sizes), 2))
        for l in range(1 - keep, len(self.sizes), 2):
            out = out - softplus(self.layer_logits(x, l)).sum(-1)
        return out

    @torch.no_grad()
    def mean_field(self, v: torch.Tensor, steps: int | None = None, tol: float = 1e-5) -> list[torch.Tensor]:
        """Mean-field posterior :math:`[v, \\mu_1, \\dots, \\mu_L]` (each ``batch x n_l``).

        Initialised by a bottom-up pass with doubled weights below the top layer [1], then ``steps`` sweeps
        updating odd then even hidden layers; stops early when every row's largest change in the last sweep is below
        ``tol`` (a bound on the last step, not on the distance to the fixed point, larger where sweeps contract
        slowly).  A row kept running by slower rows moves further towards its fixed point, so batched and solo
        answers differ by at most about the distance a stop at ``tol`` leaves; ``tol=0`` runs every sweep and
        makes each row's answer independent of the others.

        **Rounding floor.**  A sweep stops the iteration when its largest change :math:`\\delta` satisfies
        :math:`\\delta < \\max(\\mathrm{tol},\\, c\\,\\epsilon)` (``tol > 0``), :math:`\\epsilon` the dtype's machine
        epsilon and :math:`c = 16` (:mod:`~hybridpgm.infer.rounding_floor`, as for
        :class:`~hybridpgm.infer.MeanField`; the scale is 1, the means lying in :math:`[0, 1]`).  Recomputing a
        mean :math:`\\sigma(a)` rounds it, so near the fixed point the sweeps settle on a cycle of an ulp or two
        instead of a fixed point: in ``float32`` a change of :math:`1.2 \\cdot 10^{-7}` to
        :math:`2.4 \\cdot 10^{-7}` forever (measured on a ``[40, 60, 60, 30]`` DBM), so a ``tol`` below that
        would run every sweep to no avail.  The floor is :math:`1.9 \\cdot 10^{-6}` in ``float32`` and
        :math:`3.6 \\cdot 10^{-15}` in ``float64``; at the default ``tol = 1e-5`` the test is the plain
        :math:`\\delta < \\mathrm{tol}`, as before.  Half precision (``float16``, ``bfloat16``) has no floor:
        there :math:`16\\,\\epsilon` is :math:`0.016` and :math:`0.125`, far above the changes of sweeps that
        still converge (it stopped a float16 DBM 1e-2 from its fixed point), while its sweeps do settle within
        ``tol``.

        **Autocast.**  Under :func:`torch.autocast` (a user's block, or ``fit(precision="bf16")``) the sweeps run
        with it off, in the parameters' dtype (:func:`~hybridpgm.energy.rbm_chains.without_autocast`, as in
        :meth:`positive_phase`): the means are those outside autocast, where bfloat16 products had put them up to
        :math:`3.8 \\cdot 10^{-3}` off (a ``[40, 30, 20]`` DBM) though returned in float32.

        :param v: ``batch x V`` visible data (see :meth:`check_visible`).
        :param int steps: sweeps, a positive integer (default ``mean_field_steps``).
        :param float tol: stop once no mean moves by more than this, or than the rounding floor where that is
            larger (a finite number >= 0; ``0`` runs every sweep).
        :raises ConfigError: ``steps`` is not a positive integer, or ``tol`` not a finite number >= 0.
        :raises DataError: bad ``v`` (see :meth:`check_visible`)."""
        if steps is not None:
            steps = positive_int(steps, "DBM.mean_field steps")
        tol = positive_real(tol, "DBM.mean_field tol", allow_zero=True)
        v = self.check_visible(v)
        with without_autocast(v.device):
            return self._mean_field(v, steps, tol)

    def _mean_field(self, v: torch.Tensor, steps: int | None = None,
                    tol: float | None = 1e-5) -> list[torch.Tensor]:
        """:meth:`mean_field` without the checks (the positive phase's data are checked by the objective);
        ``tol=None`` runs every sweep without reading the changes back."""
        mu = [v]
        for l in range(1, len(self.sizes)):
            scale = 2.0 if l < self.num_layers else 1.0
            mu.append(torch.sigmoid(self.biases[l] + scale * (mu[l - 1] @ self.weights[l - 1])))
        if not v.numel():  # an empty batch: nothing to iterate
            return mu
        floor = rounding_floor(v.dtype) if v.dtype in (torch.float32, torch.float64) else 0.0  # none in half
        for _ in range(steps or self.mean_field_steps):
            changes = []
            for l in list(range(1, len(mu), 2)) + list(range(2, len(mu), 2)):
                new = torch.sigmoid(self.layer_logits(mu, l))
                changes.append((new - mu[l]).abs().amax())
                mu[l] = new
            # one host read per sweep; below the rounding floor a change is rounding (see mean_field)
            if tol and float(torch.stack(changes).amax()) < max(tol, floor):
                break
        return mu

    # -------------------------------------- chain protocol (contrastive divergence)
    def positive_phase(self, v: torch.Tensor):
        """Energy at the mean-field posterior (means detached), ``batch``; and a state clamped to ``v``.

        On the CPU the mean field stops early at the tolerance of :meth:`mean_field`; on an accelerator, where each
        check would synchronise, it runs all ``mean_field_steps`` sweeps, so that the training step keeps its one
        host read.  Autocast is off here, in :meth:`negative_phase` and in :meth:`gibbs_chain`
        (:func:`~hybridpgm.energy.rbm_chains.without_autocast`): the CD/PCD surrogate, a small difference of two
        large means, runs in the parameters' dtype under ``fit(precision="bf16"|"fp16")``, as an RBM's does.

        :param v: ``batch x V`` visible data, already checked (by the objective)."""
        with without_autocast(v.device):
            with torch.no_grad():
                mu = self._mean_field(v, tol=1e-5 if reading_is_free(v) else None)
                state = (v,) + tuple(bernoulli(m) for m in mu[1:])
            return self._energy(mu), state

    def negative_phase(self, state) -> torch.Tensor:
        """Free energy of the even layers (odd layers summed out), ``batch``, autocast off (see
        :meth:`positive_phase`).

        :param state: every layer's ``batch x n_l`` chain states (as :meth:`gibbs_chain` gives)."""
        with without_autocast(state[0].device):
            return self._summed_out(state, keep=0)

    def init_chains(self, num_chains: int, *, generator: torch.Generator | None = None):
        """Every layer's ``num_chains x size`` start states, fair coins.

        :param int num_chains: the number of chains.
        :param generator: a :class:`torch.Generator` for the draws (on the parameters' device); ``None`` draws
            from torch's global stream (the objectives of contrastive divergence pass none).
        :raises ConfigError: ``num_chains`` is not a non-negative integer (as for :meth:`sample`), or
            ``generator`` is neither a :class:`torch.Generator` nor ``None``."""
        num_chains = sample_count(num_chains, "DBM.init_chains num_chains")
        generator = generator_or_none(generator, "DBM.init_chains generator")
        w = self.weights[0]
        return tuple(bernoulli(torch.full((num_chains, s), 0.5, dtype=w.dtype, device=w.device), generator=generator)
                     for s in self.sizes)

    @torch.no_grad()
    def gibbs_chain(self, state, steps: int, *, generator: torch.Generator | None = None):
        """``steps`` sweeps: odd layers given even, then even layers given odd (autocast off, see
        :meth:`positive_phase`).

        :param state: every layer's ``batch x size`` states (a tuple, as :meth:`init_chains` gives).
        :param int steps: the number of sweeps, a non-negative integer (``0`` returns ``state``).
        :param generator: a :class:`torch.Generator` for the draws (on the parameters' device); ``None`` draws
            from torch's global stream.
        :raises ConfigError: ``steps`` is not a non-negative integer (as for :meth:`RBM.gibbs
            <hybridpgm.energy.RBM.gibbs>`), or ``generator`` is neither a :class:`torch.Generator` nor ``None``."""
        steps = positive_int(steps, "DBM.gibbs_chain steps", minimum=0)
        generator = generator_or_none(generator, "DBM.gibbs_chain generator")
        x = list(state)
        with without_autocast(self.weights[0].device):
            for _ in range(steps):
                for parity in (1, 0):
                    for l in range(parity, len(x), 2):
                        x[l] = bernoulli(torch.sigmoid(self.layer_logits(x, l)), generator=generator)
        return tuple(x)

    @torch.no_grad()
    def sample(self, num_samples: int, steps: int = 1000, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples x V`` visible samples after ``steps`` Gibbs sweeps from random states.

        :param int num_samples: the number of chains (and samples).
        :param int steps: Gibbs sweeps (default ``1000``).
        :param generator: a :class:`torch.Generator` for the draws (the random start states and every sweep; on
            the parameters' device); ``None`` draws from torch's global stream.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, or ``steps`` not a positive
            integer (integer scalars such as NumPy's pass; ``bool`` and floats are refused, as by
            :meth:`RBM.sample <hybridpgm.energy.RBM.sample>`), or ``generator`` is neither a
            :class:`torch.Generator` nor ``None``."""
        num_samples = sample_count(num_samples, "DBM.sample num_samples")
        steps = positive_int(steps, "DBM.sample steps")
        generator = generator_or_none(generator, "DBM.sample generator")
        self.check_parameters()
        draws = generator_keywords(generator, self.init_chains, self.gibbs_chain, what="DBM.sample generator")
        with holding_global_state():  # no draw from the global stream amid another thread's seeded fit step
            return self.gibbs_chain(self.init_chains(num_samples, **draws), steps, **draws)[0]

    # ----------------------------- AIS (log Z, likelihoods: DBMLikelihood)
    def annealing_path(self, data: torch.Tensor | None = None):
        """The AIS path of :class:`~hybridpgm.energy.annealing.DBMAnnealingPath`.

        :param data: optional ``N x V`` data whose means set the base-rate visible biases (``None``: zeros)."""
        from hybridpgm.energy.annealing import DBMAnnealingPath

        self.check_parameters()
        return DBMAnnealingPath(self, data)
