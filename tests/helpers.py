"""Small models and loaders shared by several test modules."""
import torch
from torch import nn

from kdutils.core import data
from kdutils.core.loader import GpuLoader


class CountingTeacher(nn.Module):
    """A tiny linear 'teacher' that counts its forward passes."""

    def __init__(self, side=8):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, 10))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return 3.0 * self.net(x)


def tiny_loader(n=40, side=8, seed=0, batch_size=16):
    x, y = data.synthetic_images(n, 10, size=(side, side), seed=1)
    return GpuLoader((torch.from_numpy(x), torch.from_numpy(y).long()), batch_size, train=True, padding=2,
                     flip=True, device="cpu", seed=seed)


def tiny_student(side=8):
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * side * side, 10))


def run_resolve_cell(notebook: str, **overrides) -> dict:
    """Execute a notebook's ``parameters`` cell, then ``overrides`` (as papermill would inject
    them), then the cell right after it (where parameters are checked); return the namespace.
    No set-up cell, nothing later: the point is what the first cell of real work sees."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / notebook
    cells = json.loads(path.read_text())["cells"]
    i = next(k for k, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    namespace: dict = {"__name__": "__main__"}
    exec("".join(cells[i]["source"]), namespace)
    namespace.update(overrides)
    exec("".join(cells[i + 1]["source"]), namespace)
    return namespace


def write_notebook(path, parameters: str, body: str):
    """A two-cell notebook for papermill tests: a cell tagged ``parameters`` holding
    ``parameters`` and one code cell holding ``body``; returns ``path``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path
