"""The group names of an ArviZ result under both generations: ``InferenceData.groups()`` (ArviZ 0.x) and a
``DataTree``'s children (ArviZ 1.x, where ``groups`` is a property of paths)."""


def group_names(idata) -> list[str]:
    """The top-level groups of ``idata``, in order."""
    return list(idata.children) if hasattr(idata, "children") else list(idata.groups())
