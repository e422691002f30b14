import errno
import os
import time

import pytest


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from kdutils.core.fileio import atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "f.txt", "old")

    def broken(tmp):
        open(tmp, "w").write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary file left


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os

    from kdutils.core.fileio import atomic_write_text

    mask = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(mask)
    assert oct(p.stat().st_mode & 0o777) == oct(0o644)



def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from kdutils.core.fileio import atomic_write_text

    target = atomic_write_text(tmp_path / "ck.pt", "epoch 1")
    # a writer killed with kill -9 mid-write leaves its temporary file behind
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".ck.pt.pid{dead.stdout.strip()}.abc123.tmp"
    leftover.write_text("half a checkpoint")
    legacy = tmp_path / ".ck.pt.xyz789.tmp"  # named before writers recorded their process id
    legacy.write_text("half")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    other_target = tmp_path / f".other.pt.pid{dead.stdout.strip()}.q.tmp"
    other_target.write_text("not ours to remove")
    atomic_write_text(target, "epoch 2")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ck.pt", other_target.name])
    assert target.read_text() == "epoch 2"


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    from kdutils.core.fileio import atomic_write_text, remove_stale_temporaries

    busy = tmp_path / f".r.json.pid{os.getppid()}.k.tmp"  # our parent process is alive
    busy.write_text("being written")
    atomic_write_text(tmp_path / "r.json", "{}")
    assert busy.exists() and remove_stale_temporaries(tmp_path / "r.json") == []


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                                                  "failed writing file data/0: file write failed")])
def test_disk_full_names_the_file_and_keeps_the_previous_one(tmp_path, failure):
    from kdutils.core.fileio import DiskFullError, atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "ck.pt", "previous")

    def fill_the_disk(tmp):
        open(tmp, "w").write("part")
        raise failure

    with pytest.raises(DiskFullError, match=rf"disk full while writing {target}; the previous checkpoint is intact"):
        atomic_write(target, fill_the_disk, what="checkpoint")
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
