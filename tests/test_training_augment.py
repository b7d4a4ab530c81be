"""Training crops and colour changes on uint8 tensors."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from cnnrepro.training.augment import BatchColor, CropPolicy, random_resized_crop, rgb_pca
from cnnrepro.training.data import ImageStore, StoreDataset, split_validation


def _store(count=24, side=20):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 3, side, side), dtype=np.uint8)
    return ImageStore(images, np.arange(count) % 3, ["a", "b", "c"])


def _batches(loader):
    return [(images.clone(), labels.clone(), color.clone()) for images, labels, color in loader]


def test_crops_do_not_depend_on_worker_count():
    store = _store()
    dataset = StoreDataset(store, np.arange(len(store)), CropPolicy("resized_crop", 16, photometric=0.4), seed=3)
    dataset.set_epoch(2)
    serial = _batches(DataLoader(dataset, batch_size=8, num_workers=0))
    parallel = _batches(DataLoader(dataset, batch_size=8, num_workers=2))
    for (a, la, ca), (b, lb, cb) in zip(serial, parallel, strict=True):
        assert torch.equal(a, b), "crops differ between 0 and 2 workers"
        assert torch.equal(la, lb), "labels differ between 0 and 2 workers"
        assert torch.equal(ca, cb), "colour parameters differ between 0 and 2 workers"


def test_crops_change_with_epoch():
    store = _store()
    dataset = StoreDataset(store, np.arange(len(store)), CropPolicy("crop_flip", 12), seed=0)
    first = dataset[0][0]
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0][0]), "epoch 0 and 1 drew the same crop"


def test_crop_policies_give_requested_size():
    image = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    for mode in ("center", "crop_flip", "resized_crop"):
        cropped, color = CropPolicy(mode, 24, pca_std=0.1)(image, generator)
        assert cropped.shape == (3, 24, 24), f"{mode} gave shape {tuple(cropped.shape)}"
        assert cropped.dtype == torch.uint8, f"{mode} changed the dtype to {cropped.dtype}"
        assert color.shape == (6,), f"{mode} gave {tuple(color.shape)} colour parameters"


def test_resized_crop_center_fallback():
    image = torch.arange(10 * 40, dtype=torch.uint8).view(1, 10, 40)
    cropped = random_resized_crop(image, 8, (1.0, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    assert cropped.shape == (1, 8, 8), f"fallback crop has shape {tuple(cropped.shape)}"


def test_batch_color_identity_is_normalisation():
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    color = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]] * 4)
    eigenvalues, eigenvectors = rgb_pca(images)
    module = BatchColor([0.5, 0.4, 0.3], [0.2, 0.2, 0.2], photometric=True,
                        eigenvalues=eigenvalues, eigenvectors=eigenvectors)
    expected = (images.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.2
    assert torch.allclose(module(images, color), expected, atol=1e-5), "neutral colour parameters changed pixels"
    shifted = module(images, torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]] * 4))
    assert not torch.allclose(shifted, expected), "a PCA alpha of 1 must shift the colours"


def test_validation_split_is_seeded_and_disjoint():
    train, val = split_validation(100, 0.1, seed=5)
    again_train, again_val = split_validation(100, 0.1, seed=5)
    assert len(val) == 10, f"expected 10 held-out images, got {len(val)}"
    assert not set(train) & set(val), "train and validation indices overlap"
    assert np.array_equal(val, again_val), "same seed gave a different validation split"
    assert np.array_equal(train, again_train), "same seed gave a different training split"
