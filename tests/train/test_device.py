import pytest
import torch

from hybridpgm.errors import DeviceError
from hybridpgm.train.device import resolve_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected == resolve_device(None).type


@pytest.mark.parametrize("request_", ["tpu", "nonsense:3"])
def test_unknown_devices(request_):
    with pytest.raises(DeviceError):
        resolve_device(request_)


def test_missing_gpu_index():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(DeviceError):
        resolve_device(f"cuda:{count}")
