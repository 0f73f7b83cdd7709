"""Scene factory: shapes, anomalies, physics-placed scenes, Cycles renders with ground truth."""
