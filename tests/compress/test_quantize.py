"""kdutils.compress.quantize: 8-bit min-max codes, float16 and PyTorch's dynamic int8."""
import pytest
import torch

from kdutils.compress import quantize, size
from kdutils.models import build_model, count_params


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _student():
    return build_model("food_student", num_classes=11)


def test_quantize_round_trip_error_bound():
    state = dict(_student().state_dict())
    for k, v in state.items():  # BN weights/biases start constant: give them spread
        if v.is_floating_point():
            state[k] = torch.randn_like(v) * (1 + 10 * torch.rand(()))
    state["constant"] = torch.full((5, 3), 0.75)
    state["counter"] = torch.tensor(7)

    restored = quantize.dequantize_minmax(quantize.quantize_minmax(state))
    assert list(restored) == list(state)
    for k, v in state.items():
        r = restored[k]
        assert r.dtype == v.dtype and r.shape == v.shape, k
        if not v.is_floating_point():
            assert torch.equal(r, v), k
            continue
        half_step = float(v.max() - v.min()) / 255 / 2
        eps = 1e-6 * max(1.0, float(v.abs().max()))
        assert float((r - v).abs().max()) <= half_step + eps, k
    assert torch.equal(restored["constant"], state["constant"])


def test_quantized_file_is_4x_smaller_and_loads(tmp_path):
    model = _student().eval()
    assert count_params(model) >= 50_000
    f32 = size.save_state(model, tmp_path / "f32.pt")
    q8 = quantize.save_quantized(model, tmp_path / "q8.pt")
    f16 = size.save_state(model, tmp_path / "f16.pt", dtype=torch.float16)
    assert f32 == size.file_size(tmp_path / "f32.pt")
    assert 3.5 <= f32 / q8 <= 4.1, (f32, q8)
    assert 1.8 <= f32 / f16 <= 2.1, (f32, f16)

    # weights_only=True must be able to read both formats
    assert torch.load(tmp_path / "q8.pt", weights_only=True)["format"] == quantize.QFORMAT
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        ref = model(x)
        for path, loader in (("q8.pt", quantize.load_quantized), ("f16.pt", size.load_state)):
            other = loader(tmp_path / path, _student().eval())
            assert next(other.parameters()).dtype == torch.float32
            assert torch.allclose(other(x), ref, atol=0.15), path


def test_dequantize_rejects_other_formats():
    with pytest.raises(ValueError, match="format"):
        quantize.dequantize_minmax({"format": "something-else"})


def test_fp16_state_keeps_integer_buffers():
    half = quantize.to_float16(_student().state_dict())
    assert half["stem.0.weight"].dtype == torch.float16
    assert half["stem.1.num_batches_tracked"].dtype == torch.int64


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_torch_dynamic_int8_runs_or_explains():
    model = _student().eval()
    try:
        q = quantize.torch_dynamic_int8(model)
    except RuntimeError as e:
        pytest.skip(str(e))
    with torch.no_grad():
        assert q(torch.randn(1, 3, 128, 128)).shape == (1, 11)
