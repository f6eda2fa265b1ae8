"""save's refusals name torch's tool a network carries, and say what to do (hybridpgm/serialization_tooling.py,
hybridpgm/serialization_layers.py).  Before: a hook-based norm or pruning in an nn.Sequential argument gave
"the Linear's attribute weight=tensor([[...]]) is not what the options saved" (the tensor dumped, the hook never
named); a ParametrizedLinear was "a torch.nn.ParametrizedLinear" with no word of the parametrization; torch's
AveragedModel was to be decorated with serializable, which cannot help."""

import contextlib
import re

import pytest
import torch
import torch.nn.utils.prune  # noqa: F401 (torch.nn.utils.prune.l1_unstructured)
from torch import nn
from torch.nn.utils import parametrizations
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.generative.gan import MLPGenerator
from hybridpgm.gp import DeepKernelGP


def _pruned(layer):
    torch.nn.utils.prune.l1_unstructured(layer, "weight", 0.5)
    return layer


def _gp(extractor):
    return DeepKernelGP(torch.randn(6, 3), torch.randn(6), extractor)


@pytest.mark.parametrize("apply, named", [
    (nn.utils.spectral_norm, r"forward pre-hooks \(the hook-based spectral_norm \(torch.nn.utils.spectral_norm\) "
                             r"on weight\)"),
    (nn.utils.weight_norm, r"forward pre-hooks \(the hook-based weight_norm \(torch.nn.utils.weight_norm\) on "
                           r"weight\)"),
    (_pruned, r"forward pre-hooks \(pruning \(L1Unstructured, torch.nn.utils.prune\) of weight\)"),
], ids=["spectral-norm", "weight-norm", "prune"])
def test_a_hook_based_tool_in_a_sequential_is_named_not_its_weight(apply, named, tmp_path):
    with pytest.warns(FutureWarning) if apply is nn.utils.weight_norm else contextlib.nullcontext():
        layer = apply(nn.Linear(3, 2))
    with pytest.raises(CheckpointError) as error:
        hybridpgm.save(_gp(nn.Sequential(layer)), tmp_path / "gp.pt")
    message = str(error.value)
    assert "tensor(" not in message
    assert re.search(r"cannot save DeepKernelGP\(feature_extractor=\.\.\.\)\[0\]: the Linear has " + named +
                     r", which a model file does not hold; apply it in the constructor of a module class decorated "
                     r"with hybridpgm", message), message
    assert not list(tmp_path.iterdir())


def test_a_parametrized_layer_in_a_sequential_names_the_parametrization(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), parametrizations.spectral_norm(nn.Linear(4, 2)))
    with pytest.raises(CheckpointError, match=r"\[1\]: nn.Sequential holds a ParametrizedLinear carrying spectral_norm "
                                              r"\(torch.nn.utils.parametrizations\) on weight, which a model file does "
                                              r"not rebuild; apply it in the constructor of a module class decorated "
                                              r"with hybridpgm.serialization.serializable"):
        hybridpgm.save(_gp(net), tmp_path / "gp.pt")


def test_a_parametrized_layer_alone_names_the_parametrization(tmp_path):
    with pytest.raises(CheckpointError, match=r"feature_extractor=\.\.\.\): it is a ParametrizedLinear carrying "
                                              r"orthogonal \(torch.nn.utils.parametrizations\) on weight, which a "
                                              r"model file does not rebuild; apply it in the constructor"):
        hybridpgm.save(_gp(parametrizations.orthogonal(nn.Linear(3, 3))), tmp_path / "gp.pt")


def test_an_averaged_model_is_refused_with_the_advice_to_save_its_module(tmp_path):
    torch.manual_seed(0)
    net = MLPGenerator(3, (2,), hidden=(8,))
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update_parameters(net)
    with pytest.raises(CheckpointError, match=r"cannot save AveragedModel: it is torch's AveragedModel, an average of "
                                              r"a model's weights \(EMA or SWA\), which a model file does not "
                                              r"rebuild; save the model it holds instead, "
                                              r"hybridpgm.save\(wrapper.module, path\)"):
        hybridpgm.save(ema, tmp_path / "ema.pt")
    assert not list(tmp_path.iterdir())
    hybridpgm.save(ema.module, tmp_path / "ema.pt")  # the advice works
    back = hybridpgm.load(tmp_path / "ema.pt")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), ema.module.state_dict().values()))


def test_a_data_parallel_wrapper_is_refused_with_the_advice_to_save_its_module(tmp_path):
    vae = hybridpgm.VAE(6, 2, [5])
    with pytest.raises(CheckpointError, match=r"cannot save DataParallel: it is torch's DataParallel, a data-parallel "
                                              r"wrapper, .*hybridpgm.save\(wrapper.module, path\)"):
        hybridpgm.save(nn.DataParallel(vae), tmp_path / "dp.pt")
