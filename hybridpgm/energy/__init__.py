"""Boltzmann machines: RBM, DBN, DBM."""

from hybridpgm.energy.dbm import DBM
from hybridpgm.energy.dbn import DBN, DBNAutoencoder
from hybridpgm.energy.finetune import ClassificationObjective, ReconstructionObjective
from hybridpgm.energy.rbm import RBM

__all__ = [
    "ClassificationObjective",
    "DBM",
    "DBN",
    "DBNAutoencoder",
    "RBM",
    "ReconstructionObjective",
]
