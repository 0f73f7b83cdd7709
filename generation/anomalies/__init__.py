"""Anomaly generators by type name. The full library (fracture, crack, bend, …) plugs in here."""

from generation.anomalies.base import AnomalyGenerator, AnomalyRejected, AnomalyResult
from generation.anomalies.material import MaterialAnomaly
from generation.anomalies.missing import MissingPartAnomaly

GENERATORS: dict[str, AnomalyGenerator] = {g.name: g for g in (MaterialAnomaly(), MissingPartAnomaly())}


def get_generator(name: str) -> AnomalyGenerator:
    if name not in GENERATORS:
        raise ValueError(f"unknown anomaly type {name!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[name]


__all__ = ["GENERATORS", "AnomalyGenerator", "AnomalyRejected", "AnomalyResult", "get_generator"]
