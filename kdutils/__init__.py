"""kdutils: the package behind the knowledge-distillation and compression notebooks.

Layers (imports go down this list only; ARCHITECTURE.md has the rules and the import graph):

- ``kdutils.tools``     command-line programs: report (and its two PDF paths, pdf), sweep,
  run_notebooks, import_graph, compare_records
- ``kdutils.parts``     ``part1`` ... ``part5``: each part's settings, training wrappers, tables,
  findings and report spec (notebook ``notebooks/partN_*.ipynb`` uses ``kdutils.parts.partN``)
- ``kdutils.distill``   objectives (KD, Hinton KD, Tf-KD, PS-KD, LwF, hints) and the teacher
  sources their soft targets come from
- ``kdutils.models``    the model registry (``build_model``) and the model families
- ``kdutils.compress``  model sizes, quantization, pruning
- ``kdutils.core``      the engine: profiles, data, loader, records, ``fit`` (train, recipe,
  precision, objective), plots, hparam, findings, report_spec, fileio
"""
__version__ = "0.1.0"
