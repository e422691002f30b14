"""Train one run of a notebook on several processes (GPUs) with torchrun.

    torchrun --nproc_per_node=N -m kdutils.tools.launch <part> <run> [--profile full] [-p key=value ...]

trains exactly the run the notebook would train: the same settings (the notebook's
parameters, given with ``-p``), recipe, data and seed, and the same record and checkpoint
names, so the notebook afterwards finds it finished and loads it. The N processes train
data-parallel (:mod:`kdutils.core.distributed`): each takes a disjoint slice of every
global batch, gradients are averaged, rank 0 writes. Started without torchrun (or with
``--nproc_per_node=1``) it trains in one process, like the notebook.

Runs that can be launched (``--list`` prints them for a profile):

- ``part1 <row>``: a row of the CIFAR-100 architecture ablation of
  ``part1_cifar100_architectures.ipynb``, by its record name at the profile's width
  (``resnet-18_w0.125`` in smoke, ``se-wrn-28-8-proposal`` in full) or its display/model
  name (``resnet-18``); ``-p width_mult=.. -p epochs=.. -p budget_hours=..`` as in the notebook;
- ``part2 <run>``: an experiment of ``part2_cifar100_kd.ipynb`` by its record name or its
  key with the seed's suffix (``task1_teacher``, ``task2``, ``task2_seed1``); its teacher
  must be trained first (the plan's order). PS-KD and RKD need every image's prediction /
  the whole batch in one process, FitNets and DML train extra networks: these train in
  one process only;
- ``part3 teacher``: the ResNet-18 teacher of ``part3_cifar10_resnet18_kd.ipynb``;
- ``part3 <student>``: a student of its KD table (``student_lam0``, ``student_lam1_T20``,
  ``KD1_T5_lam0.1``, ..., with ``_seed<s>`` for the profile's further seeds), or its single mode's student with ``-p T=.. -p lam=..`` (the
  run name is then the notebook's, ``T<T>_lam<lam>``, unless ``-p run_name=...``);
- ``part4 <method run>``: a method of ``part4_lwf_faces.ipynb`` for one seed
  (``feature_extraction``, ``fine_tuning_layer3+layer4_lr10pct``, ``lwf_T2_lambda01_lr10pct``,
  ``_seed<s>`` for further seeds); it adapts part 3's trained teacher; an LwF run (or its
  warm-up's name) trains the warm-up, then the joint phase. ``original`` is an evaluation
  the notebook makes, not a run;
- ``part5 <run>``: a training run of ``part5_food11_compression.ipynb``
  (``kdutils.parts.part5.TRAINING_RUNS``: teachers, students, KD and semi-supervised
  students, the three comparison nets; a student of the profile's further seeds:
  ``<run>_seed<s>``); a student needs its teachers finished. Quantization
  and pruning are not launchable (they run in the notebook).

The ``-p`` parameters of parts 1, 2, 4 and 5 are their notebooks' (checked with the
notebook's rules, ``PARAMETERS`` of the part module), less ``profile`` (``--profile``), part
1's ``models`` (the run names the row) and part 5's ``prune_rates``.

``--sync-bn`` converts BatchNorm to SyncBatchNorm (CUDA). The batch size is the global one
(the notebook's): it must be divisible by N.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

from kdutils.core import distributed as D
from kdutils.core.records import make_run_name

#: The notebook parameters each part's runs accept (``-p key=value``).
PART3_PARAMS = ("data_root", "weights", "weights_path", "epochs", "student_epochs", "pool_stride", "T", "lam",
                "run_name", "force")


def _part3(run: str, profile: Optional[str], params: Mapping[str, Any]) -> dict:
    """Train part 3's ``run`` as ``part3_cifar10_resnet18_kd.ipynb`` does; its record."""
    from kdutils.parts import part3 as kd

    setup = kd.resolve_setup(profile, params.get("data_root") or None, overrides=dict(
        weights=params.get("weights") or None, weights_path=params.get("weights_path") or None,
        epochs=params.get("epochs"), student_epochs=params.get("student_epochs"),
        pool_stride=params.get("pool_stride")))
    force = bool(params.get("force", False))
    train_set, test_set = kd.cifar10_sets(setup)
    train_loader, test_loader = kd.make_loaders(train_set, test_set, setup)
    if run == kd.TEACHER_RUN:
        teacher = kd.build_teacher(setup, force=force)
        teacher_train_loader = kd.make_loaders(kd.teacher_train_set(setup, train_set), test_set, setup)[0]
        return kd.train_teacher(teacher, setup, teacher_train_loader, test_loader, force=force)
    from kdutils.core.seeds import seeded_name

    table = [dict(c, run=seeded_name(c["run"], seed), seed=seed)  # section B: every config once per seed
             for c in kd.kd_configs(params.get("lam", 0.1)) for seed in setup["seeds"]]
    config = _part3_student(run, params, table, setup["seed"])
    soft_targets = None
    if config["lam"] != 0:  # the student without KD needs no teacher
        teacher, _ = kd.load_teacher(setup.profile)
        soft_targets = kd.TeacherLogits(teacher, train_loader)
    return kd.train_student(kd.PART, config["run"], setup.profile, lam=config["lam"], T=config["T"],
                            label=config["label"], loaders=(train_loader, test_loader),
                            recipe=kd.student_recipe_for(setup), pool_stride=setup["pool_stride"],
                            teacher_logits=soft_targets, force=force, seed=config["seed"])


def _part3_student(run: str, params: Mapping[str, Any], table: Sequence[Mapping], seed: int = 0) -> dict:
    """The KD-table row called ``run`` (``<config>`` or ``<config>_seed<s>``), or the single
    mode's student (``-p T=.. -p lam=..``, trained with the profile's ``seed``)."""
    for row in table:
        if row["run"] == run:
            return dict(row)
    T, lam = params.get("T", 20.0), params.get("lam", 0.1)  # the notebook's defaults
    if params.get("run_name") == run or make_run_name({"T": T, "lam": lam}) == run:
        return {"run": run, "label": f"T={T:g}, lambda={lam:g}", "lam": lam, "T": T, "seed": seed}
    names = ", ".join(["teacher"] + [r["run"] for r in table])
    raise ValueError(f"part3 has no run {run!r}: launch one of {names}, or the single-mode student "
                     f"{make_run_name({'T': T, 'lam': lam})} (-p T=<T> -p lam=<lambda>, optionally -p run_name=...)")


def _cifar100(setup, recipe: Mapping) -> tuple:
    """``(train_loader, test_loader, classes)`` of CIFAR-100 as notebooks 01 and 02 load it."""
    from kdutils.parts import part1

    train_set, test_set = part1.cifar_sets("cifar100", setup, recipe["train_per_class"], recipe["test_per_class"])
    return (*part1.cifar_loaders("cifar100", train_set, test_set, recipe), train_set.num_classes)


def _part1_setup(profile: Optional[str], params: Mapping[str, Any]) -> tuple:
    """Part 1's setup and recipe from the notebook's parameters (its defaults when absent)."""
    from kdutils.parts import part1

    setup = part1.resolve_setup(profile, params.get("data_root") or None, params.get("width_mult"),
                                params.get("rehearse", False))
    recipe = part1.recipe_for(setup, epochs=params.get("epochs"), budget_s=params.get("budget_hours", 2.0) * 3600)
    return setup, recipe


def _part1(run: str, profile: Optional[str], params: Mapping[str, Any]) -> dict:
    """Train part 1's ablation row ``run`` as ``part1_cifar100_architectures.ipynb`` does."""
    from kdutils.parts import part1

    setup, recipe = _part1_setup(profile, params)
    entry = part1.entry_for(run, setup["width_mult"])
    train_loader, test_loader, classes = _cifar100(setup, recipe)
    return part1.train_entry(entry, setup, recipe, train_loader, test_loader, classes,
                             force=bool(params.get("force", False)))


#: Part 2's methods that train in one process only, and why.
PART2_ONE_PROCESS = {
    "pskd": "PS-KD reads each image's prediction of the previous epoch, made on whichever process saw it",
    "rkd": "RKD's loss relates the samples of the whole batch, which no process holds",
    "fitnets": "FitNets trains a regressor beside the student, whose gradients data-parallel training does not average",
    "dml": "DML trains a peer network beside the student, whose gradients data-parallel training does not average",
}


def _part2_setup(profile: Optional[str], params: Mapping[str, Any]) -> tuple:
    """Part 2's setup, recipe and plan from the notebook's parameters."""
    from kdutils.parts import part2

    setup = part2.resolve_setup(profile, params.get("data_root") or None,
                                dict(teacher=params.get("teacher") or None, student=params.get("student") or None,
                                     alpha=params.get("alpha"), tau=params.get("tau")),
                                rehearse=params.get("rehearse", False))
    return setup, part2.recipe_for(setup, epochs=params.get("epochs")), part2.plan_for(setup)


def _part2(run: str, profile: Optional[str], params: Mapping[str, Any]) -> dict:
    """Train part 2's experiment ``run`` (one seed) as ``part2_cifar100_kd.ipynb`` does."""
    from kdutils.parts import part2

    setup, recipe, plan = _part2_setup(profile, params)
    exp, seed = part2.find_run(plan, setup.profile, setup["seeds"], run)
    if D.world_size() > 1 and exp.method in PART2_ONE_PROCESS:
        raise ValueError(f"part2 {run}: {PART2_ONE_PROCESS[exp.method]}: train it in one process "
                         "(python -m kdutils.tools.launch, or the notebook)")
    recipe = part2.recipe_of(exp.key, setup, recipe, params.get("epochs"))
    train_loader, test_loader, classes = part2.cifar_loaders(setup, recipe)
    try:
        return part2.train_experiment(exp, setup.profile, recipe, train_loader, test_loader, classes,
                                      force=bool(params.get("force", False)), seed=seed)
    except FileNotFoundError as e:  # its teacher is not trained yet
        raise FileNotFoundError(f"{e} Or: kdutils.tools.launch part2 {exp.teacher.key}") if exp.teacher else e


def _part4_adaptation(profile: Optional[str], params: Mapping[str, Any]):
    """Part 4's :class:`~kdutils.parts.part4.Adaptation` as ``part4_lwf_faces.ipynb`` builds it
    (cells "Data" and "The original network"): faces, the old task's images, the loaders and
    part 3's trained network, which must exist (``launch part3 teacher``)."""
    from kdutils.core.train import resolve_device
    from kdutils.parts import part3, part4

    data_root = params.get("data_root") or None
    setup = part4.resolve_setup(profile, data_root, params.get("n_train"), params.get("n_test"), params.get("epochs"),
                                params.get("warmup_epochs"), params.get("rehearse", False))
    setup3 = part3.resolve_setup(setup.profile, data_root)
    faces_path = part4.faces_root(setup, params.get("faces_dir") or "")
    faces = part4.load_faces(faces_path, n_train=setup["n_train"], n_test=setup["n_test"],
                             drop_small_subjects=bool(params.get("drop_small_subjects", False)))
    old_train, old_test = part4.old_task_sets(setup, *part3.cifar10_sets(setup3))
    device = resolve_device()
    tasks = part4.make_tasks(faces.train, faces.test, old_train, old_test, batch_size=setup["batch_size"],
                             mean=part3.NORMALIZATION[0], std=part3.NORMALIZATION[1], padding=setup["padding"],
                             device=device)
    try:
        original, _ = part3.teacher_for_students(setup3)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e} Or: kdutils.tools.launch part3 teacher --profile {setup.profile}") from None
    original.eval()
    layers = part4.parse_layers(params.get("finetune_layers") or "") or part4.last_two_stages(original)
    return part4.Adaptation(setup, original, tasks, faces_path, len(faces.subjects), layers,
                            T=params.get("T", 2.0), lambda0=params.get("lambda0", 1.0),
                            lr_percent=params.get("lr_percent"),
                            update_bn_stats=bool(params.get("update_bn_stats", False)), device=device,
                            force=bool(params.get("force", False)))


def _part4(run: str, profile: Optional[str], params: Mapping[str, Any]) -> dict:
    """Train part 4's method run ``run`` (one seed) as ``part4_lwf_faces.ipynb`` does; an LwF run
    (or its warm-up's name) trains the warm-up, then the joint phase; the LwF record."""
    adaptation = _part4_adaptation(profile, params)
    method, seed = adaptation.method_of(run)
    trained = adaptation.train(method, seed)
    return trained[1] if method == "lwf" else trained


def _part5(run: str, profile: Optional[str], params: Mapping[str, Any]) -> dict:
    """Train part 5's training run ``run`` as ``part5_food11_compression.ipynb`` does."""
    from kdutils.parts import part5

    setup = part5.resolve_setup(profile, params.get("data_root") or None, image_size=params.get("image_size"),
                                crop=params.get("crop"), T=params.get("T"), alpha=params.get("alpha"),
                                pseudo_threshold=params.get("pseudo_threshold"), epochs=params.get("epochs"),
                                rehearse=params.get("rehearse", False))
    part5.check_training_run(run)  # before the data is loaded
    study = part5.study_for(setup, params.get("food_dir") or "", force=bool(params.get("force", False)))
    return part5.train_named(study, run, params.get("pretrained_weights") or "")


#: Notebook parameters that choose no training run's settings (``-p`` does not take them).
NOT_TRAINING = ("profile", "models", "prune_rates")


def _notebook_params(part: str) -> tuple:
    """The notebook parameters ``-p`` accepts for a part: its ``PARAMETERS`` less the profile
    (``--profile``), part 1's ``models`` (the run names the row) and part 5's ``prune_rates``."""
    import importlib

    spec = importlib.import_module(f"kdutils.parts.{part}").PARAMETERS
    return tuple(k for k in spec if k not in NOT_TRAINING)


#: ``part -> (trainer(run, profile, params) -> record, accepted parameters)``.
PARTS: dict[str, tuple[Callable[..., dict], Sequence[str]]] = {
    "part1": (_part1, _notebook_params("part1")),
    "part2": (_part2, _notebook_params("part2")),
    "part3": (_part3, PART3_PARAMS),
    "part4": (_part4, _notebook_params("part4")),
    "part5": (_part5, _notebook_params("part5")),
}


def launch(part: str, run: str, profile: Optional[str] = None, params: Optional[Mapping[str, Any]] = None) -> dict:
    """Train ``part``'s ``run`` in this process (one rank of a torchrun group or alone); its record."""
    if part not in PARTS:
        raise ValueError(f"no launchable runs for {part!r}; parts: {', '.join(sorted(PARTS))}")
    trainer, accepted = PARTS[part]
    unknown = sorted(set(params or {}) - set(accepted))
    if unknown:
        raise ValueError(f"{part} has no notebook parameter {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    if part != "part3":  # the values, by the notebook's own rules
        import importlib

        from kdutils.core.params import check_parameters

        check_parameters(importlib.import_module(f"kdutils.parts.{part}").PARAMETERS, params or {},
                         f"{part} (kdutils.tools.launch -p)")
    return trainer(run, profile, dict(params or {}))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m kdutils.tools.launch",
                                 description="Train one run of a notebook data-parallel on N processes.")
    ap.add_argument("part", help="the part, e.g. part3")
    ap.add_argument("run", nargs="?", help="the run (record name), e.g. teacher or KD1_T5_lam0.1")
    ap.add_argument("--profile", default=None, help="smoke | quick | full (default: KD_PROFILE, else quick)")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a notebook parameter (repeatable), e.g. -p student_epochs=30")
    ap.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm over the processes (CUDA only)")
    ap.add_argument("--list", action="store_true", help="list the part's runs and parameters, then stop")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    from kdutils.tools.sweep import parse_assignments

    args = build_parser().parse_args(argv)
    try:
        params = parse_assignments(args.param, multi=False)
        if args.list:
            return _list(args.part, args.profile, params)
        if not args.run:
            raise ValueError("name the run to train (or pass --list)")
        D.init_from_env(sync_batchnorm=args.sync_bn)
        writer = D.is_writer()
        record = launch(args.part, args.run, args.profile, params)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        D.shutdown()
    if writer:
        last = record.get("last") or {}
        print(f"{record.get('part')}/{record.get('run')} ({record.get('profile')}): {record.get('status')}, "
              f"{record.get('epochs_done')} epoch(s), test top-1 {last.get('test_top1')}, "
              f"processes {(record.get('distributed') or {}).get('world_size', 1)}", flush=True)
        if record.get("status") == "skipped":  # as in the notebook (part 5's pretrained teacher offline)
            print(f"skipped: {record.get('reason')}", flush=True)
    return 0 if record.get("status") in ("complete", "budget", "skipped") else 1


def _list(part: str, profile: Optional[str] = None, params: Optional[Mapping[str, Any]] = None) -> int:
    """Print ``part``'s runs in ``profile`` (their record names) and the parameters ``-p`` takes."""
    if part not in PARTS:
        raise ValueError(f"no launchable runs for {part!r}; parts: {', '.join(sorted(PARTS))}")
    params = dict(params or {})
    if part == "part1":
        from kdutils.parts import part1

        setup, _ = _part1_setup(profile, params)
        print(f"runs ({setup.profile}, width x{setup['width_mult']:g}): "
              + ", ".join(part1.run_name(e, setup["width_mult"]) for e in part1.ABLATION_PATH))
    elif part == "part2":
        from kdutils.parts import part2

        setup, _, plan = _part2_setup(profile, params)
        print(f"runs ({setup.profile}; in the plan's order, a teacher before its students):")
        for key, exp in plan.items():
            one = f"  [one process: {exp.method}]" if exp.method in PART2_ONE_PROCESS else ""
            for seed in part2.seeds_of(exp, setup["seeds"]):
                print(f"  {part2.seeded_name(key, seed)} = {exp.run(setup.profile, seed).name}{one}")
    elif part == "part4":
        adaptation = _part4_adaptation(profile, params)
        print(f"runs ({adaptation.setup.profile}; each trains one method for one seed; an LwF run trains its "
              "warm-up first): " + ", ".join(adaptation.run_names()))
    elif part == "part5":
        from kdutils.parts import part5

        print("runs: " + ", ".join(part5.TRAINING_RUNS) + " (a student needs its teachers finished first; "
              "a student of the profile's further seeds: <run>_seed<s>; "
              "the compression steps, quantization and pruning, are not launchable: they run in the notebook)")
    else:
        from kdutils.parts import part3 as kd

        print("runs: teacher, " + ", ".join(r["run"] for r in kd.kd_configs()) + ", or T<T>_lam<lam> with -p T= -p lam=")
    print("parameters: " + ", ".join(PARTS[part][1]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
