"""Confusion-matrix throughput on full-resolution Cityscapes-sized label maps.

Measures :meth:`vidda.metrics.ConfusionMatrix.update` (validation included) on 2048×1024 uint8
label maps — the format a label PNG decodes to — with ~10 % ignore (255) pixels in the GT, against
a bare ``np.bincount(gt.astype(int64) * 19 + pred, minlength=361)`` over the same pixels (no
validation, no ignore handling).  The two are measured alternately in the same run; each figure is
the median over ``--reps`` repetitions.  The last line is machine-readable ``key=value`` pairs with
``ratio`` = median update time ÷ median reference time (goal: ``ratio <= target``).

Usage::

    python benchmarks/metrics_speed.py [--reps 15] [--batch 1] [--no-torch]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from vidda.classes import IGNORE_INDEX, NUM_CLASSES
from vidda.metrics import ConfusionMatrix

HEIGHT, WIDTH = 1024, 2048
TARGET_RATIO = 1.5


def make_labels(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 (pred, gt) trainId maps ``[batch, H, W]``; ~10 % of GT pixels are 255."""
    rng = np.random.default_rng(seed)
    shape = (batch, HEIGHT, WIDTH)
    gt = rng.integers(0, NUM_CLASSES, shape, dtype=np.uint8)
    gt[rng.random(shape) < 0.1] = IGNORE_INDEX
    pred = rng.integers(0, NUM_CLASSES, shape, dtype=np.uint8)
    return pred, gt


def reference(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The bare bincount the metric is compared with (no validation, ignore not removed)."""
    c = NUM_CLASSES
    return np.bincount(gt.ravel().astype(np.int64) * c + pred.ravel(), minlength=c * c)


def time_once(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(cases: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds per case; the cases are interleaved within every repetition."""
    for fn in cases.values():  # warm-up (allocator, caches)
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            times[name].append(time_once(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="repetitions (median reported)")
    parser.add_argument("--batch", type=int, default=1, help="label maps per update call")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch CPU tensor case")
    args = parser.parse_args()

    pred, gt = make_labels(args.batch)
    pred_t, gt_t = torch.from_numpy(pred), torch.from_numpy(gt)
    cm = ConfusionMatrix()
    cases: dict[str, Callable[[], object]] = {
        "reference np.bincount": lambda: reference(pred, gt),
        "ConfusionMatrix numpy uint8": lambda: cm.update(pred, gt),
    }
    if not args.no_torch:
        cases["ConfusionMatrix torch uint8 (cpu)"] = lambda: cm.update(pred_t, gt_t)
    medians = measure(cases, max(1, args.reps))

    # sanity: the metric agrees with the reference on the non-ignored pixels
    check = ConfusionMatrix()
    check.update(pred, gt)
    ref = reference(pred, gt)[: NUM_CLASSES * NUM_CLASSES].reshape(NUM_CLASSES, NUM_CLASSES)
    assert np.array_equal(check.matrix, ref), "ConfusionMatrix disagrees with np.bincount"

    mpix = pred.size / 1e6
    ref_s = medians["reference np.bincount"]
    print(f"confusion matrix, {args.batch} x {WIDTH}x{HEIGHT} uint8, median of {args.reps} reps")
    print(f"{'case':<36} {'ms':>9} {'Mpix/s':>9} {'÷ ref':>7}")
    for name, sec in medians.items():
        print(f"{name:<36} {sec * 1e3:>9.2f} {mpix / sec:>9.1f} {sec / ref_s:>7.2f}")
    ours = medians["ConfusionMatrix numpy uint8"]
    ratio = ours / ref_s
    print(
        f"benchmark=metrics_speed mpix_s={mpix / ours:.1f} ref_mpix_s={mpix / ref_s:.1f} "
        f"ratio={ratio:.2f} target={TARGET_RATIO} reps={args.reps} pixels={pred.size}"
    )


if __name__ == "__main__":
    main()
