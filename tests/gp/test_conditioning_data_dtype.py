"""A GP converted to 16 bits after it was built (``model.to(torch.bfloat16)``, ``model.half()``) is refused by its
queries and by ``save`` as the constructor refuses 16-bit data (found by an audit of serving: torch's raw
"cholesky_cpu not implemented for 'BFloat16'", and ``save`` wrote a file ``load`` refused)."""

import copy

import pytest
import torch

import hybridpgm
from hybridpgm.errors import CheckpointError, DataError
from hybridpgm.gp import GPLSTM, DeepKernelGP


def _models():
    torch.manual_seed(0)  # the networks' initialisation
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=g), torch.randn(20, generator=g)
    windows, targets = torch.randn(12, 4, 1, generator=g), torch.randn(12, generator=g)
    return [(DeepKernelGP(x, y), x, y, x[:2]), (GPLSTM(windows, targets), windows, targets, windows[:2])]


@pytest.mark.parametrize("convert", [lambda m: m.to(torch.bfloat16), lambda m: m.half()], ids=["bfloat16", "half"])
def test_a_gp_converted_to_16_bits_is_refused_by_its_queries_and_by_save(convert, tmp_path):
    for model, x, y, query in _models():
        reference = copy.deepcopy(model)
        convert(model)
        name = type(model).__name__
        with pytest.raises(DataError, match=rf"{name}'s training data \(converted with the model after it was "
                                            r"built.*has dtype torch\.(bfloat16|float16)"):
            model.predict(query.to(model.train_x.dtype))
        path = tmp_path / f"{name}.pt"
        with pytest.raises(CheckpointError, match=rf"cannot save {name}: {name}'s training data"):
            hybridpgm.save(model, path)
        assert not path.exists()
        model.float()
        model.set_train_data(x, y)  # as the message says: it answers as the float32 model of its rounded state
        reference.load_state_dict(model.state_dict())
        torch.testing.assert_close(model.predict(query), reference.predict(query), rtol=0, atol=0)
