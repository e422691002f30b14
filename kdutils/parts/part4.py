"""Part 4: Learning without Forgetting: face data split per subject, a two-head network, three ways to adapt it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

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
    is evaluated after every epoch, ``old_train`` once at the end.
    """

    new_train: GpuLoader
    new_train_eval: GpuLoader
    new_test: GpuLoader
    old_train: GpuLoader
    old_test: GpuLoader

    def final_loaders(self, new_task: bool = True) -> dict:
        """Name -> loader for :func:`evaluate_tasks`; ``new_task=False`` leaves the new task out."""
        loaders = {"old_train": self.old_train, "old_test": self.old_test}
        if new_task:
            loaders = {"new_train": self.new_train_eval, "new_test": self.new_test, **loaders}
        return loaders


def make_tasks(new_train: ImageSet, new_test: ImageSet, old_train: ImageSet, old_test: ImageSet, *,
               batch_size: int, mean, std, padding: int = 4, flip: bool = True, device="auto", seed: int = 0,
               eval_batch_size: int = 256) -> Tasks:
    """Loaders for both tasks, every image normalised with the trunk's input statistics."""
    def plain(data):
        return GpuLoader(data, eval_batch_size, train=False, mean=mean, std=std, device=device)

    train = GpuLoader(new_train, batch_size, train=True, padding=padding, flip=flip, mean=mean, std=std,
                      device=device, seed=seed)
    return Tasks(train, plain(new_train), plain(new_test), plain(old_train), plain(old_test))


# --------------------------------------------------------------------------- evaluation
def track_old_task(model: TwoHeadNet, old_test: GpuLoader, device="auto"):
    """An ``on_epoch_end`` callback for ``fit``: evaluates the old head on ``old_test`` and
    stores ``old_test_top1`` / ``old_test_loss`` in the epoch's history row."""
    def callback(epoch: int, row: dict) -> None:
        ev = evaluate(model, old_test, device, output=old_logits)
        row.update(old_test_top1=ev["top1"], old_test_loss=ev["loss"])

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
    callbacks = [track_old_task(model, tasks.old_test, runtime.device)] if track_old else []
    record = fit(model, tasks.new_train, tasks.new_test, recipe, objective, run, runtime=runtime, params=groups,
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
#: every method alike). Quick uses a larger base rate (0.1): the quick teacher (part 3's CPU
#: stand-in) gives weaker face features than the full profile's fine-tuned ResNet-18.
#: ``seeds``: every method runs once per seed (the new head's initialisation and the batches).
SETTINGS = {
    "smoke": dict(faces_subdir="faces", n_train=4, n_test=1, epochs=1, warmup_epochs=1, batch_size=16,
                  lr=0.05, weight_decay=5e-4, padding=4, old_train_per_class=2, old_test_per_class=2, seeds=(0,)),
    "quick": dict(faces_subdir="faces-orl", n_train=8, n_test=2, epochs=3, warmup_epochs=2, batch_size=32,
                  lr=0.1, weight_decay=5e-4, padding=4, old_train_per_class=50, old_test_per_class=50, seeds=(0, 1, 2)),
    "full": dict(faces_subdir="faces", n_train=40, n_test=10, epochs=30, warmup_epochs=10, batch_size=64,
                 lr=0.05, weight_decay=5e-4, padding=4, old_train_per_class=None, old_test_per_class=None, seeds=(0,)),
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
    reuses) one method for one seed under the notebook's run name (:meth:`name`)."""

    setup: object
    original: nn.Module
    tasks: Tasks
    faces: Path
    n_subjects: int
    layers: Sequence[str]
    T: float = 2.0
    lambda0: float = 1.0
    lr_percent: float = 10.0
    update_bn_stats: bool = False
    device: str = "auto"
    force: bool = False

    @property
    def recipe(self) -> Recipe:
        return Recipe(epochs=self.setup["epochs"], lr=self.setup["lr"], weight_decay=self.setup["weight_decay"])

    def fresh(self, seed: int) -> TwoHeadNet:
        """The original network with a new face head drawn from ``seed`` (every method starts alike)."""
        return TwoHeadNet(self.original, self.n_subjects, update_bn_stats=self.update_bn_stats, seed=seed)

    def name(self, method: str) -> str:
        """The run name of ``method`` (``feature_extraction``, ``fine_tuning``, ``lwf`` or
        ``lwf_warmup``) before the seed's suffix; the BatchNorm mode is part of it."""
        bn = "_bn-update" if self.update_bn_stats else ""
        return {"feature_extraction": "feature_extraction",
                "fine_tuning": f"fine_tuning_{'+'.join(self.layers)}_lr{self.lr_percent:g}pct{bn}",
                "lwf": f"lwf_T{self.T:g}_lambda0{self.lambda0:g}_lr{self.lr_percent:g}pct{bn}",
                "lwf_warmup": f"lwf_warmup_{self.setup['warmup_epochs']}ep"}[method]

    def run(self, method: str, seed: int) -> Run:
        """The :class:`Run` of ``method`` for ``seed``, its params the settings that define it."""
        from kdutils.core.seeds import seeded_name

        s = self.setup
        params = dict(n_train=s["n_train"], n_test=s["n_test"], faces=str(self.faces), lr=s["lr"])
        if method == "fine_tuning":
            params.update(layers=list(self.layers), lr_percent=self.lr_percent, update_bn_stats=self.update_bn_stats)
        elif method == "lwf":
            params.update(T=self.T, lambda0=self.lambda0, lr_percent=self.lr_percent,
                          update_bn_stats=self.update_bn_stats)
        return Run("part4", seeded_name(self.name(method), seed), s.profile, dict(params, seed=seed))

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


__all__ = [
    "SETTINGS", "resolve_setup", "faces_root", "old_task_sets", "Adaptation",
    "METHODS", "TwoHeadNet", "new_logits", "old_logits", "module_named", "parse_layers", "configure", "rate_table",
    "Tasks", "make_tasks", "track_old_task", "evaluate_tasks", "adapt", "record_responses", "lwf_objective",
    "learning_without_forgetting", "reference_record",
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
- **Quick profile caveat.** The original network there is part 3's quick teacher, a CIFAR ResNet-20
  stand-in trained from random weights on a CIFAR-10 sample for a few CPU epochs (its old-task accuracy
  is the reference row of the table), not the ImageNet-initialised ResNet-18; on 320 faces for three
  epochs the new head learns little, and old-task differences count only beyond the spread over seeds
  that the findings state. The full profile (ImageNet-initialised teacher, 40/10 faces per subject,
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
    for other in ("fine-tuning", "feature extraction"):
        if "LwF" in runs and other in runs:
            out.append(f"Old task: {_versus('LwF', runs['LwF'], other, runs[other], old)}. "
                       f"New task: {_versus('LwF', runs['LwF'], other, runs[other], new)}.")
    return out


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
    "lr_percent": P.number(0, help="learning rate of the adapted old layers, in % of the base rate"),
    "finetune_layers": P.text(help="trunk layers fine-tuned, e.g. layer3,layer4"),
    "epochs": P.integer(1, optional=True, help="epochs of every method"),
    "warmup_epochs": P.integer(0, optional=True, help="LwF warm-up epochs"),
    "update_bn_stats": P.flag("let BatchNorm re-estimate its statistics on faces"),
}
