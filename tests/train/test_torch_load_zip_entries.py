"""Zip entries that :mod:`zipfile` (the CRC-32 check) and torch's reader (miniz) read differently are refused
(hybridpgm/train/torch_load.py, ``_directory_flaw``): a directory flag, a trailing ``/``, an encryption flag, two
members of one name.  The damaged files are made from valid ones by editing their zip headers' bytes."""

import struct
import warnings
import zipfile

import pytest
import torch

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.graphs import load_network
from hybridpgm.train.checkpoint import load_checkpoint, save_checkpoint

_CENTRAL = b"PK\x01\x02"


def _checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    torch.manual_seed(0)
    save_checkpoint(path, {"module": torch.nn.Linear(3, 2).state_dict(), "epoch": 3})
    return path, "checkpoint", load_checkpoint


def _model_file(tmp_path):
    return hybridpgm.save(load_network("cancer"), tmp_path / "cancer.pt"), "model file", hybridpgm.load


def _tensor_members(path):
    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist() if "/data/" in info.filename]
    assert names
    return names


def _edit_entry(path, member: str, edit) -> None:
    """Apply ``edit(data, offset)`` to the central-directory record of ``member`` in the file at ``path``
    (``offset``: where its ``PK\\x01\\x02`` starts)."""
    data = bytearray(path.read_bytes())
    position = data.find(_CENTRAL)
    while data[position: position + 4] == _CENTRAL:
        name_length, extra_length, comment_length = struct.unpack("<HHH", data[position + 28: position + 34])
        if data[position + 46: position + 46 + name_length] == member.encode():
            edit(data, position)
            path.write_bytes(bytes(data))
            return
        position += 46 + name_length + extra_length + comment_length
    raise AssertionError(f"no member {member!r} in {path}")


def _set_directory_attribute(data, position):
    data[position + 38] |= 0x10  # external attributes, low byte: the MS-DOS directory bit


def _set_encrypted_flag(data, position):
    data[position + 8] |= 0x01  # general-purpose flags, bit 0: encrypted


@pytest.mark.parametrize("write", [_checkpoint, _model_file])
def test_a_member_flagged_as_a_directory_is_refused_naming_the_file_and_the_member(tmp_path, write):
    """Before, one bit (0x10 of a tensor member's external attributes) loaded uninitialised memory as weights
    without an error: zipfile read the member and its CRC-32 matched, torch took it for a directory."""
    good, what, read = write(tmp_path)
    for member in _tensor_members(good):
        path = tmp_path / "damaged.pt"
        path.write_bytes(good.read_bytes())
        _edit_entry(path, member, _set_directory_attribute)
        with pytest.raises(CheckpointError, match=rf"cannot read {what} '.*damaged.pt': it is corrupt: its member "
                                                  rf"'{member}' is marked as a directory") as info:
            read(path)
        assert "\n" not in str(info.value)


def test_a_member_name_ending_in_a_slash_is_refused(tmp_path):
    """Before, only torch's own 'failed locating file ... internal miniz error' refused it, not as a
    directory entry."""
    path, what, read = _model_file(tmp_path)
    member = _tensor_members(path)[0]
    renamed = member[:-1] + "/"
    data = path.read_bytes()
    assert data.count(member.encode()) == 2  # in its local header and in its central-directory record
    path.write_bytes(data.replace(member.encode(), renamed.encode()))
    with pytest.raises(CheckpointError, match=rf"cannot read model file '.*cancer.pt': it is corrupt: its member "
                                              rf"'{renamed}' is marked as a directory"):
        read(path)


@pytest.mark.parametrize("write", [_checkpoint, _model_file])
def test_a_member_flagged_as_encrypted_is_refused_as_corrupt(tmp_path, write):
    """Before, one bit (bit 0 of any member's flags) raised zipfile's raw RuntimeError ('... is encrypted,
    password required for extraction') out of load_checkpoint and hybridpgm.load."""
    path, what, read = write(tmp_path)
    member = _tensor_members(path)[0]
    _edit_entry(path, member, _set_encrypted_flag)
    with pytest.raises(CheckpointError, match=rf"cannot read {what} '.*{path.name}': it is corrupt: its member "
                                              rf"'{member}' is marked as encrypted"):
        read(path)


@pytest.mark.parametrize("write", [_checkpoint, _model_file])
def test_two_members_of_one_name_are_refused(tmp_path, write):
    """Before, a second member named as a tensor's passed the CRC-32 check and torch.load read it instead of
    the first: the weights loaded as zeros, silently."""
    path, what, read = write(tmp_path)
    member = _tensor_members(path)[0]
    with zipfile.ZipFile(path) as archive:
        size = archive.getinfo(member).file_size
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # any other fails the test (a later filter wins)
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)  # zipfile's, at the second member
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(member, bytes(size))
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist().count(member) == 2
    with pytest.raises(CheckpointError, match=rf"cannot read {what} '.*{path.name}': it is corrupt: it holds two "
                                              rf"members named '{member}'"):
        read(path)


@pytest.mark.parametrize("write", [_checkpoint, _model_file])
def test_a_deflated_member_is_refused_before_it_is_inflated(tmp_path, write):
    """Before, a file repacked with deflate loaded (this test asserted it, as a guard): torch's reader inflates
    such members, so 256 kB of deflate stood for a 256 MiB tensor (a zip bomb).  torch.save stores every member
    uncompressed (its PyTorchFileWriter has no compression setting), so a compressed member is refused by name,
    from the zip directory alone."""
    path, what, read = write(tmp_path)
    with zipfile.ZipFile(path) as source:
        assert {info.compress_type for info in source.infolist()} == {zipfile.ZIP_STORED}  # what torch.save writes
    rewritten = tmp_path / "deflated.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    first = _first_member(rewritten)
    assert torch.load(rewritten, weights_only=True).keys() == torch.load(path, weights_only=True).keys()
    with pytest.raises(CheckpointError, match=rf"cannot read {what} '.*deflated.pt': it was not written by "
                                              rf"torch.save: its member '{first}' is compressed \(zip method 8, "):
        read(rewritten)


def test_one_deflated_member_among_stored_ones_is_refused(tmp_path):
    """Only the tensor's member deflated (its bytes, a run of zeros, shrink 1000-fold): refused, naming it."""
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"w": torch.zeros(2**16)})
    tensor = _tensor_members(path)[0]
    rewritten = tmp_path / "one.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rewritten, "w") as target:
        for info in source.infolist():
            kind = zipfile.ZIP_DEFLATED if info.filename == tensor else zipfile.ZIP_STORED
            target.writestr(info.filename, source.read(info), compress_type=kind)
    assert rewritten.stat().st_size < path.stat().st_size // 10
    with pytest.raises(CheckpointError, match=rf"its member '{tensor}' is compressed \(zip method 8, \d+ bytes "
                                              r"for 262144\)"):
        load_checkpoint(rewritten)


def _first_member(path) -> str:
    with zipfile.ZipFile(path) as archive:
        return archive.infolist()[0].filename
