"""Optical-flow estimators: OpenCV DIS (default, CPU) and torchvision RAFT (optional extra).

Every estimator computes the *backward* flow of the project's convention: called as
``estimator(frame_t, frame_prev)`` it returns, for every pixel p of ``frame_t``, the displacement
f(p) such that the same scene point is found at p + f(p) in ``frame_prev`` (frame t−k).

Estimators are plain picklable objects holding only their settings; the heavy part (the OpenCV
algorithm object, the RAFT network) is created lazily on first use in each process, so an
estimator can be built in a parent process and sent to worker processes, or built from a spec
inside each worker (see :func:`build_estimator`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from vidda.errors import UserError

__all__ = [
    "DISEstimator",
    "FlowEstimator",
    "RAFTEstimator",
    "build_estimator",
    "estimator_from_spec",
]


@runtime_checkable
class FlowEstimator(Protocol):
    """Computes the backward flow from frame t to frame t−k."""

    def __call__(
        self, frame_t: np.ndarray, frame_prev: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Estimate the flow.

        Args:
            frame_t: uint8 [H, W, 3] RGB, the later frame (the flow lives on its pixel grid).
            frame_prev: uint8 [H, W, 3] RGB, the earlier frame t−k.

        Returns:
            flow: float32 [H, W, 2] (u, v) in pixels; pixel p of ``frame_t`` is at p + flow[p]
                in ``frame_prev``.
            valid: bool [H, W]; False where the estimate is not trusted.
        """
        ...


def _check_pair(frame_t: np.ndarray, frame_prev: np.ndarray) -> None:
    for name, frame in (("frame_t", frame_t), ("frame_prev", frame_prev)):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"{name} must be uint8 [H, W, 3] RGB, got {frame.dtype} {list(frame.shape)}"
            )
    if frame_t.shape != frame_prev.shape:
        raise ValueError(
            f"frames differ in size: frame_t {list(frame_t.shape)}, "
            f"frame_prev {list(frame_prev.shape)}"
        )


def _sample_bilinear(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample ``field`` [H, W, C] at float coordinates ``x``, ``y`` [H, W]; edges are clamped."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.float32)
    return cv2.remap(field, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def forward_backward_valid(
    backward: np.ndarray,
    forward: np.ndarray,
    threshold: float = 1.0,
    relative: float = 0.05,
) -> np.ndarray:
    """Forward-backward consistency of a backward flow.

    A pixel p of frame t is kept when its target q = p + b(p) lies inside frame t−k and the
    forward flow read there leads back to p:
    |b(p) + f(q)| <= threshold + relative · (|b(p)| + |f(q)|).

    Args:
        backward: float32 [H, W, 2], flow t → t−k on frame t's grid.
        forward: float32 [H, W, 2], flow t−k → t on frame t−k's grid.
        threshold: absolute tolerance in pixels.
        relative: tolerance growing with the motion's magnitude.

    Returns:
        bool [H, W], True where consistent (occluded and out-of-frame pixels are False).
    """
    h, w = backward.shape[:2]
    bu, bv = backward[..., 0], backward[..., 1]
    qx = bu + np.arange(w, dtype=np.float32)[None, :]
    qy = bv + np.arange(h, dtype=np.float32)[:, None]
    inside = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
    fwd_at_q = _sample_bilinear(forward, qx, qy)
    fu, fv = fwd_at_q[..., 0], fwd_at_q[..., 1]
    mismatch = cv2.magnitude(bu + fu, bv + fv)
    scale = cv2.magnitude(bu, bv) + cv2.magnitude(fu, fv)
    return inside & (mismatch <= threshold + relative * scale)


DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class DISEstimator:
    """OpenCV Dense Inverse Search (Kroeger et al., ECCV 2016) on greyscale frames.

    Deterministic for a given input. The OpenCV object is created on first use in each process
    and is never pickled; it runs on ``cv2.getNumThreads()`` threads (a worker pool sets this).

    Args:
        preset: ``"medium"`` (default, most accurate), ``"fast"`` or ``"ultrafast"``.
        fb_check: also compute the forward flow and mark pixels invalid whose forward-backward
            round trip misses by more than ``fb_threshold + fb_relative · |motion|`` pixels or
            whose target lies outside frame t−k. Costs 2–3× the plain estimate.
        fb_threshold: absolute tolerance of the check, pixels.
        fb_relative: relative tolerance of the check.
    """

    def __init__(
        self,
        preset: str = "medium",
        fb_check: bool = False,
        fb_threshold: float = 1.0,
        fb_relative: float = 0.05,
    ) -> None:
        if preset not in DIS_PRESETS:
            raise UserError(f"unknown DIS preset {preset!r}; expected one of {list(DIS_PRESETS)}")
        if fb_threshold < 0 or fb_relative < 0:
            raise UserError("fb_threshold and fb_relative must be >= 0")
        self.preset = preset
        self.fb_check = bool(fb_check)
        self.fb_threshold = float(fb_threshold)
        self.fb_relative = float(fb_relative)
        self._dis: Any = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return (
            f"DISEstimator(preset={self.preset!r}, fb_check={self.fb_check}, "
            f"fb_threshold={self.fb_threshold}, fb_relative={self.fb_relative})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_dis"] = None  # cv2 objects are not picklable; rebuilt lazily
        state["_pid"] = None
        return state

    def _algorithm(self) -> Any:
        if self._dis is None or self._pid != os.getpid():
            self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])
            self._pid = os.getpid()
        return self._dis

    def _calc(self, grey_from: np.ndarray, grey_to: np.ndarray) -> np.ndarray:
        """Flow f on ``grey_from``'s grid with grey_from(p) ≈ grey_to(p + f(p)); [H, W, 2]."""
        return self._algorithm().calc(grey_from, grey_to, None)

    def __call__(
        self, frame_t: np.ndarray, frame_prev: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backward flow t → t−k; see :class:`FlowEstimator`. Inputs uint8 [H, W, 3] RGB."""
        _check_pair(frame_t, frame_prev)
        grey_t = cv2.cvtColor(frame_t, cv2.COLOR_RGB2GRAY)
        grey_prev = cv2.cvtColor(frame_prev, cv2.COLOR_RGB2GRAY)
        # OpenCV: calc(I0, I1) gives I0(p) ≈ I1(p + flow) — with I0 = frame t this is backward.
        flow = np.array(self._calc(grey_t, grey_prev), dtype=np.float32)
        valid = np.isfinite(flow).all(axis=2)
        flow[~valid] = 0.0
        if self.fb_check:
            forward = self._calc(grey_prev, grey_t)
            valid &= forward_backward_valid(flow, forward, self.fb_threshold, self.fb_relative)
        return flow, valid


RAFT_EXTRA_HINT = "install it with: pip install 'vidda[raft]'"


def _import_raft_builders() -> dict[str, Any]:
    """torchvision's RAFT constructors; a clear UserError when torchvision is not installed."""
    try:
        from torchvision.models.optical_flow import raft_large, raft_small
    except ImportError as err:
        raise UserError(
            f"the RAFT flow estimator needs torchvision, which could not be imported ({err}); "
            f"{RAFT_EXTRA_HINT}"
        ) from err
    return {"large": raft_large, "small": raft_small}


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    """Accept a bare state dict or one nested under ``state_dict``/``model``; drop ``module.``."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise UserError(f"{path}: expected a RAFT state dict, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


class RAFTEstimator:
    """torchvision RAFT (Teed & Deng, ECCV 2020) with weights from a local file; never downloads.

    The file must hold a state dict of torchvision's ``raft_large`` or ``raft_small`` (for
    example ``torch.save(raft_large(weights=...).state_dict(), path)``), optionally nested under
    ``state_dict``/``model``. Frames are padded (replicate) to multiples of 8, the flow of the
    last refinement iteration is cropped back and returned in pixels; every finite vector is
    valid. With several worker processes each one loads its own copy of the network.

    Args:
        weights_path: local ``.pth`` file.
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        iters: number of recurrent refinement iterations (``num_flow_updates``).
        variant: ``"large"``, ``"small"`` or ``"auto"`` (whichever matches the file).
    """

    def __init__(
        self,
        weights_path: str | os.PathLike,
        device: str = "cpu",
        iters: int = 12,
        variant: str = "auto",
    ) -> None:
        if variant not in ("auto", "large", "small"):
            raise UserError(f"unknown RAFT variant {variant!r}; expected auto, large or small")
        if int(iters) < 1:
            raise UserError(f"RAFT iters must be >= 1, got {iters}")
        self.weights_path = Path(weights_path).expanduser()
        if not self.weights_path.is_file():
            raise UserError(f"{self.weights_path}: RAFT weights file not found")
        _import_raft_builders()  # fail here, not in a worker, when torchvision is missing
        self.device = str(device)
        self.iters = int(iters)
        self.variant = variant
        self._model: Any = None

    def __repr__(self) -> str:
        return (
            f"RAFTEstimator(weights_path={str(self.weights_path)!r}, device={self.device!r}, "
            f"iters={self.iters}, variant={self.variant!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None  # each process loads its own network
        return state

    def _network(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> Any:
        import torch

        builders = _import_raft_builders()
        try:
            raw = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        except Exception as err:  # unpickling errors come in many types
            raise UserError(f"{self.weights_path}: cannot read RAFT weights ({err})") from err
        state = _unwrap_state_dict(raw, self.weights_path)
        names = ["large", "small"] if self.variant == "auto" else [self.variant]
        errors = []
        for name in names:
            model = builders[name](weights=None, progress=False)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as err:
                errors.append(f"raft_{name}: {str(err).splitlines()[0]}")
                continue
            return model.to(self.device).eval()
        raise UserError(
            f"{self.weights_path}: not a torchvision RAFT state dict ({'; '.join(errors)})"
        )

    def _to_batch(self, frame: np.ndarray) -> Any:
        """uint8 [H, W, 3] → float [1, 3, H, W] in [-1, 1] on the device (torchvision's norm)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]
        return x.to(self.device, torch.float32) / 127.5 - 1.0

    def __call__(
        self, frame_t: np.ndarray, frame_prev: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backward flow t → t−k; see :class:`FlowEstimator`. Inputs uint8 [H, W, 3] RGB."""
        import torch
        import torch.nn.functional as F

        _check_pair(frame_t, frame_prev)
        h, w = frame_t.shape[:2]
        pad_h, pad_w = -h % 8, -w % 8
        top, left = pad_h // 2, pad_w // 2
        pads = (left, pad_w - left, top, pad_h - top)
        # RAFT's flow(image1 → image2) satisfies image1(p) ≈ image2(p + flow): image1 = frame t.
        img1 = F.pad(self._to_batch(frame_t), pads, mode="replicate")
        img2 = F.pad(self._to_batch(frame_prev), pads, mode="replicate")
        with torch.inference_mode():
            predictions = self._network()(img1, img2, num_flow_updates=self.iters)
        out = predictions[-1][0, :, top : top + h, left : left + w]
        flow = out.permute(1, 2, 0).float().cpu().numpy().astype(np.float32, copy=True)
        valid = np.isfinite(flow).all(axis=2)
        flow[~valid] = 0.0
        return flow, valid


ESTIMATORS: dict[str, type] = {"dis": DISEstimator, "raft": RAFTEstimator}


def build_estimator(method: str = "dis", **kwargs: Any) -> FlowEstimator:
    """Build an estimator by name: ``"dis"`` (default) or ``"raft"``; ``kwargs`` go to its class.

    Raises:
        UserError: unknown method or arguments the method does not take.
    """
    cls = ESTIMATORS.get(str(method).lower())
    if cls is None:
        raise UserError(f"unknown flow method {method!r}; expected one of {list(ESTIMATORS)}")
    signature = inspect.signature(cls)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise UserError(
            f"flow method {method!r}: {err}; it takes {list(signature.parameters)}"
        ) from err
    return cls(**kwargs)


EstimatorSpec = str | Mapping[str, Any] | FlowEstimator


def estimator_from_spec(spec: EstimatorSpec) -> FlowEstimator:
    """Turn a spec into an estimator.

    Args:
        spec: a method name (``"dis"``), a mapping ``{"method": "dis", **kwargs}`` (method
            defaults to ``"dis"``), or an estimator object, returned unchanged.
    """
    if isinstance(spec, str):
        return build_estimator(spec)
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        return build_estimator(kwargs.pop("method", "dis"), **kwargs)
    if callable(spec):
        return spec
    raise UserError(f"flow estimator spec must be a name, a mapping or an estimator, got {spec!r}")
