"""Appearance of the synthetic driving world: per-domain styles and the shading of a render.

The source style is clean, like a simulator: flat per-class colours, Lambertian shading, a blue
sky, light haze. The target style is the "real" camera on an overcast day, a shift of the kind
sim-to-real adaptation meets: every class keeps its overall appearance (grey road, green
vegetation, pale sky) but its colour moves moderately; the light comes from the other side and is
softer, the sky is paler; world-anchored procedural textures, more haze, a warm colour cast,
gamma, vignetting, blur and sensor noise are added. A network trained on the source alone keeps
roughly half of its source accuracy there, and self-training can recover much of the rest.
``style_for(domain, shift)`` interpolates between the two; ``shift = 0`` gives exactly the
source style.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

from vidda.classes import NUM_CLASSES
from vidda.data.datasets._synth_scene import (
    BUILDING,
    CAR,
    FENCE,
    HIT_GROUND,
    HIT_SKY,
    LIGHT,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    TERRAIN,
    VEGETATION,
    WALL,
    Hits,
    Scene,
)

DOMAINS: tuple[str, ...] = ("source", "target")


@dataclass(frozen=True)
class Style:
    """Appearance parameters; colours are R,G,B in [0, 1]."""

    base: np.ndarray  # [19, 3] colour of each trainId
    jitter: np.ndarray  # [19] how far an object's colour may stray from its class colour
    sky_horizon: np.ndarray  # [3]
    sky_zenith: np.ndarray  # [3]
    window: np.ndarray  # [3] window panes on buildings
    marking: np.ndarray  # [3] lane markings
    sun: np.ndarray  # [3] direction towards the light (world axes, need not be unit length)
    ambient: float  # fraction of light that reaches faces turned away from the sun
    fog: np.ndarray  # [3] fog colour
    fog_density: float  # per metre
    gain: np.ndarray  # [3] per-channel colour cast
    gamma: float  # output = input ** gamma
    vignette: float  # brightness loss in the corners
    blur: float  # Gaussian sigma in pixels
    noise: float  # sensor noise standard deviation (in [0, 1] units)
    texture: float  # strength of the procedural surface textures

    def lerp(self, other: Style, s: float) -> Style:
        """The style ``s`` of the way from ``self`` to ``other`` (s = 0 gives ``self``)."""
        kw = {}
        for fld in fields(self):
            a, b = getattr(self, fld.name), getattr(other, fld.name)
            kw[fld.name] = a + s * (np.asarray(b) - np.asarray(a)) if s else a
        return Style(**kw)


def _palette(entries: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """[19, 3] colour table from {trainId: colour}; unlisted classes are grey."""
    out = np.full((NUM_CLASSES, 3), 0.5)
    for k, rgb in entries.items():
        out[k] = rgb
    return out


def _amounts(entries: dict[int, float], default: float = 0.0) -> np.ndarray:
    """[19] per-class table from {trainId: value}."""
    out = np.full(NUM_CLASSES, default)
    for k, a in entries.items():
        out[k] = a
    return out


_JITTER = _amounts(
    {BUILDING: 0.12, WALL: 0.05, FENCE: 0.06, POLE: 0.03, SIGN: 0.1, VEGETATION: 0.06,
     PERSON: 0.25, CAR: 0.35, LIGHT: 0.03},
)  # fmt: skip

_SOURCE_COLOURS = {
    ROAD: (0.33, 0.33, 0.35), SIDEWALK: (0.62, 0.60, 0.57), BUILDING: (0.62, 0.55, 0.47),
    WALL: (0.58, 0.56, 0.50), FENCE: (0.50, 0.42, 0.32), POLE: (0.50, 0.52, 0.55),
    LIGHT: (0.20, 0.20, 0.18), SIGN: (0.15, 0.35, 0.80), VEGETATION: (0.25, 0.48, 0.16),
    TERRAIN: (0.50, 0.58, 0.30), PERSON: (0.45, 0.32, 0.30), CAR: (0.50, 0.45, 0.45),
}  # fmt: skip

SOURCE_STYLE = Style(
    base=_palette(_SOURCE_COLOURS),
    jitter=_JITTER,
    sky_horizon=np.array([0.78, 0.86, 0.95]),
    sky_zenith=np.array([0.38, 0.58, 0.90]),
    window=np.array([0.22, 0.27, 0.33]),
    marking=np.array([0.92, 0.92, 0.90]),
    sun=np.array([0.45, 0.8, -0.4]),
    ambient=0.45,
    fog=np.array([0.80, 0.85, 0.92]),
    fog_density=1.0 / 400.0,
    gain=np.ones(3),
    gamma=1.0,
    vignette=0.0,
    blur=0.0,
    noise=0.0,
    texture=0.0,
)

_TARGET_COLOURS = {
    ROAD: (0.38, 0.36, 0.34), SIDEWALK: (0.56, 0.54, 0.52), BUILDING: (0.56, 0.52, 0.50),
    WALL: (0.60, 0.58, 0.54), FENCE: (0.44, 0.40, 0.35), POLE: (0.42, 0.42, 0.44),
    LIGHT: (0.18, 0.18, 0.18), SIGN: (0.20, 0.40, 0.72), VEGETATION: (0.30, 0.42, 0.14),
    TERRAIN: (0.52, 0.50, 0.30), PERSON: (0.40, 0.34, 0.34), CAR: (0.46, 0.44, 0.46),
}  # fmt: skip

TARGET_STYLE = Style(
    base=_palette(_TARGET_COLOURS),
    jitter=_JITTER,
    sky_horizon=np.array([0.82, 0.84, 0.86]),
    sky_zenith=np.array([0.50, 0.60, 0.80]),
    window=np.array([0.30, 0.32, 0.34]),
    marking=np.array([0.88, 0.86, 0.78]),
    sun=np.array([-0.5, 0.7, -0.3]),
    ambient=0.55,
    fog=np.array([0.78, 0.78, 0.78]),
    fog_density=1.0 / 220.0,
    gain=np.array([0.98, 0.92, 0.84]),
    gamma=1.15,
    vignette=0.25,
    blur=0.6,
    noise=0.02,
    texture=0.25,
)

# procedural texture: spatial frequency (1/m) and relative strength per class
_TEX_FREQ = _amounts(
    {ROAD: 3.0, SIDEWALK: 1.5, BUILDING: 0.8, WALL: 2.0, FENCE: 4.0, POLE: 4.0, VEGETATION: 2.5,
     TERRAIN: 2.0, PERSON: 3.0, CAR: 1.0, SIGN: 2.0, LIGHT: 2.0}, default=1.0,
)  # fmt: skip
_TEX_AMP = _amounts(
    {ROAD: 0.6, SIDEWALK: 0.5, BUILDING: 0.7, VEGETATION: 1.3, TERRAIN: 1.0, CAR: 0.3,
     PERSON: 0.5}, default=0.5,
)  # fmt: skip


def style_for(domain: str, shift: float) -> Style:
    """The style of ``domain`` ("source" or "target") at domain-shift strength ``shift``."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {list(DOMAINS)}")
    if domain == "source" or shift == 0:
        return SOURCE_STYLE
    return SOURCE_STYLE.lerp(TARGET_STYLE, float(shift))


_LATTICE = 256
# value-noise lattice values; the extra row/column repeat the first so that i + 1 needs no wrap
_NOISE_TABLE = np.random.default_rng(0x5EED).random((_LATTICE, _LATTICE))
_NOISE_TABLE = np.pad(_NOISE_TABLE, ((0, 1), (0, 1)), mode="wrap").ravel()


def value_noise(a: np.ndarray, b: np.ndarray, salt: int = 0) -> np.ndarray:
    """Smooth 2-D value noise in [0, 1] at coordinates ``a``, ``b`` (same shape; lattice step 1).

    The pattern repeats every 256 lattice steps; ``salt`` selects a different offset into it.
    """
    a = a + 71.3 * salt
    b = b + 37.9 * salt
    ia, ib = np.floor(a), np.floor(b)
    fa, fb = a - ia, b - ib
    wa, wb = fa * fa * (3.0 - 2.0 * fa), fb * fb * (3.0 - 2.0 * fb)
    stride = _LATTICE + 1
    idx = (ia.astype(np.int64) & (_LATTICE - 1)) * stride + (ib.astype(np.int64) & (_LATTICE - 1))
    t = _NOISE_TABLE
    near = t[idx] + (t[idx + stride] - t[idx]) * wa
    far = t[idx + 1] + (t[idx + stride + 1] - t[idx + 1]) * wa
    return near + (far - near) * wb


def _frac(x: np.ndarray) -> np.ndarray:
    """Fractional part (in [0, 1), also for negative ``x``)."""
    return x - np.floor(x)


def _face_coords(anchor: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-plane coordinates [H, W] of each hit on its axis-aligned face.

    Args:
        anchor: [H, W, 3] hit points in the hit object's own frame.
        axis: [H, W] normal axis of the hit face.

    x-faces use (z, y), horizontal faces (x, z) and z-faces (x, y); the face's own plane offset is
    mixed in so that parallel faces do not share a pattern.
    """
    x, y, z = anchor[..., 0], anchor[..., 1], anchor[..., 2]
    a = np.where(axis == 0, z + 3.1 * x, x + np.where(axis == 1, 1.7 * y, 2.3 * z))
    b = np.where(axis == 1, z, y)
    return a, b


class Shader:
    """Colours the frames of one clip in one style.

    Per-box colours and everything that depends only on the pixel grid (ray lengths, sky,
    vignetting) are computed once: the camera only translates, so the sky is the same in every
    frame. Colours are looked up in one table whose rows are: every box's colour, every class's
    colour, the lane-marking colour, every box's window colour.
    """

    def __init__(self, scene: Scene, style: Style, height: int, width: int) -> None:
        self.scene = scene
        self.style = style
        n = len(scene.label)
        self.n_boxes = n
        box_col = style.base[scene.label] + style.jitter[scene.label][:, None] * scene.tint
        window = style.window * (1.0 + 0.08 * scene.tint[:, 2:3])
        table = np.concatenate([box_col, style.base, style.marking[None], window])
        self.table = (table * style.gain).astype(np.float32)
        self.fog = (style.fog * style.gain).astype(np.float32)
        ray = scene.pixel_rays(height, width)[2]
        self.ray_len = np.linalg.norm(ray, axis=-1)  # [H, W]
        self.sky = (_sky(ray, style) * style.gain).astype(np.float32)  # [H, W, 3]
        self.sun = style.sun / np.linalg.norm(style.sun)
        # window layout of each (building) box
        self.spacing = 2.6 + 0.8 * (scene.tint[:, 0] + 1.0)
        self.floor = 3.0 + 0.3 * (scene.tint[:, 1] + 1.0)
        self.vignette = None
        if style.vignette:
            yy = (np.arange(height) - (height - 1) / 2) / (height / 2)
            xx = (np.arange(width) - (width - 1) / 2) / (width / 2)
            r2 = (xx[None, :] ** 2 + yy[:, None] ** 2) / 2.0
            self.vignette = (1.0 - style.vignette * r2)[..., None].astype(np.float32)

    def __call__(self, hits: Hits, t: int, rng: np.random.Generator) -> np.ndarray:
        """Render the colour image of frame ``t`` from its ``hits``.

        Args:
            rng: source of the sensor noise (drawn only when ``style.noise > 0``).
        Returns:
            uint8 [H, W, 3] R,G,B image.
        """
        style, n = self.style, self.n_boxes
        box, label = hits.box, hits.label
        solid = box >= 0
        row = np.where(solid, box, n + label.astype(np.int32))
        row = np.where(self._markings(hits), n + NUM_CLASSES, row)
        row = np.where(self._windows(hits), n + NUM_CLASSES + 1 + box, row)
        col = self.table[row]

        light = np.clip(self.sun[hits.axis] * hits.facing, 0.0, None)
        light = style.ambient + (1.0 - style.ambient) * light
        if style.texture > 0:
            light = light * self._texture(hits, t)
        sky = box == HIT_SKY
        haze = 1.0 - np.exp(-style.fog_density * np.where(sky, 0.0, hits.depth) * self.ray_len)
        col = col * (light * (1.0 - haze)).astype(np.float32)[..., None]
        col += self.fog * haze.astype(np.float32)[..., None]
        col = np.where(sky[..., None], self.sky, col)
        return self._camera(col, rng)

    def _markings(self, hits: Hits) -> np.ndarray:
        """bool [H, W]: dashed centre line, lane dividers and edge lines on the road."""
        scene = self.scene
        ax, z = np.abs(hits.point[..., 0]), hits.point[..., 2]
        mark = (ax < 0.08) & (_frac(z / 6.0) < 0.5)
        mark |= np.abs(ax - (scene.road_half - 0.25)) < 0.08
        if scene.lanes > 1:
            mark |= (np.abs(ax - scene.road_half / 2) < 0.07) & (_frac(z / 9.0) < 0.33)
        return mark & (hits.box == HIT_GROUND) & (hits.label == ROAD)

    def _windows(self, hits: Hits) -> np.ndarray:
        """bool [H, W]: window panes on the vertical faces of (static) buildings."""
        scene = self.scene
        wall = (hits.label == BUILDING) & (hits.box >= 0) & (hits.axis != 1)
        if not wall.any():
            return wall
        obj = np.maximum(hits.box, 0)
        p = hits.point
        along = np.where(hits.axis == 0, p[..., 2] - scene.lo[obj, 2], p[..., 0] - scene.lo[obj, 0])
        y = p[..., 1]
        across = _frac(along / self.spacing[obj])
        up = _frac(y / self.floor[obj])
        pane = wall & (across > 0.25) & (across < 0.75) & (up > 0.35) & (up < 0.8)
        return pane & (y > 2.5) & (y < scene.hi[obj, 1] - 1.0)

    def _texture(self, hits: Hits, t: int) -> np.ndarray:
        """float64 [H, W] brightness factor: world-anchored value noise and sidewalk tiles."""
        style, label = self.style, hits.label
        anchor = hits.point
        if hits.moving.any():
            # texture coordinates ride along with moving objects
            anchor = anchor.copy()
            anchor[hits.moving] -= t * self.scene.vel[hits.box[hits.moving]]
        a, b = _face_coords(anchor, hits.axis)
        freq = _TEX_FREQ[label]
        a, b = a * freq, b * freq
        noise = 0.65 * value_noise(a, b, 1) + 0.35 * value_noise(2.7 * a + 17.0, 2.7 * b, 2)
        mod = 1.0 + style.texture * _TEX_AMP[label] * (2.0 * noise - 1.0)
        x, z = anchor[..., 0], anchor[..., 2]
        joint = (label == SIDEWALK) & ((_frac(x / 0.8) < 0.07) | (_frac(z / 0.8) < 0.07))
        return np.where(joint, mod * (1.0 - 0.8 * style.texture), mod)

    def _camera(self, col: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Camera effects (vignetting, gamma, blur, noise) and 8-bit quantisation of [H, W, 3]."""
        style = self.style
        col = np.clip(col, 0.0, 1.0)
        if self.vignette is not None:
            col *= self.vignette
        if style.gamma != 1.0:
            col = cv2.pow(col, float(style.gamma))
        if style.blur > 0:
            col = cv2.GaussianBlur(col, (0, 0), float(style.blur), borderType=cv2.BORDER_REFLECT)
        if style.noise > 0:
            # luminance noise: one draw per pixel, shared by the channels
            col += (
                np.float32(style.noise)
                * rng.standard_normal(col.shape[:2], dtype=np.float32)[..., None]
            )
        return np.clip(np.rint(col * np.float32(255.0)), 0, 255).astype(np.uint8)


def _sky(ray: np.ndarray, style: Style) -> np.ndarray:
    """Sky colours [..., 3] for ray directions [..., 3]: a gradient plus (with texture) clouds."""
    d = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    up = np.clip(d[..., 1:2] / 0.5, 0.0, 1.0) ** 0.7
    col = style.sky_horizon * (1.0 - up) + style.sky_zenith * up
    if style.texture > 0:
        # clouds on a plane above the camera, so they stay put under camera translation
        height = np.maximum(d[..., 1], 0.02)
        cloud = value_noise(3.0 * d[..., 0] / height, 3.0 * d[..., 2] / height, 3)
        cover = np.clip((cloud - 0.45) * 3.0, 0.0, 1.0)[..., None] * min(1.0, 2.0 * style.texture)
        col = col * (1.0 - cover) + style.fog * cover
    return col
