"""Every model family at a small size: output shapes, gradients, and a falling loss on real images.

LeNet-5 trains on MNIST test images, the others on Imagenette photos, all from the shared test data.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnrepro.models import FAMILIES, GoogLeNetOutputs, build, deepface_sub, options
from cnnrepro.models.layers import LocalResponseNorm

NUM_CLASSES = 7  # not any paper's class count, so a hard-coded head size would fail
SMALL = {
    "lenet5": {},
    "alexnet": {"image_size": 67, "width": 0.125},
    "deepface": {"image_size": 76, "width": 0.25},
    "googlenet": {"image_size": 96, "width": 0.25},
}
BATCH = 8


def small_model(family: str, num_classes: int = NUM_CLASSES, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(family, num_classes=num_classes, **SMALL[family], **extra)


def mnist_batch(data: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the first `count` MNIST test digits padded to 32x32, scaled so background is -0.1, ink 1.175."""
    with gzip.open(data / "mnist" / "t10k-images-idx3-ubyte.gz") as handle:
        pixels = np.frombuffer(handle.read(), dtype=np.uint8, offset=16)[: count * 784]
    with gzip.open(data / "mnist" / "t10k-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read(), dtype=np.uint8, offset=8)[:count]
    images = torch.from_numpy(pixels.copy()).float().view(count, 1, 28, 28) / 255.0
    images = F.pad(images * 1.275 - 0.1, (2, 2, 2, 2), value=-0.1)
    return images, torch.from_numpy(labels.copy()).long()


def imagenette_batch(data: Path, count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `count` Imagenette validation photos (cycling over the 10 classes) resized to size x size."""
    classes = sorted(path for path in (data / "imagenette" / "val").iterdir() if path.is_dir())
    images, labels = [], []
    for i in range(count):
        label = i % len(classes)
        path = sorted(classes[label].glob("*.JPEG"))[i // len(classes)]
        image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
        images.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0)
        labels.append(label)
    batch = torch.stack(images)
    batch = (batch - batch.mean(dim=(0, 2, 3), keepdim=True)) / batch.std(dim=(0, 2, 3), keepdim=True)
    return batch, torch.tensor(labels)


def real_batch(family: str, model: torch.nn.Module, data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if family == "lenet5":
        return mnist_batch(data, BATCH)
    return imagenette_batch(data, BATCH, model.input_size)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_shape_and_finite(family):
    model = small_model(family).eval()
    x = torch.randn(2, model.input_channels, model.input_size, model.input_size)
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor), f"{family} in eval mode returned {type(logits).__name__}"
    assert logits.shape == (2, NUM_CLASSES), f"{family} logits have shape {tuple(logits.shape)}"
    assert torch.isfinite(logits).all(), f"{family} output includes NaN or inf"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_gets_gradient(family):
    model = small_model(family).train()
    x = torch.randn(2, model.input_channels, model.input_size, model.input_size)
    loss = model.loss(model(x), torch.tensor([0, NUM_CLASSES - 1]))
    loss.backward()
    assert torch.isfinite(loss), f"{family} loss is {loss.item()}"
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{family} parameters without gradient: {missing}"
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"{family} gradients include NaN or inf: {bad}"


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_falls_on_real_batch(family, shared_data):
    model = small_model(family, num_classes=10)
    x, y = real_batch(family, model, shared_data)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return model.loss(model(x), y).item()

    before = eval_loss()
    model.train()
    for _ in range(8):
        optimizer.zero_grad()
        model.loss(model(x), y).backward()
        optimizer.step()
    after = eval_loss()
    assert after < before, f"{family} loss rose from {before:.4f} to {after:.4f} after 8 SGD steps on one batch"


def test_googlenet_aux_heads_train_only():
    model = small_model("googlenet")
    x = torch.randn(2, 3, model.input_size, model.input_size)
    outputs = model.train()(x)
    assert isinstance(outputs, GoogLeNetOutputs), f"train mode returned {type(outputs).__name__}"
    for name in GoogLeNetOutputs._fields:
        assert getattr(outputs, name).shape == (2, NUM_CLASSES), f"{name} has shape {getattr(outputs, name).shape}"
    target = torch.tensor([1, 2])
    expected = sum(
        weight * F.cross_entropy(logits, target) for weight, logits in zip((1.0, 0.3, 0.3), outputs, strict=True)
    )
    assert torch.allclose(model.loss(outputs, target), expected), "loss is not main + 0.3 * (aux1 + aux2)"
    assert isinstance(model.eval()(x), torch.Tensor), "eval mode still returns the auxiliary logits"
    plain = small_model("googlenet", aux_heads=False).train()
    assert isinstance(plain(x), torch.Tensor), "aux_heads=False still returns GoogLeNetOutputs"


def test_googlenet_batch_norm_option():
    model = small_model("googlenet", batch_norm=True)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    lrns = [m for m in model.modules() if isinstance(m, LocalResponseNorm)]
    assert norms, "batch_norm=True added no BatchNorm2d"
    assert not lrns, "batch_norm=True kept the LRN layers"
    paper_lrns = [m for m in small_model("googlenet").modules() if isinstance(m, LocalResponseNorm)]
    assert len(paper_lrns) == 2, f"the paper network has {len(paper_lrns)} LRN layers, Table 1's stem has 2"
    biased = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    assert not biased, "convolutions followed by batch normalisation still have biases"


def test_deepface_features():
    model = small_model("deepface").eval()
    x = torch.randn(3, 3, model.input_size, model.input_size)
    features = model.features(x)
    assert features.shape == (3, round(4096 * SMALL["deepface"]["width"])), f"features shape {features.shape}"
    assert (features >= 0).all(), "F7 features are taken after the ReLU, so none may be negative"
    assert torch.allclose(model.f8(features), model(x)), "forward in eval mode is not f8(features(x))"


@pytest.mark.parametrize("variant", ["sub1", "sub2", "sub3"])
def test_deepface_depth_ablations(variant):
    torch.manual_seed(0)
    model = deepface_sub(variant, num_classes=NUM_CLASSES, **SMALL["deepface"])
    removed = {"sub1": {"c3"}, "sub2": {"l4", "l5"}, "sub3": {"c3", "l4", "l5"}}[variant]
    for name in ("c3", "l4", "l5"):
        is_identity = isinstance(getattr(model, name), torch.nn.Identity)
        assert is_identity == (name in removed), f"{variant}: {name} identity={is_identity}"
    out = model(torch.randn(2, 3, model.input_size, model.input_size))
    assert out.shape == (2, NUM_CLASSES), f"{variant} output shape {tuple(out.shape)}"


def test_alexnet_options_change_layers():
    model = small_model("alexnet", towers=1, lrn=False, overlapping_pool=False, activation="tanh")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(conv.groups == 1 for conv in convs), "towers=1 left a grouped convolution"
    assert not any(isinstance(m, LocalResponseNorm) for m in model.modules()), "lrn=False kept LRN"
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert all(pool.kernel_size == 2 for pool in pools), "overlapping_pool=False kept 3x3 pooling"
    assert any(isinstance(m, torch.nn.Tanh) for m in model.modules()), "activation='tanh' has no Tanh"
    paper = small_model("alexnet")
    assert any(isinstance(m, LocalResponseNorm) for m in paper.modules()), "the paper network has no LRN"
    assert [conv.groups for conv in paper.modules() if isinstance(conv, torch.nn.Conv2d)] == [1, 2, 1, 2, 2], (
        "the two-tower network must group conv2, conv4 and conv5 only"
    )


def test_lenet5_relu_option():
    model = small_model("lenet5", activation="relu")
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules()), "activation='relu' has no ReLU"


def test_lenet5_relu_leaves_chance(shared_data):
    # With the tanh initialisation of LeCun et al. (1998), the ReLU network stayed at 90% training error on MNIST.
    torch.set_num_threads(1)
    images, labels = mnist_batch(shared_data, 1024)
    model = small_model("lenet5", num_classes=10, activation="relu")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    for _ in range(2):
        for start in range(0, 1024, 32):
            loss = model.loss(model(images[start : start + 32]), labels[start : start + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        error = (model(images).argmax(dim=1) != labels).float().mean().item()
    assert error < 0.5, f"LeNet-5 with ReLU has {error:.1%} training error after 2 epochs; chance is 90%"


@pytest.mark.parametrize("family", FAMILIES)
def test_input_attributes(family):
    model = small_model(family)
    expected_channels = 1 if family == "lenet5" else 3
    assert model.input_channels == expected_channels, f"{family} input_channels {model.input_channels}"
    expected_size = SMALL[family].get("image_size", 32)
    assert model.input_size == expected_size, f"{family} input_size {model.input_size}"


def test_build_rejects_unknown_family():
    with pytest.raises(ValueError, match="resnet") as info:
        build("resnet", num_classes=10)
    assert "googlenet" in str(info.value), "the error must list the allowed families"


@pytest.mark.parametrize("family", FAMILIES)
def test_build_rejects_unknown_option(family):
    with pytest.raises(ValueError, match="bogus") as info:
        build(family, num_classes=10, bogus=True)
    for name in options(family):
        assert name in str(info.value), f"the error must list allowed option {name!r}"


@pytest.mark.parametrize(
    ("family", "kwargs", "message"),
    [
        ("lenet5", {"image_size": 28}, "image_size"),
        ("lenet5", {"activation": "sigmoid"}, "activation"),
        ("alexnet", {"towers": 3}, "towers"),
        ("deepface", {"variant": "sub4"}, "variant"),
        ("deepface", {"image_size": 40}, "image_size"),
        ("googlenet", {"image_size": 64}, "image_size"),
    ],
)
def test_build_rejects_invalid_value(family, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(family, num_classes=10, **kwargs)


@pytest.mark.parametrize("family", ["alexnet", "deepface", "googlenet"])
def test_kaiming_init_option(family):
    import math

    torch.manual_seed(0)
    sizes = {"alexnet": 67, "deepface": 76, "googlenet": 96}
    model = build(family, num_classes=5, image_size=sizes[family], width=0.25, init="kaiming")
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    fan_in = conv.weight[0].numel()
    expected = math.sqrt(2.0 / fan_in)
    measured = conv.weight.std().item()
    assert abs(measured - expected) < 0.25 * expected, f"{family}: first conv std {measured:.4f}, He std {expected:.4f}"
    assert torch.count_nonzero(conv.bias) == 0, f"{family}: kaiming biases must start at zero"
    with pytest.raises(ValueError, match="init must be one of"):
        build(family, num_classes=5, image_size=sizes[family], width=0.25, init="xavier")
