
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

