"""kdutils: the shared package behind the knowledge-distillation course notebooks.

One module per concern:

- ``kdutils.profiles``  smoke / quick / full profiles, data and output locations
- ``kdutils.data``      CIFAR (torchvision), image-folder trees, caches, synthetic data
- ``kdutils.loader``    fast batched augmentation from an in-memory uint8 tensor
- ``kdutils.models``    model registry, parameter / FLOP counting
- ``kdutils.losses``    KD, Hinton KD, Tf-KD, PS-KD, LwF losses
- ``kdutils.train``     ``fit`` / ``evaluate`` with checkpoints, resume, budgets, AMP
- ``kdutils.results``   one JSON record per run, tables from records
- ``kdutils.plots``     figures saved under ``figures/``
"""
__version__ = "0.1.0"
