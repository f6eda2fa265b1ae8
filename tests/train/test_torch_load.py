"""The reasons given for a checkpoint or model file that cannot be read (hybridpgm/train/torch_load.py,
shared by load_checkpoint and hybridpgm.load)."""

import builtins
import errno
import os
import struct
import zipfile

import pytest
import torch

import hybridpgm
from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from hybridpgm.generative import VAE
from hybridpgm.train.checkpoint import load_checkpoint, save_checkpoint
from hybridpgm.train.torch_load import read_torch_file
from tests.train.helpers import LinearRegression, regression_data


def test_reading_a_fifo_is_refused_instead_of_waiting_for_a_writer(tmp_path):
    path = tmp_path / "c.pt"
    os.mkfifo(path)
    with pytest.raises(CheckpointError, match=r"checkpoint '.*c.pt' is a FIFO \(named pipe\), not a regular file"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"model file '.*c.pt' is a FIFO \(named pipe\), not a regular file"):
        hybridpgm.load(path)


def _truncated(tmp_path):
    path = tmp_path / "good.pt"
    save_checkpoint(path, {"step": 1, "w": torch.zeros(100)})
    data = path.read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize("content, reason", [
    (lambda tmp_path: b"", r"the file is empty \(0 bytes\)"),
    (lambda tmp_path: b"garbage" * 10, r"it is not a file written by torch.save \(its 70 bytes do not start with "
                                       "the zip signature"),
    (_truncated, "it is truncated or corrupt"),
])
def test_an_unreadable_file_is_named_with_its_reason(tmp_path, content, reason):
    """Before, an empty file gave 'cannot be read: ' and no reason, and a corrupt one torch's advice to
    load it with weights_only=False (unsafe, and no help: the file is broken)."""
    path = tmp_path / "bad.pt"
    path.write_bytes(content(tmp_path))
    for read, what in ((load_checkpoint, "checkpoint"), (hybridpgm.load, "model file")):
        with pytest.raises(CheckpointError, match=rf"cannot read {what} '.*bad.pt': {reason}") as info:
            read(path)
        assert "weights_only=False" not in str(info.value) and "False" not in str(info.value)
    with pytest.raises(CheckpointError, match=rf"cannot read checkpoint '.*bad.pt': {reason}"):
        fit(LinearRegression(), regression_data(), checkpoint=path, progress=False)


def test_a_file_of_objects_is_refused_without_advising_weights_only_false(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"format_version": 1, "obj": ValueError("arbitrary object")}, path)
    for read, what in ((load_checkpoint, "checkpoint"), (hybridpgm.load, "model file")):
        with pytest.raises(CheckpointError, match=rf"cannot read {what} '.*foreign.pt': it holds objects that "
                                                  r"loading with weights_only=True .* refuses \(Unsupported global: "
                                                  r"GLOBAL .*ValueError") as info:
            read(path)
        message = str(info.value)
        assert "weights_only=False" not in message and "`False`" not in message and "\n" not in message


class _UsersNet(torch.nn.Module):  # a module class of the user's, pickled by torch.save(model)
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)


@pytest.mark.parametrize("model", [VAE(6, 2, [4]), _UsersNet(), torch.nn.Linear(2, 1)])
def test_a_pickled_model_is_named_with_the_remedy_for_a_trusted_file(model, tmp_path):
    """Found by the LOADTRAINED audit (session 39): ``hybridpgm.load`` of a ``torch.save(model)`` file said "it was
    not written by hybridpgm" (a pickled hybridpgm model is), naming no way to read it."""
    path = tmp_path / "pickled.pt"
    torch.save(model, path)
    name = f"{type(model).__module__}.{type(model).__qualname__}"
    for read, what, tail in ((hybridpgm.load, "model file", r", then write a model file with hybridpgm.save"),
                             (load_checkpoint, "checkpoint", "$")):
        with pytest.raises(CheckpointError, match=rf"cannot read {what} '.*pickled.pt': it is a pickled "
                                                  rf"{name} \(what torch.save\(model\) writes\), not a hybridpgm "
                                                  rf"{what}, .*only if you trust the file \(unpickling runs code\), "
                                                  rf"load it with torch.load\(path, weights_only=False\){tail}"):
            read(path)
    assert isinstance(torch.load(path, weights_only=False), type(model))  # the remedy works


def _member_data_offset(data: bytes, info: zipfile.ZipInfo) -> int:
    """Where the bytes of ``info`` start in ``data`` (after its local header, whose extra field torch pads)."""
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    return info.header_offset + 30 + name_length + extra_length


def _flip_a_tensor_bit(path):
    """Flip one bit in the middle of the largest tensor's bytes of the torch file at ``path``; its member name."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    data[_member_data_offset(bytes(data), info) + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return info.filename


def _checkpoint_of_a_run(tmp_path):
    path = tmp_path / "run.pt"
    fit(LinearRegression(), regression_data(), checkpoint=path, progress=False, seed=0, max_steps=2)
    return path


def _model_file(tmp_path):
    return hybridpgm.save(VAE(64, 8, [64]), tmp_path / "vae.pt")


def test_a_flipped_bit_in_a_tensor_is_refused_naming_the_member(tmp_path):
    """Before, torch.load never checked the zip members' CRC-32: fit resumed from a damaged checkpoint and
    hybridpgm.load returned a damaged weight, silently."""
    checkpoint, model = _checkpoint_of_a_run(tmp_path), _model_file(tmp_path)
    good = hybridpgm.load(model).state_dict()
    for path, what in ((checkpoint, "checkpoint"), (model, "model file")):
        member = _flip_a_tensor_bit(path)
        assert member.startswith("archive/data/")
        match = rf"cannot read {what} '.*{path.name}': it is corrupt: its member '{member}' is damaged .*CRC-32"
        with pytest.raises(CheckpointError, match=match) as info:
            (load_checkpoint if what == "checkpoint" else hybridpgm.load)(path)
        assert "damaged disk" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint '.*run.pt': it is corrupt: its member"):
        fit(LinearRegression(), regression_data(), checkpoint=checkpoint, resume=True, progress=False, seed=0,
            max_steps=4)
    # torch alone loads the damaged model file: one weight differs, which is what went unnoticed
    damaged = torch.load(model, weights_only=True)["state_dict"]
    assert sum(not torch.equal(damaged[k], good[k]) for k in good) == 1


@pytest.mark.parametrize("write", [_checkpoint_of_a_run, _model_file])
def test_a_file_truncated_beyond_its_first_kilobytes_is_named_truncated(tmp_path, write):
    """Before, a file cut by more than about 3 kB gave 'Invalid argument (EINVAL)' (torch raises an OSError
    for a zip without its end record), which sends one looking for an OS problem."""
    path = write(tmp_path)
    data = path.read_bytes()
    assert len(data) // 2 > 3000
    path.write_bytes(data[: len(data) // 2])
    for read, what in ((load_checkpoint, "checkpoint"), (hybridpgm.load, "model file")):
        with pytest.raises(CheckpointError, match=rf"cannot read {what} '.*{path.name}': it is truncated or "
                                                  rf"corrupt: a zip archive as torch.save writes, but its "
                                                  rf"{len(data) // 2} bytes hold no complete archive") as info:
            read(path)
        assert "EINVAL" not in str(info.value)


def test_a_legacy_non_zip_torch_file_still_loads(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"step": 3, "w": torch.arange(4.0)}, path, _use_new_zipfile_serialization=False)
    state = read_torch_file(path, "checkpoint")
    assert state["step"] == 3 and torch.equal(state["w"], torch.arange(4.0))


def test_a_damaged_zip_signature_is_named_corrupt_not_a_foreign_file(tmp_path):
    path = _model_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[1] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"cannot read model file '.*vae.pt': it is corrupt: its \d+ bytes end "
                                              r"as a zip archive .* do not start with the zip signature"):
        hybridpgm.load(path)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO])
def test_an_os_error_on_reading_keeps_its_reason(tmp_path, monkeypatch, code):
    """The check of the archive reads the file first; an OS error there is named as before, not as damage."""
    path = _model_file(tmp_path)
    real_open = builtins.open

    def failing_open(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise OSError(code, os.strerror(code), os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing_open)
    name = errno.errorcode[code]
    with pytest.raises(CheckpointError, match=rf"cannot read model file '.*vae.pt': {os.strerror(code)} \({name}\)$"):
        hybridpgm.load(path)


def test_the_readers_are_importable_from_checkpoint_where_they_lived():
    """hybridpgm.serialization and users import them from hybridpgm.train.checkpoint."""
    from hybridpgm.train import checkpoint, torch_load

    assert checkpoint.read_torch_file is torch_load.read_torch_file
    assert checkpoint.check_readable is torch_load.check_readable
