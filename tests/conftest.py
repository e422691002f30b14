"""Shared fixtures. Every test writes its outputs (records, checkpoints, caches, figures)
under a temporary folder, never into the repository."""
import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_OUTPUT_ROOT", str(tmp_path / "out"))
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    # No test may download anything: the data fetchers go to a closed local port unless a
    # test starts its own mirror (tests/fake_mirror.py) and points KD_DATA_MIRROR at it.
    monkeypatch.setenv("KD_DATA_MIRROR", "http://127.0.0.1:9")
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared_data():
    """``../shared/data`` (real images) or a skip saying why."""
    root = Path(os.environ.get("KD_SHARED_DATA", SHARED))
    if not root.is_dir():
        pytest.skip(f"real sample data not found at {root} (only on development machines)")
    return root


@pytest.fixture
def tiny_cifar(tmp_path):
    """A synthetic CIFAR-10 in torchvision's pickle format: (root, train ImageSet, test ImageSet)."""
    from kdutils.core import data

    root = data.make_cifar_pickles(tmp_path / "cifar", "cifar10", n_train=200, n_test=100)
    tr = data.load_cifar("cifar10", root, train=True, check_md5=False)
    te = data.load_cifar("cifar10", root, train=False, check_md5=False)
    return root, tr, te
