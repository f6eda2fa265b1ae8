"""The constructor options of :class:`~hybridpgm.energy.rbm.RBM` and :class:`~hybridpgm.energy.dbm.DBM` as
attributes.

Two kinds (:class:`hybridpgm.options.Option`):

* read at each call, so they may be changed after construction: ``probabilities`` (both: whether visible data in
  :math:`[0, 1]` are accepted) and the DBM's ``mean_field_steps``.  Assigning one runs the constructor's check (a
  refused value raises the constructor's exception and leaves the old value) and records the value, so that
  :func:`hybridpgm.save` writes it and :func:`hybridpgm.load` rebuilds the machine with it;
* deciding the parameters' shapes or the energy, so fixed once the machine is built: the RBM's ``num_visible``,
  ``num_hidden`` and ``visible_type`` (the constructor's ``visible``), the DBM's ``sizes``.  Assigning one raises
  :class:`~hybridpgm.errors.FixedOptionError` (an :class:`AttributeError` and a
  :class:`~hybridpgm.errors.ConfigError`): build a new machine instead.
"""

from __future__ import annotations

from hybridpgm.checks import flag, positive_int
from hybridpgm.errors import ModelSpecError
from hybridpgm.options import PARAMETERS_BUILT, Option

__all__ = ["DBMOptions", "RBMOptions"]


class RBMOptions:
    """The options of an :class:`~hybridpgm.energy.rbm.RBM` kept as attributes (a mixin; see the module
    docstring)."""

    num_visible = Option(fixed=PARAMETERS_BUILT, doc="""``V`` (fixed: it decides the parameters' shapes).""")
    num_hidden = Option(fixed=PARAMETERS_BUILT, doc="""``H`` (fixed: it decides the parameters' shapes).""")
    visible_type = Option(fixed=PARAMETERS_BUILT, doc="""``"bernoulli"`` or ``"gaussian"``, the constructor's
        ``visible`` (fixed: it decides the energy and the meaning of ``sigma``; build a new RBM for the other
        type).""")
    probabilities = Option(
        lambda rbm, value: flag(value, "RBM probabilities", error=ModelSpecError),
        """Bernoulli units: whether data in ``[0, 1]`` are accepted, read at each call.  Assigning checks the value
        as the constructor does and :func:`hybridpgm.save` records it.

        :raises ModelSpecError: (on assignment) a value that is not ``True`` or ``False``.""")


class DBMOptions:
    """The options of a :class:`~hybridpgm.energy.dbm.DBM` kept as attributes (a mixin; see the module
    docstring)."""

    sizes = Option(fixed=PARAMETERS_BUILT, doc="""Layer sizes ``[V, H1, ...]`` (fixed: they decide the parameters'
        shapes).""")
    mean_field_steps = Option(
        lambda dbm, value: positive_int(value, "DBM mean_field_steps", error=ModelSpecError),
        """Sweeps of :meth:`~hybridpgm.energy.dbm.DBM.mean_field` when its ``steps`` is not given, read at each
        call.  Assigning checks the value as the constructor does and :func:`hybridpgm.save` records it.

        :raises ModelSpecError: (on assignment) a value that is not a positive integer.""")
    probabilities = Option(
        lambda dbm, value: flag(value, "DBM probabilities", error=ModelSpecError),
        """Whether visible data in ``[0, 1]`` are accepted, read at each call.  Assigning checks the value as the
        constructor does and :func:`hybridpgm.save` records it.

        :raises ModelSpecError: (on assignment) a value that is not ``True`` or ``False``.""")
