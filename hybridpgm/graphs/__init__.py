"""Declarative graphical models over named variables."""

from hybridpgm.graphs import cpd
from hybridpgm.graphs.bayes_net import BayesNet
from hybridpgm.graphs.bif import load_network, read_bif, write_bif
from hybridpgm.graphs.crf import CRFHead, LinearChainCRF
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.grids import grid_edges, ising_grid, potts_grid
from hybridpgm.graphs.markov_net import MarkovNet

__all__: list[str] = [
    "BayesNet",
    "CRFHead",
    "FactorGraph",
    "LinearChainCRF",
    "MarkovNet",
    "cpd",
    "grid_edges",
    "ising_grid",
    "load_network",
    "potts_grid",
    "read_bif",
    "write_bif",
]
