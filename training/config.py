"""Configuration: dataclass defaults (sources in docs/training.md), overridden by a TOML file, then by `--set`.

Unknown keys are errors, so a typo cannot silently fall back to a default. The resolved config is stored as
JSON next to every run.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from training.data import DataConfig
from training.model import ModelConfig


@dataclass
class TrainConfig:
    epochs: int = 50
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_frac: float = 0.02  # share of all steps spent warming up linearly
    min_lr_frac: float = 0.0  # the cosine ends at lr * min_lr_frac
    grad_clip: float = 1.0
    seed: int = 0
    bf16: bool = True  # autocast on CUDA only; CPU runs stay float32
    log_every: int = 10  # steps between CSV rows


@dataclass
class EvalConfig:
    views: tuple[int, ...] = (1, 3, 5, 10, 20)  # AUROC versus number of test views (capped at the scene's V)
    object_bins: tuple[tuple[int, int], ...] = ((3, 4), (5, 6), (7, 8), (9, 10), (11, 12))
    batch_size: int = 8


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _as_field_type(value, default, where: str):
    """`value` checked against the type of the field's default; TOML arrays arrive as lists and become the
    tuples the dataclasses hold (hashable, and what `grid` etc. expect). A wrong type is an error naming the key,
    not a crash deep inside training."""
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected an array, got {value!r}")
        return tuple(_as_field_type(v, default[0] if default else None, where) for v in value)
    kind = type(default)
    ok = (
        default is None
        or (kind is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (kind not in (int, float) and isinstance(value, kind))
    )
    if not ok:
        raise ValueError(f"{where}: expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}")
    return float(value) if kind is float else value


def _merge(config: Config, overrides: dict, origin: str) -> Config:
    sections = {}
    for name, values in overrides.items():
        if name not in {f.name for f in dataclasses.fields(Config)}:
            raise ValueError(f"{origin}: unknown section [{name}]")
        if not isinstance(values, dict):
            raise ValueError(f"{origin}: [{name}] must be a table of settings, got {values!r}")
        section = getattr(config, name)
        known = {f.name for f in dataclasses.fields(section)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{origin}: unknown key(s) {sorted(unknown)} in [{name}]; known {sorted(known)}")
        changes = {k: _as_field_type(v, getattr(section, k), f"{origin}: {name}.{k}") for k, v in values.items()}
        try:
            sections[name] = dataclasses.replace(section, **changes)
        except ValueError as err:  # a section's own consistency check (e.g. the model's channel counts)
            raise ValueError(f"{origin}: [{name}] {err}") from err
    return dataclasses.replace(config, **sections)


def parse_set(pairs: list[str]) -> dict:
    """["model.head='context'", "train.epochs=3"] -> nested dict; TOML values, bare words as strings."""
    nested: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key.count(".") != 1:
            raise ValueError(f"--set expects section.key=value, got {pair!r}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        section, name = key.split(".")
        nested.setdefault(section, {})[name] = value
    return nested


def load_config(path: str | Path | None = None, sets: list[str] = ()) -> Config:
    config = Config()
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ValueError(f"{path}: cannot read config ({err})") from err
        config = _merge(config, data, str(path))
    return _merge(config, parse_set(list(sets)), "--set")


def config_from_dict(d: dict) -> Config:
    """Inverse of dataclasses.asdict, for configs stored in checkpoints and results."""
    return _merge(Config(), d, "stored config")
