"""ChromaticGibbs draws a half-precision model's states from uniforms and noise of float32
(:meth:`hybridpgm.infer.ChromaticGibbs._draw`, review B of ca431c5): bfloat16 uniforms, whose largest value is
1 - 2^-8, cut the Gumbel noise's upper tail at 5.5 (float16's at 7.6), so a state of logit -8 below the other was
drawn with frequency 0.00006 (float16: 0.00015; 400,000 seeded chains) for softmax's 0.00034."""

import pytest
import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import ChromaticGibbs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_rare_state_of_a_half_model_is_drawn_at_its_probability(dtype):
    m = MarkovNet({"a": 2, "b": 2})
    m.add_factor("u", ["a"], torch.tensor([0.0, -8.0])).add_factor("ab", ["a", "b"], torch.zeros(2, 2))
    fg = m.to(dtype).factor_graph()
    x = ChromaticGibbs(num_sweeps=1)(fg, 400_000, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(fg.unary[0, 0].double(), 0)[1].item()  # the rounded table's probability: 0.00034
    sd = (p * (1 - p) / 400_000) ** 0.5
    assert abs(x[..., 0].double().mean().item() - p) < 5 * sd  # was 6.5 (float16) and 9.6 sd (bfloat16) below
