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

PROFILES = ("smoke", "quick", "full")

#: The repository root (the folder that holds ``kdutils/``).
REPO_ROOT = Path(__file__).resolve().parents[2]


def output_root() -> Path:
    """Where figures/, results/, runs/ and reports/ go (``KD_OUTPUT_ROOT`` or the repo root)."""
    return Path(os.environ.get("KD_OUTPUT_ROOT", REPO_ROOT)).resolve()


def figures_dir() -> Path:
    return output_root() / "figures"


def results_dir() -> Path:
    return output_root() / "results"


def runs_dir() -> Path:
    return output_root() / "runs"


def reports_dir() -> Path:
    return output_root() / "reports"


def shared_data_dir() -> Optional[Path]:
    """``../shared/data`` beside the repository, if it exists (development machines only)."""
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


def is_headless() -> bool:
    """True under papermill/nbmake/CI (one line per epoch), False in an interactive session."""
    if os.environ.get("KD_HEADLESS", "").strip() not in ("", "0"):
        return True
    if os.environ.get("CI") or os.environ.get("KD_PROFILE", "") == "smoke":
        return True
    if "ipykernel" in sys.modules:
        # papermill and nbmake run the kernel without a frontend; they set these.
        return bool(os.environ.get("PAPERMILL_EXECUTION") or os.environ.get("PYTEST_CURRENT_TEST"))
    return not sys.stdout.isatty()


@dataclass
class Setup:
    """The resolved profile of a notebook run."""

    profile: str
    data_root: Optional[Path]
    settings: dict = field(default_factory=dict)
    headless: bool = True

    def __getitem__(self, key):
        return self.settings[key]

    def describe(self) -> str:
        where = self.data_root if self.data_root is not None else "(generated)"
        return f"profile={self.profile}  data_root={where}  headless={self.headless}"


def resolve(
    profile: Optional[str] = None,
    data_root: Optional[str] = None,
    settings: Optional[Mapping[str, Mapping[str, Any]]] = None,
    overrides: Optional[Mapping[str, Any]] = None,
) -> Setup:
    """Resolve a notebook's profile, data location and settings.

    ``settings`` maps each profile to its dict of settings; ``overrides`` (e.g. the
    notebook's non-empty parameters) replace individual keys after the profile is picked.
    ``data_root``: parameter, else ``KD_DATA_ROOT``, else ``../shared/data`` when present
    (quick), else ``data/`` in the repository. The smoke profile uses generated data and
    gets ``None`` unless a root is given explicitly.
    """
    name = resolve_profile(profile)
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
    return Setup(profile=name, data_root=root_path, settings=chosen, headless=is_headless())
