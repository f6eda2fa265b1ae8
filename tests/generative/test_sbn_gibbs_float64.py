"""SBNGibbs' full conditionals in float64 at logits above 20, against brute force.

The log-odds of a unit add, over the layer below, the change of :math:`\\log \\mathrm{Bern}(x; \\sigma(z))`
between the unit off and on; with torch's default softplus threshold 20 each such term was off by up to
:math:`e^{-20} \\approx 2 \\cdot 10^{-9}` in float64 (the reference :func:`sbn_brute_force.log_joint` uses
``logsigmoid``, exact there).  The tolerance, 1e-13 of the largest :math:`|\\log p(x, h)|`, is 100 times
float64's rounding of the few sums of terms up to 40 that form it (measured: about 1e-16) and 1e3 times below
the old error.
"""

import torch

from hybridpgm.generative import SBNGibbs, SigmoidBeliefNet
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import single_thread  # noqa: F401


def _band_sbn(sizes):
    """A float64 SBN whose decoders' logits lie in 20-22 (biases 20, weights in [0, 0.5])."""
    g = torch.Generator().manual_seed(0)
    sbn = SigmoidBeliefNet(sizes).double()
    with torch.no_grad():
        sbn.prior_logits.normal_(0.0, 1.0, generator=g)
        for dec in sbn.decoders:
            dec.weight.copy_(0.5 * torch.rand(dec.weight.shape, generator=g, dtype=torch.float64))
            dec.bias.fill_(20.0)
    return sbn


def test_full_conditional_float64_matches_brute_force_at_large_logits():
    sizes = [4, 3, 2]
    sbn = _band_sbn(sizes)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    configs = [h.double() for h in bf.configurations(sbn)]
    with torch.no_grad():
        lp = bf.log_joint(sbn, x, configs)  # [S, B]
        flat = torch.cat(configs, -1)
        S = lp.shape[0]
        hs = [h.unsqueeze(1).expand(S, 2, h.shape[-1]) for h in configs]
        gibbs = SBNGibbs(sbn)
        column = 0
        worst = 0.0
        for layer in (1, 2):
            for unit in range(sizes[layer]):
                flipped = flat.clone()
                flipped[:, column] = 1 - flipped[:, column]
                partner = (flipped.unsqueeze(1) == flat.unsqueeze(0)).all(-1).double().argmax(1)
                on = flat[:, column] == 1
                expected = torch.where(on.unsqueeze(-1), lp - lp[partner], lp[partner] - lp)  # [S, B]
                got = gibbs.full_conditional(x, hs, layer, unit)
                worst = max(worst, (got - expected).abs().max().item())
                column += 1
    assert worst <= 1e-13 * lp.abs().max().item(), f"log-odds error {worst:.3g}"
