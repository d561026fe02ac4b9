"""Geometry of the synthetic driving world: scene layout, ray casting and exact backward flow.

Conventions (all float64, metres):
    World: x to the right of the road's direction of travel, y up, z forward; the ground is y = 0.
    Camera: a pinhole at ``Camera.pos(t)`` looking along +z with no rotation, so a pixel
    (u = column, v = row, pixel centres at integer coordinates) sees the world direction
    ``((u - cx) / f, (cy - v) / f, 1)``. Ray parameters are therefore z-depths.
    Time: integer frame index t; an object's box at frame t is its frame-0 box moved by ``t * vel``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vidda.classes import CLASSES

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON = (
    CLASSES.index(name)
    for name in (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person",
    )
)  # fmt: skip
CAR = CLASSES.index("car")

Part = tuple[tuple[float, float, float], tuple[float, float, float], int]
"""One box of an object: (min corner, max corner, trainId)."""

HIT_SKY = -2  # ``Hits.box`` value of a ray that hits nothing
HIT_GROUND = -1  # ``Hits.box`` value of a ray that hits the ground plane
NEAR = 0.05  # near-plane z-depth in metres; nothing closer is visible
OCCLUSION_RTOL = 1e-6  # an occluder must be this much (relatively) nearer than the point itself
OCCLUSION_BAND = 8.0  # rows per band when pairing boxes with arbitrary rays
SCENE_AHEAD = 190.0  # how far beyond the camera's last position the world is populated


@dataclass(frozen=True)
class Camera:
    """A translating pinhole camera (see the module docstring for the conventions)."""

    f: float
    cx: float
    cy: float
    pos0: np.ndarray  # float64 [3] position at frame 0
    vel: np.ndarray  # float64 [3] displacement per frame

    def pos(self, t: float) -> np.ndarray:
        """float64 [3]: camera centre at frame ``t``."""
        return self.pos0 + t * self.vel

    def directions(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ray direction x and y components (z = 1) through pixel coordinates ``u``, ``v``."""
        return _nonzero((u - self.cx) / self.f), _nonzero((self.cy - v) / self.f)


@dataclass
class Scene:
    """A clip's world: axis-aligned boxes (some moving), a ground plane and the camera path."""

    camera: Camera
    lo: np.ndarray  # float64 [B, 3] box min corners at frame 0
    hi: np.ndarray  # float64 [B, 3] box max corners at frame 0
    vel: np.ndarray  # float64 [B, 3] per-frame displacement (0 for static boxes)
    label: np.ndarray  # uint8 [B] trainId
    tint: np.ndarray  # float64 [B, 3] per-object appearance variation in [-1, 1]
    group: np.ndarray  # int32 [B] rigid object each box belongs to
    road_half: float  # the road covers |x| < road_half
    sidewalk: tuple[float, float]  # sidewalk widths on the left (x < 0) and right (x > 0)
    lanes: int  # lanes per direction
    frames: int
    _rays: dict = field(default_factory=dict, repr=False)

    def pixel_rays(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ray directions through the pixel centres: dx [W], dy [H] and (dx, dy, 1) [H, W, 3]."""
        key = (height, width)
        if key not in self._rays:
            dx, dy = self.camera.directions(
                np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
            )
            ray = np.empty((height, width, 3))
            ray[..., 0] = dx[None, :]
            ray[..., 1] = dy[:, None]
            ray[..., 2] = 1.0
            self._rays[key] = (dx, dy, ray)
        return self._rays[key]

    def boxes_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Box corners (lo [B, 3], hi [B, 3]) at frame ``t``."""
        shift = t * self.vel
        return self.lo + shift, self.hi + shift

    def ground_label(self, x: np.ndarray) -> np.ndarray:
        """uint8 trainIds [N] of ground points at world x [N]: road, then sidewalk, then terrain."""
        ax = np.abs(x)
        walk = np.where(x < 0, self.sidewalk[0], self.sidewalk[1])
        out = np.full(x.shape, TERRAIN, dtype=np.uint8)
        out[ax < self.road_half + walk] = SIDEWALK
        out[ax < self.road_half] = ROAD
        return out


@dataclass
class Hits:
    """What the ray through every pixel of one frame hits (shapes [H, W] unless noted)."""

    depth: np.ndarray  # float64 z-depth, inf for sky
    box: np.ndarray  # int32 box index, or HIT_GROUND / HIT_SKY
    label: np.ndarray  # uint8 trainId
    point: np.ndarray  # float64 [H, W, 3] world hit point (the camera centre for sky)
    axis: np.ndarray  # int8 axis (0 x, 1 y, 2 z) of the hit face's normal
    facing: np.ndarray  # float64 sign of that normal component (0 for sky)
    moving: np.ndarray  # bool: the hit box moves

    @property
    def normal(self) -> np.ndarray:
        """float64 [H, W, 3] outward unit normal of the hit face (0 for sky)."""
        return np.eye(3)[self.axis] * self.facing[..., None]


def _nonzero(a: np.ndarray) -> np.ndarray:
    """``a`` with exact zeros nudged to 1e-12 so that slab divisions stay finite."""
    return np.where(a == 0.0, 1e-12, a)


# --------------------------------------------------------------------------- scene layout


class _Builder:
    """Accumulates box groups, rejecting any whose swept volume collides with what is there."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.boxes: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, int]] = []
        self.n_groups = 0
        self._swept = np.empty((64, 2, 3))  # [capacity, lo/hi, xyz] swept volumes so far
        self._n_swept = 0

    def add(
        self,
        parts: list[Part],
        tint: np.ndarray,
        vel: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> bool:
        """Add one rigid object made of ``parts`` (lo, hi, trainId); False if it collides."""
        v = np.asarray(vel, dtype=np.float64)
        lo = np.array([p[0] for p in parts], dtype=np.float64)
        hi = np.array([p[1] for p in parts], dtype=np.float64)
        travel = v * (self.frames - 1)
        s_lo = lo.min(axis=0) + np.minimum(travel, 0.0)
        s_hi = hi.max(axis=0) + np.maximum(travel, 0.0)
        if self._collides(s_lo, s_hi):
            return False
        for (_, _, label), a, b in zip(parts, lo, hi, strict=True):
            self.boxes.append((a, b, v, label, tint, self.n_groups))
        self.reserve(s_lo, s_hi)
        self.n_groups += 1
        return True

    def reserve(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Mark a region (e.g. the camera's path) that later objects must not enter."""
        if self._n_swept == len(self._swept):
            self._swept = np.concatenate([self._swept, np.empty_like(self._swept)])
        self._swept[self._n_swept] = (lo, hi)
        self._n_swept += 1

    def _collides(self, lo: np.ndarray, hi: np.ndarray, margin: float = 0.05) -> bool:
        """Whether the box lo [3] .. hi [3] overlaps a swept volume by more than ``margin``."""
        swept = self._swept[: self._n_swept]
        overlap = (lo < swept[:, 1] - margin) & (hi > swept[:, 0] + margin)
        return bool(overlap.all(axis=1).any())


def _car_parts(
    x0: float, z0: float, length: float, width: float, rng: np.random.Generator
) -> list[Part]:
    """Body, cabin and a dark under-body block of a car whose min corner is (x0, 0, z0)."""
    top = rng.uniform(0.95, 1.15)
    roof = top + rng.uniform(0.4, 0.55)
    x1, z1 = x0 + width, z0 + length
    return [
        ((x0, 0.28, z0), (x1, top, z1), CAR),
        ((x0 + 0.1, top, z0 + 0.28 * length), (x1 - 0.1, roof, z1 - 0.12 * length), CAR),
        ((x0 + 0.12, 0.0, z0 + 0.1 * length), (x1 - 0.12, 0.28, z1 - 0.1 * length), CAR),
    ]


def _person_parts(x: float, z: float, rng: np.random.Generator) -> list[Part]:
    """Legs, torso and head of a pedestrian standing at (x, 0, z)."""
    k = rng.uniform(0.88, 1.1)
    return [
        ((x - 0.17, 0.0, z - 0.12), (x + 0.17, 0.85 * k, z + 0.12), PERSON),
        ((x - 0.23, 0.85 * k, z - 0.14), (x + 0.23, 1.48 * k, z + 0.14), PERSON),
        ((x - 0.1, 1.48 * k, z - 0.1), (x + 0.1, 1.74 * k, z + 0.1), PERSON),
    ]


def _tint(rng: np.random.Generator) -> np.ndarray:
    """float64 [3] appearance variation of one object."""
    return rng.uniform(-1.0, 1.0, 3)


def build_scene(
    rng: np.random.Generator, height: int, width: int, frames: int, dynamic: bool = True
) -> Scene:
    """Lay out a random street for a clip of ``frames`` frames rendered at ``height`` x ``width``.

    With ``dynamic=False`` every object keeps still (the layout draws the same random numbers).
    """
    speed = rng.uniform(0.5, 1.5)
    road_half = rng.uniform(3.2, 7.5)
    lanes = 1 if road_half < 5.5 else 2
    lane_w = road_half / lanes
    ego_lane = int(rng.integers(lanes))
    drift = rng.uniform(-1.0, 1.0) * min(0.04, 0.25 * lane_w / max(frames - 1, 1))
    cam_h = rng.uniform(1.3, 1.7)
    cam_x = (ego_lane + 0.5) * lane_w + rng.uniform(-0.2, 0.2)
    f = 1.2 * width / 2
    camera = Camera(
        f=f,
        cx=(width - 1) / 2,
        cy=rng.uniform(0.38, 0.46) * height - 0.5,
        pos0=np.array([cam_x, cam_h, 0.0]),
        vel=np.array([drift, 0.0, speed]),
    )
    travel = speed * (frames - 1)
    z_end = travel + SCENE_AHEAD
    sidewalk = (rng.uniform(1.5, 4.5), rng.uniform(1.5, 4.5))
    setback = tuple(0.0 if rng.random() < 0.5 else rng.uniform(2.0, 10.0) for _ in range(2))

    b = _Builder(frames)
    cam_x_end = cam_x + drift * (frames - 1)
    b.reserve(
        (min(cam_x, cam_x_end) - 1.0, 0.0, -1.5),
        (max(cam_x, cam_x_end) + 1.0, cam_h + 0.6, travel + 2.5),
    )
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        curb = road_half + sidewalk[side]
        _add_buildings(b, rng, sign, curb + setback[side], z_end)
        _add_street_furniture(b, rng, sign, road_half, sidewalk[side], setback[side], z_end)
        _add_parked_cars(b, rng, sign, road_half, z_end)
    _add_traffic(b, rng, road_half, lanes, speed, z_end, dynamic)
    _add_pedestrians(b, rng, road_half, sidewalk, travel, dynamic)

    lo, hi, vel, label, tint, group = zip(*b.boxes, strict=True)
    return Scene(
        camera=camera,
        lo=np.array(lo),
        hi=np.array(hi),
        vel=np.array(vel),
        label=np.array(label, dtype=np.uint8),
        tint=np.array(tint),
        group=np.array(group, dtype=np.int32),
        road_half=road_half,
        sidewalk=sidewalk,
        lanes=lanes,
        frames=frames,
    )


def _add_buildings(
    b: _Builder, rng: np.random.Generator, sign: float, x_line: float, z_end: float
) -> None:
    """A front row of buildings (with walls/fences in some gaps) and a taller back row."""

    def box(x_near: float, depth: float, z0: float, z1: float, y1: float, label: int) -> None:
        """A box from |x| = x_near outwards, z0..z1 along the street, y1 tall."""
        xa, xb = sign * x_near, sign * (x_near + depth)
        b.add([((min(xa, xb), 0.0, z0), (max(xa, xb), y1, z1), label)], _tint(rng))

    z = -10.0
    while z < z_end:
        if rng.random() < 0.25:
            gap = rng.uniform(4.0, 15.0)
            if rng.random() < 0.6:
                wall = rng.random() < 0.5
                y1 = rng.uniform(1.5, 3.0) if wall else rng.uniform(1.0, 2.0)
                box(x_line, 0.3, z, z + gap, y1, WALL if wall else FENCE)
            z += gap
            continue
        length = rng.uniform(8.0, 30.0)
        extra = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 1.5)
        box(x_line + extra, rng.uniform(8.0, 20.0), z, z + length, rng.uniform(6.0, 30.0), BUILDING)
        z += length
    z = -10.0
    while z < z_end + 40.0:
        length = rng.uniform(15.0, 40.0)
        box(
            x_line + rng.uniform(24.0, 34.0), 15.0, z, z + length, rng.uniform(15.0, 45.0), BUILDING
        )
        z += length + rng.uniform(0.0, 6.0)


def _add_street_furniture(
    b: _Builder,
    rng: np.random.Generator,
    sign: float,
    road_half: float,
    walk: float,
    setback: float,
    z_end: float,
) -> None:
    """Trees on the sidewalk, hedges/trees on the terrain strip, poles with signs and lights."""
    x_line = road_half + walk + setback
    p_tree = rng.uniform(0.3, 0.9)
    z = rng.uniform(-4.0, 6.0)
    while z < z_end:
        if rng.random() < p_tree:
            _add_tree(b, rng, sign * (road_half + walk * rng.uniform(0.5, 0.75)), z, x_line)
        z += rng.uniform(7.0, 16.0)
    if setback > 2.5:
        z = rng.uniform(-4.0, 6.0)
        while z < z_end:
            length = rng.uniform(4.0, 20.0)
            if rng.random() < 0.5:
                x0 = road_half + walk + rng.uniform(0.3, setback - 1.2)
                xa, xb = sign * x0, sign * (x0 + 0.9)
                y1 = rng.uniform(0.6, 1.4)
                b.add(
                    [((min(xa, xb), 0.0, z), (max(xa, xb), y1, z + length), VEGETATION)], _tint(rng)
                )
            elif rng.random() < 0.5:
                _add_tree(b, rng, sign * (x_line - setback * rng.uniform(0.3, 0.7)), z, x_line)
            z += length + rng.uniform(2.0, 10.0)
    z = rng.uniform(0.0, 20.0)
    while z < z_end:
        _add_pole(b, rng, sign, road_half + 0.35, z)
        z += rng.uniform(15.0, 40.0)


def _add_tree(b: _Builder, rng: np.random.Generator, x: float, z: float, x_line: float) -> None:
    """A trunk and a box canopy at (x, z), kept in front of the building line ``x_line``."""
    trunk_h = rng.uniform(1.8, 3.0)
    half = rng.uniform(0.9, 2.0)
    half_x = max(0.4, min(half, x_line - abs(x) - 0.1))
    top = trunk_h + rng.uniform(2.0, 4.5)
    parts = [
        ((x - 0.15, 0.0, z - 0.15), (x + 0.15, trunk_h + 0.2, z + 0.15), VEGETATION),
        ((x - half_x, trunk_h, z - half), (x + half_x, top, z + half), VEGETATION),
    ]
    b.add(parts, _tint(rng))


def _add_pole(b: _Builder, rng: np.random.Generator, sign: float, x_abs: float, z: float) -> None:
    """A pole; maybe with a sign facing oncoming view (-z), an arm over the road, a light."""
    x = sign * x_abs
    top = rng.uniform(4.5, 8.0)
    parts = [((x - 0.1, 0.0, z - 0.1), (x + 0.1, top, z + 0.1), POLE)]
    if rng.random() < 0.55:
        w, h = rng.uniform(0.5, 0.9) / 2, rng.uniform(0.5, 0.9)
        y0 = rng.uniform(2.0, 3.0)
        parts.append(((x - w, y0, z - 0.17), (x + w, y0 + h, z - 0.11), SIGN))
    arm_end = None
    if rng.random() < 0.4:
        reach = rng.uniform(1.5, 3.5)
        xa, xb = x, x - sign * reach
        parts.append(((min(xa, xb), top - 0.15, z - 0.08), (max(xa, xb), top, z + 0.08), POLE))
        arm_end = xb
    if rng.random() < 0.3:
        if arm_end is not None:
            parts.append(
                (
                    (arm_end - 0.18, top - 1.05, z - 0.15),
                    (arm_end + 0.18, top - 0.15, z + 0.15),
                    LIGHT,
                )
            )
        else:
            y0 = rng.uniform(2.6, 3.6)
            parts.append(((x - 0.18, y0, z - 0.45), (x + 0.18, y0 + 0.9, z - 0.1), LIGHT))
    b.add(parts, _tint(rng))


def _add_parked_cars(
    b: _Builder, rng: np.random.Generator, sign: float, road_half: float, z_end: float
) -> None:
    """Cars parked along one curb (slots are skipped at random)."""
    p_park = rng.uniform(0.0, 0.5)
    z = rng.uniform(-6.0, 0.0)
    while z < z_end:
        length = rng.uniform(3.8, 4.8)
        if rng.random() < p_park:
            width = rng.uniform(1.65, 1.95)
            x_out = road_half - 0.3
            x0 = x_out - width if sign > 0 else -x_out
            b.add(_car_parts(x0, z, length, width, rng), _tint(rng))
        z += length + rng.uniform(1.0, 3.5)


def _add_traffic(
    b: _Builder,
    rng: np.random.Generator,
    road_half: float,
    lanes: int,
    ego_speed: float,
    z_end: float,
    dynamic: bool,
) -> None:
    """Moving cars: one constant speed per lane (+z on the right half, -z on the left)."""
    lane_w = road_half / lanes
    for side in (-1.0, 1.0):
        for k in range(lanes):
            centre = side * (k + 0.5) * lane_w
            lane_speed = ego_speed * rng.uniform(0.6, 1.4) if side > 0 else -rng.uniform(0.5, 1.5)
            vel = (0.0, 0.0, lane_speed if dynamic else 0.0)
            z = rng.uniform(-30.0, 10.0)
            z_stop = z_end + (abs(lane_speed) * 20 if side < 0 else 0.0)
            while z < z_stop:
                length, width = rng.uniform(3.8, 4.8), rng.uniform(1.65, 1.95)
                x0 = centre - width / 2 + rng.uniform(-0.2, 0.2)
                b.add(_car_parts(x0, z, length, width, rng), _tint(rng), vel)
                z += length + rng.uniform(8.0, 45.0)


def _add_pedestrians(
    b: _Builder,
    rng: np.random.Generator,
    road_half: float,
    sidewalk: tuple[float, float],
    travel: float,
    dynamic: bool,
) -> None:
    """People walking along the sidewalks and a few crossing the road ahead."""
    for _ in range(int(rng.poisson(6)) + 2):
        side = int(rng.integers(2))
        sign = -1.0 if side == 0 else 1.0
        x = sign * (road_half + rng.uniform(0.4, max(0.5, sidewalk[side] - 0.4)))
        z = rng.uniform(2.0, 60.0)
        vz = rng.choice((-1.0, 1.0)) * rng.uniform(0.08, 0.2)
        vel = (0.0, 0.0, vz) if dynamic else (0.0, 0.0, 0.0)
        b.add(_person_parts(x, z, rng), _tint(rng), vel)
    for _ in range(int(rng.poisson(1.5))):
        sign = rng.choice((-1.0, 1.0))
        x = sign * (road_half + rng.uniform(-1.5, 0.5))
        z = travel + rng.uniform(5.0, 45.0)
        vx = -sign * rng.uniform(0.08, 0.2)
        vel = (vx, 0.0, 0.0) if dynamic else (0.0, 0.0, 0.0)
        b.add(_person_parts(x, z, rng), _tint(rng), vel)


# --------------------------------------------------------------------------- ray casting


def _screen_rects(
    lo: np.ndarray, hi: np.ndarray, cam: Camera
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Conservative image-space bounds of camera-relative boxes.

    Args:
        lo, hi: [B, 3] box corners relative to the camera centre.
    Returns:
        umin, umax, vmin, vmax [B] (pixel coordinates), z-near [B] (clipped at NEAR), and
        ``ahead`` bool [B]: the box reaches in front of the near plane.
    """
    z0 = np.maximum(lo[:, 2], NEAR)
    z1 = np.maximum(hi[:, 2], NEAR)
    xs = np.stack([lo[:, 0] / z0, lo[:, 0] / z1, hi[:, 0] / z0, hi[:, 0] / z1])
    ys = np.stack([lo[:, 1] / z0, lo[:, 1] / z1, hi[:, 1] / z0, hi[:, 1] / z1])
    umin, umax = cam.cx + cam.f * xs.min(axis=0), cam.cx + cam.f * xs.max(axis=0)
    vmin, vmax = cam.cy - cam.f * ys.max(axis=0), cam.cy - cam.f * ys.min(axis=0)
    return umin, umax, vmin, vmax, z0, hi[:, 2] > NEAR


def _slab(lo: np.ndarray, hi: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry/exit ray parameters of one slab for direction components ``d`` (any shape)."""
    a, b = lo / d, hi / d
    return np.minimum(a, b), np.maximum(a, b)


def _pairs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Enumerate ``counts[i]`` items per owner i: (owner [N], index within owner [N])."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - first[owner]


def cast_grid(scene: Scene, t: int, height: int, width: int) -> Hits:
    """Cast one ray through every pixel centre of frame ``t`` and keep the nearest hit.

    Every (box, pixel) pair inside the box's screen rectangle is slab-tested in one vectorised pass.
    """
    cam = scene.camera
    c = cam.pos(t)
    dx, dy, ray = scene.pixel_rays(height, width)
    depth = np.full((height, width), np.inf)
    box = np.full((height, width), HIT_SKY, dtype=np.int32)
    axis = np.full((height, width), 1, dtype=np.int8)

    below = dy < 0  # ground rays: one depth per image row
    depth[below] = (c[1] / -dy[below])[:, None]
    box[below] = HIT_GROUND

    lo, hi = scene.boxes_at(t)
    lo, hi = lo - c, hi - c
    umin, umax, vmin, vmax, znear, ahead = _screen_rects(lo, hi, cam)
    # one pixel of slack on each side guards against rounding at the rectangle's border
    c0 = np.clip(np.ceil(umin) - 1, 0, width).astype(np.int64)
    c1 = np.clip(np.floor(umax) + 2, 0, width).astype(np.int64)
    r0 = np.clip(np.ceil(vmin) - 1, 0, height).astype(np.int64)
    r1 = np.clip(np.floor(vmax) + 2, 0, height).astype(np.int64)
    ids = np.flatnonzero(ahead & (c1 > c0) & (r1 > r0))
    nrows, ncols = (r1 - r0)[ids], (c1 - c0)[ids]
    # the x slab depends only on (box, column) and the y slab only on (box, row)
    cb, ck = _pairs(ncols)
    xn_bc, xf_bc = _slab(lo[ids[cb], 0], hi[ids[cb], 0], dx[c0[ids[cb]] + ck])
    rb, rk = _pairs(nrows)
    yn_br, yf_br = _slab(lo[ids[rb], 1], hi[ids[rb], 1], dy[r0[ids[rb]] + rk])
    # every (box, row) entry expands to the box's columns
    br, k = _pairs(ncols[rb])
    owner = rb[br]
    b = ids[owner]
    cidx = (np.cumsum(ncols) - ncols)[owner] + k
    row = r0[b] + rk[br]
    col = c0[b] + k
    xn, xf = xn_bc[cidx], xf_bc[cidx]
    yn, yf = yn_br[br], yf_br[br]
    tn = np.maximum(np.maximum(xn, yn), znear[b])
    tf = np.minimum(np.minimum(xf, yf), hi[b, 2])
    pix = row * width + col
    hit = (tn <= tf) & (tn > NEAR)
    flat_depth = depth.ravel()
    np.minimum.at(flat_depth, pix[hit], tn[hit])
    win = hit & (tn == flat_depth[pix])
    # equal depths (shared faces): the lowest box index wins, whatever the pair order
    first_box = np.full(height * width, len(lo), dtype=np.int64)
    np.minimum.at(first_box, pix[win], b[win])
    win = np.flatnonzero(win & (b == first_box[pix]))
    box.ravel()[pix[win]] = b[win]
    axis.ravel()[pix[win]] = np.where(tn[win] == xn[win], 0, np.where(tn[win] == yn[win], 1, 2))
    return _finish_hits(scene, depth, box, axis, c, ray)


def _finish_hits(
    scene: Scene,
    depth: np.ndarray,
    box: np.ndarray,
    axis: np.ndarray,
    c: np.ndarray,
    ray: np.ndarray,
) -> Hits:
    """Derive labels, hit points and normals from the per-pixel nearest hit."""
    sky = box == HIT_SKY
    solid = box >= 0
    obj = np.maximum(box, 0)
    d = np.where(sky, 0.0, depth)
    point = np.empty(ray.shape)
    for i in range(3):
        point[..., i] = c[i] + d * ray[..., i]
    label = np.where(solid, scene.label[obj], scene.ground_label(point[..., 0]))
    label[sky] = SKY
    # a visible face points back along the ray; dx, dy are never exactly 0 and dz = 1
    toward = np.where(axis == 0, ray[..., 0], np.where(axis == 1, ray[..., 1], 1.0))
    facing = np.where(sky, 0.0, -np.sign(toward))
    moving = solid & np.any(scene.vel != 0.0, axis=1)[obj]
    return Hits(depth, box, label, point, axis, facing, moving)


def occluded(scene: Scene, t: int, u: np.ndarray, v: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Whether a box blocks the ray through (u, v) of frame ``t`` before z-depth ``depth``.

    Args:
        u, v: float64 [N] pixel coordinates (need not be pixel centres).
        depth: float64 [N] z-depth of the point the ray should reach.
    Returns:
        bool [N].
    """
    out = np.zeros(u.shape, dtype=bool)
    if u.size == 0:
        return out
    cam = scene.camera
    c = cam.pos(t)
    dx, dy = cam.directions(u, v)
    limit = depth * (1.0 - OCCLUSION_RTOL)
    lo, hi = scene.boxes_at(t)
    lo, hi = lo - c, hi - c
    umin, umax, vmin, vmax, znear, ahead = _screen_rects(lo, hi, cam)
    slack = 1e-6
    # sort rays by (row band, u) so that each box visits only the rays in its bands and columns
    reach = float(np.max(np.abs(u))) + 1.0
    stride = 2.0 * reach + 2.0
    band = np.floor(v / OCCLUSION_BAND)
    key = band * stride + u
    order = np.argsort(key, kind="stable")
    key = key[order]
    umin, umax = np.clip(umin - slack, -reach, reach), np.clip(umax + slack, -reach, reach)
    b_lo = np.maximum(np.floor((vmin - slack) / OCCLUSION_BAND), band.min())
    b_hi = np.minimum(np.floor((vmax + slack) / OCCLUSION_BAND), band.max())
    ids = np.flatnonzero(ahead & (b_hi >= b_lo))
    owner, k = _pairs((b_hi - b_lo + 1)[ids].astype(np.int64))
    bb = ids[owner]
    bands = b_lo[bb] + k
    first = np.searchsorted(key, bands * stride + umin[bb], side="left")
    stop = np.searchsorted(key, bands * stride + umax[bb], side="right")
    owner, k = _pairs(np.maximum(stop - first, 0))
    b = bb[owner]
    ray = order[first[owner] + k]
    keep = (v[ray] >= vmin[b] - slack) & (v[ray] <= vmax[b] + slack) & (limit[ray] > znear[b])
    b, ray = b[keep], ray[keep]
    xn, xf = _slab(lo[b, 0], hi[b, 0], dx[ray])
    yn, yf = _slab(lo[b, 1], hi[b, 1], dy[ray])
    tn = np.maximum(np.maximum(xn, yn), znear[b])
    tf = np.minimum(np.minimum(xf, yf), hi[b, 2])
    out[ray[(tn <= tf) & (tn > NEAR) & (tn < limit[ray])]] = True
    return out


def backward_flow(scene: Scene, hits: Hits, prev: Hits, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact backward flow of frame ``t`` (t >= 1) towards frame t - 1.

    Args:
        hits, prev: the renders of frames t and t - 1.
    Returns:
        flow float64 [H, W, 2] (u, v) with p + flow(p) = where p's surface point was in frame t-1;
        valid bool [H, W] (that point is inside frame t-1 and not hidden there).
    """
    h, w = hits.depth.shape
    cam = scene.camera
    sky = hits.box == HIT_SKY
    rel = hits.point - cam.pos(t - 1)
    if hits.moving.any():
        rel[hits.moving] -= scene.vel[hits.box[hits.moving]]
    with np.errstate(divide="ignore", invalid="ignore"):
        u1 = cam.cx + cam.f * rel[..., 0] / rel[..., 2]
        v1 = cam.cy - cam.f * rel[..., 1] / rel[..., 2]
    flow = np.zeros((h, w, 2))
    # a translating camera sees directions at infinity at the same pixel: sky flow stays 0
    flow[..., 0] = np.where(sky, 0.0, u1 - np.arange(w)[None, :])
    flow[..., 1] = np.where(sky, 0.0, v1 - np.arange(h)[:, None])
    inside = ~sky & (rel[..., 2] > NEAR)
    inside &= (u1 >= -0.5) & (u1 < w - 0.5) & (v1 >= -0.5) & (v1 < h - 0.5)
    valid = inside.copy()
    valid[inside] = ~occluded(scene, t - 1, u1[inside], v1[inside], rel[..., 2][inside])
    valid |= sky & (prev.box == HIT_SKY)
    return flow, valid
