"""The options of :func:`~hybridpgm.train.trainer.fit`, checked before any step runs.

Counts are integers (NumPy integers accepted; ``bool`` and fractional values refused, through
:mod:`hybridpgm.checks`), seeds lie in ``[0, 2**32)``, optimizers and schedulers are factories, callbacks
come in a list, and per-player options name exactly the objective's players.  Every refusal is a
:class:`~hybridpgm.errors.ConfigError` naming the argument.  Whether a batch may be split into micro-batches or
rank shards is checked in :mod:`hybridpgm.train.batch_split_checks`.
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Iterable as IterableABC
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from hybridpgm.checks import positive_int, positive_real, sample_count
from hybridpgm.errors import ConfigError, ObjectiveError
from hybridpgm.module_modes import keeping_modes
from hybridpgm.network_checks import refuse_uninitialized
from hybridpgm.train.objective import Objective

__all__ = ["SEED_BOUND", "callback_list", "check_closure_optimizer", "check_config", "check_counts", "check_factory",
           "check_players", "draw_seed", "keeps_callers_rngs_when_unseeded", "keeps_module_modes", "needs_closure",
           "per_player", "rng_seed"]

#: seeds are below this bound (NumPy's RNG refuses larger ones)
SEED_BOUND = 2**32


def per_player(option: Any, players: Iterable[str], what: str, *, optional: bool = False) -> dict[str, Any]:
    """``option`` for each of ``players``: the dict given (naming exactly the players), or the one value for all.

    :param bool optional: the option may be left out for some players (``lr_scheduler``): a dict may name only
        some of them, and a ``None`` value is the same as leaving the player out; those players get no entry.
    :raises ConfigError: a dict that names an unknown player, or (unless ``optional``) misses one."""
    players = list(players)
    if isinstance(option, Mapping):
        missing = [] if optional else [p for p in players if p not in option]
        extra = [p for p in option if p not in players]
        if optional and extra:
            raise ConfigError(f"{what} dict may name only the players {players}; unknown {extra}")
        if missing or extra:
            raise ConfigError(f"{what} dict must name exactly the players {players}; missing {missing}, "
                              f"unknown {extra}")
        return {p: v for p, v in option.items() if v is not None}
    return {p: option for p in players}


def inference_mode_error(objective: Objective, names: list[str] | None = None) -> ConfigError | None:
    """The error for a module holding tensors made under :func:`torch.inference_mode` that autograd meets: those
    ``names``, or (``None``) every such parameter and buffer of ``objective.module`` (a frozen layer made so, through
    which a trained one upstream gets its gradient: autograd must save its weights, which it refuses); ``None``
    when the module holds none (the tensor autograd met is not the module's)."""
    if names is None:
        names = [n for n, t in (*objective.module.named_parameters(), *objective.module.named_buffers())
                 if t.is_inference()]
    if not names:
        return None
    listed = ", ".join(repr(n) for n in names[:4]) + (" ..." if len(names) > 4 else "")
    return ConfigError(f"{type(objective).__name__}.module holds tensors created under torch.inference_mode() "
                       f"({listed}), which autograd cannot train or differentiate through: build the model outside "
                       "inference mode (torch.no_grad() builds without gradients), or load it with hybridpgm.load")


def check_players(objective: Objective) -> dict[str, list[torch.nn.Parameter]]:
    """The objective's players as lists of parameters, each non-empty and inside ``objective.module``.

    A player whose parameters are all frozen (``requires_grad=False``) is accepted (``fit`` computes its loss
    for the history and does not step it: :meth:`~hybridpgm.train.player_step.Player.update`), unless every
    player's are.

    :raises ConfigError: no players, a player without parameters or listing one twice, parameters outside the
        module, every parameter of every player frozen, an objective with ``state_dict`` but no
        ``load_state_dict`` (or the reverse), a module whose trained parameters, or the buffers of whose
        sub-modules in training mode, were made under :func:`torch.inference_mode` (autograd cannot train them,
        nor update such a buffer in place; a frozen part made so is fine), or a module holding a lazy module's
        parameters or buffers that nothing has initialised yet (:func:`~hybridpgm.network_checks.
        refuse_uninitialized`, naming them: run the network once on a batch first)."""
    players = objective.players()
    if not players:
        raise ConfigError(f"{type(objective).__name__}.players() is empty")
    players = {name: list(params) for name, params in players.items()}  # an iterator is read once
    state_methods = [m for m in ("state_dict", "load_state_dict") if callable(getattr(objective, m, None))]
    if len(state_methods) == 1:
        raise ConfigError(f"{type(objective).__name__} has {state_methods[0]}() but not its pair: checkpoints "
                          "keep an objective's extra state only with both state_dict() and load_state_dict(state)")
    # a lazy module nothing has run (its sizes unknown): torch's raw "uninitialized parameter" from any read below
    refuse_uninitialized(objective.module, f"{type(objective).__name__}.module", ConfigError)
    trained = {id(p) for params in players.values() for p in params}
    made_in_inference_mode = [  # the parameters trained, and the buffers a module in training mode updates in place
        *(n for n, p in objective.module.named_parameters() if id(p) in trained and p.is_inference()),
        *(f"{m}.{b}" if m else b for m, module in objective.module.named_modules() if module.training
          for b, t in module.named_buffers(recurse=False) if t is not None and t.is_inference())]
    if made_in_inference_mode:
        raise inference_mode_error(objective, made_in_inference_mode)
    owned = {id(p) for p in objective.module.parameters()}
    for name, params in players.items():
        params = list(params)
        if not params:
            fixed = "" if owned or not any(True for _ in objective.module.buffers()) else (
                f": its module ({type(objective.module).__name__}) holds fixed values (buffers) and no parameters; "
                "declare what should train as parameters (a BayesNet read by read_bif/load_network/from_pgmpy "
                "with learnable=True, a MarkovNet table given as an nn.Parameter)")
            raise ConfigError(f"player {name!r} of {type(objective).__name__} has no parameters{fixed}")
        if any(id(p) not in owned for p in params):
            raise ConfigError(
                f"player {name!r} has parameters outside {type(objective).__name__}.module; "
                "checkpoints and data parallelism only see the module's parameters"
            )
        if len({id(p) for p in params}) < len(params):
            names = {id(p): n for n, p in objective.module.named_parameters()}
            twice = sorted({names[id(p)] for i, p in enumerate(params) if any(p is q for q in params[:i])})
            raise ConfigError(f"player {name!r} of {type(objective).__name__} lists {twice} more than once: "
                              "its optimizer would step them once per listing")
        players[name] = params
    if not any(p.requires_grad for params in players.values() for p in params):
        raise ConfigError(f"every parameter of every player of {type(objective).__name__} ({', '.join(players)}) is "
                          "frozen (requires_grad=False): there is nothing to train; unfreeze the parameters to train "
                          "(a player whose parameters are all frozen is not stepped, the others train)")
    return players


def check_counts(epochs, batch_size, accumulate, checkpoint_every, max_steps, clip_grad_norm, seed,
              collective_timeout) -> tuple:
    """The counts and numbers of :func:`~hybridpgm.train.trainer.fit` checked (integers as ``int``; NumPy scalars
    accepted, ``bool`` and fractional counts refused), in the order given.

    :raises ConfigError: naming the argument and the value given."""
    epochs, batch_size, accumulate = (positive_int(v, n) for n, v in
                                      [("epochs", epochs), ("batch_size", batch_size), ("accumulate", accumulate)])
    if accumulate > batch_size:
        raise ConfigError(f"accumulate={accumulate} micro-batches cannot split a batch of {batch_size}")
    if checkpoint_every is not None:
        checkpoint_every = positive_int(checkpoint_every, "checkpoint_every")
    if max_steps is not None:
        max_steps = positive_int(max_steps, "max_steps")
    if clip_grad_norm is not None:
        clip_grad_norm = positive_real(clip_grad_norm, "clip_grad_norm")
    if seed is not None:
        seed = sample_count(seed, "seed")
        if seed >= SEED_BOUND:
            raise ConfigError(f"seed must be below 2**32 (NumPy's bound), got {seed}")
    if collective_timeout is not None:
        collective_timeout = positive_real(collective_timeout, "collective_timeout")
    return epochs, batch_size, accumulate, checkpoint_every, max_steps, clip_grad_norm, seed, collective_timeout


def _config_value(value: Any, where: str) -> Any:
    """``value`` as a plain JSON-like value (tuples become lists), or a :class:`ConfigError` naming ``where``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise ConfigError(f"fit config {where} is {float(value)!r}; values must be finite (JSON holds no "
                              "NaN or infinity)")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_config_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"fit config {where} is a {type(value).__name__}; values must be JSON-like: None, bool, int, "
                      "float, str, or a list of these")


def check_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``fit``'s ``config`` as a plain dict (``{}`` for ``None``): string keys, JSON-like values (``None``,
    ``bool``, ``int``, finite ``float``, ``str``, and lists of these; tuples become lists).

    :raises ConfigError: ``config`` is not a mapping, a key is not a string, or a value is not JSON-like.
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"fit config must be a mapping of str to JSON-like values or None, got a "
                          f"{type(config).__name__}")
    out = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise ConfigError(f"fit config keys must be strings, got {key!r} ({type(key).__name__})")
        out[key] = _config_value(value, repr(key))
    return out


def rng_seed(seed: int, rank: int, step: int) -> int:
    """The seed of Pyro's, torch's, NumPy's and Python's RNGs for ``rank`` of a run of ``seed`` (re)started at
    optimizer step ``step``, below :data:`SEED_BOUND` (NumPy refuses larger seeds).

    Rank 0 of a fresh run takes ``seed`` itself.  Any other ``(seed, rank, step)`` is hashed by NumPy's
    :class:`~numpy.random.SeedSequence`, so the streams of runs, ranks and restarts do not coincide: an
    additive rule such as ``seed + rank`` gives rank 1 of the run of seed 0 the stream of rank 0 of the run of
    seed 1, and a sweep over seeds on several ranks would train on correlated random numbers."""
    if rank == 0 and step == 0:
        return seed % SEED_BOUND
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint32)[0])


def check_factory(option, what: str):
    """Raise :class:`ConfigError` when ``option`` (of ``optim`` or ``lr_scheduler``) is an instance already
    built rather than a factory (the mistake of passing ``torch.optim.SGD(params, lr=...)``), or a
    ``pyro.optim`` wrapper (``pyro.optim.Adam({"lr": 0.01})``, what ``pyro.infer.SVI`` takes: called with
    parameters, it steps them rather than building an optimizer)."""
    from pyro.optim import PyroOptim

    called_with = "an optimizer" if what == "lr_scheduler" else "a player's parameters"
    for value in (option.values() if isinstance(option, Mapping) else [option]):
        if value is None and what == "lr_scheduler":  # a player without a schedule
            continue
        if isinstance(value, PyroOptim):
            args = value.pt_optim_args
            kwargs = ", ".join(f"{k}={v!r}" for k, v in args.items()) if isinstance(args, dict) else "..."
            cls = value.pt_optim_constructor
            name = f"torch.optim.{cls.__name__}" if getattr(torch.optim, cls.__name__, None) is cls \
                else f"{cls.__module__}.{cls.__name__}"
            raise ConfigError(f"{what} takes a torch optimizer factory, not a pyro.optim wrapper (which is "
                              f"for pyro.infer.SVI); for this one pass functools.partial({name}, {kwargs})")
        if isinstance(value, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)) or not callable(value):
            raise ConfigError(f"{what} must be a factory called with {called_with} (for example "
                              f"functools.partial(torch.optim.SGD, lr=0.1)), or a dict player -> factory; got an "
                              f"instance of {type(value).__name__}")


def check_objective(objective) -> None:
    """Raise :class:`ObjectiveError` unless ``objective`` follows :class:`~hybridpgm.train.objective.Objective`
    (``module``, ``players()``, ``loss(player, batch)``): a model given to :func:`~hybridpgm.fit` in its place
    (``fit(vae, x)``) is named, with the objective that trains it."""
    missing = [name for name in ("module", "players", "loss") if not hasattr(objective, name)]
    if not missing:
        return
    kind = type(objective).__name__
    if hasattr(objective, "model") and hasattr(objective, "guide"):
        hint = f"for a Pyro model and guide, fit(SVIObjective(m.model, m.guide), data) with m the {kind}"
    elif hasattr(objective, "free_energy"):
        hint = f"for an energy model, fit(ContrastiveDivergence(m), data) (or PersistentCD) with m the {kind}"
    else:
        hint = "see hybridpgm.train.objective for the contract"
    raise ObjectiveError(f"fit takes an objective (module, players(), loss(player, batch)); got a {kind}, which "
                         f"has no {', '.join(missing)}: {hint}")


def check_optimizer(optimizer, player: str):
    """``optimizer`` if the ``optim`` factory returned a :class:`torch.optim.Optimizer` for ``player`` whose
    learning rates are finite and non-negative, else a :class:`ConfigError` naming what it returned, or the
    player, the param group and its ``lr`` (a NaN, infinite or negative rate would turn the parameters into
    NaN or climb the loss at the first step; it is refused before any).

    ``pyro.optim`` wrappers (:class:`~pyro.optim.PyroOptim`, including
    :class:`~hybridpgm.infer.grouped_optim.GroupedOptim`) never get here: :func:`check_factory` refuses them
    as ``optim`` values, and a factory returning one is refused here as not a torch optimizer.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"the optim factory of player {player!r} returned {type(optimizer).__name__}, not a "
                          f"torch.optim.Optimizer; pass a factory such as functools.partial(torch.optim.Adam, lr=1e-3)")
    for index, group in enumerate(optimizer.param_groups):
        if "lr" not in group:  # an optimizer without a learning rate: nothing to check
            continue
        lr = group["lr"]
        where = "" if len(optimizer.param_groups) == 1 else f" (param group {index})"
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ConfigError(f"the optimizer of player {player!r} has lr{where} of shape {tuple(lr.shape)}, "
                              "expected a number")
        positive_real(lr, f"the lr of player {player!r}{where}", allow_zero=True)  # a tensor lr: one host read
    return optimizer


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` takes a required ``closure`` argument (:class:`torch.optim.LBFGS`), so that
    ``fit`` must step it with one (:meth:`~hybridpgm.train.player_step.Player.update`)."""
    try:
        parameter = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):  # a step without a signature (a builtin): the usual step()
        return False
    return parameter is not None and parameter.default is inspect.Parameter.empty


def check_closure_optimizer(optimizer: torch.optim.Optimizer, player: str, *,
                            precision: str | None) -> torch.optim.Optimizer:
    """``optimizer`` if ``fit`` can step it: any optimizer whose ``step`` needs no closure, and one that needs
    a closure (:func:`needs_closure`: :class:`torch.optim.LBFGS`, which re-evaluates the loss and its gradients
    several times per step) without fp16's gradient scaler.  Accumulation and clipping apply to every evaluation
    of the closure; on several ranks each evaluation averages the loss and the gradients over the ranks in one
    all-reduce, so every rank's optimizer sees the same numbers and takes the same evaluations, in lock-step
    (:meth:`~hybridpgm.train.player_step.Player.update`).

    :raises ConfigError: naming the player and the optimizer, for ``precision="fp16"`` (torch's
        ``GradScaler`` cannot step an optimizer with a closure)."""
    if not needs_closure(optimizer):
        return optimizer
    what = f"the optimizer of player {player!r} ({type(optimizer).__name__}) needs a closure to step (it " \
        "re-evaluates the loss several times per step)"
    if precision == "fp16":
        raise ConfigError(f"{what}, which torch's fp16 gradient scaler cannot step: train it with precision=None "
                          "or 'bf16', or pick an optimizer whose step() takes no closure (Adam, SGD)")
    return optimizer


def check_scheduler(scheduler, optimizer: torch.optim.Optimizer, player: str):
    """``scheduler`` if the ``lr_scheduler`` factory returned a scheduler of ``optimizer`` for ``player`` (an
    object with a ``step`` method, not an optimizer), else a :class:`ConfigError` naming what it returned."""
    if isinstance(scheduler, torch.optim.Optimizer) or not callable(getattr(scheduler, "step", None)):
        raise ConfigError(f"the lr_scheduler factory of player {player!r} returned {type(scheduler).__name__}, not a "
                          "learning-rate scheduler; pass a factory such as "
                          "functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1000)")
    if getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ConfigError(f"the lr_scheduler factory of player {player!r} returned a scheduler of another optimizer "
                          "than the one it was given; build it on the optimizer passed to the factory")
    return scheduler


def callback_list(callbacks) -> list:
    """``callbacks`` as a list, each with a callable ``on_step_end`` (the one member the callback protocol of
    :mod:`hybridpgm.train.callbacks` requires).

    :raises ConfigError: a single callback or a non-iterable; a member without ``on_step_end`` (a function, an
        object with only ``on_fit_end``), naming its position and class, before any step runs."""
    if hasattr(callbacks, "on_step_end") or hasattr(callbacks, "on_fit_end") or not isinstance(callbacks, IterableABC):
        raise ConfigError(f"callbacks must be an iterable of callbacks (a list), got {type(callbacks).__name__}; "
                          f"wrap a single one in a list")
    callbacks = list(callbacks)
    for i, callback in enumerate(callbacks):
        if not callable(getattr(callback, "on_step_end", None)):
            raise ConfigError(f"callbacks[{i}] ({type(callback).__name__}) has no on_step_end(info) method, which "
                              "every callback needs; subclass hybridpgm.train.Callback, whose hooks do nothing by "
                              "default, and override the ones you use")
    return callbacks


def draw_seed() -> int:
    """The seed of a run given ``seed=None``: one draw from torch's global CPU generator, below ``2**31`` (a
    caller's ``torch.manual_seed`` or ``pyro.set_rng_seed`` makes it, hence the run, reproducible), whatever
    torch's default device."""
    return int(torch.randint(2**31, (), device="cpu").item())


def keeps_callers_rngs_when_unseeded(fit_fn: Callable) -> Callable:
    """Decorate ``fit``: when it is called without a ``seed`` (or ``seed=None``), put the caller's NumPy and
    Python RNG states back when it returns or raises.  The run seeds every global RNG from its seed
    (:func:`rng_seed`), which, drawn from torch's generator (:func:`draw_seed`), would otherwise replace the
    caller's NumPy and Python streams; torch's global generator is left where training leaves it."""
    @functools.wraps(fit_fn)
    def keeping(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("seed") is not None:
            return fit_fn(*args, **kwargs)
        python, numpy = random.getstate(), np.random.get_state()
        try:
            return fit_fn(*args, **kwargs)
        finally:
            random.setstate(python)
            np.random.set_state(numpy)
    return keeping


def keeps_module_modes(fit_fn: Callable) -> Callable:
    """Decorate ``fit``: every sub-module of the objective's module is back in its own training/evaluation mode
    when ``fit`` returns or raises (:func:`~hybridpgm.module_modes.keeping_modes`); ``fit`` itself switches a
    module in ``eval()`` to ``train()`` and leaves the sub-modules of a module in training mode as they are."""
    @functools.wraps(fit_fn)
    def keeping(objective: Any, *args: Any, **kwargs: Any) -> Any:
        module = getattr(objective, "module", None)
        if not isinstance(module, torch.nn.Module):  # fit names the bad objective itself
            return fit_fn(objective, *args, **kwargs)
        with keeping_modes(module):
            return fit_fn(objective, *args, **kwargs)
    return keeping
