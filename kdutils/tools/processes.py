"""Child processes of the command-line tools: one papermill run each, stopped as a whole.

Every notebook run of ``kdutils.tools.sweep`` and ``kdutils.tools.run_notebooks`` is
``python -m papermill`` in a child process (:func:`execute`, :func:`run_notebook`). The
child starts a session of its own, so a Ctrl-C in the terminal reaches only the driver;
the Jupyter kernel that papermill starts runs in yet another session
(``jupyter_client`` starts kernels with ``start_new_session=True``). Stopping a run
therefore signals papermill's process group *and* every descendant found while papermill
still lives (:func:`_stop_group`), so that no kernel is left running on its own.

Stop signals: inside :func:`stop_on_signals` (the drivers' loops run in it), SIGTERM,
SIGHUP and SIGINT do what Ctrl-C should do: the running children are stopped at once, the
run that was going is recorded as ``"interrupted"``, the loop starts nothing new
(:func:`stop_requested`), writes its summary and raises :class:`Interrupted`. The
command lines turn that into the exit code ``128 + signal`` (130 for Ctrl-C, 143 for
SIGTERM). A second signal while stopping raises ``KeyboardInterrupt`` at once.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from kdutils.core import records as _results
from kdutils.core.profiles import REPO_ROOT

#: Lines of the child's log kept in a failure record.
TAIL_LINES = 60
#: Signals handled like Ctrl-C by :func:`stop_on_signals` (those this system has).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n))
#: Seconds a stopped child gets to exit before it is killed.
GRACE_S = 10.0

_lock = threading.RLock()  # re-entrant: the signal handler may run while the main thread holds it
_live: dict[subprocess.Popen, list] = {}  # running children -> descendants signalled so far
_stop: dict[str, Any] = {"signal": None, "active": 0}  # the last stop signal; blocks of stop_on_signals open


class Interrupted(KeyboardInterrupt):
    """A driver was stopped by a signal; its summary was written before this was raised."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """``128 + signal``, what a shell reports for a process ended by that signal."""
        return 128 + self.signum


def signal_name(signum: Optional[int]) -> str:
    """``15`` -> ``"SIGTERM"`` (the number as text when the system has no name for it)."""
    try:
        return signal.Signals(signum).name
    except (ValueError, TypeError):
        return str(signum)


def stop_requested() -> Optional[int]:
    """The stop signal received in the running (or, after it, the last) :func:`stop_on_signals`
    block, or None. A new block starts with None."""
    return _stop["signal"]


def _stopping() -> Optional[int]:
    """The stop signal while a :func:`stop_on_signals` block is open (outside one: None)."""
    return _stop["signal"] if _stop["active"] else None


def request_stop(signum: int) -> None:
    """Ask every running child to stop (SIGTERM to its group and descendants); start no new one."""
    _stop["signal"] = int(signum)
    with _lock:
        running = list(_live)
    for proc in running:
        found = _signal_tree(proc, signal.SIGTERM)
        with _lock:
            if proc in _live:
                _live[proc].extend(found)


def raise_if_stopped() -> None:
    """Raise :class:`Interrupted` when a stop signal arrived (call after writing the summary)."""
    if _stopping() is not None:
        raise Interrupted(_stop["signal"])


def _on_signal(signum, frame) -> None:  # noqa: ARG001 (signal handler signature)
    if _stop["signal"] is not None:
        raise KeyboardInterrupt(f"second stop signal ({signal_name(signum)}): stopping at once")
    request_stop(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Handle SIGTERM, SIGHUP and SIGINT like a graceful Ctrl-C while the block runs.

    The stop request starts cleared; after the block :func:`stop_requested` still tells
    whether (and by which signal) it was stopped. Handlers can only be installed from the
    main thread; elsewhere the block runs with the process's handlers (a
    ``KeyboardInterrupt`` still stops the running child, see :func:`execute`).
    """
    _stop["signal"] = None
    _stop["active"] += 1
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop["active"] -= 1


@contextmanager
def watch(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Let a stop signal (:func:`stop_on_signals`) reach ``proc``, a child started by other
    code (e.g. a worker process): while the block runs it is sent SIGTERM with the others."""
    with _lock:
        _live[proc] = []
    try:
        yield proc
    finally:
        with _lock:
            _live.pop(proc, None)


# --------------------------------------------------------------------------- one child
def _plain(v: Any) -> Any:
    """numpy scalars / paths / tuples to plain YAML-safe values."""
    if hasattr(v, "item") and callable(v.item) and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (TypeError, ValueError):
            pass
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _child_env(extra: Optional[Mapping[str, str]] = None) -> dict:
    env = {**os.environ, **(extra or {})}
    env["KD_HEADLESS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    # The "python3" kernel spec says "python": make it this interpreter's.
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    return env


def _tail(path: Path, n: int = TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _error_line(tail: str) -> str:
    """The most telling line of a log tail (the last ``SomethingError: ...``)."""
    for line in reversed(tail.splitlines()):
        s = line.strip()
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt|Exit)\b.*", s):
            return s
    lines = [s for s in tail.splitlines() if s.strip()]
    return lines[-1].strip() if lines else ""


def execute(
    notebook: Path,
    output: Path,
    params: Mapping[str, Any],
    *,
    params_file: Path,
    log_file: Path,
    kernel: Optional[str] = None,
    timeout: Optional[float] = None,
    env: Optional[Mapping[str, str]] = None,
) -> tuple[int, float]:
    """Run ``python -m papermill`` once in a child process; return (exit code, seconds).

    The child runs in its own process group; on ``timeout`` it is stopped with its kernel
    (exit code 124, as ``timeout(1)``), on a stop signal (:func:`stop_on_signals`) the exit
    code is ``128 + signal``, and a ``KeyboardInterrupt`` stops it before propagating.
    ``env``: environment variables set for the child only (e.g. its own ``KD_OUTPUT_ROOT``).
    """
    import yaml

    notebook = Path(notebook).resolve()
    for p in (output, params_file, log_file):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    params_file.write_text(yaml.safe_dump(_plain(dict(params)), sort_keys=False))
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(output), "-f", str(params_file),
           "--cwd", str(notebook.parent), "--log-output", "--no-progress-bar"]
    if kernel:
        cmd += ["-k", kernel]
    t0 = time.perf_counter()
    with open(log_file, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        rc = _run_child(cmd, log, notebook.parent, timeout, env)
    return rc, time.perf_counter() - t0


def _run_child(cmd: list, log, cwd: Path, timeout: Optional[float], env: Optional[Mapping[str, str]] = None) -> int:
    """Start ``cmd`` in a session of its own, wait for it, stop it as a whole when told to."""
    if _stopping() is not None:
        log.write(f"\nkdutils.tools: Interrupted: not started, {signal_name(_stopping())} received\n")
        return 128 + _stopping()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(env),
                            cwd=str(cwd), start_new_session=True)
    with _lock:
        _live[proc] = []
    try:
        rc = proc.wait(timeout=timeout)
        if rc != 0 and _stopping() is not None:
            _stop_group(proc)
            log.write(f"\nkdutils.tools: Interrupted: stopped by {signal_name(_stopping())}\n")
            rc = 128 + _stopping()
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        log.write(f"\nkdutils.tools: TimeoutError: stopped after {timeout} s\n")
        rc = 124
    except BaseException:  # Ctrl-C without handlers: the child is in its own session and did not get it
        _stop_group(proc)
        raise
    finally:
        with _lock:
            _live.pop(proc, None)
    return rc


def _descendants(pid: int) -> list:
    """The processes started below ``pid`` (psutil objects; empty without psutil or when gone)."""
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # psutil missing, or the process already ended
        return []


def _signal_tree(proc: subprocess.Popen, sig: int) -> list:
    """Send ``sig`` to ``proc``, its process group (when it leads one) and every descendant;
    return the descendants."""
    found = _descendants(proc.pid)
    try:
        proc.send_signal(sig)  # a no-op once it was reaped
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):  # no group of that id: proc did not start one
        pass
    for child in found:
        try:
            child.send_signal(sig)
        except Exception:  # already gone (psutil.NoSuchProcess) or its pid reused
            pass
    return found


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop ``proc`` (papermill), its process group and its descendants (the kernel)."""
    if os.name != "posix":  # no process groups: stop papermill, its kernel notices
        proc.kill()
        proc.wait()
        return
    with _lock:
        known = list(_live.get(proc, []))
    tree = _signal_tree(proc, signal.SIGTERM) + known
    try:
        proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    _wait_or_kill(tree)


def _wait_or_kill(tree: list) -> None:
    """Wait up to :data:`GRACE_S` for the signalled descendants, then kill those still running."""
    if not tree:
        return
    import psutil

    _, alive = psutil.wait_procs(tree, timeout=GRACE_S)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass


def run_notebook(
    notebook,
    folder: Path,
    name: str,
    params: Mapping[str, Any],
    *,
    kernel: Optional[str] = None,
    timeout: Optional[float] = None,
    context: Optional[Mapping[str, Any]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> dict:
    """Execute ``notebook`` once (:func:`execute`, ``env`` for the child only) into ``folder``
    and record the outcome.

    Writes ``folder/<name>.ipynb``, ``folder/logs/<name>.log`` and
    ``folder/params/<name>.yaml``; a failure or an interruption also writes
    ``folder/failures/<name>.json`` (``context``, e.g. the sweep and part, comes first in
    it), removed again when the run later succeeds. Returns ``{"run", "status" ("ok" |
    "failed" | "interrupted"), "seconds", "output", "log"}``, plus ``"returncode"``,
    ``"error"`` (the telling line of the log) and ``"failure"`` (the failure file) when it
    did not succeed. Used by ``kdutils.tools.sweep`` and ``kdutils.tools.run_notebooks``.
    """
    notebook, folder = Path(notebook), Path(folder)
    output = folder / f"{name}.ipynb"
    log_file = folder / "logs" / f"{name}.log"
    failure_file = folder / "failures" / f"{name}.json"
    rc, secs = execute(notebook, output, params, params_file=folder / "params" / f"{name}.yaml",
                       log_file=log_file, kernel=kernel, timeout=timeout, env=env)
    outcome = {"run": name, "status": "ok", "seconds": round(secs, 2), "output": str(output),
               "log": str(log_file)}
    if rc == 0:
        if failure_file.exists():
            failure_file.unlink()
        return outcome
    status = "failed" if _stopping() is None else "interrupted"
    tail = _tail(log_file)
    failure = {
        **(context or {}), "run": name, "status": status, "notebook": str(notebook.resolve()),
        "output": str(output), "log": str(log_file), "params": dict(params), "returncode": rc,
        "error": _error_line(tail), "error_tail": tail, "seconds": round(secs, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _results.atomic_write_json(failure_file, failure)
    return {**outcome, "status": status, "returncode": rc, "error": failure["error"],
            "failure": str(failure_file)}
