"""tf.data pipelines: shapes and types per target, seeded epochs, batches split over replicas, joint image/mask
augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from runner.data.pipeline import AugmentConfig, make_dataset, make_epochs, steps_per_epoch
from runner.errors import ConfigError


def _images(n: int = 10, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 1), dtype=np.uint8)


def _epoch(dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_label_target_scaled_and_unshuffled_in_order() -> None:
    images = _images()
    labels = np.arange(10, dtype=np.float32)
    x, y = _epoch(make_dataset(images, labels, batch_size=4))
    assert x.dtype == np.float32 and x.shape == (10, 16, 16, 1)
    np.testing.assert_allclose(x, images / 255.0, atol=1e-6)
    np.testing.assert_array_equal(y, labels)


def _one_epoch(images: np.ndarray, targets: np.ndarray | None = None, batch_size: int = 32, **options
               ) -> tuple[np.ndarray, np.ndarray]:
    """The first training epoch ``make_epochs`` gives."""
    return _epoch(make_epochs(images, targets, batch_size=batch_size, **options)
                  .take(steps_per_epoch(len(images), batch_size)))


def test_training_order_is_seeded_and_pairs_stay_together() -> None:
    images = _images()
    labels = np.arange(10, dtype=np.float32)
    x, y = _one_epoch(images, labels, batch_size=3, seed=7)
    assert sorted(y) == list(range(10)) and not np.array_equal(y, labels)
    np.testing.assert_array_equal(y, _one_epoch(images, labels, batch_size=3, seed=7)[1])
    np.testing.assert_allclose(x, images[y.astype(int)] / 255.0, atol=1e-6)  # pairs stay together


def test_image_target_is_the_augmented_input() -> None:
    x, y = _one_epoch(_images(), target="image", augment=AugmentConfig(noise=0.1), seed=1)
    np.testing.assert_array_equal(x, y)


def test_mask_moves_with_the_image() -> None:
    """The mask is a thresholded copy of the image: after joint geometric augmentation it must still be."""
    size = 32
    images = np.zeros((6, size, size, 1), np.uint8)
    images[:, 8:20, 10:26] = 255
    masks = images.copy()
    config = AugmentConfig(flip=True, rotation=0.1, shift=0.2, zoom=0.2, shear=0.2)
    x, y = _one_epoch(images, masks, target="mask", augment=config, seed=3, batch_size=6)
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert not np.array_equal(y, masks / 255.0)  # something moved
    agreement = ((x > 0.5) == (y > 0.5)).mean()
    assert agreement > 0.97


def test_augmentation_repeats_with_the_seed() -> None:
    images = _images()
    labels = np.arange(10, dtype=np.float32)
    config = AugmentConfig(rotation=0.1, zoom=0.1, noise=0.05)
    augmented, order = _one_epoch(images, labels, augment=config, seed=11)
    np.testing.assert_array_equal(augmented, _one_epoch(images, labels, augment=config, seed=11)[0])
    assert not np.allclose(augmented, images[order.astype(int)] / 255.0)


def test_augment_config_errors() -> None:
    assert AugmentConfig.from_options(False) is None
    assert AugmentConfig.from_options(True) == AugmentConfig()
    with pytest.raises(ConfigError, match=r"unknown augmentation 'rotate'"):
        AugmentConfig.from_options({"rotate": 0.1})
    with pytest.raises(ConfigError, match=r"augmentation zoom=3 must be between 0 and 1"):
        AugmentConfig.from_options({"zoom": 3})
    with pytest.raises(ConfigError, match="empty split"):
        make_dataset(_images(0), np.zeros(0, np.float32))


def _labels(dataset, batches: int) -> list[list[int]]:
    """The first ``batches`` batches of labels, from a fresh iterator."""
    return [y.numpy().astype(int).ravel().tolist() for _, y in dataset.take(batches)]


def test_each_training_epoch_is_in_the_order_its_seed_and_number_give_however_often_it_is_iterated() -> None:
    """A resumed trial and a trial on several replicas (whose distributed dataset makes more iterators) must
    train on the epochs a plain run trains on: epoch k's order depends on the seed and k alone."""
    images, labels = _images(), np.arange(10, dtype=np.float32)
    dataset = make_epochs(images, labels, batch_size=4, seed=7)
    steps = steps_per_epoch(10, 4)
    assert steps == 3
    first = _labels(dataset, 3 * steps)
    epochs = [np.concatenate(first[i * steps:(i + 1) * steps]).tolist() for i in range(3)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs) and epochs[0] != epochs[1] != epochs[2]
    assert [len(batch) for batch in first[:steps]] == [4, 4, 2], "a batch mixed two epochs"
    next(iter(dataset))  # another iterator, as a distributed dataset makes: the next one starts over
    assert _labels(dataset, 3 * steps) == first
    resumed = make_epochs(images, labels, batch_size=4, seed=7, first_epoch=1)
    assert _labels(resumed, 2 * steps) == first[steps:]
    assert _labels(make_epochs(images, labels, batch_size=4, seed=8), steps) != first[:steps]


def test_batches_split_evenly_over_replicas() -> None:
    """Every batch a multiple of the replicas, the last of an epoch too: 11 images in batches of 4 over 2
    replicas use 10 (4, 4, 2); a batch that cannot split evenly is refused with the fix named."""
    images, labels = _images(11), np.arange(11, dtype=np.float32)
    epochs = _labels(make_epochs(images, labels, batch_size=4, seed=1, multiple_of=2), 6)
    assert steps_per_epoch(11, 4, 2) == 3 and [len(batch) for batch in epochs] == [4, 4, 2] * 2
    assert all(len(set(np.concatenate(epochs[i:i + 3]))) == 10 for i in (0, 3))
    assert steps_per_epoch(9, 4, 2) == 2 and steps_per_epoch(9, 4) == 3
    in_order = _labels(make_dataset(images, labels, batch_size=4, multiple_of=2), 10)
    assert in_order == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ConfigError, match=r"batch_size=5 does not split evenly over 2 replicas: use a multiple of 2"):
        make_epochs(images, labels, batch_size=5, multiple_of=2)
