"""Shared fixtures of the adversarial-objective tests: tiny networks and data."""

import pytest
import torch

from hybridpgm.data import load_dataset
from hybridpgm.data.toy import ring_of_gaussians
from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator


def tiny_pair(dim: int = 2, noise: int = 4, hidden=(16,)):
    return MLPGenerator(noise, (dim,), hidden), MLPDiscriminator((dim,), hidden)


@pytest.fixture
def ring():
    return ring_of_gaussians(512, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


def assert_finite_history(result):
    for player, losses in result.history.loss.items():
        assert losses, player
        assert all(v == v and abs(v) < float("inf") for v in losses), player
