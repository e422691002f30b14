"""``python -m kdutils.tools.rehearsal``: generated data in the real formats, parameters, table."""
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from kdutils.core import data as D
from kdutils.core import profiles, rehearsal, train
from kdutils.core.loader import loaders_for
from kdutils.core.recipe import Recipe
from kdutils.core.train import Runtime
from kdutils.tools import rehearsal as tool

SMALL = dict(cifar=dict(n_train=50, n_test=20), faces=dict(num_classes=3, per_class=5, size=(28, 23)),
             food11=dict(num_classes=11, per_class=2, n_unlabeled=5, n_val_per_class=1, n_test=4),
             food11_image=(40, 48))


@pytest.fixture(autouse=True)
def _off(monkeypatch):
    for name in ("KD_REHEARSE", "KD_REHEARSE_STEPS", "KD_REHEARSE_EVAL_BATCHES", "KD_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    rehearsal.switch_off()
    yield
    rehearsal.switch_off()


def test_full_sizes_are_the_assignment_s():
    assert tool.CIFAR_SIZES == {"n_train": 50_000, "n_test": 10_000}
    assert tool.FACES["num_classes"] * tool.FACES["per_class"] == 100 * 50
    f = tool.FOOD11_SPLITS
    assert (f["per_class"] * f["num_classes"], f["n_unlabeled"], f["n_val_per_class"] * f["num_classes"],
            f["n_test"]) == (3080, 6786, 660, 3347)


def test_generated_data_reads_as_the_real_formats(tmp_path):
    from kdutils.parts.part4 import load_faces

    root = tmp_path / "data"
    (root / "faces").mkdir(parents=True)  # a data set already there is used as it is
    kept = tool.make_data(root, workers=2, sizes=SMALL, log=lambda msg: None)
    assert "faces" not in kept and not any((root / "faces").iterdir())
    assert not list(root.glob(".partial-*"))
    with rehearsal.rehearsing():  # a rehearsal accepts generated CIFAR pickles (checked against their md5 list)
        tr = D.load_cifar("cifar100", root, train=True, check_md5=True)
        te = D.load_cifar("cifar10", root, train=False, check_md5=True)
    assert len(tr) == 50 and tr.num_classes == 100 and tuple(tr.images.shape[1:]) == (32, 32, 3) and len(te) == 20
    with pytest.raises(FileNotFoundError):  # outside a rehearsal generated pickles are not the real data
        D.load_cifar("cifar10", root, train=False, check_md5=True)
    counts = {split: len(D.load_food11(root / "food11", split, size=32))
              for split in ("labeled", "unlabeled", "validation", "testing")}
    assert counts == {"labeled": 22, "unlabeled": 5, "validation": 11, "testing": 4}
    faces_root = tmp_path / "faces-data"
    tool.make_data(faces_root, workers=1, sizes=SMALL, log=lambda msg: None)
    faces = load_faces(faces_root / "faces", n_train=4, n_test=1)
    assert faces.subjects == ["s1", "s2", "s3"] and (len(faces.train), len(faces.test)) == (12, 3)
    assert sorted(p.suffix for p in (faces_root / "faces" / "s1").iterdir()) == [".pgm"] * 5


def test_notebook_params_and_stand_in_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty hub cache: offline
    weights = tool.stand_in_weights(tmp_path)
    assert weights.name == tool.STAND_IN_WEIGHTS
    assert set(torch.load(weights, weights_only=True)) >= {"conv1.weight", "fc.weight"}
    nb = Path("notebooks")
    p3 = tool.notebook_params(nb / "part3_cifar10_resnet18_kd.ipynb", tmp_path, weights)
    p5 = tool.notebook_params(nb / "part5_food11_compression.ipynb", tmp_path, weights)
    p1 = tool.notebook_params(nb / "part1_cifar100_architectures.ipynb", tmp_path, weights)
    assert p3["weights_path"] == p5["pretrained_weights"] == str(weights)
    assert p1 == {"profile": "full", "data_root": str(tmp_path), "rehearse": True}
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / tool.RESNET18_FILE).write_bytes(b"")
    assert tool.stand_in_weights(tmp_path) is None  # the real weights are cached: used as they are


def _rehearsed_run(part, name):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (120, 8, 8, 3), dtype=torch.uint8, generator=g)
    labels = torch.arange(120) % 3
    sets = [D.ImageSet(images[i::2], labels[i::2], ["a", "b", "c"]) for i in (0, 1)]
    tr, te = loaders_for(*sets, 10, (0.5,) * 3, (0.25,) * 3, device="cpu", eval_batch_size=10)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return train.fit(net, tr, te, Recipe(40, lr=0.05), run=train.Run(part, name, "full"),
                     runtime=Runtime(log="off", amp="off", channels_last=False))


def test_table_of_the_rehearsal_records_and_clearing(capsys):
    with rehearsal.rehearsing(steps=2, eval_batches=1):
        _rehearsed_run("part1", "a")
        _rehearsed_run("part2", "b")
        recs = tool.rehearsal_records()
        text = tool.write_table({"notebooks": [{"run": "part1_x", "seconds": 12.0, "status": "ok"}]})
        written = profiles.results_dir() / "table.md"
        assert written.read_text().strip() == text.strip()
        tool.clear_outputs()
        assert not profiles.results_dir().exists()
    assert [r["run"] for r in recs] == ["a", "b"]
    runs = tool.runs_table(recs)
    assert list(runs["steps x epochs"]) == ["6 x 40", "6 x 40"] and list(runs["budget h"]) == ["-", "-"]
    over = dict(recs[0], budget_s=recs[0]["rehearsal"]["projected_seconds"] / 2)
    assert tool._budget_h(over).endswith("(over)") and not tool._budget_h(dict(over, budget_s=7200.0)).endswith(")")
    parts = tool.parts_table(runs)
    assert parts.loc["all", "runs"] == 2
    assert parts.loc["all", "projected h (sum)"] == pytest.approx(runs["projected h"].sum())
    assert "part1_x 12 s (ok)" in text and "2 epochs x 2 steps" in text and "| part2" in text
    assert "no rehearsal records" in tool.table_text([])


NOTEBOOK_CODE = [
    'profile = ""\ndata_root = ""\nrehearse = False',
    """import os, torch
from torch import nn
from kdutils.core import profiles, records
from kdutils.core.data import ImageSet
from kdutils.core.loader import loaders_for
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime, fit
setup = profiles.resolve(profile, data_root, {"full": {"epochs": 50}}, rehearse=rehearse)
assert setup.rehearse and setup.profile == "full" and os.environ["KD_REHEARSE_STEPS"] == "2"
images, labels = torch.randint(0, 256, (80, 8, 8, 3), dtype=torch.uint8), torch.arange(80) % 2
sets = [ImageSet(images[i::2], labels[i::2], ["a", "b"]) for i in (0, 1)]
tr, te = loaders_for(*sets, 8, (0.5,) * 3, (0.25,) * 3, device="cpu", eval_batch_size=8)
net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
fit(net, tr, te, Recipe(setup["epochs"], lr=0.05), run=Run("part9", "tiny", setup.profile),
    runtime=Runtime(log="off", amp="off", channels_last=False))""",
]


def test_run_drives_notebooks_rehearsed_and_prints_the_table(tmp_path, monkeypatch, capsys):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CODE]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "part9_tiny.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setattr("kdutils.tools.run_notebooks.part_notebooks", lambda only: [path])
    monkeypatch.setattr(tool, "stand_in_weights", lambda root: None)
    data = tmp_path / "data"
    for job in tool.JOBS:  # every data set "present": nothing is generated
        tool._target(job, data).mkdir(parents=True)
    try:
        assert tool.run(data, steps=2, eval_batches=1, log=lambda msg: None) == 0
        rec = json.loads((profiles.results_dir() / "full" / "part9" / "tiny.json").read_text())
        summary = json.loads((profiles.runs_dir() / "full" / "summary.json").read_text())
    finally:
        for name in ("KD_REHEARSE", "KD_REHEARSE_STEPS", "KD_REHEARSE_EVAL_BATCHES"):
            os.environ.pop(name, None)
    assert rec["rehearsal"]["steps_done"] == 4 and rec["epochs_done"] == 2 and rec["epochs"] == 50
    assert [n["run"] for n in summary["notebooks"]] == ["part9_tiny"] and summary["notebooks"][0]["status"] == "ok"
    out = capsys.readouterr().out
    assert "| part9" in out and "part9_tiny" in out and "2 epochs x 2 steps" in out
    assert tool._earlier_outcomes(tmp_path / "none.json", []) == []


def test_keep_merges_the_earlier_summary(tmp_path):
    earlier = tmp_path / "summary.json"
    earlier.write_text(json.dumps({"notebooks": [{"run": "part2_x", "seconds": 5.0, "status": "ok"},
                                                 {"run": "part1_y", "seconds": 9.0, "status": "failed"}]}))
    again = [{"run": "part1_y", "seconds": 7.0, "status": "ok"}]
    assert tool._earlier_outcomes(earlier, again) == [{"run": "part2_x", "seconds": 5.0, "status": "ok"}]
