"""Checks that turn bad data into a :class:`~hybridpgm.errors.DataError` at the
door, before torch sees it.

**The dtype rule** (:func:`as_model_dtype`).  A model computes in one floating
dtype (its parameters' dtype, float32 by default).  Data of another dtype are
converted when the conversion is *exact*, and refused otherwise:

* ``bool`` is converted (``False``/``True`` become 0/1);
* integers (``uint8`` ... ``uint64``, ``int8`` ... ``int64``) are converted when every value
  lies within :math:`\\pm 2^{p}`, where :math:`p` is the number of significand
  bits of the model dtype (:math:`2^{24}` for float32, :math:`2^{53}` for
  float64), the range in which a float holds every integer exactly;
* a floating dtype of lower precision (float16, bfloat16 into float32; any of
  them into float64) is converted: widening is exact;
* a floating dtype of *higher* precision (float64 data, float32 model) is
  refused: rounding the data is a decision for the caller (``x.float()``, or
  ``model.double()``).  Complex and other dtypes are refused.

Every refusal names the data, the expected and the actual dtype.

**NaN/inf** (:func:`check_finite`) are found by a scan that works through the
tensor in chunks of about a million elements, so its temporary memory is a few
megabytes whatever the data set's size, and nothing is held after it returns.

**Where a batch came from.**  A model that finds a bad batch cannot know the
training step; :func:`batch_origin` lets the training loop say it
(``with batch_origin("training data, step 12"): loss = ...``) and
:func:`describe_origin` adds it to the message.
"""

from __future__ import annotations

import contextvars
import reprlib
from typing import Iterator

import torch

from hybridpgm.data.integer_range import integer_range, outside_exact_range
from hybridpgm.errors import DataError

__all__ = [
    "as_model_dtype",
    "batch_origin",
    "check_binary",
    "check_features",
    "check_finite",
    "check_model_input",
    "check_no_extra_arguments",
    "check_num_data",
    "count_nonfinite",
    "defer_finite",
    "describe_origin",
    "model_dtype_checks",
]

#: elements scanned at once by :func:`check_finite` (4 MiB of float32)
SCAN_CHUNK = 1 << 20

_ORIGIN: contextvars.ContextVar[str | None] = contextvars.ContextVar("hybridpgm_batch_origin", default=None)


class batch_origin:
    """Name the data that model checks see inside the block, e.g.
    ``"training data, step 12"``; messages of :func:`check_model_input` add it.

    A plain class, not a generator-based context manager: ``fit`` enters one per micro-batch, and
    inside a training step, after the matrix products have swept the caches, every Python object
    the step touches costs.

    :param description: how messages name the data inside the block, e.g. ``"training data, step 12"``.
    """

    __slots__ = ("description", "token")

    def __init__(self, description: str):
        self.description = description

    def __enter__(self) -> None:
        self.token = _ORIGIN.set(self.description)

    def __exit__(self, *exc_info) -> None:
        _ORIGIN.reset(self.token)


def describe_origin() -> str:
    """``" (<origin>)"`` inside :func:`batch_origin`, else ``""``."""
    origin = _ORIGIN.get()
    return f" ({origin})" if origin else ""


def _chunks(x: torch.Tensor, chunk: int = SCAN_CHUNK) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first_row, rows)`` views of ``x`` along dim 0, about ``chunk`` elements each."""
    if x.dim() == 0:
        yield 0, x.reshape(1)
        return
    row = max(1, x[0].numel()) if x.shape[0] else 1
    step = max(1, chunk // row)
    for start in range(0, x.shape[0], step):
        yield start, x[start:start + step]


def count_nonfinite(x: torch.Tensor) -> tuple[int, int | None]:
    """``(count, first_row)`` of the NaN/inf entries of ``x`` (``(0, None)`` when
    all are finite, and for non-floating tensors), scanned chunk by chunk."""
    if not (x.is_floating_point() or x.is_complex()):
        return 0, None
    count, first = 0, None
    for start, part in _chunks(x):
        finite = torch.isfinite(part)
        if not bool(finite.all()):
            bad = ~finite
            count += int(bad.sum())
            if first is None:
                first = start + int(bad.reshape(part.shape[0], -1).any(-1).nonzero()[0, 0])
    return count, first


def check_finite(x: torch.Tensor, name: str = "data") -> torch.Tensor:
    """Raise :class:`~hybridpgm.errors.DataError` if ``x`` holds NaN or inf; return ``x``.

    Scans ``x`` in chunks of :data:`SCAN_CHUNK` elements: the temporary memory
    is bounded by a few MiB and released on return.

    :param x: data of any shape (an integer or bool tensor always passes; complex ones are checked).
    :param name: the data, as the message names it (default ``"data"``).
    """
    bad, first = count_nonfinite(x)
    if bad:
        raise DataError(f"{name} (shape {tuple(x.shape)}) holds {bad} NaN/inf value(s), "
                        f"the first in row {first}")
    return x


def defer_finite(x: torch.Tensor, name: str = "data") -> torch.Tensor:
    """:func:`check_finite` whose flag waits for :func:`hybridpgm.fit`'s one host read per step
    (:func:`~hybridpgm.train.deferred_checks.check_or_defer`; outside a step it reads at once).  The flag
    is whether ``max(x)`` and ``min(x)`` are finite, which holds exactly when every entry is (NaN
    propagates through both); a failure raises :func:`check_finite`'s error.  Returns ``x``."""
    if x.is_floating_point() and x.numel():
        from hybridpgm.train.deferred_checks import check_or_defer

        def not_finite() -> DataError:
            check_finite(x, name)
            return DataError(f"{name} is not finite")  # not reached: check_finite raised

        check_or_defer(torch.isfinite(torch.stack([x.amax(), x.amin()])).all(), not_finite, f"{name} holds NaN or inf")
    return x


def check_features(x: torch.Tensor, expected: int, name: str = "data") -> torch.Tensor:
    """Raise a :class:`~hybridpgm.errors.DataError` unless ``x`` is ``N x expected``; return ``x``.

    :param x: a tensor, expected ``N x expected``.
    :param expected: the number of features (columns) ``x`` must have.
    :param name: the data, as the message names it (default ``"data"``).
    :raises DataError: ``x`` is not a :class:`torch.Tensor` (a list, a NumPy array, ``None``), or not
        ``N x expected``; the message names ``name``, the type or shape found and the shape expected.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} is a {type(x).__name__}, expected a tensor of shape (N, {expected})")
    if x.dim() != 2 or x.shape[1] != expected:
        raise DataError(f"{name} has shape {tuple(x.shape)}, expected (N, {expected})")
    return x


def check_binary(x: torch.Tensor, name: str = "data") -> torch.Tensor:
    """Raise a :class:`~hybridpgm.errors.DataError` unless every entry of ``x`` is 0 or 1; return ``x``.

    :param x: a tensor of any shape.
    :param name: the data, as the message names it (default ``"data"``).
    :raises DataError: ``x`` is not a :class:`torch.Tensor` (a list, a NumPy array, ``None``), or has an entry
        other than 0 and 1 (NaN included); the message names ``name``.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} is a {type(x).__name__}, expected a tensor of 0/1 entries")
    if not bool(((x == 0) | (x == 1)).all()):
        raise DataError(f"{name} (shape {tuple(x.shape)}) must be binary (0/1); binarize it first")
    return x


def _significand_bits(dtype: torch.dtype) -> int:
    return {torch.float16: 11, torch.bfloat16: 8, torch.float32: 24, torch.float64: 53}.get(dtype, 0)


def as_model_dtype(x: torch.Tensor, dtype: torch.dtype, name: str = "data", *, defer: bool = False) -> torch.Tensor:
    """``x`` in the model's floating ``dtype``, converted where that is exact
    (see the module's dtype rule), else a :class:`~hybridpgm.errors.DataError`
    naming ``name``, the expected and the actual dtype.

    Integer data cost one host read (whether they lie within :math:`\\pm 2^p`,
    :func:`~hybridpgm.data.integer_range.outside_exact_range`), none with ``defer``.

    :param x: data of any shape.
    :param dtype: the model's floating dtype.
    :param name: the data, as the message names it (default ``"data"``).
    :param defer: hand the integers' range flag to
        :func:`~hybridpgm.train.deferred_checks.check_or_defer`: inside :func:`hybridpgm.fit`'s step, or a
        :func:`~hybridpgm.train.deferred_checks.checks_read_once` block, it joins that block's one read.
    :returns: ``x`` itself when it has ``dtype``, else an exact converted copy.
    """
    x, outside, error = model_dtype_checks(x, dtype, name)
    if outside is not None:
        if defer:
            from hybridpgm.train.deferred_checks import check_or_defer  # here: hybridpgm.train imports hybridpgm.data

            check_or_defer(~outside, error, f"{name} has integers {dtype} does not hold exactly")
        elif bool(outside):
            raise error()
    return x


def model_dtype_checks(x: torch.Tensor, dtype: torch.dtype, name: str = "data"):
    """The device half of :func:`as_model_dtype`: ``(converted x, outside, error)``, ``outside`` the 0-d bool flag of
    integer data outside the range ``dtype`` holds exactly (``None`` where nothing is to read: a floating, ``bool``
    or empty ``x``), ``error`` the function building the :class:`~hybridpgm.errors.DataError` to raise where the
    flag is true (it reads the range, for the message).  Reads nothing; refuses at once what needs no read (a
    floating dtype finer than ``dtype``, complex, a ``dtype`` that is not floating).

    :raises DataError: as :func:`as_model_dtype`, for the refusals that read no value."""
    if x.dtype == dtype:
        return x, None, None
    if x.dtype == torch.bool:
        return x.to(dtype), None, None
    if x.is_floating_point():
        if _significand_bits(x.dtype) <= _significand_bits(dtype) and (
                x.dtype != torch.bfloat16 or dtype != torch.float16):
            return x.to(dtype), None, None
        raise DataError(f"{name} has dtype {x.dtype}, the model computes in {dtype}: converting would round "
                        f"the data; convert it yourself (x.to({dtype})) if that is intended, or move the model "
                        f"to {x.dtype} (model.to({x.dtype}))")
    if x.is_complex() or not _significand_bits(dtype):
        raise DataError(f"{name} has dtype {x.dtype}; the model expects {dtype}")
    if not x.numel():
        return x.to(dtype), None, None
    bits = _significand_bits(dtype)

    def outside_error() -> DataError:
        low, high = integer_range(x)
        return DataError(f"{name} has dtype {x.dtype} with values in [{low}, {high}], outside the range of "
                         f"integers {dtype} (the model's dtype) holds exactly (+-2^{bits}); scale the data and "
                         f"pass {dtype}")

    return x.to(dtype), outside_exact_range(x, bits), outside_error


def check_unit_values(v: torch.Tensor, what: str, *, gaussian: bool, probabilities: bool, model: str) -> None:
    """Check the values of visible data ``v`` for a Boltzmann machine's units: finite for Gaussian units, in
    ``[0, 1]`` with ``probabilities``, else exactly 0 or 1.  One host read, through
    :func:`~hybridpgm.train.deferred_checks.check_or_defer`: inside :func:`hybridpgm.fit`'s step none of its
    own (it joins the step's read).

    :param what: the data, as the message names it (``"RBM visible data 'v'"``).
    :param model: the model's class name, for the advice to build it with ``probabilities=True``.
    :raises DataError: NaN/inf, values outside ``[0, 1]`` (``probabilities``), or non-binary values.
    """
    from hybridpgm.train.deferred_checks import check_or_defer  # here: hybridpgm.train imports hybridpgm.data

    if not v.numel():
        return
    if gaussian:
        ok = torch.isfinite(torch.stack([v.amax(), v.amin()])).all()  # NaN propagates, inf is an extreme
    elif probabilities:
        low, high = torch.stack([v.amin(), v.amax()]).unbind()
        ok = (low >= 0) & (high <= 1)  # NaN propagates and fails both comparisons
    else:
        ok = (v * (v - 1)).abs().amax() == 0  # zero exactly at 0 and 1; NaN/inf at NaN/inf

    def invalid() -> DataError:
        if not bool(torch.isfinite(v).all()):
            return DataError(f"{what} holds NaN or inf")
        if probabilities:
            return DataError(f"{what} must lie in [0, 1] (probabilities=True)")
        return DataError(f"{what} must be binary (0/1) for Bernoulli units; binarize it or build the {model} with "
                         "probabilities=True to read values in [0, 1] as probabilities")

    check_or_defer(ok, invalid, f"{what} holds NaN or inf" if gaussian else
                   f"{what} holds values outside [0, 1]" if probabilities else f"{what} is not binary (0/1) or finite")


def check_model_input(x, *, features: int, dtype: torch.dtype, model: str, name: str = "x",
                      finite: bool = True, leading_dims: bool = False) -> torch.Tensor:
    """Validate one batch given to a model; return it in the model's ``dtype``.

    :param x: the batch, ``batch x features``.
    :param int features: the model's data dimension.
    :param dtype: the model's floating dtype (see :func:`as_model_dtype`).
    :param str model: the model's name for messages (``"VAE"``).
    :param str name: the argument's name.
    :param bool finite: scan for NaN/inf (``False`` where a stricter value
        check follows, such as a binary one, to spare a device-host sync).
    :param bool leading_dims: also accept ``[..., batch, features]``, leading
        (particle) dimensions before the batch (a guide given dreamed data).
    :raises DataError: naming the model, the argument, its shape, dtype or
        NaN/inf count, and the batch's origin inside :func:`batch_origin`.
    """
    where = f"{model} argument {name!r}{describe_origin()}"
    expected = f"(batch, {features})" + (f" or (..., batch, {features})" if leading_dims else "")
    if isinstance(x, (tuple, list)):
        raise DataError(f"{where} is a {type(x).__name__} of {len(x)} elements, expected one tensor of shape "
                        f"{expected}; a batch of (x, labels)? {model} models x only: pass the tensor")
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{where} is a {type(x).__name__}, expected a tensor of shape {expected}")
    if (x.dim() < 2 if leading_dims else x.dim() != 2) or x.shape[-1] != features:
        raise DataError(f"{where} has shape {tuple(x.shape)}, expected {expected}")
    x = as_model_dtype(x, dtype, where)
    return check_finite(x, where) if finite else x


def check_num_data(num_data, batch: int, *, model: str) -> int:
    """``num_data`` (the full data size of a subsampled plate) as an ``int``.

    A batch ``(x, labels)`` unpacked into ``model(x, num_data)`` would make the
    labels ``num_data``; this refuses anything but an integer of at least
    ``batch``, naming the model and what it got.

    :raises DataError: a tensor with elements, a non-integer, or a size below ``batch``.
    """
    if isinstance(num_data, torch.Tensor) and (num_data.dim() > 0 or num_data.is_floating_point()):
        raise DataError(f"{model} got a tensor of shape {tuple(num_data.shape)} and dtype {num_data.dtype} as "
                        f"num_data{describe_origin()}: was the batch an (x, labels) tuple? {model}.model(x, num_data) "
                        "models x only; give it the data alone (e.g. training_data(dataset) without labels) "
                        "and num_data as an int")
    if isinstance(num_data, bool) or not (isinstance(num_data, torch.Tensor) or hasattr(num_data, "__index__")):
        raise DataError(f"{model}: num_data must be an int (the full data size), got {type(num_data).__name__}")
    value = int(num_data)
    if value < batch:
        raise DataError(f"{model}: num_data={value} is smaller than the batch of {batch} rows{describe_origin()}")
    return value


def check_no_extra_arguments(extra: tuple, *, model: str, method: str, keywords: str, takes: str = "x",
                             after: str = "x") -> None:
    """Refuse positional arguments after those a Pyro program takes by position.

    An objective unpacks a batch ``(x, labels)`` into ``model(x, labels)``; where the
    options are keyword-only the labels would otherwise meet a raw ``TypeError``.
    The message names the program, what it got and, for a tensor (or NumPy array) of values right
    after ``x``, the likely cause (an ``(x, labels)`` batch), as :func:`check_num_data`
    does for the VAE; a number, or anything after the VAE's ``num_data``, is named
    as what it is, with the arguments the program takes by position.

    :param extra: the positional arguments after those the program takes by position.
    :param str model: the model's name for messages (``"SigmoidBeliefNet"``).
    :param str method: ``"model"`` or ``"guide"``.
    :param str keywords: the program's keyword options, for the message (``"num_data=..."``).
    :param str takes: the arguments the program takes by position, as in its signature (``"x, num_data"``).
    :param str after: the last of them as the message names it (``"num_data=12"``).
    :raises DataError: ``extra`` is not empty.
    """
    if not extra:
        return
    first = extra[0]
    array = type(first).__module__ == "numpy" and isinstance(getattr(first, "shape", None), tuple)
    values = (isinstance(first, torch.Tensor) and first.dim() > 0) or (array and len(first.shape) > 0)
    if isinstance(first, torch.Tensor):
        got = f"a tensor of shape {tuple(first.shape)} and dtype {first.dtype}"
    elif array:  # a NumPy array (labels), or a NumPy number
        got = (f"a NumPy array of shape {first.shape} and dtype {first.dtype}" if first.shape else
               f"the NumPy {first.dtype} {reprlib.repr(first.item())}")
    elif first is None:
        got = "None"
    elif isinstance(first, (bool, int, float, str)):
        got = f"the {type(first).__name__} {reprlib.repr(first)}"
    else:
        got = f"a {type(first).__name__}"
    head = (f"{model}.{method}({takes}, ...) got {len(extra)} positional argument(s) after {after}"
            f"{describe_origin()}, the first {got}")
    if values and takes == "x":  # right after x: the labels of an (x, labels) batch
        raise DataError(f"{head}: was the batch an (x, labels) tuple? {model} models x only; give it the data "
                        f"alone (e.g. training_data(dataset) without labels); its options are keywords ({keywords})")
    names = takes.split(", ")
    by_position = f"{names[0]} alone" if len(names) == 1 else " and ".join(names)
    raise DataError(f"{head}: {model}.{method} takes {by_position} by position"
                    + (" and models x only (no labels)" if values else "")
                    + f"; its {'other ' if len(names) > 1 else ''}options are keywords ({keywords})")
