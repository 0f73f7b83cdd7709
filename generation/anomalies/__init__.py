"""Anomaly generators by type name, and the file-name codes of the published benchmark (ToysAD/PartsAD).

Type names are what configs (`anomalies.weights`) and scene files (`objects/anomaly_type`) use; `TYPE_CODES`
maps each to the short tag of the published release (`banana_028-crack-001.blend`), with new tags for the types
the release does not have.
"""

import copy

from generation.anomalies.base import AnomalyGenerator, AnomalyRejected, AnomalyResult
from generation.anomalies.deform import BendAnomaly, BumpAnomaly, DeformationAnomaly, TwistAnomaly
from generation.anomalies.fracture import CrackAnomaly, DiscolorationAnomaly, FractureAnomaly
from generation.anomalies.material import MaterialAnomaly
from generation.anomalies.missing import MissingPartAnomaly
from generation.anomalies.parts import (
    MaterialSwapAnomaly,
    PartRotationAnomaly,
    PartScaleAnomaly,
    PartTranslationAnomaly,
)
from generation.anomalies.patches import PatchAddedAnomaly, PatchRemovedAnomaly
from generation.anomalies.similar import SimilarShapeAnomaly

PUBLISHED_CODES = {
    "fracture": "frac", "crack": "crack", "discoloration": "disc", "bump": "bump", "deformation": "defr",
    "bend": "bend", "twist": "twist", "missing": "miss", "part_translation": "tran", "part_rotation": "rota",
    "part_scale": "scal", "material_swap": "mats", "similar_shape": "diff",
}
EXTRA_CODES = {"material": "pcol", "patch_added": "padd", "patch_removed": "prem"}  # not in the release
TYPE_CODES = {**PUBLISHED_CODES, **EXTRA_CODES}

GENERATORS: dict[str, AnomalyGenerator] = {g.name: g for g in (
    MaterialAnomaly(), MissingPartAnomaly(), FractureAnomaly(), CrackAnomaly(), DiscolorationAnomaly(),
    BumpAnomaly(), DeformationAnomaly(), BendAnomaly(), TwistAnomaly(), PartTranslationAnomaly(),
    PartRotationAnomaly(), PartScaleAnomaly(), MaterialSwapAnomaly(), PatchAddedAnomaly(), PatchRemovedAnomaly(),
    SimilarShapeAnomaly(),
)}


def get_generator(name: str, settings: dict | None = None) -> AnomalyGenerator:
    """The generator of a type, with some of its class-level settings (ranges, thresholds) replaced."""
    if name not in GENERATORS:
        raise ValueError(f"unknown anomaly type {name!r}; known: {sorted(GENERATORS)}")
    generator = GENERATORS[name]
    if not settings:
        return generator
    generator = copy.copy(generator)
    for key, value in settings.items():
        current = getattr(generator, key, None)
        if key.startswith("_") or current is None or callable(current):
            raise ValueError(f"anomalies.params.{name}: {name!r} has no setting {key!r}")
        setattr(generator, key, type(current)(value) if isinstance(current, tuple | float | int) else value)
    return generator


__all__ = ["GENERATORS", "PUBLISHED_CODES", "TYPE_CODES", "AnomalyGenerator", "AnomalyRejected", "AnomalyResult",
           "SimilarShapeAnomaly", "get_generator"]
