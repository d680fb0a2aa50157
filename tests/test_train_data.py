"""Data readers of the harness: IDX (gz and plain), CIFAR-10 (python, binary, tar.gz),
the embedded MNIST subset, Fashion-MNIST discovery, and their error messages."""

import gzip
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from byzagg.train import data
from byzagg.train.data import DatasetError


def write_idx_set(folder: Path, compress: bool, train=12, test=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in data.IDX_FILES.items():
        data.write_idx(folder / (stem + (".gz" if compress else "")), arrays[key])
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_idx_roundtrip(tmp_path, compress):
    arrays = write_idx_set(tmp_path, compress)
    ds = data.load_dataset("mnist", tmp_path)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert np.array_equal(ds.train_images.numpy(), arrays["train_images"])
    assert np.array_equal(ds.test_labels.numpy(), arrays["test_labels"])
    assert ds.source == str(tmp_path)


def test_idx_found_in_torchvision_layout(tmp_path):
    write_idx_set(tmp_path / "FashionMNIST" / "raw", compress=True)
    assert len(data.load_dataset("fashion-mnist", tmp_path).train_labels) == 12


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "x-idx1-ubyte"  # no .gz suffix but gzip content
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03"))
    assert data.read_idx(path).tolist() == [1, 2, 3]


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DatasetError, match="bad IDX magic"):
        data.read_idx(path)


def test_idx_truncated(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28)) + bytes(100))
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        data.read_idx(path)


def test_idx_corrupt_gzip(tmp_path):
    payload = gzip.compress(b"\x00\x00\x08\x01" + (300).to_bytes(4, "big") + bytes(300))
    path = tmp_path / "broken.gz"
    path.write_bytes(payload[:-20])
    with pytest.raises(DatasetError, match="corrupt gzip"):
        data.read_idx(path)


def test_idx_missing_and_incomplete(tmp_path):
    with pytest.raises(DatasetError, match="were not found"):
        data.load_dataset("mnist", tmp_path)
    write_idx_set(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="missing t10k-labels-idx1-ubyte"):
        data.load_dataset("mnist", tmp_path)


def test_idx_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path, compress=False)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DatasetError, match="do not match"):
        data.load_dataset("mnist", tmp_path)


def test_mnist_needs_data_dir():
    with pytest.raises(DatasetError, match="needs --data-dir"):
        data.load_dataset("mnist")
    with pytest.raises(DatasetError, match="unknown data set"):
        data.load_dataset("imagenet")


def test_fashion_mnist_discovered_where_debian_installs_it(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "fashion-mnist", compress=True)
    monkeypatch.setattr(data, "DEBIAN_DATASETS", tmp_path)
    ds = data.load_dataset("fashion-mnist")
    assert ds.source == str(tmp_path / "fashion-mnist")
    monkeypatch.setattr(data, "DEBIAN_DATASETS", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        data.load_dataset("fashion-mnist")


@pytest.mark.skipif(not (data.DEBIAN_DATASETS / "fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_is_complete():
    ds = data.load_dataset("fashion-mnist")
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)


def test_embedded_mnist_subset():
    ds = data.load_dataset("mnist-embedded")
    assert ds.train_images.shape == (8000, 28, 28) and ds.test_images.shape == (2000, 28, 28)
    assert set(ds.train_labels.tolist()) == set(range(10)) == set(ds.test_labels.tolist())
    assert ds.train_images.dtype == torch.uint8 and int(ds.train_images.max()) == 255


def cifar_arrays(count, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 3072), dtype=np.uint8), rng.integers(0, 10, count).tolist()


def write_cifar_python(folder: Path, per_batch=4):
    folder.mkdir(parents=True, exist_ok=True)
    names = data.CIFAR10_TRAIN_BATCHES + [data.CIFAR10_TEST_BATCH]
    for i, name in enumerate(names):
        images, labels = cifar_arrays(per_batch, i)
        with open(folder / name, "wb") as stream:
            pickle.dump({b"batch_label": name.encode(), b"data": images, b"labels": labels}, stream)
    return names


def test_cifar_python_batches(tmp_path):
    write_cifar_python(tmp_path / "cifar-10-batches-py")
    ds = data.load_dataset("cifar10", tmp_path)
    assert ds.train_images.shape == (20, 3, 32, 32) and ds.test_images.shape == (4, 3, 32, 32)
    images, labels = cifar_arrays(4, 0)
    assert np.array_equal(ds.train_images[:4].numpy().reshape(4, -1), images)
    assert ds.train_labels[:4].tolist() == labels


def test_cifar_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i, name in enumerate(data.CIFAR10_TRAIN_BATCHES + [data.CIFAR10_TEST_BATCH]):
        images, labels = cifar_arrays(3, i)
        records = np.concatenate([np.asarray(labels, np.uint8)[:, None], images], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    ds = data.load_dataset("cifar10", tmp_path)
    assert ds.train_images.shape == (15, 3, 32, 32)
    assert ds.test_labels.tolist() == cifar_arrays(3, 5)[1]


def test_cifar_tar_archive(tmp_path):
    source = tmp_path / "src"
    names = write_cifar_python(source / "cifar-10-batches-py")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name in names:
            tar.add(source / "cifar-10-batches-py" / name, arcname=f"cifar-10-batches-py/{name}")
    ds = data.load_dataset("cifar10", tmp_path)
    assert len(ds.train_labels) == 20 and "tar.gz" in ds.source


def test_cifar_errors(tmp_path):
    with pytest.raises(DatasetError, match="no CIFAR-10 batches"):
        data.load_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetError, match="needs --data-dir"):
        data.load_dataset("cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_python(folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3: not a CIFAR-10 python batch"):
        data.load_dataset("cifar10", tmp_path)
    with open(folder / "data_batch_3", "wb") as stream:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, stream)
    with pytest.raises(DatasetError, match="expected \\(N, 3072\\)"):
        data.load_dataset("cifar10", tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetError, match="missing test_batch"):
        data.load_dataset("cifar10", tmp_path)
    binary = tmp_path / "b" / "cifar-10-batches-bin"
    binary.mkdir(parents=True)
    for name in data.CIFAR10_TRAIN_BATCHES + [data.CIFAR10_TEST_BATCH]:
        (binary / f"{name}.bin").write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(DatasetError, match="3073-byte"):
        data.load_dataset("cifar10", tmp_path / "b")


def test_pipeline_batches_flips_and_normalisation():
    ds = data.synthetic("cifar10-synthetic", train=30, test=7)
    pipe = data.Pipeline(ds, flip_train=False, seed=3)
    x, y = pipe.worker_batches(4, 5)
    assert x.shape == (4, 5, 3, 32, 32) and y.shape == (4, 5)
    # one epoch is a permutation: 30 draws cover every image once
    index = torch.cat([pipe.next_indices(7) for _ in range(2)] + [pipe.next_indices(16)])
    assert len(index) == 30
    first = pipe.prepare(ds.train_images[:1])
    mean, std = data.NORMALISATION["cifar10"]
    expected = (ds.train_images[0, 0, 0, 0].float() / 255 - mean[0]) / std[0]
    assert torch.isclose(first[0, 0, 0, 0], expected)
    flipped = first.flip(-1)
    mask_all = torch.Generator().manual_seed(1)
    pipe_flip = data.Pipeline(ds, flip_train=True)
    out = pipe_flip.flip(first.repeat(64, 1, 1, 1), mask_all)
    assert all(torch.equal(o, first[0]) or torch.equal(o, flipped[0]) for o in out)
    assert any(torch.equal(o, flipped[0]) for o in out) and any(torch.equal(o, first[0]) for o in out)
