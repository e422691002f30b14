"""The child-process layer (kdutils.tools.processes): SIGTERM / SIGHUP to a driver stop
papermill *and* its kernel (which runs in a session of its own), record the interrupted
run, write the summary and start nothing more."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from kdutils.tools import processes
from tests.helpers import write_notebook

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and SIGTERM/SIGHUP are POSIX")


def _sleeping_notebook(path: Path) -> Path:
    """A notebook that writes ``<run_name>.pids`` (its kernel's pid and papermill's) and sleeps."""
    return write_notebook(path, 'run_name = "unnamed"\nprofile = ""',
                          "import os, time\n"
                          "open(run_name + '.pids', 'w').write(f'{os.getpid()} {os.getppid()}')\n"
                          "time.sleep(300)\n")


def _running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(folder: Path, driver: subprocess.Popen, seconds: float = 180) -> tuple[Path, list[int]]:
    """The pids file the sleeping notebook wrote in ``folder`` once it runs, and its pids
    (fails when the driver ends first)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for path in folder.glob("*.pids"):
            if len(path.read_text().split()) == 2:
                return path, [int(p) for p in path.read_text().split()]
        assert driver.poll() is None, driver.communicate()
        time.sleep(0.2)
    driver.terminate()  # SIGTERM: the driver stops its children itself
    pytest.fail(f"the notebook did not start within {seconds} s: {driver.communicate(timeout=60)}")


def _stop_and_check(driver: subprocess.Popen, folder: Path, sig: int) -> tuple[str, Path]:
    """Send ``sig`` to the driver once the notebook runs; assert it exits ``128 + sig`` leaving no
    process. Returns the driver's output and the pids file of the run that was stopped."""
    pids_file, (kernel, papermill) = _wait_for(folder, driver)
    driver.send_signal(sig)
    try:
        out, _ = driver.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        driver.kill()
        pytest.fail("the driver did not end within 60 s of the signal")
    assert driver.returncode == 128 + sig, out
    time.sleep(0.5)
    assert not _running(papermill), "papermill was left running"
    assert not _running(kernel), "the notebook's kernel was left running"
    return out, pids_file


def _driver(args: list, env_root: Path) -> subprocess.Popen:
    env = {**os.environ, "KD_OUTPUT_ROOT": str(env_root), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *args], cwd=str(REPO), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_sigterm_to_a_sweep_stops_the_kernel_records_the_run_and_writes_the_summary(tmp_path):
    nb = _sleeping_notebook(tmp_path / "sleepy.ipynb")
    driver = _driver(["-m", "kdutils.tools.sweep", str(nb), "--part", "sleeptest", "--profile", "smoke",
                      "--grid", "x=1,2", "--name", "stopped"], tmp_path / "out")
    out, pids_file = _stop_and_check(driver, tmp_path, signal.SIGTERM)
    stopped = pids_file.stem  # the run that was going: x1 or x2 (the grid's order is the sampler's)
    failure = json.loads((tmp_path / "out" / "runs" / "stopped" / "failures" / f"{stopped}.json").read_text())
    assert failure["status"] == "interrupted" and failure["returncode"] == 128 + signal.SIGTERM
    assert "Interrupted: stopped by SIGTERM" in failure["error_tail"]
    assert [p.name for p in tmp_path.glob("*.pids")] == [pids_file.name]  # the other set never started
    assert "study stopped (" in out and "1 fail" in out, out  # the summary: the stopped trial counts as failed


def test_sighup_to_run_notebooks_stops_the_kernel_and_writes_the_summary(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _sleeping_notebook(folder / "part1_sleeps.ipynb")
    _sleeping_notebook(folder / "part2_never.ipynb")
    code = ("import sys\nfrom pathlib import Path\nfrom kdutils.tools import run_notebooks\n"
            f"run_notebooks.NOTEBOOKS_DIR = Path({str(folder)!r})\n"
            "sys.exit(run_notebooks.main(['--profile', 'smoke']))\n")
    driver = _driver(["-c", code], tmp_path / "out")
    # papermill injects no run_name here, so the notebook writes "unnamed.pids" in its folder
    _stop_and_check(driver, folder, signal.SIGHUP)
    summary = json.loads((tmp_path / "out" / "runs" / "smoke" / "summary.json").read_text())
    assert [(r["run"], r["status"]) for r in summary["notebooks"]] == [
        ("part1_sleeps", "interrupted"), ("part2_never", "not run")]
    assert summary["stopped_by"] == "SIGHUP"


def test_a_timeout_stops_the_kernel_too(tmp_path):
    nb = _sleeping_notebook(tmp_path / "sleepy.ipynb")
    start = time.monotonic()
    outcome = processes.run_notebook(nb, tmp_path / "runs", "slow", {"run_name": "slow"}, timeout=30)
    assert outcome["status"] == "failed" and outcome["returncode"] == 124
    assert time.monotonic() - start < 120
    kernel, papermill = (int(p) for p in (tmp_path / "slow.pids").read_text().split())
    time.sleep(0.5)
    assert not _running(papermill) and not _running(kernel)
    assert "TimeoutError" in outcome["error"]


def test_stop_signals_outside_the_block_keep_their_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with processes.stop_on_signals():
        assert signal.getsignal(signal.SIGTERM) is processes._on_signal
        assert processes.stop_requested() is None
        processes.request_stop(signal.SIGTERM)  # no child running: only the flag
        assert processes.stop_requested() == signal.SIGTERM
        with pytest.raises(processes.Interrupted) as stop:
            processes.raise_if_stopped()
        assert stop.value.exit_code == 143 and isinstance(stop.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before
    assert processes.stop_requested() == signal.SIGTERM  # still readable after the block
    with processes.stop_on_signals():
        assert processes.stop_requested() is None  # a new block starts afresh
    assert processes.signal_name(signal.SIGHUP) == "SIGHUP"
