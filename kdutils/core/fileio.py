"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it.

A crash or Ctrl-C mid-write leaves the previous file (or none), never half a file. Every
checkpoint, cache, record and submission of the project is written through here.

A process killed with ``kill -9`` mid-write cannot remove its temporary file; the next write
of the same target removes such leftovers (:func:`remove_stale_temporaries`). A full disk
raises :class:`DiskFullError`, which names the file and says that the previous version is
intact.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Union

PathLike = Union[str, os.PathLike]

#: A temporary file older than this is stale even when its writer's process id is alive again.
STALE_SECONDS = 24 * 3600


class DiskFullError(OSError):
    """The disk filled up (or refused the write) while a file was written atomically."""


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _writer_pid(tmp_name: str, prefix: str):
    """The process id in a temporary file name ``.<name>.pid<N>.<random>.tmp`` (None if absent)."""
    head = tmp_name[len(prefix):].split(".", 1)[0]
    return int(head[3:]) if head.startswith("pid") and head[3:].isdigit() else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_temporaries(path: PathLike) -> list:
    """Remove temporary files of ``path`` left by writers that died (``kill -9``, power loss).

    A temporary file is stale when the process that wrote it no longer runs, or when it is
    older than :data:`STALE_SECONDS`. Temporary files of live writers are kept. Returns the
    removed paths.
    """
    path = Path(path)
    prefix = _temporary_prefix(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.glob(f"{prefix}*.tmp"):
        pid = _writer_pid(tmp.name, prefix)
        try:
            age = time.time() - tmp.stat().st_mtime
            if pid is None:  # no writer recorded in the name: stale after a minute
                stale = age > 60
            else:
                stale = age > STALE_SECONDS or (pid != os.getpid() and not _process_alive(pid))
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # its writer finished meanwhile
            continue
    return removed


def _is_disk_full(error: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, and for torch's serializer failing to write
    ("[enforce fail at inline_container.cc] ... file write failed")."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and "enforce fail" in text and "write" in text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[str], None], what: str = "file") -> Path:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path``.

    Stale temporary files of the same target are removed first. A full disk raises
    :class:`DiskFullError` ("disk full while writing <path>; the previous <what> is intact").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temporary_prefix(path)}pid{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _is_disk_full(e):
            previous = f"the previous {what} is intact" if path.exists() else f"no {what} was written"
            raise DiskFullError(errno.ENOSPC, f"disk full while writing {path}; {previous}. Free some space "
                                f"(or point KD_OUTPUT_ROOT at a larger disk) and run again") from e
        raise
    return path


def atomic_torch_save(obj: Any, path: PathLike, what: str = "file") -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp), what)


def atomic_write_text(path: PathLike, text: str) -> Path:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def atomic_write_json(path: PathLike, data: Mapping, default: Callable = str) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=1, default=default, allow_nan=True))
