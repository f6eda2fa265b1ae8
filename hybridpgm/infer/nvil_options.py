"""The checks of :class:`~hybridpgm.infer.nvil.NVIL`'s options that may be assigned after construction (``decay``,
``max_plate_nesting``), and the value of ``max_plate_nesting`` for an NVIL pickled before it was an option."""

from __future__ import annotations

from typing import Any

from hybridpgm.checks import positive_int, positive_real
from hybridpgm.errors import ConfigError

__all__: list[str] = []


def _plate_nesting(nvil: Any, value: Any) -> int | None:
    """``value`` (``None`` or an integer >= 0, else a ConfigError) given to the ELBO, once built, as Pyro would."""
    value = None if value is None else positive_int(value, "NVIL max_plate_nesting", minimum=0)
    elbo = vars(nvil).get("elbo")
    if elbo is not None:  # the constructor passes it to the ELBO it builds
        elbo.max_plate_nesting = float("inf") if value is None else value + _particle_plate(elbo)
    return value


def _particle_plate(elbo: Any) -> int:
    return 1 if elbo.vectorize_particles and elbo.num_particles > 1 else 0


def _plate_nesting_of(elbo: Any) -> int | None:
    """The ``max_plate_nesting`` an NVIL pickled before the option existed holds: its ELBO's, less the particle
    plate (``None`` while not yet guessed)."""
    nesting = elbo.max_plate_nesting
    return None if nesting == float("inf") else int(nesting) - _particle_plate(elbo)


def _decay(value: float) -> float:
    """``value`` as NVIL's decay, checked as :class:`NVILBaselines` checks it.

    :raises ConfigError: not a real number in ``[0, 1)``."""
    value = positive_real(value, "NVIL decay", allow_zero=True)
    if value >= 1.0:
        raise ConfigError(f"NVIL decay must be in [0, 1), got {value!r}")
    return value
