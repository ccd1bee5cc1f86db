import numpy as np
import pytest
import torch

from dynaprune.data import IMBALANCE_RATES, DatasetError, load_dataset, random_crop_flip
from dynaprune.models import MODELS, build_model


@pytest.fixture(scope="module")
def fmnist(data_root):
    return load_dataset("fashion_mnist", root=data_root)


def test_fashion_mnist_shapes_and_indexing(fmnist):
    assert fmnist.x_train.shape == (60000, 1, 28, 28) and fmnist.x_test.shape == (10000, 1, 28, 28)
    assert fmnist.x_train.dtype == torch.float32 and fmnist.y_train.dtype == torch.long
    assert fmnist.num_classes == 10 and np.bincount(fmnist.y_train.numpy()).tolist() == [6000] * 10
    # normalised with the training statistics
    assert abs(fmnist.x_train.mean().item()) < 0.01 and abs(fmnist.x_train.std().item() - 1) < 0.01


def test_imbalance_exact_counts(fmnist, data_root):
    ds = load_dataset("fashion_mnist", root=data_root, imbalance=True, variant_seed=3)
    expected = [int(6000 * r) for r in IMBALANCE_RATES]
    assert ds.meta["class_counts"] == expected
    assert np.bincount(ds.y_train.numpy(), minlength=10).tolist() == expected
    # sample i of the variant is sample original_index[i] of the full set
    oi = ds.meta["original_index"]
    assert torch.equal(ds.x_train[123], fmnist.x_train[oi[123]])


@pytest.mark.parametrize("noise_type", ["flip", "uniform"])
@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_label_noise_fraction_and_record(fmnist, data_root, noise_type, rate):
    ds = load_dataset("fashion_mnist", root=data_root, label_noise=rate, noise_type=noise_type, variant_seed=1)
    changed = np.flatnonzero(ds.y_train.numpy() != fmnist.y_train.numpy())
    assert len(changed) == round(rate * 60000)
    assert np.array_equal(changed, ds.meta["noisy_indices"])
    if noise_type == "flip":
        assert np.array_equal(ds.y_train.numpy()[changed], (fmnist.y_train.numpy()[changed] + 1) % 10)
    again = load_dataset("fashion_mnist", root=data_root, label_noise=rate, noise_type=noise_type, variant_seed=1)
    assert torch.equal(again.y_train, ds.y_train)
    other = load_dataset("fashion_mnist", root=data_root, label_noise=rate, noise_type=noise_type, variant_seed=2)
    assert not torch.equal(other.y_train, ds.y_train)


def test_per_class(data_root):
    ds = load_dataset("fashion_mnist", root=data_root, per_class=100)
    assert np.bincount(ds.y_train.numpy()).tolist() == [100] * 10
    with pytest.raises(ValueError, match="per_class=6001"):
        load_dataset("fashion_mnist", root=data_root, per_class=6001)


def test_bad_input_errors(data_root):
    with pytest.raises(ValueError, match="known: fashion_mnist, cifar10"):
        load_dataset("imagenet")
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            load_dataset("toy2d", label_noise=bad)
    with pytest.raises(ValueError, match="known: flip, uniform"):
        load_dataset("toy2d", label_noise=0.1, noise_type="pair")
    with pytest.raises(ValueError, match="known: mlp"):
        build_model("vgg", (3, 32, 32), 10)


def test_cifar10_offline_error(tmp_path):
    with pytest.raises(DatasetError, match="cifar10 is not under"):
        load_dataset("cifar10", root=tmp_path)


def test_generated_sets_deterministic():
    a, b = load_dataset("toy2d", seed=1), load_dataset("toy2d", seed=1)
    assert torch.equal(a.x_train, b.x_train) and a.x_train.shape == (1000, 2)
    assert set(a.y_train.unique().tolist()) == {0, 1}
    p = load_dataset("poly_regression", n_train=300)
    assert p.task == "regression" and p.y_train.shape == (300, 1)
    img = load_dataset("image_regression", size=32)
    h, w, _ = img.meta["image_shape"]
    assert img.x_train.shape == (h * w, 2) and img.y_train.shape == (h * w, 3)
    assert 0 <= img.y_train.min() and img.y_train.max() <= 1
    m = load_dataset("mnist1d", num_samples=500)
    assert m.x_train.shape == (400, 40) and m.x_test.shape == (100, 40) and m.num_classes == 10
    assert torch.equal(m.x_train, load_dataset("mnist1d", num_samples=500).x_train)


def test_imagefolder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "eel"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    ds = load_dataset("imagefolder", path=tmp_path, size=16, test_fraction=0.2)
    assert ds.num_classes == 3 and ds.x_train.shape == (12, 3, 16, 16) and ds.x_test.shape == (3, 3, 16, 16)
    assert ds.meta["classes"] == ["cat", "dog", "eel"]


def test_random_crop_flip_is_a_shifted_copy():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, g, pad=2)
    assert out.shape == x.shape
    # each output is a crop (possibly flipped) of the padded input: values come from the input or are 0
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    random_crop_flip(x, torch.Generator().manual_seed(5))
    assert torch.equal(torch.rand(1), before)  # global RNG untouched


@pytest.mark.parametrize("name,shape", [("mlp", (40,)), ("small_cnn", (1, 28, 28)), ("resnet18", (3, 32, 32)),
                                        ("resnet50", (3, 32, 32)), ("siren", (2,))])
def test_models_forward(name, shape):
    m = build_model(name, shape, 7, seed=0)
    out = m.eval()(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    m2 = build_model(name, shape, 7, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
