"""Shared helper of the NVIL tests (tests/infer/test_nvil*.py): a seeded sigmoid belief net and its data."""

from tests.generative.sbn_brute_force import binary, random_sbn


def _setup(seed=0):
    sbn = random_sbn([3, 2, 2], seed, scale=1.0)
    x = binary(2, 3, seed)
    return sbn, x
