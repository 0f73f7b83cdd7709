"""Shapes into Blender objects: one mesh object per copy, one material slot per part."""

from __future__ import annotations

import math

import bpy
import numpy as np

from generation.shapes.types import MaterialSpec, Shape


def principled_material(spec: MaterialSpec, name: str) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*spec.base_color, 1.0)
    bsdf.inputs["Roughness"].default_value = float(spec.roughness)
    bsdf.inputs["Metallic"].default_value = float(spec.metallic)
    return material


def add_shape_object(name: str, shape: Shape, scale: float) -> bpy.types.Object:
    """A mesh object whose polygons are exactly the faces of `shape.merged()`, in the same order,
    so face-level anomaly labels computed outside Blender stay valid."""
    merged, part_index = shape.merged()
    vertices = np.asarray(merged.vertices, dtype=np.float32)
    faces = np.asarray(merged.faces, dtype=np.int32)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.polygons.foreach_set("material_index", part_index.astype(np.int32))
    mesh.update(calc_edges=True)
    mesh.shade_smooth()
    mesh.set_sharp_from_angle(angle=math.radians(35))
    for i, part in enumerate(shape.parts):
        mesh.materials.append(principled_material(part.material, f"{name}_{i}_{part.name}"))
    obj = bpy.data.objects.new(name, mesh)
    obj.scale = (scale, scale, scale)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def set_pose(obj: bpy.types.Object, matrix: np.ndarray) -> None:
    from mathutils import Matrix

    obj.matrix_world = Matrix(matrix.tolist())


def world_matrix(obj: bpy.types.Object) -> np.ndarray:
    return np.array(obj.matrix_world, dtype=np.float64)
