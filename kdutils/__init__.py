"""kdutils: the shared package behind the knowledge-distillation course notebooks.

One module per concern:

- ``kdutils.core.profiles``  smoke / quick / full profiles, data and output locations
- ``kdutils.core.data``      CIFAR (torchvision), image-folder trees, caches, synthetic data
- ``kdutils.core.loader``    fast batched augmentation from an in-memory uint8 tensor
- ``kdutils.models``    model registry, parameter / FLOP counting
- ``kdutils.distill.objectives``    KD, Hinton KD, Tf-KD, PS-KD, LwF losses
- ``kdutils.core.train``     ``fit`` / ``evaluate`` with checkpoints, resume, budgets, AMP
- ``kdutils.core.records``   one JSON record per run, tables from records
- ``kdutils.core.plots``     figures saved under ``figures/``
- ``kdutils.core.fileio``    atomic writes (checkpoints, caches, records, CSVs)
- ``kdutils.compress``  pruning, quantization, model sizes, leaderboard CSV
- ``kdutils.core.hparam`` / ``kdutils.tools.sweep``  log-uniform search; papermill sweeps

Part-specific wiring (kept out of the notebooks, tested): ``recipes`` and ``ablation``
(part 1), ``kd_tasks`` (part 2), ``cifar10_kd`` (part 3), ``faces`` and ``lwf`` (part 4),
``food`` (part 5); ``report`` and ``run_notebooks`` export the reports.
"""
__version__ = "0.1.0"
