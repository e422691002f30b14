"""kdutils.core.outputs: the logits a model's output is trained and evaluated on."""
import torch

from kdutils.core.outputs import primary_logits


def test_primary_logits_of_tensor_tuple_and_dict():
    a, b = torch.randn(2, 3), torch.randn(2, 5)
    assert primary_logits(a) is a
    assert primary_logits((a, b)) is a and primary_logits([b, a]) is b
    assert primary_logits({"logits": b, "features": a}) is b
