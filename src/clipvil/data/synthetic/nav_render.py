"""Pixels of the embedded navigation world: the 36 discretised views of a viewpoint, rendered with numpy + PIL.

A pinhole camera at the viewpoint's position (the connectivity pose, camera height above the floor), looking
along the view's heading and elevation in clipvil.data.nav_env's conventions (heading 0 faces +y, positive
turns right towards +x; elevation levels -30, 0, +30 deg; view = 12 * level + heading index), vertical field
of view 60 deg (MatterSim's camera), square pixels. Each pixel's ray hits either the floor (a plane at the
camera height below, checkered in scan coordinates, so neighbouring views agree) or a wall (the colour of the
region the viewpoint is in, striped by azimuth). Objects are flat shapes (clipvil.data.synthetic.scene's
outlines and colours) facing the camera, drawn where their centre projects, with a radius that shrinks with
depth; far ones are drawn first; objects more than 10 m away or 1.2 m above/below the camera (another floor)
are not drawn (no other occlusion). Deterministic in its inputs (the pixel noise comes from the given rng).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from clipvil.data.nav_env import N_VIEWS, view_elevation, view_heading
from clipvil.data.synthetic.scene import COLORS, SceneObject, outline

VFOV = math.radians(60.0)
_SUPERSAMPLE = 2
MAX_DEPTH = 10.0  # metres: objects farther away are not drawn
MAX_RISE = 1.2  # metres: objects this far above or below the camera (another floor) are hidden by it


@dataclass(frozen=True)
class NavObject:
    """A shape standing in the scan (positions in the scan's metres, z up)."""

    obj_id: int
    shape: str
    color: str
    position: tuple[float, float, float]
    radius: float  # metres
    rotation: float  # degrees in the image plane


@dataclass(frozen=True)
class Look:
    """How the surroundings of a viewpoint are painted."""

    wall: tuple[int, int, int]  # base wall colour of the region
    floor: tuple[int, int, int]  # floor colour
    floor_z: float  # floor height (camera z - camera height)
    stripe: float  # wall stripe period in degrees of azimuth


def camera_basis(heading: float, elevation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forward, right, up) unit vectors of a view."""
    sh, ch, se, ce = math.sin(heading), math.cos(heading), math.sin(elevation), math.cos(elevation)
    forward = np.array([sh * ce, ch * ce, se])
    right = np.array([ch, -sh, 0.0])
    up = np.array([-sh * se, -ch * se, ce])
    return forward, right, up


def project(point: Sequence[float], camera: Sequence[float], heading: float, elevation: float, width: int,
            height: int) -> tuple[float, float, float] | None:
    """(x, y, depth) in pixels of a scan point in a view (y down), or None behind the camera."""
    forward, right, up = camera_basis(heading, elevation)
    d = np.asarray(point, dtype=np.float64) - np.asarray(camera, dtype=np.float64)  # [3]
    depth = float(d @ forward)
    if depth < 0.1:
        return None
    focal = (height / 2) / math.tan(VFOV / 2)
    return width / 2 + focal * float(d @ right) / depth, height / 2 - focal * float(d @ up) / depth, depth


def _backdrop(camera: np.ndarray, heading: float, elevation: float, look: Look, width: int, height: int
              ) -> np.ndarray:
    """Floor and walls as float32 [H, W, 3]."""
    forward, right, up = camera_basis(heading, elevation)
    focal = (height / 2) / math.tan(VFOV / 2)
    xs = (np.arange(width) + 0.5 - width / 2) / focal  # [W]
    ys = (np.arange(height) + 0.5 - height / 2) / focal  # [H]
    rays = forward + xs[None, :, None] * right - ys[:, None, None] * up  # [H, W, 3]
    img = np.empty((height, width, 3), np.float32)  # [H, W, 3]
    floor = rays[..., 2] < -1e-3  # [H, W]
    t = np.where(floor, (look.floor_z - camera[2]) / np.where(floor, rays[..., 2], -1.0), 0.0)  # [H, W]
    fx, fy = camera[0] + t * rays[..., 0], camera[1] + t * rays[..., 1]  # [H, W] floor hit points
    checker = ((np.floor(fx / 0.6) + np.floor(fy / 0.6)) % 2)[..., None]  # [H, W, 1]
    shade = np.clip(1.0 - t / 25.0, 0.4, 1.0)[..., None]  # [H, W, 1] darker far away
    floor_rgb = np.asarray(look.floor, np.float32) * (0.85 + 0.3 * checker) * shade  # [H, W, 3]
    azimuth = np.degrees(np.arctan2(rays[..., 0], rays[..., 1]))  # [H, W]
    stripes = np.sin(2 * math.pi * azimuth / look.stripe)[..., None]  # [H, W, 1]
    lift = np.clip(rays[..., 2], 0, 1)[..., None]  # [H, W, 1] lighter towards the ceiling
    wall_rgb = np.asarray(look.wall, np.float32) * (0.92 + 0.08 * stripes) + 40 * lift  # [H, W, 3]
    img[:] = np.where(floor[..., None], floor_rgb, wall_rgb)
    return img


def render_view(camera: Sequence[float], view: int, objects: Sequence[NavObject], look: Look, width: int,
                height: int, rng: np.random.Generator) -> Image.Image:
    """The RGB image of view `view` (0..35) seen from `camera` (scan coordinates)."""
    if not 0 <= view < N_VIEWS:
        raise ValueError(f"render_view: view {view} is not in 0..{N_VIEWS - 1}")
    cam = np.asarray(camera, dtype=np.float64)
    heading, elevation = float(view_heading(view)), float(view_elevation(view))
    backdrop = np.clip(_backdrop(cam, heading, elevation, look, width, height), 0, 255).astype(np.uint8)
    k = _SUPERSAMPLE
    canvas = Image.fromarray(backdrop).resize((width * k, height * k), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    focal = (height / 2) / math.tan(VFOV / 2)
    placed = []
    for obj in objects:
        if abs(obj.position[2] - cam[2]) > MAX_RISE:
            continue
        where = project(obj.position, cam, heading, elevation, width, height)
        if where is None or where[2] > MAX_DEPTH:
            continue
        x, y, depth = where
        r = focal * obj.radius / depth
        if -r < x < width + r and -r < y < height + r:
            placed.append((depth, SceneObject(obj.obj_id, obj.shape, obj.color, "large", x * k, y * k, r * k,
                                              obj.rotation)))
    for _, shape in sorted(placed, key=lambda p: -p[0]):
        draw.polygon(outline(shape), fill=COLORS[shape.color])
    small = np.asarray(canvas.reduce(k)).astype(np.int16)  # [H, W, 3]
    noisy = small + rng.integers(-4, 5, small.shape, dtype=np.int16)  # [H, W, 3]
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
