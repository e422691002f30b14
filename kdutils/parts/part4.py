"""Part 4: Learning without Forgetting: face data split per subject, a two-head network, three ways to adapt it."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from kdutils.core import datasets
from kdutils.core import distributed as DP
from kdutils.core import records as R
from kdutils.core.seeds import base_name, describe, difference, mean_std
from kdutils.core.data import ImageSet, load_image_folder
from kdutils.core.loader import GpuLoader
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime, evaluate, fit, predict_logits, resolve_device
from kdutils.distill.objectives import LwFLoss


# =========================================================================== faces
@dataclass
class FaceSplit:
    """Training and test images of the kept subjects (labels ``0..len(subjects)-1``)."""

    train: ImageSet
    test: ImageSet
    dropped: list = field(default_factory=list)  # subjects with too few images (drop_small_subjects=True)

    @property
    def subjects(self) -> list:
        return list(self.train.classes)


def _check_count(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int (images per subject), got {value!r}")
    return value


def load_faces(root, n_train: int = 40, n_test: int = 10, size: int = 32, drop_small_subjects: bool = False,
               seed: int = 0) -> FaceSplit:
    """Load ``<root>/<subject>/*`` and split every subject into ``n_train`` + ``n_test`` images.

    A subject with fewer than ``n_train + n_test`` images raises a ``ValueError`` that names
    it, unless ``drop_small_subjects=True``, which leaves it out (listed in ``dropped``) and
    numbers the remaining subjects from 0 in sorted folder order. A missing ``faces-orl/``
    or ``faces/`` folder is obtained first (:func:`kdutils.core.datasets.obtain`: the
    Olivetti copy of the ORL faces, or LFW as the stand-in for the course's face set).
    """
    _check_count("n_train", n_train)
    _check_count("n_test", n_test)
    root = Path(root)
    if not root.is_dir() and root.name in datasets.BY_FOLDER:
        root = datasets.obtain(datasets.BY_FOLDER[root.name], root.parent)
    if datasets.note_of(root):
        print(f"faces: {datasets.note_of(root)}")  # e.g. how close the LFW stand-in is to the course's set
    faces = load_image_folder(root, size=(size, size))
    need = n_train + n_test
    counts = torch.bincount(faces.labels, minlength=faces.num_classes).tolist()
    small = [(name, n) for name, n in zip(faces.classes, counts) if n < need]
    if small and not drop_small_subjects:
        listed = ", ".join(f"{name} ({n} images)" for name, n in small)
        raise ValueError(
            f"{len(small)} subject(s) under {root} have fewer than n_train + n_test = {need} images: {listed}. "
            "Lower n_train / n_test, add images, or pass drop_small_subjects=True to leave them out."
        )
    dropped = [name for name, _ in small]
    kept = [c for c, name in enumerate(faces.classes) if name not in dropped]
    if not kept:
        raise ValueError(f"no subject under {root} has {need} images; lower n_train / n_test")

    g = torch.Generator().manual_seed(seed)
    train_idx, test_idx, train_lab, test_lab = [], [], [], []
    for new_label, c in enumerate(kept):
        idx = torch.nonzero(faces.labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        train_idx.append(idx[:n_train])
        test_idx.append(idx[n_train:need])
        train_lab += [new_label] * n_train
        test_lab += [new_label] * n_test
    subjects = [faces.classes[c] for c in kept]

    def part(index, labels) -> ImageSet:
        s = faces.subset(torch.cat(index))
        return ImageSet(s.images, torch.tensor(labels, dtype=torch.long), subjects, s.files, s.source)

    return FaceSplit(part(train_idx, train_lab), part(test_idx, test_lab), dropped)


__all__ = ["FaceSplit", "load_faces"]


# =========================================================================== lwf
METHODS = {"feature_extraction": "feature extraction", "fine_tuning": "fine-tuning", "lwf": "LwF"}


def new_logits(outputs):
    """The new task's logits from a :class:`TwoHeadNet` output."""
    return outputs[0]


def old_logits(outputs):
    """The old task's logits from a :class:`TwoHeadNet` output."""
    return outputs[1]


class TwoHeadNet(nn.Module):
    """Shared trunk + old head + new head; ``forward`` returns ``(new_logits, old_logits)``.

    ``network`` is the trained original (it is copied, never changed); its classifier
    ``head`` (an ``nn.Linear``, torchvision's ``fc``) becomes the old head and is replaced
    by an identity in the trunk. The new head is a fresh ``Linear`` on the same features,
    initialised from ``seed`` so that every method starts from the same network.
    ``update_bn_stats``: see :meth:`train`.
    """

    def __init__(self, network: nn.Module, num_new_classes: int, head: str = "fc", seed: int = 0,
                 update_bn_stats: bool = False):
        super().__init__()
        self.update_bn_stats = update_bn_stats
        trunk = copy.deepcopy(network)
        old_head = getattr(trunk, head, None)
        if not isinstance(old_head, nn.Linear):
            raise ValueError(f"the network's classifier {head!r} must be an nn.Linear, found {type(old_head).__name__}")
        setattr(trunk, head, nn.Identity())
        self.trunk, self.old_head = trunk, old_head
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.new_head = nn.Linear(old_head.in_features, num_new_classes)

    def forward(self, x):
        features = self.trunk(x)
        return self.new_head(features), self.old_head(features)

    def train(self, mode: bool = True):
        """Like ``nn.Module.train``, but BatchNorm layers stay in eval mode (their running
        statistics are used and never updated): all of them by default, only the frozen ones
        (no trainable parameter) with ``update_bn_stats=True``."""
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    trained = any(p.requires_grad for p in m.parameters(recurse=False))
                    if not (self.update_bn_stats and trained):
                        m.eval()
        return self


# --------------------------------------------------------------------------- what trains
def module_named(model: TwoHeadNet, name: str) -> nn.Module:
    """A trunk module by its name in the original network (``layer4``, ``layer4.1.conv2``,
    ``conv1``, ...), or ``old_head``."""
    if name == "old_head":
        return model.old_head
    modules = dict(model.trunk.named_modules())
    if not name or name not in modules or not any(True for _ in modules[name].parameters()):
        stages = [n for n, m in model.trunk.named_children() if any(True for _ in m.parameters())]
        raise ValueError(
            f"no layer with parameters named {name!r}; use a stage ({', '.join(stages)}), a module inside one "
            "(e.g. 'layer4.1.conv2') or 'old_head'. The new head always trains at the base rate."
        )
    return modules[name]


def parse_layers(spec) -> list:
    """``"layer3, layer4"`` or ``["layer3", "layer4"]`` -> ``["layer3", "layer4"]``."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    return [n.strip() for n in names if n.strip()]


def last_two_stages(network: nn.Module) -> list:
    """The default layers fine-tuning adapts: the last two stages of the old network
    (``layer3, layer4`` of a ResNet-18; ``stages.1, stages.2`` of a CIFAR ResNet such as the
    quick profile's stand-in teacher)."""
    if hasattr(network, "layer4"):
        return ["layer3", "layer4"]
    stages = getattr(network, "stages", None)
    if stages is not None and len(stages) >= 2:
        return [f"stages.{i}" for i in range(len(stages) - 2, len(stages))]
    raise ValueError(f"cannot tell the last two stages of a {type(network).__name__}; name the layers to "
                     "fine-tune with the notebook parameter finetune_layers (e.g. 'layer3,layer4')")


def configure(model: TwoHeadNet, method: str, layers: Sequence[str] = (), lr_percent: float = 100.0) -> list:
    """Freeze what ``method`` keeps fixed and return ``fit``'s ``param_groups``.

    Every group has a ``name`` and an ``lr_scale``: the new head trains at the base rate
    (scale 1); the adapted layers at ``lr_percent / 100`` of it: the ``layers`` for
    ``fine_tuning``, every trunk stage and the old head for ``lwf``, none for
    ``feature_extraction``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not (isinstance(lr_percent, (int, float)) and lr_percent > 0):
        raise ValueError(f"lr_percent must be a number > 0 (percent of the base learning rate), got {lr_percent!r}")
    if method == "fine_tuning":
        chosen = parse_layers(layers)
        if not chosen:
            raise ValueError("fine_tuning needs at least one layer to fine-tune, e.g. layers='layer4'")
    elif method == "lwf":
        chosen = [n for n, m in model.trunk.named_children() if any(True for _ in m.parameters())] + ["old_head"]
    else:
        chosen = []
    model.requires_grad_(False)
    groups, seen = [], set()
    for name in chosen:
        params = list(module_named(model, name).parameters())
        if seen & {id(p) for p in params}:
            raise ValueError(f"layer {name!r} overlaps another chosen layer in {chosen}; name each layer once")
        seen |= {id(p) for p in params}
        groups.append({"name": name, "params": params, "lr_scale": lr_percent / 100.0})
    groups.append({"name": "new_head", "params": list(model.new_head.parameters()), "lr_scale": 1.0})
    for g in groups:
        for p in g["params"]:
            p.requires_grad_(True)
    return groups


def rate_table(model: nn.Module, groups: Sequence[Mapping], lr: float):
    """The layers that train, their parameter counts and learning rates (plus the frozen rest)."""
    import pandas as pd

    rows = [{"layer": g["name"], "parameters": sum(p.numel() for p in g["params"]),
             "lr": lr * g["lr_scale"], "% of base lr": 100.0 * g["lr_scale"]} for g in groups]
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    rows.append({"layer": "(frozen: everything else)", "parameters": frozen, "lr": 0.0, "% of base lr": 0.0})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- data of both tasks
@dataclass
class Tasks:
    """The loaders of both tasks.

    ``new_train`` augments (training); ``new_train_eval`` holds the same images in data set
    order without augmentation (recorded responses, final training accuracy); ``old_test``
    is evaluated after every epoch, ``old_train`` once at the end (None: not at all).
    ``held_out`` names what ``new_test`` and ``old_test`` hold: ``"test"`` (the data sets' test
    images) or ``"val"`` (images held out from the training images, :func:`selection_tasks`);
    it names the measurements (``new_val_top1``, ...), and ``fit`` sees no test loader then.
    """

    new_train: GpuLoader
    new_train_eval: GpuLoader
    new_test: GpuLoader
    old_train: Optional[GpuLoader]
    old_test: GpuLoader
    held_out: str = "test"

    def final_loaders(self, new_task: bool = True) -> dict:
        """Name -> loader for :func:`evaluate_tasks`; ``new_task=False`` leaves the new task out."""
        loaders = {"old_train": self.old_train, f"old_{self.held_out}": self.old_test}
        if new_task:
            loaders = {"new_train": self.new_train_eval, f"new_{self.held_out}": self.new_test, **loaders}
        return {name: loader for name, loader in loaders.items() if loader is not None}


def make_tasks(new_train: ImageSet, new_test: ImageSet, old_train: Optional[ImageSet], old_test: ImageSet, *,
               batch_size: int, mean, std, padding: int = 4, flip: bool = True, device="auto", seed: int = 0,
               eval_batch_size: int = 256, held_out: str = "test") -> Tasks:
    """Loaders for both tasks, every image normalised with the trunk's input statistics."""
    if held_out not in ("test", "val"):
        raise ValueError(f"held_out must be 'test' or 'val', got {held_out!r}")

    def plain(data):
        return None if data is None else GpuLoader(data, eval_batch_size, train=False, mean=mean, std=std,
                                                   device=device)

    train = GpuLoader(new_train, batch_size, train=True, padding=padding, flip=flip, mean=mean, std=std,
                      device=device, seed=seed)
    return Tasks(train, plain(new_train), plain(new_test), plain(old_train), plain(old_test), held_out)


# --------------------------------------------------------------------------- evaluation
def track_old_task(model: TwoHeadNet, old_test: GpuLoader, device="auto", name: str = "old_test"):
    """An ``on_epoch_end`` callback for ``fit``: evaluates the old head on ``old_test`` and
    stores ``<name>_top1`` / ``<name>_loss`` (default ``old_test_top1`` / ``old_test_loss``)
    in the epoch's history row."""
    def callback(epoch: int, row: dict) -> None:
        ev = evaluate(model, old_test, device, output=old_logits)
        row.update({f"{name}_top1": ev["top1"], f"{name}_loss": ev["loss"]})

    return callback


def evaluate_tasks(model: TwoHeadNet, loaders: Mapping[str, GpuLoader], device="auto") -> dict:
    """Top-1 and loss for each named loader; names start with ``new`` or ``old``, which
    picks the head (e.g. ``{"new_test": ..., "old_test": ...}``)."""
    heads = {"new": new_logits, "old": old_logits}
    out = {}
    for name, loader in loaders.items():
        ev = evaluate(model, loader, device, output=heads[name.split("_")[0]])
        out[f"{name}_top1"], out[f"{name}_loss"] = ev["top1"], ev["loss"]
    return out


# --------------------------------------------------------------------------- the methods
def adapt(model: TwoHeadNet, method: str, tasks: Tasks, *, run: Run, recipe: Recipe, layers: Sequence[str] = (),
          lr_percent: float = 100.0, objective=None, track_old: bool = True, final: bool = True,
          runtime: Runtime = Runtime()) -> dict:
    """Train ``model`` on the new task with ``method`` (see :func:`configure`) and return the
    run record.

    ``track_old`` evaluates the old task after every epoch (history ``old_test_top1``);
    ``final`` stores both tasks' train/test accuracy after adaptation under ``final``.
    The record also stores the method, a ``label`` (default: the method's name; the run's
    ``extra`` may override it) and the layer/rate table (``layer_rates``).
    """
    groups = configure(model, method, layers, lr_percent)
    rates = rate_table(model, groups, recipe.lr)
    run.extra = {"method": METHODS[method], "label": METHODS[method], "layer_rates": rates.to_dict("records"),
                 **run.extra}
    callbacks = [track_old_task(model, tasks.old_test, runtime.device, f"old_{tasks.held_out}")] if track_old else []
    test = tasks.new_test if tasks.held_out == "test" else None  # validation images are measured once, at the end
    record = fit(model, tasks.new_train, test, recipe, objective, run, runtime=runtime, params=groups,
                 callbacks=callbacks)
    if final and ("final" not in record or runtime.force):
        record["final"] = evaluate_tasks(model, tasks.final_loaders(), runtime.device)
        if DP.is_writer():  # of several processes (kdutils.tools.launch), rank 0 writes
            R.save_record(record)
    return record


@torch.no_grad()
def record_responses(model: TwoHeadNet, loader: GpuLoader, device="auto") -> torch.Tensor:
    """The old head's logits for every image of a non-augmenting ``loader``, in data set
    order (row ``i`` belongs to image ``i``), computed in eval mode."""
    if loader.train:
        raise ValueError("record responses with a non-augmenting loader (train=False), in data set order")
    return predict_logits(model.to(resolve_device(device)), loader, device, output=old_logits)


def lwf_objective(model: TwoHeadNet, tasks: Tasks, lambda0: float = 1.0, T: float = 2.0, device="auto") -> LwFLoss:
    """The LwF objective with the old head's responses recorded now (call it before any
    update): ``CE(new) + lambda0 * KL(softmax(recorded / T) || softmax(old / T))``. The KL form
    is zero when the old head reproduces its recorded responses (the paper's cross-entropy
    form is higher by a constant and has the same gradients)."""
    return LwFLoss(record_responses(model, tasks.new_train_eval, device), lambda0=lambda0, T=T, form="kl")


def learning_without_forgetting(model: TwoHeadNet, tasks: Tasks, *, run: Run, warmup_run: Run, recipe: Recipe,
                                warmup_epochs: int, lr_percent: float = 10.0, T: float = 2.0, lambda0: float = 1.0,
                                runtime: Runtime = Runtime()):
    """Li & Hoiem's procedure; returns ``(warm-up record, LwF record)``.

    1. record the old head's responses to the new-task training images (before any update);
    2. warm-up: train the new head alone for ``warmup_epochs`` (feature extraction, the
       same recipe otherwise);
    3. train everything on :func:`lwf_objective` at temperature ``T`` with ``recipe``.
    """
    objective = lwf_objective(model, tasks, lambda0, T, runtime.device)
    warmup_run.extra = {**run.extra, "label": "LwF warm-up", **warmup_run.extra}
    warmup = adapt(model, "feature_extraction", tasks, run=warmup_run, recipe=replace(recipe, epochs=warmup_epochs),
                   track_old=False, final=False, runtime=runtime)
    run.extra = {**run.extra, "warmup_run": warmup_run.label}
    record = adapt(model, "lwf", tasks, run=run, recipe=recipe, lr_percent=lr_percent, objective=objective,
                   runtime=runtime)
    return warmup, record


def reference_record(network: nn.Module, tasks: Tasks, run: Run, device="auto") -> dict:
    """A record for the original network before adaptation: its old-task train/test
    accuracy under ``final`` (the new task has no head yet); 0 epochs, 0 trainable parameters."""
    from kdutils.models import count_params

    record = R.new_record(run.part, run.name, run.profile, run.params, method="original (before adaptation)",
                          label="original", status="complete", n_params=count_params(network), n_trainable=0,
                          epochs_done=0, train_seconds=0.0)
    model = TwoHeadNet(network, 1).to(resolve_device(device))
    record["final"] = evaluate_tasks(model, tasks.final_loaders(new_task=False), device)
    if DP.is_writer():
        R.save_record(record)
    return record


# =========================================================================== the notebook's runs
#: The notebook's settings per profile. The base learning rate is the new head's; adapted old
#: layers train at ``lr_percent`` % of it. Weight decay 5e-4 is LwF's L2 regulariser (used by
#: every method alike). ``seeds``: every method runs once per seed (the new head's
#: initialisation and the batches).
#: Quick's base rate ``lr`` and ``lr_percent`` were chosen on validation (:func:`select_rates`;
#: the notebook's section 4 runs it again and says whether it still agrees): the base rate
#: among ``lr_candidates`` on feature extraction, then ``lr_percent`` among
#: ``lr_percent_candidates`` on fine-tuning and LwF, each run once (seed 0) on the training faces
#: less ``val_per_subject`` per subject, ranked on those held-out faces and on
#: ``old_val_per_class`` CIFAR-10 training images per class that the original network never
#: trained on. Full keeps the assignment's rates (no candidates).
SETTINGS = {
    "smoke": dict(faces_subdir="faces", n_train=4, n_test=1, epochs=1, warmup_epochs=1, batch_size=16,
                  lr=0.05, lr_percent=10.0, weight_decay=5e-4, padding=4, old_train_per_class=2, old_test_per_class=2,
                  seeds=(0,), lr_candidates=(0.05, 0.1), lr_percent_candidates=(1.0, 10.0), val_per_subject=1,
                  old_val_per_class=2),
    "quick": dict(faces_subdir="faces-orl", n_train=8, n_test=2, epochs=3, warmup_epochs=2, batch_size=32,
                  lr=1.0, lr_percent=0.1, weight_decay=5e-4, padding=4, old_train_per_class=50, old_test_per_class=50,
                  seeds=(0, 1, 2), lr_candidates=(0.1, 0.3, 1.0, 3.0), lr_percent_candidates=(0.03, 0.1, 0.3, 1.0),
                  val_per_subject=2, old_val_per_class=50),
    "full": dict(faces_subdir="faces", n_train=40, n_test=10, epochs=30, warmup_epochs=10, batch_size=64,
                 lr=0.05, lr_percent=10.0, weight_decay=5e-4, padding=4, old_train_per_class=None,
                 old_test_per_class=None, seeds=(0,), lr_candidates=(), lr_percent_candidates=(), val_per_subject=10,
                 old_val_per_class=100),
}


def resolve_setup(profile, data_root, n_train=None, n_test=None, epochs=None, warmup_epochs=None,
                  rehearse=False):
    """The notebook's profile and :data:`SETTINGS` with its parameters applied (None: the profile's)."""
    from kdutils.core.profiles import resolve

    return resolve(profile, data_root, SETTINGS, overrides=dict(n_train=n_train, n_test=n_test, epochs=epochs,
                                                                warmup_epochs=warmup_epochs), rehearse=rehearse)


def faces_root(setup, faces_dir: str = "") -> Path:
    """The face tree: ``faces_dir``, generated faces in smoke, else ``<data_root>/<faces_subdir>``."""
    from kdutils.core.data import smoke_root

    if faces_dir:
        return Path(faces_dir)
    return smoke_root("faces") if setup.data_root is None else setup.data_root / setup["faces_subdir"]


def old_task_sets(setup, cifar_train: ImageSet, cifar_test: ImageSet) -> tuple:
    """``(old_train, old_test)``: the CIFAR-10 images the old task is measured on (the profile's
    images per class, or all)."""
    per_train, per_test = setup["old_train_per_class"], setup["old_test_per_class"]
    return (cifar_train.per_class(per_train) if per_train else cifar_train,
            cifar_test.per_class(per_test) if per_test else cifar_test)


@dataclass
class Adaptation:
    """What the notebook's method runs share: the original network, both tasks, the face tree
    (``faces``, part of every run's params) and the method parameters. :meth:`train` trains (or
    reuses) one method for one seed under the notebook's run name (:meth:`name`).

    ``lr`` (the base rate) and ``lr_percent``, None: the profile's (:data:`SETTINGS`). ``part``:
    where the runs are recorded (``part4``; the rate selection's trials go to
    :data:`SELECT_PART`, their names led by the base rate)."""

    setup: object
    original: nn.Module
    tasks: Tasks
    faces: Path
    n_subjects: int
    layers: Sequence[str]
    T: float = 2.0
    lambda0: float = 1.0
    lr_percent: Optional[float] = None
    update_bn_stats: bool = False
    device: str = "auto"
    force: bool = False
    part: str = "part4"
    lr: Optional[float] = None

    def __post_init__(self):
        if self.lr_percent is None:
            self.lr_percent = self.setup["lr_percent"]
        if self.lr is None:
            self.lr = self.setup["lr"]

    @property
    def recipe(self) -> Recipe:
        return Recipe(epochs=self.setup["epochs"], lr=self.lr, weight_decay=self.setup["weight_decay"])

    def fresh(self, seed: int) -> TwoHeadNet:
        """The original network with a new face head drawn from ``seed`` (every method starts alike)."""
        return TwoHeadNet(self.original, self.n_subjects, update_bn_stats=self.update_bn_stats, seed=seed)

    def name(self, method: str) -> str:
        """The run name of ``method`` (``feature_extraction``, ``fine_tuning``, ``lwf`` or
        ``lwf_warmup``) before the seed's suffix; the BatchNorm mode is part of it, and in the
        rate selection (:data:`SELECT_PART`) the base rate leads it (``lr0.3_...``)."""
        bn = "_bn-update" if self.update_bn_stats else ""
        lead = f"lr{self.lr:g}_" if self.part == SELECT_PART else ""
        names = {"feature_extraction": "feature_extraction",
                 "fine_tuning": f"fine_tuning_{'+'.join(self.layers)}_lr{self.lr_percent:g}pct{bn}",
                 "lwf": f"lwf_T{self.T:g}_lambda0{self.lambda0:g}_lr{self.lr_percent:g}pct{bn}",
                 "lwf_warmup": f"lwf_warmup_{self.setup['warmup_epochs']}ep"}
        return lead + names[method]

    def run(self, method: str, seed: int) -> Run:
        """The :class:`Run` of ``method`` for ``seed``, its params the settings that define it."""
        from kdutils.core.seeds import seeded_name

        s = self.setup
        params = dict(n_train=s["n_train"], n_test=s["n_test"], faces=str(self.faces), lr=self.lr)
        if method == "fine_tuning":
            params.update(layers=list(self.layers), lr_percent=self.lr_percent, update_bn_stats=self.update_bn_stats)
        elif method == "lwf":
            params.update(T=self.T, lambda0=self.lambda0, lr_percent=self.lr_percent,
                          update_bn_stats=self.update_bn_stats)
        extra = {"evaluated_on": "validation"} if self.tasks.held_out == "val" else {}
        return Run(self.part, seeded_name(self.name(method), seed), s.profile, dict(params, seed=seed), extra)

    def train(self, method: str, seed: int):
        """Train (or reuse) ``method`` for ``seed``: its record; for ``lwf`` the pair
        ``(warm-up record, LwF record)`` of :func:`learning_without_forgetting`."""
        runtime = Runtime(device=self.device, force=self.force, seed=seed)
        if method == "lwf":
            return learning_without_forgetting(
                self.fresh(seed), self.tasks, recipe=self.recipe, warmup_epochs=self.setup["warmup_epochs"],
                lr_percent=self.lr_percent, T=self.T, lambda0=self.lambda0, runtime=runtime,
                run=self.run("lwf", seed), warmup_run=self.run("lwf_warmup", seed))
        extra = dict(layers=self.layers, lr_percent=self.lr_percent) if method == "fine_tuning" else {}
        return adapt(self.fresh(seed), method, self.tasks, recipe=self.recipe, run=self.run(method, seed),
                     runtime=runtime, **extra)

    def method_of(self, run: str) -> tuple:
        """``(method, seed)`` of the notebook's run name ``run`` (a warm-up names its LwF run);
        ``ValueError`` naming the runs when there is none."""
        from kdutils.core.seeds import seeded_name

        for method in ("feature_extraction", "fine_tuning", "lwf", "lwf_warmup"):
            for seed in self.setup["seeds"]:
                if run == seeded_name(self.name(method), seed):
                    return ("lwf" if method == "lwf_warmup" else method), seed
        raise ValueError(f"part4 has no run {run!r}: launch one of {', '.join(self.run_names())} (the LwF run "
                         "trains its warm-up first; 'original' is an evaluation the notebook makes)")

    def run_names(self) -> list:
        """The notebook's method runs, every seed: feature extraction, fine-tuning, LwF."""
        from kdutils.core.seeds import seeded_name

        return [seeded_name(self.name(m), s) for m in ("feature_extraction", "fine_tuning", "lwf")
                for s in self.setup["seeds"]]


# --------------------------------------------------------------------------- the rate, chosen on validation
#: Where the rate selection records its trials (apart from the notebook's method runs in ``part4``).
SELECT_PART = "part4_select"

#: The methods whose validation accuracies rank the candidates of each step of the selection
#: (:func:`select_rates`): the base rate is the new head's, and feature extraction trains the
#: new head alone; ``lr_percent`` changes fine-tuning and LwF only.
SELECTION_STEPS = {"lr": ("feature_extraction",), "lr_percent": ("fine_tuning", "lwf")}


def hold_out(train: ImageSet, per_class: int, seed: int = 0) -> tuple:
    """``(fit, val)``: ``per_class`` images of every class (subject) of ``train`` held out for
    validation, drawn with ``seed``; every class keeps at least one image to train on."""
    _check_count("per_class", per_class)
    g = torch.Generator().manual_seed(seed)
    fit_idx, val_idx = [], []
    for c in range(train.num_classes):
        idx = torch.nonzero(train.labels == c).flatten()
        if len(idx) <= per_class:
            raise ValueError(f"class {train.classes[c]!r} has {len(idx)} training image(s): holding out "
                             f"{per_class} for validation leaves none to train on; lower the held-out count")
        idx = idx[torch.randperm(len(idx), generator=g)]
        val_idx.append(idx[:per_class])
        fit_idx.append(idx[per_class:])
    return train.subset(torch.cat(fit_idx).sort().values), train.subset(torch.cat(val_idx).sort().values)


def unseen_images(pool: ImageSet, seen: ImageSet, per_class: int, seed: int = 0) -> ImageSet:
    """``per_class`` images per class of ``pool`` whose pixels equal no image of ``seen``: old-task
    training images the original network never trained on (``seen``: its training images),
    drawn as :meth:`~kdutils.core.data.ImageSet.per_class` draws."""
    _check_count("per_class", per_class)
    seen_keys = {img.numpy().tobytes() for img in seen.images}
    keep = [i for i, img in enumerate(pool.images) if img.numpy().tobytes() not in seen_keys]
    rest = pool.subset(keep)
    counts = torch.bincount(rest.labels, minlength=pool.num_classes).tolist()
    if min(counts) < per_class:
        raise ValueError(f"the old task's training images hold at most {min(counts)} image(s) per class that the "
                         f"original network did not train on; {per_class} were asked for (old_val_per_class)")
    return rest.per_class(per_class, seed=seed)


def selection_tasks(setup, faces_train: ImageSet, old_val: ImageSet, *, mean, std, device="auto") -> Tasks:
    """The rate selection's tasks: the training faces less ``setup["val_per_subject"]`` per
    subject, which are the new task's validation images; ``old_val`` (:func:`unseen_images`)
    the old task's. No test image takes part."""
    fit_faces, val_faces = hold_out(faces_train, setup["val_per_subject"])
    return make_tasks(fit_faces, val_faces, None, old_val, batch_size=setup["batch_size"], mean=mean, std=std,
                      padding=setup["padding"], device=device, held_out="val")


def rank_rates(scores: Mapping[float, Mapping[str, Mapping[str, float]]], rate: str = "lr_percent"):
    """The selection rule for one rate (``rate``: ``"lr"`` or ``"lr_percent"``). ``scores``:
    candidate value -> method -> ``{"old": old-task validation top-1, "new": new-task validation
    top-1}`` (NaN: the run diverged). A candidate's ``score`` is the mean of these numbers over
    its methods (every method's old and new task weigh alike); the highest score wins, a tie
    goes to the lower rate, a candidate with a diverged run ranks last. Returns the table (one
    row per candidate, in rate order, with ``rank`` and ``chosen``) and the chosen value."""
    import pandas as pd

    rows = []
    for value, by_method in scores.items():
        row = {rate: float(value)}
        for m, both in by_method.items():
            row[f"{METHODS[m]} old val"], row[f"{METHODS[m]} new val"] = float(both["old"]), float(both["new"])
        numbers = [v for k, v in row.items() if k.endswith(" val")]
        row["score"] = sum(numbers) / len(numbers)
        rows.append(row)
    if not rows:
        raise ValueError("rank_rates needs at least one candidate")
    table = pd.DataFrame(rows).sort_values(rate).reset_index(drop=True)

    def key(i):
        score = table.loc[i, "score"]
        return (math.isnan(score), 0.0 if math.isnan(score) else -score, table.loc[i, rate])

    order = sorted(range(len(table)), key=key)
    if math.isnan(table.loc[order[0], "score"]):
        raise ValueError(f"every candidate {rate} diverged: add lower values to the {rate} candidates")
    table["rank"] = [order.index(i) + 1 for i in range(len(table))]
    table["chosen"] = table["rank"] == 1
    return table, float(table.loc[order[0], rate])


def select_rates(adaptation: Adaptation, val_tasks: Tasks, lrs: Sequence[float], lr_percents: Sequence[float],
                 seed: int = 0):
    """Choose the base rate, then ``lr_percent``, on the selection's tasks (:func:`selection_tasks`):

    1. feature extraction (the new head alone) once per base rate of ``lrs``: :func:`rank_rates`
       picks the base rate;
    2. fine-tuning and LwF once per ``lr_percent`` of ``lr_percents`` at that base rate:
       :func:`rank_rates` picks ``lr_percent`` (:data:`SELECTION_STEPS`).

    Every run trains with ``seed`` as a run of :data:`SELECT_PART` (finished ones are reused).
    A run whose loss becomes NaN/inf counts as diverged (NaN, ranked last; its record stays
    unfinished and the next call meets the same divergence). Returns ``(lr table, lr_percent
    table, chosen (lr, lr_percent), original network's old-task validation top-1)``."""
    if val_tasks.held_out != "val":
        raise ValueError("the rates are chosen on validation images only: build the tasks with selection_tasks")
    if not lrs or not lr_percents:
        raise ValueError("select_rates needs at least one base rate and one lr_percent")

    def trial(**rates):
        return replace(adaptation, tasks=val_tasks, part=SELECT_PART, **rates)

    lr_table, lr = rank_rates({v: {m: _validation_scores(trial(lr=float(v)), m, seed) for m in SELECTION_STEPS["lr"]}
                               for v in lrs}, "lr")
    pct_table, pct = rank_rates({v: {m: _validation_scores(trial(lr=lr, lr_percent=float(v)), m, seed)
                                     for m in SELECTION_STEPS["lr_percent"]} for v in lr_percents}, "lr_percent")
    reference = reference_record(adaptation.original, val_tasks, Run(SELECT_PART, "original", adaptation.setup.profile),
                                 device=adaptation.device)
    return lr_table, pct_table, (lr, pct), reference["final"]["old_val_top1"]


def _validation_scores(trial: Adaptation, method: str, seed: int) -> dict:
    """``{"old": ..., "new": ...}`` validation top-1 of ``method`` trained by ``trial``; NaN
    for both when its training loss became NaN/inf."""
    try:
        trained = trial.train(method, seed)
    except FloatingPointError as e:
        print(f"diverged: {e}")
        return {"old": math.nan, "new": math.nan}
    record = trained[1] if method == "lwf" else trained
    return {"old": record["final"]["old_val_top1"], "new": record["final"]["new_val_top1"]}


def selection_words(pct_table, chosen: tuple, used: tuple, original_old_val: float) -> str:
    """What the selection found, in a sentence (Markdown): the chosen ``(lr, lr_percent)``, the
    validation numbers of fine-tuning and LwF there, the original network's, and whether
    ``used`` (the rates of the method runs) is the chosen pair."""
    row = pct_table[pct_table["lr_percent"] == chosen[1]].iloc[0]
    parts = [f"{m} old {row[f'{m} old val']:.2f}% / new {row[f'{m} new val']:.2f}%"
             for m in (METHODS[k] for k in SELECTION_STEPS["lr_percent"])]
    pair = "`lr={:g}`, `lr_percent={:g}`"
    agree = (f"the method runs use {pair.format(*used)}, the chosen rates" if tuple(used) == tuple(chosen) else
             f"**the method runs use {pair.format(*used)}, not the chosen rates** (the profile's settings or the "
             f"notebook's parameter)")
    return (f"Chosen on validation: {pair.format(*chosen)} ({'; '.join(parts)}; the original network's old-task "
            f"validation top-1 {original_old_val:.2f}%); {agree}.")


__all__ = [
    "SETTINGS", "resolve_setup", "faces_root", "old_task_sets", "Adaptation",
    "METHODS", "TwoHeadNet", "new_logits", "old_logits", "module_named", "parse_layers", "configure", "rate_table",
    "Tasks", "make_tasks", "track_old_task", "evaluate_tasks", "adapt", "record_responses", "lwf_objective",
    "learning_without_forgetting", "reference_record", "SELECT_PART", "SELECTION_STEPS", "hold_out",
    "unseen_images", "selection_tasks", "rank_rates", "select_rates", "selection_words",
]


# =========================================================================== findings and report page
from kdutils.core import report_spec as S  # noqa: E402  (the part's page spec closes the module)

#: How the table is read (the notebook's last section): shown by the notebook, printed on
#: part 4's report page.
OPINION = """- **Feature extraction** cannot forget: trunk, BatchNorm statistics and old head are frozen, so
  its old-task accuracy equals the original network's (the table shows it). Its new-task accuracy
  is limited by how well the old task's features describe faces.
- **Fine-tuning** adapts shared layers to faces with nothing that protects the old head's inputs;
  the more layers and the higher their rate, the better it fits faces and the more the old task
  can drift (compare its per-epoch old-task curve with the original network's accuracy).
- **LwF** adapts every layer but pulls the old head's outputs on the face images towards their
  recorded values (its distillation term shows how far they moved), so it should keep the old
  task better than fine-tuning at a similar new-task accuracy. `lambda0` trades one against the
  other; `T` softens the recorded distributions (more weight on the non-maximal classes).
- **LwF's warm-up** trains its new head alone for `warmup_epochs` before the joint epochs, so its
  new head trains that many epochs more than the other methods' heads. Where the schedule is short
  (quick: 2 + 3 epochs against 3) and the heads are far from converged, part of LwF's new-task lead
  over the other methods can come from those epochs rather than from adapting the trunk; a new-task
  difference says more about LwF once the other methods' heads have converged too.
- **Quick profile caveat.** The original network there is part 3's quick teacher, a CIFAR ResNet-20
  stand-in trained from random weights on a CIFAR-10 sample for a few CPU epochs (its old-task accuracy
  is the reference row of the table), not the ImageNet-initialised ResNet-18. Its two rates were chosen
  on validation images (section 4, whose table shows what the higher rates did), and with 320 faces and
  three epochs the old-task differences count only beyond the spread over seeds that the findings
  state. The full profile (ImageNet-initialised teacher, 40/10 faces per subject,
  30 epochs) is the assignment's experiment."""

#: Run-name prefixes of the methods, in the table's order (the warm-up run is not a method).
_METHOD_RUNS = (("feature_extraction", "feature extraction"), ("fine_tuning", "fine-tuning"), ("lwf_T", "LwF"))


def method_runs(records: Sequence[Mapping]) -> dict:
    """Method name -> the finished records (one per seed) of the latest configuration of each
    method of :data:`_METHOD_RUNS` (``"original"`` too, when recorded)."""
    done = [r for r in records if R.is_finished(r) and r.get("final")]
    out = {}
    for prefix, name in (("original", "original"),) + _METHOD_RUNS:
        latest = next((r for r in reversed(done) if r["run"].startswith(prefix)), None)
        if latest is not None:
            out[name] = [r for r in done if base_name(r["run"]) == base_name(latest["run"])]
    return out


#: The seed table's measurements: column -> dotted key into a record.
SEED_COLUMNS = {"old test top-1": "final.old_test_top1", "new test top-1": "final.new_test_top1",
                "old train top-1": "final.old_train_top1", "new train top-1": "final.new_train_top1"}


def seed_summary(records: Sequence[Mapping]):
    """One row per method (:func:`method_runs`): the number of seeds, and the mean and standard
    deviation over seeds of old- and new-task accuracy after adaptation."""
    import pandas as pd

    rows = []
    for name, runs in method_runs(records).items():
        row = {"method": name, "seeds": len(runs)}
        for col, key in SEED_COLUMNS.items():
            row[f"{col} mean"], row[f"{col} std"], _ = mean_std(R.get_field(r, key) for r in runs)
        rows.append(row)
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def _versus(a: str, runs_a, b: str, runs_b, key: str) -> str:
    va, vb = [R.get_field(r, key) for r in runs_a], [R.get_field(r, key) for r in runs_b]
    return f"{a} {describe(va)} vs {b} {describe(vb)}: {difference(va, vb).words()}"


def findings(records: Sequence[Mapping]) -> list:
    """Sentences (Markdown) from the finished records of part 4, the latest configuration of
    each method over its seeds: the old task (CIFAR-10 test top-1 after adaptation) against
    the original network, the new task (faces test top-1), and LwF against fine-tuning and
    feature extraction on both. A difference is called real only beyond the spread over seeds
    (:func:`kdutils.core.seeds.difference`); with one seed no verdict is given. The notebook's
    last section and the report's page show them."""
    runs = method_runs(records)
    original = runs.pop("original", None)
    if not runs:
        return ["No adaptation method of part 4 has finished yet in this profile."]
    old, new = "final.old_test_top1", "final.new_test_top1"
    out = []
    if original is not None:
        ref = R.get_field(original[-1], old)
        out.append(f"Old task (CIFAR-10 test top-1 after adaptation): the original network {ref:.2f}%; "
                   + "; ".join(f"{n} {describe(R.get_field(r, old) for r in rs)}" for n, rs in runs.items()) + ".")
    out.append("New task (faces test top-1): "
               + ", ".join(f"{n} {describe(R.get_field(r, new) for r in rs)}" for n, rs in runs.items()) + ".")
    if original is not None:
        out.append(_forgetting(R.get_field(original[-1], old), runs, old))
    for other in ("fine-tuning", "feature extraction"):
        if "LwF" in runs and other in runs:
            out.append(f"Old task: {_versus('LwF', runs['LwF'], other, runs[other], old)}. "
                       f"New task: {_versus('LwF', runs['LwF'], other, runs[other], new)}.")
    if "LwF" in runs and "fine-tuning" in runs:
        out.append(_verdict(runs["LwF"], runs["fine-tuning"], old, new))
    return out


def _forgetting(reference: float, runs: Mapping[str, Sequence[Mapping]], key: str) -> str:
    """How far each method's old-task accuracy fell from the original network's, judged against
    the method's own seed spread (the original is one deterministic evaluation)."""
    parts = []
    for name, rs in runs.items():
        mean, std, n = mean_std(R.get_field(r, key) for r in rs)
        drop = reference - mean
        if n >= 2 and drop == 0 and std == 0:
            verdict = "unchanged in every seed"
        elif n < 2:
            verdict = "one seed: no spread"
        elif abs(drop) > std:
            verdict = f"beyond its seed spread ±{std:.2f}"
        else:
            verdict = f"within its seed spread ±{std:.2f}"
        parts.append(f"{name} {drop:+.2f} points ({verdict})")
    return "Old-task loss against the original network (original minus after): " + "; ".join(parts) + "."


def _verdict(lwf: Sequence[Mapping], ft: Sequence[Mapping], old: str, new: str) -> str:
    """One sentence: what the seeds say about LwF against fine-tuning on both tasks."""
    d_old = difference([R.get_field(r, old) for r in lwf], [R.get_field(r, old) for r in ft])
    d_new = difference([R.get_field(r, new) for r in lwf], [R.get_field(r, new) for r in ft])
    if not (d_old.known and d_new.known):
        return "With fewer than two seeds per method these differences carry no verdict."

    def word(d, better: str, worse: str) -> str:
        return "no clear difference (within the seed spread)" if not d.real else (better if d.delta > 0 else worse)

    warmup = " (its new head also trained through the warm-up first)" if any(r.get("warmup_run") for r in lwf) else ""
    return ("In this profile, against fine-tuning, LwF shows on the old task: "
            + word(d_old, "it keeps more of it (as Li & Hoiem report)", "it keeps less of it (the opposite of "
                   "Li & Hoiem's finding)")
            + "; on the new task: " + word(d_new, f"it learns more{warmup}", "it learns less") + ".")


#: Part 4's page of the report (kdutils.tools.report); its text is :func:`findings` and :data:`OPINION`.
REPORT = S.PartSpec(
    part="part4",
    title="Part 4 - Learning without Forgetting: faces added to the CIFAR-10 network",
    notebooks=("part4_lwf_faces.ipynb",),
    data="CIFAR-10 (old task) + faces (new task)",
    tables=(S.Table("Old task (CIFAR-10) and new task (faces) after each method", "part4",
                    (S.LABEL, S.Column("trainable params", "n_trainable", "count"),
                     S.Column("old train top-1 %", "final.old_train_top1", "pct"),
                     S.Column("old test top-1 %", "final.old_test_top1", "pct"),
                     S.Column("new train top-1 %", "final.new_train_top1", "pct"),
                     S.Column("new test top-1 %", "final.new_test_top1", "pct"), S.EPOCHS, S.TRAIN_TIME),
                    runs=r"^(original|feature_extraction|fine_tuning|lwf_T)"),),
    figures=("part4_old_task",),
    metric=S.Column("new test top-1 %", "final.new_test_top1", "pct"),
    baseline=r"^fine_tuning",
    contenders=r"^(feature_extraction|fine_tuning|lwf_T)",
    opinion_title="Reading the results",
    sizes=(),
    source="params.faces",
)


# --------------------------------------------------------------------------- notebook parameters
from kdutils.core import params as P  # noqa: E402  (the notebook's parameter spec closes the module)

#: What the notebook's ``parameters`` cell may hold; its next cell checks them before any work.
PARAMETERS = {
    **P.COMMON,
    "faces_dir": P.text(help="the face tree <subject>/*; empty: the profile's"),
    "n_train": P.integer(1, optional=True, help="training images per subject"),
    "n_test": P.integer(1, optional=True, help="test images per subject"),
    "drop_small_subjects": P.flag("leave out subjects with too few images"),
    "T": P.number(0, low_open=True, help="LwF temperature"),
    "lambda0": P.number(0, help="LwF weight of the distillation term"),
    "lr_percent": P.number(0, low_open=True, optional=True,
                           help="learning rate of the adapted old layers, in % of the base rate"),
    "finetune_layers": P.text(help="trunk layers fine-tuned, e.g. layer3,layer4"),
    "epochs": P.integer(1, optional=True, help="epochs of every method"),
    "warmup_epochs": P.integer(0, optional=True, help="LwF warm-up epochs"),
    "update_bn_stats": P.flag("let BatchNorm re-estimate its statistics on faces"),
}
