"""What a model returns, read one way everywhere.

Most models return a tensor of logits. Some return more: part 4's two-head network returns
``(new_logits, old_logits)``; a model may return a dict with ``"logits"``. The *primary*
logits are the ones that are trained against the labels and evaluated.
"""
from __future__ import annotations


def primary_logits(outputs):
    """The logits being trained/evaluated: the tensor itself, the first item of a tuple or
    list, or the ``"logits"`` entry of a dict."""
    if isinstance(outputs, (tuple, list)):
        return outputs[0]
    if isinstance(outputs, dict):
        return outputs["logits"]
    return outputs
