import pytest
import torch

from hybridpgm.errors import ConfigError, DeviceError
from hybridpgm.train.device import resolve_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected == resolve_device(None).type


@pytest.mark.parametrize("request_, match", [("tpu", "unknown device 'tpu'"), ("gpu", "unknown device 'gpu'"),
                                             ("nonsense:3", "unknown device 'nonsense:3'"),
                                             (3.5, "unknown device 3.5"), ("meta", "unsupported device 'meta'")])
def test_a_malformed_or_unsupported_device_is_a_config_error(request_, match):
    """A malformed name or an unsupported type is bad input: a ConfigError (a ValueError) naming the value, not a
    DeviceError (a RuntimeError), which is kept for a device this machine lacks."""
    with pytest.raises(ConfigError, match=match) as caught:
        resolve_device(request_)
    assert isinstance(caught.value, ValueError) and not isinstance(caught.value, DeviceError)


def test_missing_gpu_index():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(DeviceError, match=f"cuda:{count}") as caught:
        resolve_device(f"cuda:{count}")
    assert isinstance(caught.value, RuntimeError) and not isinstance(caught.value, ValueError)
