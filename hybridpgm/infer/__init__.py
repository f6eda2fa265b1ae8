"""Inference algorithms and training objectives, one per module.

Registration is an explicit import; ``__all__`` is kept alphabetical.
"""

from hybridpgm.infer.iwae import IWAE
from hybridpgm.infer.svi import SVIObjective

__all__ = [
    "IWAE",
    "SVIObjective",
]
