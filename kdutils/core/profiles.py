"""Profiles (smoke / quick / full) and where data and outputs live.

- ``full``  the assignment's settings; meant for a GPU.
- ``quick`` real data (e.g. ``../shared/data``), small subsets and few epochs: minutes on a CPU.
- ``smoke`` generated data, seconds: what the tests run.

The profile comes from the notebook's ``profile`` parameter or, when that is empty,
from the ``KD_PROFILE`` environment variable (nbmake cannot inject parameters, but the
environment reaches the kernel), and defaults to ``quick``. The data location comes from
``data_root`` or ``KD_DATA_ROOT``.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from kdutils.core import rehearsal as _rehearsal

PROFILES = ("smoke", "quick", "full")

#: The repository root (the folder that holds ``kdutils/``).
REPO_ROOT = Path(__file__).resolve().parents[2]


def output_root() -> Path:
    """Where figures/, results/, runs/ and reports/ go (``KD_OUTPUT_ROOT`` or the repo root)."""
    return Path(os.environ.get("KD_OUTPUT_ROOT", REPO_ROOT)).resolve()


def figures_dir() -> Path:
    return _rehearsal.folder(output_root() / "figures")  # figures/rehearsal/ during a rehearsal


def results_dir() -> Path:
    return _rehearsal.folder(output_root() / "results")


def runs_dir() -> Path:
    return _rehearsal.folder(output_root() / "runs")


def reports_dir() -> Path:
    return _rehearsal.folder(output_root() / "reports")


#: Set to 1 to ignore ``../shared/data`` (what a fresh clone sees: data come from ``data/``).
NO_SHARED_ENV = "KD_NO_SHARED"


def shared_data_dir() -> Optional[Path]:
    """``../shared/data`` beside the repository, if it exists (development machines only);
    ``None`` when ``KD_NO_SHARED=1`` hides it."""
    if os.environ.get(NO_SHARED_ENV, "").strip() not in ("", "0"):
        return None
    for cand in (REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "shared" / "data"):
        if cand.is_dir():
            return cand
    return None


def resolve_profile(profile: Optional[str] = None) -> str:
    """The profile name from the parameter, else ``KD_PROFILE``, else ``quick``."""
    name = (profile or os.environ.get("KD_PROFILE") or "quick").strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}; choose one of {', '.join(PROFILES)} "
            "(set the notebook parameter `profile` or the KD_PROFILE environment variable)"
        )
    return name


#: Programs that run a notebook's kernel without a person watching it (matched in the
#: command lines of the kernel's parent processes).
HEADLESS_RUNNERS = ("papermill", "nbclient", "nbconvert", "nbmake", "pytest", "kdutils.tools.")


def _ancestor_commands(levels: int = 3) -> list:
    """The command lines of this process's parent, grandparent, ... (``levels`` of them;
    Linux ``/proc``, else ``ps``; empty where neither answers)."""
    import subprocess

    commands, pid = [], os.getppid()
    for _ in range(levels):
        if pid <= 1:
            break
        proc = Path(f"/proc/{pid}")
        try:
            if proc.is_dir():
                commands.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                pid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            else:
                out = subprocess.run(["ps", "-o", "ppid=,command=", "-p", str(pid)], capture_output=True,
                                     text=True, timeout=2).stdout.strip()
                ppid, _, command = out.partition(" ")
                commands.append(command)
                pid = int(ppid)
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            break
    return commands


def is_headless() -> bool:
    """True when nobody watches the output (one log line per epoch), False in an interactive
    session (progress bars).

    ``KD_HEADLESS=1`` / ``KD_HEADLESS=0`` decide outright; CI and the smoke profile are
    headless. Inside a Jupyter kernel, a kernel started by papermill, nbclient, nbconvert,
    nbmake or pytest is headless (a plain ``papermill nb.ipynb out.ipynb`` sets no
    environment variable, so the kernel's parent processes are read:
    :data:`HEADLESS_RUNNERS`); a kernel of JupyterLab, Notebook, VS Code or Colab is not.
    Outside a kernel: headless unless standard output is a terminal.
    """
    flag = os.environ.get("KD_HEADLESS", "").strip()
    if flag:
        return flag != "0"
    if os.environ.get("CI") or os.environ.get("KD_PROFILE", "") == "smoke":
        return True
    if "ipykernel" in sys.modules:
        if os.environ.get("PAPERMILL_EXECUTION") or os.environ.get("PYTEST_CURRENT_TEST"):
            return True
        return any(runner in command for command in _ancestor_commands() for runner in HEADLESS_RUNNERS)
    return not sys.stdout.isatty()


@dataclass
class Setup:
    """The resolved profile of a notebook run."""

    profile: str
    data_root: Optional[Path]
    settings: dict = field(default_factory=dict)
    headless: bool = True
    rehearse: bool = False  # full settings with capped steps (kdutils.core.rehearsal)

    def __getitem__(self, key):
        return self.settings[key]

    def describe(self) -> str:
        where = self.data_root if self.data_root is not None else "(generated)"
        capped = "  REHEARSAL (capped steps, outputs in */rehearsal/)" if self.rehearse else ""
        return f"profile={self.profile}  data_root={where}  headless={self.headless}{capped}"


def resolve(
    profile: Optional[str] = None,
    data_root: Optional[str] = None,
    settings: Optional[Mapping[str, Mapping[str, Any]]] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    rehearse: Optional[bool] = None,
) -> Setup:
    """Resolve a notebook's profile, data location and settings.

    ``settings`` maps each profile to its dict of settings; ``overrides`` (e.g. the
    notebook's non-empty parameters) replace individual keys after the profile is picked.
    ``data_root``: parameter, else ``KD_DATA_ROOT``, else ``../shared/data`` when present
    (quick; ``KD_NO_SHARED=1`` hides it), else ``data/`` in the repository, where
    ``python -m kdutils.tools.data fetch`` (``make data``) puts what is missing. The smoke profile uses generated data and
    gets ``None`` unless a root is given explicitly.
    ``rehearse`` (or ``KD_REHEARSE=1``): the full profile with capped steps
    (:mod:`kdutils.core.rehearsal`); the profile must then be empty or ``full``.
    """
    rehearse = _rehearsal.switch(rehearse)
    name = resolve_profile(profile or (os.environ.get("KD_PROFILE") or "full" if rehearse else None))
    if rehearse and name != "full":
        raise ValueError(f"a rehearsal runs the full profile's settings, but the profile is {name!r}: leave "
                         "the profile parameter and KD_PROFILE empty (or 'full'), or turn KD_REHEARSE off")
    root = data_root or os.environ.get("KD_DATA_ROOT") or None
    if root:
        root_path: Optional[Path] = Path(root).expanduser().resolve()
    elif name == "smoke":
        root_path = None
    elif name == "quick" and shared_data_dir() is not None:
        root_path = shared_data_dir()
    else:
        root_path = REPO_ROOT / "data"
    chosen: dict = {}
    if settings is not None:
        if name not in settings:
            raise ValueError(f"the notebook defines no settings for profile {name!r}")
        chosen = dict(settings[name])
    for k, v in (overrides or {}).items():
        if v is not None:
            chosen[k] = v
    return Setup(profile=name, data_root=root_path, settings=chosen, headless=is_headless(), rehearse=rehearse)
