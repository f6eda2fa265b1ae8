"""What a checkpoint or model file path may be, and the permissions of the file written there
(hybridpgm/train/atomic_write.py, shared by save_checkpoint and hybridpgm.save)."""

import errno
import os
import stat

import pytest
import torch

import hybridpgm
from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from hybridpgm.generative import VAE
from hybridpgm.train.atomic_write import write_atomically
from hybridpgm.train.checkpoint import save_checkpoint
from tests.train.helpers import LinearRegression, regression_data


class CountSteps:
    def __init__(self):
        self.steps = 0

    def on_step_end(self, info):
        self.steps += 1


def _special(tmp_path, kind):
    """A path in ``tmp_path`` that is not a regular file, and a check that it is still what it was."""
    path = tmp_path / "c.pt"
    if kind == "fifo":
        os.mkfifo(path)
        return path, lambda: stat.S_ISFIFO(os.lstat(path).st_mode)
    target = tmp_path / "target.pt"
    if kind == "symlink":
        target.write_bytes(b"")
    os.symlink(target.name, path)  # "dangling symlink": its target does not exist
    return path, lambda: os.path.islink(path) and os.readlink(path) == target.name and \
        (kind == "dangling symlink") != target.exists()


@pytest.mark.parametrize("kind, match", [("fifo", r"it is a FIFO \(named pipe\), not a regular file"),
                                         ("symlink", "it is a symbolic link to 'target.pt'"),
                                         ("dangling symlink", "it is a symbolic link to 'target.pt'")])
def test_a_path_that_is_not_a_regular_file_is_never_replaced(tmp_path, kind, match):
    """Before, the temporary file was renamed over whatever was at the path: a FIFO or a device node became a
    regular file, a symbolic link was replaced and its target left stale."""
    path, unchanged = _special(tmp_path, kind)
    with pytest.raises(CheckpointError, match=rf"cannot write checkpoint '.*c.pt': {match}"):
        save_checkpoint(path, {"step": 1})
    with pytest.raises(CheckpointError, match=rf"cannot write model file '.*c.pt': {match}"):
        hybridpgm.save(VAE(8, 2, [4]), path)
    for overwrite in (False, True):  # overwrite=True deleted any path
        steps = CountSteps()
        with pytest.raises(CheckpointError, match=rf"cannot write checkpoint '.*c.pt': {match}"):
            fit(LinearRegression(), regression_data(), checkpoint=path, overwrite=overwrite, progress=False,
                callbacks=[steps])
        assert steps.steps == 0  # refused before training, not at the end of the run
    assert unchanged()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.pt"] + (["target.pt"] if kind == "symlink"
                                                                              else []))


@pytest.fixture
def umask():
    """Set the process umask for a test, restoring it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_a_new_file_gets_the_permissions_open_would_give(tmp_path, umask, mask):
    """Before, checkpoints and model files were 0600 (mkstemp's mode) whatever the umask."""
    umask(mask)
    save_checkpoint(tmp_path / "c.pt", {"step": 1})
    hybridpgm.save(VAE(8, 2, [4]), tmp_path / "m.pt")
    fit(LinearRegression(), regression_data(), checkpoint=tmp_path / "run.pt", progress=False, seed=0)
    with open(tmp_path / "plain", "wb"):
        pass
    expected = 0o666 & ~mask
    assert stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == expected
    for name in ("c.pt", "m.pt", "run.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == expected, name


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask):
    umask(0o022)
    for name, write in (("c.pt", lambda p: save_checkpoint(p, {"step": 1})),
                        ("m.pt", lambda p: hybridpgm.save(VAE(8, 2, [4]), p))):
        path = tmp_path / name
        write(path)
        os.chmod(path, 0o640)
        write(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_the_writers_are_importable_from_checkpoint_where_they_lived():
    """hybridpgm.serialization, fit and users import them from hybridpgm.train.checkpoint."""
    from hybridpgm.train import atomic_write, checkpoint

    for name in ("write_atomically", "check_replaceable", "remove_stale_temporaries"):
        assert getattr(checkpoint, name) is getattr(atomic_write, name)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to count open descriptors")
def test_a_refused_chmod_closes_the_temporary_file(tmp_path, monkeypatch):
    """Before, the ``mkstemp`` descriptor was wrapped in a file object only after ``os.fchmod``: a file system
    that refuses chmod (CIFS/SMB, some FUSE mounts: ``EPERM``) leaked one descriptor per write."""
    def refusing_fchmod(fd, mode):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refusing_fchmod, raising=False)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(CheckpointError, match=r"cannot write checkpoint '.*c\.pt': .*\(EPERM\)"):
            write_atomically(tmp_path / "c.pt", {"step": 1}, "checkpoint")
    assert len(os.listdir("/proc/self/fd")) == before
    assert list(tmp_path.iterdir()) == []  # the temporary files are removed too


def test_a_report_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """Before, evaluation.json and the bayes-net samples were written in place: a stopped write left half a
    report where the last whole one had been."""
    import os

    from hybridpgm.train.atomic_write import write_text_atomically

    path = tmp_path / "evaluation.json"
    write_text_atomically(path, '{"a": 1}\n', "report")
    assert path.read_text() == '{"a": 1}\n' and os.listdir(tmp_path) == ["evaluation.json"]

    def stopped(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomically(path, '{"a": 2}\n', "report")
    assert path.read_text() == '{"a": 1}\n' and os.listdir(tmp_path) == ["evaluation.json"]


def test_a_report_never_replaces_a_fifo_or_a_symbolic_link(tmp_path):
    """Before, the CLI's report writer (recipes.common) renamed its temporary file over any path: a FIFO, a symbolic
    link (its target left stale) or a device node became a regular file."""
    import os
    import stat

    from hybridpgm.errors import CheckpointError
    from hybridpgm.train.atomic_write import write_text_atomically

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "target.json").write_text("kept\n")
    os.symlink("target.json", tmp_path / "link.json")
    with pytest.raises(CheckpointError, match="fifo'.*FIFO"):
        write_text_atomically(tmp_path / "fifo", "{}\n", "report")
    with pytest.raises(CheckpointError, match="link.json'.*symbolic link"):
        write_text_atomically(tmp_path / "link.json", "{}\n", "report")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode) and os.path.islink(tmp_path / "link.json")
    assert (tmp_path / "target.json").read_text() == "kept\n"
    assert sorted(os.listdir(tmp_path)) == ["fifo", "link.json", "target.json"]


def test_two_writers_and_a_reader_of_one_report(tmp_path):
    """Before, the temporary file had a fixed name ('.NAME.tmp'): with two writers, one renamed or removed the
    other's temporary file (a raw FileNotFoundError) and a reader could find a torn report."""
    import json
    import os
    import threading

    from hybridpgm.train.atomic_write import write_text_atomically

    path = tmp_path / "evaluation.json"
    write_text_atomically(path, json.dumps({"w": "start"}) + "\n", "report")
    errors, torn, done = [], [], threading.Event()

    def write(tag):
        for i in range(200):
            try:
                write_text_atomically(path, json.dumps({"w": tag, "i": i, "pad": tag * 20000}) + "\n", "report")
            except Exception as error:  # noqa: BLE001 - counted: the test asserts there are none
                errors.append(error)

    def read():
        while not done.is_set():
            try:
                report = json.loads(path.read_text())
                assert report["w"] in ("start", "A", "B")
            except (ValueError, AssertionError) as error:
                torn.append(error)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(tag,)) for tag in "AB"]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert errors == [] and torn == []
    assert os.listdir(tmp_path) == ["evaluation.json"]


def test_an_interrupt_during_the_write_stays_an_interrupt(tmp_path):
    """Ctrl-C arrives while torch's zip writer calls the file's ``write``; torch turns the ``KeyboardInterrupt``
    into a ``RuntimeError`` ("unexpected pos ..."), which an ``except Exception`` then swallowed.  The user's
    interrupt is raised as itself, the previous file kept and no temporary file left."""

    target = tmp_path / "model.pt"
    target.write_bytes(b"previous")

    class Interrupted:
        def write(self, data):
            raise KeyboardInterrupt

    def torch_like_save(payload, writer):
        writer.file = Interrupted()  # the signal lands in the next write
        try:
            writer.write(b"payload")
        except BaseException as error:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 161218560") from error

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, {}, "model file", save=torch_like_save)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_an_interrupt_before_the_writer_records_it_stays_an_interrupt(tmp_path):
    """The signal can land as the writer's ``write`` is entered, before it can record it (audit_atomic2): torch's
    ``RuntimeError`` then carries the ``KeyboardInterrupt`` as its context, and that is what is raised."""
    target = tmp_path / "model.pt"

    def torch_like_save(payload, writer):
        try:
            raise KeyboardInterrupt  # raised where no writer code ran
        except BaseException as error:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 46 vs 0") from error

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, {}, "model file", save=torch_like_save)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_an_except_keyboardinterrupt_block_is_reported_as_the_disk(tmp_path):
    """``try: fit(...) except KeyboardInterrupt: save(...)``: a write that then fails on the disk reports the
    disk (a ``CheckpointError`` naming ENOSPC), not the interrupt being handled, which its error's chain holds
    (review G: the search for an interrupt torch's writer hid walked past it)."""
    target = tmp_path / "model.pt"

    def full_disk(payload, writer):
        raise OSError(errno.ENOSPC, "No space left on device")

    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        with pytest.raises(CheckpointError, match="ENOSPC"):
            write_atomically(target, {}, "model file", save=full_disk)


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    """Before, only the temporary file was fsynced: the rename lived in the page cache, so a node crash or a
    power loss could bring the previous checkpoint back.  Now the folder is fsynced once the new file is in
    place (POSIX)."""
    pytest.importorskip("fcntl")  # POSIX: a folder opens with O_DIRECTORY
    target = tmp_path / "ckpt.pt"
    write_atomically(target, {"step": 1}, "checkpoint")
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        info = os.fstat(fd)
        folder = stat.S_ISDIR(info.st_mode) and info.st_ino == os.stat(tmp_path).st_ino
        synced.append(("folder", torch.load(target)["step"]) if folder else ("file", None))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(target, {"step": 2}, "checkpoint")
    assert synced == [("file", None), ("folder", 2)]  # the file's bytes, then the folder once it names them


def test_a_folder_fsync_the_file_system_cannot_do_is_skipped_and_another_error_is_a_checkpoint_error(
        tmp_path, monkeypatch):
    pytest.importorskip("fcntl")
    target = tmp_path / "ckpt.pt"
    real_fsync = os.fsync
    answer = {"errno": errno.EINVAL}

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(answer["errno"], os.strerror(answer["errno"]))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(target, {"step": 1}, "checkpoint")  # EINVAL: a file system that cannot, written as before
    assert torch.load(target)["step"] == 1
    answer["errno"] = errno.EIO  # the disk lost the write: the caller hears of it
    with pytest.raises(CheckpointError, match="ckpt.pt"):
        write_atomically(target, {"step": 2}, "checkpoint")
