"""Python's RNG state in a checkpoint (hybridpgm/train/checkpoint_rng.py).

Before, ``random.getstate()`` went into the checkpoint as it is, a tuple of 625 ints, which the write's three walks
and the pickler went through value by value (about a third of a small model's checkpoint write).  It is now one int64
tensor (checkpoint format 4), given back to ``random.setstate`` exactly; a checkpoint of format 3, with the tuple,
still resumes bit for bit.
"""

import random

import torch

from hybridpgm import fit
from hybridpgm.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, write_atomically
from tests.train.helpers import LinearRegression, regression_data


def test_pythons_state_is_one_int64_tensor_and_is_restored_exactly(tmp_path):
    random.seed(3)
    random.gauss(0.0, 1.0)  # leaves a cached normal (gauss_next) in the state
    state = rng_state()
    version, internal, gauss = state["python"]
    assert isinstance(internal, torch.Tensor) and internal.dtype == torch.int64 and internal.shape == (625,)
    assert (version, tuple(internal.tolist()), gauss) == random.getstate() and gauss is not None
    expected = random.getstate()
    draws = [random.random() for _ in range(5)] + [random.gauss(0.0, 1.0), random.getrandbits(64)]

    save_checkpoint(tmp_path / "c.pt", {"rng": [state]})
    assert isinstance(torch.load(tmp_path / "c.pt", weights_only=True)["rng"][0]["python"][1], torch.Tensor)
    random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"][0])
    assert random.getstate() == expected
    assert [random.random() for _ in range(5)] + [random.gauss(0.0, 1.0), random.getrandbits(64)] == draws


class NoisyRegression(LinearRegression):
    """A loss scaled by a draw of Python's ``random``: the weights depend on that stream."""

    def loss(self, player, batch):
        return super().loss(player, batch) * (0.5 + random.random())


def _weights(ckpt=None, **kwargs):
    objective = NoisyRegression()
    fit(objective, regression_data(), batch_size=16, max_steps=6, seed=0, progress=False, checkpoint=ckpt, **kwargs)
    return {name: value.clone() for name, value in objective.module.state_dict().items()}


def _as_format_3(path):
    """The checkpoint at ``path`` rewritten as hybridpgm wrote it in format 3: Python's state a tuple of ints."""
    state = torch.load(path, weights_only=True)
    for ranks in state["rng"]:
        version, internal, gauss = ranks["python"]
        ranks["python"] = (version, tuple(internal.tolist() if isinstance(internal, torch.Tensor) else internal),
                           gauss)
    write_atomically(path, {**state, "format_version": 3}, "checkpoint")


def test_a_checkpoint_of_format_3_with_the_tuple_resumes_bit_for_bit(tmp_path):
    straight = _weights()
    for name, old in (("new.pt", False), ("old.pt", True)):
        ckpt = tmp_path / name
        objective = NoisyRegression()
        fit(objective, regression_data(), batch_size=16, max_steps=3, seed=0, progress=False, checkpoint=ckpt)
        if old:
            _as_format_3(ckpt)
            assert type(torch.load(ckpt, weights_only=True)["rng"][0]["python"][1]) is tuple
        random.seed(12345)  # the resume must bring back the stream the file holds, not find it as the run left it
        resumed = _weights(ckpt)
        assert all(torch.equal(resumed[k], straight[k]) for k in straight), name
        assert load_checkpoint(ckpt)["step"] == 6


def test_numpys_cached_normal_is_restored_exactly(tmp_path):
    """NumPy's legacy global generator draws normals in pairs and caches the second (``has_gauss``, ``cached``):
    a resumed run draws the normal the uninterrupted run draws next.  A mutation that stored ``has_gauss`` as 0, or
    the cached value as 0.0, survived the checkpoint tests (which drew no numpy normal before saving)."""
    import numpy as np

    np.random.seed(5)
    np.random.standard_normal()  # leaves the pair's second normal cached
    assert np.random.get_state()[3] == 1
    save_checkpoint(tmp_path / "c.pt", {"rng": [rng_state()]})
    draws = np.random.standard_normal(3)
    np.random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"][0])
    assert np.random.get_state()[3] == 1
    np.testing.assert_array_equal(np.random.standard_normal(3), draws)
