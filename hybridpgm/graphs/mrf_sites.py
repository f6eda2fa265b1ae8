"""The Pyro sites of :meth:`MarkovNet.model <hybridpgm.graphs.MarkovNet.model>` and the names that clash there.

In ``model`` each variable ``v`` is the sample site ``v``, a single factor ``e`` the factor site ``e``, factor ``f``
of a family ``e`` the site ``e[f]``; ``model`` adds the plate ``data``, the :math:`-\\log Z` factor
``log_partition`` and the parameter sites ``markov_net$$$...`` that ``pyro.module`` registers.  Pyro refuses two
sites of one name, so :class:`~hybridpgm.graphs.MarkovNet` refuses such names when they are declared (a factor
named like a variable: when ``model`` runs, since every other query serves it).
"""

from __future__ import annotations

__all__ = ["factor_site", "factor_what", "internal_clash"]


def internal_clash(site: str) -> str | None:
    """What ``site`` clashes with among :meth:`~hybridpgm.graphs.MarkovNet.model`'s own sites (after
    ``prefix``), or ``None``."""
    if site in ("data", "log_partition"):
        return f"the {'plate' if site == 'data' else '-log Z factor site'} {site!r} of MarkovNet.model"
    if site.startswith("markov_net$$$"):
        return "the parameter sites 'markov_net$$$...' that MarkovNet.model registers with pyro.module"
    return None


def factor_site(name: str, f: int, single: bool) -> str:
    """The site (after ``prefix``) of factor ``f`` of the family ``name`` in
    :meth:`~hybridpgm.graphs.MarkovNet.model`."""
    return name if single else f"{name}[{f}]"


def factor_what(name: str, f: int, single: bool) -> str:
    """Factor ``f`` of the family ``name`` as an error message names it."""
    return f"factor {name!r}" if single else f"factor {f} of the family {name!r} (site {name + f'[{f}]'!r})"
