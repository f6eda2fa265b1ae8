"""The training contract: what :func:`hybridpgm.fit` trains.

An *objective* names its **players** (groups of parameters, each with its own
optimizer) and gives a loss to minimise for each.  Plain SVI has one player
(``"elbo"``); wake-sleep has ``"wake"`` and ``"sleep"``; a GAN has
``"discriminator"`` (stepped ``k`` times) then ``"generator"``.

Loss scale
----------
A loss must be *intensive*: its expectation must not grow with the batch size.
A mean over the examples of the batch qualifies, and so does an unbiased
estimate of the full-data loss (a ``pyro.plate`` scaled by ``N / B``).  That is
what lets :func:`fit` split a batch into micro-batches (weighting micro-batch
``i`` of ``m_i`` examples by ``m_i / B``) and lets data-parallel training
average gradients over ranks, both without changing the update -- provided the
loss is also *decomposable*: its value on a batch is the size-weighted mean of
its values on the parts of the batch, i.e. a mean of per-example terms.  Two
common losses are intensive but not decomposable:

* a loss that couples the examples of a batch, such as the exact GP marginal
  likelihood (:class:`~hybridpgm.gp.ExactMLLObjective`), whose kernel matrix
  ties every pair of examples: such an objective sets ``decomposable = False``
  and :func:`fit` refuses ``accumulate > 1`` and several ranks for it (an
  objective that has a decomposable variant says how to choose it in an optional
  ``not_decomposable_remedy`` string, which the refusal quotes);
* a model with batch normalisation in training mode, which normalises each
  micro-batch (and each rank's shard) with its own statistics: :func:`fit`
  warns when it meets one with ``accumulate > 1`` or several ranks.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import torch

from hybridpgm.checks import type_name
from hybridpgm.errors import ConfigError

__all__ = ["Objective", "elbo_settings", "objective_settings", "player_schedule", "set_up"]


@runtime_checkable
class Objective(Protocol):
    """Protocol of everything :func:`hybridpgm.fit` can train.

    Optional members, used when present:

    * ``decomposable: bool`` -- whether the loss of a batch is the size-weighted
      mean of the losses of its parts (default ``True``).  ``False`` makes
      :func:`fit` refuse ``accumulate > 1`` and multi-process runs with a
      :class:`~hybridpgm.errors.ConfigError`, since both would train the mean
      of the parts' losses instead.
    * ``schedule: list[str]`` -- the order in which players are stepped within
      one training step, with repeats (``["discriminator"] * k + ["generator"]``).
      Defaults to the order of :meth:`players`.
    * ``setup(batch)`` -- called once by :func:`fit`, before the players' optimizers are built (and before a
      checkpoint is resumed), with the first training batch on the training device: an objective whose
      parameters come into being on a first call (a Pyro autoguide) creates them here, so that they are
      trained and checkpointed.  It must not use up random numbers of the run.
    * ``check_batching(batch, *, num_examples, shuffle, accumulate, world_size)`` -- called by :func:`fit` right
      after ``setup``, with the same batch, the data set's size :math:`N` and how ``fit`` batches it: an objective
      whose parameters belong to the batch's positions (a Pyro autoguide over a local latent in
      ``pyro.plate("data", x.shape[0])``) refuses a batching that puts other examples at those positions.
    * ``state_dict()`` / ``load_state_dict(state)`` -- extra state to keep in
      checkpoints (beyond ``module``'s own).
    * ``train_step_end(step)`` -- called after every optimizer cycle.
    * ``loss_and_gradients(player, batch) -> (loss, {parameter: gradient} | None)`` --
      the loss with its gradients written out (fresh tensors, the parameters' shape,
      dtype and device; a parameter left out gets none from this batch), or
      ``None`` for the gradients and a differentiable loss.  ``fit`` calls it
      instead of ``loss`` and skips autograd, unless the player's parameters carry
      a hook or one does not require a gradient, or fp16 scales the loss
      (:class:`hybridpgm.infer.ContrastiveDivergence` on an RBM: the CD update in
      closed form, no graph to build and traverse).
    * ``explain_nonfinite(player, batch) -> str | None`` -- why the loss of ``player``
      on ``batch`` (a micro-batch, as :meth:`loss` got it) is NaN/inf: a sentence naming
      the rows of ``batch`` (numbered from 0) and the values at fault, or ``None`` when it
      has nothing to say.  ``fit`` calls it only on the error path, once a player's
      loss is not finite and it is about to raise
      :class:`~hybridpgm.errors.TrainingDivergedError` (never under
      ``skip_nonfinite``), under :func:`torch.no_grad`, and appends the text to the
      error's message (prefixed with the micro-batch's rows in the batch when the
      batch was split): it costs the steps that do not diverge nothing, and may read
      the device freely.  An exception inside it is reported as "could not explain"
      and never masks the divergence.  :class:`~hybridpgm.infer.SVIObjective` has one
      that asks its model's owner (:meth:`BayesNet.explain_nonfinite_loss
      <hybridpgm.graphs.BayesNet.explain_nonfinite_loss>`: the rows of probability 0
      under the network, by their exact log-evidence).
    * ``settings() -> dict`` -- the plain values (numbers, strings, booleans) that define the objective beyond its
      module's parameters, such as contrastive divergence's ``k`` or an ELBO's number of particles
      (:func:`objective_settings`).  ``fit`` records them in its checkpoint and refuses to resume one recorded
      with other settings, unless ``override_hyperparameters=True``.
    """

    module: torch.nn.Module

    def players(self) -> dict[str, list[torch.nn.Parameter]]:
        """Map each player's name to the parameters its optimizer updates.  A frozen parameter
        (``requires_grad=False``) gets no gradient; a player all of whose parameters are frozen has its loss
        computed and recorded by ``fit`` but is not stepped, and an objective none of whose parameters is
        trainable is refused."""
        ...

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """Scalar loss to minimise for ``player`` on ``batch`` (intensive).

        :param player: one of the names of :meth:`players`.
        :param batch: a (micro-)batch of the training data, on the training device.
        """
        ...


def player_schedule(objective: Objective) -> list[str]:
    """The players of one training step, in order and with repeats.

    :raises ConfigError: ``schedule`` is not a list (or tuple) of player names, or names an unknown player."""
    names = list(objective.players())
    schedule = getattr(objective, "schedule", None)
    if schedule is not None and (not isinstance(schedule, (list, tuple))
                                 or not all(isinstance(p, str) for p in schedule)):
        raise ConfigError(f"{type(objective).__name__}.schedule must be a list of player names (an attribute or a "
                          f"property), got {_described(schedule)}")
    schedule = list(schedule or names)
    unknown = [p for p in schedule if p not in names]
    if unknown:
        raise ConfigError(f"schedule names unknown players {unknown}; players are {names}")
    return schedule


def set_up(objective: Objective, first_batch: Callable[[], Any], *, num_examples: int, shuffle: bool,
           accumulate: int, world_size: int) -> None:
    """Call the objective's optional ``setup`` and then its optional ``check_batching`` (see :class:`Objective`)
    with the first training batch, read once and only when one of them exists: parameters made on a first call (a
    Pyro autoguide's) exist before :func:`hybridpgm.fit` builds the optimizers, and an autoguide whose parameters
    belong to the batch's positions is refused before a step under a batching that moves the examples.

    :param first_batch: gives the first batch on the training device.
    :param num_examples: the examples :math:`N` of the data set.
    :param shuffle: whether each epoch draws the batches in a new order.
    :param accumulate: micro-batches per batch.
    :param world_size: processes, each taking its own examples."""
    setup, check = getattr(objective, "setup", None), getattr(objective, "check_batching", None)
    if setup is None and check is None:
        return
    batch = first_batch()
    if setup is not None:
        setup(batch)
    if check is not None:
        check(batch, num_examples=num_examples, shuffle=shuffle, accumulate=accumulate, world_size=world_size)


def _described(value: Any) -> str:
    """What a wrong value is, for an error message: a method by that word, a string by its text."""
    return "a method" if callable(value) else repr(value) if isinstance(value, str) else f"a {type(value).__name__}"


def objective_settings(objective: Any) -> dict[str, Any] | None:
    """The objective's ``settings()`` as a dict, or ``None`` for an objective without them (not compared on
    resume).

    :raises ConfigError: ``settings()`` returns something other than a dict keyed by strings, or a value that is
        not plain (:func:`_plain_setting`: a tensor, a ``Path``)."""
    settings = getattr(objective, "settings", None)
    if not callable(settings):
        return None
    values = settings()
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise ConfigError(f"{type(objective).__name__}.settings() must return a dict keyed by names, got "
                          f"{_described(values)}")
    return {key: _plain_setting(value, f"{type(objective).__name__}.settings()[{key!r}]")
            for key, value in values.items()}


def _plain_setting(value: Any, where: str) -> Any:
    """A setting as a plain value, compared with ``==`` on resume and kept in the checkpoint: ``None``, ``bool``,
    ``int``, ``float``, ``str`` (a NumPy scalar or 0-d array as its ``.item()``, an ``IntEnum`` or another subclass
    of these as the builtin, as checkpoints store them: :func:`~hybridpgm.train.checkpoint.plain_scalar`), or a
    list of these (a tuple becomes one).

    :raises ConfigError: naming ``where`` and the type of anything else (a tensor, a ``Path``)."""
    from hybridpgm.train.checkpoint import plain_scalar

    scalar = plain_scalar(value)
    if scalar is None or type(scalar) in (bool, int, float, str):
        return scalar
    if isinstance(value, (list, tuple)):
        return [_plain_setting(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"{where} is a {type_name(value)}; settings must be plain "
                      "values (None, bool, int, float, str, or lists of these)")


#: the ELBO attributes that change what is trained (``max_plate_nesting`` is left out: Pyro guesses it on the
#: first call when it is not given, so it is not a setting of the run)
_ELBO_SETTINGS = ("num_particles", "vectorize_particles", "num_sleep_particles", "wake_phi", "sleep_phi",
                  "tail_adaptive_beta", "variance_normalization", "centering", "detach_guide")

#: settings whose ``None`` is a choice (``plate_name=None``: the outermost plate enclosing every site), recorded
#: as ``None`` by an ELBO that has them, so that a resume naming another data plate is told from one naming none
_NONE_IS_A_SETTING = ("plate_name",)
_MISSING = object()


def elbo_settings(elbo: Any) -> dict[str, Any]:
    """The settings of a Pyro ELBO (or one of :mod:`hybridpgm.infer`'s) that define what it estimates: its class's
    qualified name and the plain values among :data:`_ELBO_SETTINGS` it has (``num_particles``...), and the data
    plate of a :class:`~hybridpgm.infer.particle_elbo.ParticleELBO` (``plate_name``, ``None`` included): a
    checkpoint written before a setting was recorded lacks it, and is not compared on it."""
    out: dict[str, Any] = {"elbo": type(elbo).__qualname__}
    for name in _ELBO_SETTINGS:
        value = getattr(elbo, name, None)
        if isinstance(value, (bool, int, float, str)):
            out[name] = value
    for name in _NONE_IS_A_SETTING:
        value = getattr(elbo, name, _MISSING)
        if value is None or isinstance(value, str):
            out[name] = value
    return out
