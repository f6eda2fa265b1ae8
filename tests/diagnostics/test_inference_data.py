"""The converters together, and the names importable from hybridpgm.diagnostics.inference_data, where they
lived before one module per source."""

import numpy as np
import torch

from hybridpgm.diagnostics import from_categorical, from_importance


def test_bfloat16_tensors_become_arviz_data():
    """Before: torch's raw TypeError 'Got unsupported ScalarType BFloat16' from every converter."""
    from hybridpgm.diagnostics import make_inference_data

    lw = torch.randn(40, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    data = from_importance(lw, {"z": lw})
    np.testing.assert_array_equal(data["sample_stats"]["log_weight"].values[0], lw.float().numpy())
    np.testing.assert_array_equal(data["sample_stats"]["proposal_z"].values[0], lw.float().numpy())
    assert set(data["posterior"]["z"].values[0].tolist()) <= set(lw.float().tolist())  # resampled draws
    probs = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.bfloat16)
    np.testing.assert_array_equal(from_categorical({"x": probs})["posterior"]["x"].values[0, 0], probs.float().numpy())
    assert make_inference_data({"posterior": {"a": lw.reshape(1, 40)}})["posterior"]["a"].dtype == np.float32


def test_the_converters_are_importable_from_inference_data_where_they_lived():
    """One module per source now; the old module and the package give the same objects."""
    import hybridpgm.diagnostics as diagnostics
    from hybridpgm.diagnostics import arviz_data, categorical_data, inference_data, sampler_data, svi_data

    homes = {"make_inference_data": arviz_data, "GROUPS": arviz_data, "from_categorical": categorical_data,
             "from_importance": sampler_data, "from_mcmc": sampler_data, "from_pyro_svi": svi_data,
             "from_svi": svi_data}
    assert sorted(inference_data.__all__) == sorted(homes)
    for name, home in homes.items():
        assert getattr(inference_data, name) is getattr(home, name)
        if name != "GROUPS":
            assert getattr(diagnostics, name) is getattr(home, name)
    assert svi_data.from_svi is svi_data.from_pyro_svi
