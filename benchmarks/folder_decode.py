"""Decode throughput of a folder of small PNGs: `vae data prepare` (data.source=folder) against
a plain Pillow loop, and the read of the cache a later run does.

    python benchmarks/folder_decode.py [--n 60000] [--root /tmp/vaecli_folder_bench]

Writes N 28x28 grayscale PNGs (binarized MNIST's training images when its cache is found,
else random pixels) in ten class folders under ROOT once, then times, each on a cold start
of its own work (the files are in the page cache for all three, as for any second read):
  pillow   np.asarray(Image.open(p)) for every file, into one preallocated array (before and
           after prepare)
  prepare  vaecli's data.prepare: listing, fingerprint (before and after), decoding, checks,
           the cache written
  read     data.load_split(train) from the cache, as every later run does: the fingerprint
           (a stat of every file) and the cache's arrays; images/s of the whole folder, and
           the seconds of three reads, each followed by a load_split(train) of the cached
           binarized MNIST (a TFDS dataset's cache; data.cache_dir as --tfds-cache) when found
Prints one JSON line of images/s (and those seconds).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vaecli import config, data


def write_folder(root: Path, n: int) -> list[Path]:
    done = root / "images" / ".complete"
    if done.exists():
        return sorted((root / "images").glob("*/*.png"))
    try:
        source = data.load_split(config.load(None, ["data.cache_dir=/work/main/runs/data"]).data, "train").images
    except Exception:  # no binarized-MNIST cache here: random pixels decode at about the same speed
        source = np.random.default_rng(0).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    paths = []
    for i in range(n):
        folder = root / "images" / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"{i:05d}.png"
        Image.fromarray(source[i % len(source), :, :, 0] * (255 if source.max() <= 1 else 1)).save(p)
        paths.append(p)
    done.touch()
    return sorted(paths)


def pillow_loop(paths: list[Path]) -> float:
    start = time.perf_counter()
    out = np.empty((len(paths), 28, 28), np.uint8)
    for i, p in enumerate(paths):
        out[i] = np.asarray(Image.open(p))
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--root", type=Path, default=Path("/tmp/vaecli_folder_bench"))
    ap.add_argument("--tfds-cache", type=Path, default=Path("/work/main/runs/data"))
    args = ap.parse_args()
    paths = write_folder(args.root, args.n)
    cache = args.root / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    cfg = config.load(None, ["data.source=folder", f"data.path={args.root / 'images'}", f"data.cache_dir={cache}",
                             "data.val_size=1000", "data.test_size=1000", "data.binarize=none"]).data
    pillow_loop(paths[:2000])  # warm: the files' pages and Pillow's plugins
    pillow = pillow_loop(paths)
    start = time.perf_counter()
    data.prepare(cfg)
    prepare = len(paths) / (time.perf_counter() - start)
    pillow_after = pillow_loop(paths)  # again after it: on a shared machine the load drifts
    reads, tfds_reads = [], []
    for _ in range(3):
        start = time.perf_counter()
        data.load_split(cfg, "train")
        reads.append(time.perf_counter() - start)
        tfds_reads.append(tfds_read(args.tfds_cache))
    print(json.dumps({"images": len(paths), "pillow_loop_images_per_s": [round(pillow), round(pillow_after)],
                      "vaecli_prepare_images_per_s": round(prepare),
                      "cache_read_images_per_s": round(len(paths) / reads[0]), "cache_read_s": [round(t, 3) for t in reads],
                      "binarized_mnist_cache_read_s": [t if t is None else round(t, 3) for t in tfds_reads],
                      "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count()}))


def tfds_read(cache_dir: Path) -> float | None:
    """Seconds of load_split(train) of binarized MNIST from vaecli's cache; None without one."""
    cfg = config.load(None, [f"data.cache_dir={cache_dir}"]).data
    if not (data.cache_folder(cfg) / "index.json").exists():
        return None
    start = time.perf_counter()
    data.load_split(cfg, "train")
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
