"""kdutils.compress.quantize: 8-bit min-max codes, float16 and int8 inference (PT2E, x86)."""
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


def _dw_pw_net() -> torch.nn.Module:
    """A small stem + depthwise + pointwise + classifier net, in eval mode with trained-looking BN."""
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    with torch.no_grad():  # running statistics from a few batches
        net.train()
        for _ in range(5):
            net(torch.randn(16, 3, 16, 16))
    return net.eval()


def test_int8_model_runs_in_int8_and_agrees_with_float(tmp_path):
    pytest.importorskip("torchao")
    net = _dw_pw_net()
    calibration = [torch.randn(16, 3, 16, 16) for _ in range(4)]
    quantized = quantize.quantize_int8(net, calibration)
    path = tmp_path / "int8.pt2"
    nbytes = quantize.save_int8(quantized, path, calibration[0][:1])
    assert nbytes == path.stat().st_size
    weights = quantize.int8_weight_bytes(path)
    assert weights < size.model_size_bytes(net)  # int8 weights (plus scales) instead of float32
    model = quantize.load_int8(path)
    kernels = quantize.int8_kernels(model)
    assert kernels.get("onednn.qconv_pointwise.default") == 3  # stem, depthwise and pointwise all in int8
    assert "aten.convolution.default" not in kernels
    model.eval()
    for batch in (1, 7):  # any batch size
        x = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            expected, got = net(x), model(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 0.1 * expected.abs().max() + 1e-3


def test_int8_needs_calibration():
    pytest.importorskip("torchao")
    with pytest.raises(ValueError, match="calibration"):
        quantize.quantize_int8(_dw_pw_net(), [])
