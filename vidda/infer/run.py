"""The ``vidda infer`` loop: frames in order → batched model → per-frame maps and run summaries.

Per selected frame (every ``stride_frames``-th input frame, at most ``max_frames``):

1. **Resume.** A frame is *skipped* when all its requested PNGs exist and its prediction can be
   read back from its trainid, labelid or colour PNG (``--overwrite`` disables this); the
   read-back prediction still feeds ``areas.csv``, the overlay video, the temporal consistency
   and the summary, so a resumed run ends with the same outputs as an uninterrupted one.
2. **Model input.** The frame is resized to the model size (:mod:`vidda.infer.geometry`). A
   two-frame (ACCEL) model also gets the *previous input frame* t−1 (whether or not it is itself
   selected) and the DIS backward flow from t to t−1, computed on the fly at the model size; the
   first frame of the input is paired with itself and zero flow (its fusion then sees the same
   logits twice).
3. **Batch.** ``batch_size`` frames run together; the logits are resized (bilinear) to the frame's
   native size before the arg-max.
4. **Outputs**, in frame order, on a writer thread (so PNG encoding and the temporal flow overlap
   the next batch): PNGs, ``areas.csv``, overlay video, and the temporal consistency between each
   output frame and the previous output frame (:class:`vidda.temporal.TemporalConsistency`, DIS
   flow at the model size, resized to the native size; the ACCEL flow is reused when
   ``stride_frames`` is 1).

``summary.json`` is written at the end, also when reading the input fails part-way (then with
``"complete": false`` and the error), before the error is raised.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vidda.classes import NUM_CLASSES
from vidda.errors import UserError
from vidda.flow.estimate import DISEstimator
from vidda.infer.geometry import Size, model_size, resize_flow, resize_frame
from vidda.infer.model import Segmenter
from vidda.infer.outputs import (
    DEFAULT_SAVE,
    SAVE_CHOICES,
    AreasTable,
    OverlayVideo,
    PredictionFiles,
    class_names,
    class_shares,
    write_json,
)
from vidda.infer.overlay import render_overlay
from vidda.infer.sources import Frame, FrameSource, InputError
from vidda.metrics import to_json
from vidda.temporal import TemporalConsistency

__all__ = ["InferOptions", "run_infer"]

IMAGE_SEQUENCE_FPS = 10.0
"""Frame rate of the overlay video for inputs that have none (frame folders)."""


@dataclass
class InferOptions:
    """What to write and how to run (the ``vidda infer`` flags)."""

    out_dir: Path
    save: tuple[str, ...] = DEFAULT_SAVE  # subset of SAVE_CHOICES
    overlay_video: bool = False
    temporal: bool = True
    batch_size: int = 1
    max_frames: int | None = None
    stride_frames: int = 1
    pair_gap: int = 1  # ACCEL: input frames between frame t and the frame it is paired with
    resize: tuple[int, int] | None = None  # keep-ratio (W, H) model input target; None: native
    flow_preset: str = "medium"  # DIS preset for ACCEL and temporal flows
    overwrite: bool = False  # recompute frames whose outputs exist
    progress: bool = True

    def check(self) -> None:
        bad = [s for s in self.save if s not in SAVE_CHOICES]
        if bad:
            raise UserError(f"--save: unknown output(s) {bad}; choose from {list(SAVE_CHOICES)}")
        for name in ("batch_size", "stride_frames", "max_frames", "pair_gap"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


@dataclass
class _Job:
    """One selected frame on its way through the pipeline."""

    frame: Frame
    pred: np.ndarray | None = None  # uint8 [H, W] trainIds at the native size
    skipped: bool = False
    small: np.ndarray | None = None  # uint8 [h, w, 3] at the model size
    prev_small: np.ndarray | None = None  # ACCEL: frame t−1 at the model size
    flow: tuple[np.ndarray, np.ndarray] | None = None  # ACCEL: flow [h, w, 2], valid [h, w]


@dataclass
class _Totals:
    processed: int = 0
    skipped: int = 0
    frames: int = 0
    shares: np.ndarray = field(default_factory=lambda: np.zeros(0))


class _Pipeline:
    """State of one run; :func:`run_infer` is its public face."""

    def __init__(self, segmenter: Segmenter, source: FrameSource, opts: InferOptions,
                 num_classes: int) -> None:  # fmt: skip
        self.seg, self.source, self.opts, self.k = segmenter, source, opts, num_classes
        self.files = PredictionFiles(opts.out_dir, opts.save)
        self.native: Size | None = None
        self.small_size: Size | None = None
        self.queue: list[_Job] = []
        self.pending: deque[Future] = deque()
        self.sink = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidda-infer-out")
        self.accel_flow = DISEstimator(opts.flow_preset)  # one per thread: cv2 objects are not
        self.temporal_flow = DISEstimator(opts.flow_preset)  # shared between threads
        self.tc = TemporalConsistency(num_classes) if opts.temporal else None
        self.areas = AreasTable(opts.out_dir / "areas.csv", num_classes) \
            if "areas" in opts.save else None  # fmt: skip
        fps = (source.fps or IMAGE_SEQUENCE_FPS) / opts.stride_frames
        self.video = OverlayVideo(opts.out_dir, fps) if opts.overlay_video else None
        self.totals = _Totals(shares=np.zeros(num_classes))
        self.prev_out: tuple[int, np.ndarray, np.ndarray] | None = None  # index, small, pred
        self.last_small: tuple[int, np.ndarray] | None = None  # index, frame at the model size
        self.bar: tqdm | None = None

    # ------------------------------------------------------------------ main thread

    def selected(self) -> Iterator[tuple[Frame, Frame | None]]:
        """(frame, earlier input frame or None) for every frame the options select: the frame
        ``pair_gap`` input frames back (near the start, the first input frame)."""
        earlier: deque[Frame] = deque(maxlen=self.opts.pair_gap)
        n, limit = 0, self.opts.max_frames
        for frame in self.source:
            if frame.index % self.opts.stride_frames == 0:
                yield frame, (earlier[0] if earlier else None)
                n += 1
                if limit is not None and n >= limit:
                    return  # before decoding another frame
            earlier.append(frame)

    def _load(self, frame: Frame) -> np.ndarray:
        """``frame`` at the model size (fixing the sizes on the first frame read)."""
        native = frame.rgb.shape[:2]
        if self.native is None:
            self.native, self.small_size = native, model_size(native, self.opts.resize)
        elif native != self.native:
            raise InputError(f"{frame.path} (frame {frame.index}) is {native[1]}x{native[0]}, the "
                             f"input's first frame {self.native[1]}x{self.native[0]}")
        if self.last_small is None or self.last_small[0] != frame.index:
            self.last_small = (frame.index, resize_frame(frame.rgb, self.small_size))
        return self.last_small[1]

    def add(self, frame: Frame, prev: Frame | None) -> None:
        """Queue one selected frame; runs the model when a batch is full."""
        job = _Job(frame)
        if not self.opts.overwrite and self.files.complete(frame.name):
            job.pred = self.files.read_back(frame.name)
            job.skipped = job.pred is not None
        if job.skipped and (self.video is not None or self.tc is not None):
            job.small = self._load(frame)
            if job.pred.shape != self.native:  # an output of another input: recompute
                job.pred, job.skipped = None, False
        if not job.skipped:
            if self.seg.two_frame and prev is not None:
                job.prev_small = self._load(prev)  # first: frame t stays cached for the next pair
            job.small = self._load(frame)
            if self.seg.two_frame:
                self._pair(job, prev)
        self.queue.append(job)
        waiting = sum(not j.skipped for j in self.queue)
        if waiting == 0 or waiting >= self.opts.batch_size:
            self.flush()

    def _pair(self, job: _Job, prev: Frame | None) -> None:
        """ACCEL input: frame t−1 and the flow t → t−1 (the first frame: itself, zero flow)."""
        if prev is None:
            h, w = job.small.shape[:2]
            job.prev_small = job.small
            job.flow = (np.zeros((h, w, 2), np.float32), np.ones((h, w), bool))
        else:
            job.flow = self.accel_flow(job.small, job.prev_small)

    def flush(self) -> None:
        """Run the model on the queued frames, then hand them (in order) to the writer thread."""
        jobs, self.queue = self.queue, []
        run = [j for j in jobs if not j.skipped]
        if run:
            for job, pred in zip(run, self._predict(run), strict=True):
                job.pred = pred
            self.totals.processed += len(run)
        self.totals.skipped += len(jobs) - len(run)
        if jobs:
            self.pending.append(self.sink.submit(self._emit, jobs))
        while len(self.pending) > 2:
            self.pending.popleft().result()
        if self.bar is not None:
            self.bar.update(len(jobs))
            self.bar.set_postfix(skipped=self.totals.skipped, refresh=False)

    def _predict(self, run: list[_Job]) -> np.ndarray:
        """``uint8 [B, H, W]`` trainIds of the queued frames at the native size."""

        def stack(arrays: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(arrays))

        x = stack([j.small for j in run]).permute(0, 3, 1, 2)
        prev = flow = valid = None
        if self.seg.two_frame:
            prev = stack([j.prev_small for j in run]).permute(0, 3, 1, 2)
            flow = stack([j.flow[0] for j in run]).permute(0, 3, 1, 2)
            valid = stack([j.flow[1] for j in run])
        logits = self.seg(x, prev, flow, valid)
        if tuple(logits.shape[-2:]) != self.native:
            logits = F.interpolate(logits, self.native, mode="bilinear", align_corners=False)
        return logits.max(dim=1).indices.to(torch.uint8).cpu().numpy()  # 3x faster than argmax

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    # ------------------------------------------------------------------ writer thread

    def _emit(self, jobs: list[_Job]) -> None:
        for job in jobs:
            name, pred = job.frame.name, job.pred
            shares = class_shares(pred, self.k)
            overlay = None
            if self.video is not None or (not job.skipped and "overlay" in self.files.kinds):
                overlay = render_overlay(job.frame.rgb, pred, shares)
            if not job.skipped:
                self.files.write(name, pred, overlay)
            if self.areas is not None:
                self.areas.write(job.frame.index, name, shares)
            if self.video is not None:
                self.video.write(name, overlay)
            if self.tc is not None:
                self._temporal(job)
            self.totals.shares += shares
            self.totals.frames += 1

    def _temporal(self, job: _Job) -> None:
        """Agreement of this output frame with the previous output frame."""
        index = job.frame.index
        if self.prev_out is not None:
            prev_index, prev_small, prev_pred = self.prev_out
            if job.flow is not None and prev_index == index - self.opts.pair_gap:
                flow, valid = job.flow
            else:
                flow, valid = self.temporal_flow(job.small, prev_small)
            flow, valid = resize_flow(flow, valid, self.native)
            self.tc.update(torch.from_numpy(job.pred), torch.from_numpy(prev_pred),
                           torch.from_numpy(flow).permute(2, 0, 1), torch.from_numpy(valid))
        self.prev_out = (index, job.small, job.pred)

    def close(self) -> None:
        self.sink.shutdown(wait=True)
        if self.areas is not None:
            self.areas.close()
        if self.video is not None:
            self.video.close()


def _expected_frames(source: FrameSource, opts: InferOptions) -> int | None:
    n = len(source)
    if n <= 0:
        return None
    n = math.ceil(n / opts.stride_frames)
    return min(n, opts.max_frames) if opts.max_frames else n


def run_infer(
    segmenter: Segmenter,
    source: FrameSource,
    opts: InferOptions,
    num_classes: int = NUM_CLASSES,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment ``source`` with ``segmenter`` into ``opts.out_dir``; returns the summary.

    ``meta`` (e.g. checkpoint, model description) is copied into ``summary.json``. The summary
    holds ``frames`` (outputs in this run's selection), ``processed`` (run through the model),
    ``skipped`` (resumed), ``seconds``, ``fps`` (processed frames per second of wall time),
    ``temporal_consistency`` (see :class:`vidda.temporal.TemporalConsistency`) and
    ``class_share`` (mean pixel share of each class over the frames).
    """
    opts.check()
    if "labelid" in opts.save and num_classes != NUM_CLASSES:
        raise UserError(f"labelid output needs a {NUM_CLASSES}-class model, this one has "
                        f"{num_classes} classes")  # fmt: skip
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    pipe = _Pipeline(segmenter, source, opts, num_classes)
    error: InputError | None = None
    start = time.perf_counter()
    with tqdm(total=_expected_frames(source, opts), unit="frame", desc="infer",
              disable=not opts.progress, dynamic_ncols=True) as bar:  # fmt: skip
        pipe.bar = bar
        try:
            try:
                for frame, prev in pipe.selected():
                    pipe.add(frame, prev)
            except InputError as err:
                error = err
            pipe.flush()
            pipe.drain()
        finally:
            pipe.close()
    seconds = time.perf_counter() - start
    summary = _summary(pipe, source, opts, seconds, meta or {}, error)
    write_json(opts.out_dir / "summary.json", summary)
    if error is not None:
        raise error
    return summary


def _summary(pipe: _Pipeline, source: FrameSource, opts: InferOptions, seconds: float,
             meta: dict[str, Any], error: InputError | None) -> dict[str, Any]:  # fmt: skip
    t = pipe.totals
    names = class_names(pipe.k)
    shares = t.shares / max(t.frames, 1)
    outputs = [*opts.save] + (["overlay_video"] if opts.overlay_video else [])
    tc = None
    if pipe.tc is not None:
        tc = to_json(pipe.tc.compute())
        tc["iou"] = dict(zip(names, tc["iou"], strict=True))
        tc["flow"] = f"DIS ({opts.flow_preset}) between consecutive output frames"
    return to_json({
        **meta,
        "input": str(source.path),
        "input_kind": source.kind,
        "complete": error is None,
        **({"error": str(error)} if error else {}),
        "frames": t.frames,
        "processed": t.processed,
        "skipped": t.skipped,
        "seconds": round(seconds, 3),
        "fps": round(t.processed / seconds, 3) if seconds > 0 else None,
        "frame_size": list(pipe.native) if pipe.native else None,
        "model_size": list(pipe.small_size) if pipe.small_size else None,
        "stride_frames": opts.stride_frames,
        "batch_size": opts.batch_size,
        "outputs": outputs,
        "overlay_video": str(pipe.video.path) if pipe.video and pipe.video.path else None,
        "temporal_consistency": tc,
        "class_share": {n: round(float(s), 6) for n, s in zip(names, shares, strict=True)},
    })  # fmt: skip
