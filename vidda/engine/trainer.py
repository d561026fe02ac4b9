"""The training loop: iteration-based, resumable exactly, distributed-aware.

Per iteration: set the lr (poly + warm-up), let the method run its forward/backward passes, one
optimizer step. Every ``log_every`` iterations the losses are checked (a non-finite loss stops
the run, naming the iteration and terms, before anything is saved) and logged; every
``eval_every`` the student is evaluated (both protocols; ``best.pt`` follows ``eval.best_by``);
every ``checkpoint_every`` and at the end ``latest.pt`` is written atomically.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vidda.amp import AMP_DTYPES
from vidda.classes import colorize
from vidda.config.derived import best_by, dataset_given, has_labels
from vidda.config.load import save_config
from vidda.config.plain import plain_config as _plain_config
from vidda.config.schema import Config
from vidda.config.validate import validate
from vidda.data.build import build_dataset
from vidda.data.sampling import RareClassSampler, TrainStream, train_loader
from vidda.engine import checkpoint as ckpt
from vidda.engine.distributed import DistInfo, all_reduce_mean, barrier, init_distributed, wrap
from vidda.engine.evaluator import evaluate, segmentor_predictor
from vidda.engine.init_weights import init_from_checkpoint
from vidda.engine.logger import RunLogger
from vidda.engine.optim import add_module_group, build_optimizer
from vidda.engine.selection import selection_scores
from vidda.models.build import build_segmentor
from vidda.schedule import lr_factor, set_lr
from vidda.uda.method import Method, StepContext
from vidda.uda.methods import build_method


class DivergedError(RuntimeError):
    """A loss became NaN or infinite; the message names the iteration and the loss terms."""


@dataclass
class RunOptions:
    """How to run a config: where, resuming from what, stopping when."""

    run_dir: Path
    resume: str | None = None  # None | "auto" | a checkpoint path
    stop_after: int | None = None  # end cleanly after this iteration (as if preempted)
    progress: bool = True
    num_workers: int | None = None  # overrides data.num_workers


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def step_streams(seed: int, step: int, rank: int) -> tuple[torch.Generator, np.random.Generator]:
    """The random streams of one iteration on one rank (independent of history)."""
    rng = np.random.default_rng([seed, step, rank, 7])
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    return gen, rng


class Trainer:
    """Builds everything a config describes and runs it (``run``)."""

    def __init__(self, cfg: Config, opts: RunOptions, info: DistInfo | None = None) -> None:
        validate(cfg)  # before anything is built: the same refusals as every entry point
        self.cfg, self.opts = cfg, opts
        self.info = info or init_distributed(cfg.train.device)
        self.device = self.info.device
        self.run_dir = opts.run_dir
        seed_everything(cfg.seed, cfg.deterministic)
        self.student = build_segmentor(cfg.model, compat=cfg.compat).to(self.device)
        if cfg.train.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        forward = wrap(self.student, self.info)  # its forward is forward_train
        self.method: Method = build_method(cfg, self.student, forward).to(self.device)
        if cfg.model.init_checkpoint:  # after the method: FD's copy keeps the ImageNet weights
            init_from_checkpoint(self.student, cfg.model.init_checkpoint)
        self.optimizer = build_optimizer(self.student, cfg.optim)
        disc = self.method.extra_state().get("discriminator")
        if cfg.compat.disc_in_main_optimizer and disc is not None:
            add_module_group(self.optimizer, disc, cfg.optim, "discriminator")
        self.amp_dtype = AMP_DTYPES[cfg.train.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        self.step = 0
        self.best: dict[str, Any] = {}
        self.logger = RunLogger(self.run_dir, enabled=self.info.is_main)
        torch.manual_seed(cfg.seed + self.info.rank)  # dropout / drop-path differ per rank

    # ------------------------------------------------------------------ data

    def _datasets(self):
        cfg = self.cfg
        workers = cfg.data.num_workers if self.opts.num_workers is None else self.opts.num_workers
        need_source = cfg.method.name != "target_only"
        need_target = self.method.uses_target
        # the user's videos are decoded into a frame and flow cache next to the run
        video = {"cache_dir": self.run_dir / "video_cache",
                 "progress": self.opts.progress and self.info.is_main}  # fmt: skip
        source = (build_dataset(cfg.data.source, True, cfg.compat, key="data.source", **video)
                  if need_source else None)  # fmt: skip
        target = (build_dataset(cfg.data.target, True, cfg.compat, key="data.target", **video)
                  if need_target else None)  # fmt: skip
        val = None
        if dataset_given(cfg.data.val):
            val = build_dataset(cfg.data.val, False, cfg.compat, key="data.val", **video)
        rcs = RareClassSampler(source, cfg.data.rcs) if source and cfg.data.rcs.enabled else None
        stream = TrainStream(source or target, target if source else None, cfg.seed, rcs)
        if source is None:  # target-only: the labelled target clips arrive as "source"
            stream = _Renamed(stream, {"source": "target"})
        loader = train_loader(stream, cfg.data.batch_size, workers, start_step=self.step,
                              stop_step=cfg.schedule.iters, rank=self.info.rank,
                              world_size=self.info.world_size)  # fmt: skip
        return loader, val, workers

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "config": _plain_config(self.cfg),
            "models": {"student": self.student.state_dict(),
                       **{k: m.state_dict() for k, m in self.method.extra_state().items()}},
            "optimizer": self.optimizer.state_dict(),
            "method_optimizers": {k: o.state_dict() for k, o in self.method.optimizers().items()},
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "best": self.best,
        }  # fmt: skip

    def load_state(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.student.load_state_dict(state["models"]["student"])
            for name, module in self.method.extra_state().items():
                module.load_state_dict(state["models"][name])
            self.optimizer.load_state_dict(state["optimizer"])
            for name, opt in self.method.optimizers().items():
                opt.load_state_dict(state["method_optimizers"][name])
        except (KeyError, RuntimeError, ValueError) as err:
            raise ckpt.CheckpointError(
                f"{path} does not fit this config's model/method: {str(err).splitlines()[0]}"
            ) from err
        self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.best = dict(state.get("best", {}))

    def _resume_path(self) -> Path | None:
        resume = self.opts.resume
        if resume is None:
            return None
        if resume == "auto":
            path = self.run_dir / "latest.pt"
            return path if path.is_file() else None
        return Path(resume)

    def save(self, name: str = "latest.pt") -> Path | None:
        if not self.info.is_main:
            return None
        path = self.run_dir / name
        try:
            return ckpt.save_checkpoint(self.state(), path)
        except OSError as err:
            raise ckpt.CheckpointError(
                f"could not write checkpoint {path} ({err}); the previous one is intact"
            ) from err

    # ------------------------------------------------------------------ loop

    def run(self) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_stale_temporaries(self.run_dir)  # left by a writer killed mid-save
            save_config(cfg, self.run_dir / "config.yaml")
        path = self._resume_path()
        if path is not None:
            self.load_state(ckpt.load_checkpoint(path), path)
        loader, val, workers = self._datasets()
        total = cfg.schedule.iters
        stop = min(total, self.opts.stop_after or total)
        bar = tqdm(total=stop, initial=self.step, desc="train", unit="it",
                   disable=not (self.opts.progress and info.is_main))  # fmt: skip
        window: list[tuple[int, dict[str, torch.Tensor]]] = []
        last_eval: dict[str, Any] = {}
        t0 = time.time()
        batches = iter(loader)
        while self.step < stop:
            step = self.step
            batch = _to_device(next(batches), self.device)
            visuals = self._due(step, cfg.train.image_every)
            logs, panels = self._iteration(step, batch, visuals)
            window.append((step, logs))
            self.step = step + 1
            bar.update(1)
            if self._due(step, cfg.train.log_every) or self.step == stop:
                self._flush(window, t0)
                window.clear()
                t0 = time.time()
                if panels and info.is_main:
                    self.logger.images(self.step, _panels(panels))
            if val is not None and (self._due(step, cfg.train.eval_every) or self.step == total):
                last_eval = self._evaluate(val, workers)
            if self._due(step, cfg.train.checkpoint_every) or self.step == stop:
                self._check(window)
                self.save()
                barrier(info)
        bar.close()
        self.logger.close()
        return {"step": self.step, "eval": last_eval, "best": self.best}

    def _due(self, step: int, every: int) -> bool:
        return every > 0 and (step + 1) % every == 0

    def _iteration(self, step: int, batch: dict[str, Any], visuals: bool):
        cfg = self.cfg
        sched = cfg.schedule
        factor = lr_factor(step, sched.iters, sched.power, sched.warmup_iters, sched.warmup_ratio)
        set_lr(self.optimizer, factor)
        extra = list(self.method.optimizers().values())
        for opt in (self.optimizer, *extra):
            opt.zero_grad(set_to_none=True)
        self.method.before_step(step)
        gen, rng = step_streams(cfg.seed, step, self.info.rank)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype else contextlib.nullcontext())  # fmt: skip

        def backward(loss: torch.Tensor) -> None:
            self.scaler.scale(loss).backward()

        self.method.train()
        with autocast:
            logs, panels = self.method.train_step(
                batch, StepContext(step, gen, rng, backward, visuals)
            )
        for opt in (self.optimizer, *extra):  # the method's own (e.g. D's Adam) after the main
            self.scaler.step(opt)
        self.scaler.update()
        logs = dict(logs)
        logs["lr"] = torch.tensor(self.optimizer.param_groups[0]["lr"])
        return logs, panels

    def _check(self, window: list[tuple[int, dict[str, torch.Tensor]]]) -> None:
        """Raise ``DivergedError`` at the first iteration with a non-finite loss."""
        for step, logs in window:
            values = {k: float(v) for k, v in logs.items() if k.startswith("loss")}
            if not all(math.isfinite(v) for v in values.values()):
                terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                latest = self.run_dir / "latest.pt"
                kept = f"; the last good checkpoint is {latest}" if latest.is_file() else ""
                raise DivergedError(f"non-finite loss at iteration {step + 1}: {terms}{kept}")

    def _flush(self, window: list[tuple[int, dict[str, torch.Tensor]]], t0: float) -> None:
        """Log the window's mean of every term; ``t0``: when the window's first iteration began."""
        self._check(window)
        # NaN in a non-loss term means "not measured this step" (e.g. PL accuracy on a crop
        # without labels): skipped; the losses were checked finite above
        mean = {k: float(torch.stack([v[k].float() for _, v in window if k in v]).nanmean())
                for k in window[-1][1]}  # fmt: skip
        mean = all_reduce_mean(mean, self.info)
        mean["loss"] = sum(v for k, v in mean.items() if k.startswith("loss"))
        mean["it_per_s"] = (self.step - window[0][0]) / max(time.time() - t0, 1e-9)
        self.logger.scalars(self.step, mean)

    def _evaluate(self, val, workers: int) -> dict[str, Any]:
        self.student.eval()
        predictor = segmentor_predictor(self.student, self.cfg.eval, self.cfg.data.val.offsets,
                                        self.cfg.method.frame_distance)  # fmt: skip
        cfg = self.cfg
        result = evaluate(predictor, val, cfg.eval, self.info,
                          num_workers=min(workers, 2), progress=False,
                          offsets=cfg.data.val.offsets,
                          frame_distance=cfg.method.frame_distance,
                          labelled=has_labels(cfg.data.val),
                          threshold=cfg.method.pseudo_threshold,
                          num_classes=cfg.model.num_classes)  # fmt: skip
        self.student.train()
        scores = selection_scores(result)
        self.logger.scalars(self.step, _score_names(scores), prefix="val")
        if self.info.is_main:
            self.logger.scalars(self.step, {"result": result}, prefix="eval_full")
        key = best_by(cfg)
        score = scores.get(key, float("nan"))
        best = self.best.get(key)
        if math.isfinite(score) and (best is None or score > best):
            self.best = {key: score, "step": self.step}
            if self.info.is_main:
                ckpt.save_checkpoint({"step": self.step, "config": _plain_config(self.cfg),
                                      "models": {"student": self.student.state_dict()},
                                      "eval": result}, self.run_dir / "best.pt")  # fmt: skip
        return result


class _Renamed(torch.utils.data.Dataset):
    """A stream whose items' keys are renamed (target-only training reads the target clips)."""

    def __init__(self, stream: TrainStream, names: dict[str, str]) -> None:
        self.stream, self.names = stream, names

    def __len__(self) -> int:
        return len(self.stream)

    def __getitem__(self, k: int) -> dict[str, Any]:
        return {self.names.get(key, key): v for key, v in self.stream[k].items()}


def _score_names(scores: dict[str, float]) -> dict[str, float]:
    """Log names: ``miou_<protocol>`` / ``miou_temporal`` for mIoUs (as ever), the label-free
    scores by their own names."""
    miou = ("standard", "uvda", "temporal")
    return {(f"miou_{k}" if k in miou else k): v for k, v in scores.items()}


def _to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _panels(panels: dict[str, torch.Tensor]) -> dict[str, Any]:
    out = {}
    for name, t in panels.items():
        t = t.detach().cpu()
        out[name] = colorize(t.numpy()) if t.dim() == 2 else t.permute(1, 2, 0).numpy()
    return out
