"""Generation config: plain dataclasses, read from TOML, overridable with `section.key=value` strings."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ShapesConfig:
    kind: str = "builtin"  # builtin | folder | toys4k | abc
    categories: list[str] = field(default_factory=list)  # builtin: empty = every category
    instances_per_category: int = 50
    root: str = ""  # folder: root of the mesh folder (category = parent folder name)
    max_faces: int = 200_000  # larger meshes are decimated
    category_level: int = -1  # folder: -1 = parent folder is the category; k >= 0 = the k-th folder below root


@dataclass
class SplitConfig:
    by: str = "instance"  # instance | category | category+instance (train, seen-test, unseen-test)
    # instance/category: share of scenes (and of instances) in the test split; category+instance: share of the
    # seen categories' instances held out for seen-test (scene shares then follow the pool sizes)
    test_fraction: float = 0.25
    test_categories: list[str] = field(default_factory=list)  # by = category | category+instance


@dataclass
class SceneConfig:
    objects: tuple[int, int] = (3, 6)  # inclusive range of copies per scene
    normal_scene_fraction: float = 0.05  # scenes without any anomaly
    scale: tuple[float, float] = (0.40, 0.41)  # metres, applied to shapes normalised to max |v| = 0.5
    min_gap: float = 0.04  # metres between objects at rest
    drop_height: float = 0.01  # metres above the floor at the start of the simulation
    max_attempts: int = 8  # re-samples of a scene before it is rejected


@dataclass
class AnomalyConfig:
    weights: dict[str, float] = field(default_factory=lambda: {"material": 1.0, "missing": 1.0})
    variants_per_shape: int = 3  # banked variants per (shape, type) that scenes draw from (generation/bank.py)
    # per-type generator settings (their class attributes), e.g. {material = {min_area_share = 0.3}}: difficulty knobs
    params: dict[str, dict] = field(default_factory=dict)


@dataclass
class CameraConfig:
    views: int = 20
    width: int = 256
    height: int = 256
    focal_mm: float = 30.0
    sensor_mm: float = 36.0
    elevation_deg: tuple[float, float] = (25.0, 32.0)
    radius: tuple[float, float] = (0.67, 0.77)  # grown per view until every object is in frame
    margin_px: float = 4.0


@dataclass
class BackgroundConfig:
    floor_families: list[str] = field(default_factory=list)  # empty = all procedural families
    texture_dir: str = ""  # optional folder of PBR texture sets
    hdri_dir: str = ""  # optional folder of HDRIs; default: the eight CC0 HDRIs shipped with bpy
    hdri_strength: tuple[float, float] = (0.7, 0.9)


@dataclass
class RenderConfig:
    preset: str = "default"  # draft | default | paper
    device: str = "CPU"  # CPU | CUDA | OPTIX
    samples: int = 0  # 0 = the preset's


@dataclass
class GenerationConfig:
    name: str = "variant"
    seed: int = 0
    n_scenes: int = 10
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    anomalies: AnomalyConfig = field(default_factory=AnomalyConfig)
    cameras: CameraConfig = field(default_factory=CameraConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    render: RenderConfig = field(default_factory=RenderConfig)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _checked(value, hint, where: str):
    """`value` as the field's declared type, or a ValueError naming the key: a string where a number belongs
    must fail when the config is read, not as a TypeError in a worker an hour later."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return value  # kept as written: converting would change the digest of existing variants' configs
    if hint in (int, float, str, bool):
        if isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
            return value
        raise ValueError(f"{where}: expected {_TYPE_NAMES[hint]}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected an array, got {value!r}")
        if origin is tuple and args[-1] is not Ellipsis and len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        items = [_checked(v, args[0], where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a table, got {value!r}")
        return {k: _checked(v, args[1], f"{where}.{k}") for k, v in value.items()} if args else value
    return value


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _build(cls, data: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"{where}: unknown key {key!r}; expected one of {sorted(known)}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{key}: expected a table, got {value!r}")
            value = _build(hints[key], value, f"{where}.{key}")
        else:
            value = _checked(value, hints[key], f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: dict) -> GenerationConfig:
    config = _build(GenerationConfig, data, "config")
    validate_config(config)
    return config


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> GenerationConfig:
    """Read a TOML config (or the defaults) and apply `a.b=value` overrides (values in TOML syntax)."""
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ValueError(f"{path}: cannot read config ({err})") from err
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected key=value")
        *parents, leaf = key.strip().split(".")
        node = data
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = _parse_value(text.strip())
    config = _build(GenerationConfig, data, str(path or "config"))
    validate_config(config)
    return config


def validate_config(config: GenerationConfig) -> None:
    lo, hi = config.scene.objects
    if not 3 <= lo <= hi:
        raise ValueError("scene.objects: need 3 <= min <= max (one odd object must be a strict minority)")
    if hi > 254:
        raise ValueError("scene.objects: at most 254 objects (instance masks are uint8)")
    if config.render.preset not in RENDER_PRESETS:
        raise ValueError(f"render.preset: {config.render.preset!r} is not one of {sorted(RENDER_PRESETS)}")
    if config.split.by not in ("instance", "category", "category+instance"):
        raise ValueError("split.by: expected 'instance', 'category' or 'category+instance'")
    if not 0.0 <= config.split.test_fraction < 1.0:
        raise ValueError("split.test_fraction: expected a value in [0, 1)")
    if config.shapes.category_level != -1 and config.shapes.kind != "folder":
        raise ValueError("shapes.category_level: only a folder source (shapes.kind = 'folder') takes it")
    if config.cameras.views < 1:
        raise ValueError("cameras.views: need at least one view")
    from generation.anomalies import get_generator

    for name, settings in config.anomalies.params.items():
        get_generator(name, settings)  # unknown types and settings fail here, not in a worker
    if config.background.floor_families and config.background.texture_dir:
        raise ValueError("background: set floor_families (procedural floors) or texture_dir (your PBR sets), not both")
    if config.anomalies.variants_per_shape < 1:
        raise ValueError("anomalies.variants_per_shape: need at least one variant per shape and type")
    if not config.anomalies.weights or min(config.anomalies.weights.values()) < 0:
        raise ValueError("anomalies.weights: need at least one type with a non-negative weight")


# Cycles settings of each quality preset: samples per pixel, adaptive-sampling noise threshold (0 = off), OIDN
# denoising (albedo + normal guided), light-path bounces, caustics. Seconds per view and PSNR against `reference`
# on this project's 2-core machine: benchmarks/bench_render.py, figures in README.md. The denoiser does most of
# the work at these resolutions: 10 denoised samples reach 43 dB against the 1024-sample reference (128: 49 dB) at
# a twelfth of the time; deep bounces and caustics add ~1.7 dB for ~7% more time, so only paper keeps them.
RENDER_PRESETS = {
    "draft": {"samples": 6, "adaptive_threshold": 0.05, "denoise": True, "max_bounces": 4,
              "diffuse_bounces": 2, "glossy_bounces": 2, "caustics": False},
    "default": {"samples": 10, "adaptive_threshold": 0.05, "denoise": True, "max_bounces": 4,
                "diffuse_bounces": 2, "glossy_bounces": 2, "caustics": False},
    "paper": {"samples": 128, "adaptive_threshold": 0.01, "denoise": True, "max_bounces": 12,
              "diffuse_bounces": 4, "glossy_bounces": 4, "caustics": True},  # the published set's 128 spp
    # what the presets are measured against: converged, no denoiser bias, every light path
    "reference": {"samples": 1024, "adaptive_threshold": 0.0, "denoise": False, "max_bounces": 12,
                  "diffuse_bounces": 12, "glossy_bounces": 12, "caustics": True},
}
