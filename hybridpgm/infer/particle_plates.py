"""Which plate of a particle objective's programs is the data plate, over which the importance weights are taken
one per data point (:class:`~hybridpgm.infer.particle_elbo.ParticleELBO`: VIMCO, RWS, wake-sleep).

The data plate is the ``plate_name`` given or, by default, the outermost plate that holds every sample site:
a vectorized one (``with pyro.plate("data", N, subsample=idx):``, :func:`data_frame`) or a sequential one
(``for i in pyro.plate("data", N, subsample=idx):``, :func:`sequential_plate`, each of its iterations a data point,
grouped by :mod:`~hybridpgm.infer.particle_sequential`).  A vectorized plate that holds every site is the data
plate even inside a sequential one (``for t in pyro.plate("time", T): with data:``), as in
:class:`~hybridpgm.infer.IWAE`.
"""

from __future__ import annotations

from hybridpgm.errors import ObjectiveError
from hybridpgm.infer.particle_sequential import sequential_data_plates

__all__ = ["PARTICLE_PLATE", "data_frame", "sequential_plate"]

#: the name of the plate over the particles, outermost
PARTICLE_PLATE = "num_particles_vectorized"


def sequential_plate(traces, plate_name: str | None) -> str | None:
    """The sequential data plate (``for i in pyro.plate(...)``) of ``traces``, or ``None`` for a vectorized one:
    ``plate_name`` where it is a sequential plate that holds every sample site and lies in no vectorized plate;
    by default the outermost such plate, unless a vectorized plate holds every site (that one is the data plate,
    as in IWAE: ``for t in pyro.plate("time", T): with data:``).

    :param traces: the model's and the guide's traces.
    :param plate_name: the data plate's name given, or ``None``."""
    sites = [site for trace in traces for site in trace.nodes.values() if site["type"] == "sample"]
    candidates = sequential_data_plates(sites, PARTICLE_PLATE)
    if plate_name is not None or not candidates:
        return plate_name if plate_name in candidates else None
    vectorized = [{f.name for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLE_PLATE}
                  for site in sites]
    return None if set.intersection(*vectorized) else candidates[0]


def data_frame(traces, plate_name: str | None):
    """The vectorized plate over datapoints: ``plate_name`` or the outermost vectorized
    plate shared by every sample site of ``traces`` (the particle plate excluded).

    :param traces: the model's and the guide's traces.
    :param plate_name: the data plate's name given, or ``None``.
    :raises ObjectiveError: no site lies in a plate, a site lies outside the data plate, or the data plate named
        is a sequential plate inside a vectorized one."""
    per_site, sequential = {}, {}
    for site in (site for trace in traces for site in trace.nodes.values()):
        if site["type"] == "sample":
            per_site[site["name"]] = {f.name: f for f in site["cond_indep_stack"]
                                      if f.vectorized and f.name != PARTICLE_PLATE}
            for f in site["cond_indep_stack"]:
                if not f.vectorized:
                    sequential.setdefault(f.name, set()).add(site["name"])
    if plate_name is None:
        common = set.intersection(*(set(frames) for frames in per_site.values())) if per_site else set()
        if common:
            # outermost: the first in a site's cond_indep_stack (Pyro lists its frames outermost first); not the
            # least negative dim, which is the outermost only where Pyro allocates the dims itself (an outer
            # plate declared at dim=-2 around one at dim=-1 is the usual style)
            frames = next(iter(per_site.values()))
            return next(frame for name, frame in frames.items() if name in common)
        counts = {}
        for frames in per_site.values():
            for name in frames:
                counts[name] = counts.get(name, 0) + 1
        if not counts and sequential:  # the sequential plate holding the most sites, which is not every site
            plate_name = max(sorted(sequential), key=lambda name: len(sequential[name]))
        elif not counts:
            raise ObjectiveError("no site lies in a pyro.plate; per-datapoint importance weights need a data plate")
        else:
            plate_name = max(counts, key=counts.get)
    outside = [name for name, frames in per_site.items() if plate_name not in frames
               and name not in sequential.get(plate_name, ())]
    if outside:
        kind = "sequential data plate" if plate_name in sequential else "data plate"
        raise ObjectiveError(
            f"sample site(s) {outside} lie outside the {kind} {plate_name!r}; per-datapoint "
            "importance weights need every sample site inside it (no global latents)"
        )
    if plate_name in sequential:
        raise ObjectiveError(
            f"the data plate {plate_name!r} is a sequential plate (for i in pyro.plate(...)) inside a vectorized "
            f"plate (sites {sorted(sequential[plate_name])[:3]}): its iterations index something within a data "
            "point, not the data points; name the vectorized data plate as plate_name")
    return next(iter(per_site.values()))[plate_name]
