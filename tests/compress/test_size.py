"""kdutils.compress.size: bytes in memory, on disk and zipped; saving and loading state dicts."""
import pytest
import torch
from torch import nn

from kdutils.compress import size


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_model_size_bytes_counts_buffers_too():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    # 15 + 6 parameters and 6 running stats in float32, num_batches_tracked int64
    assert size.model_size_bytes(model) == (15 + 6 + 6) * 4 + 8


def test_save_state_round_trip_and_file_size(tmp_path):
    model = _net()
    nbytes = size.save_state(model, tmp_path / "m.pt")
    assert nbytes == size.file_size(tmp_path / "m.pt")
    assert nbytes == pytest.approx(size.serialized_size(model.state_dict()), rel=0.05)
    other = size.load_state(tmp_path / "m.pt", _net())
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))


def test_float16_file_loads_into_a_float32_model(tmp_path):
    model = _net()
    size.save_state(model, tmp_path / "h.pt", dtype=torch.float16)
    assert torch.load(tmp_path / "h.pt", weights_only=True)["0.weight"].dtype == torch.float16
    other = size.load_state(tmp_path / "h.pt", _net())
    assert other[0].weight.dtype == torch.float32
    assert torch.allclose(other[0].weight, model[0].weight, atol=1e-3)


def test_cast_floating_keeps_integer_buffers():
    cast = size.cast_floating(_net().state_dict(), torch.float64)
    assert cast["0.weight"].dtype == torch.float64
    assert cast["1.num_batches_tracked"].dtype == torch.int64


def test_zeros_zip_smaller(tmp_path):
    model = _net()
    dense = tmp_path / "dense.pt"
    size.save_state(model, dense)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    zeros = tmp_path / "zeros.pt"
    size.save_state(model, zeros)
    assert size.file_size(zeros) == size.file_size(dense)  # zeros cost as much in a dense file
    assert size.zipped_size(zeros) < size.zipped_size(dense)


def test_missing_file_and_wrong_state_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        size.file_size(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="missing"):
        size.load_state_into(_net(), {"0.weight": torch.zeros(4, 3, 3, 3)})
    state = dict(_net().state_dict())
    state["4.weight"] = torch.zeros(5, 10)
    state["0.weight"] = torch.zeros(4, 3, 5, 5)
    with pytest.raises(ValueError, match="missing|wrong shape"):
        size.load_state_into(_net(), state)
    del state["4.weight"]
    with pytest.raises(ValueError, match="wrong shape"):
        size.load_state_into(_net(), state)
