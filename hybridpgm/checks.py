"""Argument checks shared by the public API, raising :mod:`hybridpgm.errors` exceptions that name the argument.

Python integers and integer scalars (NumPy, 0-d integer tensors) pass as themselves; ``bool`` and floats are
refused rather than coerced (``2.5`` samples is a mistake, not three samples).  The checks are free (types,
shapes, devices; no device-host reads) unless their docstring says otherwise, so they may run in training steps.
The checks of names given to Pyro are in :mod:`hybridpgm.checks_names`, how messages show values in
:mod:`hybridpgm.checks_messages`; both are re-exported here.
"""

from __future__ import annotations

import inspect
import math
import operator
from typing import Callable, Sequence

import numpy as np
import torch

# re-exported: how messages show values, and the checks of names, were defined here
from hybridpgm.checks_messages import close_match, shown_items, type_name
from hybridpgm.checks_names import PYRO_MODULE_SEPARATOR, module_name, name_list, site_prefix
from hybridpgm.errors import ConfigError, DataError, DeviceError, ModelSpecError

__all__ = ["as_integer", "check_device", "check_empty", "check_log_z", "check_player", "close_match", "damping_of",
           "expanded_batch_shape", "flag", "generator_keywords", "generator_or_none", "layer_sizes", "module_name",
           "name_list", "positive_int", "PYRO_MODULE_SEPARATOR",
           "positive_real", "sample_count", "sample_shape_of", "seed_of", "shown_items", "site_prefix",
           "takes_keyword", "torch_readable", "type_name", "unit_fraction"]


def as_integer(value) -> int | None:
    """``value`` as an ``int`` when it is an integer (Python, NumPy, a 0-d integer tensor), else ``None``
    (``bool`` and floats included: they are refused, not coerced)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def torch_readable(value, what: str = "an array argument"):
    """``value`` ready for :func:`torch.as_tensor`: array-likes torch cannot read as they are become a NumPy array
    of the same values, dtype (in native byte order) and shape; a tensor, a writable native NumPy array with
    positive strides and anything else (numbers, lists) are returned unchanged, without a copy.

    - a pandas ``Series`` / ``DataFrame`` / ``Index`` / ``Categorical`` (anything with ``to_numpy()`` that is not
      a tensor) becomes ``to_numpy()``: its values, whatever its index (torch would read a ``Series`` with the
      index ``7, 8, 9`` by label and fail on label ``0``), a ``Categorical`` its values, not its codes;
    - a NumPy masked array (:class:`numpy.ma.MaskedArray`) without a masked entry becomes its data; one with a
      masked entry is refused (torch would silently read the hidden values as data);
    - a big-endian (non-native byte order) array is converted exactly to native order (torch refuses it);
    - an array with a negative stride (``a[::-1]``, :func:`numpy.flip`) becomes a C-contiguous copy (torch cannot
      view memory read backwards);
    - a read-only array (pandas' copy-on-write ``to_numpy()``, :func:`numpy.broadcast_to`) is copied (torch warns
      that it does not support non-writable tensors, at the caller's line).

    :param what: the argument as the error message names it (``"data column 'a'"``).
    :raises DataError: for a masked array with masked entries, naming ``what``, the shape and the count.
    """
    if isinstance(value, torch.Tensor):
        return value
    if not isinstance(value, np.ndarray):
        if not callable(getattr(value, "to_numpy", None)):
            return value
        value = value.to_numpy()
        if not isinstance(value, np.ndarray):
            return value
    if isinstance(value, np.ma.MaskedArray):
        masked = int(np.count_nonzero(np.ma.getmaskarray(value)))
        if masked:
            raise DataError(f"{what} is a NumPy masked array of shape {value.shape} with {masked} masked "
                            f"entr{'y' if masked == 1 else 'ies'}: mark missing values as documented (NaN in "
                            f"floats, -1 in state indices, None in a list of names), e.g. "
                            f"array.astype(float).filled(np.nan)")
        value = np.ma.getdata(value)
    if not value.dtype.isnative:
        return value.astype(value.dtype.newbyteorder("="))
    if not value.flags.writeable:
        return np.array(value, order="C")
    if any(s < 0 for s in value.strides):
        return np.ascontiguousarray(value)
    return value


def sample_count(value, what: str) -> int:
    """``value`` as a number of samples: a non-negative integer (zero gives empty results).

    :param what: the argument, as the message should name it (``"BayesNet.sample num_samples"``).
    :raises ConfigError: for a negative number, a ``bool`` or a non-integer.
    """
    n = as_integer(value)
    if n is not None and n >= 0:
        return n
    raise ConfigError(f"{what} must be a non-negative integer, got {value!r}")


#: the seeds :meth:`torch.Generator.manual_seed` accepts: ``[-2**63, 2**64)`` (it raises ``ValueError`` beyond)
TORCH_SEED_RANGE = (-2**63, 2**64)


def seed_of(value, what: str, *, draws: int = 1) -> int:
    """``value`` as the seed of a :class:`torch.Generator`: an integer in torch's range ``[-2**63, 2**64)``
    (torch accepts negative seeds).

    :param what: the argument, as the message names it (``"load_dataset seed"``).
    :param draws: how many consecutive seeds ``value, value + 1, ...`` the caller seeds generators with (the
        last must be in range too).
    :raises ConfigError: for a ``bool``, a float or a non-number, or an integer outside the range.
    """
    n = as_integer(value)
    if n is None:
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    low, high = TORCH_SEED_RANGE
    if not low <= n <= high - draws:
        also = "" if draws == 1 else f", less the {draws - 1} seeds after it, which are used too"
        raise ConfigError(f"{what} must be an integer in [-2**63, 2**64 - {draws}] (the seeds torch accepts{also}), "
                          f"got {n}")
    return n


def generator_or_none(value, what: str) -> torch.Generator | None:
    """``value`` checked as a sampler's ``generator=``: a :class:`torch.Generator` (on any device) or ``None``.

    A seed passed for a generator (``generator=3``) would reach torch as a raw ``TypeError`` deep in the sampler.

    :param what: the argument, as the message names it (``"BayesNet.sample generator"``).
    :raises ConfigError: for anything else, naming ``what`` and the type received.
    """
    if value is None or isinstance(value, torch.Generator):
        return value
    shown = "" if "\n" in repr(value) else f" {value!r:.60}"  # a network's many lines: its type alone
    raise ConfigError(f"{what} must be a torch.Generator or None, got {type(value).__name__}{shown} (for a seed, "
                      "pass torch.Generator().manual_seed(seed))")


def generator_keywords(generator: torch.Generator | None, *methods: Callable, what: str = "generator") -> dict:
    """The keywords that pass a sampler's ``generator`` on to ``methods``, methods a subclass may override
    (``random_visible``, ``init_chains``, ``log_weights``, ...): none for ``None``, so that an override with the
    signature of older releases (no ``generator``) still runs when no generator is given.

    :param what: the argument, as the message names it (``"RBM.sample generator"``).
    :raises ConfigError: a generator given for a method that takes no ``generator`` keyword (its draws could not
        come from the generator), naming it and ``what``; before anything is drawn."""
    if generator is None:
        return {}
    missing = [getattr(m, "__qualname__", repr(m)) for m in methods if not takes_keyword(m, "generator")]
    if missing:
        raise ConfigError(f"{what}: {', '.join(missing)} take(s) no generator= keyword (an override written for an "
                          "older release?), so its draws cannot come from the generator; give it a keyword-only "
                          "generator=None and pass it on, or call without generator")
    return {"generator": generator}


def takes_keyword(function: Callable, name: str) -> bool:
    """Whether ``function`` takes the keyword ``name`` (by name, or through ``**kwargs``); ``True`` where its
    signature cannot be read (the call then shows what happens)."""
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any((p.name == name and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD for p in params)


def sample_shape_of(sample_shape, what: str) -> torch.Size:
    """A distribution's ``sample_shape`` (a size, a tuple of sizes, or one integer) as a ``torch.Size`` of checked
    counts (:func:`sample_count`)."""
    sizes = sample_shape if isinstance(sample_shape, (tuple, list)) else (sample_shape,)
    return torch.Size(sample_count(n, f"{what} sample_shape entries") for n in sizes)


def positive_int(value, what: str, *, error: type[Exception] = ConfigError, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum`` (an integer or integer scalar; not a ``bool`` or float).

    :param what: the argument as the message names it (``"RBM num_visible"``).
    :raises error: (:class:`~hybridpgm.errors.ConfigError` by default) naming ``what`` and the value.
    """
    n = as_integer(value)
    if n is None or n < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(f"{what} must be {kind}, got {value!r}")
    return n


def layer_sizes(sizes, what: str, *, error: type[Exception], minimum_length: int = 0) -> list[int]:
    """A sequence of positive layer sizes as a list of ``int`` (see :func:`positive_int`).

    :raises error: ``sizes`` is not a sequence, has fewer than ``minimum_length`` entries, or holds an entry that
        is not a positive integer (the message names the entry).
    """
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise error(f"{what} must be a sequence of positive integers, got {sizes!r}")
    if len(sizes) < minimum_length:
        raise error(f"{what} needs at least {minimum_length} entries, got {list(sizes)!r}")
    return [positive_int(s, f"{what}[{i}]", error=error) for i, s in enumerate(sizes)]


def positive_real(value, what: str, *, error: type[Exception] = ConfigError, allow_zero: bool = False) -> float:
    """``value`` as a finite ``float`` greater than zero (or at least zero with ``allow_zero``).

    :raises error: a non-number, a ``bool``, NaN, infinity or a value out of range, naming ``what``.
    """
    try:
        number = math.nan if isinstance(value, (bool, str, bytes)) else float(value)
    except (TypeError, ValueError, RuntimeError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise error(f"{what} must be a finite number {bound}, got {value!r}")
    return number


def unit_fraction(value, what: str, *, error: type[Exception] = ConfigError) -> float:
    """``value`` as a ``float`` strictly between 0 and 1 (a probability level, a held-out fraction).

    :raises error: a non-number, a ``bool``, NaN, or a value outside ``(0, 1)``, naming ``what``.
    """
    try:
        number = math.nan if isinstance(value, (bool, str, bytes)) else float(value)
    except (TypeError, ValueError, RuntimeError):
        number = math.nan
    if not 0 < number < 1:
        raise error(f"{what} must lie in (0, 1), got {value!r}")
    return number


def damping_of(value, what: str) -> float:
    """``value`` as a damping factor: a real number in ``[0, 1)`` (a ``bool`` or a string is refused).

    :param what: the option as the message names it (``"BeliefPropagation damping"``).
    :raises ConfigError: anything else, naming ``what`` and the value.
    """
    try:
        number = positive_real(value, what, allow_zero=True)
    except ConfigError:
        number = math.nan
    if not 0.0 <= number < 1.0:
        raise ConfigError(f"{what} must be a real number in [0, 1), got {value!r}")
    return number


def check_device(x: torch.Tensor, like: torch.Tensor, what: str) -> None:
    """Raise :class:`~hybridpgm.errors.DeviceError` unless ``x`` is on ``like``'s device (no host read)."""
    if x.device != like.device:
        raise DeviceError(f"{what} is on device {x.device}, the model's parameters on {like.device}; "
                          f"move the data (x.to({str(like.device)!r})) or the model")


def check_log_z(log_z, what: str):
    """A given :math:`\\log Z`: a finite real number or a finite one-element tensor (an AIS estimate).

    :raises ConfigError: anything else, naming ``what`` and what it got.
    """
    if isinstance(log_z, torch.Tensor):
        if log_z.numel() != 1 or log_z.is_complex() or not bool(torch.isfinite(log_z).all()):
            raise ConfigError(f"{what} log_z must be a finite scalar, got a tensor of shape {tuple(log_z.shape)} "
                              f"and dtype {log_z.dtype}" + (" holding NaN/inf" if log_z.numel() == 1 else ""))
        return log_z.reshape(())
    if isinstance(log_z, bool) or not isinstance(log_z, (int, float)) or not math.isfinite(log_z):
        raise ConfigError(f"{what} log_z must be a finite scalar, got {log_z!r}")
    return log_z


def check_empty(x: torch.Tensor, what: str) -> None:
    """Raise :class:`~hybridpgm.errors.DataError` for a batch of zero rows where no result is defined."""
    if x.numel() == 0:
        raise DataError(f"{what} is an empty batch (shape {tuple(x.shape)}); give at least one row")


def check_player(player, players, owner: str) -> None:
    """Raise unless ``player`` is one of ``players``: an objective's ``loss(player, batch)`` called with a
    name it does not have (every objective raises the same class, naming its own players).

    :raises ConfigError: naming ``owner``, its players and what it got.
    """
    if player in players:
        return
    names = [repr(p) for p in players]
    have = (f"one player {names[0]}" if len(names) == 1
            else f"players {', '.join(names[:-1])} and {names[-1]}")
    raise ConfigError(f"{owner} has {have}, got {player!r}")


def expanded_batch_shape(batch_shape: torch.Size, requested, what: str) -> torch.Size:
    """``requested`` as the :class:`torch.Size` a distribution of ``batch_shape`` expands to, as
    :meth:`torch.distributions.Distribution.expand` takes it.

    :raises ModelSpecError: ``batch_shape`` does not broadcast to it, naming ``what`` and both shapes (torch's
        own error named a parameter's shape)."""
    requested = torch.Size(requested)
    try:
        fits = torch.broadcast_shapes(batch_shape, requested) == requested
    except RuntimeError:
        fits = False
    if not fits:
        raise ModelSpecError(f"{what}: batch_shape {tuple(batch_shape)} does not broadcast to {tuple(requested)}")
    return requested


def flag(value, what: str, *, error: type[Exception] = ConfigError) -> bool:
    """An on/off option as ``bool``: ``True`` or ``False`` only (a string such as ``"no"`` is truthy, and ``1``
    or ``None`` may be a slip for another argument; none of them is read as a switch).

    :raises error: naming ``what`` and the value.
    """
    if not isinstance(value, bool):
        raise error(f"{what} must be True or False, got {value!r}")
    return value
