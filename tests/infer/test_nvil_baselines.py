"""NVILBaselines (hybridpgm/infer/nvil_baselines.py): an unknown site is refused by name, and ``update`` reads a
signal that requires grad without keeping or backpropagating into its graph."""

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.infer import NVILBaselines
from hybridpgm.train.update_scope import one_update


@pytest.mark.parametrize("method", ["index", "statistics", "update"])
def test_an_unknown_site_is_refused_naming_it_and_the_sites(method):
    """It was ``list.index``'s bare ``ValueError: 'h3' is not in list``."""
    baselines = NVILBaselines(["h1", "h2", "layer_3"], input_dim=3)
    args = ("layer3",) if method != "update" else ("layer3", torch.zeros(4))
    with pytest.raises(ConfigError, match=r"^NVILBaselines has no baseline for site 'layer3'; did you mean "
                                          r"'layer_3'\? \(its sites: 'h1', 'h2', 'layer_3'\)$"):
        getattr(baselines, method)(*args)
    with pytest.raises(ValueError, match=r"^NVILBaselines has no baseline for site 3 \(its sites: "):
        baselines.index(3)  # still a ValueError, as before
    assert [baselines.index(s) for s in ("h1", "h2", "layer_3")] == [0, 1, 2]
    assert torch.equal(baselines.mean, torch.zeros(3)) and torch.equal(baselines.var, torch.ones(3))


@pytest.mark.parametrize("in_update", [False, True], ids=["outside_fit", "fit_update"])
def test_update_keeps_no_graph_of_a_signal_that_requires_grad(in_update):
    """Guard (passes before and after: ``update`` runs under ``torch.no_grad``): a baseline never backpropagates
    into the signal.  A signal that requires grad (not detached by the caller) gives exactly the buffers of its
    detached copy, the buffers and pooled statistics hold no graph, and the signal's graph is left as it was."""
    weight = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    signals = [weight * torch.linspace(-2.0, 3.0, 6, dtype=torch.float64), weight ** 2 * torch.arange(4.0).double()]
    results = []
    for detach in (True, False):
        baselines = NVILBaselines(["h1", "h2"], input_dim=3, decay=0.6).double()
        with one_update() if in_update else torch.enable_grad():
            for signal in signals:
                baselines.update("h2", signal.detach() if detach else signal)
        held = [baselines.mean, baselines.var, *(t for v in baselines._pooled.values() for t in v[1:])]
        assert not any(isinstance(t, torch.Tensor) and (t.requires_grad or t.grad_fn is not None) for t in held)
        results.append((baselines.mean.clone(), baselines.var.clone()))
    assert all(torch.equal(a, b) for a, b in zip(*results))
    assert results[0][0][1] != 0 and bool((results[0][0][:1] == 0).all())  # h2 moved, h1 did not
    signals[0].sum().backward()  # the signal's own graph is intact, and only its own use reaches weight
    assert torch.equal(weight.grad, torch.linspace(-2.0, 3.0, 6, dtype=torch.float64).sum().reshape(()))
