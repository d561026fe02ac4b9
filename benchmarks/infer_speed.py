"""``vidda infer`` throughput: the whole pipeline against the bare model forward, same run.

Two models from random initialisation (no pretrained file is read): the demo network
(``configs/demo/source_only.yaml``: a narrow MiT-b0 + SegFormer head) on 256×128 frames, and
MiT-b5 HRDA (``configs/_base_/models/hrda_mitb5.yaml``: DAFormer head, multi-resolution, the
config's sliding-window test mode) on 1024×512 frames. For each:

* **bare**: ``Segmenter`` on frames already in memory (normalise, predict, arg-max), batch 1;
* **pipeline**: ``run_infer`` on an mp4 of the same size written first: decoding, resizing, the
  model, trainId + colour PNGs, the temporal consistency (DIS flow per frame pair) and the
  summary — the defaults of ``vidda infer``.

Frames/s of each, medians over ``--reps`` (demo model; HRDA runs once, without a warm-up on the
CPU, where one frame takes tens of seconds: the default CPU run takes about 2 minutes). The last
line is machine-readable ``key=value`` pairs; ``ratio`` = pipeline fps ÷ bare fps of the slower
case (1.0 = the I/O costs nothing; goal ``ratio >= target``). With a second core free, the writer
thread (PNGs, temporal flow) overlaps the model.

Usage::

    python benchmarks/infer_speed.py [--frames 24] [--b5-frames N] [--device cuda] [--no-b5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vidda.config.load import load_config
from vidda.config.schema import Config
from vidda.infer import InferOptions, Segmenter, open_source, run_infer
from vidda.models.build import build_segmentor

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.8
CASES = {  # name: (config, overrides, (W, H))
    "demo": (ROOT / "configs/demo/source_only.yaml", [], (256, 128)),
    "hrda_b5": (ROOT / "configs/_base_/models/hrda_mitb5.yaml", ["model.pretrained=null"],
                (1024, 512)),  # fmt: skip
}


def synthetic_video(path: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """Write ``n`` textured frames panning right (R,G,B ``uint8 [H, W, 3]``); return them as
    decoded back from the file (what the pipeline sees)."""
    w, h = size
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w + 4 * n, 3), dtype=np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for i in range(n):
        writer.write(np.ascontiguousarray(base[:, 4 * i : 4 * i + w]))
    writer.release()
    cap, decoded = cv2.VideoCapture(str(path)), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if len(decoded) != n:
        raise SystemExit(f"wrote {n} frames to {path}, read back {len(decoded)} (codec?)")
    return decoded


def bare_fps(seg: Segmenter, frames: list[np.ndarray]) -> float:
    """Frames/s of the model alone on in-memory frames (normalise, predict, arg-max, to host)."""
    tensors = [torch.from_numpy(f).permute(2, 0, 1)[None] for f in frames]
    start = time.perf_counter()
    for x in tensors:
        seg(x).max(dim=1).indices.cpu()  # the arg-max as run_infer computes it
    return len(frames) / (time.perf_counter() - start)


def pipeline_fps(seg: Segmenter, video: Path, out_dir: Path, k: int) -> float:
    """Frames/s of ``run_infer`` with the default outputs (fresh output folder)."""
    opts = InferOptions(out_dir=out_dir, progress=False, overwrite=True)
    return float(run_infer(seg, open_source(video), opts, num_classes=k)["fps"])


def measure(name: str, frames: int, reps: int, device: torch.device, amp: str, tmp: Path,
            warmup: bool = True) -> dict[str, float]:  # fmt: skip
    path, overrides, size = CASES[name]
    cfg: Config = load_config(path, overrides)
    torch.manual_seed(0)
    seg = Segmenter(build_segmentor(cfg.model, load_pretrained=False), cfg.eval, device, amp)
    video = tmp / f"{name}.mp4"
    decoded = synthetic_video(video, frames, size)
    if warmup:
        bare_fps(seg, decoded[:1])  # allocator, kernels (HRDA-b5 on a CPU: seconds per frame)
    bare, pipe = [], []
    for r in range(reps):
        bare.append(bare_fps(seg, decoded))
        pipe.append(pipeline_fps(seg, video, tmp / f"{name}_out{r}", cfg.model.num_classes))
    b, p = statistics.median(bare), statistics.median(pipe)
    return {"bare_fps": b, "fps": p, "ratio": p / b, "frames": frames, "w": size[0], "h": size[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames of the demo-model video")
    parser.add_argument("--b5-frames", type=int, default=None,
                        help="frames of the HRDA video (default: 1 on CPU, 16 on CUDA)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions for the demo model")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off")
    parser.add_argument("--no-b5", action="store_true", help="skip MiT-b5 HRDA")
    args = parser.parse_args()

    device = torch.device(args.device)
    results = {}
    with tempfile.TemporaryDirectory(prefix="vidda_infer_speed_") as tmp:
        results["demo"] = measure("demo", args.frames, args.reps, device, args.amp, Path(tmp))
        if not args.no_b5:
            gpu = device.type == "cuda"
            n = args.b5_frames or (16 if gpu else 1)
            results["hrda_b5"] = measure("hrda_b5", n, 1, device, args.amp, Path(tmp), gpu)

    print(f"vidda infer throughput on {device} (amp {args.amp}, torch threads "
          f"{torch.get_num_threads()}); pipeline = video decode + model + trainid/color PNGs + "
          "temporal consistency (DIS)")  # fmt: skip
    print(f"{'model':<9} {'size':>9} {'frames':>6} {'bare fps':>9} {'pipeline fps':>13} "
          f"{'ratio':>6}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:<9} {r['w']:>4}x{r['h']:<4} {r['frames']:>6} {r['bare_fps']:>9.3g} "
              f"{r['fps']:>13.3g} {r['ratio']:>6.2f}")  # fmt: skip
    ratio = min(r["ratio"] for r in results.values())
    fields = [f"benchmark=infer_speed device={device.type}"]
    for name, r in results.items():
        fields.append(f"{name}_fps={r['fps']:.3g} {name}_bare_fps={r['bare_fps']:.3g} "
                      f"{name}_ratio={r['ratio']:.2f}")  # fmt: skip
    fields.append(f"ratio={ratio:.2f} target={TARGET_RATIO} frames={args.frames}")
    print(" ".join(fields))


if __name__ == "__main__":
    main()
