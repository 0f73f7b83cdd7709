"""Scene factory: shapes, anomalies, physics-placed scenes, Cycles renders with ground truth."""

import os
import sys


def _drop_inherited_blender_script_paths() -> None:
    """A worker spawned by a process that imported bpy inherits bpy's script folders on sys.path; the `bpy`
    package in `scripts/modules` would then shadow the real module and `import bpy` would fail."""
    if "bpy" in sys.modules:
        return
    marker = os.sep + "bpy" + os.sep
    sys.path[:] = [p for p in sys.path if not (marker in p and os.sep + "scripts" in p)]


_drop_inherited_blender_script_paths()
