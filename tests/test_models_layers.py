"""LocallyConnected2d against a reference that loops over output positions."""

from __future__ import annotations

import pytest
import torch

from cnnrepro.models.layers import LocallyConnected2d, LocalResponseNorm


def loop_reference(layer: LocallyConnected2d, x: torch.Tensor) -> torch.Tensor:
    """Compute each output position with its own filter bank, one position at a time."""
    k, s = layer.kernel_size, layer.stride
    out_h, out_w = layer.output_size
    columns = []
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, :, i * s : i * s + k, j * s : j * s + k]  # N x C x k x k
            patch = patch.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # N x k*k*C, taps ordered (row, col, C)
            columns.append(patch @ layer.weight[i * out_w + j])  # N x out_channels
    out = torch.stack(columns, dim=2).view(x.shape[0], layer.out_channels, out_h, out_w)
    return out + layer.bias


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "side", "kernel", "stride"),
    [(3, 4, 9, 3, 1), (2, 5, 11, 3, 2), (4, 4, 13, 7, 2), (1, 3, 6, 6, 1)],
)
def test_locally_connected_matches_loop(in_channels, out_channels, side, kernel, stride):
    torch.manual_seed(0)
    layer = LocallyConnected2d(in_channels, out_channels, (side, side), kernel, stride).double()
    x = torch.randn(3, in_channels, side, side, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    expected = loop_reference(layer, x)
    assert out.shape == expected.shape, f"output shape {tuple(out.shape)}, loop gives {tuple(expected.shape)}"
    assert torch.allclose(out, expected), f"forward differs by {(out - expected).abs().max():.3g}"

    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, layer.weight, layer.bias), upstream)
    expected_grads = torch.autograd.grad(expected, (x, layer.weight, layer.bias), upstream)
    for name, grad, reference in zip(("input", "weight", "bias"), grads, expected_grads, strict=True):
        assert torch.allclose(grad, reference), f"{name} gradient differs by {(grad - reference).abs().max():.3g}"


def test_locally_connected_does_not_share_weights():
    torch.manual_seed(0)
    layer = LocallyConnected2d(1, 1, (4, 4), 3)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[0].fill_(1.0)  # only the top-left output position has nonzero weights
    out = layer(torch.ones(1, 1, 4, 4))
    assert out[0, 0, 0, 0].item() == 9.0, f"top-left output is {out[0, 0, 0, 0].item()}, expected the 9-pixel sum"
    assert out[0, 0].flatten()[1:].abs().sum().item() == 0.0, "other positions used the top-left filter"


def test_locally_connected_channels_last_input():
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 2, (8, 8), 3)
    x = torch.randn(2, 3, 8, 8)
    dense = layer(x)
    strided = layer(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(dense, strided, atol=1e-6), "a channels_last input changes the result"


def test_locally_connected_rejects_wrong_input_size():
    layer = LocallyConnected2d(3, 2, (8, 8), 3)
    with pytest.raises(ValueError, match="8 x 8"):
        layer(torch.randn(1, 3, 9, 9))


def test_locally_connected_rejects_too_small_input():
    with pytest.raises(ValueError, match="smaller than"):
        LocallyConnected2d(3, 2, (4, 4), 5)


@pytest.mark.parametrize(("channels", "size"), [(8, 5), (7, 4), (3, 5)])
def test_local_response_norm_matches_torch(channels, size):
    torch.manual_seed(0)
    ours = LocalResponseNorm(channels, size, alpha=5e-4, beta=0.75, k=2.0).double()
    reference = torch.nn.LocalResponseNorm(size, alpha=5e-4, beta=0.75, k=2.0)
    x = (torch.randn(2, channels, 5, 6, dtype=torch.float64) * 10).requires_grad_()
    out, expected = ours(x), reference(x)
    assert torch.allclose(out, expected), f"forward differs by {(out - expected).abs().max():.3g}"
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, upstream)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    assert torch.allclose(grad, expected_grad), f"input gradient differs by {(grad - expected_grad).abs().max():.3g}"


def test_local_response_norm_channels_last_input():
    torch.manual_seed(0)
    layer = LocalResponseNorm(6, 5, alpha=1e-4, beta=0.75, k=1.0)
    x = torch.randn(2, 6, 7, 7) * 5
    dense = layer(x)
    strided = layer(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(dense, strided, atol=1e-6), "a channels_last input changes the result"
