"""Part 1: the fixed CIFAR-100 training framework (shared with part 2) and the architecture ablation."""

from __future__ import annotations

import functools
import math
import re
import statistics
import time
from typing import Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from kdutils.core import data as D
from kdutils.core import findings as F
from kdutils.core import records as R
from kdutils.core.loader import loaders_for
from kdutils.core.profiles import Setup, resolve
from kdutils.core.objective import CrossEntropy
from kdutils.core.precision import autocast_context, resolve_amp, resolve_channels_last, resolve_device
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime, fit
from kdutils.models import build_model, count_flops, count_params
from kdutils.models.cifar_resnet import ABLATION_PATH, PROPOSAL_PARAM_BUDGET

# =========================================================================== recipes
#: One recipe per profile; identical for every model of the ablation.
CIFAR100_RECIPE = {
    "full": dict(epochs=100, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                 weight_decay=5e-4, schedule="cosine", warmup_epochs=1, label_smoothing=0.1,
                 padding=4, flip=True, cutout=8, amp="auto", budget_s=2 * 3600,
                 train_per_class=None, test_per_class=None),
    "quick": dict(epochs=4, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                  weight_decay=5e-4, schedule="cosine", warmup_epochs=0, label_smoothing=0.1,
                  padding=4, flip=True, cutout=8, amp="auto", budget_s=2 * 3600,
                  train_per_class=30, test_per_class=10),
    "smoke": dict(epochs=1, batch_size=32, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                  weight_decay=5e-4, schedule="cosine", warmup_epochs=0, label_smoothing=0.1,
                  padding=4, flip=True, cutout=8, amp="auto", budget_s=2 * 3600,
                  train_per_class=None, test_per_class=None),
}

#: What each recipe key means (for the notebook's and README's framework table).
RECIPE_DOC = {
    "epochs": "training epochs",
    "batch_size": "images per step",
    "optimizer": "optimizer",
    "lr": "peak learning rate",
    "momentum": "momentum",
    "nesterov": "Nesterov momentum",
    "weight_decay": "L2 weight decay",
    "schedule": "learning-rate schedule (per step)",
    "warmup_epochs": "linear warm-up epochs",
    "label_smoothing": "label smoothing of the CE loss",
    "padding": "random crop: zero padding (px)",
    "flip": "random horizontal flip",
    "cutout": "cutout square side (px)",
    "amp": "mixed precision (auto: bf16 on CUDA; on CPU the measured faster of fp32/bf16)",
    "budget_s": "wall-clock budget per run (s)",
    "train_per_class": "training images per class (None: all)",
    "test_per_class": "test images per class (None: all)",
}


def recipe_for(setup: Setup, **overrides) -> dict:
    """The profile's recipe with the non-None ``overrides`` applied."""
    recipe = dict(CIFAR100_RECIPE[setup.profile])
    unknown = set(overrides) - set(recipe)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(recipe)}")
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    return recipe


def recipe_table(recipe: dict):
    """The recipe as a two-column DataFrame (setting, value)."""
    import pandas as pd

    return pd.DataFrame([(RECIPE_DOC.get(k, k), v) for k, v in recipe.items()], columns=["setting", "value"])


def cifar_sets(name: str, setup: Setup, train_per_class: Optional[int] = None,
               test_per_class: Optional[int] = None):
    """Train and test :class:`~kdutils.core.data.ImageSet` for the setup's profile.

    Smoke: generated pickles (``data.smoke_root``). Otherwise ``setup.data_root`` holding
    torchvision's pickles or ``<name>/{train,test}/<class>/*.png`` (the setting
    ``image_size=(H, W)`` resizes the images of such a tree while loading). When neither is
    there (a fresh clone, Colab), every profile but smoke downloads the official archive
    (torchvision's URL and md5, :func:`kdutils.core.datasets.obtain`). The per-class subsets
    are drawn from the first ``data.SUBSET_POOL`` images per class by file name, so the whole
    set and a sample tree of those images give the same subset.
    """
    if setup.data_root is None:
        root, check = D.smoke_root(name), False
    else:
        root, check = setup.data_root, True
    download = setup.data_root is not None and not D.has_cifar(name, root)
    size = setup.settings.get("image_size")  # (H, W): resize an image tree of mixed sizes while loading
    extra = {"size": tuple(size)} if size else {}
    tr = D.load_dataset(name, root, "train", check_md5=check, download=download, **extra)
    te = D.load_dataset(name, root, "test", check_md5=check, download=download, **extra)
    pool = D.SUBSET_POOL.get(name, {})
    if train_per_class:
        tr = tr.per_class(train_per_class, pool=pool.get("train"))
    if test_per_class:
        te = te.per_class(test_per_class, pool=pool.get("test"))
    return tr, te


#: The seed of every part-1 run: its model's initial weights (``build_model(..., seed=SEED)``),
#: the data order and the augmentations.
SEED = 0


def cifar_loaders(name: str, train_set, test_set, recipe: dict, seed: int = SEED, device="auto"):
    mean, std = D.NORMALIZATION[name]
    return loaders_for(train_set, test_set, recipe["batch_size"], mean, std, device=device,
                       padding=recipe["padding"], flip=recipe["flip"], cutout=recipe["cutout"], seed=seed)


def train_with_recipe(model, run: Run, recipe: dict, train_loader, test_loader, objective=None,
                      force: bool = False, seed: int = SEED) -> dict:
    """``fit`` with the framework's fixed settings (the one framework of parts 1-2).

    ``recipe`` is a profile's :data:`CIFAR100_RECIPE` entry: its optimisation settings
    become the :class:`~kdutils.core.recipe.Recipe`, ``amp`` and ``budget_s`` the
    :class:`~kdutils.core.train.Runtime`. ``objective`` defaults to cross-entropy with
    the recipe's label smoothing. The record keeps the whole dict under ``framework``.
    """
    objective = objective if objective is not None else CrossEntropy(recipe["label_smoothing"])
    run.extra.setdefault("framework", dict(recipe))
    runtime = Runtime(amp=recipe["amp"], budget_s=recipe["budget_s"], seed=seed, force=force)
    return fit(model, train_loader, test_loader, Recipe.from_dict(recipe), objective, run, runtime=runtime)


# =========================================================================== ablation
# --------------------------------------------------------------------------- rows
def run_name(entry: Mapping, width_mult: float = 1.0) -> str:
    """The record/checkpoint name of a path entry trained at ``width_mult``.

    ``"SE-WRN-28-8 (proposal)"`` at full width is ``se-wrn-28-8-proposal``; narrowed copies
    get a suffix (``..._w0.25``) so that they never share a checkpoint with the full model.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", entry["name"].lower()).strip("-")
    return slug if width_mult == 1 else f"{slug}_w{width_mult:g}"


def select_entries(path: Sequence[Mapping], models: str = "") -> list:
    """The entries of ``path`` named in the comma list ``models`` (all when it is empty).

    A name matches an entry's display name, its run name (:func:`run_name`) or its registry
    model name, case-insensitively. The path's order is kept, whatever the list's order.
    """
    wanted = {m.strip().lower() for m in models.split(",") if m.strip()}
    if not wanted:
        return list(path)

    def names(entry):
        return {entry["name"].lower(), run_name(entry), entry["model"].lower()}

    unknown = sorted(w for w in wanted if not any(w in names(e) for e in path))
    if unknown:
        raise ValueError(
            f"models={models!r}: no ablation row called {', '.join(unknown)}; use a comma list of "
            f"{', '.join(run_name(e) for e in path)} (or leave it empty for every row)")
    return [e for e in path if wanted & names(e)]


# --------------------------------------------------------------------------- the notebook's runs
#: Per profile: the trained width (``width_mult``) and the size of the step timing that
#: projects the full run (``timing_batch`` None: the recipe's batch). Notebook 01 and
#: ``kdutils.tools.launch`` read it from here.
SETTINGS = {
    "smoke": dict(width_mult=0.125, timing_batch=2, timing_steps=1),
    "quick": dict(width_mult=0.25, timing_batch=32, timing_steps=2),
    "full": dict(width_mult=1.0, timing_batch=None, timing_steps=10),
}


def resolve_setup(profile: Optional[str] = None, data_root: Optional[str] = None,
                  width_mult: Optional[float] = None, rehearse: Optional[bool] = None) -> Setup:
    """Part 1's :class:`~kdutils.core.profiles.Setup`: :data:`SETTINGS` of the profile, with
    ``width_mult`` when it is not None (see :func:`kdutils.core.profiles.resolve`)."""
    return resolve(profile, data_root, SETTINGS, overrides={"width_mult": width_mult}, rehearse=rehearse)


def entry_for(run: str, width_mult: float, path: Sequence[Mapping] = ABLATION_PATH) -> Mapping:
    """The row of ``path`` whose run name at ``width_mult`` is ``run`` (e.g. ``resnet-18_w0.125``),
    else the one row :func:`select_entries` finds by its display, run or model name."""
    for entry in path:
        if run == run_name(entry, width_mult):
            return entry
    try:
        found = select_entries(path, run)
    except ValueError:
        found = []
    if len(found) == 1:
        return found[0]
    raise ValueError(f"part1 has no run {run!r} at width x{width_mult:g}; its runs: "
                     f"{', '.join(run_name(e, width_mult) for e in path)}")


def train_entry(entry: Mapping, setup: Setup, recipe: dict, train_loader, test_loader, num_classes: int,
                force: bool = False) -> dict:
    """Train the ablation row ``entry`` as notebook 01 does (the setup's width, :data:`SEED`,
    record and checkpoint :func:`run_name`); returns its record (a finished run is reused)."""
    width = setup["width_mult"]
    model = build_model(entry["model"], num_classes, width_mult=width, seed=SEED, **entry["options"])
    run = Run("part1", run_name(entry, width), setup.profile,
              params={"model": entry["model"], "options": entry["options"], "width_mult": width},
              extra={"label": entry["name"], "change": entry["change"], "width_mult": width,
                     "n_train": train_loader.num_samples, "n_test": test_loader.num_samples})
    return train_with_recipe(model, run, recipe, train_loader, test_loader, force=force)


def path_records(path: Sequence[Mapping], part: str, profile: str, width_mult: float = 1.0) -> dict:
    """``{entry name: record or None}``: the stored record of every row trained at ``width_mult``."""
    return {e["name"]: R.load_record(part, run_name(e, width_mult), profile) for e in path}


# --------------------------------------------------------------------------- costs
def architecture_costs(path: Sequence[Mapping], num_classes: int = 100, input_size=(1, 3, 32, 32)):
    """Parameters and forward FLOPs per image of every entry's full-width model.

    Returns a DataFrame indexed by entry name with integer columns ``params`` and ``flops``
    (1 multiply-add = 2 FLOPs, see :func:`kdutils.models.count_flops`).
    """
    import pandas as pd

    rows = {}
    for entry in path:
        model = build_model(entry["model"], num_classes, **entry["options"])
        rows[entry["name"]] = {"params": count_params(model), "flops": count_flops(model, input_size)}
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------- run-time projection
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_train_step(model: nn.Module, recipe: Mapping, batch_size: int, steps: int = 3, warmup: int = 1,
                    num_classes: int = 100, input_size=(3, 32, 32), device="auto") -> float:
    """Median wall time (s) of one optimisation step of ``model`` on random data.

    The step is the one ``fit`` takes under ``recipe`` (its optimizer, mixed precision and
    channels-last layout on the device): forward, label-smoothed cross-entropy, backward,
    optimizer step. ``warmup`` untimed steps come first (allocations, kernel choice). The
    model's weights change: time a throwaway copy. Data loading is not included (the
    :class:`~kdutils.core.loader.GpuLoader` makes batches on the device at small cost).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(steps, int) or steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps!r}, warmup={warmup!r}")
    dev = resolve_device(device)
    dtype = resolve_amp(recipe.get("amp", "auto"), dev)
    model.to(dev).train()
    memory_format = torch.channels_last if resolve_channels_last("auto", dev) else torch.contiguous_format
    model.to(memory_format=memory_format)
    opt = Recipe.from_dict(recipe).optimizer_for(model.parameters())
    x = torch.randn(batch_size, *input_size, device=dev).contiguous(memory_format=memory_format)
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    smoothing = recipe.get("label_smoothing", 0.0)
    times = []
    for i in range(warmup + steps):
        _synchronize(dev)
        t0 = time.perf_counter()
        with autocast_context(dev, dtype):
            out = model(x)
        loss = nn.functional.cross_entropy(out.float(), y, label_smoothing=smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def projected_seconds(step_seconds: float, timed_batch: int, batch_size: int, train_images: int,
                      epochs: int) -> float:
    """Training seconds of ``epochs`` epochs over ``train_images`` at ``batch_size``, from
    one step timed at ``timed_batch``.

    A step at ``batch_size`` is taken to cost ``batch_size / timed_batch`` timed steps
    (exact on a saturated CPU; on a GPU a small timed batch under-uses the device, so the
    projection errs on the long side). An epoch has ``train_images // batch_size`` steps
    (the training loader drops the last incomplete batch).
    """
    for what, v in (("step_seconds", step_seconds), ("timed_batch", timed_batch), ("batch_size", batch_size),
                    ("train_images", train_images), ("epochs", epochs)):
        if not v > 0:
            raise ValueError(f"{what} must be > 0, got {v!r}")
    steps_per_epoch = train_images // batch_size
    return step_seconds * (batch_size / timed_batch) * steps_per_epoch * epochs


def project_full_runs(path: Sequence[Mapping], recipe: Mapping, train_images: int,
                      timing_batch: Optional[int] = None, steps: int = 3, warmup: int = 1,
                      num_classes: int = 100, device="auto"):
    """Projected training time of each full-width entry under ``recipe`` on this device.

    Times ``steps`` optimisation steps at ``timing_batch`` images (default: the recipe's
    batch size; smaller keeps the CPU profiles fast) and multiplies out with
    :func:`projected_seconds`. Returns a DataFrame indexed by entry name: ``timed batch``,
    ``s/step (timed)``, ``projected min/epoch``, ``projected h`` and ``within budget``
    (against ``recipe["budget_s"]``; ``None`` when the recipe has no budget).
    """
    import pandas as pd

    batch = timing_batch or recipe["batch_size"]
    budget_s = recipe.get("budget_s")
    rows = {}
    for entry in path:
        model = build_model(entry["model"], num_classes, **entry["options"])
        step = time_train_step(model, recipe, batch, steps, warmup, num_classes, device=device)
        total = projected_seconds(step, batch, recipe["batch_size"], train_images, recipe["epochs"])
        rows[entry["name"]] = {
            "timed batch": batch,
            "s/step (timed)": step,
            "projected min/epoch": total / recipe["epochs"] / 60,
            "projected h": total / 3600,
            "within budget": None if budget_s is None else total <= budget_s,
        }
        del model
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------- table
#: Training columns of the ablation table: title -> dotted key into a record.
RECORD_COLUMNS = {
    "width": "width_mult",
    "trained params (M)": "n_params",
    "status": "status",
    "epochs done": "epochs_done",
    "epochs": "epochs",
    "train min": "train_seconds",
    "in budget": "within_budget",
    "best top-1": "best.test_top1",
    "last top-1": "last.test_top1",
    "best top-5": "best.test_top5",
    "last top-5": "last.test_top5",
}


def architecture_table(path: Sequence[Mapping], records: Mapping[str, Optional[Mapping]], costs):
    """One row per path entry, in path order.

    ``records`` maps entry names to run records (``None`` or missing: not run yet);
    ``costs`` is :func:`architecture_costs`' DataFrame. Columns: ``change``, full-width
    ``params (M)`` and ``GFLOPs`` (forward, per image), the trained ``width`` and
    ``trained params (M)``, ``status`` (``not run`` without a record), ``epochs``
    (done/planned), ``train min``, ``in budget``, best and last top-1 / top-5, and
    ``Δ last top-1``: the change of the last-epoch top-1 against the row above, in points
    (empty when either row is not measured). The last epoch is compared, not the best,
    because the best is picked on the test set.
    """
    import pandas as pd

    names = [e["name"] for e in path]
    df = R.records_table([records.get(n) or {} for n in names], RECORD_COLUMNS)
    df.index = names
    df.insert(0, "change", [e["change"] for e in path])
    df.insert(1, "params (M)", [costs.loc[n, "params"] / 1e6 for n in names])
    df.insert(2, "GFLOPs", [costs.loc[n, "flops"] / 1e9 for n in names])
    df["trained params (M)"] = df["trained params (M)"].astype(float) / 1e6
    df["status"] = df["status"].fillna("not run")
    done = df.pop("epochs done")
    df["epochs"] = [None if pd.isna(p) else f"{int(d)}/{int(p)}" for d, p in zip(done, df["epochs"])]
    df["train min"] = df["train min"].astype(float) / 60
    df["Δ last top-1"] = df["last top-1"].astype(float).diff()
    return df


# --------------------------------------------------------------------------- prose
#: The assignment's top-1 goal (%) for the proposal.
TARGET_TOP1 = 82.0

#: The argued proposal: shown by the notebook (section 7) and printed on part 1's report page.
OPINION = (
    "**SE-WRN-28-8.** A pre-activation wide ResNet, depth 28, widening factor 8 (three stages of four "
    "basic blocks, 128/256/512 channels at 32/16/8 pixels), with a squeeze-and-excitation unit on every "
    "residual branch: 23.6M parameters, under the 30M limit. The ablation path tests the choices one at a "
    "time: an attention unit on ResNet-18 (CBAM, then SE, which drops CBAM's spatial gate: is that gate "
    "worth its full-resolution cost at 32x32?), pre-activation blocks (a shortcut path free of ReLUs), the "
    "wide three-stage layout at about the same parameter count (width spent at high resolution, where most "
    "of the useful work on small images is; Zagoruyko & Komodakis 2016), and finally depth (WRN-28-8 keeps "
    "WRN-28-10's depth at 0.64x its compute, which is what the 2-hour budget allows with a 100-epoch "
    "schedule). The argument rests on these design reasons and the literature; the findings, generated "
    "from the ablation table, say whether the numbers of this run support it."
)

NOTHING_YET = ("No row of the ablation has a record yet in this profile, so there is nothing to argue from: "
               "run the training cell first.")


def findings(records: Iterable[Optional[Mapping]], n_test: Optional[int] = None, costs=None,
             path: Optional[Sequence[Mapping]] = None, target_top1: float = TARGET_TOP1,
             param_budget: int = PROPOSAL_PARAM_BUDGET) -> list:
    """The measured sentences of the ablation, from the run records of part 1 (the notebook's
    section 7 and the report's page both call this, so both say the same).

    The rows are the ``path`` entries (default: ``ABLATION_PATH``) trained at the width of
    the most recently finished record; ``n_test`` defaults to the test-image count the records store,
    ``costs`` to :func:`architecture_costs` of the path. See :func:`ablation_findings`.
    """
    path = ABLATION_PATH if path is None else path
    recs = [r for r in records if r]
    if not recs:
        return [NOTHING_YET]
    latest = max([r for r in recs if R.is_finished(r)] or recs,
                 key=lambda r: str(r.get("finished") or r.get("created") or ""))
    width = latest.get("width_mult") or 1.0
    by_run = {r.get("run"): r for r in recs}
    rows = {e["name"]: by_run.get(run_name(e, width)) for e in path}
    if n_test is None:
        n_test = next((r["n_test"] for r in rows.values() if r and r.get("n_test")), None)
    if costs is None:
        costs = ablation_path_costs() if path is ABLATION_PATH else architecture_costs(path)
    return ablation_findings(architecture_table(path, rows, costs), n_test, target_top1, param_budget)


@functools.lru_cache(maxsize=1)
def ablation_path_costs():
    """:func:`architecture_costs` of ``ABLATION_PATH`` (100 classes), computed once (a few seconds)."""
    return architecture_costs(ABLATION_PATH)


def ablation_findings(table, n_test: Optional[int], target_top1: float = TARGET_TOP1,
                      param_budget: int = PROPOSAL_PARAM_BUDGET) -> list:
    """Sentences (Markdown) generated from :func:`architecture_table`, true whatever the numbers.

    How large a difference must be on ``n_test`` test images
    (:func:`~kdutils.core.findings.band_sentence`); one sentence per measured step (the
    change, its effect on the last-epoch top-1 judged against the noise band, its cost in
    parameters and FLOPs); the largest gain and loss beyond noise; first row against the
    last row (the proposal), and whether that supports the proposal; the last row against
    the target: top-1, parameter limit, wall-clock budget.
    """
    last = table["last top-1"].astype(float)
    if last.isna().all():
        return [NOTHING_YET]
    out = [F.band_sentence(float(last.mean()), n_test)]
    names = list(table.index)
    steps = []
    for prev, name in zip(names, names[1:]):
        delta = table.loc[name, "Δ last top-1"]
        if math.isnan(delta):
            continue
        a, b = last[prev], last[name]
        steps.append(F.Step(name, delta, F.noise_band((a + b) / 2, n_test)))
        out.append(f"**{name}** ({table.loc[name, 'change']}): last-epoch top-1 {a:.2f}% → {b:.2f}% "
                   f"({delta:+.2f} points, {F.verdict_words(delta, steps[-1].noise)}), at "
                   f"{_cost_ratios(table, name, prev)} of {prev}.")
    out += F.tally(steps) or ["No two consecutive rows are both measured, so no single change can be assessed yet."]
    return out + _proposal_findings(table, n_test, target_top1, param_budget)


def _proposal_findings(table, n_test: Optional[int], target_top1: float, param_budget: int) -> list:
    """The last row (the proposal) against the first row and against the assignment's target."""
    last = table["last top-1"].astype(float)
    first, final = table.index[0], table.index[-1]
    out = []
    if len(table) > 1 and not math.isnan(last[first]) and not math.isnan(last[final]):
        noise = F.noise_band((last[first] + last[final]) / 2, n_test)
        out.append(f"First row to last, last-epoch top-1: {F.compare(final, last[final], first, last[first], noise)} "
                   f"({last[first]:.2f}% → {last[final]:.2f}%), at {_cost_ratios(table, final, first)}.")
        out.append(_SUPPORT[F.verdict(last[final] - last[first], noise)].format(final=final, first=first))
    if not math.isnan(last[final]):
        row = table.loc[final]
        params = row["params (M)"] * 1e6
        out.append(
            f"{final}: {params / 1e6:.1f}M parameters ({'under' if params < param_budget else 'over'} the "
            f"{param_budget / 1e6:.0f}M limit), best top-1 {row['best top-1']:.2f}% and last {row['last top-1']:.2f}% "
            f"({'above' if row['best top-1'] > target_top1 else 'below'} the {target_top1:g}% target), "
            f"{row['train min']:.1f} training minutes over {row['epochs']} epochs, {_budget_words(row)}.")
    return out


#: How the first-to-last comparison bears on the argued proposal (:data:`OPINION`), by verdict.
_SUPPORT = {
    "gain": "This run's measurement agrees with the proposal's argument.",
    "noise": ("This run cannot separate {final} from {first}: it neither supports nor refutes the proposal, "
              "which rests on its design argument until a full-profile run measures it."),
    "loss": ("This run measured {final} below {first}, against the proposal's expectation; only a "
             "full-profile run can tell whether the argument or this small-scale measurement is wrong."),
    "unknown": ("Without a noise band this run cannot say whether the difference supports the proposal's "
                "argument."),
}


def _budget_words(row) -> str:
    if row["status"] == "budget":
        return "stopped by the wall-clock budget before its last epoch"
    return "inside the wall-clock budget" if row["in budget"] else "over the wall-clock budget"


def _cost_ratios(table, name: str, ref: str) -> str:
    """``"1.20x the parameters and 1.50x the FLOPs"`` of row ``name`` over row ``ref``."""
    return (f"{F.ratio(table.loc[name, 'params (M)'], table.loc[ref, 'params (M)'])} the parameters and "
            f"{F.ratio(table.loc[name, 'GFLOPs'], table.loc[ref, 'GFLOPs'])} the FLOPs")



# =========================================================================== report page
from kdutils.core import report_spec as S  # noqa: E402  (the page spec closes the module)

#: Part 1's page of the report (kdutils.tools.report); its text is :func:`findings` and :data:`OPINION`.
REPORT = S.PartSpec(
    part="part1",
    title="Part 1 - CIFAR-100 architecture ablation",
    notebooks=("part1_cifar100_architectures.ipynb",),
    data="CIFAR-100",
    tables=(S.Table("Ablation path: one change per row, one fixed recipe", "part1",
                    (S.LABEL, S.Column("width", "width_mult", "num"), S.PARAMS, S.FLOPS, S.TOP1, S.TOP5,
                     S.LAST_TOP1, S.EPOCHS, S.TRAIN_TIME)),),
    baseline=r"^resnet-18(_w[\d.]+)?$",
    opinion_title="Proposal",
)


# --------------------------------------------------------------------------- notebook parameters
from kdutils.core import params as P  # noqa: E402  (the notebook's parameter spec closes the module)

#: What the notebook's ``parameters`` cell may hold; its next cell checks them before any work.
PARAMETERS = {
    **P.COMMON,
    "epochs": P.integer(1, optional=True, help="epochs of every row"),
    "width_mult": P.number(0, 4, low_open=True, optional=True, help="trained width, 1.0 = the real networks"),
    "budget_hours": P.number(0, low_open=True, help="wall-clock training budget per run"),
    "models": P.text(help="comma list of rows to train; empty: all"),
}
