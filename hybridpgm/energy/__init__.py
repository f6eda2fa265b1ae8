"""Boltzmann machines: RBM, DBN, DBM."""

__all__: list[str] = []
