"""Floors and image-based lighting for a scene: a 10 m floor plane with a PBR material and an HDRI world.

Everything is drawn from the caller's seeded `numpy.random.Generator` and every function returns a
JSON-serialisable record of what it chose, so a scene file can say exactly which floor and sky it used.
Procedural floors work in metres (Object coordinates through a Mapping node): objects are ~0.4 m tall and
seen from ~1 m, so texture features are sized from a few centimetres to a few tens of centimetres.
Colours in the records are linear RGB, exactly as they are set in the node tree.
"""

from __future__ import annotations

import colorsys
import math
import re
from pathlib import Path

import bpy
import numpy as np

FLOOR_FAMILIES = ("wood", "marble", "concrete", "tiles", "fabric", "brushed_metal", "terrazzo", "plastic")
FLOOR_OBJECT = "floor"
FLOOR_MATERIAL = "floor_material"
WORLD = "world"

HDRI_SUFFIXES = (".exr", ".hdr")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".tga", ".bmp", ".webp")
# Which PBR map a file holds, from a whole word of its name ("oak_floor_nor_gl_1k.png" -> normal).
MAP_KEYWORDS = {
    "base_color": ("basecolor", "albedo", "diffuse", "diff", "color", "colour", "col"),
    "roughness": ("roughness", "rough"),
    "normal": ("normal", "nor"),
    "metallic": ("metallic", "metalness", "metal"),
    "displacement": ("displacement", "height", "disp"),
}
NON_COLOR_MAPS = ("roughness", "normal", "metallic", "displacement")
TEXTURE_TILE_SIZE_M = (0.5, 2.0)
TEXTURE_BUMP_DEPTH_M = 0.01  # height maps are 0..1; 1 cm relief reads at 1 m without looking like rubble
TWO_PI = 2.0 * math.pi


def add_floor(rng: np.random.Generator, family: str | None = None, size: float = 10.0,
              texture_dir: str | None = None) -> dict:
    """Adds the plane 'floor' (size x size m at z = 0, normal +z) with the material 'floor_material'.

    Without `texture_dir` the material is a procedural family (random when `family` is None); with it, a PBR
    image set from that folder. Returns {"kind": "procedural", "family", "params"} or
    {"kind": "texture_set", "name", "path", "maps", "tile_size_m", "rotation_z", "uv_offset"}.
    """
    if texture_dir is not None:
        if family is not None:
            raise ValueError(f"add_floor: give family ({family!r}) or texture_dir ({texture_dir}), not both")
        return _add_texture_set_floor(rng, size, texture_dir)
    if family is None:
        family = FLOOR_FAMILIES[int(rng.integers(len(FLOOR_FAMILIES)))]
    if family not in FLOOR_FAMILIES:
        raise ValueError(f"unknown floor family {family!r}; expected one of {', '.join(FLOOR_FAMILIES)}")
    _, graph = _new_floor(size)
    params = {"rotation_z": _uniform(rng, 0.0, TWO_PI),
              "offset_m": [_uniform(rng, -20.0, 20.0) for _ in "xyz"]}
    frame = graph.add("ShaderNodeMapping", {
        "Vector": graph.add("ShaderNodeTexCoord").outputs["Object"],
        "Rotation": (0.0, 0.0, params["rotation_z"]), "Location": params["offset_m"],
    }).outputs["Vector"]
    params |= _FAMILY_MATERIALS[family](graph, rng, frame)
    return {"kind": "procedural", "family": family, "params": params}


def add_environment(rng: np.random.Generator, hdri_dir: str | None = None,
                    strength: tuple[float, float] = (0.7, 0.9), hdri: str | None = None) -> dict:
    """Makes the world 'world' light the scene with an HDRI, rotated about z, at a random strength.

    The HDRI comes from `hdri_dir` (or the eight shipped with bpy); `hdri` picks one by name or path instead
    of at random. Returns {"hdri", "path", "rotation_z", "strength"}.
    """
    candidates = scan_hdris(hdri_dir) if hdri_dir is not None else builtin_hdris()
    path = candidates[int(rng.integers(len(candidates)))] if hdri is None else _find_hdri(hdri, candidates)
    rotation_z = _uniform(rng, 0.0, TWO_PI)
    strength_value = _uniform(rng, *strength)
    image = _load_image(path)

    _remove_datablock(bpy.data.worlds, WORLD)
    world = bpy.data.worlds.new(WORLD)
    world.use_nodes = True
    graph = _NodeGraph(world.node_tree)
    rotated = graph.add("ShaderNodeMapping", {
        "Vector": graph.add("ShaderNodeTexCoord").outputs["Generated"], "Rotation": (0.0, 0.0, rotation_z),
    }, name="hdri_rotation")
    environment = graph.add("ShaderNodeTexEnvironment", {"Vector": rotated.outputs["Vector"]},
                            image=image, name="hdri")
    background = graph.add("ShaderNodeBackground", {"Color": environment.outputs["Color"],
                                                    "Strength": strength_value}, name="background")
    graph.add("ShaderNodeOutputWorld", {"Surface": background.outputs["Background"]})
    bpy.context.scene.world = world
    return {"hdri": path.stem, "path": str(path), "rotation_z": rotation_z, "strength": strength_value}


def builtin_hdris() -> list[Path]:
    """The eight CC0 Poly Haven HDRIs (1K) that ship inside bpy, so scenes are lit without any download."""
    return sorted((Path(bpy.utils.system_resource("DATAFILES")) / "studiolights" / "world").glob("*.exr"))


def scan_hdris(hdri_dir) -> list[Path]:
    """The .exr/.hdr files directly inside a user folder; ValueError if there are none."""
    folder = _existing_folder(hdri_dir, "HDRI")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in HDRI_SUFFIXES)
    if not found:
        raise ValueError(f"HDRI folder {folder} holds no {'/'.join(HDRI_SUFFIXES)} files")
    return found


def scan_texture_sets(texture_dir) -> list[dict]:
    """The PBR sets in a user folder: one per subfolder that holds at least a base-colour image.

    Each set is {"name", "path", "maps": {map kind: file}}, map kinds as in MAP_KEYWORDS, told by the last
    keyword in a file's name once the words all its files start with (the material, e.g. "metal_plate") are
    dropped. DirectX normal maps (a word "dx") are skipped: Blender expects OpenGL's green channel.
    """
    folder = _existing_folder(texture_dir, "texture")
    sets = []
    for subfolder in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(p for p in subfolder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        names = [_words(image.stem) for image in images]
        shared = _count_shared_leading(names) if len(names) > 1 else 0
        maps: dict[str, str] = {}
        for image, words in zip(images, names, strict=True):
            kind = _map_kind(words[shared:])
            if kind is not None and kind not in maps:
                maps[kind] = str(image)
        if "base_color" in maps:
            sets.append({"name": subfolder.name, "path": str(subfolder), "maps": maps})
    if not sets:
        keywords = "/".join(MAP_KEYWORDS["base_color"])
        raise ValueError(
            f"texture folder {folder} has no usable PBR set: expected subfolders each holding an image whose "
            f"name has a word {keywords} (optionally also roughness, normal, metallic, displacement maps)")
    return sets


class _NodeGraph:
    """Creates a node, sets its properties and fills or links its inputs in one call: recipes stay short."""

    def __init__(self, tree):
        self.tree = tree
        tree.nodes.clear()

    def add(self, kind: str, inputs: dict | None = None, **properties):
        node = self.tree.nodes.new(kind)
        for name, value in properties.items():  # before inputs: data_type and the like change the sockets
            setattr(node, name, value)
        for key, value in (inputs or {}).items():
            socket = _socket(node.inputs, key)
            if isinstance(value, bpy.types.NodeSocket):
                self.tree.links.new(value, socket)
            elif socket.type == "RGBA" and len(value) == 3:
                socket.default_value = (*value, 1.0)
            else:
                socket.default_value = value
        return node

    def mix(self, blend: str, factor, a, b):
        """Colour mix of a and b (sockets or RGB), e.g. blend 'MULTIPLY' or 'OVERLAY'."""
        node = self.add("ShaderNodeMix", {"Factor_Float": factor, "A_Color": a, "B_Color": b},
                        data_type="RGBA", blend_type=blend)
        return _socket(node.outputs, "Result_Color")

    def ramp(self, factor, stops: list[tuple[float, list[float]]], interpolation: str = "LINEAR"):
        node = self.add("ShaderNodeValToRGB", {"Fac": factor})
        ramp = node.color_ramp
        ramp.interpolation = interpolation
        while len(ramp.elements) < len(stops):
            ramp.elements.new(0.0)
        for element, (position, color) in zip(ramp.elements, stops, strict=True):
            element.position = position
            element.color = (*color, 1.0)
        return node.outputs["Color"]

    def math(self, operation: str, *values):
        inputs = dict(zip(("Value", "Value_001", "Value_002"), values, strict=False))
        return self.add("ShaderNodeMath", inputs, operation=operation).outputs["Value"]

    def remap(self, value, low: float, high: float):
        """Maps a 0..1 value to low..high (e.g. a texture to a roughness range)."""
        node = self.add("ShaderNodeMapRange", {"Value": value, "To Min": low, "To Max": high})
        return node.outputs["Result"]

    def bump(self, height, strength: float, distance_m: float, normal=None, invert: bool = False):
        inputs = {"Height": height, "Strength": strength, "Distance": distance_m}
        if normal is not None:
            inputs["Normal"] = normal
        return self.add("ShaderNodeBump", inputs, invert=invert).outputs["Normal"]

    def surface(self, **principled_inputs) -> None:
        """Principled BSDF (inputs by name with '_' for ' ', e.g. Base_Color) into the material output."""
        inputs = {name.replace("_", " "): value for name, value in principled_inputs.items()}
        bsdf = self.add("ShaderNodeBsdfPrincipled", inputs)
        self.add("ShaderNodeOutputMaterial", {"Surface": bsdf.outputs["BSDF"]})


def _socket(sockets, key: str):
    """A socket by identifier, else by name: the Mix node has several inputs named 'A', one per data type."""
    return next((s for s in sockets if s.identifier == key), None) or sockets[key]


def _wood(graph: _NodeGraph, rng, frame) -> dict:
    """Staggered planks with thin dark seams; each plank cuts its own slice of noise-warped growth rings."""
    hue, light_value = _uniform(rng, 0.04, 0.1), _uniform(rng, 0.45, 0.85)
    p = {
        "plank_width_m": _uniform(rng, 0.09, 0.22), "plank_length_m": _uniform(rng, 0.6, 1.8),
        "plank_stagger": _uniform(rng, 0.25, 0.75), "seam_m": _uniform(rng, 0.001, 0.003),
        "ring_spacing_m": _uniform(rng, 0.008, 0.025), "latewood_share": _uniform(rng, 0.1, 0.35),
        "grain_waviness": _uniform(rng, 3.0, 8.0), "wave_size_m": _uniform(rng, 0.05, 0.15),
        "wave_elongation": _uniform(rng, 3.0, 8.0),
        "light_color": _hsv_linear(hue, _uniform(rng, 0.35, 0.65), light_value),
        "dark_color": _hsv_linear(hue - 0.01, _uniform(rng, 0.5, 0.8),
                                  light_value * _uniform(rng, 0.45, 0.7)),
        "plank_tone_variation": _uniform(rng, 0.1, 0.4), "roughness": _uniform(rng, 0.35, 0.65),
        "grain_bump": _uniform(rng, 0.1, 0.3),
    }
    planks = graph.add("ShaderNodeTexBrick", {
        "Vector": frame, "Scale": 1.0, "Brick Width": p["plank_length_m"], "Row Height": p["plank_width_m"],
        "Mortar Size": p["seam_m"], "Mortar Smooth": 0.0, "Bias": 0.0,
        "Color1": (0.0, 0.0, 0.0), "Color2": (1.0, 1.0, 1.0), "Mortar": (0.0, 0.0, 0.0),
    }, offset=p["plank_stagger"], offset_frequency=2)
    # Each plank's random grey (0..1) moves its coordinates by up to 1 m, so every plank has its own grain.
    per_plank = graph.add("ShaderNodeVectorMath", {"Vector": frame, "Vector_001": planks.outputs["Color"]},
                          operation="ADD").outputs["Vector"]
    along_planks = graph.add("ShaderNodeMapping", {"Vector": per_plank,
                                                   "Scale": (1.0 / p["wave_elongation"], 1.0, 1.0)})
    ring_scale = _wave_scale(p["ring_spacing_m"])
    # Rings around the x axis (the plank direction), seen far from their centre: long, wavy grain lines.
    rings = graph.add("ShaderNodeTexWave", {
        "Vector": along_planks.outputs["Vector"], "Scale": ring_scale, "Distortion": p["grain_waviness"],
        "Detail": 3.0, "Detail Scale": 1.0 / (p["wave_size_m"] * ring_scale), "Detail Roughness": 0.6,
    }, wave_type="RINGS", rings_direction="X")
    grain = graph.ramp(rings.outputs["Fac"],
                       [(0.0, p["dark_color"]), (p["latewood_share"], p["light_color"])])
    toned = graph.mix("MULTIPLY", p["plank_tone_variation"], grain, planks.outputs["Color"])
    seam_color = [c * 0.3 for c in p["dark_color"]]
    color = graph.mix("MIX", planks.outputs["Fac"], toned, seam_color)
    seams = graph.bump(planks.outputs["Fac"], 0.6, 0.002, invert=True)
    graph.surface(Base_Color=color, Roughness=p["roughness"],
                  Normal=graph.bump(rings.outputs["Fac"], p["grain_bump"], 0.0005, normal=seams))
    return p


def _marble(graph: _NodeGraph, rng, frame) -> dict:
    """Polished stone: thin main veins and a fainter finer network (distorted wave bands) on a cloudy base."""
    dark_stone = bool(rng.random() < 0.3)
    base_value, vein_value = ((0.04, 0.14), (0.55, 0.9)) if dark_stone else ((0.75, 0.93), (0.08, 0.4))
    p = {
        "dark_stone": dark_stone,
        "base_color": _random_color(rng, (0.0, 1.0), (0.0, 0.12), base_value),
        "vein_color": _random_color(rng, (0.0, 1.0), (0.0, 0.35), vein_value),
        "vein_spacing_m": _uniform(rng, 0.15, 0.5), "vein_distortion": _uniform(rng, 8.0, 18.0),
        "vein_width": _uniform(rng, 0.02, 0.07), "fine_vein_strength": _uniform(rng, 0.3, 0.7),
        "cloud_size_m": _uniform(rng, 0.1, 0.4), "cloud_contrast": _uniform(rng, 0.1, 0.35),
        "roughness": _uniform(rng, 0.04, 0.2),
    }
    clouds = graph.add("ShaderNodeTexNoise", {"Vector": frame, "Scale": 1.0 / p["cloud_size_m"],
                                              "Detail": 4.0}).outputs["Fac"]
    stone = graph.mix("OVERLAY", p["cloud_contrast"], p["base_color"], clouds)
    main = p["vein_spacing_m"]
    for spacing, strength in ((main, 1.0), (main / 3.0, p["fine_vein_strength"])):
        veins = graph.add("ShaderNodeTexWave", {
            "Vector": frame, "Scale": _wave_scale(spacing), "Distortion": p["vein_distortion"],
            "Detail": 10.0, "Detail Scale": 1.2, "Detail Roughness": 0.65,
        }, wave_type="BANDS", bands_direction="X")
        vein_mask = graph.ramp(veins.outputs["Fac"], [(0.0, [strength] * 3), (p["vein_width"], [0.0] * 3)])
        stone = graph.mix("MIX", vein_mask, stone, p["vein_color"])
    graph.surface(Base_Color=stone, Roughness=p["roughness"])
    return p


def _concrete(graph: _NodeGraph, rng, frame) -> dict:
    """Matte grey slab: large blotches, fine grain and small pits, with the grain and pits as bump."""
    base = _random_color(rng, (0.0, 1.0), (0.0, 0.08), (0.45, 0.75))
    p = {
        "base_color": base, "blotch_size_m": _uniform(rng, 0.3, 1.2),
        "blotch_contrast": _uniform(rng, 0.25, 0.45),
        "grain_size_m": _uniform(rng, 0.005, 0.015), "grain_contrast": _uniform(rng, 0.3, 0.6),
        "pit_spacing_m": _uniform(rng, 0.02, 0.05), "pit_radius": _uniform(rng, 0.1, 0.2),
        "roughness": _uniform(rng, 0.8, 0.95), "grain_bump": _uniform(rng, 0.2, 0.5),
    }
    contrast = p["blotch_contrast"]
    blotches = graph.add("ShaderNodeTexNoise", {"Vector": frame, "Scale": 1.0 / p["blotch_size_m"],
                                                "Detail": 4.0, "Roughness": 0.6})
    grain = graph.add("ShaderNodeTexNoise", {"Vector": frame, "Scale": 1.0 / p["grain_size_m"],
                                             "Detail": 2.0, "Roughness": 0.7})
    pit_cells = graph.add("ShaderNodeTexVoronoi", {"Vector": frame, "Scale": 1.0 / p["pit_spacing_m"]})
    pits = graph.math("LESS_THAN", pit_cells.outputs["Distance"], p["pit_radius"])
    color = graph.ramp(blotches.outputs["Fac"], [(0.35, [c * (1.0 - contrast) for c in base]),
                                                 (0.65, [min(c * (1.0 + contrast), 1.0) for c in base])])
    color = graph.mix("OVERLAY", p["grain_contrast"], color, grain.outputs["Fac"])
    color = graph.mix("MULTIPLY", pits, color, [0.4] * 3)
    normal = graph.bump(grain.outputs["Fac"], p["grain_bump"], 0.001)
    graph.surface(Base_Color=color, Roughness=p["roughness"],
                  Normal=graph.bump(pits, 0.5, 0.002, normal=normal, invert=True))
    return p


def _tiles(graph: _NodeGraph, rng, frame) -> dict:
    """Glazed square or 2:1 tiles, straight or running bond, in recessed matte grout."""
    tile_color = _random_color(rng, (0.0, 1.0), (0.0, 0.6), (0.35, 0.9))
    p = {
        "tile_length_m": _uniform(rng, 0.15, 0.6), "aspect": int(rng.choice([1, 2])),
        "row_offset": float(rng.choice([0.0, 0.5])), "grout_m": _uniform(rng, 0.003, 0.008),
        "edge_bevel": _uniform(rng, 0.1, 0.4), "tile_color": tile_color,
        "tile_shade_variation": _uniform(rng, 0.05, 0.2),
        "grout_color": _hsv_linear(0.0, 0.0, _uniform(rng, 0.15, 0.8)),
        "roughness": _uniform(rng, 0.08, 0.35), "grout_bump": _uniform(rng, 0.4, 0.8),
    }
    shaded = [c * (1.0 - p["tile_shade_variation"]) for c in tile_color]
    tiles = graph.add("ShaderNodeTexBrick", {
        "Vector": frame, "Scale": 1.0, "Brick Width": p["tile_length_m"],
        "Row Height": p["tile_length_m"] / p["aspect"], "Mortar Size": p["grout_m"],
        "Mortar Smooth": p["edge_bevel"], "Bias": 0.0, "Color1": tile_color, "Color2": shaded,
        "Mortar": p["grout_color"],
    }, offset=p["row_offset"], offset_frequency=2)
    graph.surface(Base_Color=tiles.outputs["Color"],
                  Roughness=graph.remap(tiles.outputs["Fac"], p["roughness"], 0.9),
                  Normal=graph.bump(tiles.outputs["Fac"], p["grout_bump"], 0.003, invert=True))
    return p


def _fabric(graph: _NodeGraph, rng, frame) -> dict:
    """Coarse plain-weave tartan: a checker picks which of two crossing thread bands lies on top, and stripes
    of a second colour run through warp and weft, so the cloth reads as fabric even where threads blur."""
    hue, saturation = _uniform(rng, 0.0, 1.0), _uniform(rng, 0.25, 0.8)
    p = {
        "thread_spacing_m": _uniform(rng, 0.01, 0.025), "stripe_period_m": _uniform(rng, 0.06, 0.3),
        "stripe_share": _uniform(rng, 0.15, 0.45),
        "ground_color": _hsv_linear(hue, saturation, _uniform(rng, 0.25, 0.75)),
        "stripe_color": _hsv_linear(hue + _uniform(rng, 0.25, 0.75), _uniform(rng, 0.2, 0.9),
                                    _uniform(rng, 0.15, 0.9)),
        "thread_shading": _uniform(rng, 0.4, 0.7), "roughness": _uniform(rng, 0.85, 1.0),
        "sheen": _uniform(rng, 0.3, 0.8), "weave_bump": _uniform(rng, 0.3, 0.6),
    }
    spacing = p["thread_spacing_m"]
    # Bands peak mid-cell and the checker's cells are one thread wide, so every crossing shows one thread.
    on_top = graph.add("ShaderNodeTexChecker", {"Vector": frame, "Scale": 1.0 / spacing}).outputs["Fac"]
    threads, colors = [], []
    for axis in ("X", "Y"):
        threads.append(graph.add("ShaderNodeTexWave", {"Vector": frame, "Scale": _wave_scale(spacing)},
                                 wave_type="BANDS", bands_direction=axis).outputs["Fac"])
        stripes = graph.add("ShaderNodeTexWave", {
            "Vector": frame, "Scale": _wave_scale(p["stripe_period_m"])},
                            wave_type="BANDS", bands_direction=axis).outputs["Fac"]
        in_stripe = graph.math("LESS_THAN", stripes, p["stripe_share"])
        colors.append(graph.mix("MIX", in_stripe, p["ground_color"], p["stripe_color"]))
    weave = graph.add("ShaderNodeMix", {"Factor_Float": on_top, "A_Float": threads[0], "B_Float": threads[1]},
                      data_type="FLOAT")
    weave = _socket(weave.outputs, "Result_Float")
    thread_color = graph.mix("MIX", on_top, *colors)
    graph.surface(Base_Color=graph.mix("MULTIPLY", p["thread_shading"], thread_color, weave),
                  Roughness=p["roughness"], Sheen_Weight=p["sheen"],
                  Normal=graph.bump(weave, p["weave_bump"], 0.001))
    return p


METAL_TINTS = {  # HSV (sRGB) of common floor metals
    "steel": (0.6, 0.03, 0.78), "aluminium": (0.6, 0.02, 0.9), "brass": (0.12, 0.5, 0.85),
    "copper": (0.05, 0.55, 0.85), "titanium": (0.6, 0.05, 0.62),
}


def _brushed_metal(graph: _NodeGraph, rng, frame) -> dict:
    """Metal brushed along the frame's x axis: stretched noise streaks in roughness and bump, broad smudges,
    and anisotropic reflections whose highlights stretch across the streaks, as real brushing does."""
    alloy = str(rng.choice(sorted(METAL_TINTS)))
    hue, saturation, value = METAL_TINTS[alloy]
    p = {
        "alloy": alloy, "base_color": _hsv_linear(hue, saturation, value * _uniform(rng, 0.9, 1.0)),
        "streak_length_m": _uniform(rng, 0.3, 1.0), "streak_width_m": _uniform(rng, 0.003, 0.01),
        "roughness": _uniform(rng, 0.2, 0.4), "roughness_variation": _uniform(rng, 0.05, 0.15),
        "anisotropy": _uniform(rng, 0.5, 0.9), "smudge_size_m": _uniform(rng, 0.2, 0.6),
        "streak_bump": _uniform(rng, 0.05, 0.2),
    }
    streak_space = graph.add("ShaderNodeMapping", {
        "Vector": frame, "Scale": (1.0 / p["streak_length_m"], 1.0 / p["streak_width_m"], 1.0)})
    streaks = graph.add("ShaderNodeTexNoise", {"Vector": streak_space.outputs["Vector"], "Scale": 1.0,
                                               "Detail": 6.0, "Roughness": 0.6}).outputs["Fac"]
    smudges = graph.add("ShaderNodeTexNoise", {"Vector": frame, "Scale": 1.0 / p["smudge_size_m"],
                                               "Detail": 3.0}).outputs["Fac"]
    variation = p["roughness_variation"]
    streak_roughness = graph.remap(streaks, p["roughness"] - variation, p["roughness"] + variation)
    # Positive anisotropy stretches highlights across the tangent, so the tangent runs along the streaks: the
    # frame is Rz(angle) @ world, so its x axis points along (cos, -sin, 0) in the world.
    angle = frame.node.inputs["Rotation"].default_value[2]
    along_streaks = graph.add("ShaderNodeCombineXYZ", {"X": math.cos(angle), "Y": -math.sin(angle), "Z": 0.0})
    graph.surface(Base_Color=graph.mix("MULTIPLY", 0.15, p["base_color"], streaks), Metallic=1.0,
                  Roughness=graph.math("MULTIPLY_ADD", smudges, 2.0 * variation, streak_roughness),
                  Anisotropic=p["anisotropy"], Tangent=along_streaks.outputs["Vector"],
                  Normal=graph.bump(streaks, p["streak_bump"], 0.0002))
    return p


def _terrazzo(graph: _NodeGraph, rng, frame) -> dict:
    """Polished cement set with angular stone chips: shrunken, noise-warped Voronoi cells, each chip one of 3
    stone colours, and a share of the cells left empty so the cement shows between chips."""
    p = {
        "base_color": _random_color(rng, (0.0, 1.0), (0.0, 0.15), (0.55, 0.9)),
        "chip_colors": [_random_color(rng, (0.0, 1.0), (0.0, 0.45), (0.1, 0.95)) for _ in range(3)],
        "chip_spacing_m": _uniform(rng, 0.02, 0.06), "chip_share": _uniform(rng, 0.5, 0.9),
        "cement_gap": _uniform(rng, 0.05, 0.15), "edge_wobble": _uniform(rng, 0.1, 0.3),
        "roughness": _uniform(rng, 0.15, 0.35),
    }
    spacing = p["chip_spacing_m"]
    wobble = graph.add("ShaderNodeTexNoise", {"Vector": frame, "Scale": 1.5 / spacing, "Detail": 2.0})
    offsets = graph.add("ShaderNodeVectorMath", {"Vector": wobble.outputs["Color"],
                                                 "Scale": p["edge_wobble"] * spacing}, operation="SCALE")
    warped = graph.add("ShaderNodeVectorMath", {"Vector": frame, "Vector_001": offsets.outputs["Vector"]},
                       operation="ADD").outputs["Vector"]
    cells = {"Vector": warped, "Scale": 1.0 / spacing, "Randomness": 1.0}
    cell_color = graph.add("ShaderNodeTexVoronoi", cells).outputs["Color"]
    edge_distance = graph.add("ShaderNodeTexVoronoi", cells, feature="DISTANCE_TO_EDGE").outputs["Distance"]
    in_chip = graph.math("GREATER_THAN", edge_distance, p["cement_gap"])
    cell_random = graph.add("ShaderNodeSeparateColor", {"Color": cell_color}).outputs["Red"]
    share = p["chip_share"]  # cells whose random value is above it stay cement
    stops = [(share * i / 3, color) for i, color in enumerate(p["chip_colors"])] + [(share, p["base_color"])]
    chip_color = graph.ramp(cell_random, stops, interpolation="CONSTANT")
    graph.surface(Base_Color=graph.mix("MIX", in_chip, p["base_color"], chip_color), Roughness=p["roughness"])
    return p


def _plastic(graph: _NodeGraph, rng, frame) -> dict:
    """Uniform glossy colour; only broad smudges in the roughness keep the reflections from being perfect."""
    p = {
        "base_color": _random_color(rng, (0.0, 1.0), (0.3, 0.9), (0.3, 0.9)),
        "roughness": _uniform(rng, 0.05, 0.3), "smudge_size_m": _uniform(rng, 0.2, 0.6),
        "smudge_roughness": _uniform(rng, 0.03, 0.1),
    }
    smudges = graph.add("ShaderNodeTexNoise", {"Vector": frame, "Scale": 1.0 / p["smudge_size_m"],
                                               "Detail": 3.0}).outputs["Fac"]
    graph.surface(Base_Color=p["base_color"],
                  Roughness=graph.remap(smudges, p["roughness"], p["roughness"] + p["smudge_roughness"]))
    return p


_FAMILY_MATERIALS = {
    "wood": _wood, "marble": _marble, "concrete": _concrete, "tiles": _tiles, "fabric": _fabric,
    "brushed_metal": _brushed_metal, "terrazzo": _terrazzo, "plastic": _plastic,
}


def _add_texture_set_floor(rng, size: float, texture_dir) -> dict:
    """A floor tiled with a user PBR set; the tiling lives in the UVs so normal-map tangents turn with it."""
    sets = scan_texture_sets(texture_dir)
    chosen = sets[int(rng.integers(len(sets)))]
    record = {"kind": "texture_set", **chosen, "tile_size_m": _uniform(rng, *TEXTURE_TILE_SIZE_M),
              "rotation_z": _uniform(rng, 0.0, TWO_PI), "uv_offset": [_uniform(rng, 0.0, 1.0) for _ in "uv"]}
    # Load (and so validate) every image before the scene changes.
    maps = {kind: _load_image(Path(path)) for kind, path in chosen["maps"].items()}
    mesh, graph = _new_floor(size)
    _set_tiling_uvs(mesh, record["tile_size_m"], record["rotation_z"], record["uv_offset"])
    for kind in NON_COLOR_MAPS:
        if kind in maps:
            maps[kind].colorspace_settings.name = "Non-Color"
    sampled = {kind: graph.add("ShaderNodeTexImage", image=image).outputs["Color"]
               for kind, image in maps.items()}
    inputs = {"Base_Color": sampled["base_color"]}
    if "roughness" in sampled:
        inputs["Roughness"] = sampled["roughness"]
    if "metallic" in sampled:
        inputs["Metallic"] = sampled["metallic"]
    normal = None
    if "normal" in sampled:
        normal = graph.add("ShaderNodeNormalMap", {"Color": sampled["normal"]},
                           uv_map=mesh.uv_layers.active.name).outputs["Normal"]
    if "displacement" in sampled:
        normal = graph.bump(sampled["displacement"], 1.0, TEXTURE_BUMP_DEPTH_M, normal=normal)
    if normal is not None:
        inputs["Normal"] = normal
    graph.surface(**inputs)
    return record


def _new_floor(size: float):
    """The single-quad plane 'floor' centred at the origin (counter-clockwise, so its normal is +z) with an
    empty node tree in 'floor_material'; returns its mesh and that tree's graph."""
    for collection, name in ((bpy.data.objects, FLOOR_OBJECT), (bpy.data.meshes, FLOOR_OBJECT),
                             (bpy.data.materials, FLOOR_MATERIAL)):
        _remove_datablock(collection, name)
    half = size / 2.0
    mesh = bpy.data.meshes.new(FLOOR_OBJECT)
    mesh.from_pydata([(-half, -half, 0.0), (half, -half, 0.0), (half, half, 0.0), (-half, half, 0.0)],
                     [], [(0, 1, 2, 3)])
    mesh.update()
    material = bpy.data.materials.new(FLOOR_MATERIAL)
    material.use_nodes = True
    mesh.materials.append(material)
    bpy.context.scene.collection.objects.link(bpy.data.objects.new(FLOOR_OBJECT, mesh))
    return mesh, _NodeGraph(material.node_tree)


def _set_tiling_uvs(mesh, tile_size_m: float, rotation_z: float, offset: list[float]) -> None:
    """UV = (position rotated by -rotation_z) / tile size + offset: the texture turns by +rotation_z."""
    cos, sin = math.cos(rotation_z), math.sin(rotation_z)
    uv_layer = mesh.uv_layers.new(name="UVMap")
    for loop in mesh.loops:
        x, y, _ = mesh.vertices[loop.vertex_index].co
        uv_layer.data[loop.index].uv = ((cos * x + sin * y) / tile_size_m + offset[0],
                                        (-sin * x + cos * y) / tile_size_m + offset[1])


def _remove_datablock(collection, name: str) -> None:
    """Removes an existing datablock called `name` so the new one gets exactly that name, not 'name.001'."""
    existing = collection.get(name)
    if existing is not None:
        collection.remove(existing)


def _load_image(path: Path):
    """Loads an image once per session; ValueError naming the file when Blender cannot decode it."""
    try:
        image = bpy.data.images.load(str(path), check_existing=True)
    except RuntimeError as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    if image.size[0] == 0 or image.size[1] == 0:
        bpy.data.images.remove(image)
        raise ValueError(f"cannot read image {path}: Blender decodes it as empty (corrupt or unknown format)")
    return image


def _find_hdri(hdri: str, candidates: list[Path]) -> Path:
    """An HDRI given by file path, or by name (file stem) among the candidates."""
    if Path(hdri).is_file():
        return Path(hdri)
    for path in candidates:
        if path.stem == hdri:
            return path
    raise ValueError(f"HDRI {hdri!r} is neither a file nor one of: {', '.join(p.stem for p in candidates)}")


def _existing_folder(folder, what: str) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"{what} folder {path} does not exist or is not a folder")
    return path


def _words(stem: str) -> list[str]:
    """Lower-case words of a file name, split at punctuation and camelCase ('WoodFloor_NormalGL' has 4)."""
    return [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", stem).lower()) if w]


def _count_shared_leading(names: list[list[str]]) -> int:
    """How many leading words all the names share."""
    shared = 0
    for column in zip(*names, strict=False):
        if len(set(column)) > 1:
            break
        shared += 1
    return shared


def _map_kind(words: list[str]) -> str | None:
    """The PBR map that the last keyword among the words names; None for unknown maps and DirectX normals."""
    for word in reversed(words):
        for kind, keywords in MAP_KEYWORDS.items():
            if word in keywords:
                return None if kind == "normal" and "dx" in words else kind
    return None


def _wave_scale(period_m: float) -> float:
    """Wave-texture Scale for bands or rings `period_m` apart (Blender's wave phase is 20 * scale * x)."""
    return TWO_PI / (20.0 * period_m)


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _random_color(rng: np.random.Generator, hue: tuple, saturation: tuple, value: tuple) -> list[float]:
    """Linear RGB of an sRGB colour whose HSV components are drawn uniformly from the given ranges."""
    return _hsv_linear(*(_uniform(rng, *bounds) for bounds in (hue, saturation, value)))


def _hsv_linear(hue: float, saturation: float, value: float) -> list[float]:
    """An sRGB colour given as HSV (hue wraps), in the linear RGB that Blender's colour sockets expect."""
    rgb = colorsys.hsv_to_rgb(hue % 1.0, min(max(saturation, 0.0), 1.0), min(max(value, 0.0), 1.0))
    return [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
