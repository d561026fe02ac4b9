"""UDA training-sample throughput against the floor: just decoding the same files.

Writes a VIPER-like source (1920×1080 JPEG frames, 3-frame clips, KITTI flow PNGs for t and t−1,
labels) and a Cityscapes-like target (2048×1024 PNG frames, flows, labels) into a temporary folder,
then measures, alternating in one run with one process: (a) UDA samples/s of ``TrainStream`` with
the benchmark pipelines (source resized ×4/3 as VIPER→CS-Seq does, 1024² crops, flips; target
1024² crops), and (b) the time to decode exactly the files each sample reads. The last line holds
``ratio`` = pipeline time ÷ decode time (target ≤ 1.3).

Usage::

    python benchmarks/data_pipeline.py [--samples 12] [--clips 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from vidda.config.schema import DatasetConfig
from vidda.data.build import build_dataset
from vidda.data.sampling import TrainStream, worker_init
from vidda.flow.io import read_flow, write_flow

TARGET_RATIO = 1.3


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """uint8 [H, W, 3] natural-ish image (low-frequency noise) so codecs see realistic content."""
    small = rng.integers(0, 256, (h // 32 + 1, w // 32 + 1, 3), dtype=np.uint8)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(big + rng.integers(-8, 9, big.shape), 0, 255).astype(np.uint8)


def write_data(root: Path, clips: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for c in range(clips):
        # VIPER-like source: seq/seq_frame5.jpg, labels at the key frame, flows in one folder.
        seq = f"{c + 1:03d}"
        for f in (8, 9, 10):
            name = f"{seq}/{seq}_{f:05d}"
            img = smooth_image(rng, 1080, 1920)
            path = root / "viper/train/img" / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img)
            if f >= 9:
                write_flow(
                    root / "viper/flow/backward_k1/train" / f"{name}.png",
                    rng.normal(0, 5, (1080, 1920, 2)).astype(np.float32),
                )
        label = (rng.integers(0, 19, (1080 // 60, 1920 // 60)) % 19).astype(np.uint8)
        label = cv2.resize(label, (1920, 1080), interpolation=cv2.INTER_NEAREST)
        label[label == 3] = 255  # no wall in VIPER
        label[label == 5] = 0
        label[label == 12] = 0
        lpath = root / "viper/train/cls" / f"{seq}/{seq}_00010_labelTrainIds.png"
        lpath.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(lpath), label)
        # Cityscapes-like target.
        stem = f"aachen_{c:06d}"
        for f in (17, 18, 19):
            name = f"aachen/{stem}_{f:06d}"
            path = root / "cs/leftImg8bit_sequence/train" / f"{name}_leftImg8bit.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), smooth_image(rng, 1024, 2048))
            if f >= 18:
                write_flow(
                    root / "cs/flow/backward_k1/train" / f"{name}_leftImg8bit.png",
                    rng.normal(0, 5, (1024, 2048, 2)).astype(np.float32),
                )
        lab = cv2.resize(label, (2048, 1024), interpolation=cv2.INTER_NEAREST)
        lpath = root / "cs/gtFine/train/aachen" / f"{stem}_000019_gtFine_labelTrainIds.png"
        lpath.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(lpath), lab)


def decode_only(entries) -> None:
    """Read exactly the files one sample reads, without any transform."""
    for entry in entries:
        for p in entry.frames:
            cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        cv2.imread(str(entry.label), cv2.IMREAD_UNCHANGED)
        for p in entry.flows:
            if p is not None:
                read_flow(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--clips", type=int, default=3)
    args = parser.parse_args()
    worker_init(0)  # one worker: what each data-loader worker does
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_data(root, args.clips)
        print(
            f"wrote {args.clips} source + {args.clips} target clips in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        source = build_dataset(
            DatasetConfig(
                type="viper-seq",
                root=str(root / "viper"),
                resize=[2560, 1440],
                crop_size=[1024, 1024],
                cat_max_ratio=0.75,
                flip=True,
            ),
            train=True,
        )
        target = build_dataset(
            DatasetConfig(
                type="cityscapes-seq",
                root=str(root / "cs"),
                resize=[2048, 1024],
                crop_size=[1024, 1024],
                flip=True,
                pl_margins=[30, 240, 30, 30],
            ),
            train=True,
        )
        stream = TrainStream(source, target, seed=0)
        pipe, ref = [], []
        for k in range(args.samples):
            t = time.perf_counter()
            sample = stream[k]
            pipe.append(time.perf_counter() - t)
            idx = (sample["source"]["index"], sample["target"]["index"])
            t = time.perf_counter()
            decode_only([source.entries[idx[0]], target.entries[idx[1]]])
            ref.append(time.perf_counter() - t)
    p, r = statistics.median(pipe), statistics.median(ref)
    print(f"{'case':<38}{'ms/sample':>10}{'samples/s':>11}")
    print(f"{'decode the same files (reference)':<38}{r * 1e3:>10.1f}{1 / r:>11.2f}")
    print(f"{'TrainStream sample (source+target)':<38}{p * 1e3:>10.1f}{1 / p:>11.2f}")
    print(
        f"benchmark=data_pipeline samples_s={1 / p:.2f} decode_samples_s={1 / r:.2f} "
        f"ratio={p / r:.2f} target={TARGET_RATIO} samples={args.samples} workers=1"
    )


if __name__ == "__main__":
    main()
