"""Any Pyro model/guide and ELBO as an objective of :func:`hybridpgm.fit`."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, JitTraceEnum_ELBO, TraceEnum_ELBO, TraceTMC_ELBO

from hybridpgm.checks import check_player, flag
from hybridpgm.errors import ConfigError, DataError, ObjectiveError
from hybridpgm.infer.autoguide_plates import AutoguideBatchingCheck, check_subsampled_autoguides
from hybridpgm.infer.direct_trace_elbo import DirectTrace_ELBO
from hybridpgm.infer.global_share import refuse_joint_weights, share_scope
from hybridpgm.infer.iwae import IWAE
from hybridpgm.infer.jit_shapes import ShapeKeyedPrograms, compiles_on_first_shape
from hybridpgm.infer.particle_elbo import ParticleELBO, probing
from hybridpgm.infer.particle_probe import build_autoguides
from hybridpgm.infer.split_refusal import refuse_unsplit_estimates
from hybridpgm.infer.subsample_scale import probe_batch
from hybridpgm.infer.unfit_elbos import refuse_unfit_elbo
from hybridpgm.options import Option
from hybridpgm.precision_scope import autocast_states, autocast_switched
from hybridpgm.summary_repr import model_guide_text
from hybridpgm.train.batches import batch_size_of
from hybridpgm.train.objective import elbo_settings

__all__ = ["SVIObjective"]


def _owner(fn: Callable) -> torch.nn.Module | None:
    if isinstance(fn, torch.nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


class SVIObjective(AutoguideBatchingCheck):
    """Stochastic variational inference with one player, ``"elbo"``.

    The loss is ``elbo.differentiable_loss(model, guide, *batch)``, divided by
    the number of examples in the batch when ``per_example`` is true (so a
    model whose data plate is the batch reports nats per example).  Pass
    ``per_example=False`` when the model already scales its plate to the full
    data size (``pyro.plate("data", N, subsample=...)``, ``VAE.model(x, num_data=N)``,
    :class:`~hybridpgm.bayesian_nn.BayesianRegressor`): its loss is then an
    unbiased full-data estimate, intensive as the training contract requires, and a further division by
    :math:`B` would make the update depend on the batch size and on ``fit``'s ``accumulate``.  With
    ``per_example=True`` :meth:`loss` probes the programs for such a plate
    (:func:`~hybridpgm.infer.subsample_scale.check_plate_scale`) and refuses it: on its first batch, and again
    only on a batch smaller than any probed before (a plate of ``N`` rows shows no subsampling on a batch of
    all ``N``; it does on a smaller one), so at most a few times a run.

    With ``per_example=True`` the sample sites outside every plate of the batch's size (the prior and guide terms
    of a global latent: the weights of a network made Bayesian by :func:`~hybridpgm.bayesian_nn.bayesianize`, an
    autoguide's global latents), found by name on that first probe, count once per optimizer update of
    :func:`hybridpgm.fit`: each micro-batch of ``accumulate`` scales them by its share :math:`m_i / (B R)` of the
    update over :math:`R` ranks (:mod:`~hybridpgm.infer.global_share`), so that ``accumulate`` and the number of
    ranks do not change the update (before, such a term counted once per micro-batch and once per rank).  A batch
    that is not split, on one process, and a call outside ``fit`` are left as they are.

    Under a Pyro JIT ELBO (``JitTrace_ELBO``, ``JitTraceEnum_ELBO``, ``JitTraceMeanField_ELBO``), which compiles
    once per number of arguments, the loss is computed by a private copy of the ELBO per shape of the batch, each
    compiled once (:mod:`~hybridpgm.infer.jit_shapes`): ``fit``'s shorter last batch and its micro-batches are not
    replayed through a function traced on other sizes (a :class:`~hybridpgm.graphs.BayesNet`'s failed or was
    scored wrongly), and the ELBO object given is not called (a plain ``pyro.infer.SVI`` may share it).  Each
    batch's loss is then the eager twin's (``Trace_ELBO``, ``TraceEnum_ELBO``, ``TraceMeanField_ELBO``) and so is
    its gradient, given the same random draws: for ``JitTrace_ELBO`` the loss is ``loss.detach() + (surrogate -
    surrogate.detach())``, where Pyro's own ``differentiable_loss`` doubles the gradient of reparameterized sites
    (and is wrong for score-function ones).

    :param model: a Pyro model; called as ``model(*batch, **model_kwargs)``
        (``model(batch)`` when the batch is one tensor).
    :param guide: its guide, called the same way.
    :param elbo: a :class:`pyro.infer.ELBO` with ``differentiable_loss``
        (default :class:`~hybridpgm.infer.DirectTrace_ELBO`: ``Trace_ELBO``'s
        loss and gradients, computed without tracing for pairs such as
        :class:`~hybridpgm.VAE`'s that declare a direct path; e.g. :class:`~hybridpgm.infer.IWAE`,
        :class:`~pyro.infer.TraceEnum_ELBO`, :class:`~pyro.infer.TraceMeanField_ELBO`).
    :param module: the module holding every parameter; found from ``model`` /
        ``guide`` when they are modules or bound methods of one.
    :param bool per_example: divide the loss by the number of examples in the batch (default ``True``).
    :param model_kwargs: keyword arguments passed to ``model`` and ``guide`` on every call.
    :raises ConfigError: ``model`` or ``guide`` is not callable, ``elbo`` is a class rather than an
        instance, ``module`` is not a :class:`torch.nn.Module`, or none can be found, or ``per_example`` is
        not ``True`` or ``False`` (also when assigned later: ``per_example`` is a checked attribute,
        :class:`~hybridpgm.options.Option`; the string ``'no'`` would count as true), or ``elbo`` is a
        :class:`~pyro.infer.TraceTailAdaptive_ELBO`, whose loss is ``inf`` by design
        (:mod:`~hybridpgm.infer.unfit_elbos`; plain :class:`pyro.infer.SVI` trains it).
    :raises ObjectiveError: ``elbo`` has no ``differentiable_loss``.

    :meth:`loss` raises :class:`~hybridpgm.errors.ConfigError` for a player other than ``"elbo"`` or, with
    ``per_example``, for a model or guide whose plate subsamples the batch's :math:`B` rows from a larger full
    size (the message names the plate and says to pass ``per_example=False``), and
    :class:`~hybridpgm.errors.DataError` (with ``per_example``) for a batch whose size it cannot tell or
    that has no examples.
    """

    per_example = Option(lambda self, value: flag(value, "SVIObjective per_example"))

    def __init__(self, model: Callable, guide: Callable, elbo: ELBO | None = None, *,
                 module: torch.nn.Module | None = None, per_example: bool = True, **model_kwargs: Any):
        for name, fn in (("model", model), ("guide", guide)):
            if not callable(fn):
                raise ConfigError(f"SVIObjective {name} must be a callable (a Pyro program), got {type(fn).__name__}")
        if isinstance(elbo, type):
            raise ConfigError(f"SVIObjective elbo must be an instance, got the class {elbo.__name__}; "
                              f"pass {elbo.__name__}(...)")
        if module is not None and not isinstance(module, torch.nn.Module):
            raise ConfigError(f"SVIObjective module must be a torch.nn.Module, got {type(module).__name__}")
        self.model, self.guide = model, guide
        self.elbo = DirectTrace_ELBO() if elbo is None else elbo
        if not callable(getattr(self.elbo, "differentiable_loss", None)):
            raise ObjectiveError(f"{type(self.elbo).__name__} has no differentiable_loss; it cannot drive fit")
        refuse_unfit_elbo(self.elbo, "SVIObjective")
        if module is None:
            owners = []
            for fn in (model, guide):
                owner = _owner(fn)
                if owner is not None and all(owner is not o for o in owners):
                    owners.append(owner)
            if not owners:
                raise ConfigError("neither model nor guide is a torch module (or a method of one): pass module=")
            module = owners[0] if len(owners) == 1 else torch.nn.ModuleList(owners)
        self.module = module
        self.per_example = per_example
        self.model_kwargs = model_kwargs
        #: the smallest batch per_example's probe for a subsampled data plate has seen (None: not probed yet)
        self._smallest_probed: int | None = None
        #: the sample sites outside the batch's plates, from per_example's first probe (None: not probed yet)
        self._global_sites: frozenset[str] | None = None
        #: the programs and private copies of a Pyro JIT ELBO, made on its first batch (jit_shapes: one per shape)
        self._jit_programs: ShapeKeyedPrograms | None = None

    def __getstate__(self) -> dict:
        """The state for :mod:`pickle` and :func:`copy.deepcopy`, without the compiled copies of a Pyro JIT ELBO
        (torch's traced functions do not pickle; they are made again on the next batch)."""
        state = self.__dict__.copy()
        state["_jit_programs"] = None
        return state

    def setup(self, batch: Any) -> None:
        """Create the parameters of a Pyro autoguide that has not run yet, by running it once on ``batch``
        (called by :func:`hybridpgm.fit` before it builds the optimizer; the random state and the buffers of the
        modules, such as batch-norm statistics, are left as they were: a resumed run runs it again).

        Before, such a guide made its parameters inside the first step, after the optimizer was built: it was
        silently never trained.  Inside ``fit``'s own param-store scope, its parameters are its own even when a
        notebook cell creating it runs twice.

        :param batch: a batch of the data (a tensor, or a tuple of the programs' positional arguments).
        :raises ConfigError: the autoguide's parameters are not in :attr:`module`, a ``pyro.param`` site of
            the model or guide is not a parameter of :attr:`module`, or an autoguide has a latent in a plate that
            subsamples the batch and makes that plate itself or is a joint one
            (:func:`~hybridpgm.infer.autoguide_plates.check_subsampled_autoguides`).
        """
        args = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        build_autoguides(self.model, self.guide, args, self.model_kwargs, self.module, "SVIObjective")
        check_subsampled_autoguides(self.model, self.guide, args, self.model_kwargs, (self.module,), "SVIObjective")
        self._check_param_sites(batch)

    def check_batching(self, batch: Any, *, num_examples: int, shuffle: bool, accumulate: int = 1,
                       world_size: int = 1) -> None:
        """The autoguide's check (:meth:`AutoguideBatchingCheck.check_batching
        <hybridpgm.infer.autoguide_plates.AutoguideBatchingCheck.check_batching>`), then, before ``fit`` takes the
        checkpoint's lock or runs a callback, the refusal of an estimate that ``accumulate > 1`` or several ranks
        cannot split: :class:`IWAE` with a site outside the batch's plate (a global latent, a ``pyro.factor``), an
        enumerated global site (:func:`~hybridpgm.infer.split_refusal.refuse_unsplit_estimates`).

        :param batch: the first batch (as for ``setup``).
        :param int num_examples: the examples :math:`N` of the data set.
        :param bool shuffle: whether the batches are drawn in a new order every epoch.
        :param int accumulate: micro-batches per batch.
        :param int world_size: processes.
        :raises ConfigError: as those two."""
        super().check_batching(batch, num_examples=num_examples, shuffle=shuffle, accumulate=accumulate,
                               world_size=world_size)
        refuse_unsplit_estimates(self, batch, accumulate=accumulate, world_size=world_size, name="SVIObjective")

    def _check_param_sites(self, batch: Any) -> None:
        """Refuse a model or guide whose ``pyro.param`` sites are not parameters of :attr:`module`.

        :func:`hybridpgm.fit` trains the module's parameters, in its own param-store scope: a ``pyro.param``
        of a hand-written guide would be created afresh in that scope and never stepped.  One guide trace and
        one model trace replayed on it (the traces Pyro runs to guess ``max_plate_nesting``) find the param
        sites; each is checked against the module's parameters by the unconstrained tensor Pyro stores for it.
        Programs that fail on this probe are left to the first step, which raises their error with the step's
        context (data origin, step, player).
        """
        args = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        try:
            with probing(self.model, self.guide, self.module), torch.no_grad(), poutine.block():
                guide_trace = poutine.trace(self.guide, param_only=True).get_trace(*args, **self.model_kwargs)
                model_trace = poutine.trace(self.model, param_only=True).get_trace(*args, **self.model_kwargs)
        except Exception:  # noqa: BLE001 - the first step runs the same programs and says why, with its context
            return
        owned = {id(p) for p in self.module.parameters()}
        store = pyro.get_param_store()
        stray = {program: sorted(name for name in trace.nodes if name in store
                                 and id(store._params[name]) not in owned)
                 for program, trace in (("guide", guide_trace), ("model", model_trace))}
        stray = {program: names for program, names in stray.items() if names}
        if stray:
            shown = "; ".join(f"the {program}'s {names}" for program, names in stray.items())
            raise ConfigError(f"SVIObjective: pyro.param sites that are not parameters of the objective's module "
                              f"({type(self.module).__name__}): {shown}; fit trains the module's parameters only, "
                              "so these would never change.  Declare them as PyroParam (or nn.Parameter) attributes "
                              "of a PyroModule whose method is the program (or pass module= holding them and "
                              "register them with pyro.module), or train this pair with pyro.infer.SVI")

    def players(self) -> dict[str, list[torch.nn.Parameter]]:
        """``"elbo"``: the trainable parameters of :attr:`module`."""
        return {"elbo": [p for p in self.module.parameters() if p.requires_grad]}

    def settings(self) -> dict[str, Any]:
        """What defines the objective beyond its parameters, compared when ``fit`` resumes a checkpoint: the
        class and settings of its ELBO (:func:`~hybridpgm.train.objective.elbo_settings`)."""
        return elbo_settings(self.elbo)

    def __repr__(self) -> str:
        """``SVIObjective(model=VAE.model, guide=VAE.guide, elbo='...', num_particles=5, ..., per_example=True)``: the
        programs by name, the :meth:`settings` and ``per_example`` (:func:`~hybridpgm.summary_repr.model_guide_text`);
        the networks are left out (``repr(objective.module)`` shows them)."""
        return model_guide_text(self)

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """``elbo.differentiable_loss(model, guide, *batch, **model_kwargs)`` (0-d), divided by the number of
        examples when ``per_example`` (the errors: see the class docstring).

        :param str player: ``"elbo"``.
        :param batch: the programs' positional arguments (a tensor, or a tuple of them)."""
        check_player(player, ("elbo",), "SVIObjective")
        args = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        if self.per_example:  # the loss is divided by the batch size: it must be known and positive
            size = batch_size_of(batch)  # DataError for a batch it cannot size (None, an empty tuple)
            if size == 0:
                raise DataError("SVIObjective got an empty batch (0 examples); give at least one")
            probe_batch(self, args, size, "SVIObjective")  # a subsampled data plate refused; the global sites
        # max_plate_nesting is guessed here, once per objective (so once more in a resumed run), by a probe
        # trace that must leave no mark: no random numbers used up, no module buffer (batch-norm statistics)
        # changed -- the module given or found here included
        if isinstance(self.elbo, (ParticleELBO, IWAE)):  # hybridpgm's guess, without Pyro's log line
            self.elbo.plate_nesting(self.model, self.guide, args, self.model_kwargs, modules=(self.module,))
        elif _guesses_plate_nesting(self.elbo):
            with probing(self.model, self.guide, self.module):
                self.elbo._guess_max_plate_nesting(self.model, self.guide, args, self.model_kwargs)
        scope = self._global_share()
        with scope:
            loss = self._elbo_loss(args, getattr(scope, "share", None))
        return loss / size if self.per_example else loss

    def _global_share(self) -> contextlib.AbstractContextManager:
        """:class:`~hybridpgm.infer.global_share.GlobalShare` for the sites outside the batch's plates with the
        micro-batch's share of ``fit``'s update, under ``per_example`` when that share is not 1 and there are such
        sites; else no handler (a :class:`DirectTrace_ELBO` keeps its direct path), as
        :func:`~hybridpgm.infer.global_share.share_scope` gives it.

        :raises ConfigError: a share other than 1 with an :class:`IWAE` ELBO and global sites
            (:func:`~hybridpgm.infer.global_share.refuse_joint_weights`: the bound of a batch is no sum over its
            micro-batches)."""
        if not self.per_example:
            return contextlib.nullcontext()
        scope = share_scope(getattr(self, "_global_sites", None))
        if isinstance(self.elbo, IWAE):  # one importance weight over the batch's global and local latents
            refuse_joint_weights(scope, "SVIObjective", "IWAE")  # "site(s)" where a global_factor is among them
        return scope

    def _elbo_loss(self, args: tuple, share: float | None) -> torch.Tensor:
        """The ELBO's differentiable loss of the batch ``args`` (under the global sites' ``share``, None for none:
        a Pyro JIT ELBO's compiled function keeps the scales it was traced with, so it is keyed by it too)."""
        states = autocast_states()
        if states and isinstance(self.elbo, TraceEnum_ELBO) and not isinstance(self.elbo, JitTraceEnum_ELBO):
            return _contracted_without_autocast(self.elbo, states, self.model, self.guide, args, self.model_kwargs)
        if compiles_on_first_shape(self.elbo):  # keyed by the batch's shapes, not only its number of tensors
            programs = getattr(self, "_jit_programs", None)
            if programs is None or not programs.of(self.model, self.guide, self.elbo):
                programs = self._jit_programs = ShapeKeyedPrograms(self.model, self.guide, self.elbo)
            return programs.differentiable_loss(args, self.model_kwargs, key=share)
        return self.elbo.differentiable_loss(self.model, self.guide, *args, **self.model_kwargs)

    def explain_nonfinite(self, player: str, batch: Any) -> str | None:
        """Why the loss of ``batch`` is NaN/inf, as the model's owner tells: the optional hook of the
        :class:`~hybridpgm.train.objective.Objective` protocol, which :func:`hybridpgm.fit` calls only when it is
        about to raise :class:`~hybridpgm.errors.TrainingDivergedError` (no cost to a step that does not diverge).

        When ``model`` is a bound method of an object with an ``explain_nonfinite_loss`` method, that method is
        called with the model's arguments, ``owner.explain_nonfinite_loss(*batch, **model_kwargs)``: for
        ``SVIObjective(bn.model, bn.guide, ...)``, :meth:`BayesNet.explain_nonfinite_loss
        <hybridpgm.graphs.BayesNet.explain_nonfinite_loss>` names the rows of the batch of probability 0 under the
        network (by their exact log-evidence), rows that several tables rule out only together among them.

        :param player: the player whose loss is not finite (``"elbo"``).
        :param batch: the (micro-)batch, as :meth:`loss` got it.
        :returns: a sentence naming the rows at fault, or ``None`` (no such owner, or nothing to say).
        """
        explain = getattr(getattr(self.model, "__self__", None), "explain_nonfinite_loss", None)
        if not callable(explain):
            return None
        args = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        return explain(*args, **self.model_kwargs)


def _contracted_without_autocast(elbo: TraceEnum_ELBO, states: tuple, model: Callable, guide: Callable,
                                 args: tuple, kwargs: dict) -> torch.Tensor:
    """``elbo.differentiable_loss(model, guide, *args, **kwargs)`` under ``fit(precision="bf16"|"fp16")``: the
    programs run under autocast (``states``, :func:`~hybridpgm.precision_scope.autocast_states`: their networks
    in half precision) and Pyro's contraction of the enumerated log-probability tensors with autocast off.

    Under autocast, Pyro's ``einsum`` over the enumerated tables ran in the half precision: a Bayesian network's
    exact negative log-likelihood of incomplete rows (alarm, 30% missing) was ``4.5e-3`` nats per row off in
    bfloat16; and a guide whose log-densities came out in half precision (a VAE's encoder) met float32 costs in
    Pyro's ``Dice`` (torch's raw "both inputs should have same dtype").  The traces are made by Pyro's
    ``TraceEnum_ELBO._get_trace`` (one call per particle), which this runs under autocast, and their
    log-probability tensors are then promoted to at least float32 (:func:`_promote_log_probs`); the rest of the
    loss, the contraction, runs with autocast off.
    """
    traced = elbo._get_trace

    def trace_under_autocast(*trace_args, **trace_kwargs):
        with autocast_switched(states, enabled=True):
            traces = traced(*trace_args, **trace_kwargs)
        for trace in traces:
            _promote_log_probs(trace)
        return traces

    try:  # patched inside the try: an interrupt right after the assignment still removes it
        elbo._get_trace = trace_under_autocast
        with autocast_switched(states, enabled=False):
            return elbo.differentiable_loss(model, guide, *args, **kwargs)
    finally:
        vars(elbo).pop("_get_trace", None)


def _promoted(tensor: Any) -> Any:
    """A half-precision floating tensor in float32, keeping the ``_pyro_dims`` Pyro's packed tensors carry;
    anything else as it is."""
    if not isinstance(tensor, torch.Tensor) or tensor.dtype not in (torch.float16, torch.bfloat16):
        return tensor
    promoted = tensor.float()
    if hasattr(tensor, "_pyro_dims"):
        promoted._pyro_dims = tensor._pyro_dims
    return promoted


def _promote_log_probs(trace: poutine.Trace) -> None:
    """Promote, in place, every half-precision log-probability of ``trace``'s sample sites to float32: the
    ``log_prob``, ``unscaled_log_prob`` and ``score_parts`` Pyro's ``compute_log_prob`` / ``compute_score_parts``
    write, and their packed versions (``site["packed"]``, made by ``Trace.pack_tensors``)."""
    for site in trace.nodes.values():
        if site["type"] != "sample":
            continue
        for fields in (site, site.get("packed", {})):
            for key in ("log_prob", "unscaled_log_prob"):
                if key in fields:
                    fields[key] = _promoted(fields[key])
            if "score_parts" in fields:
                fields["score_parts"] = type(fields["score_parts"])(*map(_promoted, fields["score_parts"]))


def _guesses_plate_nesting(elbo: ELBO) -> bool:
    """Whether Pyro's ``elbo`` would guess ``max_plate_nesting`` on this call by tracing the model and guide,
    drawing random numbers and updating batch-norm statistics: a resumed run would then guess again, after the
    random state and the module were restored, and would differ from an uninterrupted run (hybridpgm's
    particle objectives and :class:`IWAE` guess their own, without Pyro's log line; so does
    :class:`~hybridpgm.infer.nvil_elbo.NVIL_ELBO` through its ``_guess_max_plate_nesting``)."""
    if getattr(elbo, "max_plate_nesting", None) != float("inf") or isinstance(elbo, (ParticleELBO, IWAE)):
        return False
    return isinstance(elbo, (TraceEnum_ELBO, TraceTMC_ELBO)) or bool(getattr(elbo, "vectorize_particles", False))
