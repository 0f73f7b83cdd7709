"""Built-in parametric shapes: toy-like objects and machine parts, each made of several named parts.

Every generator draws its proportions, part counts and colours from a `np.random.Generator`, so a
(category, instance, seed) triple is one distinct, reproducible object. Objects are built z up, resting on
z = 0 on their natural side (a car on its wheels, a key or a hammer lying flat), with parts overlapping each
other so the object is one physical thing. Every part is a closed (watertight) mesh with its own material,
which is what part-level anomalies (missing part, material swap, moved part) need.
"""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Callable

import numpy as np
import trimesh
from trimesh import creation
from trimesh.transformations import rotation_matrix

from generation.shapes.types import MaterialSpec, Part, Shape, normalize

GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
# Longest straight run (build units; objects are about 1 across) a lathe outline or tube path may have without
# a vertex: long walls get rings of vertices, so part contacts, per-face anomaly masks and deformations have
# vertices to work with, not one triangle from rim to foot.
MAX_SEGMENT = 0.06


# ---- materials ---------------------------------------------------------------------------------------------
def srgb_to_linear(srgb) -> tuple[float, float, float]:
    """sRGB (how colours are usually picked) to the linear RGB Blender's Base Color expects."""
    c = np.clip(np.asarray(srgb, dtype=np.float64), 0.0, 1.0)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return tuple(float(x) for x in linear)


def _hues(rng: np.random.Generator, count: int) -> list[float]:
    """Well separated hues (golden-ratio steps from a random start), so neighbouring parts differ."""
    start = rng.random()
    return [(start + k * GOLDEN) % 1.0 for k in range(count)]


def plastic(rng: np.random.Generator, name: str, hue: float | None = None) -> MaterialSpec:
    hue = rng.random() if hue is None else hue
    color = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.6, 0.95))
    return MaterialSpec(name, srgb_to_linear(color), float(rng.uniform(0.25, 0.55)), 0.0)


def painted(rng: np.random.Generator, name: str) -> MaterialSpec:
    color = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 0.75), rng.uniform(0.3, 0.75))
    return MaterialSpec(name, srgb_to_linear(color), float(rng.uniform(0.35, 0.6)), 0.0)


METALS = {  # sRGB colour, roughness range, metallic
    "steel": ((0.63, 0.63, 0.65), (0.25, 0.45), 1.0),
    "aluminium": ((0.80, 0.80, 0.82), (0.3, 0.5), 1.0),
    "brass": ((0.80, 0.62, 0.30), (0.2, 0.4), 1.0),
    "copper": ((0.82, 0.50, 0.36), (0.25, 0.45), 1.0),
    "black_oxide": ((0.18, 0.18, 0.19), (0.35, 0.55), 0.7),
    "zinc": ((0.70, 0.72, 0.66), (0.3, 0.5), 1.0),
}


def metal(rng: np.random.Generator, name: str, kind: str | None = None) -> MaterialSpec:
    kind = kind or str(rng.choice(list(METALS)))
    color, roughness, metallic = METALS[kind]
    return MaterialSpec(name, srgb_to_linear(np.array(color) + rng.uniform(-0.04, 0.04, 3)),
                        float(rng.uniform(*roughness)), metallic)


def tinted(rng: np.random.Generator, name: str, srgb, roughness: float,
           metallic: float = 0.0) -> MaterialSpec:
    """A fixed everyday colour (snow white, coal black, rubber) with a little variation."""
    return MaterialSpec(name, srgb_to_linear(np.array(srgb) + rng.uniform(-0.04, 0.04, 3)),
                        float(np.clip(roughness + rng.uniform(-0.08, 0.08), 0.05, 1.0)), metallic)


def rubber(rng: np.random.Generator, name: str) -> MaterialSpec:
    return tinted(rng, name, (0.08, 0.08, 0.09), 0.85)


def machine_finish(rng: np.random.Generator, name: str) -> MaterialSpec:
    """Machine parts: mostly bare metal, sometimes painted."""
    return painted(rng, name) if rng.random() < 0.25 else metal(rng, name)


def random_material(rng: np.random.Generator, name: str) -> MaterialSpec:
    """A plausible material for a part whose file carries no colour: plastic, paint or metal."""
    draw = rng.random()
    if draw < 0.45:
        return plastic(rng, name)
    return painted(rng, name) if draw < 0.7 else metal(rng, name)


# ---- mesh building blocks (all closed, outward-facing) -----------------------------------------------------
def _outward(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Flip a closed mesh that was built inside out (its volume comes out negative)."""
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def _densified(points) -> np.ndarray:
    """The polyline with points inserted so that no segment is longer than MAX_SEGMENT."""
    points = np.asarray(points, dtype=np.float64)
    pieces = [points[:1]]
    for start, end in zip(points[:-1], points[1:], strict=True):
        steps = max(int(np.ceil(np.linalg.norm(end - start) / MAX_SEGMENT)), 1)
        pieces.append(start + (end - start) * (np.arange(1, steps + 1) / steps)[:, None])
    return np.vstack(pieces)


def _lathe(profile, sections: int = 48) -> trimesh.Trimesh:
    """Solid of revolution about z of a (radius, z) outline: either from the axis back to the axis,
    or a closed loop (first point repeated) for rings and shells."""
    return _outward(creation.revolve(_densified(profile), sections=sections))


def _box(low, high) -> trimesh.Trimesh:
    return creation.box(bounds=[low, high])


def _cylinder(radius: float, start, end, sections: int = 32) -> trimesh.Trimesh:
    return creation.cylinder(radius, segment=[start, end], sections=sections)


def _ring(r_in: float, r_out: float, z0: float, z1: float, center=(0.0, 0.0), sections: int = 48):
    """A flat ring about a vertical axis (washer, sleeve, annulus) between heights z0 and z1."""
    mesh = _lathe([(r_in, z0), (r_out, z0), (r_out, z1), (r_in, z1), (r_in, z0)], sections=sections)
    mesh.apply_translation((center[0], center[1], 0.0))
    return mesh


def _sphere(radius: float, center, subdivisions: int = 2, stretch=(1.0, 1.0, 1.0)) -> trimesh.Trimesh:
    mesh = creation.icosphere(subdivisions=subdivisions, radius=radius)
    mesh.apply_scale(stretch)
    mesh.apply_translation(center)
    return mesh


def _torus(major: float, minor: float, z: float, sections=(40, 12)) -> trimesh.Trimesh:
    """A torus lying flat around the z axis at height z."""
    mesh = creation.torus(major, minor, major_sections=sections[0], minor_sections=sections[1])
    mesh.apply_translation((0.0, 0.0, z))
    return mesh


def _turned(mesh: trimesh.Trimesh, angle: float, axis) -> trimesh.Trimesh:
    """`mesh` rotated in place about an axis through the origin."""
    mesh.apply_transform(rotation_matrix(angle, axis))
    return mesh


def _prism(outline, z0: float, z1: float) -> trimesh.Trimesh:
    """Extrude along z a polygon that is star-shaped about its vertex mean (gear, hexagon, trapezoid):
    fan-triangulated caps plus side quads, since shapely (trimesh's polygon extrusion) is not available."""
    outline = np.asarray(outline, dtype=np.float64)
    x, y = outline[:, 0], outline[:, 1]
    if np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y) < 0:
        outline = outline[::-1]
    n = len(outline)
    center = outline.mean(axis=0)
    vertices = np.vstack([np.column_stack([outline, np.full(n, z0)]),
                          np.column_stack([outline, np.full(n, z1)]),
                          [[*center, z0], [*center, z1]]])
    a = np.arange(n)
    b = (a + 1) % n
    faces = np.vstack([
        np.column_stack([a, b, b + n]), np.column_stack([a, b + n, a + n]),  # sides
        np.column_stack([np.full(n, 2 * n), b, a]),  # bottom
        np.column_stack([np.full(n, 2 * n + 1), a + n, b + n]),  # top
    ])
    return _outward(trimesh.Trimesh(vertices, faces, process=False))


def _sideways(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Turn a prism built in the xy plane so its outline lies in the xz plane (extruded along y)."""
    return _turned(mesh, np.pi / 2, (1, 0, 0))


def _tube(path, radius: float, inner_radius: float = 0.0, sections: int = 16) -> trimesh.Trimesh:
    """Sweep a circle (or, with `inner_radius`, a ring: a hollow pipe) along an open polyline.

    Cross-sections are carried along by parallel transport so the tube does not twist. For a path in a
    horizontal plane the section axes stay horizontal and vertical, so with `sections` divisible by 4 the
    tube has a straight bottom line and lies flat on the floor.
    """
    path = _densified(path)
    tangents = np.gradient(path, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    normal = np.eye(3)[np.argmin(np.abs(tangents[0]))]
    normals, binormals = [], []
    for tangent in tangents:
        normal = normal - (normal @ tangent) * tangent
        normal /= np.linalg.norm(normal)
        normals.append(normal)
        binormals.append(np.cross(tangent, normal))
    angles = 2 * np.pi * np.arange(sections) / sections
    circle = (np.cos(angles)[None, :, None] * np.array(normals)[:, None, :]
              + np.sin(angles)[None, :, None] * np.array(binormals)[:, None, :])
    rings, steps = len(path), sections

    def surface(offset: int, inward: bool) -> np.ndarray:
        i, j = np.meshgrid(np.arange(rings - 1), np.arange(steps), indexing="ij")
        a, b = offset + i * steps + j, offset + (i + 1) * steps + j
        c, d = offset + (i + 1) * steps + (j + 1) % steps, offset + i * steps + (j + 1) % steps
        tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                               np.stack([a, c, d], -1).reshape(-1, 3)])
        return tris if inward else tris[:, ::-1]

    outer = (path[:, None, :] + radius * circle).reshape(-1, 3)
    j = np.arange(steps)
    k = (j + 1) % steps
    last = (rings - 1) * steps
    if inner_radius > 0:
        inner = (path[:, None, :] + inner_radius * circle).reshape(-1, 3)
        m = len(outer)
        start = np.vstack([np.column_stack([j, m + j, m + k]), np.column_stack([j, m + k, k])])
        end = np.vstack([np.column_stack([last + j, m + last + k, m + last + j]),
                         np.column_stack([last + j, last + k, m + last + k])])
        vertices = np.vstack([outer, inner])
        faces = np.vstack([surface(0, inward=False), surface(m, inward=True), start, end])
    else:
        first_center, last_center = len(outer), len(outer) + 1
        vertices = np.vstack([outer, path[0], path[-1]])
        faces = np.vstack([surface(0, inward=False),
                           np.column_stack([np.full(steps, first_center), k, j]),
                           np.column_stack([np.full(steps, last_center), last + j, last + k])])
    return _outward(trimesh.Trimesh(vertices, faces, process=False))


def _helix(radius: float, z0: float, z1: float, pitch: float) -> np.ndarray:
    """Points of a helix about the z axis (a screw thread's path), 20 per turn."""
    turns = (z1 - z0) / pitch
    t = np.linspace(0.0, 2 * np.pi * turns, max(int(turns * 20), 4))
    return np.column_stack([radius * np.cos(t), radius * np.sin(t), z0 + pitch * t / (2 * np.pi)])


def _union(meshes) -> trimesh.Trimesh:
    return trimesh.boolean.union(list(meshes), engine="manifold")


def _difference(mesh, cutters) -> trimesh.Trimesh:
    return trimesh.boolean.difference([mesh, *cutters], engine="manifold")


def _above(mesh: trimesh.Trimesh, z: float) -> trimesh.Trimesh:
    """The part of a closed mesh above height z (a flat cut, e.g. so a sphere can stand)."""
    low, high = mesh.bounds
    pad = np.ptp(mesh.bounds, axis=0).max()
    cut = _box([low[0] - pad, low[1] - pad, z], [high[0] + pad, high[1] + pad, high[2] + pad])
    return trimesh.boolean.intersection([mesh, cut], engine="manifold")


def _regular_polygon(circumradius: float, count: int, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(count) / count
    return circumradius * np.column_stack([np.cos(angles), np.sin(angles)])


def _handle_loop(x_low: float, x_high: float, z_low: float, z_high: float, reach: float, clearance: float):
    """Path of a D-shaped handle in the xz plane: straight stubs out of a wall at x_low/x_high
    (heights z_low/z_high), joined by a half ellipse that reaches `reach` beyond the wall."""
    x_out = max(x_low, x_high) + clearance
    t = np.linspace(-np.pi / 2, np.pi / 2, 24)
    arc = np.column_stack([x_out + reach * np.cos(t), np.zeros_like(t),
                           (z_low + z_high) / 2 + (z_high - z_low) / 2 * np.sin(t)])
    stub_in = np.column_stack([np.linspace(x_low, x_out, 4)[:-1], np.zeros(3), np.full(3, z_low)])
    stub_out = np.column_stack([np.linspace(x_out, x_high, 4)[1:], np.zeros(3), np.full(3, z_high)])
    return np.vstack([stub_in, arc, stub_out])


def _vessel(bottom_radius: float, top_radius: float, z0: float, height: float, wall: float, floor: float):
    """An open-topped, straight-walled (possibly tapered) container: mug, cup."""
    return _lathe([(0, z0), (bottom_radius, z0), (top_radius, z0 + height), (top_radius - wall, z0 + height),
                   (bottom_radius - wall, z0 + floor), (0, z0 + floor)], sections=48)


def _band(radius_at, z0: float, z1: float, depth: float, proud: float):
    """A ring hugging a surface of revolution between z0 and z1 (label, sleeve, stripe): from `depth`
    inside the surface to `proud` outside it."""
    return _lathe([(radius_at(z0) - depth, z0), (radius_at(z0) + proud, z0), (radius_at(z1) + proud, z1),
                   (radius_at(z1) - depth, z1), (radius_at(z0) - depth, z0)], sections=48)


# ---- toys --------------------------------------------------------------------------------------------------
def mug(rng: np.random.Generator) -> list[Part]:
    radius, height = rng.uniform(0.32, 0.45), rng.uniform(0.75, 1.1)
    base_radius, wall = radius * rng.uniform(0.85, 1.0), rng.uniform(0.035, 0.06)

    def wall_radius(z):
        return base_radius + (radius - base_radius) * z / height

    z_low, z_high = height * rng.uniform(0.15, 0.3), height * rng.uniform(0.65, 0.85)
    handle_radius = rng.uniform(0.035, 0.055)
    path = _handle_loop(wall_radius(z_low) - wall / 2, wall_radius(z_high) - wall / 2, z_low, z_high,
                        reach=rng.uniform(0.16, 0.28), clearance=handle_radius)
    hue_body, hue_handle, hue_band = _hues(rng, 3)
    parts = [
        Part("body", _vessel(base_radius, radius, 0.0, height, wall, rng.uniform(0.05, 0.09)),
             plastic(rng, "glaze", hue_body)),
        Part("handle", _tube(path, handle_radius, sections=16),
             plastic(rng, "handle_glaze", hue_body if rng.random() < 0.4 else hue_handle)),
    ]
    if rng.random() < 0.6:
        z0 = height * rng.uniform(0.35, 0.6)
        z1 = z0 + height * rng.uniform(0.08, 0.18)
        band = _band(wall_radius, z0, z1, wall / 2, rng.uniform(0.006, 0.012))
        parts.append(Part("band", band, plastic(rng, "band_paint", hue_band)))
    return parts


def cup(rng: np.random.Generator) -> list[Part]:
    """A teacup on its saucer, or a takeaway cup with lid and sleeve."""
    hue_a, hue_b = _hues(rng, 2)
    if rng.random() < 0.5:
        top, bottom, height = rng.uniform(0.28, 0.36), rng.uniform(0.2, 0.26), rng.uniform(0.7, 1.0)

        def side(z):
            return bottom + (top - bottom) * z / height

        lid_top = height + rng.uniform(0.04, 0.08)
        lid = _lathe([(0, height - 0.03), (top + 0.015, height - 0.03), (top + 0.015, height + 0.02),
                      (top * rng.uniform(0.75, 0.9), lid_top), (0, lid_top)])
        z0 = height * rng.uniform(0.3, 0.45)
        sleeve = _band(side, z0, z0 + height * rng.uniform(0.2, 0.3), 0.02, rng.uniform(0.008, 0.015))
        return [
            Part("body", _lathe([(0, 0), (bottom, 0), (top, height), (0, height)]),
                 plastic(rng, "paper", hue_a)),
            Part("lid", lid, plastic(rng, "lid_plastic", hue_b)),
            Part("sleeve", sleeve, tinted(rng, "cardboard", (0.62, 0.45, 0.28), 0.8)),
        ]
    saucer_radius = rng.uniform(0.5, 0.65)
    foot_radius, foot, lip, thickness = (saucer_radius * rng.uniform(0.45, 0.6), rng.uniform(0.015, 0.03),
                                         rng.uniform(0.05, 0.09), rng.uniform(0.025, 0.035))
    saucer = _lathe([(0, 0), (foot_radius, 0), (foot_radius, foot), (saucer_radius, lip),
                     (saucer_radius, lip + thickness), (foot_radius, foot + thickness),
                     (0, foot + thickness)])
    bottom, top = foot_radius * rng.uniform(0.65, 0.85), rng.uniform(0.3, 0.4)
    z0, height, wall = foot + thickness - 0.01, rng.uniform(0.3, 0.45), rng.uniform(0.025, 0.04)

    def side(z):
        return bottom + (top - bottom) * (z - z0) / height

    z_low, z_high = z0 + height * rng.uniform(0.2, 0.35), z0 + height * rng.uniform(0.7, 0.85)
    handle_radius = rng.uniform(0.02, 0.03)
    path = _handle_loop(side(z_low) - wall / 2, side(z_high) - wall / 2, z_low, z_high,
                        reach=rng.uniform(0.1, 0.16), clearance=handle_radius)
    body_material = plastic(rng, "porcelain", hue_a)
    parts = [
        Part("saucer", saucer, plastic(rng, "saucer_glaze", hue_b)),
        Part("body", _vessel(bottom, top, z0, height, wall, rng.uniform(0.03, 0.05)), body_material),
        Part("handle", _tube(path, handle_radius, sections=12), body_material),
    ]
    if rng.random() < 0.5:
        rim = _torus(top - wall / 2, wall * 0.65, z0 + height, sections=(48, 10))
        parts.append(Part("rim", rim, metal(rng, "gilding", "brass")))
    return parts


def bottle(rng: np.random.Generator) -> list[Part]:
    radius, height = rng.uniform(0.18, 0.28), rng.uniform(0.9, 1.2)
    neck_radius = radius * rng.uniform(0.3, 0.45)
    shoulder, neck = height * rng.uniform(0.5, 0.68), height * rng.uniform(0.75, 0.85)
    s = np.linspace(0.0, 1.0, 10)
    shoulder_curve = np.column_stack([neck_radius + (radius - neck_radius) * (1 + np.cos(np.pi * s)) / 2,
                                      shoulder + (neck - shoulder) * s])
    body = _lathe(np.vstack([[(0, 0), (radius * 0.95, 0), (radius, 0.03)], shoulder_curve,
                             [(neck_radius, height), (0, height)]]))
    cap_height = rng.uniform(0.06, 0.12)
    cap = _lathe([(0, height - cap_height * 0.5), (neck_radius * 1.2, height - cap_height * 0.5),
                  (neck_radius * 1.2, height + cap_height * 0.5), (0, height + cap_height * 0.5)],
                 sections=24)
    label_low = rng.uniform(0.08, 0.2) * height
    label_high = min(label_low + rng.uniform(0.2, 0.35) * height, shoulder - 0.03)
    label = _band(lambda z: radius, label_low, label_high, 0.02, rng.uniform(0.004, 0.008))
    hue_glass, hue_cap, hue_label = _hues(rng, 3)
    return [
        Part("body", body, tinted(rng, "glass", colorsys.hsv_to_rgb(hue_glass, rng.uniform(0.3, 0.8), 0.6),
                                   0.1)),
        Part("cap", cap,
             metal(rng, "cap_metal") if rng.random() < 0.4 else plastic(rng, "cap_plastic", hue_cap)),
        Part("label", label, plastic(rng, "label_paper", hue_label)),
    ]


def bowl(rng: np.random.Generator) -> list[Part]:
    radius, height = rng.uniform(0.5, 0.6), rng.uniform(0.3, 0.45)
    base, lift, wall = radius * rng.uniform(0.35, 0.5), rng.uniform(0.03, 0.06), rng.uniform(0.025, 0.04)
    s = np.linspace(0.0, 1.0, 14)
    outer = np.column_stack([base + (radius - base) * np.sin(s * np.pi / 2),
                             lift + (height - lift) * (1 - np.cos(s * np.pi / 2))])
    inner = np.column_stack([base - wall + (radius - base) * np.sin(s * np.pi / 2),
                             lift + wall + (height - lift - wall) * (1 - np.cos(s * np.pi / 2))])
    body = _lathe(np.vstack([[(0, lift)], outer, inner[::-1], [(0, lift + wall)]]))
    foot_radius = base * rng.uniform(0.75, 0.95)
    hue_body, hue_foot, hue_rim, hue_fruit = _hues(rng, 4)
    body_material = plastic(rng, "ceramic", hue_body)
    parts = [
        Part("body", body, body_material),
        Part("foot", _ring(foot_radius - rng.uniform(0.03, 0.05), foot_radius, 0.0, lift + wall / 2),
             body_material if rng.random() < 0.5 else plastic(rng, "foot_glaze", hue_foot)),
    ]
    if rng.random() < 0.5:
        parts.append(Part("rim", _torus(radius - wall / 2, wall * 0.7, height, sections=(48, 10)),
                          plastic(rng, "rim_glaze", hue_rim)))
    if rng.random() < 0.6:
        fruit_radius = rng.uniform(0.08, 0.13)
        count = int(rng.integers(1, 4))
        spread = 0.0 if count == 1 else min(fruit_radius * 1.25, base - wall - fruit_radius * 0.5)
        fruit_z = lift + wall + fruit_radius * 0.9
        fruits = [_sphere(fruit_radius, (spread * np.cos(a), spread * np.sin(a), fruit_z))
                  for a in rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(count) / count]
        parts.append(Part("fruit", trimesh.util.concatenate(fruits), plastic(rng, "fruit_skin", hue_fruit)))
    return parts


def donut(rng: np.random.Generator) -> list[Part]:
    major, minor = rng.uniform(0.32, 0.4), rng.uniform(0.14, 0.2)
    dough = _torus(major, minor, 0.0, sections=(48, 16))
    icing_minor, icing_floor = minor * rng.uniform(1.06, 1.1), minor * rng.uniform(-0.15, 0.25)
    icing = _above(_torus(major, icing_minor, 0.0, sections=(48, 16)), icing_floor)
    hue_icing, hue_a, hue_b = _hues(rng, 3)
    parts = [
        Part("dough", dough, tinted(rng, "baked_dough", (0.78, 0.52, 0.26), 0.7)),
        Part("icing", icing, plastic(rng, "icing", hue_icing)),
    ]
    groups = int(rng.integers(0, 3))
    for group, hue in zip(range(groups), (hue_a, hue_b), strict=False):
        sprinkles = []
        for _ in range(int(rng.integers(8, 16))):
            around = rng.uniform(0, 2 * np.pi)
            up = rng.uniform(np.pi * 0.25, np.pi * 0.75)
            ring = major + icing_minor * np.cos(up)
            center = (ring * np.cos(around), ring * np.sin(around), icing_minor * np.sin(up))
            sprinkle = creation.capsule(height=rng.uniform(0.04, 0.07), radius=0.013, count=[8, 6])
            sprinkle.apply_transform(rotation_matrix(np.pi / 2, (1, 0, 0)))
            sprinkle.apply_transform(rotation_matrix(rng.uniform(0, np.pi), (0, 0, 1)))
            sprinkle.apply_translation(center)
            sprinkles.append(sprinkle)
        parts.append(Part(f"sprinkles_{group}", trimesh.util.concatenate(sprinkles),
                          plastic(rng, "sugar", hue)))
    return parts


def chess_piece(rng: np.random.Generator) -> list[Part]:
    kind = str(rng.choice(["pawn", "rook", "bishop", "queen", "king"]))
    base_radius = rng.uniform(0.26, 0.32)
    felt = _cylinder(base_radius * 0.95, (0, 0, 0), (0, 0, 0.03), sections=48)
    base_top = rng.uniform(0.14, 0.2)
    base = _lathe([(0, 0.02), (base_radius, 0.02), (base_radius, 0.02 + base_top * 0.45),
                   (base_radius * 0.85, base_top * 0.75), (base_radius * 0.75, base_top), (0, base_top)])
    stem_top = rng.uniform(0.55, 0.8) if kind != "pawn" else rng.uniform(0.38, 0.5)
    neck = base_radius * rng.uniform(0.3, 0.42)
    s = np.linspace(0, 1, 8)
    stem_side = np.column_stack([neck + (base_radius * 0.7 - neck) * (1 - s) ** 2,
                                 base_top - 0.02 + (stem_top - base_top + 0.02) * s])
    stem = _lathe(np.vstack([[(0, base_top - 0.02)], stem_side, [(0, stem_top)]]))
    collar = _torus(neck * 1.25, rng.uniform(0.025, 0.04), stem_top, sections=(40, 10))
    head_size = base_radius * rng.uniform(0.6, 0.8)
    extra = None
    if kind == "pawn":
        head = _sphere(head_size, (0, 0, stem_top + head_size * 0.75), 3)
    elif kind == "rook":
        tower, top = head_size * 1.1, stem_top + 0.3
        slot = _box((-1.2 * tower, -tower * 0.18, top - 0.09), (1.2 * tower, tower * 0.18, top + 0.1))
        cutters = [slot, _turned(slot.copy(), np.pi / 2, (0, 0, 1)),
                   _cylinder(tower * 0.6, (0, 0, top - 0.06), (0, 0, top + 0.1), sections=40)]
        head = _difference(_cylinder(tower, (0, 0, stem_top - 0.02), (0, 0, top), sections=40), cutters)
    elif kind == "bishop":
        head = _sphere(head_size * 0.8, (0, 0, stem_top + head_size), 3, stretch=(1, 1, 1.45))
        extra = ("finial", _sphere(head_size * 0.25, (0, 0, stem_top + head_size * 2.25), 2))
    else:
        crown = [(0, stem_top - 0.02), (neck * 1.1, stem_top - 0.02),
                 (head_size * 1.05, stem_top + head_size),
                 (head_size * 0.7, stem_top + head_size * 1.15), (0, stem_top + head_size * 1.15)]
        head = _lathe(crown)
        top = stem_top + head_size * 1.1
        if kind == "queen":
            extra = ("finial", _sphere(head_size * 0.3, (0, 0, top + head_size * 0.25), 2))
        else:
            arm = head_size * 0.12
            extra = ("cross", _union([_box((-arm, -arm, top), (arm, arm, top + head_size * 0.9)),
                                      _box((-3 * arm, -arm, top + head_size * 0.45),
                                           (3 * arm, arm, top + head_size * 0.45 + 2 * arm))]))
    piece_finish = tinted(rng, "lacquer", (0.93, 0.88, 0.76) if rng.random() < 0.5 else (0.12, 0.1, 0.1), 0.35)
    if rng.random() < 0.4:
        piece_finish = plastic(rng, "toy_plastic")
    parts = [
        Part("felt", felt,
             tinted(rng, "felt", (0.1, 0.35, 0.15) if rng.random() < 0.6 else (0.45, 0.08, 0.1), 0.95)),
        Part("base", base, piece_finish),
        Part("stem", stem, piece_finish),
        Part("collar", collar, metal(rng, "trim", "brass") if rng.random() < 0.5 else plastic(rng, "trim")),
        Part("head", head, piece_finish),
    ]
    if extra is not None:
        parts.append(Part(extra[0], extra[1],
                          piece_finish if rng.random() < 0.5 else metal(rng, "ornament", "brass")))
    return parts


def hammer(rng: np.random.Generator) -> list[Part]:
    """Lying on its side, handle along x: it rests on the grip, the handle and the head."""
    length, radius = rng.uniform(0.8, 1.0), rng.uniform(0.03, 0.045)
    width, span = rng.uniform(0.1, 0.16), rng.uniform(0.3, 0.45)
    head_x = length - width / 2
    if rng.random() < 0.5:
        thickness = rng.uniform(2.2, 3.0) * radius
        head = _box((length - width, -span / 2, 0), (length, span / 2, thickness))
        face = _cylinder(thickness * 0.45, (head_x, -span / 2 + 0.01, thickness / 2),
                         (head_x, -span / 2 - rng.uniform(0.02, 0.05), thickness / 2), sections=24)
        head_parts = [Part("head", head, metal(rng, "forged_steel", "steel")),
                      Part("striking_face", face, metal(rng, "polished_steel", "steel"))]
    else:
        mallet = width * rng.uniform(0.6, 0.8)
        cap_radius = mallet * 1.03  # the rubber caps are what rests on the floor, with the handle
        head = _cylinder(mallet, (head_x, -span / 2, cap_radius), (head_x, span / 2, cap_radius), sections=32)
        caps = [_cylinder(cap_radius, (head_x, y, cap_radius), (head_x, y + np.sign(y) * 0.04, cap_radius),
                          sections=32)
                for y in (-span / 2 + 0.02, span / 2 - 0.02)]
        head_parts = [Part("head", head, plastic(rng, "mallet_wood")),
                      Part("caps", trimesh.util.concatenate(caps), rubber(rng, "mallet_rubber"))]
    grip_radius, grip_length = radius * rng.uniform(1.2, 1.45), length * rng.uniform(0.25, 0.4)
    handle = _cylinder(radius, (grip_length * 0.5, 0, radius), (head_x, 0, radius), sections=24)
    grip = _cylinder(grip_radius, (0, 0, grip_radius), (grip_length, 0, grip_radius), sections=24)
    return [
        *head_parts,
        Part("handle", handle, tinted(rng, "wood", (0.72, 0.52, 0.3), 0.6)),
        Part("grip", grip,
             rubber(rng, "grip_rubber") if rng.random() < 0.5 else plastic(rng, "grip_plastic")),
    ]


def car(rng: np.random.Generator) -> list[Part]:
    length, width = rng.uniform(0.9, 1.2), rng.uniform(0.42, 0.55)
    wheel_radius, wheel_width = rng.uniform(0.1, 0.14), rng.uniform(0.07, 0.1)
    floor, body_height = wheel_radius * rng.uniform(0.5, 0.7), rng.uniform(0.16, 0.24)
    top = floor + body_height
    hood, trunk = rng.uniform(0.03, 0.08), rng.uniform(0.03, 0.08)
    side = [(-length / 2, floor), (length / 2, floor), (length / 2, top - hood), (length / 2 - 0.06, top),
            (-length / 2 + 0.05, top), (-length / 2, top - trunk)]
    body = _sideways(_prism(side, -width / 2, width / 2))
    cabin_length, cabin_height = length * rng.uniform(0.4, 0.55), rng.uniform(0.12, 0.18)
    cabin_x = rng.uniform(-0.12, 0.02)
    slope = rng.uniform(0.05, 0.12)
    cabin_side = [(cabin_x - cabin_length / 2, top - 0.02), (cabin_x + cabin_length / 2, top - 0.02),
                  (cabin_x + cabin_length / 2 - slope, top + cabin_height),
                  (cabin_x - cabin_length / 2 + slope * 0.6, top + cabin_height)]
    cabin = _sideways(_prism(cabin_side, -width * 0.42, width * 0.42))
    axle = length / 2 - rng.uniform(0.17, 0.24)
    parts = [Part("body", body, plastic(rng, "car_paint")),
             Part("cabin", cabin, tinted(rng, "tinted_glass", (0.15, 0.2, 0.28), 0.1, 0.2))]
    tyre, hubs = rubber(rng, "tyre"), []
    for name, x, y in (("front_left", axle, 1), ("front_right", axle, -1),
                       ("rear_left", -axle, 1), ("rear_right", -axle, -1)):
        inner, outer = y * (width / 2 - wheel_width * 0.7), y * (width / 2 + wheel_width * 0.3)
        parts.append(Part(f"wheel_{name}", _cylinder(wheel_radius, (x, inner, wheel_radius),
                                                     (x, outer, wheel_radius), sections=32), tyre))
        hubs.append(_cylinder(wheel_radius * 0.55, (x, outer - y * 0.01, wheel_radius),
                              (x, outer + y * 0.012, wheel_radius), sections=24))
    parts.append(Part("hubcaps", trimesh.util.concatenate(hubs), metal(rng, "chrome", "aluminium")))
    lamp_z = top - hood - 0.03
    lights = [_sphere(0.03, (length / 2 - 0.01, y * width * 0.32, lamp_z), 1) for y in (-1, 1)]
    parts.append(Part("headlights", trimesh.util.concatenate(lights),
                      tinted(rng, "lamp", (0.98, 0.95, 0.75), 0.15)))
    return parts


def robot(rng: np.random.Generator) -> list[Part]:
    leg_height, leg_width = rng.uniform(0.25, 0.4), rng.uniform(0.09, 0.13)
    torso_width, torso_depth = rng.uniform(0.3, 0.42), rng.uniform(0.18, 0.26)
    torso_height = rng.uniform(0.3, 0.42)
    leg_gap = rng.uniform(0.02, 0.06)
    torso_bottom, torso_top = leg_height, leg_height + torso_height
    hues = _hues(rng, 5)
    limb_material = plastic(rng, "limb_plastic", hues[1])
    half_depth, half_width = torso_depth / 2, torso_width / 2
    torso = _box((-half_depth, -half_width, torso_bottom), (half_depth, half_width, torso_top))
    parts = [Part("torso", torso, plastic(rng, "shell", hues[0]))]
    for name, y in (("left", 1), ("right", -1)):
        inner = y * leg_gap / 2
        leg = _box((-torso_depth * 0.4, min(inner, inner + y * leg_width), 0),
                   (torso_depth * 0.45, max(inner, inner + y * leg_width), torso_bottom + 0.02))
        parts.append(Part(f"leg_{name}", leg, limb_material))
    arm_width, arm_length = rng.uniform(0.06, 0.09), torso_height * rng.uniform(0.7, 1.0)
    for name, y in (("left", 1), ("right", -1)):
        inner = y * (torso_width / 2 - 0.01)
        arm = _box((-arm_width / 2, min(inner, inner + y * arm_width), torso_top - 0.03 - arm_length),
                   (arm_width / 2, max(inner, inner + y * arm_width), torso_top - 0.03))
        parts.append(Part(f"arm_{name}", arm, limb_material))
    head_size = rng.uniform(0.16, 0.24)
    head_top = torso_top + head_size
    if rng.random() < 0.5:
        head = _box((-head_size / 2, -head_size / 2, torso_top - 0.02),
                    (head_size / 2, head_size / 2, head_top))
    else:
        head = _cylinder(head_size / 2, (0, 0, torso_top - 0.02), (0, 0, head_top), sections=32)
    parts.append(Part("head", head, plastic(rng, "head_shell", hues[2])))
    eye_z = torso_top + head_size * 0.6
    eyes = [_sphere(head_size * 0.12, (head_size / 2, y * head_size * 0.22, eye_z), 1) for y in (-1, 1)]
    parts.append(Part("eyes", trimesh.util.concatenate(eyes), tinted(rng, "eye_lamp", (0.95, 0.9, 0.3), 0.2)))
    antenna_height = rng.uniform(0.06, 0.14)
    antenna = _union([_cylinder(0.012, (0, 0, head_top - 0.01), (0, 0, head_top + antenna_height),
                                sections=12),
                      _sphere(0.03, (0, 0, head_top + antenna_height), 1)])
    parts.append(Part("antenna", antenna, metal(rng, "antenna_metal")))
    if rng.random() < 0.6:
        panel_z = torso_bottom + torso_height * rng.uniform(0.3, 0.5)
        panel = _box((torso_depth / 2 - 0.01, -torso_width * 0.3, panel_z),
                     (torso_depth / 2 + 0.015, torso_width * 0.3, panel_z + torso_height * 0.3))
        parts.append(Part("chest_panel", panel, plastic(rng, "panel", hues[3])))
    return parts


def snowman(rng: np.random.Generator) -> list[Part]:
    bottom = rng.uniform(0.3, 0.38)
    middle = bottom * rng.uniform(0.65, 0.8)
    head = middle * rng.uniform(0.65, 0.8)
    z_bottom = bottom * rng.uniform(0.75, 0.85)
    z_middle = z_bottom + (bottom + middle) * 0.8
    z_head = z_middle + (middle + head) * 0.8
    snow = tinted(rng, "snow", (0.95, 0.96, 0.98), 0.75)
    coal = tinted(rng, "coal", (0.06, 0.06, 0.06), 0.9)
    nose_length = head * rng.uniform(0.6, 1.0)
    nose = creation.cone(head * 0.16, nose_length + head * 0.3, sections=16)
    nose.apply_transform(rotation_matrix(np.pi / 2, (0, 1, 0)))
    nose.apply_translation((head * 0.7, 0, z_head))
    brim_z = z_head + head * 0.7
    crown_top = brim_z + head * rng.uniform(0.7, 1.1)
    brim = _cylinder(head * rng.uniform(1.0, 1.25), (0, 0, brim_z), (0, 0, brim_z + 0.03), sections=32)
    hat = _union([brim,
                  _cylinder(head * 0.7, (0, 0, brim_z), (0, 0, crown_top), sections=32)])
    eye_z = z_head + head * np.sin(0.35)
    eyes = [_sphere(head * 0.1, (head * np.cos(0.35) * np.cos(a), head * np.sin(a), eye_z), 1)
            for a in (-0.35, 0.35)]
    buttons = [_sphere(middle * 0.09, (middle * np.cos(e), 0, z_middle + middle * np.sin(e)), 1)
               for e in np.linspace(-0.5, 0.4, int(rng.integers(2, 4)))]
    hue_hat, hue_scarf = _hues(rng, 2)
    parts = [
        Part("bottom_ball", _above(_sphere(bottom, (0, 0, z_bottom), 3), 0.0), snow),
        Part("middle_ball", _sphere(middle, (0, 0, z_middle), 3), snow),
        Part("head", _sphere(head, (0, 0, z_head), 3), snow),
        Part("nose", nose, tinted(rng, "carrot", (0.95, 0.45, 0.1), 0.6)),
        Part("hat", hat, coal if rng.random() < 0.5 else plastic(rng, "hat_felt", hue_hat)),
        Part("eyes", trimesh.util.concatenate(eyes), coal),
        Part("buttons", trimesh.util.concatenate(buttons), coal),
    ]
    if rng.random() < 0.6:
        neck_z = z_middle + middle * 0.85
        neck_radius = np.sqrt(max(middle**2 - (neck_z - z_middle) ** 2, 0.0))
        scarf = _torus(neck_radius + 0.02, rng.uniform(0.035, 0.05), neck_z, sections=(40, 12))
        parts.append(Part("scarf", scarf, plastic(rng, "wool", hue_scarf)))
    return parts


def key(rng: np.random.Generator) -> list[Part]:
    """Lying flat: blade along +x, bow (the grip) at -x, every part's bottom on z = 0."""
    blade_length, blade_width = rng.uniform(0.55, 0.75), rng.uniform(0.12, 0.18)
    thickness = rng.uniform(0.035, 0.05)
    blade = _box((-0.02, -blade_width / 2, 0), (blade_length, blade_width / 2, thickness))
    notches = []
    for x in np.sort(rng.uniform(0.1, blade_length - 0.08, int(rng.integers(3, 6)))):
        size = rng.uniform(0.03, 0.06)
        notch = _box((-size, -size, -0.1), (size, size, 0.2))
        notch.apply_transform(rotation_matrix(np.pi / 4, (0, 0, 1)))
        notch.apply_translation((x, -blade_width / 2, 0))
        notches.append(notch)
    tip = _box((-0.1, -0.1, -0.1), (0.1, 0.1, 0.2))
    tip.apply_transform(rotation_matrix(np.pi / 4, (0, 0, 1)))
    tip.apply_translation((blade_length + 0.1 * np.sqrt(2) - blade_width * 0.4, blade_width / 2, 0))
    blade = _difference(blade, [*notches, tip])
    collar = _box((-0.06, -blade_width * 0.75, 0), (0.02, blade_width * 0.75, thickness))
    bow_outer, bow_thickness = rng.uniform(0.17, 0.24), thickness * rng.uniform(1.0, 1.6)
    bow_inner = bow_outer * rng.uniform(0.3, 0.45)
    center = (-0.03 - bow_outer, 0.0)
    sections = int(rng.choice([6, 8, 48]))
    bow = _ring(bow_inner, bow_outer, 0, bow_thickness, center, sections=sections)
    key_metal = metal(rng, "key_metal", str(rng.choice(["brass", "steel", "aluminium"])))
    parts = [
        Part("bow", bow, plastic(rng, "bow_cover") if rng.random() < 0.6 else key_metal),
        Part("collar", collar, key_metal),
        Part("blade", blade, key_metal),
    ]
    if rng.random() < 0.5:
        ridge = _box((0.02, -blade_width * 0.1, thickness - 0.005),
                     (blade_length * 0.8, blade_width * 0.1, thickness + 0.012))
        parts.append(Part("ridge", ridge, key_metal))
    return parts


def plate(rng: np.random.Generator) -> list[Part]:
    radius, well = 0.5, rng.uniform(0.28, 0.36)
    foot, rise, thickness = rng.uniform(0.02, 0.035), rng.uniform(0.04, 0.08), rng.uniform(0.02, 0.03)
    body = _lathe([(0, foot), (well, foot), (radius, foot + rise), (radius, foot + rise + thickness),
                   (well, foot + thickness), (0, foot + thickness)], sections=64)
    foot_radius = well * rng.uniform(0.7, 0.9)
    hue_plate, hue_rim, hue_food = _hues(rng, 3)
    parts = [
        Part("plate", body, plastic(rng, "ceramic", hue_plate) if rng.random() < 0.5
             else tinted(rng, "porcelain", (0.93, 0.93, 0.9), 0.3)),
        Part("foot", _ring(foot_radius - 0.03, foot_radius, 0.0, foot + thickness / 2, sections=64),
             tinted(rng, "unglazed", (0.85, 0.8, 0.72), 0.8)),
    ]
    if rng.random() < 0.6:
        rim_z = foot + rise + thickness / 2
        rim = _torus(radius - thickness * 0.3, thickness * 0.6, rim_z, sections=(64, 10))
        parts.append(Part("rim", rim, plastic(rng, "rim_glaze", hue_rim)))
    if rng.random() < 0.6:
        count = int(rng.integers(1, 4))
        cookie_radius = rng.uniform(0.07, 0.1)
        spread = 0.0 if count == 1 else cookie_radius * 1.3
        bottom, top = foot + thickness - 0.01, foot + thickness + rng.uniform(0.025, 0.04)
        cookies = [_cylinder(cookie_radius, (spread * np.cos(a), spread * np.sin(a), bottom),
                             (spread * np.cos(a), spread * np.sin(a), top), sections=24)
                   for a in rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(count) / count]
        parts.append(Part("cookies", trimesh.util.concatenate(cookies), plastic(rng, "icing", hue_food)))
    return parts


def lamp(rng: np.random.Generator) -> list[Part]:
    base_radius, base_height = rng.uniform(0.16, 0.24), rng.uniform(0.05, 0.1)
    base = _lathe([(0, 0), (base_radius, 0), (base_radius, base_height * 0.4),
                   (base_radius * 0.45, base_height), (0, base_height)])
    shade_bottom, shade_height = rng.uniform(0.45, 0.6), rng.uniform(0.3, 0.45)
    shade_top = shade_bottom + shade_height
    r_bottom, r_top, wall = rng.uniform(0.25, 0.35), rng.uniform(0.12, 0.2), 0.015

    def shade_radius(z):
        return r_bottom + (r_top - r_bottom) * (z - shade_bottom) / shade_height

    shade = _lathe([(r_bottom, shade_bottom), (r_top, shade_top), (r_top - wall, shade_top),
                    (r_bottom - wall, shade_bottom), (r_bottom, shade_bottom)], sections=48)
    frame_z = shade_top - 0.04
    reach = shade_radius(frame_z) - wall / 2
    spokes = [_cylinder(0.008, (0, 0, frame_z), (reach * np.cos(a), reach * np.sin(a), frame_z), sections=8)
              for a in 2 * np.pi * np.arange(3) / 3]
    frame = _union([*spokes, _cylinder(0.025, (0, 0, frame_z - 0.02), (0, 0, frame_z + 0.02), sections=16)])
    bulb_radius = rng.uniform(0.05, 0.08)
    hue_base, hue_shade = _hues(rng, 2)
    return [
        Part("base", base,
             plastic(rng, "base_paint", hue_base) if rng.random() < 0.5 else metal(rng, "base_metal")),
        Part("pole", _cylinder(0.015, (0, 0, base_height - 0.01), (0, 0, frame_z), sections=16),
             metal(rng, "pole_metal")),
        Part("shade", shade, plastic(rng, "shade_fabric", hue_shade)),
        Part("bulb", _sphere(bulb_radius, (0, 0, frame_z - 0.02 - bulb_radius), 2),
             tinted(rng, "frosted_glass", (0.98, 0.97, 0.9), 0.2)),
        Part("frame", frame, metal(rng, "wire", "brass")),
    ]


def table(rng: np.random.Generator) -> list[Part]:
    height, thickness = rng.uniform(0.5, 0.75), rng.uniform(0.04, 0.07)
    finish = tinted(rng, "wood", (0.6, 0.42, 0.25), 0.55) if rng.random() < 0.5 else plastic(rng, "toy_paint")
    if rng.random() < 0.35:
        radius = rng.uniform(0.4, 0.5)
        top = _cylinder(radius, (0, 0, height - thickness), (0, 0, height), sections=48)
        foot_radius = radius * rng.uniform(0.55, 0.7)
        return [
            Part("top", top, finish),
            Part("pedestal", _cylinder(rng.uniform(0.04, 0.07), (0, 0, 0.02),
                                       (0, 0, height - thickness + 0.01), sections=24), finish),
            Part("foot", _lathe([(0, 0), (foot_radius, 0), (foot_radius * 0.8, 0.05), (0, 0.06)]),
                 metal(rng, "foot_metal") if rng.random() < 0.5 else finish),
        ]
    half_x, half_y = rng.uniform(0.4, 0.5), rng.uniform(0.25, 0.4)
    leg, inset = rng.uniform(0.035, 0.06), rng.uniform(0.02, 0.06)
    parts = [Part("top", _box((-half_x, -half_y, height - thickness), (half_x, half_y, height)), finish)]
    leg_material = finish if rng.random() < 0.5 else plastic(rng, "leg_paint")
    corners = [(sx * (half_x - inset - leg), sy * (half_y - inset - leg)) for sx in (-1, 1) for sy in (-1, 1)]
    for i, (x, y) in enumerate(corners):
        leg_box = _box((x - leg, y - leg, 0), (x + leg, y + leg, height - thickness + 0.01))
        parts.append(Part(f"leg_{i}", leg_box, leg_material))
    if rng.random() < 0.5:
        z = height * rng.uniform(0.15, 0.3)
        rails = [_box((-half_x + inset, y - leg * 0.5, z), (half_x - inset, y + leg * 0.5, z + leg))
                 for y in (corners[0][1], corners[1][1])]
        parts.append(Part("stretchers", trimesh.util.concatenate(rails), leg_material))
    return parts


def duck(rng: np.random.Generator) -> list[Part]:
    length, width, height = rng.uniform(0.45, 0.55), rng.uniform(0.32, 0.4), rng.uniform(0.25, 0.32)
    lift = height * rng.uniform(0.45, 0.6)
    body = _above(_sphere(1.0, (0, 0, 0), 3, stretch=(length, width, height)), -lift)
    body.apply_translation((0, 0, lift))
    head_radius = rng.uniform(0.16, 0.21)
    head_center = np.array([length * 0.5, 0, lift + height * 0.85 + head_radius * 0.4])
    head = _sphere(head_radius, head_center, 3)
    beak = _sphere(1.0, head_center + (head_radius * 0.95, 0, -head_radius * 0.15), 2,
                   stretch=(head_radius * 0.55, head_radius * 0.45, head_radius * 0.18))
    eyes = [_sphere(head_radius * 0.13, head_center + head_radius * np.array([0.75, y * 0.45, 0.4]), 1)
            for y in (-1, 1)]
    wings = [_sphere(1.0, (-length * 0.1, y * width * 0.85, lift + height * 0.15), 2,
                     stretch=(length * 0.45, width * 0.25, height * 0.35)) for y in (-1, 1)]
    feather = plastic(rng, "rubber_yellow", rng.uniform(0.11, 0.17))
    parts = [
        Part("body", body, feather),
        Part("head", head, feather),
        Part("beak", beak, plastic(rng, "beak", rng.uniform(0.03, 0.08))),
        Part("eyes", trimesh.util.concatenate(eyes), tinted(rng, "eye_black", (0.03, 0.03, 0.03), 0.3)),
        Part("wings", trimesh.util.concatenate(wings),
             feather if rng.random() < 0.5 else plastic(rng, "wing")),
    ]
    if rng.random() < 0.5:
        tail = creation.cone(height * 0.3, height * 0.5, sections=16)
        tail.apply_transform(rotation_matrix(-np.pi * 0.3, (0, 1, 0)))
        tail.apply_translation((-length * 0.8, 0, lift + height * 0.3))
        parts.append(Part("tail", tail, feather))
    return parts


# ---- machine parts -----------------------------------------------------------------------------------------
def bracket(rng: np.random.Generator) -> list[Part]:
    """An L bracket lying on its base plate, the upright plate at x = 0, with gussets and bolt holes."""
    depth, width, thickness = rng.uniform(0.6, 1.0), rng.uniform(0.4, 0.7), rng.uniform(0.05, 0.09)
    rise = rng.uniform(0.5, 0.9)
    hole = rng.uniform(0.03, 0.05)
    two_gussets = rng.random() < 0.5
    hole_ys = [0.0] if two_gussets else [-width / 4, width / 4]
    base_xs = np.linspace(thickness + 0.12, depth - 0.1, int(rng.integers(1, 3)))
    upright_zs = np.linspace(thickness + 0.12, rise - 0.1, int(rng.integers(1, 3)))
    base_holes = [_cylinder(hole, (x, y, -1), (x, y, 1), sections=24) for x in base_xs for y in hole_ys]
    upright_holes = [_cylinder(hole, (-1, y, z), (1, y, z), sections=24) for z in upright_zs for y in hole_ys]
    base = _difference(_box((0, -width / 2, 0), (depth, width / 2, thickness)), base_holes)
    upright = _difference(_box((0, -width / 2, 0), (thickness, width / 2, rise)), upright_holes)
    finish = machine_finish(rng, "bracket_finish")
    parts = [Part("base_plate", base, finish), Part("upright_plate", upright, finish)]
    size, gusset_thickness = min(depth, rise) * rng.uniform(0.4, 0.7), rng.uniform(0.03, 0.05)
    triangle = [(thickness - 0.01, thickness - 0.01), (thickness + size, thickness - 0.01),
                (thickness - 0.01, thickness + size)]
    gusset_ys = [-width / 2 + gusset_thickness, width / 2 - gusset_thickness] if two_gussets else [0.0]
    for i, y in enumerate(gusset_ys):
        gusset = _sideways(_prism(triangle, -gusset_thickness / 2, gusset_thickness / 2))
        gusset.apply_translation((0, y, 0))
        parts.append(Part(f"gusset_{i}", gusset, finish if rng.random() < 0.7 else metal(rng, "weld")))
    return parts


def flange(rng: np.random.Generator) -> list[Part]:
    radius, thickness = 0.5, rng.uniform(0.08, 0.14)
    bore, hub_radius = rng.uniform(0.12, 0.2), rng.uniform(0.25, 0.33)
    hub_height = rng.uniform(0.15, 0.35)
    pitch = (hub_radius + radius) / 2 + 0.02
    count = int(rng.choice([4, 6, 8]))
    hole = min(rng.uniform(0.03, 0.045), np.pi * pitch / count * 0.4)
    angles = 2 * np.pi * np.arange(count) / count + np.pi / count
    holes = [_cylinder(hole, (pitch * np.cos(a), pitch * np.sin(a), -1),
                       (pitch * np.cos(a), pitch * np.sin(a), 1), sections=16) for a in angles]
    disc = _difference(_cylinder(radius, (0, 0, 0), (0, 0, thickness), sections=64),
                       [*holes, _cylinder(bore, (0, 0, -1), (0, 0, 1), sections=48)])
    finish = machine_finish(rng, "flange_finish")
    parts = [
        Part("disc", disc, finish),
        Part("hub", _ring(bore, hub_radius, thickness - 0.01, thickness + hub_height), finish),
        Part("weld_bead", _torus(hub_radius, rng.uniform(0.015, 0.025), thickness, sections=(48, 8)),
             metal(rng, "weld_metal", "black_oxide")),
    ]
    if rng.random() < 0.6:
        stud_length = rng.uniform(0.1, 0.2)
        studs, nuts = [], []
        for a in angles:
            x, y = pitch * np.cos(a), pitch * np.sin(a)
            studs.append(_cylinder(hole * 1.05, (x, y, 0.003), (x, y, thickness + stud_length), sections=16))
            nut = _prism(_regular_polygon(hole * 1.9, 6, a), thickness - 0.005, thickness + hole * 1.5)
            nut.apply_translation((x, y, 0))
            nuts.append(nut)
        parts.append(Part("studs", trimesh.util.concatenate(studs), metal(rng, "stud_steel", "zinc")))
        parts.append(Part("nuts", trimesh.util.concatenate(nuts), metal(rng, "nut_steel")))
    return parts


def gear(rng: np.random.Generator) -> list[Part]:
    teeth = int(rng.integers(12, 33))
    tip = 0.5
    depth = tip * rng.uniform(1.8, 2.4) / teeth * np.pi / 2
    root = tip - depth
    pitch = 2 * np.pi / teeth
    outline = []
    for k in range(teeth):
        a = k * pitch
        outline += [(root, a), (tip, a + pitch * 0.2), (tip, a + pitch * 0.45), (root, a + pitch * 0.65)]
    outline = np.array([(r * np.cos(a), r * np.sin(a)) for r, a in outline])
    face_width = rng.uniform(0.1, 0.2)
    rim_inner = root - rng.uniform(0.05, 0.09)
    rim = _difference(_prism(outline, 0, face_width),
                      [_cylinder(rim_inner, (0, 0, -1), (0, 0, 1), sections=64)])
    bore, hub_radius = rng.uniform(0.05, 0.09), rng.uniform(0.12, 0.18)
    hub_height = face_width + rng.uniform(0.05, 0.15)
    web_thickness = face_width * rng.uniform(0.35, 0.6)
    count = int(rng.integers(3, 7))
    angles = 2 * np.pi * np.arange(count) / count
    if rng.random() < 0.5:
        middle, hole = (rim_inner + hub_radius) / 2, (rim_inner - hub_radius) * rng.uniform(0.25, 0.35)
        holes = [_cylinder(hole, (middle * np.cos(a), middle * np.sin(a), -1),
                           (middle * np.cos(a), middle * np.sin(a), 1), sections=24) for a in angles]
        web = _difference(_ring(hub_radius - 0.01, rim_inner + 0.01, 0, web_thickness, sections=64), holes)
        web_name = "web"
    else:
        spoke = rng.uniform(0.025, 0.04)
        web = _union([_turned(_box((hub_radius - 0.01, -spoke, 0), (rim_inner + 0.01, spoke, web_thickness)),
                              a, (0, 0, 1)) for a in angles])
        web_name = "spokes"
    keyway = _box((bore - 0.01, -bore * 0.25, -1), (bore + bore * 0.35, bore * 0.25, 1))
    hub = _difference(_ring(bore, hub_radius, 0, hub_height, sections=48), [keyway])
    finish = machine_finish(rng, "gear_steel")
    parts = [Part("rim", rim, finish),
             Part(web_name, web, finish if rng.random() < 0.5 else metal(rng, "web")),
             Part("hub", hub, finish)]
    if rng.random() < 0.5:
        key = _box((bore - 0.02, -bore * 0.27, 0.005), (bore * 1.38, bore * 0.27, hub_height + 0.02))
        parts.append(Part("key", key, metal(rng, "key_steel", "black_oxide")))
    return parts


def bolt(rng: np.random.Generator) -> list[Part]:
    """Standing on its head."""
    head_radius, head_height = rng.uniform(0.22, 0.3), rng.uniform(0.12, 0.2)
    shank_radius, shank_length = head_radius * rng.uniform(0.45, 0.6), rng.uniform(0.6, 1.0)
    top = head_height + shank_length
    hexagonal = rng.random() < 0.7
    head = (_prism(_regular_polygon(head_radius, 6), 0, head_height) if hexagonal
            else _lathe([(0, 0), (head_radius, 0), (head_radius, head_height * 0.5),
                         (head_radius * 0.7, head_height), (0, head_height)], sections=48))
    chamfer = shank_radius * 0.2
    shank = _lathe([(0, head_height - 0.02), (shank_radius, head_height - 0.02),
                    (shank_radius, top - chamfer), (shank_radius - chamfer, top), (0, top)], sections=32)
    thread_radius = shank_radius * 0.12
    thread_start = head_height + shank_length * rng.uniform(0.2, 0.5)
    thread = _tube(_helix(shank_radius, thread_start, top - chamfer - thread_radius, thread_radius * 3.2),
                   thread_radius, sections=8)
    steel = metal(rng, "bolt_steel", str(rng.choice(["steel", "zinc", "black_oxide", "brass"])))
    parts = [Part("head", head, steel), Part("shank", shank, steel), Part("thread", thread, steel)]
    washer_thickness = rng.uniform(0.02, 0.04)
    parts.append(Part("washer", _ring(shank_radius - 0.01, head_radius * 1.15, head_height - 0.005,
                                      head_height + washer_thickness), metal(rng, "washer_steel")))
    if rng.random() < 0.5:
        nut_low = rng.uniform(thread_start, top - chamfer - head_height * 0.9 - 0.02)
        nut = _difference(_prism(_regular_polygon(head_radius, 6), nut_low, nut_low + head_height * 0.9),
                          [_cylinder(shank_radius * 0.97, (0, 0, -1), (0, 0, top + 1), sections=32)])
        parts.append(Part("nut", nut, metal(rng, "nut_steel")))
    return parts


def nut(rng: np.random.Generator) -> list[Part]:
    radius, height = 0.5, rng.uniform(0.3, 0.5)
    bore = radius * rng.uniform(0.45, 0.55)
    style = str(rng.choice(["plain", "nylon", "cap", "flange"]))
    seat = 0.0
    steel = metal(rng, "nut_steel", str(rng.choice(["steel", "zinc", "brass", "black_oxide"])))
    parts = []
    if style in ("plain", "nylon"):
        seat = rng.uniform(0.04, 0.07)
        parts.append(Part("washer", _ring(bore * 1.05, radius * rng.uniform(1.1, 1.25), 0, seat + 0.005),
                          metal(rng, "washer_steel")))
    elif style == "flange":
        seat = rng.uniform(0.05, 0.08)
        parts.append(Part("flange", _lathe([(bore * 1.02, 0), (radius * 1.25, 0), (radius * 1.25, seat * 0.4),
                                            (radius * 0.8, seat + 0.005), (bore * 1.02, seat + 0.005),
                                            (bore * 1.02, 0)], sections=48), steel))
    top = seat + height
    body = _difference(_prism(_regular_polygon(radius, 6), seat, top),
                       [_cylinder(bore, (0, 0, -1), (0, 0, top + 1), sections=48)])
    thread_radius = bore * 0.08
    thread = _tube(_helix(bore, seat + thread_radius * 1.5, top - thread_radius * 1.5, thread_radius * 3.2),
                   thread_radius, sections=8)
    parts += [Part("body", body, steel), Part("thread", thread, steel)]
    if style == "nylon":
        parts.append(Part("insert", _ring(bore, radius * 0.78, top - 0.01, top + rng.uniform(0.06, 0.1)),
                          tinted(rng, "nylon", (0.2, 0.35, 0.8) if rng.random() < 0.5 else (0.92, 0.92, 0.88),
                                 0.5)))
    elif style == "cap":
        dome = radius * 0.8
        s = np.linspace(0, np.pi / 2, 12)
        parts.append(Part("dome", _lathe(np.vstack([[(0, top - 0.01)], np.column_stack(
            [dome * np.cos(s), top - 0.01 + dome * np.sin(s)])]), sections=48), steel))
    return parts


def bushing(rng: np.random.Generator) -> list[Part]:
    bore, wall = rng.uniform(0.18, 0.26), rng.uniform(0.06, 0.12)
    sleeve_radius, flange_radius = bore + wall, bore + wall + rng.uniform(0.1, 0.2)
    flange_thickness, length = rng.uniform(0.05, 0.1), rng.uniform(0.4, 0.9)
    top = flange_thickness + length
    liner = rng.uniform(0.015, 0.03)
    finish = metal(rng, "bushing_metal", str(rng.choice(["brass", "copper", "steel", "aluminium"])))
    parts = [
        Part("flange", _ring(bore, flange_radius, 0, flange_thickness, sections=64), finish),
        Part("sleeve", _ring(bore, sleeve_radius, flange_thickness - 0.01, top, sections=64), finish),
        Part("liner", _ring(bore - liner, bore + 0.005, 0.004, top + 0.004, sections=64),
             tinted(rng, "ptfe", (0.9, 0.88, 0.8), 0.6) if rng.random() < 0.5
             else metal(rng, "bronze", "copper")),
    ]
    if rng.random() < 0.6:
        z = flange_thickness + length * rng.uniform(0.5, 0.85)
        outer, height = sleeve_radius + rng.uniform(0.02, 0.04), rng.uniform(0.02, 0.04)
        ring = _ring(sleeve_radius - 0.01, outer, z, z + height)
        parts.append(Part("retaining_ring", ring, metal(rng, "spring_steel", "black_oxide")))
    return parts


def pipe_elbow(rng: np.random.Generator) -> list[Part]:
    """Lying flat: a thick bent fitting resting on the floor, a pipe stub pushed into each of its sockets."""
    pipe_radius, pipe_wall = rng.uniform(0.08, 0.11), rng.uniform(0.012, 0.02)
    fitting_radius, socket = pipe_radius * rng.uniform(1.2, 1.35), rng.uniform(0.12, 0.2)
    bend_radius = fitting_radius * rng.uniform(1.5, 2.5)
    angle = np.radians(float(rng.choice([60, 90, 90, 120])))
    z = fitting_radius
    t = np.linspace(0, angle, 24)
    arc = np.column_stack([bend_radius * np.sin(t), bend_radius * (1 - np.cos(t)), np.full_like(t, z)])
    out_a, out_b = np.array([-1.0, 0, 0]), np.array([np.cos(angle), np.sin(angle), 0.0])
    mouth_a, mouth_b = arc[0] + socket * out_a, arc[-1] + socket * out_b
    path = np.vstack([np.linspace(mouth_a, arc[0], 5)[:-1], arc, np.linspace(arc[-1], mouth_b, 5)[1:]])
    fitting = _tube(path, fitting_radius, pipe_radius - 0.004, sections=32)
    finish = machine_finish(rng, "fitting_finish")
    pipe_material = finish if rng.random() < 0.3 else metal(rng, "pipe_metal")
    parts = [Part("fitting", fitting, finish)]
    for name, mouth, direction in (("pipe_a", mouth_a, out_a), ("pipe_b", mouth_b, out_b)):
        stub = [mouth - socket * 0.8 * direction, mouth + rng.uniform(0.12, 0.25) * direction]
        parts.append(Part(name, _tube(stub, pipe_radius, pipe_radius - pipe_wall, sections=32),
                          pipe_material))
    if rng.random() < 0.5:
        at = mouth_a + rng.uniform(0.03, 0.08) * out_a
        band = _tube([at, at + 0.03 * out_a], pipe_radius + 0.006, pipe_radius - pipe_wall / 2, sections=32)
        parts.append(Part("marking", band, painted(rng, "marking_paint")))
    return parts


def keyed_shaft(rng: np.random.Generator) -> list[Part]:
    """Standing on its widest end: a stepped shaft with a keyway, its key, a bearing and a collar."""
    r_base, h_base = rng.uniform(0.14, 0.18), rng.uniform(0.15, 0.3)
    r_seat, h_seat = r_base * rng.uniform(0.7, 0.8), rng.uniform(0.2, 0.3)
    r_end, h_end = r_seat * rng.uniform(0.7, 0.85), rng.uniform(0.3, 0.45)
    z1, z2 = h_base, h_base + h_seat
    top = z2 + h_end
    c = 0.012
    shaft = _lathe([(0, 0), (r_base - c, 0), (r_base, c), (r_base, z1), (r_seat, z1), (r_seat, z2),
                    (r_end, z2), (r_end, top - c), (r_end - c, top), (0, top)], sections=48)
    key_width, key_depth = r_end * 0.5, r_end * 0.3
    key_low, key_high = z2 + h_end * 0.2, top - h_end * 0.15
    shaft = _difference(shaft, [_box((r_end - key_depth, -key_width / 2, key_low),
                                     (r_end + 0.1, key_width / 2, key_high))])
    bearing_height = h_seat * rng.uniform(0.4, 0.6)
    steel = metal(rng, "shaft_steel", "steel")
    parts = [
        Part("shaft", shaft, steel),
        Part("key", _box((r_end - key_depth - 0.005, -key_width / 2 + 0.002, key_low + 0.005),
                         (r_end + key_depth * 0.5, key_width / 2 - 0.002, key_high - 0.005)),
             metal(rng, "key_steel", "black_oxide")),
        Part("bearing", _ring(r_seat - 0.005, r_seat * rng.uniform(1.6, 1.9), z1, z1 + bearing_height),
             metal(rng, "bearing_steel", "aluminium")),
    ]
    if rng.random() < 0.6:
        parts.append(Part("collar", _ring(r_seat - 0.005, r_seat * 1.3, z1 + bearing_height,
                                          z1 + bearing_height + rng.uniform(0.03, 0.06)),
                          machine_finish(rng, "collar_finish")))
    return parts


def pulley(rng: np.random.Generator) -> list[Part]:
    radius, width = 0.5, rng.uniform(0.15, 0.25)
    bore, hub_radius = rng.uniform(0.06, 0.1), rng.uniform(0.14, 0.2)
    groove = rng.uniform(0.06, 0.1)
    inner = hub_radius - 0.01
    wheel = _lathe([(inner, 0), (radius, 0), (radius, width * 0.2), (radius - groove, width / 2),
                    (radius, width * 0.8), (radius, width), (inner, width), (inner, 0)], sections=64)
    hub_height = width + rng.uniform(0.08, 0.18)
    screw_z = width + (hub_height - width) / 2
    finish = machine_finish(rng, "pulley_finish")
    parts = [
        Part("wheel", wheel, finish),
        Part("hub", _ring(bore, hub_radius, 0, hub_height), finish),
        Part("set_screw", _cylinder(0.025, (hub_radius - 0.02, 0, screw_z), (hub_radius + 0.02, 0, screw_z),
                                    sections=12), metal(rng, "screw", "black_oxide")),
    ]
    if rng.random() < 0.5:
        parts.append(Part("belt", _torus(radius - groove * 0.55, groove * 0.45, width / 2, sections=(64, 10)),
                          rubber(rng, "belt_rubber")))
    return parts


def hinge(rng: np.random.Generator) -> list[Part]:
    """A butt hinge opened flat: two leaves either side of the knuckle barrel (axis along y)."""
    leaf_width, length, thickness = rng.uniform(0.3, 0.45), rng.uniform(0.7, 1.0), rng.uniform(0.025, 0.04)
    knuckle = rng.uniform(0.045, 0.065)
    segments = int(rng.choice([3, 5]))
    edges = np.linspace(-length / 2, length / 2, segments + 1)
    gap = 0.006
    hole = rng.uniform(0.025, 0.035)
    leaves = []
    for side in (1, -1):
        plate = _box((min(0, side * leaf_width), -length / 2, 0),
                     (max(0, side * leaf_width), length / 2, thickness))
        knuckles = [_cylinder(knuckle, (0, edges[i] + gap, knuckle), (0, edges[i + 1] - gap, knuckle),
                              sections=24)
                    for i in range(segments) if (i % 2 == 0) == (side == 1)]
        x = side * leaf_width * 0.6
        holes = [_cylinder(hole, (x, y, -1), (x, y, 1), sections=16)
                 for y in np.linspace(-length * 0.3, length * 0.3, 3)]
        leaves.append(_difference(_union([plate, *knuckles]), holes))
    finish = metal(rng, "hinge_metal", str(rng.choice(["brass", "steel", "black_oxide", "zinc"])))
    end = length / 2
    pin = _union([_cylinder(knuckle * 0.5, (0, -end - 0.01, knuckle), (0, end + 0.01, knuckle), sections=16),
                  _cylinder(knuckle, (0, end - 0.002, knuckle), (0, end + 0.02, knuckle), sections=24)])
    return [Part("leaf_a", leaves[0], finish), Part("leaf_b", leaves[1], finish),
            Part("pin", pin, metal(rng, "pin_steel", "steel"))]


# ---- registry ----------------------------------------------------------------------------------------------
TOY_GENERATORS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "mug": mug, "cup": cup, "bottle": bottle, "bowl": bowl, "donut": donut, "chess_piece": chess_piece,
    "hammer": hammer, "car": car, "robot": robot, "snowman": snowman, "key": key, "plate": plate,
    "lamp": lamp, "table": table, "duck": duck,
}
PART_GENERATORS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "bracket": bracket, "flange": flange, "gear": gear, "bolt": bolt, "nut": nut, "bushing": bushing,
    "pipe_elbow": pipe_elbow, "keyed_shaft": keyed_shaft, "pulley": pulley, "hinge": hinge,
}
TOY_CATEGORIES: tuple[str, ...] = tuple(TOY_GENERATORS)
PART_CATEGORIES: tuple[str, ...] = tuple(PART_GENERATORS)
GENERATORS = {**TOY_GENERATORS, **PART_GENERATORS}


def builtin_shape(category: str, instance: int, seed: int = 0) -> Shape:
    """The normalized shape `instance` of `category`; a pure function of (category, instance, seed)."""
    if category not in GENERATORS:
        raise ValueError(f"unknown built-in category {category!r}; known: {', '.join(sorted(GENERATORS))}")
    rng = np.random.default_rng([seed, zlib.crc32(category.encode()), instance])
    parts = GENERATORS[category](rng)
    return normalize(Shape(f"{category}_{instance:04d}", category, "builtin", parts))
