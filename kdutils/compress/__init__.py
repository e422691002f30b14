"""Network compression, in three modules (import them by name)::

    from kdutils.compress import prune, quantize, size

- ``size``: bytes of a model in memory, on disk and zipped; saving / loading a state dict
  in a chosen float dtype.
- ``quantize``: 8-bit min-max storage codes, float16, PyTorch's dynamic int8 (for
  comparison).
- ``prune``: magnitude and channel pruning, sparsity, iterative pruning with fine-tuning.

This package depends only on ``kdutils.core`` and torch; part-specific use (the food-11
experiments and the leaderboard file) lives in ``kdutils.parts.part5``.
"""
