
import pytest

from kdutils.core import profiles


def test_profile_resolution(monkeypatch):
    monkeypatch.delenv("KD_PROFILE", raising=False)
    assert profiles.resolve_profile() == "quick"
    monkeypatch.setenv("KD_PROFILE", "smoke")
    assert profiles.resolve_profile() == "smoke"
    assert profiles.resolve_profile("full") == "full"  # the parameter wins
    with pytest.raises(ValueError, match="smoke, quick, full"):
        profiles.resolve_profile("fast")


def test_resolve_settings_and_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("KD_PROFILE", "smoke")
    monkeypatch.delenv("KD_DATA_ROOT", raising=False)
    s = profiles.resolve(settings={"smoke": {"epochs": 1}, "quick": {"epochs": 5}}, overrides={"epochs": None})
    assert s.profile == "smoke" and s["epochs"] == 1 and s.data_root is None
    monkeypatch.setenv("KD_DATA_ROOT", str(tmp_path))
    s = profiles.resolve("quick", settings={"quick": {"epochs": 5}}, overrides={"epochs": 2})
    assert s.data_root == tmp_path and s["epochs"] == 2



# --------------------------------------------------------------------------- is_headless
def _kernel_like(monkeypatch, ancestors):
    """A process that looks like a Jupyter kernel started by ``ancestors`` (command lines)."""
    import sys

    for name in ("KD_HEADLESS", "CI", "KD_PROFILE", "PAPERMILL_EXECUTION", "PYTEST_CURRENT_TEST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    monkeypatch.setattr(profiles, "_ancestor_commands", lambda levels=3: list(ancestors))


def test_is_headless_reads_who_started_the_kernel(monkeypatch):
    _kernel_like(monkeypatch, ["/usr/bin/python3 /venv/bin/papermill nb.ipynb out.ipynb", "bash"])
    assert profiles.is_headless()  # a plain papermill run: no environment variable set
    for parent in ("python -m nbconvert --execute nb.ipynb", "python -m pytest --nbmake nb.ipynb"):
        _kernel_like(monkeypatch, [parent])
        assert profiles.is_headless()
    for parent in ("/venv/bin/python /venv/bin/jupyter-lab notebooks/", "python -m jupyter_server", ""):
        _kernel_like(monkeypatch, [parent])
        assert not profiles.is_headless()  # a person watches: progress bars


def test_is_headless_switch_wins(monkeypatch):
    _kernel_like(monkeypatch, ["/venv/bin/jupyter-lab"])
    monkeypatch.setenv("KD_HEADLESS", "1")
    assert profiles.is_headless()
    _kernel_like(monkeypatch, ["papermill nb.ipynb out.ipynb"])
    monkeypatch.setenv("KD_HEADLESS", "0")
    assert not profiles.is_headless()


def test_ancestor_commands_name_the_parent_process():
    """A child of this test process finds the test runner (pytest) as its parent."""
    import subprocess
    import sys

    code = "from kdutils.core import profiles; print(profiles._ancestor_commands(1))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    if out.strip() == "[]":
        pytest.skip("neither /proc nor ps answers on this system")
    assert "pytest" in out


def test_plain_papermill_run_counts_as_headless(tmp_path):
    """The README's own example, ``papermill nb.ipynb out.ipynb``, with no KD_HEADLESS, CI,
    PAPERMILL_EXECUTION or pytest variable in the kernel's environment."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("papermill")
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                                          "display_name": "Python 3"}},
          "cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": "from kdutils.core import profiles\nprint('HEADLESS', profiles.is_headless(), "
                               "'PARENT', profiles._ancestor_commands(1))"}]}
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb))
    env = {k: v for k, v in os.environ.items()
           if k not in ("KD_HEADLESS", "CI", "KD_PROFILE", "PAPERMILL_EXECUTION", "PYTEST_CURRENT_TEST")}
    done = subprocess.run([sys.executable, "-m", "papermill", "nb.ipynb", "out.ipynb", "--kernel", "python3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads((tmp_path / "out.ipynb").read_text())["cells"][0]["outputs"]
    printed = "".join("".join(o.get("text", "")) for o in out)
    assert "HEADLESS True" in printed and "papermill" in printed.split("PARENT", 1)[1]  # found by its parent


def test_no_shared_switch_hides_the_development_sample(monkeypatch, tmp_path):
    """``KD_NO_SHARED=1`` shows what a fresh clone sees: the quick profile reads ``data/``."""
    import kdutils.core.profiles as P

    monkeypatch.delenv("KD_DATA_ROOT", raising=False)
    monkeypatch.setattr(P, "REPO_ROOT", tmp_path / "repo")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert P.shared_data_dir() == tmp_path / "shared" / "data"
    assert P.resolve("quick").data_root == tmp_path / "shared" / "data"
    monkeypatch.setenv("KD_NO_SHARED", "1")
    assert P.shared_data_dir() is None
    assert P.resolve("quick").data_root == tmp_path / "repo" / "data"
    monkeypatch.setenv("KD_NO_SHARED", "0")
    assert P.shared_data_dir() == tmp_path / "shared" / "data"
