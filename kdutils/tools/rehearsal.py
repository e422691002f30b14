"""``make rehearsal``: every part notebook at full scale with capped steps, and its table.

The full profile (the assignment's settings, models and data) is rehearsed: each notebook
runs with ``rehearse=True`` (:mod:`kdutils.core.rehearsal`), so every training run starts
at full size, trains 2 epochs of a few steps, evaluates a few batches, writes its
checkpoint and records peak memory, checkpoint size, seconds per step and the projected
full-run time on this device. Outputs go to ``results/rehearsal/``, ``runs/rehearsal/``,
``figures/rehearsal/`` and ``reports/rehearsal/`` (emptied first), never beside full ones.

Data: ``--data-root`` (default ``runs/rehearsal-data`` under the output root). Every data set missing there is
generated at full size in the real on-disk formats (:func:`make_data`): CIFAR-10 and
CIFAR-100 as torchvision's pickles (50,000 training and 10,000 test images each), a face
tree of 100 subjects x 50 greyscale PGM images, and a food-11 tree with the course's split
sizes (:data:`FOOD11_SPLITS`). A folder that already holds a data set (real data) is used
as it is. Where torchvision's ImageNet ResNet-18 weights are not in the torch hub cache
(offline), part 3's and part 5's pretrained teachers start from a randomly initialised
ResNet-18 file written beside the data: the same shapes and cost, stated in the output.

Command line::

    python -m kdutils.tools.rehearsal run [--data-root PATH] [--only part1,part3] [--steps 3] [--eval-batches 2]
    python -m kdutils.tools.rehearsal data PATH      # generate the full-size data only
    python -m kdutils.tools.rehearsal table          # the table of the last rehearsal's records
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from kdutils.core import data as D
from kdutils.core import records as R
from kdutils.core import rehearsal
from kdutils.core.fileio import atomic_torch_save
from kdutils.core.profiles import figures_dir, output_root, reports_dir, results_dir, runs_dir

#: The course's food-11 split sizes (ML2021 HW3: "Training set: 280 * 11 labeled images +
#: 6786 unlabeled images; Validation set: 60 * 11 labeled images; Testing set: 3347
#: images", as quoted at https://mantutor.com/product/machine-learning-hw3-image-classification-solved/).
FOOD11_SPLITS = dict(num_classes=11, per_class=280, n_unlabeled=6786, n_val_per_class=60, n_test=3347)
#: Generated food photos vary around this size (H, W), 0.7-1.4x per side; stored at 142 px by part 5.
FOOD11_IMAGE_SIZE = (256, 320)
#: The full face set of part 4: 100 subjects x 50 images (40 train + 10 test), ORL-sized PGM.
FACES = dict(num_classes=100, per_class=50, size=(112, 92))
CIFAR_SIZES = dict(n_train=50_000, n_test=10_000)
#: What :func:`make_data` writes by default (tests pass smaller sizes).
FULL_SIZES = dict(cifar=CIFAR_SIZES, faces=FACES, food11=FOOD11_SPLITS, food11_image=FOOD11_IMAGE_SIZE)
#: torchvision's file name of the ImageNet ResNet-18 weights (IMAGENET1K_V1).
RESNET18_FILE = "resnet18-f37072fd.pth"
STAND_IN_WEIGHTS = "resnet18-random-init.pth"
#: Where ``run`` keeps (and generates) its data by default, under the output root.
DEFAULT_DATA = "runs/rehearsal-data"

#: One generation job per data set (and per food-11 split), each in its own process.
JOBS = ("cifar10", "cifar100", "faces", "food11:labeled", "food11:validation", "food11:unlabeled", "food11:testing")
_FOOD_DIRS = {"labeled": "training/labeled", "unlabeled": "training/unlabeled", "validation": "validation",
              "testing": "testing"}
#: torchvision's folders of the CIFAR pickles.
_CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


# --------------------------------------------------------------------------- data
def _target(job: str, root: Path) -> Path:
    """The folder job ``job`` fills under ``root``."""
    if job in _CIFAR_DIRS:
        return root / _CIFAR_DIRS[job]
    if job == "faces":
        return root / "faces"
    return root / "food11" / _FOOD_DIRS[job.split(":")[1]]


def _present(job: str, root: Path) -> bool:
    """True when ``root`` already holds the data set of ``job`` (CIFAR: pickles or image tree)."""
    return D.has_cifar(job, root) if job in _CIFAR_DIRS else _target(job, root).exists()


def _generate(job: str, root: str, sizes: dict) -> str:
    """Write one data set (``sizes``: as :data:`FULL_SIZES`) into a temporary folder, then
    move it into place."""
    root_path = Path(root)
    tmp = root_path / f".partial-{job.replace(':', '-')}"
    shutil.rmtree(tmp, ignore_errors=True)
    if job in ("cifar10", "cifar100"):
        D.make_cifar_pickles(tmp, job, seed=7, **sizes["cifar"])
        made = tmp / _CIFAR_DIRS[job]
    elif job == "faces":
        faces = sizes["faces"]
        D.make_image_tree(tmp / "faces", faces["num_classes"], faces["per_class"], faces["size"], "pgm", grey=True,
                          seed=11, class_names=[f"s{i + 1}" for i in range(faces["num_classes"])])
        made = tmp / "faces"
    else:
        split = job.split(":")[1]
        D.make_food11_tree(tmp / "food11", seed=13, size=sizes["food11_image"], splits=(split,), **sizes["food11"])
        made = tmp / "food11" / _FOOD_DIRS[split]
    target = _target(job, root_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    made.rename(target)
    shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def make_data(root, workers: Optional[int] = None, sizes: Optional[dict] = None, log=print) -> list:
    """Generate every data set missing under ``root`` (full size unless ``sizes``), each in
    its own process; return the jobs run."""
    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    todo = [job for job in JOBS if not _present(job, root)]
    for job in JOBS:
        if job not in todo:
            log(f"[rehearsal data] {job}: present under {root}, used as it is")
    if todo:
        log(f"[rehearsal data] generating {', '.join(todo)} under {root} ...")
        with ProcessPoolExecutor(max_workers=workers or min(len(todo), os.cpu_count() or 1)) as pool:
            for job, where in zip(todo, pool.map(_generate, todo, [str(root)] * len(todo),
                                                 [sizes or FULL_SIZES] * len(todo))):
                log(f"[rehearsal data] {job}: written to {where}")
    return todo


def stand_in_weights(root) -> Optional[Path]:
    """A randomly initialised torchvision ResNet-18 file under ``root`` when the ImageNet
    weights are not in the torch hub cache (offline); None when they are."""
    import torch
    import torchvision

    if (Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE).is_file():
        return None
    path = Path(root) / STAND_IN_WEIGHTS
    if not path.is_file():
        torch.manual_seed(0)
        atomic_torch_save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


# --------------------------------------------------------------------------- table
def rehearsal_records() -> list:
    """Every record with a rehearsal block in the rehearsal's results folder."""
    if not rehearsal.active():
        rehearsal.switch_on()
    out = []
    for path in sorted(results_dir().glob("*/*/*.json")):
        with open(path) as f:
            rec = json.load(f)
        if isinstance(rec, dict) and rehearsal.FOLDER in rec:
            out.append(rec)
    return out


def _budget_h(rec: dict) -> str:
    """The run's wall-clock budget in hours, marked when the projection exceeds it."""
    budget, projected = rec.get("budget_s"), rec[rehearsal.FOLDER]["projected_seconds"]
    if budget is None:
        return "-"
    return f"{budget / 3600:g}" + (" (over)" if projected is not None and projected > budget else "")


def _gb(n) -> Optional[float]:
    return None if n is None else n / 2 ** 30


def runs_table(recs: Sequence[dict]):
    """One row per rehearsed run: size, precision, s/step, the full run's steps, projection,
    peak memory and checkpoint size."""
    import pandas as pd

    rows = []
    for r in recs:
        b = r[rehearsal.FOLDER]
        rows.append({"part": r["part"], "run": r["run"], "params (M)": (r.get("n_params") or 0) / 1e6,
                     "precision": r.get("amp"), "s/step": b["seconds_per_step"],
                     "steps x epochs": f"{b['steps_per_epoch']} x {b['epochs']}",
                     "projected h": (b["projected_seconds"] or 0) / 3600, "budget h": _budget_h(r),
                     "peak host GB": _gb(b["peak_host_bytes"]), "peak GPU GB": _gb(b["peak_gpu_bytes"]),
                     "checkpoint MB": (b["checkpoint_bytes"] or 0) / 2 ** 20})
    return pd.DataFrame(rows)


def parts_table(runs):
    """Per part: runs, projected hours of training in all, and the largest peaks."""
    agg = {"run": "count", "projected h": "sum", "peak host GB": "max", "peak GPU GB": "max", "checkpoint MB": "max"}
    table = runs.groupby("part").agg(agg).rename(columns={"run": "runs", "projected h": "projected h (sum)"})
    table.loc["all"] = [table["runs"].sum(), table["projected h (sum)"].sum(), table["peak host GB"].max(),
                        table["peak GPU GB"].max(), table["checkpoint MB"].max()]
    return table


def device_line(recs: Sequence[dict]) -> str:
    """Where the numbers were measured: CPU model, GPU, torch, threads."""
    first = recs[0] if recs else {}
    return (f"CPU {first.get('cpu_model') or R.cpu_model()} ({os.cpu_count()} cores), device {first.get('host_device', '?')}, torch "
            f"{first.get('torch', '?')}, {first.get('cpu_threads', '?')} threads")


def _markdown(df, **options) -> str:
    """A table with 3 significant digits; missing values (no GPU) shown as "-"."""
    return R.table_markdown(df.astype(object).where(df.notna(), None), floatfmt=".3g", missingval="-", **options)


def table_text(recs: Sequence[dict], summary: Optional[dict] = None) -> str:
    """The Markdown the command prints (and writes to ``results/rehearsal/table.md``)."""
    if not recs:
        return "no rehearsal records found (run `make rehearsal` first)"
    runs = runs_table(recs)
    caps = recs[0][rehearsal.FOLDER]["caps"]
    head = (f"Rehearsal: {caps['epochs']} epochs x {caps['steps']} steps per run, evaluation capped at "
            f"{caps['eval_batches']} batches. {device_line(recs)}.")
    lines = [head, "", _markdown(parts_table(runs)), "", _markdown(runs, index=False)]
    if summary:
        walls = ", ".join(f"{n['run']} {n['seconds']:.0f} s ({n['status']})" for n in summary.get("notebooks", []))
        lines += ["", f"Notebook wall times: {walls}."]
    return "\n".join(lines)


def write_table(summary: Optional[dict] = None) -> str:
    """Print the table and write it (Markdown and CSV) beside the rehearsal's records."""
    recs = rehearsal_records()
    text = table_text(recs, summary)
    if recs:
        R.atomic_write_json(results_dir() / "table.json", {"runs": runs_table(recs).to_dict("records"),
                                                          "summary": summary})
        (results_dir() / "table.md").write_text(text + "\n")
    print(text)
    return text


# --------------------------------------------------------------------------- run
def notebook_params(notebook: Path, data_root: Path, weights: Optional[Path]) -> dict:
    """The papermill parameters of one notebook: the full profile, rehearsed, on ``data_root``
    (and the stand-in weights file for the pretrained teachers of parts 3 and 5)."""
    params = {"profile": "full", "data_root": str(data_root), "rehearse": True}
    if weights is not None and notebook.name.startswith("part3_cifar10"):
        params["weights_path"] = str(weights)
    if weights is not None and notebook.name.startswith("part5"):
        params["pretrained_weights"] = str(weights)
    return params


def clear_outputs() -> None:
    """Empty the rehearsal's output folders (a rehearsal always measures afresh)."""
    for folder in (results_dir(), runs_dir(), figures_dir(), reports_dir()):
        if folder.name == rehearsal.FOLDER:  # never anything else
            shutil.rmtree(folder, ignore_errors=True)


def run(data_root, only: Sequence[str] = (), steps: Optional[int] = None, eval_batches: Optional[int] = None,
        timeout: Optional[float] = None, keep: bool = False, log=print) -> int:
    """Generate missing data, run the part notebooks rehearsed, print the table; the exit
    code is 1 when a notebook failed. ``keep``: add to the last rehearsal instead of
    emptying its folders first (its finished runs are reused)."""
    from kdutils.tools.processes import run_notebook, stop_on_signals
    from kdutils.tools.run_notebooks import part_notebooks

    caps = rehearsal.switch_on(steps, eval_batches)
    os.environ.update(KD_REHEARSE="1", KD_REHEARSE_STEPS=str(caps.steps),
                      KD_REHEARSE_EVAL_BATCHES=str(caps.eval_batches))
    os.environ.pop("KD_PROFILE", None)
    data_root = Path(data_root).expanduser().resolve()
    notebooks = part_notebooks(list(only))
    make_data(data_root, log=log)
    weights = stand_in_weights(data_root)
    if weights is not None:
        log(f"[rehearsal] no ImageNet ResNet-18 weights in the torch hub cache: the pretrained teachers start from "
            f"{weights} (random initialisation, same shapes and cost)")
    if not keep:
        clear_outputs()
    out, outcomes = runs_dir() / "full", []
    with stop_on_signals():
        for i, nb in enumerate(notebooks, 1):
            log(f"[rehearsal {i}/{len(notebooks)}] {nb.name} ...")
            outcome = run_notebook(nb, out, nb.stem, notebook_params(nb, data_root, weights), timeout=timeout)
            outcomes.append(outcome)
            log(f"[rehearsal {i}/{len(notebooks)}] {nb.name}: {outcome['status']} in {outcome['seconds']:.0f} s"
                + (f": {outcome.get('error')} (log {outcome['log']})" if outcome["status"] != "ok" else ""))
    earlier = _earlier_outcomes(out / "summary.json", outcomes) if keep else []
    summary = {"notebooks": earlier + outcomes, "data_root": str(data_root), "caps": asdict(caps)}
    R.atomic_write_json(out / "summary.json", summary)
    write_table(summary)
    return 1 if any(o["status"] != "ok" for o in outcomes) else 0


def _earlier_outcomes(path: Path, outcomes: Sequence[dict]) -> list:
    """The notebooks of an earlier summary that ``outcomes`` did not run again."""
    if not path.is_file():
        return []
    again = {o["run"] for o in outcomes}
    return [o for o in json.loads(path.read_text()).get("notebooks", []) if o["run"] not in again]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m kdutils.tools.rehearsal", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="generate missing data, run every part notebook rehearsed, print the table")
    r.add_argument("--data-root", default=None, help=f"data sets, missing ones generated (default <output root>/{DEFAULT_DATA})")
    r.add_argument("--only", default="", help="comma-separated notebook prefixes, e.g. part1,part3 (default: all)")
    r.add_argument("--steps", type=int, default=None, help="training steps per epoch (default 3)")
    r.add_argument("--eval-batches", type=int, default=None, help="batches per evaluation (default 2)")
    r.add_argument("--timeout", type=float, default=None, help="seconds allowed per notebook")
    r.add_argument("--keep", action="store_true", help="add to the last rehearsal instead of starting afresh")
    d = sub.add_parser("data", help="generate the full-size data sets missing under a folder")
    d.add_argument("root", nargs="?", default=None, help=f"default: <output root>/{DEFAULT_DATA}")
    sub.add_parser("table", help="print the table of the last rehearsal")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "data":
            make_data(args.root or output_root() / DEFAULT_DATA)
            return 0
        if args.command == "table":
            rehearsal.switch_on()  # the rehearsal's folders
            summary_file = runs_dir() / "full" / "summary.json"
            summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
            return 0 if rehearsal_records() and write_table(summary) else 1
        only = [p.strip() for p in args.only.split(",") if p.strip()]
        return run(args.data_root or output_root() / DEFAULT_DATA, only, args.steps, args.eval_batches, args.timeout,
                   args.keep)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
