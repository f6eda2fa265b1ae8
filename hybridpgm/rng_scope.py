"""Keep a helper's draws out of the caller's random streams.

:func:`hybridpgm.fit` seeds every global RNG from its ``seed`` and leaves them
where training left them, as training loops do.  The one-call recipes built on
it (:func:`~hybridpgm.diagnostics.train_classifier`,
:func:`~hybridpgm.gp.train_deep_kernel`, :func:`~hybridpgm.gp.train_gp_lstm`)
take a default seed, so a caller who computes a metric in the middle of an
experiment would find torch's, NumPy's and Python's streams reset to that seed
afterwards.  They run inside :func:`keeping_global_rngs`, reproducible from
their seed and leaving the caller's streams as they were.

:func:`restoring_global_rngs` is the same scope without a seed: the draws inside come from the caller's streams,
which are put back on exit.  :func:`hybridpgm.load` rebuilds a model inside it (the constructor's random
initialisation, overwritten by the saved weights, does not move the caller's streams), and
:class:`~hybridpgm.train.EvaluateEvery` runs its evaluation inside it (a Monte Carlo metric does not change the
trained model).

:func:`seeded_from_generator` is the scope of a sampler given a ``torch.Generator``: the networks it evaluates
draw from torch's global streams (a dropout in training mode, or one that draws in evaluation mode too), which it
seeds from one draw of the generator and restores, so the samples repeat for the same generator, whatever the
networks' modes, and the caller's streams do not move.  :func:`seeded_globally_from` is the same for code whose
draws all come from the global streams (a Pyro program's sample statements).  Both seed and restore torch's
streams only: the code they run draws nothing from NumPy's or Python's, and restoring those (as they did before)
rewound the draws another thread made from them during the call.

These streams are one per process.  Each scope holds hybridpgm's process-wide lock
(:func:`~hybridpgm.global_state_lock.holding_global_state`) from its snapshot to its restore: two threads seeding
and restoring them at once drew from each other's seeds and rewound each other's streams (the samples of a
generator did not repeat, and the caller's stream moved).  A scope around a whole training run
(:func:`~hybridpgm.gp.train_deep_kernel` with a seed) thus holds the lock for the whole run.  Without a generator
the sampler scopes hold the lock all the same: the draws then come from the global streams, which a seeded
:func:`hybridpgm.fit` in another thread owns while one of its steps runs.

:func:`global_rng_states` and :func:`set_global_rng_states` take and put back the streams' states as they are:
:func:`~hybridpgm.param_store_scope.let_other_threads_in` swaps them, with Pyro's param store, when ``fit`` lets
another thread's calls run between two of its steps.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from typing import ContextManager, Iterable, Iterator

import numpy as np
import torch

from hybridpgm.checks import generator_or_none, seed_of
from hybridpgm.global_state_lock import held_depth, holding_global_state

__all__ = ["cuda_indices", "fixed_rng", "global_rng_states", "keeping_global_rngs", "restoring_global_rngs",
           "seeded_from_generator", "seeded_globally_from", "set_global_rng_states"]


def cuda_indices(devices: Iterable[torch.device | str | int] | None) -> list[int]:
    """The CUDA device indices among ``devices`` (CPU entries dropped, ``"cuda"`` without an index is the
    current device, an ``int`` is a CUDA index), sorted and without repeats.  ``None``: the CUDA devices
    already initialised (none when CUDA is not), so that nothing initialises CUDA just to save its state."""
    if devices is None:
        return list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() \
            else []
    indices = set()
    for device in devices:
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        if device.type == "cuda":
            indices.add(device.index if device.index is not None else torch.cuda.current_device())
    return sorted(indices)


def global_rng_states(*, numpy_python: bool = True) -> dict:
    """The states of torch's CPU generator, of the CUDA generators already initialised, and (with
    ``numpy_python``) of NumPy's global ``RandomState`` and Python's ``random``, for
    :func:`set_global_rng_states`.  Nothing initialises CUDA to read them.

    :param bool numpy_python: also NumPy's and Python's states (reading them costs tens of microseconds, torch's
        CPU state about one).
    :returns: a dict ``"cpu"`` (and a CUDA device index, ``"numpy"``, ``"python"``) -> state.
    """
    states: dict = {"cpu": torch.default_generator.get_state()}
    if torch.cuda.is_initialized():  # checked first: cheaper than cuda_indices's is_available()
        for index in cuda_indices(None):
            states[index] = torch.cuda.get_rng_state(index)
    if numpy_python:
        states["numpy"], states["python"] = np.random.get_state(), random.getstate()
    return states


def set_global_rng_states(states: dict) -> None:
    """Put back the states :func:`global_rng_states` took: those it holds, the other streams left as they are.

    :param states: what :func:`global_rng_states` returned."""
    for key, state in states.items():
        if key == "cpu":
            torch.default_generator.set_state(state)
        elif key == "numpy":
            np.random.set_state(state)
        elif key == "python":
            random.setstate(state)
        else:
            torch.cuda.set_rng_state(state, key)


@contextlib.contextmanager
def restoring_global_rngs(devices: Iterable[torch.device | str | int] | None = None, *,
                          numpy_python: bool = True) -> Iterator[None]:
    """Draw from the caller's streams inside, and restore torch's CPU generator, those of the CUDA ``devices``,
    NumPy's global ``RandomState`` and Python's ``random`` on exit, also by an exception (what
    ``pyro.util.get_rng_state``/``set_rng_state`` keep, and the CUDA generators).

    :param devices: the devices whose CUDA generators the code inside may draw from (see :func:`cuda_indices`;
        CPU entries are ignored); ``None``: the CUDA devices already initialised.
    :param bool numpy_python: also restore NumPy's and Python's streams; ``False`` for code that draws from
        torch's alone (a network, a Pyro program): restoring the others would only rewind the draws another
        thread made from them meanwhile.
    """
    with holding_global_state():
        if not numpy_python:
            with torch.random.fork_rng(devices=cuda_indices(devices)):
                yield
            return
        python, numpy = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=cuda_indices(devices)):
                yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


@contextlib.contextmanager
def keeping_global_rngs(seed: int | None = None, *, what: str = "seed", numpy_python: bool = True) -> Iterator[None]:
    """Seed torch with ``seed`` inside, and restore torch's CPU generator and those of the CUDA devices already
    initialised, NumPy's global ``RandomState`` and Python's ``random`` on exit, also by an exception.

    ``seed=None`` is no scope at all: the draws inside come from the caller's streams and advance them.
    Only the generators it restores are seeded (not ``torch.manual_seed``, which, where CUDA is available but
    not started, queues a seed for every device that would run at CUDA's start-up, after the scope).

    :param seed: an integer torch accepts as a seed (:func:`~hybridpgm.checks.seed_of`: ``[-2**63, 2**64)``),
        or ``None``.
    :param what: the argument, as an error names it (``"train_gp_lstm seed"``).
    :param bool numpy_python: also restore NumPy's and Python's streams (:func:`restoring_global_rngs`): a
        training run seeds them (:func:`hybridpgm.fit`); ``False`` where the code inside draws from torch's alone.
    :raises ConfigError: ``seed`` is not ``None`` nor an integer in torch's range (a ``bool``, a float, a
        string), checked before anything is seeded.
    """
    if seed is None:
        yield
        return
    seed = seed_of(seed, what)
    with holding_global_state():  # before cuda_indices reads which devices are started
        devices = cuda_indices(None)
        with restoring_global_rngs(devices, numpy_python=numpy_python):
            _seed_torch(seed, devices)
            yield


def _seed_torch(seed: int, devices: list[int]) -> None:
    """Seed torch's CPU generator and the CUDA generators of ``devices`` (indices) with ``seed``."""
    torch.default_generator.manual_seed(seed)
    for index in devices:
        torch.cuda.default_generators[index].manual_seed(seed)


@contextlib.contextmanager
def seeded_from_generator(generator: torch.Generator | None, modules: Iterable[torch.nn.Module]) -> Iterator[None]:
    """Evaluate ``modules`` with torch's global streams seeded from ``generator``, restored on exit.

    Networks draw their random numbers (dropout masks, a noise layer's noise) from torch's global streams, not
    from the generator a sampler is given.  With a generator this scope takes one draw :math:`s \\sim
    \\mathcal{U}\\{0, \\dots, 2^{62}-1\\}` from it, seeds torch's CPU generator and the CUDA generators of the
    generator's device and of the modules' parameters and buffers with :math:`s`, and restores them on exit
    (:func:`restoring_global_rngs`): the draws inside repeat for the same ``generator`` state and the caller's
    streams do not move.  NumPy's and Python's global streams are left alone (neither seeded nor restored): a
    network draws from torch's, and restoring them only rewound what another thread drew from them meanwhile.
    It does so whatever the modules' modes: a network that draws in evaluation mode (``F.dropout(x, p,
    training=True)``) draws from the generator too, and the generator advances by the same one draw in both modes,
    so a network whose output does not depend on its mode gives the same samples in training and evaluation mode.

    With no ``generator`` the networks' draws, if any, come from and advance the global streams, as Pyro's do;
    with no ``modules`` (a table-only Bayes net or Markov net) nothing inside draws from them and the generator is
    not advanced.  Either way the scope only holds hybridpgm's process-wide lock (no other thread's hybridpgm call,
    a step of a seeded :func:`hybridpgm.fit` for one, draws from the global streams meanwhile).

    :param generator: the sampler's generator (CPU or CUDA), or ``None``.
    :param modules: the networks the code inside evaluates (their devices' CUDA generators are seeded).
    :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None``
        (:func:`~hybridpgm.checks.generator_or_none`).
    """
    generator = generator_or_none(generator, "generator")
    modules = list(modules)
    if generator is None or not modules:  # no network: nothing inside draws from the global streams
        if held_depth():  # held already (a training step): nothing to take
            yield
            return
        with holding_global_state():  # unseeded draws: not while another thread's seeded fit runs a step
            yield
        return
    with holding_global_state():  # the whole scope: no other thread's call seeds or restores in between
        seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
        devices = [generator.device]
        if torch.cuda.is_initialized():  # a network on a GPU has initialised CUDA: no query on a CPU-only run
            tensors = itertools.chain.from_iterable(itertools.chain(m.parameters(), m.buffers()) for m in modules)
            devices += {t.device for t in tensors}
        devices = cuda_indices(devices)
        # which reads (and so initialises) the CUDA generators of devices; NumPy's and Python's streams are
        # neither seeded nor restored: nothing inside draws from them (a network's draws are torch's)
        with restoring_global_rngs(devices, numpy_python=False):
            _seed_torch(seed, devices)
            yield


def seeded_globally_from(generator: torch.Generator | None) -> ContextManager[None]:
    """A scope whose draws from torch's global streams are a function of ``generator``'s state: for draws that
    take no generator (the sample statements of a Pyro program, a user's ``generate`` override, dropout).

    With a generator: one draw :math:`s \\sim \\mathcal U\\{0, \\dots, 2^{62}-1\\}` from it (on its device)
    seeds torch's CPU generator and the CUDA generators already initialised, restored on exit
    (:func:`keeping_global_rngs`; NumPy's and Python's streams left alone, as a Pyro program draws from torch's
    alone): like :func:`seeded_from_generator`, except that it seeds
    the CUDA generators already initialised rather than those of the networks' devices, and seeds without
    networks.  With ``None``: the draws come from and advance the global streams, and the scope only holds
    hybridpgm's process-wide lock (as :func:`seeded_from_generator` without a generator).

    :param generator: a :class:`torch.Generator` (checked by the caller with
        :func:`~hybridpgm.checks.generator_or_none`), or ``None``.
    """
    if generator is None:  # held already (a GAN's noise in a training step): no second entry
        return contextlib.nullcontext() if held_depth() else holding_global_state()
    return keeping_global_rngs(int(torch.randint(2**62, (), generator=generator, device=generator.device)),
                               numpy_python=False)  # a Pyro program draws from torch's streams alone


@contextlib.contextmanager
def fixed_rng(device: torch.device | str, seed: int = 0) -> Iterator[None]:
    """Draw the random numbers inside from torch's generator of ``device`` (and the CPU's) seeded with ``seed``,
    and leave the caller's generators as they were: the draws of a numerical estimate or of a replay are then a
    fixed function of its inputs.  Only the CUDA generator of ``device`` is forked and seeded (not
    ``torch.manual_seed``, which would seed every CUDA device).

    For one: above ``gpytorch.settings.max_cholesky_size`` GPyTorch estimates log-determinants (stochastic Lanczos
    quadrature) and, under ``fast_pred_var``, predictive variances from random probe vectors of the global
    generator: under this scope such an estimate is a fixed function of the model and its inputs.

    Like the other scopes it holds hybridpgm's process-wide lock from its fork to its restore (re-entrant: the code
    inside may take it again), so another thread's seeded scope cannot reseed or rewind the generators in between.
    """
    cuda = cuda_indices([device])
    with holding_global_state(), torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield
